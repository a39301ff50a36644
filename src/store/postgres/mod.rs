//! The PostgreSQL backend: a connection pool (deadpool), TLS with rustls
//! (`connect.rs`), migrations run under an advisory lock at open
//! (`schema.rs`), and every store trait over SQL. The only code in confab
//! that names a PostgreSQL type.
//!
//! Each table keeps the record as JSONB in `data` (the same serde form as the
//! redb values, so `#[serde(default)]` fields evolve the same way) beside
//! typed columns for what SQL filters, orders or constrains on; both are
//! always written from the same struct. Usage counters are columns only
//! (summed by `ON CONFLICT DO UPDATE`). See docs/ARCHITECTURE.md, "PostgreSQL".
//!
//! Every trait method is one transaction (single statements are their own);
//! rules that must not race are held by the database: unique indexes (user
//! names, prompt commands, ids), row locks (`FOR UPDATE` on the invite,
//! refresh token or conversation being changed) and transaction-scoped
//! advisory locks (user changes, so "one active admin" cannot be raced; the
//! search outbox, so its sequence follows commit order).

mod acme;
pub mod blobs;
mod chat;
mod cluster;
mod connect;
mod copy;
mod groups;
mod identities;
mod knowledge;
mod misc;
mod schema;
mod search_outbox;
mod security;
mod uploads;
mod usage;
mod users;

pub use copy::{CopyReport, TableCheck, copy_from_redb};
pub use schema::SCHEMA_VERSION;

use async_trait::async_trait;
use deadpool_postgres::{Pool, Transaction};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{Json, ToSql};

use crate::config::PgSettings;
use crate::store::{SharedStore, Store, StoreError, StoreResult, metrics};

/// A parameter list.
pub(crate) type P<'a> = &'a [&'a (dyn ToSql + Sync)];

/// The PostgreSQL store: a pool of connections to one database.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    what: String,
    /// What the instances on this database share (`cluster.rs`).
    cluster: std::sync::Arc<cluster::PgCluster>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("db", &self.what).finish()
    }
}

impl PgStore {
    /// Connects (checking that the database answers), then brings the
    /// schema up to date; several processes may do this at once.
    pub async fn open(settings: &PgSettings) -> StoreResult<PgStore> {
        let pool = connect::pool(settings)?;
        let store = PgStore {
            cluster: std::sync::Arc::new(cluster::PgCluster::new(
                pool.clone(),
                settings.clone(),
                settings.describe(),
            )),
            pool,
            what: settings.describe(),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Opens the store as the rest of confab holds it.
    pub async fn open_shared(settings: &PgSettings) -> StoreResult<SharedStore> {
        Ok(std::sync::Arc::new(Self::open(settings).await?))
    }

    /// "PostgreSQL database confab on db:5432".
    pub fn describe(&self) -> &str {
        &self.what
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| {
            StoreError::Backend(format!(
                "cannot get a connection to the {}: {}",
                self.what,
                pool_err(&e)
            ))
        })
    }
}

/// Begins a READ COMMITTED transaction (what every write uses; the rules
/// that must not race take row or advisory locks).
pub(crate) async fn begin(c: &mut deadpool_postgres::Object) -> StoreResult<Transaction<'_>> {
    c.transaction().await.map_err(pg)
}

/// Begins a REPEATABLE READ, read-only transaction: everything read in it
/// comes from one snapshot.
pub(crate) async fn begin_snapshot(
    c: &mut deadpool_postgres::Object,
) -> StoreResult<Transaction<'_>> {
    c.build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(pg)
}

/// Commits; the latency goes to `confab_store_commit_duration_seconds`.
/// Dropping a transaction instead rolls it back.
pub(crate) async fn commit(tx: Transaction<'_>) -> StoreResult<()> {
    let started = std::time::Instant::now();
    tx.commit().await.map_err(pg)?;
    metrics::observe_commit(started.elapsed());
    Ok(())
}

impl Store for PgStore {
    fn cluster(&self) -> Option<std::sync::Arc<dyn crate::store::cluster::ClusterStore>> {
        Some(self.cluster.clone())
    }

    fn shared_blobs(&self) -> Option<std::sync::Arc<dyn crate::store::blobs::BlobStore>> {
        Some(std::sync::Arc::new(self.blobs()))
    }
}

impl PgStore {
    /// The blobs kept in this database (every instance on it shares them).
    pub fn blobs(&self) -> blobs::PgBlobs {
        blobs::PgBlobs::new(self.pool.clone(), self.what.clone())
    }
}

/// One statement, prepared once per connection (deadpool's statement cache).
#[async_trait]
pub(crate) trait Sql: Sync {
    async fn rows(&self, sql: &str, p: P<'_>) -> StoreResult<Vec<Row>>;
    async fn exec(&self, sql: &str, p: P<'_>) -> StoreResult<u64>;
    async fn opt(&self, sql: &str, p: P<'_>) -> StoreResult<Option<Row>> {
        Ok(self.rows(sql, p).await?.into_iter().next())
    }
    async fn one(&self, sql: &str, p: P<'_>) -> StoreResult<Row> {
        self.opt(sql, p)
            .await?
            .ok_or_else(|| StoreError::Backend("a query returned no row".into()))
    }
}

macro_rules! impl_sql {
    ($t:ty) => {
        #[async_trait]
        impl Sql for $t {
            async fn rows(&self, sql: &str, p: P<'_>) -> StoreResult<Vec<Row>> {
                let st = self.prepare_cached(sql).await.map_err(pg)?;
                self.query(&st, p).await.map_err(pg)
            }
            async fn exec(&self, sql: &str, p: P<'_>) -> StoreResult<u64> {
                let st = self.prepare_cached(sql).await.map_err(pg)?;
                self.execute(&st, p).await.map_err(pg)
            }
        }
    };
}
impl_sql!(deadpool_postgres::Object);
impl_sql!(Transaction<'_>);

/// A database error as a store error: a unique violation is a Conflict;
/// anything else a Backend error that names the cause but never a value.
pub(crate) fn pg(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error()
        && *db.code() == SqlState::UNIQUE_VIOLATION
    {
        return StoreError::Conflict(format!(
            "already exists ({})",
            db.constraint().unwrap_or("unique key")
        ));
    }
    StoreError::Backend(pg_msg(&e))
}

/// What went wrong, without the DETAIL line (which may quote values).
fn pg_msg(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("PostgreSQL: {} ({})", db.message(), db.code().code());
    }
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let part = s.to_string();
        if !msg.ends_with(&part) {
            msg.push_str(": ");
            msg.push_str(&part);
        }
        src = s.source();
    }
    format!("PostgreSQL: {msg}")
}

fn pool_err(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_msg(e),
        other => other.to_string(),
    }
}

/// A record as its JSONB parameter.
pub(crate) fn json<T: Serialize + Sync>(v: &T) -> Json<&T> {
    Json(v)
}

/// The record in column `idx` (its JSONB form).
pub(crate) fn dec<T: DeserializeOwned>(row: &Row, idx: usize) -> StoreResult<T> {
    let v: Json<serde_json::Value> = row.try_get(idx).map_err(pg)?;
    Ok(serde_json::from_value(v.0)?)
}

/// Unsigned values in BIGINT columns (times in ms, counters).
pub(crate) fn big(v: u64) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| StoreError::Backend(format!("{v} does not fit in a BIGINT")))
}

pub(crate) fn unbig(v: i64) -> u64 {
    v.max(0) as u64
}
