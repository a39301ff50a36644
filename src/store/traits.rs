//! What confab needs from storage, one trait per aggregate. Every backend
//! (redb today, PostgreSQL next) implements all of them; the rest of confab
//! sees only `Arc<dyn Store>` (see [`super::SharedStore`]).
//!
//! Rules every implementation keeps (the contract suite in
//! `tests/it/store_contract.rs` checks them):
//! - a record another user owns answers [`StoreError::NotFound`], exactly as
//!   a missing one does;
//! - each method is one transaction: the multi-record ones
//!   (`create_user` with an invite, `update_user` with a sign-out,
//!   `start_turn`, `delete_conversation`, `import_conversations`,
//!   `rotate_refresh`) change everything or nothing;
//! - a write is durable when its future resolves (except `outbox_ack`: a
//!   lost acknowledgement only replays ops, which is harmless);
//! - every change to searchable text appends to the search outbox in the same
//!   transaction.
//!
//! [`StoreError::NotFound`]: super::StoreError::NotFound

use async_trait::async_trait;
use uuid::Uuid;

use super::StoreResult;
use super::acme::{AcmeAccountRecord, AcmeCertRecord};
use super::audit_query::AuditFilter;
use super::chat::{Conversation, ConversationCursor, ConversationFilter, Message};
use super::cluster::ClusterStore;
use super::file::FileStore;
use super::groups::GroupStore;
use super::identities::IdentityStore;
use super::knowledge::{Chunk, ChunkVectors, Collection, CollectionPatch, DocumentRecord};
use super::model_settings::ModelSetting;
use super::presets::{Branding, Preset, SavedPrompt, UserSettings};
use super::provider_records::StoredProvider;
use super::records::*;
use super::search_outbox::Resolved;
use super::security::{OneTimeKind, OneTimeToken, TwoFactor, TwoFactorPolicy, TwoFactorUpdate};
use super::uploads::{DeletedUpload, Thumbnail, Upload, UploadCreated};
use super::usage::{Charge, KeyUsageRow, UsageCounts, UsageRow};
use super::{Revoked, SignOut, UserPatch};

#[async_trait]
pub trait UserStore: Send + Sync {
    async fn user_count(&self) -> StoreResult<u64>;
    /// NotFound when there is no such user.
    async fn get_user(&self, id: Uuid) -> StoreResult<User>;
    /// The account `username` names: names are one account when their
    /// `username::key` (NFKC, then lowercase) is equal, so `Bob` finds `bob`.
    async fn find_user_by_name(&self, username: &str) -> StoreResult<Option<User>>;
    /// Creates `user`. Conflict when the name is taken, or when
    /// `only_if_empty` and a user exists (first-admin setup). With `invite`,
    /// spends one use of that invite in the same transaction (NotFound when
    /// it is unknown, used up or expired at `now`).
    async fn create_user(
        &self,
        user: &User,
        only_if_empty: bool,
        invite: Option<&str>,
        now: i64,
    ) -> StoreResult<()>;
    /// Applies `patch`, refusing (Conflict) a change that would leave no
    /// active admin; with `sign_out`, ends the user's sessions and refresh
    /// families (and API keys) in the same transaction.
    async fn update_user(
        &self,
        id: Uuid,
        patch: UserPatch,
        sign_out: Option<SignOut>,
    ) -> StoreResult<(User, Option<Revoked>)>;
    /// Oldest first, after `cursor`.
    async fn list_users(&self, cursor: Option<Uuid>, limit: usize) -> StoreResult<Vec<User>>;
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn put_session(&self, token_hash: &[u8], s: &Session) -> StoreResult<()>;
    async fn get_session(&self, token_hash: &[u8]) -> StoreResult<Option<Session>>;
    /// Moves `last_seen` forward (never back); a missing session is ignored.
    async fn touch_session(&self, token_hash: &[u8], now: i64) -> StoreResult<()>;
    async fn list_sessions(&self, user_id: Uuid) -> StoreResult<Vec<Session>>;
    /// NotFound when the session is not the user's.
    async fn delete_session(&self, user_id: Uuid, session_id: Uuid) -> StoreResult<()>;
    /// Ends every session of the user but `keep`; returns how many ended.
    async fn delete_sessions_except(&self, user_id: Uuid, keep: Option<Uuid>)
    -> StoreResult<usize>;
    /// Drops sessions expired at `now` or idle longer than `idle_secs`.
    async fn prune_sessions(&self, now: i64, idle_secs: i64) -> StoreResult<usize>;
    /// Drops expired refresh tokens and invites expired or used up; returns
    /// how many.
    async fn prune_tokens(&self, now: i64) -> StoreResult<usize>;
    async fn put_refresh(&self, hash: &[u8], r: &RefreshToken) -> StoreResult<()>;
    /// Spends `old_hash` and stores its successor in one transaction; a spent
    /// token presented again revokes its whole family.
    async fn rotate_refresh(
        &self,
        old_hash: &[u8],
        new_hash: &[u8],
        now: i64,
        new_expires_at: i64,
    ) -> StoreResult<RefreshOutcome>;
}

#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    async fn put_api_key(&self, hash: &[u8], k: &ApiKey) -> StoreResult<()>;
    async fn get_api_key(&self, hash: &[u8]) -> StoreResult<Option<ApiKey>>;
    async fn touch_api_key(&self, hash: &[u8], now: i64) -> StoreResult<()>;
    async fn list_api_keys(&self, user_id: Uuid) -> StoreResult<Vec<ApiKey>>;
    /// NotFound when the key is not the user's.
    async fn delete_api_key(&self, user_id: Uuid, key_id: Uuid) -> StoreResult<ApiKey>;
}

#[async_trait]
pub trait InviteStore: Send + Sync {
    async fn put_invite(&self, inv: &Invite) -> StoreResult<()>;
    async fn get_invite(&self, code: &str) -> StoreResult<Option<Invite>>;
    /// Newest first (by `created_at`).
    async fn list_invites(&self) -> StoreResult<Vec<Invite>>;
    /// NotFound when unknown, or (with `owner`) created by another user; an
    /// invite made from the command line (`created_by` None) may be deleted
    /// by anyone.
    async fn delete_invite(&self, code: &str, owner: Option<Uuid>) -> StoreResult<()>;
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn append_audit(&self, e: &AuditEntry) -> StoreResult<()>;
    /// Newest first, before `before`.
    async fn list_audit(&self, before: Option<Uuid>, limit: usize) -> StoreResult<Vec<AuditEntry>>;
    /// Newest first, matching `f` (its time range is that of the entries'
    /// UUIDv7 ids); examines a bounded number of entries
    /// ([`MAX_SCAN`](super::audit_query::MAX_SCAN)) and returns where to
    /// resume when it stopped early (None when it filled `limit` or reached
    /// the end: the next page starts before the last entry).
    async fn list_audit_filtered(
        &self,
        before: Option<Uuid>,
        limit: usize,
        f: &AuditFilter,
    ) -> StoreResult<(Vec<AuditEntry>, Option<Uuid>)>;
}

#[async_trait]
pub trait ProviderStore: Send + Sync {
    async fn put_provider(&self, p: &StoredProvider) -> StoreResult<()>;
    /// Conflict when the name exists.
    async fn create_provider(&self, p: &StoredProvider) -> StoreResult<()>;
    async fn get_provider(&self, name: &str) -> StoreResult<Option<StoredProvider>>;
    /// Oldest first (by `created_at`, then name).
    async fn list_providers(&self) -> StoreResult<Vec<StoredProvider>>;
    /// NotFound when unknown.
    async fn delete_provider(&self, name: &str) -> StoreResult<()>;
}

/// What admins set per model (Admin → Models) and the server-wide default.
#[async_trait]
pub trait ModelSettingsStore: Send + Sync {
    /// Every stored record (models with only defaults have none).
    async fn list_model_settings(&self) -> StoreResult<Vec<ModelSetting>>;
    /// Inserts or replaces the record of `s.model`; a record that changes
    /// nothing ([`ModelSetting::is_default`]) is removed instead.
    async fn put_model_setting(&self, s: &ModelSetting) -> StoreResult<()>;
    /// The default model admins chose; None when they chose none.
    async fn default_model(&self) -> StoreResult<Option<String>>;
    async fn set_default_model(&self, model: Option<&str>) -> StoreResult<()>;
}

/// A change to a conversation: each field set replaces the stored one.
#[derive(Debug, Clone, Default)]
pub struct ConversationPatch {
    pub title: Option<TitleChange>,
    pub model: Option<Option<String>>,
    /// `Some(None)` (or blank) removes it.
    pub system_prompt: Option<Option<String>>,
    pub pinned: Option<bool>,
    pub archived: Option<bool>,
    /// Sampling settings to change (validated by the chat service).
    pub params: crate::store::chat::ModelParamsPatch,
    /// A message of the conversation: the shown thread becomes the newest
    /// path through it to a leaf. Conflict when it is not one of its messages.
    pub current_leaf: Option<Uuid>,
    /// Moves the conversation to the top of the list (content changed).
    pub touch: bool,
    /// The knowledge collections attached (the whole list).
    pub collections: Option<Vec<Uuid>>,
}

impl ConversationPatch {
    /// Applies the fields that need nothing but the conversation: title,
    /// model, system prompt, pinned, archived, collections and sampling
    /// settings. `current_leaf` and `touch` are the store's (the first
    /// reads the messages); they are returned.
    pub fn apply_fields(self, c: &mut crate::store::chat::Conversation) -> (Option<Uuid>, bool) {
        match self.title {
            Some(TitleChange::Set(t)) => {
                c.title = t;
                c.title_auto = false;
            }
            Some(TitleChange::Auto {
                title,
                last,
                default,
            }) if c.title_auto && (last || c.title == default) => {
                c.title = title;
                c.title_auto = !last;
            }
            Some(TitleChange::Auto { .. }) | None => {}
        }
        if let Some(m) = self.model {
            c.model = m;
        }
        if let Some(p) = self.system_prompt {
            c.system_prompt = p.filter(|s| !s.trim().is_empty());
        }
        if let Some(p) = self.pinned {
            c.pinned = p;
        }
        if let Some(a) = self.archived {
            c.archived = a;
        }
        if let Some(mut cols) = self.collections {
            cols.dedup();
            c.collections = cols;
        }
        c.params = self.params.apply(c.params);
        (self.current_leaf, self.touch)
    }
}

#[derive(Debug, Clone)]
pub enum TitleChange {
    /// A person named it: automatic naming stops.
    Set(String),
    /// An automatic title, applied only while the conversation is still
    /// automatically named (and, unless `last`, still has the default title
    /// `default`); `last` ends automatic naming.
    Auto {
        title: String,
        last: bool,
        default: String,
    },
}

/// One page of a full walk over searchable data.
#[derive(Debug, Clone, Default)]
pub struct SearchablePage {
    /// Conversations after the cursor, by id, each with its complete
    /// (not streaming) messages.
    pub conversations: Vec<(Conversation, Vec<Message>)>,
    /// Where the next page starts; None when the walk is over.
    pub next: Option<Uuid>,
}

#[async_trait]
pub trait ChatStore: Send + Sync {
    /// Conflict when the id exists.
    async fn create_conversation(&self, c: &Conversation) -> StoreResult<()>;
    async fn get_conversation(&self, user_id: Uuid, id: Uuid) -> StoreResult<Conversation>;
    /// Newest first (by last update), starting after `cursor`.
    async fn list_conversations(
        &self,
        user_id: Uuid,
        cursor: Option<ConversationCursor>,
        filter: ConversationFilter,
        limit: usize,
    ) -> StoreResult<Vec<Conversation>>;
    async fn update_conversation(
        &self,
        user_id: Uuid,
        id: Uuid,
        patch: ConversationPatch,
    ) -> StoreResult<Conversation>;
    /// Deletes a conversation and all of its messages; returns how many
    /// messages went.
    async fn delete_conversation(&self, user_id: Uuid, id: Uuid) -> StoreResult<usize>;
    /// Adds one turn in one transaction: `new_conv` (when the turn starts a
    /// conversation), the model and the sampling settings to remember, the user's message (absent when
    /// regenerating), the assistant message being streamed, and the
    /// conversation now showing it. NotFound when the conversation is not the
    /// user's or a parent is not in it.
    async fn start_turn(
        &self,
        user_id: Uuid,
        new_conv: Option<&Conversation>,
        model: Option<String>,
        params: crate::store::chat::ModelParamsPatch,
        user_msg: Option<&Message>,
        assistant: &Message,
    ) -> StoreResult<Conversation>;
    /// Inserts complete messages as they are. Ownership checked.
    async fn insert_messages(
        &self,
        user_id: Uuid,
        conv_id: Uuid,
        list: &[Message],
    ) -> StoreResult<()>;
    async fn get_message(&self, user_id: Uuid, conv_id: Uuid, id: Uuid) -> StoreResult<Message>;
    /// Every message of a conversation, oldest first.
    async fn list_messages(&self, user_id: Uuid, conv_id: Uuid) -> StoreResult<Vec<Message>>;
    /// Saves the text streamed so far, (conversation, message, text), for many
    /// messages in one transaction; finished messages are left alone.
    async fn flush_partials(&self, parts: &[(Uuid, Uuid, String)]) -> StoreResult<()>;
    /// Stores the final state of a streamed message and moves its
    /// conversation to the top; ignored when the message is gone (its
    /// conversation was deleted meanwhile).
    async fn finish_message(&self, m: &Message) -> StoreResult<()>;
    /// Marks every message still streaming as interrupted, finish reason
    /// `server_restart`, keeping its flushed text (start-up after a crash);
    /// returns how many.
    async fn recover_streaming(&self) -> StoreResult<usize>;
    /// Every conversation of the user, archived too, newest first.
    async fn conversation_ids(&self, user_id: Uuid) -> StoreResult<Vec<Uuid>>;
    async fn conversation_with_messages(
        &self,
        user_id: Uuid,
        id: Uuid,
    ) -> StoreResult<(Conversation, Vec<Message>)>;
    /// Inserts whole conversations in one transaction (import): all or none.
    async fn import_conversations(&self, list: &[(Conversation, Vec<Message>)]) -> StoreResult<()>;
    /// Imports conversations from another app, each with its stable source
    /// key (e.g. `chatgpt:<conversation id>`), in one transaction. One whose
    /// key `user_id` imported before, into a conversation that still exists,
    /// is left out (`Existing`); the others are stored and their keys
    /// recorded. Every conversation must belong to `user_id`.
    async fn import_sourced(
        &self,
        user_id: Uuid,
        list: &[(Option<String>, Conversation, Vec<Message>)],
    ) -> StoreResult<Vec<crate::store::shares::Sourced>>;
}

/// Share links (see `shares.rs`).
#[async_trait]
pub trait ShareStore: Send + Sync {
    /// Conflict when the token or id exists.
    async fn create_share(&self, s: &crate::store::shares::Share) -> StoreResult<()>;
    /// NotFound when no link has this token (or it was revoked).
    async fn share_by_token(&self, token: &str) -> StoreResult<crate::store::shares::Share>;
    /// The user's links, newest first, without their messages.
    async fn list_shares(&self, user_id: Uuid) -> StoreResult<Vec<crate::store::shares::Share>>;
    /// Revokes one of the user's links; NotFound for another user's.
    async fn delete_share(&self, user_id: Uuid, id: Uuid) -> StoreResult<()>;
}

#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Adds `c` to the user's usage; when it names an API key, to that
    /// key's usage too, in the same transaction.
    async fn charge_usage(&self, user_id: Uuid, day: u32, c: &Charge) -> StoreResult<()>;
    /// Usage per API key for days `from..=to`: `user_id`'s, or everyone's
    /// with None.
    async fn usage_by_key(
        &self,
        user_id: Option<Uuid>,
        from: u32,
        to: u32,
    ) -> StoreResult<Vec<KeyUsageRow>>;
    /// One user's rows for days `from..=to` (yyyymmdd).
    async fn usage_of_user(&self, user_id: Uuid, from: u32, to: u32) -> StoreResult<Vec<UsageRow>>;
    /// Every user's rows for days `from..=to`.
    async fn usage_between(&self, from: u32, to: u32) -> StoreResult<Vec<UsageRow>>;
    async fn usage_user_day(&self, user_id: Uuid, day: u32) -> StoreResult<UsageCounts>;
}

/// The durable queue between the store and the search index (see
/// `search_outbox.rs`).
#[async_trait]
pub trait SearchOutboxStore: Send + Sync {
    /// Up to `limit` pending ops, oldest first, resolved against the current
    /// data.
    async fn outbox_batch(&self, limit: usize) -> StoreResult<Vec<(u64, Resolved)>>;
    /// Removes every op up to and including `seq`.
    async fn outbox_ack(&self, seq: u64) -> StoreResult<()>;
    async fn outbox_len(&self) -> StoreResult<u64>;
    /// The seq of the newest op (0 when none): a full rebuild that starts by
    /// reading it and then walks [`searchable_page`](Self::searchable_page)
    /// reflects every change up to it; later ops replay harmlessly. Seqs
    /// only grow while ops are pending: once all are acknowledged numbering
    /// may start again, so compare seqs only within one drain.
    async fn outbox_head(&self) -> StoreResult<u64>;
    /// Up to `limit` conversations after `after` (by id).
    async fn searchable_page(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> StoreResult<SearchablePage>;
    /// How many messages are stored (for progress reporting).
    async fn message_count(&self) -> StoreResult<u64>;
}

#[async_trait]
pub trait AcmeStore: Send + Sync {
    async fn get_acme_account(&self, directory: &str) -> StoreResult<Option<AcmeAccountRecord>>;
    async fn put_acme_account(&self, r: &AcmeAccountRecord) -> StoreResult<()>;
    async fn delete_acme_account(&self, directory: &str) -> StoreResult<()>;
    async fn get_acme_cert(
        &self,
        directory: &str,
        domains: &[String],
    ) -> StoreResult<Option<AcmeCertRecord>>;
    async fn put_acme_cert(&self, r: &AcmeCertRecord) -> StoreResult<()>;
}

/// Presets and saved prompts (see `presets.rs`): a record is its owner's,
/// or shared with everyone (`owner` None). Reads take the viewer: another
/// user's record is NotFound. Writes trust the caller (the presets service
/// checks who may change what).
#[async_trait]
pub trait PresetStore: Send + Sync {
    /// Inserts or replaces the preset with this id.
    async fn put_preset(&self, p: &Preset) -> StoreResult<()>;
    /// NotFound when missing or another user's.
    async fn get_preset(&self, viewer: Uuid, id: Uuid) -> StoreResult<Preset>;
    /// The viewer's own presets and the shared ones, by name.
    async fn list_presets(&self, viewer: Uuid) -> StoreResult<Vec<Preset>>;
    /// NotFound when missing.
    async fn delete_preset(&self, id: Uuid) -> StoreResult<()>;
    /// Inserts or replaces the prompt with this id; Conflict when another
    /// prompt of the same owner (or another shared one) has its command.
    async fn put_prompt(&self, p: &SavedPrompt) -> StoreResult<()>;
    /// NotFound when missing or another user's.
    async fn get_prompt(&self, viewer: Uuid, id: Uuid) -> StoreResult<SavedPrompt>;
    /// The viewer's own prompts and the shared ones, by command.
    async fn list_prompts(&self, viewer: Uuid) -> StoreResult<Vec<SavedPrompt>>;
    /// NotFound when missing.
    async fn delete_prompt(&self, id: Uuid) -> StoreResult<()>;
}

/// Each user's settings and the server's branding.
#[async_trait]
pub trait SettingsStore: Send + Sync {
    /// The defaults when the user never saved any.
    async fn get_user_settings(&self, user_id: Uuid) -> StoreResult<UserSettings>;
    async fn put_user_settings(&self, user_id: Uuid, s: &UserSettings) -> StoreResult<()>;
    /// The defaults (nothing set) when never saved.
    async fn get_branding(&self) -> StoreResult<Branding>;
    async fn put_branding(&self, b: &Branding) -> StoreResult<()>;
}

/// Documents (the text of uploaded files, chunked for retrieval), their
/// vectors, and knowledge collections. Every read and change takes the
/// owner: another user's document or collection is NotFound.
#[async_trait]
pub trait KnowledgeStore: Send + Sync {
    /// Stores what was read of a file, replacing what was stored before
    /// (record, chunks, vectors), with a search outbox op, in one
    /// transaction. NotFound when another user has a document of this id.
    async fn put_document(&self, doc: &DocumentRecord, chunks: &[Chunk]) -> StoreResult<()>;
    /// NotFound when missing or another user's.
    async fn get_document(&self, owner: Uuid, file_id: Uuid) -> StoreResult<DocumentRecord>;
    /// The owner's documents, by file id (oldest first).
    async fn list_documents(&self, owner: Uuid) -> StoreResult<Vec<DocumentRecord>>;
    /// Chunks `from..to` (by ordinal) of one document; NotFound when the
    /// document is missing or another user's.
    async fn document_chunks(
        &self,
        owner: Uuid,
        file_id: Uuid,
        from: u32,
        to: u32,
    ) -> StoreResult<Vec<Chunk>>;
    /// The chunks named (file id, ordinal) that exist and are the owner's,
    /// in the order asked.
    async fn get_chunks(&self, owner: Uuid, keys: &[(Uuid, u32)]) -> StoreResult<Vec<Chunk>>;
    /// Removes a document (record, chunks, vectors) and takes its file out
    /// of the owner's collections, with a search outbox op, in one
    /// transaction; false when there was none (or it is another user's).
    async fn delete_document(&self, owner: Uuid, file_id: Uuid) -> StoreResult<bool>;
    /// Stores a document's vectors (replacing earlier ones) and notes
    /// their model on its record. NotFound when not the owner's.
    async fn put_vectors(&self, owner: Uuid, v: &ChunkVectors) -> StoreResult<()>;
    /// NotFound when the document is missing or another user's.
    async fn get_vectors(&self, owner: Uuid, file_id: Uuid) -> StoreResult<Option<ChunkVectors>>;
    /// Every user's documents after `after` (by file id), with their
    /// chunks: the walk a rebuild of the knowledge index reads.
    async fn documents_page(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> StoreResult<Vec<(DocumentRecord, Vec<Chunk>)>>;
    /// Conflict when the id exists.
    async fn create_collection(&self, c: &Collection) -> StoreResult<()>;
    /// NotFound when missing or another user's.
    async fn get_collection(&self, owner: Uuid, id: Uuid) -> StoreResult<Collection>;
    /// The owner's collections, by name.
    async fn list_collections(&self, owner: Uuid) -> StoreResult<Vec<Collection>>;
    /// Applies `patch` (files removed, then added, each at most once);
    /// Conflict past [`MAX_COLLECTION_FILES`](super::knowledge::MAX_COLLECTION_FILES).
    /// The caller checks that added files are the owner's.
    async fn update_collection(
        &self,
        owner: Uuid,
        id: Uuid,
        patch: CollectionPatch,
        now: i64,
    ) -> StoreResult<Collection>;
    /// NotFound when missing or another user's.
    async fn delete_collection(&self, owner: Uuid, id: Uuid) -> StoreResult<()>;
}

/// The records of uploaded files (their content is in the blob store). Every
/// read and change takes the owner: another user's file is NotFound.
#[async_trait]
pub trait UploadStore: Send + Sync {
    /// Stores `u` unless the owner's stored bytes plus `u.size` would pass
    /// `quota` (None: no limit), checked in the same transaction. Conflict
    /// when the id exists.
    async fn create_upload(&self, u: &Upload, quota: Option<u64>) -> StoreResult<UploadCreated>;
    /// NotFound when missing or another user's.
    async fn get_upload(&self, owner: Uuid, id: Uuid) -> StoreResult<Upload>;
    /// The owner's files, newest first, older than `before`.
    async fn list_uploads(
        &self,
        owner: Uuid,
        before: Option<Uuid>,
        limit: usize,
    ) -> StoreResult<Vec<Upload>>;
    /// Bytes the owner's files take (thumbnails not counted).
    async fn upload_usage(&self, owner: Uuid) -> StoreResult<u64>;
    /// Records the thumbnail of a file (replacing one made before, whose
    /// blob is returned when no record references it any more).
    async fn set_upload_thumbnail(
        &self,
        owner: Uuid,
        id: Uuid,
        t: &Thumbnail,
    ) -> StoreResult<(Upload, Vec<String>)>;
    /// Removes the record; says which of its blobs nothing references now.
    async fn delete_upload(&self, owner: Uuid, id: Uuid) -> StoreResult<DeletedUpload>;
    /// True when some record (content or thumbnail) references the blob.
    async fn blob_referenced(&self, sha256: &str) -> StoreResult<bool>;
    /// Every user's files after `after` (by id), for export walks and
    /// checks; oldest first.
    async fn all_uploads(&self, after: Option<Uuid>, limit: usize) -> StoreResult<Vec<Upload>>;
}

/// Second factors, one-time tokens and the two-factor policy (see
/// `security.rs`).
#[async_trait]
pub trait SecurityStore: Send + Sync {
    async fn get_two_factor(&self, user_id: Uuid) -> StoreResult<Option<TwoFactor>>;
    /// Inserts or replaces the user's record.
    async fn put_two_factor(&self, t: &TwoFactor) -> StoreResult<()>;
    /// False when the user had none.
    async fn delete_two_factor(&self, user_id: Uuid) -> StoreResult<bool>;
    /// Reads the user's record, lets `f` change it and writes it when `f`
    /// says it changed, in one transaction (so a code is accepted once even
    /// when two instances check it at the same time). Returns the record as
    /// it is after, and whether `f` changed it; None when there is none.
    async fn update_two_factor(
        &self,
        user_id: Uuid,
        f: TwoFactorUpdate,
    ) -> StoreResult<Option<(TwoFactor, bool)>>;
    /// Stores a token under the hash of its value.
    async fn put_one_time(&self, hash: &[u8], t: &OneTimeToken) -> StoreResult<()>;
    /// Removes the token and returns it when it is of `kind` and not expired
    /// at `now`; None otherwise (an expired one is removed too; one of
    /// another kind is left alone).
    async fn take_one_time(
        &self,
        kind: OneTimeKind,
        hash: &[u8],
        now: i64,
    ) -> StoreResult<Option<OneTimeToken>>;
    /// Removes every token of `kind` the user has; returns how many.
    async fn delete_one_time_of_user(&self, user_id: Uuid, kind: OneTimeKind)
    -> StoreResult<usize>;
    /// Removes tokens expired at `now`; returns how many.
    async fn prune_one_time(&self, now: i64) -> StoreResult<usize>;
    /// Optional when never set.
    async fn two_factor_policy(&self) -> StoreResult<TwoFactorPolicy>;
    async fn set_two_factor_policy(&self, p: TwoFactorPolicy) -> StoreResult<()>;
}

/// Health of the store itself.
#[async_trait]
pub trait StoreHealth: Send + Sync {
    async fn schema_version(&self) -> StoreResult<u64>;
    /// A real write and read (the deep health check).
    async fn probe(&self, now: i64) -> StoreResult<()>;
}

/// Import jobs (see `import_jobs.rs`).
#[async_trait]
pub trait ImportJobStore: Send + Sync {
    /// Creates the job or replaces it (the id is the key; the owner never
    /// changes).
    async fn put_import_job(
        &self,
        j: &crate::store::import_jobs::ImportJobRecord,
    ) -> StoreResult<()>;
    /// NotFound for a missing job or another user's.
    async fn import_job(
        &self,
        user_id: Uuid,
        id: Uuid,
    ) -> StoreResult<crate::store::import_jobs::ImportJobRecord>;
    /// The user's jobs, newest first.
    async fn list_import_jobs(
        &self,
        user_id: Uuid,
    ) -> StoreResult<Vec<crate::store::import_jobs::ImportJobRecord>>;
    /// NotFound for a missing job or another user's.
    async fn delete_import_job(&self, user_id: Uuid, id: Uuid) -> StoreResult<()>;
    /// Every job still `running` whose runner is not in `alive` becomes
    /// `interrupted` with `error` (at `now`); returns how many.
    async fn interrupt_import_jobs(
        &self,
        alive: &[Uuid],
        error: &str,
        now: i64,
    ) -> StoreResult<u64>;
}

/// Everything confab stores. The state holds it as `Arc<dyn Store>`; code
/// that needs one aggregate can take `&dyn UserStore` and so on.
pub trait Store:
    UserStore
    + SessionStore
    + ApiKeyStore
    + InviteStore
    + AuditStore
    + ProviderStore
    + ModelSettingsStore
    + ChatStore
    + ShareStore
    + ImportJobStore
    + UsageStore
    + SearchOutboxStore
    + AcmeStore
    + PresetStore
    + SettingsStore
    + KnowledgeStore
    + UploadStore
    + IdentityStore
    + GroupStore
    + SecurityStore
    + StoreHealth
    + std::fmt::Debug
{
    /// What only a store kept in one local file can do; None for a database
    /// server (it has its own backup and replication tools).
    fn file(&self) -> Option<&dyn FileStore> {
        None
    }

    /// What several instances on one database share (see `cluster.rs`);
    /// None for a store only one process can open, where all of it stays
    /// in that process's memory.
    fn cluster(&self) -> Option<std::sync::Arc<dyn ClusterStore>> {
        None
    }

    /// The blob store every instance on this database shares; None for a
    /// store one process opens, whose blobs stay in its data directory.
    fn shared_blobs(&self) -> Option<std::sync::Arc<dyn crate::store::blobs::BlobStore>> {
        None
    }
}
