//! `confab store copy`: a stopped redb data directory into an empty
//! PostgreSQL database, in one transaction.
//!
//! The redb side is read in key order on a blocking thread
//! (`store::redb::export`) and handed over in batches through a bounded
//! channel, so memory stays bounded whatever the size; each batch is one
//! `INSERT … SELECT FROM unnest(…)`. Before the commit, every table is read
//! back inside the same transaction in the same key order, decoded into its
//! record type and encoded again, and its row count and SHA-256 over those
//! canonical rows must equal the source's; otherwise nothing is committed.
//!
//! Then the uploaded files' bytes: every blob file of the data directory
//! goes into the database's blob store (`blobs.rs`) in 1 MiB chunks, its
//! SHA-256 computed as it is read (a file whose content does not match its
//! name is refused), and is read back from the database and hashed again
//! before the commit; the "blobs" line of the report counts them and
//! checksums their (address, size) list.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::{PgStore, Sql, begin, commit, pg, unbig};
use crate::config::PgSettings;
use crate::store::redb::export::{self, Row, TABLES, UsageRecord, canonical, usage_key};
use crate::store::usage::UsageCounts;
use crate::store::{StoreError, StoreResult};

/// Rows per INSERT (and per batch read from redb).
const BATCH: usize = 1000;

/// One table of a finished copy: rows and checksum, equal on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCheck {
    pub table: &'static str,
    pub rows: u64,
    /// SHA-256 (hex) over the canonical rows in key order.
    pub checksum: String,
}

#[derive(Debug, Clone)]
pub struct CopyReport {
    pub tables: Vec<TableCheck>,
    /// The schema version of the redb file copied.
    pub source_schema: u64,
    /// The database copied into (no credentials).
    pub target: String,
}

impl CopyReport {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

/// Count and running checksum of one table.
#[derive(Default)]
struct Digest1 {
    rows: u64,
    hash: Sha256,
}

impl Digest1 {
    fn add(&mut self, key: &Value, value: &Value) -> StoreResult<()> {
        let bytes = serde_json::to_vec(&(key, value))?;
        self.hash.update((bytes.len() as u64).to_le_bytes());
        self.hash.update(&bytes);
        self.rows += 1;
        Ok(())
    }
    fn finish(self, table: &'static str) -> TableCheck {
        TableCheck {
            table,
            rows: self.rows,
            checksum: hex::encode(self.hash.finalize()),
        }
    }
}

/// Copies the redb store of `data_dir` (the server must be stopped; the
/// file is only read) into the empty database of `settings`, verifies
/// every table and commits. `progress(table, rows_copied_so_far)`.
pub async fn copy_from_redb(
    data_dir: &Path,
    settings: &PgSettings,
    progress: &mut (dyn FnMut(&str, u64) + Send),
) -> StoreResult<CopyReport> {
    let store = PgStore::open(settings).await?;
    let mut c = store.client().await?;
    let tx = begin(&mut c).await?;
    refuse_unless_empty(&tx, store.describe()).await?;

    let (send, mut recv) = tokio::sync::mpsc::channel::<(&'static str, Vec<Row>)>(4);
    let dir: PathBuf = data_dir.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || {
        let mut digests: BTreeMap<&'static str, Digest1> = BTreeMap::new();
        let version = export::export(&dir, BATCH, &mut |table, rows| {
            let d = digests.entry(table).or_default();
            for (k, v) in &rows {
                d.add(k, v)?;
            }
            send.blocking_send((table, rows))
                .map_err(|_| StoreError::Backend("the copy stopped".into()))
        })?;
        Ok::<_, StoreError>((version, digests))
    });
    let mut copied: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut failed = None;
    while let Some((table, rows)) = recv.recv().await {
        if let Err(e) = insert(&tx, table, &rows).await {
            failed = Some(e);
            break;
        }
        let n = copied.entry(table).or_default();
        *n += rows.len() as u64;
        progress(table, *n);
    }
    drop(recv);
    let read = reader
        .await
        .map_err(|e| StoreError::Backend(format!("the redb reader failed: {e}")))?;
    if let Some(e) = failed {
        return Err(e);
    }
    let (source_schema, mut digests) = read?;

    let mut tables = Vec::new();
    for &table in TABLES {
        let want = digests.remove(table).unwrap_or_default().finish(table);
        let got = read_back(&tx, table).await?;
        if got != want {
            return Err(StoreError::Backend(format!(
                "the copy of table {table} does not match its source ({} rows, checksum {} in redb; {} rows, checksum {} in PostgreSQL); nothing was committed",
                want.rows, want.checksum, got.rows, got.checksum
            )));
        }
        tables.push(got);
    }
    tables.push(copy_blobs(&tx, data_dir, progress).await?);
    commit(tx).await?;
    Ok(CopyReport {
        tables,
        source_schema,
        target: store.describe().to_string(),
    })
}

async fn refuse_unless_empty(tx: &impl Sql, what: &str) -> StoreResult<()> {
    let mut holding = Vec::new();
    for &table in TABLES {
        let sql = if table == "meta" {
            "SELECT count(*) FROM meta WHERE key <> 'health_probe'".to_string()
        } else {
            format!("SELECT count(*) FROM {table}")
        };
        let n: i64 = tx.one(&sql, &[]).await?.get(0);
        if n > 0 {
            holding.push(format!("{table}: {n}"));
        }
    }
    let n: i64 = tx.one("SELECT count(*) FROM blobs", &[]).await?.get(0);
    if n > 0 {
        holding.push(format!("blobs: {n}"));
    }
    if holding.is_empty() {
        return Ok(());
    }
    Err(StoreError::Conflict(format!(
        "the {what} is not empty ({}); copy only into an empty database: create a new one (CREATE DATABASE confab OWNER confab) and point --to at it",
        holding.join(", ")
    )))
}

fn key_str(k: &Value) -> StoreResult<&str> {
    k.as_str()
        .ok_or_else(|| StoreError::Backend(format!("unexpected key {k}")))
}

fn key_uuid(k: &Value) -> StoreResult<Uuid> {
    Uuid::parse_str(key_str(k)?).map_err(|e| StoreError::Backend(format!("key {k}: {e}")))
}

fn key_bytes(k: &Value) -> StoreResult<Vec<u8>> {
    hex::decode(key_str(k)?).map_err(|e| StoreError::Backend(format!("key {k}: {e}")))
}

/// How a table's rows go in: the redb key as `$1` (when the table needs
/// it) and the records as `$2::jsonb[]`; the typed columns are read out of
/// the record by SQL.
fn insert_sql(table: &str) -> StoreResult<(&'static str, &'static str)> {
    Ok(match table {
        "meta" => (
            "text",
            "INSERT INTO meta (key, value) SELECT k, d FROM unnest($1::text[], $2::jsonb[]) u(k, d)",
        ),
        "users" => (
            "name_key",
            "INSERT INTO users (id, name_key, role, status, data)
             SELECT (d->>'id')::uuid, k, d->>'role', d->>'status', d FROM unnest($1::text[], $2::jsonb[]) u(k, d)",
        ),
        "sessions" => (
            "bytes",
            "INSERT INTO sessions (token_hash, id, user_id, expires_at, last_seen, data)
             SELECT k, (d->>'id')::uuid, (d->>'user_id')::uuid, (d->>'expires_at')::bigint,
                    (d->>'last_seen')::bigint, d FROM unnest($1::bytea[], $2::jsonb[]) u(k, d)",
        ),
        "refresh_families" => (
            "uuid",
            "INSERT INTO refresh_families (id, user_id, revoked, data)
             SELECT k, (d->>'user_id')::uuid, (d->>'revoked')::boolean, d FROM unnest($1::uuid[], $2::jsonb[]) u(k, d)",
        ),
        "refresh_tokens" => (
            "bytes",
            "INSERT INTO refresh_tokens (token_hash, family_id, expires_at, data)
             SELECT k, (d->>'family_id')::uuid, (d->>'expires_at')::bigint, d FROM unnest($1::bytea[], $2::jsonb[]) u(k, d)",
        ),
        "api_keys" => (
            "bytes",
            "INSERT INTO api_keys (key_hash, id, user_id, data)
             SELECT k, (d->>'id')::uuid, (d->>'user_id')::uuid, d FROM unnest($1::bytea[], $2::jsonb[]) u(k, d)",
        ),
        "invites" => (
            "text",
            "INSERT INTO invites (code, created_at, expires_at, uses_left, data)
             SELECT k, (d->>'created_at')::bigint, (d->>'expires_at')::bigint, (d->>'uses_left')::bigint, d
             FROM unnest($1::text[], $2::jsonb[]) u(k, d)",
        ),
        "audit" => (
            "uuid",
            "INSERT INTO audit (id, data) SELECT k, d FROM unnest($1::uuid[], $2::jsonb[]) u(k, d)",
        ),
        "providers" => (
            "text",
            "INSERT INTO providers (name, data) SELECT k, d FROM unnest($1::text[], $2::jsonb[]) u(k, d)",
        ),
        "conversations" => (
            "uuid",
            "INSERT INTO conversations (id, user_id, updated_at_ms, archived, pinned, data)
             SELECT k, (d->>'user_id')::uuid, (d->>'updated_at_ms')::bigint, (d->>'archived')::boolean,
                    (d->>'pinned')::boolean, d FROM unnest($1::uuid[], $2::jsonb[]) u(k, d)",
        ),
        "messages" => (
            "conv",
            "INSERT INTO messages (conversation_id, id, status, data)
             SELECT k, (d->>'id')::uuid, d->>'status', d FROM unnest($1::uuid[], $2::jsonb[]) u(k, d)",
        ),
        "search_outbox" => (
            "none",
            "INSERT INTO search_outbox (op) SELECT u.d FROM unnest($1::jsonb[]) WITH ORDINALITY u(d, n) ORDER BY u.n",
        ),
        "usage_daily" => (
            "none",
            "INSERT INTO usage_daily (user_id, day, provider, model, messages, input_tokens, output_tokens, cost_nanos)
             SELECT (d->>'user_id')::uuid, (d->>'day')::integer, d->>'provider', d->>'model',
                    (d->'counts'->>'messages')::bigint, (d->'counts'->>'input_tokens')::bigint,
                    (d->'counts'->>'output_tokens')::bigint, (d->'counts'->>'cost_nanos')::bigint
             FROM unnest($1::jsonb[]) u(d)",
        ),
        "usage_key_daily" => (
            "none",
            "INSERT INTO usage_key_daily (user_id, day, api_key_id, provider, model, messages, input_tokens, output_tokens, cost_nanos)
             SELECT (d->>'user_id')::uuid, (d->>'day')::integer, (d->>'api_key_id')::uuid, d->>'provider', d->>'model',
                    (d->'counts'->>'messages')::bigint, (d->'counts'->>'input_tokens')::bigint,
                    (d->'counts'->>'output_tokens')::bigint, (d->'counts'->>'cost_nanos')::bigint
             FROM unnest($1::jsonb[]) u(d)",
        ),
        "acme" => (
            "text",
            "INSERT INTO acme (key, data) SELECT k, d FROM unnest($1::text[], $2::jsonb[]) u(k, d)",
        ),
        "presets" => (
            "uuid",
            "INSERT INTO presets (id, owner, data) SELECT k, (d->>'owner')::uuid, d FROM unnest($1::uuid[], $2::jsonb[]) u(k, d)",
        ),
        "prompts" => (
            "uuid",
            "INSERT INTO prompts (id, owner, command, data)
             SELECT k, (d->>'owner')::uuid, d->>'command', d FROM unnest($1::uuid[], $2::jsonb[]) u(k, d)",
        ),
        "user_settings" => (
            "uuid",
            "INSERT INTO user_settings (user_id, data) SELECT k, d FROM unnest($1::uuid[], $2::jsonb[]) u(k, d)",
        ),
        "server_settings" => (
            "text",
            "INSERT INTO server_settings (key, data) SELECT k, d FROM unnest($1::text[], $2::jsonb[]) u(k, d)",
        ),
        "model_settings" => (
            "text",
            "INSERT INTO model_settings (model, data) SELECT k, d FROM unnest($1::text[], $2::jsonb[]) u(k, d)",
        ),
        "uploads" => (
            "uuid",
            "INSERT INTO uploads (id, owner, size, sha256, thumb_sha256, data)
             SELECT k, (d->>'owner')::uuid, (d->>'size')::bigint, d->>'sha256', d->'thumbnail'->>'sha256', d
             FROM unnest($1::uuid[], $2::jsonb[]) u(k, d)",
        ),
        "upload_usage" => (
            "uuid",
            "INSERT INTO upload_usage (owner, bytes) SELECT k, (d #>> '{}')::bigint FROM unnest($1::uuid[], $2::jsonb[]) u(k, d)",
        ),
        "documents" => (
            "uuid",
            "INSERT INTO documents (file_id, owner, data) SELECT k, (d->>'owner')::uuid, d FROM unnest($1::uuid[], $2::jsonb[]) u(k, d)",
        ),
        "doc_chunks" => (
            "conv",
            "INSERT INTO doc_chunks (file_id, ordinal, data)
             SELECT k, (d->>'ordinal')::bigint, d FROM unnest($1::uuid[], $2::jsonb[]) u(k, d)",
        ),
        "doc_vectors" => (
            "uuid",
            "INSERT INTO doc_vectors (file_id, data) SELECT k, d FROM unnest($1::uuid[], $2::jsonb[]) u(k, d)",
        ),
        "collections" => (
            "uuid",
            "INSERT INTO collections (id, owner, data) SELECT k, (d->>'owner')::uuid, d FROM unnest($1::uuid[], $2::jsonb[]) u(k, d)",
        ),
        "identities" => (
            "uuid",
            "INSERT INTO identities (id, user_id, issuer, subject, data)
             SELECT k, (d->>'user_id')::uuid, d->>'issuer', d->>'subject', d FROM unnest($1::uuid[], $2::jsonb[]) u(k, d)",
        ),
        "two_factor" => (
            "uuid",
            "INSERT INTO two_factor (user_id, data) SELECT k, d FROM unnest($1::uuid[], $2::jsonb[]) u(k, d)",
        ),
        "shares" => (
            "text",
            "INSERT INTO shares (token, id, user_id, data)
             SELECT k, (d->>'id')::uuid, (d->>'user_id')::uuid, d FROM unnest($1::text[], $2::jsonb[]) u(k, d)",
        ),
        "groups" => (
            "group_key",
            "INSERT INTO groups (id, name_key, data)
             SELECT (d->>'id')::uuid, k, d FROM unnest($1::text[], $2::jsonb[]) u(k, d)",
        ),
        "group_members" => (
            "none",
            "INSERT INTO group_members (group_id, user_id)
             SELECT (d->>'group_id')::uuid, (d->>'user_id')::uuid FROM unnest($1::jsonb[]) u(d)",
        ),
        "import_sources" => (
            "none",
            "INSERT INTO import_sources (user_id, source, conversation_id)
             SELECT (d->>'user_id')::uuid, d->>'source', (d->>'conversation_id')::uuid
             FROM unnest($1::jsonb[]) u(d)",
        ),
        "import_jobs" => (
            "uuid",
            "INSERT INTO import_jobs (id, user_id, status, runner, data)
             SELECT k, (d->>'user_id')::uuid, d->>'status', (d->>'runner')::uuid, d
             FROM unnest($1::uuid[], $2::jsonb[]) u(k, d)",
        ),
        other => return Err(StoreError::Backend(format!("no table {other} to copy into"))),
    })
}

async fn insert(tx: &impl Sql, table: &str, rows: &[Row]) -> StoreResult<()> {
    let (kind, sql) = insert_sql(table)?;
    let data: Vec<&Value> = rows.iter().map(|(_, v)| v).collect();
    let keys: Box<dyn ToSql + Sync + Send> = match kind {
        "none" => {
            tx.exec(sql, &[&data]).await?;
            return Ok(());
        }
        "text" => Box::new(
            rows.iter()
                .map(|(k, _)| key_str(k).map(str::to_owned))
                .collect::<StoreResult<Vec<String>>>()?,
        ),
        "name_key" => Box::new(
            rows.iter()
                .map(|(_, v)| {
                    v.get("username")
                        .and_then(Value::as_str)
                        .map(crate::username::key)
                        .ok_or_else(|| StoreError::Backend("a user without a name".into()))
                })
                .collect::<StoreResult<Vec<String>>>()?,
        ),
        "group_key" => Box::new(
            rows.iter()
                .map(|(_, v)| {
                    v.get("name")
                        .and_then(Value::as_str)
                        .map(crate::store::groups::name_key)
                        .ok_or_else(|| StoreError::Backend("a group without a name".into()))
                })
                .collect::<StoreResult<Vec<String>>>()?,
        ),
        "uuid" => Box::new(
            rows.iter()
                .map(|(k, _)| key_uuid(k))
                .collect::<StoreResult<Vec<Uuid>>>()?,
        ),
        "conv" => Box::new(
            rows.iter()
                .map(|(k, _)| key_uuid(&k[0]))
                .collect::<StoreResult<Vec<Uuid>>>()?,
        ),
        _ => Box::new(
            rows.iter()
                .map(|(k, _)| key_bytes(k))
                .collect::<StoreResult<Vec<Vec<u8>>>>()?,
        ),
    };
    tx.exec(sql, &[&*keys, &data]).await?;
    Ok(())
}

/// The query that reads `table` back in redb's key order, as (key, value).
fn read_sql(table: &str) -> &'static str {
    match table {
        "meta" => {
            "SELECT key, value FROM meta WHERE key IN ('default_model', 'two_factor_policy')
             ORDER BY key COLLATE \"C\""
        }
        "users" => "SELECT id, data FROM users ORDER BY id",
        "sessions" => "SELECT token_hash, data FROM sessions ORDER BY token_hash",
        "refresh_families" => "SELECT id, data FROM refresh_families ORDER BY id",
        "refresh_tokens" => "SELECT token_hash, data FROM refresh_tokens ORDER BY token_hash",
        "api_keys" => "SELECT key_hash, data FROM api_keys ORDER BY key_hash",
        "invites" => "SELECT code, data FROM invites ORDER BY code COLLATE \"C\"",
        "audit" => "SELECT id, data FROM audit ORDER BY id",
        "providers" => "SELECT name, data FROM providers ORDER BY name COLLATE \"C\"",
        "conversations" => "SELECT id, data FROM conversations ORDER BY id",
        "messages" => "SELECT conversation_id, id, data FROM messages ORDER BY conversation_id, id",
        "search_outbox" => "SELECT seq, op FROM search_outbox ORDER BY seq",
        "usage_daily" => {
            "SELECT user_id, day, provider, model, messages, input_tokens, output_tokens, cost_nanos
             FROM usage_daily ORDER BY user_id, day, provider, model"
        }
        "usage_key_daily" => {
            "SELECT user_id, day, provider, model, messages, input_tokens, output_tokens, cost_nanos, api_key_id
             FROM usage_key_daily ORDER BY user_id, day, api_key_id, provider, model"
        }
        "acme" => "SELECT key, data FROM acme ORDER BY key COLLATE \"C\"",
        "presets" => "SELECT id, data FROM presets ORDER BY id",
        "prompts" => "SELECT id, data FROM prompts ORDER BY id",
        "user_settings" => "SELECT user_id, data FROM user_settings ORDER BY user_id",
        "server_settings" => "SELECT key, data FROM server_settings ORDER BY key COLLATE \"C\"",
        "uploads" => "SELECT id, data FROM uploads ORDER BY id",
        "upload_usage" => "SELECT owner, bytes FROM upload_usage ORDER BY owner",
        "documents" => "SELECT file_id, data FROM documents ORDER BY file_id",
        "doc_chunks" => "SELECT file_id, ordinal, data FROM doc_chunks ORDER BY file_id, ordinal",
        "doc_vectors" => "SELECT file_id, data FROM doc_vectors ORDER BY file_id",
        "collections" => "SELECT id, data FROM collections ORDER BY id",
        "identities" => "SELECT id, data FROM identities ORDER BY id",
        "two_factor" => "SELECT user_id, data FROM two_factor ORDER BY user_id",
        "shares" => "SELECT token, data FROM shares ORDER BY token COLLATE \"C\"",
        "groups" => "SELECT id, data FROM groups ORDER BY id",
        "group_members" => {
            "SELECT group_id, user_id FROM group_members ORDER BY group_id, user_id"
        }
        "import_sources" => {
            "SELECT user_id, source, conversation_id FROM import_sources
             ORDER BY user_id, source COLLATE \"C\""
        }
        "import_jobs" => "SELECT id, data FROM import_jobs ORDER BY id",
        _ => "SELECT model, data FROM model_settings ORDER BY model COLLATE \"C\"",
    }
}

/// Count and checksum of `table` as PostgreSQL holds it, with the same
/// canonical rows the redb side produced.
async fn read_back(
    tx: &deadpool_postgres::Transaction<'_>,
    table: &'static str,
) -> StoreResult<TableCheck> {
    use futures::TryStreamExt;
    let empty: [&(dyn ToSql + Sync); 0] = [];
    let stream = tx.query_raw(read_sql(table), empty).await.map_err(pg)?;
    futures::pin_mut!(stream);
    let mut d = Digest1::default();
    while let Some(r) = stream.try_next().await.map_err(pg)? {
        let (key, value) = match table {
            "usage_daily" | "usage_key_daily" => {
                let day: i32 = r.get(1);
                let rec = UsageRecord {
                    user_id: r.get(0),
                    day: day.max(0) as u32,
                    api_key_id: if table == "usage_key_daily" {
                        Some(r.get(8))
                    } else {
                        None
                    },
                    provider: r.get(2),
                    model: r.get(3),
                    counts: UsageCounts {
                        messages: unbig(r.get(4)),
                        input_tokens: unbig(r.get(5)),
                        output_tokens: unbig(r.get(6)),
                        cost_nanos: unbig(r.get(7)),
                    },
                };
                (usage_key(&rec), serde_json::to_value(&rec)?)
            }
            "messages" => {
                let (c, id): (Uuid, Uuid) = (r.get(0), r.get(1));
                let v: Value = r.get(2);
                (serde_json::json!([c, id]), canonical(table, v)?)
            }
            "search_outbox" => (Value::Null, canonical(table, r.get(1))?),
            "group_members" => {
                let m = crate::store::groups::GroupMember {
                    group_id: r.get(0),
                    user_id: r.get(1),
                };
                (
                    serde_json::json!([m.group_id, m.user_id]),
                    serde_json::to_value(&m)?,
                )
            }
            "import_sources" => {
                let rec = export::ImportSourceRecord {
                    user_id: r.get(0),
                    source: r.get(1),
                    conversation_id: r.get(2),
                };
                (
                    serde_json::json!([rec.user_id, rec.source]),
                    serde_json::to_value(&rec)?,
                )
            }
            "upload_usage" => {
                let k: Uuid = r.get(0);
                (serde_json::json!(k), serde_json::json!(unbig(r.get(1))))
            }
            "doc_chunks" => {
                let (f, n): (Uuid, i64) = (r.get(0), r.get(1));
                let v: Value = r.get(2);
                (serde_json::json!([f, n]), canonical(table, v)?)
            }
            "sessions" | "refresh_tokens" | "api_keys" => {
                let k: Vec<u8> = r.get(0);
                (Value::String(hex::encode(k)), canonical(table, r.get(1))?)
            }
            "users" | "refresh_families" | "audit" | "conversations" | "presets" | "prompts"
            | "user_settings" | "uploads" | "documents" | "doc_vectors" | "collections"
            | "identities" | "two_factor" | "groups" | "import_jobs" => {
                let k: Uuid = r.get(0);
                (serde_json::json!(k), canonical(table, r.get(1))?)
            }
            _ => {
                let k: String = r.get(0);
                (Value::String(k), canonical(table, r.get(1))?)
            }
        };
        d.add(&key, &value)?;
    }
    Ok(d.finish(table))
}

fn blob_err(e: crate::store::blobs::BlobError) -> StoreError {
    StoreError::Backend(format!("reading the data directory's files: {e}"))
}

/// The blob files of `data_dir` into the blob tables, each verified twice:
/// its bytes against its name as they are read, and again as the database
/// holds them.
async fn copy_blobs(
    tx: &deadpool_postgres::Transaction<'_>,
    data_dir: &Path,
    progress: &mut (dyn FnMut(&str, u64) + Send),
) -> StoreResult<TableCheck> {
    use super::blobs::{CHUNK, chunks_of, put_blob_row, put_chunk};
    use crate::store::blobs::{BlobStore, LocalBlobs};
    use futures::StreamExt;
    let local = LocalBlobs::at(data_dir);
    let list = if local.root().is_dir() {
        local.list().await.map_err(blob_err)?
    } else {
        Vec::new()
    };
    let mut want = Digest1::default();
    for (i, sha) in list.iter().enumerate() {
        let (mut stream, _) = local.open(sha).await.map_err(blob_err)?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut n = 0i32;
        let mut buf = Vec::with_capacity(CHUNK);
        while let Some(part) = stream.next().await {
            let part = part.map_err(|e| blob_err(e.into()))?;
            hasher.update(&part);
            size += part.len() as u64;
            let mut rest = &part[..];
            while !rest.is_empty() {
                let take = (CHUNK - buf.len()).min(rest.len());
                buf.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if buf.len() == CHUNK {
                    put_chunk(tx, sha, n, &buf).await?;
                    buf.clear();
                    n += 1;
                }
            }
        }
        if !buf.is_empty() {
            put_chunk(tx, sha, n, &buf).await?;
        }
        if hex::encode(hasher.finalize()) != *sha {
            return Err(StoreError::Backend(format!(
                "the file blobs/{}/{}/{sha} of the data directory does not hold the content its name says (damaged); nothing was committed",
                &sha[0..2],
                &sha[2..4]
            )));
        }
        put_blob_row(tx, sha, size, chunks_of(size)).await?;
        want.add(&Value::String(sha.clone()), &serde_json::json!(size))?;
        progress("blobs", i as u64 + 1);
    }
    let want = want.finish("blobs");

    // Read back: every blob of the database, hashed from its chunks.
    let mut got = Digest1::default();
    let rows = tx
        .rows(
            "SELECT sha256, size FROM blobs ORDER BY sha256 COLLATE \"C\"",
            &[],
        )
        .await?;
    for r in rows {
        let sha: String = r.get(0);
        let size = unbig(r.get(1));
        let stream = tx
            .query_raw(
                "SELECT data FROM blob_chunks WHERE blob = $1 ORDER BY n",
                [&sha as &(dyn ToSql + Sync)],
            )
            .await
            .map_err(pg)?;
        futures::pin_mut!(stream);
        let mut hasher = Sha256::new();
        let mut len = 0u64;
        use futures::TryStreamExt;
        while let Some(c) = stream.try_next().await.map_err(pg)? {
            let data: &[u8] = c.get(0);
            hasher.update(data);
            len += data.len() as u64;
        }
        if hex::encode(hasher.finalize()) != sha || len != size {
            return Err(StoreError::Backend(format!(
                "a file's content read back from PostgreSQL does not match what was copied ({sha}); nothing was committed"
            )));
        }
        got.add(&Value::String(sha), &serde_json::json!(size))?;
    }
    let got = got.finish("blobs");
    if got != want {
        return Err(StoreError::Backend(format!(
            "the copy of the files' content does not match its source ({} files, checksum {} in the data directory; {} files, checksum {} in PostgreSQL); nothing was committed",
            want.rows, want.checksum, got.rows, got.checksum
        )));
    }
    Ok(got)
}
