//! Integration tests of the event store against a real PostgreSQL. Every test gets a fresh
//! database from `#[sqlx::test]`, so they run in parallel; see `/work/shared/INVARIANTS.md` for
//! the numbered invariants they check.

mod aggregates;
mod append;
mod group_commit;
mod history;
mod idempotency;
mod integrity;
mod metrics;
mod support;
mod tailing;
