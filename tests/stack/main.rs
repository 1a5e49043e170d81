//! The whole stack as an operator runs it: its six processes started from their binaries with
//! `deploy/local/up`'s environment, SIGKILLed while clients write, and started again. Each test
//! owns its stack (database, topic, consumer groups, ClickHouse database, ports), so they run
//! in parallel with the rest of the suite on the machine's Postgres, Kafka, Redis and
//! ClickHouse. `cargo build --bins` must have run (deploy/local/test does).

mod alerts_flow;
mod chat;
mod comparisons;
mod consumers_killed;
mod deliverer_killed;
mod isolation;
mod playground;
#[allow(dead_code)] // Shared with the fault matrix (tests/faults), which uses all of it.
mod support;
