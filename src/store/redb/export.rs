//! Every record of a stopped data directory, table by table in key order,
//! for `confab store copy` (see `store::postgres::copy`). The file is opened
//! read-only and never migrated: the source stays exactly as it was, so
//! pointing the configuration back at it is the rollback.
//!
//! Each record comes as (key, value) JSON: the key as redb holds it (ids
//! as UUID strings, token hashes as hex, composite keys as arrays) and the
//! value decoded into its record type and encoded again, so defaults of
//! older records are filled in the same way the PostgreSQL side reads them.
//! Index tables (`*_by_user`, `*_by_day`, `users_by_name`,
//! `groups_by_name`, `user_groups`, `streaming_messages`, and `upload_blobs`, the blob references PostgreSQL
//! reads from the upload records' columns) are not exported: the other side
//! derives them. The blobs themselves are files beside the database; the
//! copy takes them from the data directory (`store::postgres::copy`).
//! Group memberships come as `[group, user]` keys with a `{group_id,
//! user_id}` value. One-time tokens (sign-in challenges, reset and
//! verification links) live minutes and are not copied either.

use redb::{ReadTransaction, ReadableTable, TableDefinition, TableError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::path::Path;
use uuid::Uuid;

use super::*;
use crate::store::acme::{AcmeAccountRecord, AcmeCertRecord};
use crate::store::chat::{Conversation, Message};
use crate::store::knowledge::{Chunk, ChunkVectors, Collection, DocumentRecord};
use crate::store::model_settings::ModelSetting;
use crate::store::presets::{Branding, Preset, SavedPrompt, UserSettings};
use crate::store::provider_records::StoredProvider;
use crate::store::search_outbox::OutboxOp;
use crate::store::uploads::Upload;
use crate::store::usage::UsageCounts;

/// The logical tables exported, in the order they are copied.
pub const TABLES: &[&str] = &[
    "meta",
    "users",
    "sessions",
    "refresh_families",
    "refresh_tokens",
    "api_keys",
    "invites",
    "audit",
    "providers",
    "conversations",
    "messages",
    "search_outbox",
    "usage_daily",
    "usage_key_daily",
    "acme",
    "presets",
    "prompts",
    "user_settings",
    "server_settings",
    "model_settings",
    "uploads",
    "upload_usage",
    "documents",
    "doc_chunks",
    "doc_vectors",
    "collections",
    "identities",
    "two_factor",
    "shares",
    "groups",
    "group_members",
    "import_sources",
    "import_jobs",
];

/// A row of `import_sources`: which conversation a source key of another
/// app's export was imported into.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ImportSourceRecord {
    pub user_id: Uuid,
    pub source: String,
    pub conversation_id: Uuid,
}

/// A usage row as both sides export it (the key is the row's identity).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct UsageRecord {
    pub user_id: Uuid,
    pub day: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<Uuid>,
    pub provider: String,
    pub model: String,
    pub counts: UsageCounts,
}

/// The record type of `table`'s values, decoded and encoded again: the
/// canonical JSON both sides of a copy compare.
pub fn canonical(table: &str, v: Value) -> StoreResult<Value> {
    fn re<T: DeserializeOwned + Serialize>(v: Value) -> StoreResult<Value> {
        Ok(serde_json::to_value(serde_json::from_value::<T>(v)?)?)
    }
    match table {
        "meta" => Ok(v),
        "users" => re::<User>(v),
        "sessions" => re::<Session>(v),
        "refresh_families" => re::<RefreshFamily>(v),
        "refresh_tokens" => re::<RefreshToken>(v),
        "api_keys" => re::<ApiKey>(v),
        "invites" => re::<Invite>(v),
        "audit" => re::<AuditEntry>(v),
        "providers" => re::<StoredProvider>(v),
        "conversations" => re::<Conversation>(v),
        "messages" => re::<Message>(v),
        "search_outbox" => re::<OutboxOp>(v),
        "usage_daily" | "usage_key_daily" => re::<UsageRecord>(v),
        "acme" => match v.get("chain_pem") {
            Some(_) => re::<AcmeCertRecord>(v),
            None => re::<AcmeAccountRecord>(v),
        },
        "presets" => re::<Preset>(v),
        "prompts" => re::<SavedPrompt>(v),
        "user_settings" => re::<UserSettings>(v),
        "server_settings" => re::<Branding>(v),
        "model_settings" => re::<ModelSetting>(v),
        "uploads" => re::<Upload>(v),
        "upload_usage" => re::<u64>(v),
        "documents" => re::<DocumentRecord>(v),
        "doc_chunks" => re::<Chunk>(v),
        "doc_vectors" => re::<ChunkVectors>(v),
        "collections" => re::<Collection>(v),
        "identities" => re::<crate::store::identities::IdentityLink>(v),
        "two_factor" => re::<crate::store::security::TwoFactor>(v),
        "shares" => re::<crate::store::shares::Share>(v),
        "groups" => re::<crate::store::groups::Group>(v),
        "group_members" => re::<crate::store::groups::GroupMember>(v),
        "import_sources" => re::<ImportSourceRecord>(v),
        "import_jobs" => re::<crate::store::import_jobs::ImportJobRecord>(v),
        other => Err(StoreError::Backend(format!("no table {other} to copy"))),
    }
}

/// One exported record: (key, canonical value).
pub type Row = (Value, Value);

/// Reads every exported table of the stopped data directory `data_dir`,
/// handing `sink` at most `batch` rows at a time, in key order; returns
/// the schema version of the file. Tables the file does not have yet (an
/// older confab wrote it) are empty.
pub fn export(
    data_dir: &Path,
    batch: usize,
    sink: &mut dyn FnMut(&'static str, Vec<Row>) -> StoreResult<()>,
) -> StoreResult<u64> {
    let src = backup::BackupSource::open_stopped(data_dir)?;
    let tx = match &src {
        backup::BackupSource::ReadOnly(db) => db.begin_read()?,
        backup::BackupSource::Repaired(db) => db.begin_read()?,
    };
    let version = {
        let meta = tx.open_table(META)?;
        meta.get("schema_version")?
            .map(|v| dec::<u64>(v.value()))
            .transpose()?
            .unwrap_or(0)
    };
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: data_dir.to_path_buf(),
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    let mut out = Out { sink, batch };
    // Of `meta` only what admins set (the rest is the file's own).
    walk(&tx, META, &mut out, "meta", |k: &str, v| {
        if k != "default_model" && k != crate::store::security::POLICY_KEY {
            return Ok(None);
        }
        Ok(Some((json!(k), serde_json::from_slice(v)?)))
    })?;
    walk(&tx, USERS, &mut out, "users", |k: u128, v| {
        rec::<User>("users", json!(Uuid::from_u128(k)), v)
    })?;
    walk(&tx, SESSIONS, &mut out, "sessions", |k: &[u8], v| {
        rec::<Session>("sessions", json!(hex::encode(k)), v)
    })?;
    walk(
        &tx,
        REFRESH_FAMILIES,
        &mut out,
        "refresh_families",
        |k: u128, v| rec::<RefreshFamily>("refresh_families", json!(Uuid::from_u128(k)), v),
    )?;
    walk(
        &tx,
        REFRESH_TOKENS,
        &mut out,
        "refresh_tokens",
        |k: &[u8], v| rec::<RefreshToken>("refresh_tokens", json!(hex::encode(k)), v),
    )?;
    walk(&tx, API_KEYS, &mut out, "api_keys", |k: &[u8], v| {
        rec::<ApiKey>("api_keys", json!(hex::encode(k)), v)
    })?;
    walk(&tx, INVITES, &mut out, "invites", |k: &str, v| {
        rec::<Invite>("invites", json!(k), v)
    })?;
    walk(&tx, AUDIT, &mut out, "audit", |k: u128, v| {
        rec::<AuditEntry>("audit", json!(Uuid::from_u128(k)), v)
    })?;
    walk(&tx, PROVIDERS, &mut out, "providers", |k: &str, v| {
        rec::<StoredProvider>("providers", json!(k), v)
    })?;
    walk(
        &tx,
        CONVERSATIONS,
        &mut out,
        "conversations",
        |k: u128, v| rec::<Conversation>("conversations", json!(Uuid::from_u128(k)), v),
    )?;
    walk(&tx, MESSAGES, &mut out, "messages", |k: (u128, u128), v| {
        let key = json!([Uuid::from_u128(k.0), Uuid::from_u128(k.1)]);
        rec::<Message>("messages", key, v)
    })?;
    walk(
        &tx,
        SEARCH_OUTBOX,
        &mut out,
        "search_outbox",
        |_: u64, v| rec::<OutboxOp>("search_outbox", Value::Null, v),
    )?;
    walk(
        &tx,
        USAGE_DAILY,
        &mut out,
        "usage_daily",
        |k: (u128, u32, &str, &str), v| {
            let r = UsageRecord {
                user_id: Uuid::from_u128(k.0),
                day: k.1,
                api_key_id: None,
                provider: k.2.to_string(),
                model: k.3.to_string(),
                counts: dec(v)?,
            };
            Ok(Some((usage_key(&r), serde_json::to_value(&r)?)))
        },
    )?;
    walk(
        &tx,
        USAGE_KEY_DAILY,
        &mut out,
        "usage_key_daily",
        |k: (u128, u32, u128, &str, &str), v| {
            let r = UsageRecord {
                user_id: Uuid::from_u128(k.0),
                day: k.1,
                api_key_id: Some(Uuid::from_u128(k.2)),
                provider: k.3.to_string(),
                model: k.4.to_string(),
                counts: dec(v)?,
            };
            Ok(Some((usage_key(&r), serde_json::to_value(&r)?)))
        },
    )?;
    walk(&tx, ACME, &mut out, "acme", |k: &str, v| {
        Ok(Some((
            json!(k),
            canonical("acme", serde_json::from_slice(v)?)?,
        )))
    })?;
    walk(&tx, PRESETS, &mut out, "presets", |k: u128, v| {
        rec::<Preset>("presets", json!(Uuid::from_u128(k)), v)
    })?;
    walk(&tx, PROMPTS, &mut out, "prompts", |k: u128, v| {
        rec::<SavedPrompt>("prompts", json!(Uuid::from_u128(k)), v)
    })?;
    walk(
        &tx,
        USER_SETTINGS,
        &mut out,
        "user_settings",
        |k: u128, v| rec::<UserSettings>("user_settings", json!(Uuid::from_u128(k)), v),
    )?;
    walk(
        &tx,
        SERVER_SETTINGS,
        &mut out,
        "server_settings",
        |k: &str, v| rec::<Branding>("server_settings", json!(k), v),
    )?;
    walk(
        &tx,
        MODEL_SETTINGS,
        &mut out,
        "model_settings",
        |k: &str, v| rec::<ModelSetting>("model_settings", json!(k), v),
    )?;
    walk(&tx, UPLOADS, &mut out, "uploads", |k: u128, v| {
        rec::<Upload>("uploads", json!(Uuid::from_u128(k)), v)
    })?;
    upload_usage(&tx, &mut out)?;
    walk(&tx, DOCUMENTS, &mut out, "documents", |k: u128, v| {
        rec::<DocumentRecord>("documents", json!(Uuid::from_u128(k)), v)
    })?;
    walk(
        &tx,
        DOC_CHUNKS,
        &mut out,
        "doc_chunks",
        |k: (u128, u32), v| rec::<Chunk>("doc_chunks", json!([Uuid::from_u128(k.0), k.1]), v),
    )?;
    walk(&tx, DOC_VECTORS, &mut out, "doc_vectors", |k: u128, v| {
        rec::<ChunkVectors>("doc_vectors", json!(Uuid::from_u128(k)), v)
    })?;
    walk(&tx, COLLECTIONS, &mut out, "collections", |k: u128, v| {
        rec::<Collection>("collections", json!(Uuid::from_u128(k)), v)
    })?;
    walk(&tx, IDENTITIES, &mut out, "identities", |k: u128, v| {
        rec::<crate::store::identities::IdentityLink>("identities", json!(Uuid::from_u128(k)), v)
    })?;
    walk(&tx, TWO_FACTOR, &mut out, "two_factor", |k: u128, v| {
        rec::<crate::store::security::TwoFactor>("two_factor", json!(Uuid::from_u128(k)), v)
    })?;
    walk(&tx, SHARES, &mut out, "shares", |k: &str, v| {
        rec::<crate::store::shares::Share>("shares", json!(k), v)
    })?;
    walk(&tx, GROUPS, &mut out, "groups", |k: u128, v| {
        rec::<crate::store::groups::Group>("groups", json!(Uuid::from_u128(k)), v)
    })?;
    group_members(&tx, &mut out)?;
    import_sources(&tx, &mut out)?;
    walk(&tx, IMPORT_JOBS, &mut out, "import_jobs", |k: u128, v| {
        rec::<crate::store::import_jobs::ImportJobRecord>(
            "import_jobs",
            json!(Uuid::from_u128(k)),
            v,
        )
    })?;
    Ok(version)
}

/// Every membership, in (group, user) order (a table without values).
fn group_members(tx: &ReadTransaction, out: &mut Out<'_>) -> StoreResult<()> {
    let t = match tx.open_table(GROUP_MEMBERS) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut rows = Vec::with_capacity(out.batch);
    for r in t.iter()? {
        let (k, _) = r?;
        let (g, u) = k.value();
        let m = crate::store::groups::GroupMember {
            group_id: Uuid::from_u128(g),
            user_id: Uuid::from_u128(u),
        };
        rows.push((json!([m.group_id, m.user_id]), serde_json::to_value(&m)?));
        if rows.len() >= out.batch {
            (out.sink)("group_members", std::mem::take(&mut rows))?;
        }
    }
    if !rows.is_empty() {
        (out.sink)("group_members", rows)?;
    }
    Ok(())
}

/// Each owner's bytes of uploads (the one table whose values are numbers).
fn upload_usage(tx: &ReadTransaction, out: &mut Out<'_>) -> StoreResult<()> {
    let t = match tx.open_table(UPLOAD_USAGE) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut rows = Vec::with_capacity(out.batch);
    for r in t.iter()? {
        let (k, v) = r?;
        rows.push((json!(Uuid::from_u128(k.value())), json!(v.value())));
        if rows.len() >= out.batch {
            (out.sink)("upload_usage", std::mem::take(&mut rows))?;
        }
    }
    if !rows.is_empty() {
        (out.sink)("upload_usage", rows)?;
    }
    Ok(())
}

/// What was imported from other apps' exports (keys of two parts, values
/// conversation ids): keyed `[user_id, source]`.
fn import_sources(tx: &ReadTransaction, out: &mut Out<'_>) -> StoreResult<()> {
    let t = match tx.open_table(IMPORT_SOURCES) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut rows = Vec::with_capacity(out.batch);
    for r in t.iter()? {
        let (k, v) = r?;
        let (user, source) = k.value();
        let rec = ImportSourceRecord {
            user_id: Uuid::from_u128(user),
            source: source.to_string(),
            conversation_id: Uuid::from_u128(v.value()),
        };
        rows.push((
            json!([rec.user_id, rec.source]),
            serde_json::to_value(&rec)?,
        ));
        if rows.len() >= out.batch {
            (out.sink)("import_sources", std::mem::take(&mut rows))?;
        }
    }
    if !rows.is_empty() {
        (out.sink)("import_sources", rows)?;
    }
    Ok(())
}

/// The key of a usage row: its whole identity, in key order.
pub fn usage_key(r: &UsageRecord) -> Value {
    match r.api_key_id {
        Some(k) => json!([r.user_id, r.day, k, r.provider, r.model]),
        None => json!([r.user_id, r.day, r.provider, r.model]),
    }
}

fn rec<T: DeserializeOwned + Serialize>(
    _table: &str,
    key: Value,
    v: &[u8],
) -> StoreResult<Option<Row>> {
    let t: T = dec(v)?;
    Ok(Some((key, serde_json::to_value(&t)?)))
}

struct Out<'a> {
    sink: &'a mut dyn FnMut(&'static str, Vec<Row>) -> StoreResult<()>,
    batch: usize,
}

fn walk<K: redb::Key + 'static, F>(
    tx: &ReadTransaction,
    def: TableDefinition<K, &[u8]>,
    out: &mut Out<'_>,
    name: &'static str,
    mut f: F,
) -> StoreResult<()>
where
    F: for<'k> FnMut(K::SelfType<'k>, &[u8]) -> StoreResult<Option<Row>>,
{
    let t = match tx.open_table(def) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut rows = Vec::with_capacity(out.batch);
    for r in t.iter()? {
        let (k, v) = r?;
        if let Some(row) = f(k.value(), v.value())? {
            rows.push(row);
        }
        if rows.len() >= out.batch {
            (out.sink)(name, std::mem::take(&mut rows))?;
        }
    }
    if !rows.is_empty() {
        (out.sink)(name, rows)?;
    }
    Ok(())
}
