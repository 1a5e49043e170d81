//! The one rate limiter both APIs use: a token bucket per key (a caller, an address, a
//! workspace), `per_second` sustained with bursts of `burst`. State lives in the process, so N
//! processes allow N times the rate; the limits are for fairness and abuse, not billing.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

pub struct RateLimiter {
    buckets: DefaultKeyedRateLimiter<String>,
}

impl RateLimiter {
    /// A limiter that forgets idle keys every minute (in a task on the current runtime, when
    /// there is one), bounding its memory.
    pub fn new(per_second: u32, burst: u32) -> Arc<Self> {
        let per_second = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(per_second);
        let limiter = Arc::new(Self {
            buckets: governor::RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&limiter);
            runtime.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(60));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(limiter) = weak.upgrade() else { return };
                    limiter.buckets.retain_recent();
                }
            });
        }
        limiter
    }

    /// Takes one request from `key`'s bucket; when it is empty, how many whole seconds (at
    /// least 1) until it is not.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        self.buckets.check_key(&key.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs_f64().ceil().max(1.0) as u64
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_past_its_burst_waits_and_other_keys_do_not() {
        let limiter = RateLimiter::new(1, 2);
        assert!(limiter.check("a").is_ok());
        assert!(limiter.check("a").is_ok());
        assert_eq!(limiter.check("a"), Err(1));
        assert!(limiter.check("b").is_ok());
    }
}
