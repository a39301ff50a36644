//! Sign-in throttling: which failure budgets a sign-in attempt is charged
//! to, and how long a failure's answer is held back.
//!
//! An attempt from a *known device* of the account (a valid device cookie,
//! see [`super::device`]) is charged only to that device's budget
//! (`login_failures_per_device_per_hour`). Any other attempt is charged to
//! - the client address (`login_burst`, `login_per_ip_per_minute`; the
//!   same budget as failed registrations, refreshes and setups),
//! - the (account, address) pair (`login_failures_per_source_per_hour`),
//!   whose failures also slow the answer down (a delay that doubles with
//!   each failure after the third), and
//! - the account's budget for unknown sources together
//!   (`login_failures_per_account_per_hour`), which stops guessing spread
//!   over many addresses.
//!
//! So one address cannot lock an account (it runs out of its own pair
//! budget first), many addresses can lock out only the account's unknown
//! sources, and the owner on a device that signed in before keeps signing
//! in. Only failures are charged: successes hand their reservation back.
//! Accounts are keyed by their normalised name ([`crate::username::key`]),
//! whether or not they exist, so the answers reveal nothing.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

use super::device::{DeviceId, DeviceKeys};
use crate::config::Config;
use crate::limits::failures::{Attempt, FailureLimiter};
use crate::limits::ip::limiter_key;
use crate::limits::rate::Decision;
use crate::store::cluster::ClusterStore;

/// Failures of one (account, address) pair answered without delay.
const FREE_FAILURES: u32 = 3;
/// Password-reset mails one account gets per hour at most.
const RESET_MAILS_PER_HOUR: u32 = 3;
/// The longest a failure's answer is held back.
const MAX_DELAY: Duration = Duration::from_secs(30);

pub struct LoginThrottle {
    per_account: FailureLimiter<String>,
    per_source: FailureLimiter<(String, IpAddr)>,
    per_device: FailureLimiter<DeviceId>,
    password_change: FailureLimiter<Uuid>,
    /// Wrong second-factor codes per account (the lockout of the second
    /// sign-in step; its own budget, whatever device or address).
    pub second_factor: FailureLimiter<Uuid>,
    /// Password-reset mails per account: asking again and again does not
    /// flood the owner's mailbox.
    pub reset_mail: FailureLimiter<Uuid>,
    delay: Duration,
    pub devices: DeviceKeys,
    /// Seconds a device cookie stays valid.
    pub device_max_age: i64,
}

/// A budget of `per_hour` failures, in the database when `shared`.
fn budget<K: crate::limits::failures::BudgetKey>(
    per_hour: u32,
    max: usize,
    shared: &Option<Arc<dyn ClusterStore>>,
    name: &'static str,
) -> FailureLimiter<K> {
    let l = FailureLimiter::per_hour(per_hour, max);
    match shared {
        Some(s) => l.share(s.clone(), name),
        None => l,
    }
}

/// What an attempt proved about where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A device that signed in to this account before.
    Known(DeviceId),
    /// Anything else, identified by its address.
    Unknown(IpAddr),
}

/// A charged failure.
pub struct Failed {
    /// How long to hold the answer back.
    pub delay: Duration,
    /// What to report in the `RateLimit-*` headers.
    pub decision: Decision,
    /// The budget this failure spent to the last (the audit log records
    /// that, once, rather than every refusal that follows: refusals cost
    /// no write, so they cannot be turned into a flood of fsyncs).
    pub spent: Option<&'static str>,
}

/// An admitted sign-in attempt, holding room for a failure in each budget
/// it is charged to; settle it with [`Gate::fail`] or [`Gate::succeed`].
pub struct Gate<'a> {
    throttle: &'a LoginThrottle,
    pair: Option<(String, IpAddr)>,
    attempts: Vec<Charge<'a>>,
}

enum Charge<'a> {
    Ip(Attempt<'a, IpAddr>),
    Account(Attempt<'a, String>),
    Pair(Attempt<'a, (String, IpAddr)>),
    Device(Attempt<'a, DeviceId>),
}

impl Charge<'_> {
    /// What this budget limits, as the audit log names it.
    fn what(&self) -> &'static str {
        match self {
            Charge::Ip(_) => "address",
            Charge::Account(_) => "account, unknown sources",
            Charge::Pair(_) => "account from this address",
            Charge::Device(_) => "device",
        }
    }

    fn settle(self, failed: bool) -> Decision {
        macro_rules! go {
            ($a:expr) => {
                if failed { $a.fail() } else { $a.succeed() }
            };
        }
        match self {
            Charge::Ip(a) => go!(a),
            Charge::Account(a) => go!(a),
            Charge::Pair(a) => go!(a),
            Charge::Device(a) => go!(a),
        }
    }
}

impl Gate<'_> {
    /// Charges the failure everywhere.
    pub fn fail(self) -> Failed {
        // A shared pair budget knows its count before settling; a local
        // one is asked after.
        let shared_pair = self.attempts.iter().find_map(|c| match c {
            Charge::Pair(a) => a.failures_if_failed(),
            _ => None,
        });
        let mut first = None;
        let mut spent = None;
        for c in self.attempts {
            let what = c.what();
            let d = c.settle(true);
            if d.remaining == 0 {
                spent.get_or_insert(what);
            }
            first.get_or_insert(d);
        }
        let delay = match &self.pair {
            Some(p) => self
                .throttle
                .delay_after(shared_pair.unwrap_or_else(|| self.throttle.per_source.failures(p))),
            None => Duration::ZERO,
        };
        Failed {
            delay,
            decision: first.expect("a gate charges at least one budget"),
            spent,
        }
    }

    /// Hands every reservation back; returns the decision for the headers.
    pub fn succeed(self) -> Decision {
        let mut first = None;
        for c in self.attempts {
            let d = c.settle(false);
            first.get_or_insert(d);
        }
        first.expect("a gate charges at least one budget")
    }
}

impl LoginThrottle {
    /// With `shared`, every budget lives in the database the instances
    /// share (see `limits::failures`).
    pub fn new(
        cfg: &Config,
        shared: Option<Arc<dyn ClusterStore>>,
    ) -> std::io::Result<LoginThrottle> {
        let a = &cfg.auth;
        let max = cfg.limits.max_tracked_keys;
        // Instances that share `auth.jwt_secret` accept each other's tokens;
        // they recognise each other's devices too (with a derived key, so
        // a device cookie is never a valid token).
        let devices = match &a.jwt_secret {
            Some(s) => {
                let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, s.expose().as_bytes());
                DeviceKeys::from_secret(ring::hmac::sign(&k, b"confab device cookie key").as_ref())
            }
            None => DeviceKeys::load_or_create(&cfg.data_dir)?,
        };
        Ok(LoginThrottle {
            per_account: budget(
                a.login_failures_per_account_per_hour,
                max,
                &shared,
                "account",
            ),
            per_source: budget(a.login_failures_per_source_per_hour, max, &shared, "source"),
            per_device: budget(a.login_failures_per_device_per_hour, max, &shared, "device"),
            password_change: budget(
                a.login_failures_per_device_per_hour,
                max,
                &shared,
                "password",
            ),
            second_factor: budget(
                a.two_factor_failures_per_hour,
                max,
                &shared,
                "second_factor",
            ),
            reset_mail: budget(RESET_MAILS_PER_HOUR, max, &shared, "reset_mail"),
            delay: Duration::from_millis(a.login_failure_delay_ms),
            devices,
            device_max_age: i64::try_from(a.device_cookie_days.saturating_mul(86_400))
                .unwrap_or(i64::MAX),
        })
    }

    /// The hold-back for the `n`th failure of an (account, address) pair.
    fn delay_after(&self, n: u32) -> Duration {
        if n <= FREE_FAILURES || self.delay.is_zero() {
            return Duration::ZERO;
        }
        let doublings = (n - FREE_FAILURES - 1).min(16);
        (self.delay * (1u32 << doublings)).min(MAX_DELAY)
    }

    /// Admits a sign-in attempt on `account` (a normalised name key) from
    /// `source`, or refuses it with the decision of the budget that is
    /// spent (its `reset_secs` is the wait). `per_ip` is the per-address
    /// failure budget shared with the other credential routes.
    pub async fn begin<'a>(
        &'a self,
        per_ip: &'a FailureLimiter<IpAddr>,
        account: &str,
        source: Source,
    ) -> Result<Gate<'a>, Decision> {
        match source {
            Source::Known(device) => Ok(Gate {
                throttle: self,
                pair: None,
                attempts: vec![Charge::Device(self.per_device.begin(&device).await?)],
            }),
            Source::Unknown(ip) => {
                let ip = limiter_key(ip);
                let pair = (account.to_string(), ip);
                // Earlier reservations are handed back (dropped) if a later
                // budget refuses.
                let attempts = vec![
                    Charge::Ip(per_ip.begin(&ip).await?),
                    Charge::Pair(self.per_source.begin(&pair).await?),
                    Charge::Account(self.per_account.begin(&account.to_string()).await?),
                ];
                Ok(Gate {
                    throttle: self,
                    pair: Some(pair),
                    attempts,
                })
            }
        }
    }

    /// Admits a check of the current password on a password change by
    /// `user` (already signed in, so a budget of their own).
    pub async fn begin_password_check(&self, user: Uuid) -> Result<Attempt<'_, Uuid>, Decision> {
        self.password_change.begin(&user).await
    }

    /// Drops state for keys that are back to a full budget, so memory stays
    /// bounded under attempts from many addresses or usernames.
    pub fn prune(&self) {
        self.per_account.prune();
        self.per_source.prune();
        self.per_device.prune();
        self.password_change.prune();
        self.second_factor.prune();
        self.reset_mail.prune();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AuthConfig;

    fn throttle(auth: AuthConfig) -> (LoginThrottle, FailureLimiter<IpAddr>) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            data_dir: dir.path().to_path_buf(),
            auth,
            ..Config::default()
        };
        let ip = FailureLimiter::per_minute(1000, 1000, 1000);
        (LoginThrottle::new(&cfg, None).unwrap(), ip)
    }

    #[tokio::test]
    async fn one_address_runs_out_before_the_account() {
        let (t, ip) = throttle(AuthConfig {
            login_failures_per_source_per_hour: 3,
            login_failures_per_account_per_hour: 5,
            ..AuthConfig::default()
        });
        let a = Source::Unknown(IpAddr::from([192, 0, 2, 1]));
        let b = Source::Unknown(IpAddr::from([192, 0, 2, 2]));
        let mut spent = Vec::new();
        for _ in 0..3 {
            spent.push(t.begin(&ip, "alice", a).await.unwrap().fail().spent);
        }
        assert_eq!(spent, [None, None, Some("account from this address")]);
        let refused = t.begin(&ip, "alice", a).await.err().unwrap();
        assert!(refused.reset_secs > 60, "{refused:?}");
        assert!(
            t.begin(&ip, "bob", a).await.is_ok(),
            "other accounts are open"
        );
        for _ in 0..2 {
            let _ = t.begin(&ip, "alice", b).await.unwrap().fail();
        }
        // Five failures from anywhere unknown: unknown sources are out...
        let c = Source::Unknown(IpAddr::from([192, 0, 2, 3]));
        assert!(t.begin(&ip, "alice", c).await.is_err());
        // ...but a known device is not.
        let dev = super::super::device::new_device_id();
        t.begin(&ip, "alice", Source::Known(dev))
            .await
            .unwrap()
            .succeed();
    }

    #[test]
    fn delay_doubles_after_three_failures() {
        let (t, _) = throttle(AuthConfig {
            login_failure_delay_ms: 100,
            ..AuthConfig::default()
        });
        let ms = |n| t.delay_after(n).as_millis();
        assert_eq!([ms(1), ms(3), ms(4), ms(5), ms(6)], [0, 0, 100, 200, 400]);
        assert_eq!(ms(40), 30_000);
    }
}
