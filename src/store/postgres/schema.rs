//! Schema migrations, run by every process at open. One transaction holds
//! a transaction-scoped advisory lock from before it reads the version until
//! it commits, so instances starting together migrate one at a time and the
//! later ones find the work done. `schema_version` has one row per step.

use super::{PgStore, Sql, begin, commit, pg};
use crate::store::{StoreError, StoreResult};

/// The schema version this binary writes (PostgreSQL's own numbering,
/// independent of the redb file's).
pub const SCHEMA_VERSION: u64 = 9;

/// The advisory lock migrations hold (any fixed number: "confab" + 1).
const MIGRATION_LOCK: i64 = 0x636f_6e66_6162_0001;

/// Step N brings the schema from N to N+1.
const STEPS: &[&str] = &[
    // 0 → 1: every table.
    r#"
CREATE TABLE meta (
    key text PRIMARY KEY,
    value jsonb NOT NULL
);
CREATE TABLE users (
    id uuid PRIMARY KEY,
    name_key text NOT NULL UNIQUE,
    role text NOT NULL,
    status text NOT NULL,
    data jsonb NOT NULL
);
CREATE TABLE sessions (
    token_hash bytea PRIMARY KEY,
    id uuid NOT NULL,
    user_id uuid NOT NULL,
    expires_at bigint NOT NULL,
    last_seen bigint NOT NULL,
    data jsonb NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id, id);
CREATE TABLE refresh_tokens (
    token_hash bytea PRIMARY KEY,
    family_id uuid NOT NULL,
    expires_at bigint NOT NULL,
    data jsonb NOT NULL
);
CREATE TABLE refresh_families (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL,
    revoked boolean NOT NULL,
    data jsonb NOT NULL
);
CREATE INDEX refresh_families_by_user ON refresh_families (user_id) WHERE NOT revoked;
CREATE TABLE api_keys (
    key_hash bytea PRIMARY KEY,
    id uuid NOT NULL,
    user_id uuid NOT NULL,
    data jsonb NOT NULL
);
CREATE INDEX api_keys_by_user ON api_keys (user_id, id);
CREATE TABLE invites (
    code text PRIMARY KEY,
    created_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    uses_left bigint NOT NULL,
    data jsonb NOT NULL
);
CREATE TABLE audit (
    id uuid PRIMARY KEY,
    data jsonb NOT NULL
);
CREATE TABLE providers (
    name text PRIMARY KEY,
    data jsonb NOT NULL
);
CREATE TABLE conversations (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL,
    updated_at_ms bigint NOT NULL,
    archived boolean NOT NULL,
    pinned boolean NOT NULL,
    data jsonb NOT NULL
);
CREATE INDEX conversations_by_user ON conversations (user_id, updated_at_ms DESC, id DESC);
CREATE TABLE messages (
    conversation_id uuid NOT NULL,
    id uuid NOT NULL,
    status text NOT NULL,
    data jsonb NOT NULL,
    PRIMARY KEY (conversation_id, id)
);
CREATE INDEX messages_streaming ON messages (conversation_id, id) WHERE status = 'streaming';
CREATE TABLE search_outbox (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    op jsonb NOT NULL
);
CREATE TABLE usage_daily (
    user_id uuid NOT NULL,
    day integer NOT NULL,
    provider text COLLATE "C" NOT NULL,
    model text COLLATE "C" NOT NULL,
    messages bigint NOT NULL,
    input_tokens bigint NOT NULL,
    output_tokens bigint NOT NULL,
    cost_nanos bigint NOT NULL,
    PRIMARY KEY (user_id, day, provider, model)
);
CREATE INDEX usage_daily_by_day ON usage_daily (day, user_id, provider, model);
CREATE TABLE usage_key_daily (
    user_id uuid NOT NULL,
    day integer NOT NULL,
    api_key_id uuid NOT NULL,
    provider text COLLATE "C" NOT NULL,
    model text COLLATE "C" NOT NULL,
    messages bigint NOT NULL,
    input_tokens bigint NOT NULL,
    output_tokens bigint NOT NULL,
    cost_nanos bigint NOT NULL,
    PRIMARY KEY (user_id, day, api_key_id, provider, model)
);
CREATE INDEX usage_key_daily_by_day ON usage_key_daily (day, user_id, api_key_id, provider, model);
CREATE TABLE acme (
    key text PRIMARY KEY,
    data jsonb NOT NULL
);
CREATE TABLE presets (
    id uuid PRIMARY KEY,
    owner uuid,
    data jsonb NOT NULL
);
CREATE TABLE prompts (
    id uuid PRIMARY KEY,
    owner uuid,
    command text NOT NULL,
    data jsonb NOT NULL
);
CREATE UNIQUE INDEX prompts_command ON prompts
    ((coalesce(owner, '00000000-0000-0000-0000-000000000000'::uuid)), command);
CREATE TABLE user_settings (
    user_id uuid PRIMARY KEY,
    data jsonb NOT NULL
);
CREATE TABLE server_settings (
    key text PRIMARY KEY,
    data jsonb NOT NULL
);
CREATE TABLE model_settings (
    model text PRIMARY KEY,
    data jsonb NOT NULL
);
"#,
    // 1 → 2: what several instances share (see `cluster.rs`).
    super::cluster::SCHEMA,
    // 2 → 3: uploaded files, documents read from them, knowledge collections.
    r#"
CREATE TABLE uploads (
    id uuid PRIMARY KEY,
    owner uuid NOT NULL,
    size bigint NOT NULL,
    sha256 text NOT NULL,
    thumb_sha256 text,
    data jsonb NOT NULL
);
CREATE INDEX uploads_by_owner ON uploads (owner, id);
CREATE INDEX uploads_by_blob ON uploads (sha256);
CREATE INDEX uploads_by_thumb ON uploads (thumb_sha256) WHERE thumb_sha256 IS NOT NULL;
CREATE TABLE upload_usage (
    owner uuid PRIMARY KEY,
    bytes bigint NOT NULL
);
CREATE TABLE documents (
    file_id uuid PRIMARY KEY,
    owner uuid NOT NULL,
    data jsonb NOT NULL
);
CREATE INDEX documents_by_owner ON documents (owner, file_id);
CREATE TABLE doc_chunks (
    file_id uuid NOT NULL,
    ordinal bigint NOT NULL,
    data jsonb NOT NULL,
    PRIMARY KEY (file_id, ordinal)
);
CREATE TABLE doc_vectors (
    file_id uuid PRIMARY KEY,
    data jsonb NOT NULL
);
CREATE TABLE collections (
    id uuid PRIMARY KEY,
    owner uuid NOT NULL,
    data jsonb NOT NULL
);
CREATE INDEX collections_by_owner ON collections (owner, id);
"#,
    // 3 → 4: the uploaded files' bytes, shared by every instance.
    super::blobs::SCHEMA,
    // 4 → 5: single sign-on (identities linked to accounts, sign-ins under way).
    r#"
CREATE TABLE identities (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL,
    issuer text NOT NULL,
    subject text NOT NULL,
    data jsonb NOT NULL,
    UNIQUE (issuer, subject)
);
CREATE INDEX identities_by_user ON identities (user_id, id);
CREATE TABLE sso_states (
    key bytea PRIMARY KEY,
    expires_at bigint NOT NULL,
    data jsonb NOT NULL
);
CREATE INDEX sso_states_by_expiry ON sso_states (expires_at);
"#,
    // 5 → 6: second factors and one-time tokens (sign-in challenges,
    // password resets, email verifications).
    r#"
CREATE TABLE two_factor (
    user_id uuid PRIMARY KEY,
    data jsonb NOT NULL
);
CREATE TABLE one_time_tokens (
    token_hash bytea PRIMARY KEY,
    kind text NOT NULL,
    user_id uuid NOT NULL,
    expires_at bigint NOT NULL,
    data jsonb NOT NULL
);
CREATE INDEX one_time_tokens_by_user ON one_time_tokens (user_id, kind);
CREATE INDEX one_time_tokens_by_expiry ON one_time_tokens (expires_at);
"#,
    // 6 → 7: share links, and what was imported from other apps.
    r#"
CREATE TABLE shares (
    token text PRIMARY KEY,
    id uuid NOT NULL UNIQUE,
    user_id uuid NOT NULL,
    data jsonb NOT NULL
);
CREATE INDEX shares_by_user ON shares (user_id, id);
CREATE TABLE import_sources (
    user_id uuid NOT NULL,
    source text NOT NULL,
    conversation_id uuid NOT NULL,
    PRIMARY KEY (user_id, source)
);
"#,
    // 7 → 8: groups, their members, the models they allow and their quota
    // defaults.
    r#"
CREATE TABLE groups (
    id uuid PRIMARY KEY,
    name_key text NOT NULL UNIQUE,
    data jsonb NOT NULL
);
CREATE TABLE group_members (
    group_id uuid NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id uuid NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_by_user ON group_members (user_id, group_id);
"#,
    // 8 → 9: import jobs, kept in memory only before.
    r#"
CREATE TABLE import_jobs (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL,
    status text NOT NULL,
    runner uuid,
    data jsonb NOT NULL
);
CREATE INDEX import_jobs_by_user ON import_jobs (user_id, id);
CREATE INDEX import_jobs_running ON import_jobs (id) WHERE status = 'running';
"#,
];

impl PgStore {
    /// Brings the schema to [`SCHEMA_VERSION`]; refuses a newer one.
    pub(super) async fn migrate(&self) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = begin(&mut c).await?;
        tx.exec("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (
                version bigint PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now(),
                confab_version text NOT NULL
            )",
        )
        .await
        .map_err(pg)?;
        let found: i64 = tx
            .one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
            .await?
            .get(0);
        let found = found.max(0) as u64;
        if found > SCHEMA_VERSION {
            return Err(StoreError::TooNewDatabase {
                what: self.what.clone(),
                found,
                known: SCHEMA_VERSION,
            });
        }
        for step in found..SCHEMA_VERSION {
            tracing::info!(from = step, to = step + 1, db = %self.what, "migrating the PostgreSQL schema");
            tx.batch_execute(STEPS[step as usize]).await.map_err(pg)?;
            tx.exec(
                "INSERT INTO schema_version (version, confab_version) VALUES ($1, $2)",
                &[&((step + 1) as i64), &crate::VERSION],
            )
            .await?;
        }
        commit(tx).await
    }

    pub(super) async fn current_schema(&self) -> StoreResult<u64> {
        let c = self.client().await?;
        let v: i64 = c
            .one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
            .await?
            .get(0);
        Ok(v.max(0) as u64)
    }
}
