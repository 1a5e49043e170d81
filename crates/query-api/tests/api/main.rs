//! Integration tests of the GraphQL query API against the real services: each test gets its
//! own Postgres database from `#[sqlx::test]`, appends real domain events to the event store,
//! projects them with the projector's own sinks (Postgres read models, Redis), and drives the
//! app in-process (or over a real socket for WebSocket subscriptions). ClickHouse tests use a
//! private `qtest_<uuid>` database; Redis keys and channels are per fresh id.

mod analytics;
mod cache;
mod dataloader;
mod limits;
mod pagination;
mod read_your_writes;
mod search;
mod serving;
mod subscriptions;
mod support;
mod surface;
mod tenancy;
mod time_travel;
mod webhooks;
