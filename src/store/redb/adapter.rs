//! [`RedbStore`]: the store traits over [`Db`]. redb is synchronous and a
//! durable commit waits for an fsync, so every write (and every read that
//! may walk many records) runs on tokio's blocking pool, never on an async
//! worker; point reads are a few microseconds and run in place.

use async_trait::async_trait;
use std::path::Path;
use uuid::Uuid;

use super::Db;
use crate::store::acme::{AcmeAccountRecord, AcmeCertRecord};
use crate::store::audit_query::AuditFilter;
use crate::store::chat::{
    Conversation, ConversationCursor, ConversationFilter, Message, ModelParamsPatch,
};
use crate::store::file::{BackupError, BackupHeader, BlobSource, FileStore};
use crate::store::knowledge::{Chunk, ChunkVectors, Collection, CollectionPatch, DocumentRecord};
use crate::store::model_settings::ModelSetting;
use crate::store::provider_records::StoredProvider;
use crate::store::search_outbox::Resolved;
use crate::store::uploads::{DeletedUpload, Thumbnail, Upload, UploadCreated};
use crate::store::usage::{Charge, KeyUsageRow, UsageCounts, UsageRow};
use crate::store::*;

/// The embedded store: one redb file, `confab.redb`, in the data directory.
#[derive(Clone)]
pub struct RedbStore {
    db: Db,
    /// Usage charges and audit entries, many to a transaction.
    small: std::sync::Arc<super::batch::Batcher>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.db.path())
            .finish()
    }
}

impl RedbStore {
    /// Opens (creating and migrating) `<data_dir>/confab.redb`. Locked when
    /// another process has it open; TooNew when a newer confab wrote it.
    pub fn open(data_dir: &Path) -> StoreResult<RedbStore> {
        Ok(RedbStore {
            db: Db::open(data_dir)?,
            small: Default::default(),
        })
    }

    /// Opens the store as the rest of confab holds it.
    pub fn open_shared(data_dir: &Path) -> StoreResult<SharedStore> {
        Ok(std::sync::Arc::new(Self::open(data_dir)?))
    }

    /// [`RedbStore::open_shared`] with a page cache of `cache_bytes`
    /// (`store_cache_mib`).
    pub fn open_shared_with_cache(data_dir: &Path, cache_bytes: usize) -> StoreResult<SharedStore> {
        Ok(std::sync::Arc::new(RedbStore {
            db: Db::open_with_cache(data_dir, cache_bytes)?,
            small: Default::default(),
        }))
    }

    #[cfg(test)]
    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// Runs `f` on the blocking pool.
    async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&Db) -> StoreResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let db = self.db.clone();
        match tokio::task::spawn_blocking(move || f(&db)).await {
            Ok(r) => r,
            Err(e) => Err(StoreError::Backend(format!("store task failed: {e}"))),
        }
    }
}

impl Store for RedbStore {
    fn file(&self) -> Option<&dyn FileStore> {
        Some(self)
    }
}

impl FileStore for RedbStore {
    fn path(&self) -> &Path {
        self.db.path()
    }

    fn backup_to(
        &self,
        dest: &Path,
        files: &[(String, Vec<u8>)],
        blobs: &dyn BlobSource,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<BackupHeader, BackupError> {
        self.db.backup_to(dest, files, blobs, progress)
    }
}

#[async_trait]
impl UserStore for RedbStore {
    async fn user_count(&self) -> StoreResult<u64> {
        self.db.user_count()
    }
    async fn get_user(&self, id: Uuid) -> StoreResult<User> {
        self.db.get_user(id)
    }
    async fn find_user_by_name(&self, username: &str) -> StoreResult<Option<User>> {
        self.db.find_user_by_name(username)
    }
    async fn create_user(
        &self,
        user: &User,
        only_if_empty: bool,
        invite: Option<&str>,
        now: i64,
    ) -> StoreResult<()> {
        let (user, invite) = (user.clone(), invite.map(str::to_owned));
        self.run(move |db| db.create_user(&user, only_if_empty, invite.as_deref(), now))
            .await
    }
    async fn update_user(
        &self,
        id: Uuid,
        patch: UserPatch,
        sign_out: Option<SignOut>,
    ) -> StoreResult<(User, Option<Revoked>)> {
        self.run(move |db| db.update_user(id, patch, sign_out))
            .await
    }
    async fn list_users(&self, cursor: Option<Uuid>, limit: usize) -> StoreResult<Vec<User>> {
        self.run(move |db| db.list_users(cursor, limit)).await
    }
}

#[async_trait]
impl SessionStore for RedbStore {
    async fn put_session(&self, token_hash: &[u8], s: &Session) -> StoreResult<()> {
        let (h, s) = (token_hash.to_vec(), s.clone());
        self.run(move |db| db.put_session(&h, &s)).await
    }
    async fn get_session(&self, token_hash: &[u8]) -> StoreResult<Option<Session>> {
        self.db.get_session(token_hash)
    }
    async fn touch_session(&self, token_hash: &[u8], now: i64) -> StoreResult<()> {
        let h = token_hash.to_vec();
        self.run(move |db| db.touch_session(&h, now)).await
    }
    async fn list_sessions(&self, user_id: Uuid) -> StoreResult<Vec<Session>> {
        self.db.list_sessions(user_id)
    }
    async fn delete_session(&self, user_id: Uuid, session_id: Uuid) -> StoreResult<()> {
        self.run(move |db| db.delete_session(user_id, session_id))
            .await
    }
    async fn delete_sessions_except(
        &self,
        user_id: Uuid,
        keep: Option<Uuid>,
    ) -> StoreResult<usize> {
        self.run(move |db| db.delete_sessions_except(user_id, keep))
            .await
    }
    async fn prune_sessions(&self, now: i64, idle_secs: i64) -> StoreResult<usize> {
        self.run(move |db| db.prune_sessions(now, idle_secs)).await
    }
    async fn prune_tokens(&self, now: i64) -> StoreResult<usize> {
        self.run(move |db| db.prune_tokens(now)).await
    }
    async fn put_refresh(&self, hash: &[u8], r: &RefreshToken) -> StoreResult<()> {
        let (h, r) = (hash.to_vec(), r.clone());
        self.run(move |db| db.put_refresh(&h, &r)).await
    }
    async fn rotate_refresh(
        &self,
        old_hash: &[u8],
        new_hash: &[u8],
        now: i64,
        new_expires_at: i64,
    ) -> StoreResult<RefreshOutcome> {
        let (old, new) = (old_hash.to_vec(), new_hash.to_vec());
        self.run(move |db| db.rotate_refresh(&old, &new, now, new_expires_at))
            .await
    }
}

#[async_trait]
impl ApiKeyStore for RedbStore {
    async fn put_api_key(&self, hash: &[u8], k: &ApiKey) -> StoreResult<()> {
        let (h, k) = (hash.to_vec(), k.clone());
        self.run(move |db| db.put_api_key(&h, &k)).await
    }
    async fn get_api_key(&self, hash: &[u8]) -> StoreResult<Option<ApiKey>> {
        self.db.get_api_key(hash)
    }
    async fn touch_api_key(&self, hash: &[u8], now: i64) -> StoreResult<()> {
        let h = hash.to_vec();
        self.run(move |db| db.touch_api_key(&h, now)).await
    }
    async fn list_api_keys(&self, user_id: Uuid) -> StoreResult<Vec<ApiKey>> {
        self.db.list_api_keys(user_id)
    }
    async fn delete_api_key(&self, user_id: Uuid, key_id: Uuid) -> StoreResult<ApiKey> {
        self.run(move |db| db.delete_api_key(user_id, key_id)).await
    }
}

#[async_trait]
impl InviteStore for RedbStore {
    async fn put_invite(&self, inv: &Invite) -> StoreResult<()> {
        let inv = inv.clone();
        self.run(move |db| db.put_invite(&inv)).await
    }
    async fn get_invite(&self, code: &str) -> StoreResult<Option<Invite>> {
        self.db.get_invite(code)
    }
    async fn list_invites(&self) -> StoreResult<Vec<Invite>> {
        self.db.list_invites()
    }
    async fn delete_invite(&self, code: &str, owner: Option<Uuid>) -> StoreResult<()> {
        let code = code.to_owned();
        self.run(move |db| db.delete_invite(&code, owner)).await
    }
}

#[async_trait]
impl AuditStore for RedbStore {
    async fn append_audit(&self, e: &AuditEntry) -> StoreResult<()> {
        let op = super::batch::Small::Audit(e.clone());
        self.small.submit(&self.db, op).await
    }
    async fn list_audit(&self, before: Option<Uuid>, limit: usize) -> StoreResult<Vec<AuditEntry>> {
        self.db.list_audit(before, limit)
    }
    async fn list_audit_filtered(
        &self,
        before: Option<Uuid>,
        limit: usize,
        f: &AuditFilter,
    ) -> StoreResult<(Vec<AuditEntry>, Option<Uuid>)> {
        let f = f.clone();
        self.run(move |db| db.list_audit_filtered(before, limit, &f))
            .await
    }
}

#[async_trait]
impl ModelSettingsStore for RedbStore {
    async fn list_model_settings(&self) -> StoreResult<Vec<ModelSetting>> {
        self.db.list_model_settings()
    }
    async fn put_model_setting(&self, s: &ModelSetting) -> StoreResult<()> {
        let s = s.clone();
        self.run(move |db| db.put_model_setting(&s)).await
    }
    async fn default_model(&self) -> StoreResult<Option<String>> {
        self.db.default_model()
    }
    async fn set_default_model(&self, model: Option<&str>) -> StoreResult<()> {
        let model = model.map(str::to_owned);
        self.run(move |db| db.set_default_model(model.as_deref()))
            .await
    }
}

#[async_trait]
impl ProviderStore for RedbStore {
    async fn put_provider(&self, p: &StoredProvider) -> StoreResult<()> {
        let p = p.clone();
        self.run(move |db| db.put_provider(&p)).await
    }
    async fn create_provider(&self, p: &StoredProvider) -> StoreResult<()> {
        let p = p.clone();
        self.run(move |db| db.create_provider(&p)).await
    }
    async fn get_provider(&self, name: &str) -> StoreResult<Option<StoredProvider>> {
        self.db.get_provider(name)
    }
    async fn list_providers(&self) -> StoreResult<Vec<StoredProvider>> {
        self.db.list_providers()
    }
    async fn delete_provider(&self, name: &str) -> StoreResult<()> {
        let name = name.to_owned();
        self.run(move |db| db.delete_provider(&name)).await
    }
}

#[async_trait]
impl ChatStore for RedbStore {
    async fn create_conversation(&self, c: &Conversation) -> StoreResult<()> {
        let c = c.clone();
        self.run(move |db| db.create_conversation(&c)).await
    }
    async fn get_conversation(&self, user_id: Uuid, id: Uuid) -> StoreResult<Conversation> {
        self.db.get_conversation(user_id, id)
    }
    async fn list_conversations(
        &self,
        user_id: Uuid,
        cursor: Option<ConversationCursor>,
        filter: ConversationFilter,
        limit: usize,
    ) -> StoreResult<Vec<Conversation>> {
        self.run(move |db| db.list_conversations(user_id, cursor, filter, limit))
            .await
    }
    async fn update_conversation(
        &self,
        user_id: Uuid,
        id: Uuid,
        patch: ConversationPatch,
    ) -> StoreResult<Conversation> {
        let op = super::batch::Small::Patch {
            user_id,
            id,
            patch: Box::new(patch),
        };
        self.small.submit_conversation(&self.db, op).await
    }
    async fn delete_conversation(&self, user_id: Uuid, id: Uuid) -> StoreResult<usize> {
        self.run(move |db| db.delete_conversation(user_id, id))
            .await
    }
    async fn start_turn(
        &self,
        user_id: Uuid,
        new_conv: Option<&Conversation>,
        model: Option<String>,
        params: ModelParamsPatch,
        user_msg: Option<&Message>,
        assistant: &Message,
    ) -> StoreResult<Conversation> {
        let op = super::batch::Small::StartTurn(Box::new(super::batch::Turn {
            user_id,
            new_conv: new_conv.cloned(),
            model,
            params,
            user_msg: user_msg.cloned(),
            assistant: assistant.clone(),
        }));
        self.small.submit_conversation(&self.db, op).await
    }
    async fn insert_messages(
        &self,
        user_id: Uuid,
        conv_id: Uuid,
        list: &[Message],
    ) -> StoreResult<()> {
        let list = list.to_vec();
        self.run(move |db| db.insert_messages(user_id, conv_id, &list))
            .await
    }
    async fn get_message(&self, user_id: Uuid, conv_id: Uuid, id: Uuid) -> StoreResult<Message> {
        self.db.get_message(user_id, conv_id, id)
    }
    async fn list_messages(&self, user_id: Uuid, conv_id: Uuid) -> StoreResult<Vec<Message>> {
        self.db.list_messages(user_id, conv_id)
    }
    async fn flush_partials(&self, parts: &[(Uuid, Uuid, String)]) -> StoreResult<()> {
        let parts = parts.to_vec();
        self.run(move |db| db.flush_partials(&parts)).await
    }
    async fn finish_message(&self, m: &Message) -> StoreResult<()> {
        let op = super::batch::Small::Finish(Box::new(m.clone()));
        self.small.submit(&self.db, op).await
    }
    async fn recover_streaming(&self) -> StoreResult<usize> {
        self.run(|db| db.recover_streaming()).await
    }
    async fn conversation_ids(&self, user_id: Uuid) -> StoreResult<Vec<Uuid>> {
        self.run(move |db| db.conversation_ids(user_id)).await
    }
    async fn conversation_with_messages(
        &self,
        user_id: Uuid,
        id: Uuid,
    ) -> StoreResult<(Conversation, Vec<Message>)> {
        self.run(move |db| db.conversation_with_messages(user_id, id))
            .await
    }
    async fn import_conversations(&self, list: &[(Conversation, Vec<Message>)]) -> StoreResult<()> {
        let list = list.to_vec();
        self.run(move |db| db.import_conversations(&list)).await
    }
    async fn import_sourced(
        &self,
        user_id: Uuid,
        list: &[(Option<String>, Conversation, Vec<Message>)],
    ) -> StoreResult<Vec<crate::store::shares::Sourced>> {
        let list = list.to_vec();
        self.run(move |db| db.import_sourced(user_id, &list)).await
    }
}

#[async_trait]
impl ShareStore for RedbStore {
    async fn create_share(&self, s: &crate::store::shares::Share) -> StoreResult<()> {
        let s = s.clone();
        self.run(move |db| db.create_share(&s)).await
    }
    async fn share_by_token(&self, token: &str) -> StoreResult<crate::store::shares::Share> {
        self.db.share_by_token(token)
    }
    async fn list_shares(&self, user_id: Uuid) -> StoreResult<Vec<crate::store::shares::Share>> {
        self.run(move |db| db.list_shares(user_id)).await
    }
    async fn delete_share(&self, user_id: Uuid, id: Uuid) -> StoreResult<()> {
        self.run(move |db| db.delete_share(user_id, id)).await
    }
}

#[async_trait]
impl ImportJobStore for RedbStore {
    async fn put_import_job(
        &self,
        j: &crate::store::import_jobs::ImportJobRecord,
    ) -> StoreResult<()> {
        let j = j.clone();
        self.run(move |db| db.put_import_job(&j)).await
    }
    async fn import_job(
        &self,
        user_id: Uuid,
        id: Uuid,
    ) -> StoreResult<crate::store::import_jobs::ImportJobRecord> {
        self.db.import_job(user_id, id)
    }
    async fn list_import_jobs(
        &self,
        user_id: Uuid,
    ) -> StoreResult<Vec<crate::store::import_jobs::ImportJobRecord>> {
        self.run(move |db| db.list_import_jobs(user_id)).await
    }
    async fn delete_import_job(&self, user_id: Uuid, id: Uuid) -> StoreResult<()> {
        self.run(move |db| db.delete_import_job(user_id, id)).await
    }
    async fn interrupt_import_jobs(
        &self,
        alive: &[Uuid],
        error: &str,
        now: i64,
    ) -> StoreResult<u64> {
        let (alive, error) = (alive.to_vec(), error.to_string());
        self.run(move |db| db.interrupt_import_jobs(&alive, &error, now))
            .await
    }
}

#[async_trait]
impl UsageStore for RedbStore {
    async fn charge_usage(&self, user_id: Uuid, day: u32, c: &Charge) -> StoreResult<()> {
        let op = super::batch::Small::Charge {
            user_id,
            day,
            charge: c.clone(),
        };
        self.small.submit(&self.db, op).await
    }
    async fn usage_by_key(
        &self,
        user_id: Option<Uuid>,
        from: u32,
        to: u32,
    ) -> StoreResult<Vec<KeyUsageRow>> {
        self.run(move |db| db.usage_by_key(user_id, from, to)).await
    }
    async fn usage_of_user(&self, user_id: Uuid, from: u32, to: u32) -> StoreResult<Vec<UsageRow>> {
        self.run(move |db| db.usage_of_user(user_id, from, to))
            .await
    }
    async fn usage_between(&self, from: u32, to: u32) -> StoreResult<Vec<UsageRow>> {
        self.run(move |db| db.usage_between(from, to)).await
    }
    async fn usage_user_day(&self, user_id: Uuid, day: u32) -> StoreResult<UsageCounts> {
        self.db.usage_user_day(user_id, day)
    }
}

#[async_trait]
impl SearchOutboxStore for RedbStore {
    async fn outbox_batch(&self, limit: usize) -> StoreResult<Vec<(u64, Resolved)>> {
        self.run(move |db| db.outbox_batch(limit)).await
    }
    async fn outbox_ack(&self, seq: u64) -> StoreResult<()> {
        self.run(move |db| db.outbox_ack(seq)).await
    }
    async fn outbox_len(&self) -> StoreResult<u64> {
        self.db.outbox_len()
    }
    async fn outbox_head(&self) -> StoreResult<u64> {
        self.db.outbox_head()
    }
    async fn searchable_page(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> StoreResult<SearchablePage> {
        self.run(move |db| db.searchable_page(after, limit)).await
    }
    async fn message_count(&self) -> StoreResult<u64> {
        self.db.message_count()
    }
}

#[async_trait]
impl AcmeStore for RedbStore {
    async fn get_acme_account(&self, directory: &str) -> StoreResult<Option<AcmeAccountRecord>> {
        self.db.get_acme_account(directory)
    }
    async fn put_acme_account(&self, r: &AcmeAccountRecord) -> StoreResult<()> {
        let r = r.clone();
        self.run(move |db| db.put_acme_account(&r)).await
    }
    async fn delete_acme_account(&self, directory: &str) -> StoreResult<()> {
        let d = directory.to_owned();
        self.run(move |db| db.delete_acme_account(&d)).await
    }
    async fn get_acme_cert(
        &self,
        directory: &str,
        domains: &[String],
    ) -> StoreResult<Option<AcmeCertRecord>> {
        self.db.get_acme_cert(directory, domains)
    }
    async fn put_acme_cert(&self, r: &AcmeCertRecord) -> StoreResult<()> {
        let r = r.clone();
        self.run(move |db| db.put_acme_cert(&r)).await
    }
}

#[async_trait]
impl SecurityStore for RedbStore {
    async fn get_two_factor(&self, user_id: Uuid) -> StoreResult<Option<security::TwoFactor>> {
        self.db.get_two_factor(user_id)
    }
    async fn put_two_factor(&self, t: &security::TwoFactor) -> StoreResult<()> {
        let t = t.clone();
        self.run(move |db| db.put_two_factor(&t)).await
    }
    async fn delete_two_factor(&self, user_id: Uuid) -> StoreResult<bool> {
        self.run(move |db| db.delete_two_factor(user_id)).await
    }
    async fn update_two_factor(
        &self,
        user_id: Uuid,
        f: security::TwoFactorUpdate,
    ) -> StoreResult<Option<(security::TwoFactor, bool)>> {
        self.run(move |db| db.update_two_factor(user_id, f)).await
    }
    async fn put_one_time(&self, hash: &[u8], t: &security::OneTimeToken) -> StoreResult<()> {
        let (hash, t) = (hash.to_vec(), t.clone());
        self.run(move |db| db.put_one_time(&hash, &t)).await
    }
    async fn take_one_time(
        &self,
        kind: security::OneTimeKind,
        hash: &[u8],
        now: i64,
    ) -> StoreResult<Option<security::OneTimeToken>> {
        let hash = hash.to_vec();
        self.run(move |db| db.take_one_time(kind, &hash, now)).await
    }
    async fn delete_one_time_of_user(
        &self,
        user_id: Uuid,
        kind: security::OneTimeKind,
    ) -> StoreResult<usize> {
        self.run(move |db| db.delete_one_time_of_user(user_id, kind))
            .await
    }
    async fn prune_one_time(&self, now: i64) -> StoreResult<usize> {
        self.run(move |db| db.prune_one_time(now)).await
    }
    async fn two_factor_policy(&self) -> StoreResult<security::TwoFactorPolicy> {
        self.db.two_factor_policy()
    }
    async fn set_two_factor_policy(&self, p: security::TwoFactorPolicy) -> StoreResult<()> {
        self.run(move |db| db.set_two_factor_policy(p)).await
    }
}

#[async_trait]
impl StoreHealth for RedbStore {
    async fn schema_version(&self) -> StoreResult<u64> {
        self.db.schema_version()
    }
    async fn probe(&self, now: i64) -> StoreResult<()> {
        self.run(move |db| db.probe(now)).await
    }
}

#[async_trait]
impl PresetStore for RedbStore {
    async fn put_preset(&self, p: &crate::store::presets::Preset) -> StoreResult<()> {
        let p = p.clone();
        self.run(move |db| db.put_preset(&p)).await
    }
    async fn get_preset(
        &self,
        viewer: Uuid,
        id: Uuid,
    ) -> StoreResult<crate::store::presets::Preset> {
        self.db.get_preset(viewer, id)
    }
    async fn list_presets(&self, viewer: Uuid) -> StoreResult<Vec<crate::store::presets::Preset>> {
        self.run(move |db| db.list_presets(viewer)).await
    }
    async fn delete_preset(&self, id: Uuid) -> StoreResult<()> {
        self.run(move |db| db.delete_preset(id)).await
    }
    async fn put_prompt(&self, p: &crate::store::presets::SavedPrompt) -> StoreResult<()> {
        let p = p.clone();
        self.run(move |db| db.put_prompt(&p)).await
    }
    async fn get_prompt(
        &self,
        viewer: Uuid,
        id: Uuid,
    ) -> StoreResult<crate::store::presets::SavedPrompt> {
        self.db.get_prompt(viewer, id)
    }
    async fn list_prompts(
        &self,
        viewer: Uuid,
    ) -> StoreResult<Vec<crate::store::presets::SavedPrompt>> {
        self.run(move |db| db.list_prompts(viewer)).await
    }
    async fn delete_prompt(&self, id: Uuid) -> StoreResult<()> {
        self.run(move |db| db.delete_prompt(id)).await
    }
}

#[async_trait]
impl SettingsStore for RedbStore {
    async fn get_user_settings(
        &self,
        user_id: Uuid,
    ) -> StoreResult<crate::store::presets::UserSettings> {
        self.db.get_user_settings(user_id)
    }
    async fn put_user_settings(
        &self,
        user_id: Uuid,
        s: &crate::store::presets::UserSettings,
    ) -> StoreResult<()> {
        let s = s.clone();
        self.run(move |db| db.put_user_settings(user_id, &s)).await
    }
    async fn get_branding(&self) -> StoreResult<crate::store::presets::Branding> {
        self.db.get_branding()
    }
    async fn put_branding(&self, b: &crate::store::presets::Branding) -> StoreResult<()> {
        let b = b.clone();
        self.run(move |db| db.put_branding(&b)).await
    }
}

#[async_trait]
impl KnowledgeStore for RedbStore {
    async fn put_document(&self, doc: &DocumentRecord, chunks: &[Chunk]) -> StoreResult<()> {
        let (doc, chunks) = (doc.clone(), chunks.to_vec());
        self.run(move |db| db.put_document(&doc, &chunks)).await
    }
    async fn get_document(&self, owner: Uuid, file_id: Uuid) -> StoreResult<DocumentRecord> {
        self.db.get_document(owner, file_id)
    }
    async fn list_documents(&self, owner: Uuid) -> StoreResult<Vec<DocumentRecord>> {
        self.run(move |db| db.list_documents(owner)).await
    }
    async fn document_chunks(
        &self,
        owner: Uuid,
        file_id: Uuid,
        from: u32,
        to: u32,
    ) -> StoreResult<Vec<Chunk>> {
        self.run(move |db| db.document_chunks(owner, file_id, from, to))
            .await
    }
    async fn get_chunks(&self, owner: Uuid, keys: &[(Uuid, u32)]) -> StoreResult<Vec<Chunk>> {
        let keys = keys.to_vec();
        self.run(move |db| db.get_chunks(owner, &keys)).await
    }
    async fn delete_document(&self, owner: Uuid, file_id: Uuid) -> StoreResult<bool> {
        self.run(move |db| db.delete_document(owner, file_id)).await
    }
    async fn put_vectors(&self, owner: Uuid, v: &ChunkVectors) -> StoreResult<()> {
        let v = v.clone();
        self.run(move |db| db.put_vectors(owner, &v)).await
    }
    async fn get_vectors(&self, owner: Uuid, file_id: Uuid) -> StoreResult<Option<ChunkVectors>> {
        self.run(move |db| db.get_vectors(owner, file_id)).await
    }
    async fn documents_page(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> StoreResult<Vec<(DocumentRecord, Vec<Chunk>)>> {
        self.run(move |db| db.documents_page(after, limit)).await
    }
    async fn create_collection(&self, c: &Collection) -> StoreResult<()> {
        let c = c.clone();
        self.run(move |db| db.create_collection(&c)).await
    }
    async fn get_collection(&self, owner: Uuid, id: Uuid) -> StoreResult<Collection> {
        self.db.get_collection(owner, id)
    }
    async fn list_collections(&self, owner: Uuid) -> StoreResult<Vec<Collection>> {
        self.run(move |db| db.list_collections(owner)).await
    }
    async fn update_collection(
        &self,
        owner: Uuid,
        id: Uuid,
        patch: CollectionPatch,
        now: i64,
    ) -> StoreResult<Collection> {
        self.run(move |db| db.update_collection(owner, id, patch, now))
            .await
    }
    async fn delete_collection(&self, owner: Uuid, id: Uuid) -> StoreResult<()> {
        self.run(move |db| db.delete_collection(owner, id)).await
    }
}

#[async_trait]
impl UploadStore for RedbStore {
    async fn create_upload(&self, u: &Upload, quota: Option<u64>) -> StoreResult<UploadCreated> {
        let u = u.clone();
        self.run(move |db| db.create_upload(&u, quota)).await
    }
    async fn get_upload(&self, owner: Uuid, id: Uuid) -> StoreResult<Upload> {
        self.db.get_upload(owner, id)
    }
    async fn list_uploads(
        &self,
        owner: Uuid,
        before: Option<Uuid>,
        limit: usize,
    ) -> StoreResult<Vec<Upload>> {
        self.run(move |db| db.list_uploads(owner, before, limit))
            .await
    }
    async fn upload_usage(&self, owner: Uuid) -> StoreResult<u64> {
        self.db.upload_usage(owner)
    }
    async fn set_upload_thumbnail(
        &self,
        owner: Uuid,
        id: Uuid,
        t: &Thumbnail,
    ) -> StoreResult<(Upload, Vec<String>)> {
        let t = t.clone();
        self.run(move |db| db.set_upload_thumbnail(owner, id, &t))
            .await
    }
    async fn delete_upload(&self, owner: Uuid, id: Uuid) -> StoreResult<DeletedUpload> {
        self.run(move |db| db.delete_upload(owner, id)).await
    }
    async fn blob_referenced(&self, sha256: &str) -> StoreResult<bool> {
        self.db.blob_referenced(sha256)
    }
    async fn all_uploads(&self, after: Option<Uuid>, limit: usize) -> StoreResult<Vec<Upload>> {
        self.run(move |db| db.all_uploads(after, limit)).await
    }
}

#[async_trait]
impl crate::store::identities::IdentityStore for RedbStore {
    async fn link_identity(
        &self,
        link: &crate::store::identities::IdentityLink,
        new_user: Option<&User>,
    ) -> StoreResult<()> {
        let (link, user) = (link.clone(), new_user.cloned());
        self.run(move |db| db.link_identity(&link, user.as_ref()))
            .await
    }
    async fn find_identity(
        &self,
        issuer: &str,
        subject: &str,
    ) -> StoreResult<Option<crate::store::identities::IdentityLink>> {
        self.db.find_identity(issuer, subject)
    }
    async fn list_identities(
        &self,
        user_id: Uuid,
    ) -> StoreResult<Vec<crate::store::identities::IdentityLink>> {
        self.db.list_identities(user_id)
    }
    async fn unlink_identity(
        &self,
        user_id: Uuid,
        id: Uuid,
    ) -> StoreResult<crate::store::identities::IdentityLink> {
        self.run(move |db| db.unlink_identity(user_id, id)).await
    }
    async fn put_sso_state(
        &self,
        key: &[u8],
        s: &crate::store::identities::SsoState,
    ) -> StoreResult<()> {
        let (key, s) = (key.to_vec(), s.clone());
        self.run(move |db| db.put_sso_state(&key, &s)).await
    }
    async fn take_sso_state(
        &self,
        key: &[u8],
        now: i64,
    ) -> StoreResult<Option<crate::store::identities::SsoState>> {
        let key = key.to_vec();
        self.run(move |db| db.take_sso_state(&key, now)).await
    }
}

#[async_trait]
impl crate::store::groups::GroupStore for RedbStore {
    async fn create_group(&self, group: &crate::store::groups::Group) -> StoreResult<()> {
        let group = group.clone();
        self.run(move |db| db.create_group(&group)).await
    }
    async fn update_group(&self, group: &crate::store::groups::Group) -> StoreResult<()> {
        let group = group.clone();
        self.run(move |db| db.update_group(&group)).await
    }
    async fn delete_group(&self, id: Uuid) -> StoreResult<crate::store::groups::Group> {
        self.run(move |db| db.delete_group(id)).await
    }
    async fn get_group(&self, id: Uuid) -> StoreResult<crate::store::groups::Group> {
        self.db.get_group(id)
    }
    async fn list_groups(&self) -> StoreResult<Vec<crate::store::groups::Group>> {
        self.db.list_groups()
    }
    async fn add_group_member(&self, group: Uuid, user: Uuid) -> StoreResult<bool> {
        self.run(move |db| db.add_group_member(group, user)).await
    }
    async fn remove_group_member(&self, group: Uuid, user: Uuid) -> StoreResult<bool> {
        self.run(move |db| db.remove_group_member(group, user))
            .await
    }
    async fn group_members(&self, group: Uuid) -> StoreResult<Vec<Uuid>> {
        self.db.group_members(group)
    }
    async fn user_groups(&self, user: Uuid) -> StoreResult<Vec<crate::store::groups::Group>> {
        self.db.user_groups(user)
    }
}
