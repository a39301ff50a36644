//! Daily quotas with in-flight reservations.
//!
//! Before an answer starts, [`Quotas::reserve`] counts the user's usage of
//! today plus every answer still running, and admits the new one only if
//! one more message (and its estimated input) fits. The reservation is
//! settled with the exact usage once the answer ends. So concurrent
//! requests can never be admitted past the message limit, and can pass the
//! token limit only by what the answers already running still produce.
//!
//! Each user has one async lock: the store write of a charge and the
//! in-memory totals change under it together, so the totals always equal
//! what `usage_daily` holds, even across midnight.
//!
//! With several instances on one database ([`Quotas::new`] with a
//! cluster) the reservations are rows in the database instead, admitted
//! and settled in transactions that take the user's lock there, so the
//! limits are exact across instances; a reservation of an instance that
//! died stops counting when its lease runs out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

use crate::store::cluster::{ClusterStore, QuotaAsk, QuotaRefused};
use crate::store::usage::Charge;
use crate::store::{QuotaOverride, SharedStore, StoreResult};

/// The limits that apply to one user today (None = unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Effective {
    pub messages_per_day: Option<u64>,
    pub tokens_per_day: Option<u64>,
}

impl Effective {
    /// The user's override where set, else the server default.
    pub fn resolve(user: Option<&QuotaOverride>, default: &crate::config::QuotaConfig) -> Self {
        Effective {
            messages_per_day: user
                .and_then(|q| q.messages_per_day)
                .or(default.messages_per_day),
            tokens_per_day: user
                .and_then(|q| q.tokens_per_day)
                .or(default.tokens_per_day),
        }
    }
}

/// Why an answer may not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Messages { limit: u64, used: u64 },
    Tokens { limit: u64, used: u64 },
    Concurrency { limit: u32 },
}

#[derive(Debug, Clone, Copy, Default)]
struct DayTotals {
    day: u32,
    messages: u64,
    tokens: u64,
}

#[derive(Debug, Default)]
struct UserState {
    running: u32,
    reserved_tokens: u64,
    today: Option<DayTotals>,
    /// How many times `today` was read from the store: a charge written
    /// outside the lock knows whether a read may already include it.
    loads: u64,
    /// Charges being written outside the lock.
    pending: u32,
}

type Slot = Arc<tokio::sync::Mutex<UserState>>;

#[derive(Default)]
pub struct Quotas {
    users: Mutex<HashMap<Uuid, Slot>>,
    /// Woken whenever a charge written outside a user's lock is applied,
    /// for [`Quotas::today`] readers waiting for it.
    settled: tokio::sync::Notify,
    /// Reservations in the database every instance shares.
    shared: Option<Shared>,
}

struct Shared {
    store: Arc<dyn ClusterStore>,
    instance: Uuid,
    /// Reservations this instance holds (for the metrics).
    running: AtomicU64,
}

/// What a user has used today and has running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Today {
    pub messages: u64,
    pub tokens: u64,
    pub running: u32,
}

impl Quotas {
    /// This process's reservations, or with `shared` (the cluster store
    /// and this instance's id) the database's.
    pub fn new(shared: Option<(Arc<dyn ClusterStore>, Uuid)>) -> Arc<Quotas> {
        Arc::new(Quotas {
            shared: shared.map(|(store, instance)| Shared {
                store,
                instance,
                running: AtomicU64::new(0),
            }),
            ..Quotas::default()
        })
    }

    fn slot(&self, user: Uuid) -> Slot {
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(user)
            .or_default()
            .clone()
    }

    async fn ensure_today(
        st: &mut UserState,
        store: &SharedStore,
        user: Uuid,
        day: u32,
    ) -> StoreResult<()> {
        if st.today.is_none_or(|t| t.day != day) {
            let c = store.usage_user_day(user, day).await?;
            st.loads += 1;
            st.today = Some(DayTotals {
                day,
                messages: c.messages,
                tokens: c.input_tokens + c.output_tokens,
            });
        }
        Ok(())
    }

    /// Admits one answer of `user`, reserving one message and
    /// `estimate` tokens until it is settled.
    pub async fn reserve(
        self: &Arc<Self>,
        store: &SharedStore,
        user: Uuid,
        quota: Effective,
        max_running: u32,
        estimate: u64,
    ) -> Result<Result<Reservation, Refusal>, crate::store::StoreError> {
        if let Some(sh) = &self.shared {
            let ask = QuotaAsk {
                id: Uuid::now_v7(),
                user,
                day: crate::clock::today(),
                instance: sh.instance,
                estimate,
                messages_per_day: quota.messages_per_day,
                tokens_per_day: quota.tokens_per_day,
                max_running,
            };
            return Ok(match sh.store.quota_reserve(&ask).await? {
                Ok(()) => {
                    sh.running.fetch_add(1, Ordering::Relaxed);
                    Ok(Reservation {
                        quotas: self.clone(),
                        user,
                        estimate,
                        done: false,
                        shared_id: Some(ask.id),
                    })
                }
                Err(QuotaRefused::Messages { limit, used }) => {
                    Err(Refusal::Messages { limit, used })
                }
                Err(QuotaRefused::Tokens { limit, used }) => Err(Refusal::Tokens { limit, used }),
                Err(QuotaRefused::Concurrency { limit }) => Err(Refusal::Concurrency { limit }),
            });
        }
        let slot = self.slot(user);
        let mut st = slot.lock().await;
        if st.running >= max_running {
            return Ok(Err(Refusal::Concurrency { limit: max_running }));
        }
        let day = crate::clock::today();
        Self::ensure_today(&mut st, store, user, day).await?;
        let t = st.today.unwrap_or_default();
        if let Some(limit) = quota.messages_per_day {
            let used = t.messages + u64::from(st.running);
            if used + 1 > limit {
                return Ok(Err(Refusal::Messages {
                    limit,
                    used: t.messages,
                }));
            }
        }
        if let Some(limit) = quota.tokens_per_day {
            let used = t.tokens + st.reserved_tokens;
            if used + estimate.max(1) > limit {
                return Ok(Err(Refusal::Tokens {
                    limit,
                    used: t.tokens,
                }));
            }
        }
        st.running += 1;
        st.reserved_tokens += estimate;
        Ok(Ok(Reservation {
            quotas: self.clone(),
            user,
            estimate,
            done: false,
            shared_id: None,
        }))
    }

    /// Writes `charge` to the store, then (under the user's lock) to
    /// today's totals; with `release`, also ends that reservation.
    ///
    /// The store write (an fsync) happens outside the lock, so admitting the
    /// user's next answer never waits for the disk. Meanwhile the answer
    /// still counts as running, so nothing is admitted beyond the quota;
    /// and when today's totals were read from the store in between (they
    /// may already hold this charge) they are dropped and read again, so
    /// nothing is counted twice. Reports ([`Quotas::today`]) wait for
    /// charges under way, so usage read after an answer includes it.
    async fn apply(
        &self,
        store: &SharedStore,
        user: Uuid,
        charge: Option<Charge>,
        release: Option<u64>,
    ) -> StoreResult<()> {
        let slot = self.slot(user);
        let mut result = Ok(());
        let mut written = None;
        let charge = charge.filter(|c| !c.is_empty());
        let charge_started = charge.is_some();
        if let Some(c) = charge {
            let loads = {
                let mut st = slot.lock().await;
                st.pending += 1;
                st.loads
            };
            let day = crate::clock::today();
            result = store.charge_usage(user, day, &c).await;
            if result.is_ok() {
                written = Some((loads, day, c));
            }
        }
        let mut st = slot.lock().await;
        let was_pending = charge_started;
        if was_pending {
            st.pending -= 1;
        }
        if let Some((loads, day, c)) = written {
            let unread = st.loads == loads;
            match &mut st.today {
                Some(t) if t.day == day && unread => {
                    t.messages += c.messages;
                    t.tokens += c.input_tokens + c.output_tokens;
                }
                // Read meanwhile, or another day: read again on next use.
                _ => st.today = None,
            }
        }
        if let Some(estimate) = release {
            st.running = st.running.saturating_sub(1);
            st.reserved_tokens = st.reserved_tokens.saturating_sub(estimate);
        }
        drop(st);
        if was_pending {
            self.settled.notify_waiters();
        }
        result
    }

    /// Settles a reservation in the database: the charge and the end of
    /// the reservation in one transaction, retried for about 20 s (a
    /// failover; while it is not settled it still counts as running).
    async fn settle_shared(
        sh: &Shared,
        id: Uuid,
        user: Uuid,
        charge: Option<&Charge>,
    ) -> StoreResult<()> {
        let day = crate::clock::today();
        let mut wait = std::time::Duration::from_millis(200);
        let mut tries = 0;
        loop {
            match sh.store.quota_settle(Some(id), user, day, charge).await {
                Ok(()) => {
                    sh.running.fetch_sub(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(e) if tries >= 8 => {
                    sh.running.fetch_sub(1, Ordering::Relaxed);
                    return Err(e);
                }
                Err(e) => {
                    tracing::warn!(%user, error = %e, "settling a quota reservation failed; trying again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(std::time::Duration::from_secs(5));
                    tries += 1;
                }
            }
        }
    }

    /// Charges usage that had no reservation (title generation).
    pub async fn charge(&self, store: &SharedStore, user: Uuid, charge: Charge) -> StoreResult<()> {
        if let Some(sh) = &self.shared {
            if charge.is_empty() {
                return Ok(());
            }
            return sh
                .store
                .quota_settle(None, user, crate::clock::today(), Some(&charge))
                .await;
        }
        self.apply(store, user, Some(charge), None).await
    }

    /// Today's usage of `user` (read from the store when not cached).
    pub async fn today(&self, store: &SharedStore, user: Uuid) -> StoreResult<Today> {
        if let Some(sh) = &self.shared {
            let t = sh.store.quota_today(user, crate::clock::today()).await?;
            return Ok(Today {
                messages: t.messages,
                tokens: t.tokens,
                running: t.running,
            });
        }
        let slot = self.slot(user);
        let mut st = loop {
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            let st = slot.lock().await;
            if st.pending == 0 {
                break st;
            }
            drop(st);
            settled.await;
        };
        Self::ensure_today(&mut st, store, user, crate::clock::today()).await?;
        let t = st.today.unwrap_or_default();
        Ok(Today {
            messages: t.messages,
            tokens: t.tokens,
            running: st.running,
        })
    }

    /// Answers running, over all users (of this instance).
    pub fn running(&self) -> u64 {
        if let Some(sh) = &self.shared {
            return sh.running.load(Ordering::Relaxed);
        }
        let slots: Vec<Slot> = self
            .users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        slots
            .iter()
            .filter_map(|s| s.try_lock().ok().map(|st| u64::from(st.running)))
            .sum()
    }

    /// Forgets users with nothing running (their totals reload on demand).
    pub fn prune(&self) {
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, slot| {
                Arc::strong_count(slot) > 1 || slot.try_lock().map_or(true, |st| st.running > 0)
            });
    }

    pub fn tracked_users(&self) -> usize {
        self.users.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// One admitted answer. Settle it with the real usage; dropped unsettled
/// (the request failed before the answer started), it is released with
/// nothing charged.
pub struct Reservation {
    quotas: Arc<Quotas>,
    user: Uuid,
    estimate: u64,
    done: bool,
    /// The reservation's row, when they live in the database.
    shared_id: Option<Uuid>,
}

impl Reservation {
    pub fn user(&self) -> Uuid {
        self.user
    }

    /// Charges what the answer used and ends the reservation.
    pub async fn settle(mut self, store: &SharedStore, charge: Option<Charge>) -> StoreResult<()> {
        self.done = true;
        if let (Some(id), Some(sh)) = (self.shared_id, &self.quotas.shared) {
            let charge = charge.filter(|c| !c.is_empty());
            return Quotas::settle_shared(sh, id, self.user, charge.as_ref()).await;
        }
        self.quotas
            .apply(store, self.user, charge, Some(self.estimate))
            .await
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let (Some(id), Some(sh)) = (self.shared_id, &self.quotas.shared) {
            sh.running.fetch_sub(1, Ordering::Relaxed);
            let store = sh.store.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Err(e) = store.quota_release(id).await {
                        tracing::warn!(error = %e, "releasing a quota reservation failed; it ends with this instance's lease");
                    }
                });
            }
            return;
        }
        let slot = self.quotas.slot(self.user);
        let estimate = self.estimate;
        // Usually uncontended; otherwise release from a task.
        let released = match slot.try_lock() {
            Ok(mut st) => {
                st.running = st.running.saturating_sub(1);
                st.reserved_tokens = st.reserved_tokens.saturating_sub(estimate);
                true
            }
            Err(_) => false,
        };
        if !released && let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let mut st = slot.lock().await;
                st.running = st.running.saturating_sub(1);
                st.reserved_tokens = st.reserved_tokens.saturating_sub(estimate);
            });
        }
    }
}
