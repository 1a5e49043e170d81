//! Failed logins, counted per email and per client address. Past either limit, attempts are
//! refused with the same 429 whether or not the email has an account, until the lockout has
//! passed since the last failure. Counts live in this process: N processes allow N times the
//! attempts, which still turns guessing from millions of tries into a handful.

use crate::error::ApiError;
use crate::settings::Settings;
use std::net::IpAddr;
use std::time::Duration;

pub struct LoginThrottle {
    /// Failures by `account:<email>` or `address:<ip>`; an entry lives `lockout` after its
    /// last failure.
    failures: moka::sync::Cache<String, u32>,
    per_account: u32,
    per_address: u32,
    lockout: Duration,
}

impl LoginThrottle {
    pub fn new(settings: &Settings) -> Self {
        Self {
            failures: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(settings.login_lockout)
                .build(),
            per_account: settings.login_failures_per_account,
            per_address: settings.login_failures_per_address,
            lockout: settings.login_lockout,
        }
    }

    fn keys(account: &str, address: Option<IpAddr>) -> impl Iterator<Item = String> {
        std::iter::once(format!("account:{account}")).chain(address.map(|ip| format!("address:{ip}")))
    }

    /// 429 when the email or the address has failed too often.
    pub fn check(&self, account: &str, address: Option<IpAddr>) -> Result<(), ApiError> {
        let over = Self::keys(account, address).any(|key| {
            let limit = if key.starts_with("account:") {
                self.per_account
            } else {
                self.per_address
            };
            self.failures.get(&key).is_some_and(|count| count >= limit)
        });
        if over {
            metrics::counter!("login_throttled_total").increment(1);
            return Err(ApiError::RateLimited {
                retry_after_secs: self.lockout.as_secs().max(1),
            });
        }
        Ok(())
    }

    pub fn failed(&self, account: &str, address: Option<IpAddr>) {
        for key in Self::keys(account, address) {
            self.failures
                .entry(key)
                .and_upsert_with(|count| count.map_or(1, |c| c.into_value().saturating_add(1)));
        }
    }

    /// A success clears the email's count; the address's stays, as one right guess among many
    /// wrong ones from an address is no reason to trust it.
    pub fn succeeded(&self, account: &str) {
        self.failures.invalidate(&format!("account:{account}"));
    }
}
