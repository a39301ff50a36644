//! Sign-in throttling with governor: a per-account limiter that counts
//! failed logins. The per-IP limit of the credential routes is the auth
//! limiter of `limits::rate`, applied by the rate-limit layer.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::AuthConfig;

pub struct LoginThrottle {
    failures: DefaultKeyedRateLimiter<String>,
    /// Accounts whose failure budget ran out, and until when.
    locked: Mutex<HashMap<String, Instant>>,
    clock: DefaultClock,
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).expect("max(1) is non-zero")
}

impl LoginThrottle {
    pub fn new(cfg: &AuthConfig) -> LoginThrottle {
        let failures = Quota::per_hour(nz(cfg.login_failures_per_account_per_hour));
        LoginThrottle {
            failures: RateLimiter::keyed(failures),
            locked: Mutex::new(HashMap::new()),
            clock: DefaultClock::default(),
        }
    }

    /// Whether the account may try now; Err carries the seconds to wait.
    pub fn check_account(&self, username: &str) -> Result<(), u64> {
        let key = username.to_lowercase();
        let mut locked = self.locked.lock().expect("lock not poisoned");
        if let Some(until) = locked.get(&key) {
            let now = Instant::now();
            if *until > now {
                return Err(secs(*until - now));
            }
            locked.remove(&key);
        }
        Ok(())
    }

    /// Records a failed login; once the hourly budget is spent the account
    /// is locked until the limiter would allow another attempt.
    pub fn record_failure(&self, username: &str) {
        let key = username.to_lowercase();
        if let Err(n) = self.failures.check_key(&key) {
            let wait = n.wait_time_from(self.clock.now());
            self.locked
                .lock()
                .expect("lock not poisoned")
                .insert(key, Instant::now() + wait);
        }
    }

    /// Drops state for keys that are back to a full budget, so memory stays
    /// bounded under attempts from many addresses or usernames.
    pub fn prune(&self) {
        self.failures.retain_recent();
        let now = Instant::now();
        self.locked
            .lock()
            .expect("lock not poisoned")
            .retain(|_, until| *until > now);
    }
}

fn secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_locks_after_failures() {
        let cfg = AuthConfig {
            login_failures_per_account_per_hour: 3,
            ..AuthConfig::default()
        };
        let t = LoginThrottle::new(&cfg);
        for _ in 0..3 {
            t.check_account("Alice").unwrap();
            t.record_failure("alice");
        }
        t.check_account("ALICE").unwrap();
        t.record_failure("alice");
        let wait = t.check_account("alice").unwrap_err();
        assert!(wait > 60, "{wait}");
        t.check_account("bob").unwrap();
    }
}
