//! Repository-wide checks that need no running service. The crate has no library code: its
//! tests live in `deploy/` (the `deploy` test binary: Dockerfile, `deploy/compose` and
//! `deploy/k8s`, checked statically against each other, the documentation and the code).
