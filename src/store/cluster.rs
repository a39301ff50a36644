//! What several confab instances on one database share beyond the records
//! of `traits.rs`: the instances and their leases, key fingerprints, setup
//! tokens, rate-limit and quota state, running generations, the search
//! feed each instance's index follows, the ACME renewal lock and
//! challenges, and notices between instances.
//!
//! Only a database server implements it ([`super::Store::cluster`] is None
//! for redb, whose one process keeps all of this in memory). The domain
//! modules pick their shared implementation when it is there and their
//! local one otherwise; every method names confab's own types, never SQL.

use async_trait::async_trait;
use std::time::Duration;
use uuid::Uuid;

use super::StoreResult;
use super::search_outbox::Resolved;
use super::usage::Charge;

/// An instance that holds a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceInfo {
    pub id: Uuid,
    pub host: String,
    pub started_at: i64,
    /// Unix seconds (database clock) until which the lease holds.
    pub lease_until: i64,
}

/// One GCRA check ([`ClusterStore::rate_check`]), in microseconds of the
/// database's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateState {
    pub allowed: bool,
    /// The "theoretical arrival time" after this check.
    pub tat_us: i64,
    pub now_us: i64,
}

/// A failure budget ([`ClusterStore::failure_begin`]), in microseconds of
/// the database's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureState {
    /// For `failure_begin`: room was reserved.
    pub allowed: bool,
    /// When every recorded failure will have leaked away.
    pub empty_at_us: i64,
    /// Attempts under way (reservations not yet settled and not expired).
    pub pending: u32,
    pub now_us: i64,
}

/// One answer asking to be admitted ([`ClusterStore::quota_reserve`]).
#[derive(Debug, Clone, Copy)]
pub struct QuotaAsk {
    /// The reservation's id (chosen by the caller).
    pub id: Uuid,
    pub user: Uuid,
    /// yyyymmdd (UTC).
    pub day: u32,
    pub instance: Uuid,
    pub estimate: u64,
    pub messages_per_day: Option<u64>,
    pub tokens_per_day: Option<u64>,
    pub max_running: u32,
}

/// The longest a quota reservation counts without being settled.
pub const QUOTA_RESERVATION_MAX: Duration = Duration::from_secs(6 * 3600);

/// Why [`ClusterStore::quota_reserve`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaRefused {
    Messages { limit: u64, used: u64 },
    Tokens { limit: u64, used: u64 },
    Concurrency { limit: u32 },
}

/// Today's usage of a user and the answers they have running on any live
/// instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaToday {
    pub messages: u64,
    pub tokens: u64,
    pub running: u32,
}

/// An event of a generation as stored: its number and its name and JSON
/// payload (the wire's SSE `event` and `data`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub seq: u64,
    pub name: String,
    pub data: String,
}

/// A generation as announced by the instance that runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub conversation_id: Uuid,
    pub message_id: Uuid,
    pub instance: Uuid,
}

/// What changed in one generation since it was last published.
#[derive(Debug, Clone)]
pub struct GenUpdate {
    /// Which generation (inserted on its first publication).
    pub record: GenRecord,
    /// New events, in order, numbered after those published before.
    pub events: Vec<StoredEvent>,
    /// The whole text so far and the last event it includes.
    pub text: String,
    pub text_event: u64,
    pub finished: bool,
}

/// A generation seen from any instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenInfo {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub message_id: Uuid,
    pub instance: Uuid,
    pub finished: bool,
}

/// The published text of a running answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveText {
    pub message_id: Uuid,
    pub generation_id: Uuid,
    pub text: String,
    pub text_event: u64,
}

/// What [`ClusterStore::gen_reap`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reaped {
    /// Answers marked interrupted.
    pub messages: usize,
    /// Instances whose lease had run out, now forgotten.
    pub instances: Vec<Uuid>,
}

/// Where an index following the search feed stands: opaque to callers,
/// kept with the index so both move together.
pub type FeedCursor = String;

/// One step along the search feed.
#[derive(Debug, Clone)]
pub struct FeedBatch {
    /// Resolved against the data as it is now (ops carry ids only, so a
    /// replay is harmless).
    pub ops: Vec<Resolved>,
    /// Where the next step starts, once `ops` are applied.
    pub next: FeedCursor,
    /// True when more is waiting right away (the batch was full).
    pub more: bool,
}

/// Which notice an instance sent (channels of `LISTEN/NOTIFY` on
/// PostgreSQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoticeKind {
    /// A generation has new events (payload: its id).
    Generation,
    /// Someone asked a generation to stop (payload: its id).
    Stop,
    /// A new certificate was stored (payload: empty).
    Certificate,
    /// The notice connection was (re)established: anything may have been
    /// missed meanwhile, so listeners look again.
    Reconnected,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub kind: NoticeKind,
    pub payload: String,
}

/// Held while this instance renews the ACME certificate; dropping it
/// releases the lock (and so does the instance dying: the database ends
/// the session that holds it).
pub trait ClusterLock: Send + Sync {}

#[async_trait]
pub trait ClusterStore: Send + Sync {
    // ---- instances ----
    /// Announces `instance` with a lease of `lease`.
    async fn join(&self, instance: Uuid, host: &str, lease: Duration) -> StoreResult<()>;
    /// Extends the lease; false when the instance was declared dead
    /// meanwhile (its lease ran out and another instance reaped it).
    async fn renew(&self, instance: Uuid, lease: Duration) -> StoreResult<bool>;
    /// Gives the lease up (a clean shutdown).
    async fn leave(&self, instance: Uuid) -> StoreResult<()>;
    /// The instances whose lease holds now.
    async fn instances(&self) -> StoreResult<Vec<InstanceInfo>>;

    // ---- keys and setup ----
    /// Records `fingerprint` for the key `name` unless one is recorded;
    /// returns the one recorded (equal to `fingerprint` when this call
    /// recorded it or it matched).
    async fn claim_key(&self, name: &str, fingerprint: &str) -> StoreResult<String>;
    /// Adds the hash of a setup token this instance printed.
    async fn add_setup_token(&self, hash: &[u8]) -> StoreResult<()>;
    /// Whether `hash` is one of the setup tokens printed.
    async fn setup_token_valid(&self, hash: &[u8]) -> StoreResult<bool>;
    /// Forgets every setup token (setup is done).
    async fn clear_setup_tokens(&self) -> StoreResult<()>;

    // ---- rate limits ----
    /// One GCRA check of `key`: a bucket of `burst` cells, one more every
    /// `period_us`. Allowed when the bucket has room; the state moves only
    /// then.
    async fn rate_check(&self, key: &str, period_us: i64, burst: u32) -> StoreResult<RateState>;
    /// Reserves room for one failure of `key` (see `limits::failures`);
    /// reservations older than `pending_ttl` no longer count.
    async fn failure_begin(
        &self,
        key: &str,
        period_us: i64,
        burst: u32,
        pending_ttl: Duration,
    ) -> StoreResult<FailureState>;
    /// Ends one reservation of `key`, charging a failure when `failed`.
    async fn failure_settle(
        &self,
        key: &str,
        period_us: i64,
        failed: bool,
    ) -> StoreResult<FailureState>;
    /// The budget of `key` now, changing nothing.
    async fn failure_peek(&self, key: &str) -> StoreResult<Option<FailureState>>;
    /// Drops rate and failure state that is back to "never seen".
    async fn rate_prune(&self) -> StoreResult<u64>;

    // ---- quotas ----
    /// Admits one answer when the user's running answers (on live
    /// instances), today's usage and the reservations still open leave
    /// room, and records the reservation; one transaction per user at a
    /// time, so concurrent asks on any instances never pass the limits. A
    /// reservation counts while its instance's lease holds (and at most
    /// [`QUOTA_RESERVATION_MAX`], should a release have been lost).
    async fn quota_reserve(&self, ask: &QuotaAsk) -> StoreResult<Result<(), QuotaRefused>>;
    /// Charges what an answer used (to the user and, for `/v1`, the key)
    /// and ends its reservation, in one transaction. `id` None charges
    /// without a reservation (titles).
    async fn quota_settle(
        &self,
        id: Option<Uuid>,
        user: Uuid,
        day: u32,
        charge: Option<&Charge>,
    ) -> StoreResult<()>;
    /// Ends a reservation without charging anything.
    async fn quota_release(&self, id: Uuid) -> StoreResult<()>;
    /// Today's usage and running answers of `user`.
    async fn quota_today(&self, user: Uuid, day: u32) -> StoreResult<QuotaToday>;

    // ---- generations ----
    /// Stores new events and texts of this instance's generations (a
    /// generation's first publication announces it) in one transaction and
    /// notifies the other instances. Publishing an event again is harmless;
    /// the text never goes back to an older event.
    async fn gen_publish(&self, updates: &[GenUpdate]) -> StoreResult<()>;
    /// The generation `id` of `user` (another user's is None).
    async fn gen_get(&self, user: Uuid, id: Uuid) -> StoreResult<Option<GenInfo>>;
    /// Up to `limit` events after `after`, and whether the generation has
    /// finished (or is gone).
    async fn gen_events(
        &self,
        id: Uuid,
        after: u64,
        limit: usize,
    ) -> StoreResult<(Vec<StoredEvent>, bool)>;
    /// The published text of the running answers writing these messages.
    async fn gen_live_text(&self, message_ids: &[Uuid]) -> StoreResult<Vec<LiveText>>;
    /// Asks the generation to stop (and tells the instance running it);
    /// false when it is not the user's or not running.
    async fn gen_request_stop(&self, user: Uuid, id: Uuid) -> StoreResult<bool>;
    /// Asks every running generation of a conversation to stop.
    async fn gen_stop_conversation(&self, conversation: Uuid) -> StoreResult<()>;
    /// The generations of `instance` someone asked to stop.
    async fn gen_stop_requests(&self, instance: Uuid) -> StoreResult<Vec<Uuid>>;
    /// Ends the answers of instances whose lease ran out: each message
    /// becomes `interrupted` (finish reason `server_restart`) with the
    /// last text published or flushed, its generation gets `final_event`
    /// and is finished, and the instance is forgotten. Streaming messages
    /// that no live generation writes and that are older than `orphan_after`
    /// are ended the same way (a generation is announced just after its
    /// turn is stored).
    async fn gen_reap(
        &self,
        final_event: (&str, &str),
        orphan_after: Duration,
    ) -> StoreResult<Reaped>;
    /// Forgets generations that finished more than `keep` ago.
    async fn gen_prune(&self, keep: Duration) -> StoreResult<usize>;

    // ---- search feed ----
    /// Where a feed starts that covers everything committed up to now.
    async fn feed_start(&self) -> StoreResult<FeedCursor>;
    /// The outbox ops committed after `cursor` (in commit order, so an op
    /// that commits late is never skipped), up to `limit`. NotFound when
    /// `cursor` is not a place in this database's feed (another database,
    /// or trimmed away): the index must be rebuilt.
    async fn feed_next(&self, cursor: &str, limit: usize) -> StoreResult<FeedBatch>;
    /// Records how far `instance` has applied the feed and deletes the ops
    /// every live instance has applied; Ok(false) when `cursor` is older
    /// than what was already deleted (the index must be rebuilt).
    async fn feed_applied(&self, instance: Uuid, cursor: &str) -> StoreResult<bool>;

    // ---- ACME ----
    /// The renewal lock, when no other instance holds it.
    async fn try_lock_renewal(&self) -> StoreResult<Option<Box<dyn ClusterLock>>>;
    /// An HTTP-01 answer for `token` that any instance can serve.
    async fn put_challenge(&self, token: &str, answer: &str, ttl: Duration) -> StoreResult<()>;
    async fn get_challenge(&self, token: &str) -> StoreResult<Option<String>>;
    async fn delete_challenge(&self, token: &str) -> StoreResult<()>;
    /// Tells the other instances that a new certificate is stored.
    async fn certificate_stored(&self) -> StoreResult<()>;

    // ---- notices ----
    /// Notices from every instance (this one included), from now on.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Notice>;
}
