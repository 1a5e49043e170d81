//! Integration tests of the `promptcards` binary against the real services. Every test gets
//! its own database from `#[sqlx::test]` and runs the built binary with `DATABASE_URL` pointing
//! at it; tests that need Kafka, ClickHouse or Redis use their own topic, ClickHouse database and
//! fresh stream ids, so they run in parallel. The services are the machine's (Postgres on
//! 127.0.0.1:5432 through `DATABASE_URL`, Kafka on 127.0.0.1:9092, ClickHouse on 8123, Redis on
//! 6379) unless `KAFKA_BROKERS`, `CLICKHOUSE_URL` or `REDIS_URL` name others.

mod audit;
mod events;
mod help;
mod regrade;
mod replay;
mod support;
mod time_travel;
mod verify;
