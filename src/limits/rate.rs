//! Keyed request rate limits (governor's GCRA): a bucket of `burst`
//! requests per key that refills at the configured rate. Each check also
//! yields what the IETF `RateLimit-*` headers report.

use axum::http::{HeaderMap, HeaderValue, header};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use uuid::Uuid;

use std::cell::Cell;
use std::future::Future;

use super::failures::FailureLimiter;
use crate::config::{AuthConfig, LimitsConfig};

/// How often (in checks) a limiter looks at its size between the periodic
/// prunes, so a flood of new keys cannot grow it without bound.
const SIZE_CHECK_EVERY: u64 = 1024;

/// The outcome of one check, with what the headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The bucket size (`RateLimit-Limit`).
    pub limit: u32,
    /// Requests left right now (`RateLimit-Remaining`).
    pub remaining: u32,
    /// Seconds until the bucket is full again, or (refused) until the next
    /// request is allowed (`RateLimit-Reset`, and `Retry-After` when refused).
    pub reset_secs: u64,
}

impl Decision {
    /// Writes `RateLimit-Limit/Remaining/Reset`, and `Retry-After` when refused.
    pub fn apply(&self, h: &mut HeaderMap) {
        h.insert("ratelimit-limit", HeaderValue::from(self.limit));
        h.insert("ratelimit-remaining", HeaderValue::from(self.remaining));
        h.insert("ratelimit-reset", HeaderValue::from(self.reset_secs));
        if !self.allowed {
            h.insert(
                header::RETRY_AFTER,
                HeaderValue::from(self.reset_secs.max(1)),
            );
        }
    }
}

type Inner<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// One keyed limiter.
pub struct Limiter<K: Hash + Eq + Clone> {
    inner: Inner<K>,
    burst: u32,
    replenish: Duration,
    clock: DefaultClock,
    max_keys: usize,
    checks: AtomicU64,
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).expect("max(1) is non-zero")
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// `per_minute` sustained, bursts of `burst`.
    pub fn per_minute(per_minute: u32, burst: u32, max_keys: usize) -> Self {
        Self::with_quota(
            Quota::per_minute(nz(per_minute)).allow_burst(nz(burst)),
            max_keys,
        )
    }

    pub fn with_quota(quota: Quota, max_keys: usize) -> Self {
        let clock = DefaultClock::default();
        Limiter {
            inner: RateLimiter::dashmap_with_clock(quota, clock.clone())
                .with_middleware::<StateInformationMiddleware>(),
            burst: quota.burst_size().get(),
            replenish: quota.replenish_interval(),
            clock,
            max_keys,
            checks: AtomicU64::new(0),
        }
    }

    /// Counts one request for `key`.
    pub fn check(&self, key: &K) -> Decision {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SIZE_CHECK_EVERY == SIZE_CHECK_EVERY - 1
            && self.inner.len() > self.max_keys
        {
            self.prune();
        }
        match self.inner.check_key(key) {
            Ok(snap) => {
                let remaining = snap.remaining_burst_capacity();
                let used = self.burst.saturating_sub(remaining);
                Decision {
                    allowed: true,
                    limit: self.burst,
                    remaining,
                    reset_secs: ceil_secs(self.replenish * used),
                }
            }
            Err(not_until) => Decision {
                allowed: false,
                limit: self.burst,
                remaining: 0,
                reset_secs: ceil_secs(not_until.wait_time_from(self.clock.now())).max(1),
            },
        }
    }

    /// Forgets keys whose bucket is full again (they behave exactly like
    /// unseen keys) and gives the memory back.
    pub fn prune(&self) {
        self.inner.retain_recent();
        self.inner.shrink_to_fit();
    }

    /// Keys tracked right now.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

/// Which limiter a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Unauthenticated API requests, per client IP.
    Anon,
    /// Failed sign-ins, registrations, refreshes and setups, per client IP.
    Auth,
    /// Signed-in API requests, per user.
    Api,
    /// New answers, per user.
    Chat,
    /// The cap on answers running at once, per user.
    Concurrency,
}

impl Class {
    pub fn label(self) -> &'static str {
        match self {
            Class::Anon => "anon",
            Class::Auth => "auth",
            Class::Api => "api",
            Class::Chat => "chat",
            Class::Concurrency => "concurrency",
        }
    }
}

/// Every request limiter of the server.
pub struct RateLimits {
    pub enabled: bool,
    pub anon: Limiter<IpAddr>,
    /// Failed sign-ins, registrations, setups and refreshes per client
    /// address (successes are free); see `auth::throttle`.
    pub auth: FailureLimiter<IpAddr>,
    pub api: Limiter<Uuid>,
    pub chat: Limiter<Uuid>,
}

impl RateLimits {
    /// The auth limiter keeps its historic settings under `[auth]`.
    pub fn new(l: &LimitsConfig, a: &AuthConfig) -> RateLimits {
        let max = l.max_tracked_keys;
        RateLimits {
            enabled: l.enabled,
            anon: Limiter::per_minute(l.anon_per_minute, l.anon_burst, max),
            auth: FailureLimiter::per_minute(a.login_per_ip_per_minute, a.login_burst, max),
            api: Limiter::per_minute(l.api_per_minute, l.api_burst, max),
            chat: Limiter::per_minute(l.chat_per_minute, l.chat_burst, max),
        }
    }

    pub fn prune(&self) {
        self.anon.prune();
        self.auth.prune();
        self.api.prune();
        self.chat.prune();
    }

    /// (limiter, tracked keys), for the metrics.
    pub fn sizes(&self) -> [(&'static str, usize); 4] {
        [
            ("anon", self.anon.len()),
            ("auth", self.auth.len()),
            ("api", self.api.len()),
            ("chat", self.chat.len()),
        ]
    }
}

tokio::task_local! {
    /// A more specific limiter's decision (the chat limiter, set inside the
    /// handler), reported in the headers instead of the API limiter's.
    static DECISION: Cell<Option<Decision>>;
}

/// Lets the response report `d` in its `RateLimit-*` headers.
pub fn note_decision(d: Decision) {
    let _ = DECISION.try_with(|c| c.set(Some(d)));
}

/// Runs `fut`, returning with its output the decision noted inside it
/// ([`note_decision`]), if any.
pub async fn noting<T>(fut: impl Future<Output = T>) -> (T, Option<Decision>) {
    DECISION
        .scope(Cell::new(None), async {
            let out = fut.await;
            (out, DECISION.with(|c| c.get()))
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refuse_with_reset() {
        let l: Limiter<u32> = Limiter::per_minute(60, 3, 1000);
        let d = l.check(&1);
        assert!(d.allowed);
        assert_eq!((d.limit, d.remaining), (3, 2));
        assert_eq!(d.reset_secs, 1, "one used, one per second refills it");
        l.check(&1);
        let d = l.check(&1);
        assert!(d.allowed && d.remaining == 0 && d.reset_secs == 3);
        let d = l.check(&1);
        assert!(!d.allowed);
        assert_eq!(d.reset_secs, 1);
        let mut h = HeaderMap::new();
        d.apply(&mut h);
        assert_eq!(h["retry-after"], "1");
        assert_eq!(h["ratelimit-remaining"], "0");
        assert!(l.check(&2).allowed, "other keys are independent");
    }

    #[test]
    fn many_keys_are_pruned() {
        // 100,000 distinct keys (an attack from many addresses) with a
        // fast refill: once their buckets are full again they are dropped.
        let quota = Quota::with_period(Duration::from_micros(50))
            .unwrap()
            .allow_burst(nz(1));
        let l: Limiter<u32> = Limiter::with_quota(quota, 1_000_000);
        for k in 0..100_000u32 {
            assert!(l.check(&k).allowed);
        }
        assert_eq!(l.len(), 100_000);
        std::thread::sleep(Duration::from_millis(20));
        l.prune();
        assert_eq!(l.len(), 0, "every key was back to a full bucket");
    }

    #[test]
    fn size_cap_prunes_without_waiting_for_maintenance() {
        let quota = Quota::with_period(Duration::from_micros(10))
            .unwrap()
            .allow_burst(nz(1));
        let l: Limiter<u32> = Limiter::with_quota(quota, 1000);
        for k in 0..100_000u32 {
            l.check(&k);
        }
        // Checked every 1024 requests: at most the cap plus one interval
        // (plus the keys still refilling) is ever held.
        assert!(
            l.len() <= 1000 + 2 * SIZE_CHECK_EVERY as usize,
            "{}",
            l.len()
        );
    }
}
