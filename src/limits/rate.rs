//! Keyed request rate limits (governor's GCRA): a bucket of `burst`
//! requests per key that refills at the configured rate. Each check also
//! yields what the IETF `RateLimit-*` headers report.
//!
//! With several instances on one database ([`Limiter::share`]) the bucket
//! lives in the database instead: one statement per check moves the same
//! GCRA state for every instance, so N instances do not give N times the
//! limit. When the database cannot be reached the instance's own bucket
//! answers (logged), so an outage of the limiter never refuses everyone.

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
use std::sync::Arc;

use crate::store::cluster::{ClusterStore, RateState};

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
    /// The buckets every instance shares, with this limiter's name as the
    /// key prefix; None: this process's own.
    shared: Option<(Arc<dyn ClusterStore>, &'static str)>,
    /// When the last shared-check failure was logged (unix seconds).
    last_error: AtomicU64,
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
            shared: None,
            last_error: AtomicU64::new(0),
        }
    }

    /// Keeps the buckets in the database, shared by every instance on it;
    /// `name` tells this limiter's keys from the others'.
    pub fn share(mut self, store: Arc<dyn ClusterStore>, name: &'static str) -> Self {
        self.shared = Some((store, name));
        self
    }

    /// Whether the buckets are shared with other instances.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Counts one request for `key`: in the shared bucket when there is
    /// one, else (or when the database fails) in this process's.
    pub async fn check(&self, key: &K) -> Decision
    where
        K: std::fmt::Display,
    {
        let Some((store, name)) = &self.shared else {
            return self.check_local(key);
        };
        let period = i64::try_from(self.replenish.as_micros())
            .unwrap_or(i64::MAX)
            .max(1);
        match store
            .rate_check(&format!("{name}:{key}"), period, self.burst)
            .await
        {
            Ok(st) => self.decide(st, period),
            Err(e) => {
                let now = crate::clock::now() as u64;
                if self.last_error.swap(now, Ordering::Relaxed) + 60 <= now {
                    tracing::error!(limiter = *name, error = %e, "shared rate limit unavailable; this instance's own limit applies");
                }
                self.check_local(key)
            }
        }
    }

    /// The decision for a shared check's state.
    fn decide(&self, st: RateState, period: i64) -> Decision {
        let burst = i64::from(self.burst);
        let debt = (st.tat_us - st.now_us).max(0);
        let micros = |us: i64| ceil_secs(Duration::from_micros(us.max(0) as u64));
        if st.allowed {
            let remaining = ((burst * period - debt) / period).clamp(0, burst);
            Decision {
                allowed: true,
                limit: self.burst,
                remaining: remaining as u32,
                reset_secs: micros(debt),
            }
        } else {
            Decision {
                allowed: false,
                limit: self.burst,
                remaining: 0,
                reset_secs: micros(debt - (burst - 1) * period).max(1),
            }
        }
    }

    /// Counts one request for `key` in this process's bucket.
    pub fn check_local(&self, key: &K) -> Decision {
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
    /// With `shared`, the anon, api and chat buckets live in the database
    /// every instance uses.
    pub fn new(
        l: &LimitsConfig,
        a: &AuthConfig,
        shared: Option<Arc<dyn ClusterStore>>,
    ) -> RateLimits {
        let max = l.max_tracked_keys;
        let mut anon = Limiter::per_minute(l.anon_per_minute, l.anon_burst, max);
        let mut api = Limiter::per_minute(l.api_per_minute, l.api_burst, max);
        let mut chat = Limiter::per_minute(l.chat_per_minute, l.chat_burst, max);
        let mut auth = FailureLimiter::per_minute(a.login_per_ip_per_minute, a.login_burst, max);
        if let Some(s) = shared {
            anon = anon.share(s.clone(), "anon");
            api = api.share(s.clone(), "api");
            chat = chat.share(s.clone(), "chat");
            auth = auth.share(s, "ip");
        }
        RateLimits {
            enabled: l.enabled,
            anon,
            auth,
            api,
            chat,
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
        let d = l.check_local(&1);
        assert!(d.allowed);
        assert_eq!((d.limit, d.remaining), (3, 2));
        assert_eq!(d.reset_secs, 1, "one used, one per second refills it");
        l.check_local(&1);
        let d = l.check_local(&1);
        assert!(d.allowed && d.remaining == 0 && d.reset_secs == 3);
        let d = l.check_local(&1);
        assert!(!d.allowed);
        assert_eq!(d.reset_secs, 1);
        let mut h = HeaderMap::new();
        d.apply(&mut h);
        assert_eq!(h["retry-after"], "1");
        assert_eq!(h["ratelimit-remaining"], "0");
        assert!(l.check_local(&2).allowed, "other keys are independent");
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
            assert!(l.check_local(&k).allowed);
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
            l.check_local(&k);
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
