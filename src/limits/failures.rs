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

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::rate::Decision;

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

    /// Reserves room for one failure of `key`, or refuses: the decision
    /// then carries the seconds until one more attempt fits.
    pub fn begin(&self, key: &K) -> Result<Attempt<'_, K>, Decision> {
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

/// One attempt holding room for a failure in a [`FailureLimiter`].
#[must_use = "an attempt is settled with fail() or succeed()"]
pub struct Attempt<'a, K: Hash + Eq + Clone> {
    limiter: &'a FailureLimiter<K>,
    key: Option<K>,
}

impl<K: Hash + Eq + Clone> Attempt<'_, K> {
    /// Charges the failure; the decision tells what is left.
    pub fn fail(mut self) -> Decision {
        let key = self.key.take().expect("settled once");
        self.limiter.settle(&key, true)
    }

    /// Hands the reserved room back: successes cost nothing.
    pub fn succeed(mut self) -> Decision {
        let key = self.key.take().expect("settled once");
        self.limiter.settle(&key, false)
    }
}

impl<K: Hash + Eq + Clone> Drop for Attempt<'_, K> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.limiter.settle(&key, false);
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
            let d = l.begin(&1).unwrap().succeed();
            assert_eq!((d.remaining, d.reset_secs), (3, 0));
        }
        for left in [2, 1, 0] {
            let d = l.begin(&1).unwrap().fail();
            assert_eq!(d.remaining, left);
        }
        assert_eq!(l.failures(&1), 3);
        let refused = l.begin(&1).err().expect("budget spent");
        assert!(!refused.allowed);
        // One failure leaks away every 20 minutes.
        assert!((1199..=1200).contains(&refused.reset_secs), "{refused:?}");
        assert!(!l.would_allow(&1));
        assert!(l.would_allow(&2), "keys are independent");
    }

    #[test]
    fn reservations_bound_concurrent_attempts() {
        let l: FailureLimiter<u32> = FailureLimiter::per_hour(2, 100);
        let a = l.begin(&1).unwrap();
        let b = l.begin(&1).unwrap();
        assert!(l.begin(&1).is_err(), "two in flight fill a budget of two");
        drop(a);
        let c = l.begin(&1).expect("a dropped attempt hands its room back");
        b.fail();
        c.fail();
        assert!(l.begin(&1).is_err());
    }

    #[test]
    fn fast_refill_and_prune() {
        let l: FailureLimiter<u32> = FailureLimiter::new(1, Duration::from_micros(1), 100);
        for k in 0..50 {
            l.begin(&k).unwrap().fail();
        }
        let later = Instant::now() + Duration::from_millis(1);
        while Instant::now() < later {
            std::hint::spin_loop();
        }
        l.prune();
        assert!(l.is_empty());
    }
}
