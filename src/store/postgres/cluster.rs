//! What several confab instances on one PostgreSQL database share
//! ([`ClusterStore`]): instances with leases, key fingerprints, setup
//! tokens, GCRA rate-limit and failure buckets, quota reservations, running
//! generations with their events, the search feed, the ACME renewal lock
//! and HTTP-01 answers, and notices (`LISTEN/NOTIFY`).
//!
//! Times that instances compare (leases, rate buckets) come from the
//! database's clock (`clock_timestamp()`), never an instance's, so clock
//! skew between hosts does not matter. Rate and failure buckets live in
//! UNLOGGED tables: they are written on most requests and worth no WAL
//! (they start empty after a database crash or a failover, like a
//! restarted single server's).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Object, Pool};
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::search_outbox::{commit_with_ops, resolve_after};
use super::usage::charge_in;
use super::{Sql, begin, big, commit, unbig};
use crate::config::PgSettings;
use crate::store::cluster::*;
use crate::store::search_outbox::OutboxOp;
use crate::store::usage::Charge;
use crate::store::{StoreError, StoreResult};

/// The schema step that adds the tables of this module (appended to
/// `schema::STEPS`).
pub(super) const SCHEMA: &str = r#"
CREATE TABLE cluster_meta (
    key text PRIMARY KEY,
    value text NOT NULL
);
INSERT INTO cluster_meta (key, value) VALUES
    ('feed_id', gen_random_uuid()::text),
    ('feed_trimmed_to', '0');
CREATE TABLE cluster_instances (
    id uuid PRIMARY KEY,
    host text NOT NULL,
    started_at bigint NOT NULL,
    lease_until timestamptz NOT NULL,
    feed_seq bigint
);
CREATE TABLE cluster_keys (
    name text PRIMARY KEY,
    fingerprint text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE cluster_setup_tokens (
    hash bytea PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNLOGGED TABLE cluster_rate (
    key text PRIMARY KEY,
    tat bigint NOT NULL,
    seen bigint NOT NULL,
    allowed boolean NOT NULL
);
CREATE UNLOGGED TABLE cluster_failures (
    key text PRIMARY KEY,
    empty_at bigint NOT NULL,
    pending integer NOT NULL,
    pending_until bigint NOT NULL,
    seen bigint NOT NULL,
    allowed boolean NOT NULL
);
CREATE TABLE cluster_quota_reservations (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL,
    instance uuid NOT NULL,
    estimate bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX cluster_quota_reservations_user ON cluster_quota_reservations (user_id);
CREATE TABLE cluster_generations (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL,
    conversation_id uuid NOT NULL,
    message_id uuid NOT NULL,
    instance uuid NOT NULL,
    text text NOT NULL,
    text_event bigint NOT NULL,
    last_seq bigint NOT NULL,
    finished boolean NOT NULL,
    finished_at timestamptz,
    stop_requested boolean NOT NULL DEFAULT false
);
CREATE INDEX cluster_generations_running ON cluster_generations (instance) WHERE NOT finished;
CREATE INDEX cluster_generations_message ON cluster_generations (message_id) WHERE NOT finished;
CREATE INDEX cluster_generations_conversation ON cluster_generations (conversation_id) WHERE NOT finished;
CREATE INDEX cluster_generations_finished ON cluster_generations (finished_at) WHERE finished;
CREATE TABLE cluster_generation_events (
    generation_id uuid NOT NULL REFERENCES cluster_generations (id) ON DELETE CASCADE,
    seq bigint NOT NULL,
    name text NOT NULL,
    data text NOT NULL,
    PRIMARY KEY (generation_id, seq)
);
CREATE TABLE cluster_challenges (
    token text PRIMARY KEY,
    answer text NOT NULL,
    expires_at timestamptz NOT NULL
);
"#;

/// Notice channels.
const CH_GEN: &str = "confab_gen";
const CH_STOP: &str = "confab_stop";
const CH_CERT: &str = "confab_cert";

/// The ACME renewal lock (session-scoped advisory lock).
const RENEWAL_LOCK: i64 = 0x636f_6e66_6162_0010;
/// The first key of the per-user quota locks (two-key advisory locks, a
/// space apart from the one-key locks of migrations and the outbox).
const QUOTA_LOCK_CLASS: i32 = 0x636f_6e66;

/// Microseconds since the epoch, database clock.
const NOW_US: &str = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint";

/// The cluster side of a PostgreSQL store.
pub struct PgCluster {
    pool: Pool,
    settings: PgSettings,
    what: String,
    notices: broadcast::Sender<Notice>,
    listening: AtomicBool,
    /// Ends the notice connection when the store is dropped.
    cancel: CancellationToken,
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl PgCluster {
    pub(super) fn new(pool: Pool, settings: PgSettings, what: String) -> PgCluster {
        PgCluster {
            pool,
            settings,
            what,
            notices: broadcast::channel(1024).0,
            listening: AtomicBool::new(false),
            cancel: CancellationToken::new(),
        }
    }

    async fn client(&self) -> StoreResult<Object> {
        self.pool.get().await.map_err(|e| {
            StoreError::Backend(format!("cannot get a connection to the {}: {e}", self.what))
        })
    }

    /// One connection outside the pool that `LISTEN`s to every channel and
    /// forwards notifications; reconnects (after a failover: to the new
    /// primary) and then says so with [`NoticeKind::Reconnected`].
    fn start_listening(&self) {
        if self.listening.swap(true, Ordering::SeqCst) {
            return;
        }
        let tx = self.notices.clone();
        let cancel = self.cancel.clone();
        let settings = self.settings.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            let mut first = true;
            loop {
                let run = listen_once(&settings, &tx, &mut first);
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = run => {
                        match r {
                            Ok(()) => backoff = Duration::from_millis(200),
                            Err(e) => tracing::warn!(error = %e, "the notice connection to the database failed; reconnecting"),
                        }
                    }
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
    }
}

/// Runs one notice connection until it ends.
async fn listen_once(
    settings: &PgSettings,
    tx: &broadcast::Sender<Notice>,
    first: &mut bool,
) -> Result<(), String> {
    let cfg = settings.client_config().map_err(|e| e.to_string())?;
    let tls = super::connect::tls_config(settings).map_err(|e| e.to_string())?;
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
    let (client, mut conn) = cfg.connect(tls).await.map_err(|e| e.to_string())?;
    let (msgs_tx, mut msgs) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut stream = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(m) = stream.next().await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    if msgs_tx.send(n).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    });
    client
        .batch_execute(&format!(
            "LISTEN {CH_GEN}; LISTEN {CH_STOP}; LISTEN {CH_CERT};"
        ))
        .await
        .map_err(|e| e.to_string())?;
    if !*first {
        tracing::info!("the notice connection to the database is back");
    }
    *first = false;
    // Anything sent while no connection listened is looked for again.
    let _ = tx.send(Notice {
        kind: NoticeKind::Reconnected,
        payload: String::new(),
    });
    while let Some(n) = msgs.recv().await {
        let kind = match n.channel() {
            CH_GEN => NoticeKind::Generation,
            CH_STOP => NoticeKind::Stop,
            CH_CERT => NoticeKind::Certificate,
            _ => continue,
        };
        let _ = tx.send(Notice {
            kind,
            payload: n.payload().to_string(),
        });
    }
    drop(client);
    match driver.await {
        Ok(r) => r,
        Err(e) => Err(e.to_string()),
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The quota lock's second key for `user`.
fn user_lock(user: Uuid) -> i32 {
    let (hi, lo) = user.as_u64_pair();
    let x = hi ^ lo;
    ((x >> 32) ^ x) as u32 as i32
}

fn rate_state(r: &tokio_postgres::Row) -> RateState {
    RateState {
        allowed: r.get(0),
        tat_us: r.get(1),
        now_us: r.get(2),
    }
}

fn failure_state(r: &tokio_postgres::Row) -> FailureState {
    let pending: i32 = r.get(2);
    FailureState {
        allowed: r.get(0),
        empty_at_us: r.get(1),
        pending: pending.max(0) as u32,
        now_us: r.get(3),
    }
}

/// A feed cursor: the database's feed id and the last seq applied.
fn parse_cursor(c: &str) -> Option<(&str, i64)> {
    let (id, seq) = c.split_once(':')?;
    Some((id, seq.parse().ok()?))
}

/// Held while this instance renews: the session holding the advisory lock.
struct RenewalLock(Option<Object>);

impl ClusterLock for RenewalLock {}

impl Drop for RenewalLock {
    fn drop(&mut self) {
        // Closing the session releases the lock; the connection is not
        // given back to the pool, where it would keep holding it.
        if let Some(o) = self.0.take() {
            drop(Object::take(o));
        }
    }
}

#[async_trait]
impl ClusterStore for PgCluster {
    async fn join(&self, instance: Uuid, host: &str, lease: Duration) -> StoreResult<()> {
        let c = self.client().await?;
        c.exec(
            "INSERT INTO cluster_instances (id, host, started_at, lease_until)
             VALUES ($1, $2, $3, clock_timestamp() + make_interval(secs => $4::float8))
             ON CONFLICT (id) DO UPDATE SET lease_until = excluded.lease_until",
            &[&instance, &host, &crate::clock::now(), &secs(lease)],
        )
        .await?;
        Ok(())
    }

    async fn renew(&self, instance: Uuid, lease: Duration) -> StoreResult<bool> {
        let c = self.client().await?;
        let n = c
            .exec(
                "UPDATE cluster_instances SET lease_until = clock_timestamp() + make_interval(secs => $2::float8)
                 WHERE id = $1",
                &[&instance, &secs(lease)],
            )
            .await?;
        Ok(n == 1)
    }

    async fn leave(&self, instance: Uuid) -> StoreResult<()> {
        let c = self.client().await?;
        c.exec("DELETE FROM cluster_instances WHERE id = $1", &[&instance])
            .await?;
        Ok(())
    }

    async fn instances(&self) -> StoreResult<Vec<InstanceInfo>> {
        let c = self.client().await?;
        let rows = c
            .rows(
                "SELECT id, host, started_at, extract(epoch FROM lease_until)::bigint
                 FROM cluster_instances WHERE lease_until > clock_timestamp() ORDER BY id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| InstanceInfo {
                id: r.get(0),
                host: r.get(1),
                started_at: r.get(2),
                lease_until: r.get(3),
            })
            .collect())
    }

    async fn claim_key(&self, name: &str, fingerprint: &str) -> StoreResult<String> {
        let c = self.client().await?;
        c.exec(
            "INSERT INTO cluster_keys (name, fingerprint) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&name, &fingerprint],
        )
        .await?;
        Ok(c.one(
            "SELECT fingerprint FROM cluster_keys WHERE name = $1",
            &[&name],
        )
        .await?
        .get(0))
    }

    async fn add_setup_token(&self, hash: &[u8]) -> StoreResult<()> {
        let c = self.client().await?;
        c.exec(
            "INSERT INTO cluster_setup_tokens (hash) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&hash],
        )
        .await?;
        Ok(())
    }

    async fn setup_token_valid(&self, hash: &[u8]) -> StoreResult<bool> {
        let c = self.client().await?;
        Ok(c.opt(
            "SELECT 1 FROM cluster_setup_tokens WHERE hash = $1",
            &[&hash],
        )
        .await?
        .is_some())
    }

    async fn clear_setup_tokens(&self) -> StoreResult<()> {
        let c = self.client().await?;
        c.exec("DELETE FROM cluster_setup_tokens", &[]).await?;
        Ok(())
    }

    async fn rate_check(&self, key: &str, period_us: i64, burst: u32) -> StoreResult<RateState> {
        let c = self.client().await?;
        // One statement: the bucket moves only when the request fits.
        let sql = format!(
            "INSERT INTO cluster_rate AS r (key, tat, seen, allowed)
             SELECT $1, n.us + $2::bigint, n.us, true FROM (SELECT {NOW_US} AS us) n
             ON CONFLICT (key) DO UPDATE SET
                seen = excluded.seen,
                allowed = greatest(r.tat, excluded.seen) + $2 - excluded.seen <= $3::bigint * $2::bigint,
                tat = CASE WHEN greatest(r.tat, excluded.seen) + $2 - excluded.seen <= $3::bigint * $2::bigint
                      THEN greatest(r.tat, excluded.seen) + $2 ELSE r.tat END
             RETURNING allowed, tat, seen"
        );
        let r = c.one(&sql, &[&key, &period_us, &i64::from(burst)]).await?;
        Ok(rate_state(&r))
    }

    async fn failure_begin(
        &self,
        key: &str,
        period_us: i64,
        burst: u32,
        pending_ttl: Duration,
    ) -> StoreResult<FailureState> {
        let c = self.client().await?;
        let ttl = i64::try_from(pending_ttl.as_micros()).unwrap_or(i64::MAX);
        // Pending reservations whose time ran out (an instance died mid
        // attempt) no longer count.
        let sql = format!(
            "INSERT INTO cluster_failures AS f (key, empty_at, pending, pending_until, seen, allowed)
             SELECT $1, n.us, 1, n.us + $4::bigint, n.us, true FROM (SELECT {NOW_US} AS us) n
             ON CONFLICT (key) DO UPDATE SET
                seen = excluded.seen,
                allowed = greatest(f.empty_at - excluded.seen, 0)
                    + $2::bigint * ((CASE WHEN f.pending_until > excluded.seen THEN f.pending ELSE 0 END) + 1)
                    <= $3::bigint * $2::bigint,
                pending = CASE WHEN greatest(f.empty_at - excluded.seen, 0)
                    + $2::bigint * ((CASE WHEN f.pending_until > excluded.seen THEN f.pending ELSE 0 END) + 1)
                    <= $3::bigint * $2::bigint
                    THEN (CASE WHEN f.pending_until > excluded.seen THEN f.pending ELSE 0 END) + 1
                    ELSE f.pending END,
                pending_until = CASE WHEN greatest(f.empty_at - excluded.seen, 0)
                    + $2::bigint * ((CASE WHEN f.pending_until > excluded.seen THEN f.pending ELSE 0 END) + 1)
                    <= $3::bigint * $2::bigint
                    THEN excluded.pending_until ELSE f.pending_until END
             RETURNING allowed, empty_at,
                CASE WHEN pending_until > seen THEN pending ELSE 0 END, seen"
        );
        let r = c
            .one(&sql, &[&key, &period_us, &i64::from(burst), &ttl])
            .await?;
        Ok(failure_state(&r))
    }

    async fn failure_settle(
        &self,
        key: &str,
        period_us: i64,
        failed: bool,
    ) -> StoreResult<FailureState> {
        let c = self.client().await?;
        let sql = format!(
            "INSERT INTO cluster_failures AS f (key, empty_at, pending, pending_until, seen, allowed)
             SELECT $1, n.us + CASE WHEN $3::bool THEN $2::bigint ELSE 0 END, 0, n.us, n.us, true
             FROM (SELECT {NOW_US} AS us) n
             ON CONFLICT (key) DO UPDATE SET
                seen = excluded.seen,
                allowed = true,
                pending = CASE WHEN f.pending_until > excluded.seen THEN greatest(f.pending - 1, 0) ELSE 0 END,
                empty_at = CASE WHEN $3::bool THEN greatest(f.empty_at, excluded.seen) + $2::bigint ELSE f.empty_at END
             RETURNING allowed, empty_at,
                CASE WHEN pending_until > seen THEN pending ELSE 0 END, seen"
        );
        let r = c.one(&sql, &[&key, &period_us, &failed]).await?;
        Ok(failure_state(&r))
    }

    async fn failure_peek(&self, key: &str) -> StoreResult<Option<FailureState>> {
        let c = self.client().await?;
        let sql = format!(
            "SELECT true, empty_at, CASE WHEN pending_until > n.us THEN pending ELSE 0 END, n.us
             FROM cluster_failures, (SELECT {NOW_US} AS us) n WHERE key = $1"
        );
        Ok(c.opt(&sql, &[&key]).await?.map(|r| failure_state(&r)))
    }

    async fn rate_prune(&self) -> StoreResult<u64> {
        let c = self.client().await?;
        let a = c
            .exec(
                &format!("DELETE FROM cluster_rate WHERE tat <= {NOW_US}"),
                &[],
            )
            .await?;
        let b = c
            .exec(
                &format!(
                    "DELETE FROM cluster_failures WHERE empty_at <= {NOW_US}
                     AND (pending = 0 OR pending_until <= {NOW_US})"
                ),
                &[],
            )
            .await?;
        Ok(a + b)
    }

    async fn quota_reserve(&self, ask: &QuotaAsk) -> StoreResult<Result<(), QuotaRefused>> {
        let mut cl = self.client().await?;
        let tx = begin(&mut cl).await?;
        tx.exec(
            "SELECT pg_advisory_xact_lock($1, $2)",
            &[&QUOTA_LOCK_CLASS, &user_lock(ask.user)],
        )
        .await?;
        let r = tx
            .one(
                "SELECT count(*), coalesce(sum(r.estimate), 0)::bigint
                 FROM cluster_quota_reservations r JOIN cluster_instances i ON i.id = r.instance
                 WHERE r.user_id = $1 AND i.lease_until > clock_timestamp()
                   AND r.created_at > clock_timestamp() - make_interval(secs => $2::float8)",
                &[&ask.user, &secs(QUOTA_RESERVATION_MAX)],
            )
            .await?;
        let (running, reserved): (i64, i64) = (r.get(0), r.get(1));
        let (running, reserved) = (unbig(running), unbig(reserved));
        if running >= u64::from(ask.max_running) {
            return Ok(Err(QuotaRefused::Concurrency {
                limit: ask.max_running,
            }));
        }
        let u = tx
            .one(
                "SELECT coalesce(sum(messages), 0)::bigint,
                        coalesce(sum(input_tokens + output_tokens), 0)::bigint
                 FROM usage_daily WHERE user_id = $1 AND day = $2",
                &[&ask.user, &(ask.day as i32)],
            )
            .await?;
        let (messages, tokens): (i64, i64) = (u.get(0), u.get(1));
        let (messages, tokens) = (unbig(messages), unbig(tokens));
        if let Some(limit) = ask.messages_per_day
            && messages + running + 1 > limit
        {
            return Ok(Err(QuotaRefused::Messages {
                limit,
                used: messages,
            }));
        }
        if let Some(limit) = ask.tokens_per_day
            && tokens + reserved + ask.estimate.max(1) > limit
        {
            return Ok(Err(QuotaRefused::Tokens {
                limit,
                used: tokens,
            }));
        }
        tx.exec(
            "INSERT INTO cluster_quota_reservations (id, user_id, instance, estimate) VALUES ($1, $2, $3, $4)",
            &[&ask.id, &ask.user, &ask.instance, &big(ask.estimate)?],
        )
        .await?;
        commit(tx).await?;
        Ok(Ok(()))
    }

    async fn quota_settle(
        &self,
        id: Option<Uuid>,
        user: Uuid,
        day: u32,
        charge: Option<&Charge>,
    ) -> StoreResult<()> {
        let mut cl = self.client().await?;
        let tx = begin(&mut cl).await?;
        // Under the user's lock, so an admission never sees the charge
        // and the reservation it replaces both (or neither).
        tx.exec(
            "SELECT pg_advisory_xact_lock($1, $2)",
            &[&QUOTA_LOCK_CLASS, &user_lock(user)],
        )
        .await?;
        if let Some(c) = charge {
            charge_in(&tx, user, day, c).await?;
        }
        if let Some(id) = id {
            tx.exec(
                "DELETE FROM cluster_quota_reservations WHERE id = $1",
                &[&id],
            )
            .await?;
        }
        commit(tx).await
    }

    async fn quota_release(&self, id: Uuid) -> StoreResult<()> {
        let c = self.client().await?;
        c.exec(
            "DELETE FROM cluster_quota_reservations WHERE id = $1",
            &[&id],
        )
        .await?;
        Ok(())
    }

    async fn quota_today(&self, user: Uuid, day: u32) -> StoreResult<QuotaToday> {
        let c = self.client().await?;
        let r = c
            .one(
                "SELECT
                    (SELECT coalesce(sum(messages), 0)::bigint FROM usage_daily WHERE user_id = $1 AND day = $2),
                    (SELECT coalesce(sum(input_tokens + output_tokens), 0)::bigint FROM usage_daily WHERE user_id = $1 AND day = $2),
                    (SELECT count(*) FROM cluster_quota_reservations r JOIN cluster_instances i ON i.id = r.instance
                     WHERE r.user_id = $1 AND i.lease_until > clock_timestamp())",
                &[&user, &(day as i32)],
            )
            .await?;
        let (m, t, n): (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
        Ok(QuotaToday {
            messages: unbig(m),
            tokens: unbig(t),
            running: u32::try_from(n.max(0)).unwrap_or(u32::MAX),
        })
    }

    async fn gen_publish(&self, updates: &[GenUpdate]) -> StoreResult<()> {
        if updates.is_empty() {
            return Ok(());
        }
        let mut ids = Vec::new();
        let mut users = Vec::new();
        let mut convs = Vec::new();
        let mut msgs = Vec::new();
        let mut insts = Vec::new();
        let mut texts: Vec<&str> = Vec::new();
        let mut text_events = Vec::new();
        let mut last = Vec::new();
        let mut finished = Vec::new();
        let mut e_gen = Vec::new();
        let mut e_seq = Vec::new();
        let mut e_name: Vec<&str> = Vec::new();
        let mut e_data: Vec<&str> = Vec::new();
        for u in updates {
            let r = &u.record;
            ids.push(r.id);
            users.push(r.user_id);
            convs.push(r.conversation_id);
            msgs.push(r.message_id);
            insts.push(r.instance);
            texts.push(&u.text);
            text_events.push(big(u.text_event)?);
            last.push(big(u.events.last().map_or(0, |e| e.seq))?);
            finished.push(u.finished);
            for e in &u.events {
                e_gen.push(r.id);
                e_seq.push(big(e.seq)?);
                e_name.push(&e.name);
                e_data.push(&e.data);
            }
        }
        let mut cl = self.client().await?;
        let tx = begin(&mut cl).await?;
        // Live state, not records: a crash may lose the last tick of it.
        tx.exec("SET LOCAL synchronous_commit = off", &[]).await?;
        tx.exec(
            "INSERT INTO cluster_generations AS g
                (id, user_id, conversation_id, message_id, instance, text, text_event, last_seq, finished, finished_at)
             SELECT u.id, u.user_id, u.conv, u.msg, u.inst, u.text, u.te, u.last, u.fin,
                    CASE WHEN u.fin THEN clock_timestamp() END
             FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::text[],
                         $7::bigint[], $8::bigint[], $9::bool[])
                  AS u(id, user_id, conv, msg, inst, text, te, last, fin)
             ON CONFLICT (id) DO UPDATE SET
                text = CASE WHEN excluded.text_event >= g.text_event THEN excluded.text ELSE g.text END,
                text_event = greatest(g.text_event, excluded.text_event),
                last_seq = greatest(g.last_seq, excluded.last_seq),
                finished = g.finished OR excluded.finished,
                finished_at = CASE WHEN NOT g.finished AND excluded.finished THEN clock_timestamp()
                                   ELSE g.finished_at END",
            &[
                &ids,
                &users,
                &convs,
                &msgs,
                &insts,
                &texts,
                &text_events,
                &last,
                &finished,
            ],
        )
        .await?;
        if !e_gen.is_empty() {
            tx.exec(
                "INSERT INTO cluster_generation_events (generation_id, seq, name, data)
                 SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[])
                 ON CONFLICT DO NOTHING",
                &[&e_gen, &e_seq, &e_name, &e_data],
            )
            .await?;
        }
        tx.exec(
            &format!("SELECT pg_notify('{CH_GEN}', x::text) FROM unnest($1::uuid[]) AS x"),
            &[&ids],
        )
        .await?;
        commit(tx).await
    }

    async fn gen_get(&self, user: Uuid, id: Uuid) -> StoreResult<Option<GenInfo>> {
        let c = self.client().await?;
        Ok(c.opt(
            "SELECT id, conversation_id, message_id, instance, finished
             FROM cluster_generations WHERE id = $1 AND user_id = $2",
            &[&id, &user],
        )
        .await?
        .map(|r| GenInfo {
            id: r.get(0),
            conversation_id: r.get(1),
            message_id: r.get(2),
            instance: r.get(3),
            finished: r.get(4),
        }))
    }

    async fn gen_events(
        &self,
        id: Uuid,
        after: u64,
        limit: usize,
    ) -> StoreResult<(Vec<StoredEvent>, bool)> {
        let c = self.client().await?;
        // One statement, one snapshot: the finished flag and the events
        // agree.
        let rows = c
            .rows(
                "SELECT g.finished, e.seq, e.name, e.data
                 FROM cluster_generations g
                 LEFT JOIN LATERAL (
                    SELECT seq, name, data FROM cluster_generation_events
                    WHERE generation_id = g.id AND seq > $2 ORDER BY seq LIMIT $3
                 ) e ON true
                 WHERE g.id = $1
                 ORDER BY e.seq",
                &[&id, &big(after.min(i64::MAX as u64))?, &(limit as i64)],
            )
            .await?;
        let Some(first) = rows.first() else {
            // Gone (forgotten): nothing more will come.
            return Ok((Vec::new(), true));
        };
        let finished: bool = first.get(0);
        let mut events = Vec::new();
        for r in &rows {
            let seq: Option<i64> = r.get(1);
            if let Some(seq) = seq {
                events.push(StoredEvent {
                    seq: unbig(seq),
                    name: r.get(2),
                    data: r.get(3),
                });
            }
        }
        Ok((events, finished))
    }

    async fn gen_live_text(&self, message_ids: &[Uuid]) -> StoreResult<Vec<LiveText>> {
        let c = self.client().await?;
        let rows = c
            .rows(
                "SELECT message_id, id, text, text_event FROM cluster_generations
                 WHERE message_id = ANY($1) AND NOT finished",
                &[&message_ids],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| LiveText {
                message_id: r.get(0),
                generation_id: r.get(1),
                text: r.get(2),
                text_event: unbig(r.get(3)),
            })
            .collect())
    }

    async fn gen_request_stop(&self, user: Uuid, id: Uuid) -> StoreResult<bool> {
        let c = self.client().await?;
        let rows = c
            .rows(
                &format!(
                    "WITH s AS (
                        UPDATE cluster_generations SET stop_requested = true
                        WHERE id = $1 AND user_id = $2 AND NOT finished RETURNING id
                     ) SELECT pg_notify('{CH_STOP}', id::text) FROM s"
                ),
                &[&id, &user],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    async fn gen_stop_conversation(&self, conversation: Uuid) -> StoreResult<()> {
        let c = self.client().await?;
        c.rows(
            &format!(
                "WITH s AS (
                    UPDATE cluster_generations SET stop_requested = true
                    WHERE conversation_id = $1 AND NOT finished RETURNING id
                 ) SELECT pg_notify('{CH_STOP}', id::text) FROM s"
            ),
            &[&conversation],
        )
        .await?;
        Ok(())
    }

    async fn gen_stop_requests(&self, instance: Uuid) -> StoreResult<Vec<Uuid>> {
        let c = self.client().await?;
        let rows = c
            .rows(
                "SELECT id FROM cluster_generations
                 WHERE instance = $1 AND NOT finished AND stop_requested",
                &[&instance],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn gen_reap(
        &self,
        final_event: (&str, &str),
        orphan_after: Duration,
    ) -> StoreResult<Reaped> {
        let mut cl = self.client().await?;
        let tx = begin(&mut cl).await?;
        // A renewal racing this waits for the row and finds it gone (then
        // the instance knows it was declared dead); or it renewed first,
        // and the condition no longer holds.
        let dead: Vec<Uuid> = tx
            .rows(
                "DELETE FROM cluster_instances WHERE lease_until < clock_timestamp() RETURNING id",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        // Answers of instances that are gone, locked so two reapers do not
        // both end them.
        let gens = tx
            .rows(
                "SELECT g.id, g.conversation_id, g.message_id, g.text, g.text_event, g.last_seq
                 FROM cluster_generations g
                 WHERE NOT g.finished
                   AND NOT EXISTS (SELECT 1 FROM cluster_instances i WHERE i.id = g.instance)
                 FOR UPDATE SKIP LOCKED",
                &[],
            )
            .await?;
        let mut ops = Vec::new();
        for g in &gens {
            let (id, conv, msg): (Uuid, Uuid, Uuid) = (g.get(0), g.get(1), g.get(2));
            let (text, text_event, last): (String, i64, i64) = (g.get(3), g.get(4), g.get(5));
            // The published text is at most a tick old, the flushed one
            // half a second: keep whichever holds more.
            let n = tx
                .exec(
                    "UPDATE messages SET status = 'interrupted',
                        data = data || jsonb_build_object(
                            'status', 'interrupted',
                            'finish_reason', 'server_restart',
                            'content', CASE WHEN $4::bigint > 0
                                                AND length($3::text) >= length(coalesce(data->>'content', ''))
                                            THEN $3::text ELSE coalesce(data->>'content', '') END)
                     WHERE conversation_id = $1 AND id = $2 AND status = 'streaming'",
                    &[&conv, &msg, &text, &text_event],
                )
                .await?;
            if n > 0 {
                ops.push(OutboxOp::Message {
                    conversation_id: conv,
                    message_id: msg,
                });
            }
            tx.exec(
                "INSERT INTO cluster_generation_events (generation_id, seq, name, data)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&id, &(last + 1), &final_event.0, &final_event.1],
            )
            .await?;
            tx.exec(
                "UPDATE cluster_generations SET finished = true, finished_at = clock_timestamp(),
                    last_seq = $2 WHERE id = $1",
                &[&id, &(last + 1)],
            )
            .await?;
            tx.exec(
                &format!("SELECT pg_notify('{CH_GEN}', $1::text)"),
                &[&id.to_string()],
            )
            .await?;
        }
        // Streaming messages no live generation writes (its instance died
        // before announcing it, or the announcement was lost).
        let orphans = tx
            .rows(
                "UPDATE messages m SET status = 'interrupted',
                    data = m.data || '{\"status\": \"interrupted\", \"finish_reason\": \"server_restart\"}'::jsonb
                 WHERE m.status = 'streaming'
                   AND (m.data->>'created_at')::bigint < extract(epoch FROM clock_timestamp())::float8 - $1::float8
                   AND NOT EXISTS (
                     SELECT 1 FROM cluster_generations g JOIN cluster_instances i ON i.id = g.instance
                     WHERE g.message_id = m.id AND NOT g.finished)
                 RETURNING m.conversation_id, m.id",
                &[&secs(orphan_after)],
            )
            .await?;
        for r in &orphans {
            ops.push(OutboxOp::Message {
                conversation_id: r.get(0),
                message_id: r.get(1),
            });
        }
        tx.exec(
            "DELETE FROM cluster_quota_reservations r
             WHERE NOT EXISTS (SELECT 1 FROM cluster_instances i WHERE i.id = r.instance)",
            &[],
        )
        .await?;
        let messages = ops.len();
        commit_with_ops(tx, &ops).await?;
        Ok(Reaped {
            messages,
            instances: dead,
        })
    }

    async fn gen_prune(&self, keep: Duration) -> StoreResult<usize> {
        let c = self.client().await?;
        let n = c
            .exec(
                "DELETE FROM cluster_generations
                 WHERE finished AND finished_at < clock_timestamp() - make_interval(secs => $1::float8)",
                &[&secs(keep)],
            )
            .await?;
        Ok(n as usize)
    }

    async fn feed_start(&self) -> StoreResult<FeedCursor> {
        let c = self.client().await?;
        let r = c
            .one(
                "SELECT (SELECT value FROM cluster_meta WHERE key = 'feed_id'),
                        greatest((SELECT coalesce(max(seq), 0) FROM search_outbox),
                                 (SELECT value::bigint FROM cluster_meta WHERE key = 'feed_trimmed_to'))",
                &[],
            )
            .await?;
        let (id, seq): (String, i64) = (r.get(0), r.get(1));
        Ok(format!("{id}:{seq}"))
    }

    async fn feed_next(&self, cursor: &str, limit: usize) -> StoreResult<FeedBatch> {
        let (id, seq) = parse_cursor(cursor).ok_or(StoreError::NotFound)?;
        let mut c = self.client().await?;
        let r = c
            .one(
                "SELECT (SELECT value FROM cluster_meta WHERE key = 'feed_id'),
                        (SELECT value::bigint FROM cluster_meta WHERE key = 'feed_trimmed_to')",
                &[],
            )
            .await?;
        let (feed_id, trimmed): (String, i64) = (r.get(0), r.get(1));
        if feed_id != id || seq < trimmed {
            return Err(StoreError::NotFound);
        }
        // Outbox commits are serialized (see `search_outbox.rs`), so seqs
        // become visible in order and "after the last one seen" misses
        // nothing.
        let ops = resolve_after(&mut c, unbig(seq), limit).await?;
        let last = ops.last().map_or(seq, |(s, _)| *s as i64);
        Ok(FeedBatch {
            more: ops.len() >= limit,
            ops: ops.into_iter().map(|(_, op)| op).collect(),
            next: format!("{id}:{last}"),
        })
    }

    async fn feed_applied(&self, instance: Uuid, cursor: &str) -> StoreResult<bool> {
        let (_, seq) = parse_cursor(cursor).ok_or(StoreError::NotFound)?;
        let mut cl = self.client().await?;
        let tx = begin(&mut cl).await?;
        tx.exec("SET LOCAL synchronous_commit = off", &[]).await?;
        tx.exec(
            "UPDATE cluster_instances SET feed_seq = $2 WHERE id = $1",
            &[&instance, &seq],
        )
        .await?;
        let r = tx
            .one(
                "SELECT (SELECT value::bigint FROM cluster_meta WHERE key = 'feed_trimmed_to'),
                        (SELECT min(feed_seq) FROM cluster_instances WHERE lease_until > clock_timestamp()),
                        (SELECT count(*) FROM cluster_instances
                         WHERE lease_until > clock_timestamp() AND feed_seq IS NULL)",
                &[],
            )
            .await?;
        let (trimmed, min_seq, unknown): (i64, Option<i64>, i64) = (r.get(0), r.get(1), r.get(2));
        if seq < trimmed {
            return Ok(false);
        }
        // Ops every live instance has applied are not needed again (an
        // instance still rebuilding has not said where it stands: wait).
        if let Some(min) = min_seq
            && unknown == 0
            && min > trimmed
        {
            tx.exec("DELETE FROM search_outbox WHERE seq <= $1", &[&min])
                .await?;
            tx.exec(
                "UPDATE cluster_meta SET value = greatest(value::bigint, $1)::text WHERE key = 'feed_trimmed_to'",
                &[&min],
            )
            .await?;
        }
        commit(tx).await?;
        Ok(true)
    }

    async fn try_lock_renewal(&self) -> StoreResult<Option<Box<dyn ClusterLock>>> {
        let c = self.client().await?;
        let got: bool = c
            .one("SELECT pg_try_advisory_lock($1)", &[&RENEWAL_LOCK])
            .await?
            .get(0);
        Ok(got.then(|| Box::new(RenewalLock(Some(c))) as Box<dyn ClusterLock>))
    }

    async fn put_challenge(&self, token: &str, answer: &str, ttl: Duration) -> StoreResult<()> {
        let c = self.client().await?;
        c.exec(
            "DELETE FROM cluster_challenges WHERE expires_at < clock_timestamp()",
            &[],
        )
        .await?;
        c.exec(
            "INSERT INTO cluster_challenges (token, answer, expires_at)
             VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3::float8))
             ON CONFLICT (token) DO UPDATE SET answer = excluded.answer, expires_at = excluded.expires_at",
            &[&token, &answer, &secs(ttl)],
        )
        .await?;
        Ok(())
    }

    async fn get_challenge(&self, token: &str) -> StoreResult<Option<String>> {
        let c = self.client().await?;
        Ok(c.opt(
            "SELECT answer FROM cluster_challenges WHERE token = $1 AND expires_at > clock_timestamp()",
            &[&token],
        )
        .await?
        .map(|r| r.get(0)))
    }

    async fn delete_challenge(&self, token: &str) -> StoreResult<()> {
        let c = self.client().await?;
        c.exec("DELETE FROM cluster_challenges WHERE token = $1", &[&token])
            .await?;
        Ok(())
    }

    async fn certificate_stored(&self) -> StoreResult<()> {
        let c = self.client().await?;
        c.exec(&format!("SELECT pg_notify('{CH_CERT}', '')"), &[])
            .await?;
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<Notice> {
        let rx = self.notices.subscribe();
        self.start_listening();
        rx
    }
}
