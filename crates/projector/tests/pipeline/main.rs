//! Integration tests of the event pipeline against the real services: the outbox relay from the
//! Postgres event store to Kafka, and the projector's sinks into the
//! Postgres read models, Redis and ClickHouse. Every test gets its own database from
//! `#[sqlx::test]`, its own topic, consumer groups and ClickHouse database, and fresh stream ids
//! for Redis, so they run in parallel; see `/work/shared/INVARIANTS.md` for the numbered
//! invariants they check.
//!
//! The services are the machine's (Kafka on 127.0.0.1:9092, ClickHouse over HTTP on 8123, Redis
//! on 6379) unless `KAFKA_BROKERS`, `CLICKHOUSE_URL` or `REDIS_URL` name others. The broker-outage
//! test runs an Apache Kafka node of its own (`PrivateBroker`, started by
//! `deploy/local/kafka/broker`).

mod broker_outage;
mod catch_up;
mod clickhouse_events;
mod postgres_projection;
mod redis_versions;
mod relay_to_kafka;
mod support;
