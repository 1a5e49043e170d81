//! The one way every process connects to Redis.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// A self-healing Redis connection for every process that talks to Redis. Without timeouts a
/// request sent on a connection Redis dropped (a Redis restart) waits as long as TCP does:
/// measured at two minutes, with the projector's sink and every GraphQL request stuck behind
/// it. With them, a request fails within a second, and the manager reconnects in the
/// background (100 ms, 200 ms, 400 ms, then each failing request tries again).
pub async fn connect(url: &str) -> redis::RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(std::time::Duration::from_secs(1))
        .set_response_timeout(std::time::Duration::from_secs(1))
        .set_number_of_retries(3)
        .set_factor(100)
        .set_max_delay(1_000);
    ConnectionManager::new_with_config(redis::Client::open(url)?, config).await
}
