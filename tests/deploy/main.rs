//! Static checks of the deployment artefacts: the Dockerfile, `deploy/compose` (the stack with
//! its backing services and observability) and `deploy/k8s` (the kustomize base for users'
//! clusters). Nothing here runs Docker or a cluster: each test parses the files and fails when a
//! property that a deployment relies on breaks (a port that no longer matches, a setting that is
//! not passed, a manifest that kustomize would not apply, a metric the dashboard lost).

mod compose;
mod dockerfile;
mod docs;
mod k8s;
mod observability;
mod support;
