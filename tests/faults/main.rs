//! The fault matrix: for each process SIGKILLed and each backing service stopped and started
//! again (or SIGKILLed, for the broker), under a steady load of clients creating cards:
//! no acknowledged command lost, none applied twice, the Postgres read models and ClickHouse
//! equal to the store, every consumer group at the topic's end within 30 s of recovery, and
//! both APIs answering within 5 s of the service's return. Each test prints what it measured.
//!
//! The backing-service faults stop the machine's own Postgres, Redis, ClickHouse and Kafka
//! (with `deploy/local/service`, the functions `up` uses), so these tests run one at a time
//! and after the rest of the suite: `deploy/local/test` runs
//! `cargo test -p system-tests --test faults -- --ignored --test-threads=1` last. `FAULTS_LONG=1` makes
//! every phase of load and every outage ten times longer.

#[path = "../stack/support.rs"]
#[allow(dead_code)]
mod support;

mod matrix;
mod relay_leadership;
