//! Keyed budgets of *failures* (failed sign-ins, wrong setup tokens, bad
//! invite codes): a bucket of `burst` failures per key that leaks one
//! failure per `period`, like the GCRA of [`super::rate`], except that an
//! attempt is only charged once its outcome is known.
//!
//! governor charges a cell at the check and has no way to give it back, so
//! it cannot tell a success (free) from a failure (charged) that is only
//! known after the password was hashed. Here an attempt first *reserves*
//! room ([`FailureLimiter::begin`]), so a burst of concurrent guesses cannot
//! all slip past the check before the first one fails; the reservation then
//! becomes a failure ([`Attempt::fail`]) or is handed back
//! ([`Attempt::succeed`], or dropping the attempt: an answer never sent
//! taught the caller nothing).
//!
//! With several instances on one database ([`FailureLimiter::share`]) the
//! bucket, reservations included, lives in the database, so guessing spread
//! over N instances gets no more tries than guessing on one. A reservation
//! of an instance that died mid-attempt stops counting after
//! [`PENDING_TTL`]. When the database cannot be reached the instance's own
//! bucket answers (logged).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

use super::rate::Decision;
use crate::store::cluster::{ClusterStore, FailureState};

/// How long a shared reservation counts without being settled (an attempt
/// hashes one password; an instance that died mid-attempt never settles).
pub const PENDING_TTL: Duration = Duration::from_secs(60);

/// A key as the shared buckets name it.
pub trait BudgetKey: Hash + Eq + Clone {
    fn shared_key(&self) -> String;
}

impl BudgetKey for IpAddr {
    fn shared_key(&self) -> String {
        self.to_string()
    }
}

impl BudgetKey for String {
    fn shared_key(&self) -> String {
        self.clone()
    }
}

impl BudgetKey for Uuid {
    fn shared_key(&self) -> String {
        self.simple().to_string()
    }
}

impl BudgetKey for [u8; 16] {
    fn shared_key(&self) -> String {
        hex::encode(self)
    }
}

impl BudgetKey for (String, IpAddr) {
    fn shared_key(&self) -> String {
        format!("{}@{}", self.1, self.0)
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// When every recorded failure will have leaked away (the GCRA
    /// "theoretical arrival time"); at or before now = an empty bucket.
    empty_at: Instant,
    /// Attempts under way, each holding room for one failure.
    pending: u32,
}

pub struct FailureLimiter<K: Hash + Eq + Clone> {
    buckets: Mutex<HashMap<K, Bucket>>,
    burst: u32,
    period: Duration,
    max_keys: usize,
    /// New keys seen while over `max_keys`; every 1024th prunes, so a flood
    /// of new keys neither grows the map freely nor costs a scan each.
    over_cap: AtomicU64,
    /// The buckets every instance shares, with this budget's name as the
    /// key prefix; None: this process's own.
    shared: Option<(Arc<dyn ClusterStore>, &'static str)>,
    /// When a shared-budget failure was last logged (unix seconds).
    last_error: AtomicU64,
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl<K: Hash + Eq + Clone> FailureLimiter<K> {
    /// `burst` failures at once, then one more per `period`.
    pub fn new(burst: u32, period: Duration, max_keys: usize) -> Self {
        FailureLimiter {
            buckets: Mutex::new(HashMap::new()),
            burst: burst.max(1),
            period: period.max(Duration::from_nanos(1)),
            max_keys,
            over_cap: AtomicU64::new(0),
            shared: None,
            last_error: AtomicU64::new(0),
        }
    }

    /// Keeps the buckets in the database every instance shares; `name`
    /// tells this budget's keys from the others'.
    pub fn share(mut self, store: Arc<dyn ClusterStore>, name: &'static str) -> Self {
        self.shared = Some((store, name));
        self
    }

    fn period_us(&self) -> i64 {
        i64::try_from(self.period.as_micros())
            .unwrap_or(i64::MAX)
            .max(1)
    }

    /// Reserves room for one failure of `key` (in the shared bucket when
    /// there is one), or refuses with the seconds until one more fits.
    pub async fn begin(&self, key: &K) -> Result<Attempt<'_, K>, Decision>
    where
        K: BudgetKey,
    {
        if let Some((store, name)) = &self.shared {
            let shared_key = format!("{name}:{}", key.shared_key());
            match store
                .failure_begin(&shared_key, self.period_us(), self.burst, PENDING_TTL)
                .await
            {
                Ok(st) if st.allowed => {
                    return Ok(Attempt {
                        limiter: self,
                        key: Some(key.clone()),
                        shared: Some(SharedAttempt {
                            store: store.clone(),
                            key: shared_key,
                            state: st,
                        }),
                    });
                }
                Ok(st) => return Err(self.shared_refusal(&st)),
                Err(e) => {
                    let now = crate::clock::now() as u64;
                    if self.last_error.swap(now, Ordering::Relaxed) + 60 <= now {
                        tracing::error!(budget = *name, error = %e, "shared sign-in budget unavailable; this instance's own applies");
                    }
                }
            }
        }
        self.begin_local(key)
    }

    /// The refusal of a shared bucket in state `st`.
    fn shared_refusal(&self, st: &FailureState) -> Decision {
        let p = self.period_us();
        let debt = (st.empty_at_us - st.now_us).max(0);
        let needed = debt + p * (i64::from(st.pending) + 1);
        let cap = p * i64::from(self.burst);
        Decision {
            allowed: false,
            limit: self.burst,
            remaining: 0,
            reset_secs: ceil_secs(Duration::from_micros((needed - cap).max(0) as u64)).max(1),
        }
    }

    /// What a shared attempt's settling leaves, from the state it began in
    /// (the settle itself is written in the background).
    fn shared_decision(&self, st: &FailureState, failed: bool) -> Decision {
        let p = self.period_us();
        let debt = (st.empty_at_us - st.now_us).max(0) + if failed { p } else { 0 };
        // This attempt's reservation ends; the others' still hold room.
        let others = i64::from(st.pending.saturating_sub(1));
        let cap = p * i64::from(self.burst);
        let remaining = ((cap - debt - p * others) / p).clamp(0, i64::from(self.burst));
        Decision {
            allowed: true,
            limit: self.burst,
            remaining: remaining as u32,
            reset_secs: ceil_secs(Duration::from_micros(debt as u64)),
        }
    }

    /// `burst` failures at once, refilling at `per_minute`.
    pub fn per_minute(per_minute: u32, burst: u32, max_keys: usize) -> Self {
        Self::new(burst, Duration::from_secs(60) / per_minute.max(1), max_keys)
    }

    /// `per_hour` failures per hour, all of them at once if need be.
    pub fn per_hour(per_hour: u32, max_keys: usize) -> Self {
        Self::new(
            per_hour,
            Duration::from_secs(3600) / per_hour.max(1),
            max_keys,
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Bucket>> {
        // A panic while holding this lock cannot leave a bucket half
        // written (every update is one assignment), so poison is harmless.
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The debt of `b` at `now`: time until its failures have leaked away.
    fn debt(b: &Bucket, now: Instant) -> Duration {
        b.empty_at.saturating_duration_since(now)
    }

    fn decision(&self, b: &Bucket, now: Instant, allowed: bool) -> Decision {
        let used = Self::debt(b, now) + self.period * b.pending;
        let cap = self.period * self.burst;
        let remaining = cap.saturating_sub(used).as_nanos() / self.period.as_nanos();
        Decision {
            allowed,
            limit: self.burst,
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            reset_secs: ceil_secs(Self::debt(b, now)),
        }
    }

    /// Reserves room for one failure of `key` in this process's bucket, or
    /// refuses: the decision then carries the seconds until one more
    /// attempt fits.
    pub fn begin_local(&self, key: &K) -> Result<Attempt<'_, K>, Decision> {
        let now = Instant::now();
        let mut map = self.lock();
        if map.len() >= self.max_keys
            && !map.contains_key(key)
            && self
                .over_cap
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(1024)
        {
            map.retain(|_, b| b.pending > 0 || b.empty_at > now);
        }
        let b = map.entry(key.clone()).or_insert(Bucket {
            empty_at: now,
            pending: 0,
        });
        let needed = Self::debt(b, now) + self.period * (b.pending + 1);
        let cap = self.period * self.burst;
        if needed > cap {
            let mut d = self.decision(b, now, false);
            d.reset_secs = ceil_secs(needed - cap).max(1);
            return Err(d);
        }
        b.pending += 1;
        Ok(Attempt {
            limiter: self,
            key: Some(key.clone()),
            shared: None,
        })
    }

    /// Whether `key` could begin an attempt now (nothing is reserved).
    pub fn would_allow(&self, key: &K) -> bool {
        let now = Instant::now();
        self.lock().get(key).is_none_or(|b| {
            Self::debt(b, now) + self.period * (b.pending + 1) <= self.period * self.burst
        })
    }

    /// Failures of `key` that have not leaked away yet (rounded up).
    pub fn failures(&self, key: &K) -> u32 {
        let now = Instant::now();
        self.lock().get(key).map_or(0, |b| {
            let n = Self::debt(b, now)
                .as_nanos()
                .div_ceil(self.period.as_nanos());
            u32::try_from(n).unwrap_or(u32::MAX)
        })
    }

    fn settle(&self, key: &K, failed: bool) -> Decision {
        let now = Instant::now();
        let mut map = self.lock();
        let Some(b) = map.get_mut(key) else {
            // Pruned while pending cannot happen (pending buckets are kept);
            // answer as for a fresh key.
            return Decision {
                allowed: true,
                limit: self.burst,
                remaining: self.burst,
                reset_secs: 0,
            };
        };
        b.pending = b.pending.saturating_sub(1);
        if failed {
            b.empty_at = b.empty_at.max(now) + self.period;
        }
        let b = *b;
        self.decision(&b, now, true)
    }

    /// Forgets keys with an empty bucket and nothing under way (they behave
    /// exactly like unseen keys), so memory stays bounded.
    pub fn prune(&self) {
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, b| b.pending > 0 || b.empty_at > now);
        map.shrink_to_fit();
    }

    /// Keys tracked right now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A reservation in a shared bucket.
struct SharedAttempt {
    store: Arc<dyn ClusterStore>,
    key: String,
    /// The bucket when the room was reserved.
    state: FailureState,
}

/// One attempt holding room for a failure in a [`FailureLimiter`].
#[must_use = "an attempt is settled with fail() or succeed()"]
pub struct Attempt<'a, K: Hash + Eq + Clone> {
    limiter: &'a FailureLimiter<K>,
    key: Option<K>,
    shared: Option<SharedAttempt>,
}

impl<K: Hash + Eq + Clone> Attempt<'_, K> {
    /// Charges the failure; the decision tells what is left.
    pub fn fail(mut self) -> Decision {
        let key = self.key.take().expect("settled once");
        self.settle(&key, true)
    }

    /// Hands the reserved room back: successes cost nothing.
    pub fn succeed(mut self) -> Decision {
        let key = self.key.take().expect("settled once");
        self.settle(&key, false)
    }

    /// For a shared bucket: its failures once this attempt fails (the
    /// local bucket answers [`FailureLimiter::failures`] instead).
    pub fn failures_if_failed(&self) -> Option<u32> {
        let sh = self.shared.as_ref()?;
        let debt = (sh.state.empty_at_us - sh.state.now_us).max(0);
        let p = self.limiter.period_us();
        let n = (debt + p - 1) / p + 1;
        Some(u32::try_from(n).unwrap_or(u32::MAX))
    }

    fn settle(&mut self, key: &K, failed: bool) -> Decision {
        let Some(sh) = self.shared.take() else {
            return self.limiter.settle(key, failed);
        };
        let d = self.limiter.shared_decision(&sh.state, failed);
        let period = self.limiter.period_us();
        // Written in the background: meanwhile the reservation still holds
        // the room the failure takes, so nothing slips through.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = sh.store.failure_settle(&sh.key, period, failed).await {
                    tracing::warn!(error = %e, "cannot settle a shared sign-in budget");
                }
            });
        }
        d
    }
}

impl<K: Hash + Eq + Clone> Drop for Attempt<'_, K> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.settle(&key, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_are_charged() {
        let l: FailureLimiter<u32> = FailureLimiter::per_hour(3, 100);
        for _ in 0..10 {
            let d = l.begin_local(&1).unwrap().succeed();
            assert_eq!((d.remaining, d.reset_secs), (3, 0));
        }
        for left in [2, 1, 0] {
            let d = l.begin_local(&1).unwrap().fail();
            assert_eq!(d.remaining, left);
        }
        assert_eq!(l.failures(&1), 3);
        let refused = l.begin_local(&1).err().expect("budget spent");
        assert!(!refused.allowed);
        // One failure leaks away every 20 minutes.
        assert!((1199..=1200).contains(&refused.reset_secs), "{refused:?}");
        assert!(!l.would_allow(&1));
        assert!(l.would_allow(&2), "keys are independent");
    }

    #[test]
    fn reservations_bound_concurrent_attempts() {
        let l: FailureLimiter<u32> = FailureLimiter::per_hour(2, 100);
        let a = l.begin_local(&1).unwrap();
        let b = l.begin_local(&1).unwrap();
        assert!(
            l.begin_local(&1).is_err(),
            "two in flight fill a budget of two"
        );
        drop(a);
        let c = l
            .begin_local(&1)
            .expect("a dropped attempt hands its room back");
        b.fail();
        c.fail();
        assert!(l.begin_local(&1).is_err());
    }

    #[test]
    fn fast_refill_and_prune() {
        let l: FailureLimiter<u32> = FailureLimiter::new(1, Duration::from_micros(1), 100);
        for k in 0..50 {
            l.begin_local(&k).unwrap().fail();
        }
        let later = Instant::now() + Duration::from_millis(1);
        while Instant::now() < later {
            std::hint::spin_loop();
        }
        l.prune();
        assert!(l.is_empty());
    }
}
