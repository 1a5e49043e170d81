//! The one way every process connects to Redis.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::{Arc, OnceLock};

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

/// A connection set once Redis first answers; from then on the manager reconnects by itself.
/// Until it is set, its users go without Redis (a cache misses, live updates are skipped).
pub type Lazy = Arc<OnceLock<ConnectionManager>>;

/// Connects in the background, retrying until Redis answers, so that a Redis that is down at
/// start means going without it for now, not not starting. `purpose` names what for in logs.
pub fn connect_in_background(url: &str, purpose: &'static str) -> Lazy {
    let slot: Lazy = Arc::new(OnceLock::new());
    let (setter, url) = (slot.clone(), url.to_owned());
    tokio::spawn(async move {
        let connection = crate::retry(purpose, || connect(&url)).await;
        tracing::info!(purpose, "Redis answers.");
        let _ = setter.set(connection);
    });
    slot
}
