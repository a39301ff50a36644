//! Full-text search: the only code that touches tantivy.
//!
//! One index under `<data>/index` holds a document per message and per
//! conversation title. redb stays the truth: writes append to the
//! `search_outbox` in the same transaction, and one indexer task drains it
//! in batches (see [`Search::run_indexer`]). Every query carries the
//! caller's user id as a required term, so another user's documents can
//! never match; hits are ordered newest first (not by index-wide scores,
//! which would leak other users' statistics).
//!
//! With several instances on one database each keeps its own index and
//! follows the database's outbox in commit order instead of draining it
//! ([`Search::follow_shared`]): where it stands is saved in each index
//! commit's payload, so the index and its place in the feed move together.

pub mod collect;
pub mod hits;
pub mod knowledge;
pub mod prefix;
pub mod query;
pub mod snippet;
pub mod tokenizer;

use std::collections::HashSet;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tantivy::query::{BooleanQuery, Occur, PhraseQuery, Query, RangeQuery, TermQuery};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STRING, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};
use uuid::Uuid;

use crate::store::SharedStore;
use crate::store::chat::{Conversation, Message, MessageRole};
use crate::store::cluster::{ClusterStore, FeedCursor};
use crate::store::search_outbox::Resolved;

/// Bump when the schema or the analyzer changes: the index is rebuilt.
pub const INDEX_VERSION: u32 = 3;
const VERSION_FILE: &str = "confab-index-version";
/// Indexing buffers, all threads together. Only a rebuild fills them (the
/// outbox is committed every [`BATCH`] operations): bigger buffers mean
/// fewer, larger segments and so fewer merges while rebuilding.
const WRITER_MEMORY_MAX: usize = 256 * 1024 * 1024;
const WRITER_MEMORY_MIN: usize = 64 * 1024 * 1024;

/// [`WRITER_MEMORY_MAX`], or a quarter of the memory the system has free if
/// that is less (but not under [`WRITER_MEMORY_MIN`]).
fn writer_memory() -> usize {
    let available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<usize>().ok())
        })
        .map(|kb| kb.saturating_mul(1024));
    match available {
        Some(a) => (a / 4).clamp(WRITER_MEMORY_MIN, WRITER_MEMORY_MAX),
        None => WRITER_MEMORY_MIN,
    }
}
/// The incremental writer's budget: one thread, small segments.
const INCREMENTAL_MEMORY: usize = 32 * 1024 * 1024;

/// What the open index writer was made for. A rebuild wants every core and
/// big buffers; the indexer's small batches want one thread, so that a
/// commit makes one segment, not one per thread (each new segment has a
/// fixed cost in tantivy: a 4 MB term table to fill, and later a merge).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum WriterUse {
    Incremental,
    Rebuild,
}

/// How often the indexer looks at the outbox. Under a steady write load it
/// commits once per look (while a backlog lasts, once per full batch), not
/// once per message: the index lags by at most about this much.
pub const POLL_EVERY: Duration = Duration::from_millis(200);
const BATCH: usize = 2000;
/// Conversations per store read during a rebuild.
const REBUILD_PAGE: usize = 256;

/// Runs index work on the blocking pool (tantivy commits wait for fsync).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SearchError> + Send + 'static,
) -> Result<T, SearchError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(SearchError::Io(std::io::Error::other(format!(
            "search task failed: {e}"
        )))),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("{0}")]
    BadQuery(String),
    #[error("search index error: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// [`Search::shutdown`] has run: no writer (and no index lock) again.
    #[error("the search index is shut down")]
    Stopped,
}

#[derive(Clone, Copy)]
struct Fields {
    /// Unique per document, for replacing and deleting it: `m` + message
    /// id, or `t` + conversation id for a title.
    key: Field,
    conversation: Field,
    /// The isolation filter: every query requires the caller's id here.
    user: Field,
    /// user | assistant | system | title
    role: Field,
    /// Newest-first order and the time filter: see [`sort_key`].
    sort: Field,
    /// The hit's ids, read from fast fields (nothing is in a doc store).
    message_hi: Field,
    message_lo: Field,
    conversation_hi: Field,
    conversation_lo: Field,
    role_code: Field,
    text: Field,
}

const SORT: &str = "sort";

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text_opts = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(tokenizer::NAME)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    // Ids are indexed as their 16 bytes, not as 36-character strings; the
    // time is a fast field only (an indexed one added a term per second).
    let f = Fields {
        key: b.add_bytes_field("key", INDEXED),
        conversation: b.add_bytes_field("conversation", INDEXED),
        user: b.add_bytes_field("user", INDEXED),
        role: b.add_text_field("role", STRING),
        sort: b.add_i64_field(SORT, FAST),
        message_hi: b.add_u64_field("message_hi", FAST),
        message_lo: b.add_u64_field("message_lo", FAST),
        conversation_hi: b.add_u64_field("conversation_hi", FAST),
        conversation_lo: b.add_u64_field("conversation_lo", FAST),
        role_code: b.add_u64_field("role_code", FAST),
        // The text itself is not stored: snippets are cut from redb's copy,
        // which keeps the index about the size of its postings.
        text: b.add_text_field("text", text_opts),
    };
    (b.build(), f)
}

/// Bits of [`sort_key`] below the second.
const SORT_SUBSECOND_BITS: u32 = 22;

/// `created_at` (seconds) above 22 bits that order documents of the same
/// second by their UUIDv7: its millisecond within the second and its 12
/// sequence bits. `sort >> 22` is `created_at` again.
fn sort_key(created_at: i64, id: Uuid) -> i64 {
    let u = id.as_u128();
    let ms_in_second = ((u >> 80) as u64 % 1000) as i64;
    let seq = ((u >> 64) & 0xfff) as i64;
    (created_at << SORT_SUBSECOND_BITS) | (ms_in_second << 12) | seq
}

fn role_str(r: MessageRole) -> &'static str {
    match r {
        MessageRole::User => "user",
        MessageRole::Assistant => "assistant",
        MessageRole::System => "system",
    }
}

const ROLES: [&str; 4] = ["user", "assistant", "system", "title"];

fn role_code(role: &str) -> u64 {
    ROLES.iter().position(|r| *r == role).unwrap_or(0) as u64
}

fn key(kind: u8, id: Uuid) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = kind;
    k[1..].copy_from_slice(id.as_bytes());
    k
}

/// Commits the writer's changes, recording `payload` with them when given.
fn commit(w: &mut IndexWriter, payload: Option<&str>) -> Result<(), SearchError> {
    match payload {
        Some(p) => {
            let mut prepared = w.prepare_commit()?;
            prepared.set_payload(p);
            prepared.commit()?;
        }
        None => {
            w.commit()?;
        }
    }
    Ok(())
}

/// What a caller asks for.
#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    pub user_id: Uuid,
    pub q: String,
    pub conversation_id: Option<Uuid>,
    /// user | assistant | title
    pub role: Option<String>,
    pub after: Option<i64>,
    pub before: Option<i64>,
    pub limit: usize,
    pub offset: usize,
}

/// One raw hit: which document, before redb fills in text and title.
#[derive(Debug, Clone)]
pub struct RawHit {
    pub conversation_id: Uuid,
    pub message_id: Option<Uuid>,
    pub role: String,
    pub created_at: i64,
}

pub struct SearchResult {
    pub hits: Vec<RawHit>,
    pub has_more: bool,
    /// Analyzed query terms and prefixes, for snippets.
    pub terms: HashSet<String>,
    pub prefixes: Vec<String>,
}

pub struct Search {
    index: Index,
    reader: IndexReader,
    f: Fields,
    dir: PathBuf,
    /// True until a needed rebuild has finished: results may be incomplete.
    rebuilding: AtomicBool,
    writer: Mutex<Option<(WriterUse, IndexWriter)>>,
    /// The newest outbox seq applied, and when the indexer last caught up.
    applied: AtomicU64,
    stop: AtomicBool,
    maxima: collect::BlockMaxima,
    /// The database's feed every instance follows, when there are several.
    shared: Mutex<Option<SharedFeed>>,
    /// The chunks of users' documents (see [`knowledge`]).
    pub knowledge: knowledge::KnowledgeIndex,
    /// One drain at a time: the indexer's, or a turn's that needs a just
    /// uploaded document indexed now.
    drain_lock: tokio::sync::Mutex<()>,
}

/// Following the outbox of a database shared by several instances.
#[derive(Clone)]
struct SharedFeed {
    store: Arc<dyn ClusterStore>,
    instance: Uuid,
    /// Where the index stands in the feed (None: rebuild first).
    cursor: Option<FeedCursor>,
}

/// What a rebuilt index covers: everything up to this point of the feed.
enum Covered {
    Seq(u64),
    Cursor(FeedCursor),
}

impl std::fmt::Debug for Search {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Search").field("dir", &self.dir).finish()
    }
}

impl Search {
    /// Opens `<data>/index`, creating it — or recreating it when it is
    /// missing, unreadable or of another version, in which case a rebuild is
    /// pending (`partial` until it finishes).
    pub fn open(data_dir: &Path) -> Result<Arc<Search>, SearchError> {
        let dir = data_dir.join("index");
        let (schema, f) = schema();
        let version_ok = std::fs::read_to_string(dir.join(VERSION_FILE))
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
            == Some(INDEX_VERSION);
        let existing = if version_ok {
            Index::open_in_dir(&dir).ok()
        } else {
            None
        };
        let (index, rebuild) = match existing {
            Some(i) => (i, false),
            None => {
                if dir.exists() {
                    tracing::warn!(path = %dir.display(), "search index is missing, outdated or unreadable; rebuilding it");
                    std::fs::remove_dir_all(&dir)?;
                }
                std::fs::create_dir_all(&dir)?;
                let i = Index::create_in_dir(&dir, schema)?;
                (i, true)
            }
        };
        index
            .tokenizers()
            .register(tokenizer::NAME, tokenizer::analyzer());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let search = Arc::new(Search {
            index,
            reader,
            f,
            dir,
            rebuilding: AtomicBool::new(rebuild),
            writer: Mutex::new(None),
            applied: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            maxima: collect::BlockMaxima::default(),
            shared: Mutex::new(None),
            knowledge: knowledge::KnowledgeIndex::open(data_dir)?,
            drain_lock: tokio::sync::Mutex::new(()),
        });
        Ok(search)
    }

    /// Follows the outbox of a database several instances share, from
    /// where this index's last commit says it stands; an index that does
    /// not say (new, or kept by a single server before) is rebuilt.
    pub fn follow_shared(&self, store: Arc<dyn ClusterStore>, instance: Uuid) {
        let cursor = self
            .index
            .load_metas()
            .ok()
            .and_then(|m| m.payload)
            .filter(|p| !p.is_empty());
        if cursor.is_none() {
            self.request_rebuild();
        }
        *self.shared_feed() = Some(SharedFeed {
            store,
            instance,
            cursor,
        });
    }

    fn shared_feed(&self) -> std::sync::MutexGuard<'_, Option<SharedFeed>> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_partial(&self) -> bool {
        self.rebuilding.load(Ordering::SeqCst)
    }

    /// Marks the index for a full rebuild by the indexer.
    pub fn request_rebuild(&self) {
        self.rebuilding.store(true, Ordering::SeqCst);
    }

    fn with_writer<T>(
        &self,
        purpose: WriterUse,
        f: impl FnOnce(&mut IndexWriter, &Fields) -> Result<T, SearchError>,
    ) -> Result<T, SearchError> {
        let mut guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if guard.as_ref().is_some_and(|(p, _)| *p != purpose)
            && let Some((_, old)) = guard.take()
        {
            // One writer at a time holds the index lock.
            old.wait_merging_threads()?;
        }
        if guard.is_none() {
            // A drain already under way when shutdown ran must not take the
            // index lock again after it was released.
            if self.stop.load(Ordering::SeqCst) {
                return Err(SearchError::Stopped);
            }
            let writer = match purpose {
                WriterUse::Incremental => {
                    self.index.writer_with_num_threads(1, INCREMENTAL_MEMORY)?
                }
                WriterUse::Rebuild => {
                    let threads = std::thread::available_parallelism()
                        .map(|n| n.get())
                        .unwrap_or(2)
                        .clamp(1, 4);
                    self.index
                        .writer_with_num_threads(threads, writer_memory())?
                }
            };
            *guard = Some((purpose, writer));
        }
        let (_, writer) = guard.as_mut().expect("writer just set");
        f(writer, &self.f)
    }

    fn message_doc(f: &Fields, user_id: Uuid, m: &Message) -> TantivyDocument {
        let role = role_str(m.role);
        let mut d = TantivyDocument::new();
        d.add_bytes(f.key, &key(b'm', m.id));
        d.add_bytes(f.conversation, m.conversation_id.as_bytes());
        d.add_bytes(f.user, user_id.as_bytes());
        d.add_text(f.role, role);
        d.add_i64(f.sort, sort_key(m.created_at, m.id));
        let (mh, ml) = m.id.as_u64_pair();
        let (ch, cl) = m.conversation_id.as_u64_pair();
        d.add_u64(f.message_hi, mh);
        d.add_u64(f.message_lo, ml);
        d.add_u64(f.conversation_hi, ch);
        d.add_u64(f.conversation_lo, cl);
        d.add_u64(f.role_code, role_code(role));
        d.add_text(f.text, &m.content);
        d
    }

    fn title_doc(f: &Fields, c: &Conversation) -> Option<TantivyDocument> {
        // A placeholder title is not worth finding.
        if c.title_auto && c.title == crate::chat::DEFAULT_TITLE {
            return None;
        }
        let mut d = TantivyDocument::new();
        d.add_bytes(f.key, &key(b't', c.id));
        d.add_bytes(f.conversation, c.id.as_bytes());
        d.add_bytes(f.user, c.user_id.as_bytes());
        d.add_text(f.role, "title");
        d.add_i64(f.sort, sort_key(c.created_at, c.id));
        let (ch, cl) = c.id.as_u64_pair();
        d.add_u64(f.message_hi, 0);
        d.add_u64(f.message_lo, 0);
        d.add_u64(f.conversation_hi, ch);
        d.add_u64(f.conversation_lo, cl);
        d.add_u64(f.role_code, role_code("title"));
        d.add_text(f.text, &c.title);
        Some(d)
    }

    /// Applies pending outbox ops, one commit per batch: full batches while
    /// a backlog lasts, then what is left. Ops that arrive meanwhile wait
    /// for the next call. Returns how many ops were applied.
    pub async fn drain(self: &Arc<Self>, store: &SharedStore) -> Result<usize, SearchError> {
        let _one = self.drain_lock.lock().await;
        let feed = self.shared_feed().clone();
        if let Some(feed) = feed {
            return self.follow(feed).await;
        }
        let mut total = 0;
        loop {
            let batch = store.outbox_batch(BATCH).await?;
            let Some(&(last, _)) = batch.last() else {
                return Ok(total);
            };
            let n = batch.len();
            let ops: Vec<Resolved> = batch.into_iter().map(|(_, op)| op).collect();
            let me = self.clone();
            blocking(move || me.apply(&ops, None)).await?;
            // Acknowledge only after the commit: a crash in between replays
            // the batch, which is idempotent.
            store.outbox_ack(last).await?;
            self.applied.store(last, Ordering::SeqCst);
            total += n;
            // Caught up: what arrives meanwhile waits for the next look
            // rather than making a commit (and a segment) of a few ops.
            if n < BATCH {
                return Ok(total);
            }
        }
    }

    /// Applies what the shared feed has after this index's place in it,
    /// one commit (carrying the new place) per batch.
    async fn follow(self: &Arc<Self>, feed: SharedFeed) -> Result<usize, SearchError> {
        let Some(mut cursor) = feed.cursor else {
            self.request_rebuild();
            return Ok(0);
        };
        let mut total = 0;
        loop {
            let batch = match feed.store.feed_next(&cursor, BATCH).await {
                Ok(b) => b,
                Err(crate::store::StoreError::NotFound) => {
                    tracing::warn!(
                        "this index's place in the search feed is not one this database knows; rebuilding the index"
                    );
                    self.request_rebuild();
                    return Ok(total);
                }
                Err(e) => return Err(e.into()),
            };
            let moved = batch.next != cursor;
            if !batch.ops.is_empty() || moved {
                let n = batch.ops.len();
                let (ops, next) = (batch.ops, batch.next.clone());
                let me = self.clone();
                blocking(move || me.apply(&ops, Some(next))).await?;
                total += n;
                cursor = batch.next;
                if let Some(f) = self.shared_feed().as_mut() {
                    f.cursor = Some(cursor.clone());
                }
                if !feed.store.feed_applied(feed.instance, &cursor).await? {
                    tracing::warn!(
                        "the search feed was trimmed past this index's place in it (the instance was away too long); rebuilding the index"
                    );
                    self.request_rebuild();
                    return Ok(total);
                }
            }
            if !batch.more {
                return Ok(total);
            }
        }
    }

    /// Applies one batch of resolved ops and commits it, with `payload`
    /// (the feed's place after them) when following a shared feed.
    fn apply(&self, batch: &[Resolved], payload: Option<FeedCursor>) -> Result<(), SearchError> {
        let documents = batch.iter().any(|op| {
            matches!(
                op,
                Resolved::Document(_) | Resolved::DocumentGone { .. } | Resolved::DeleteUser { .. }
            )
        });
        if documents {
            self.knowledge.with_writer(&self.stop, |w, f| {
                for op in batch {
                    match op {
                        Resolved::Document(d) => {
                            knowledge::KnowledgeIndex::put(w, f, d.owner, d.file_id, &d.chunks)?
                        }
                        Resolved::DocumentGone { file_id } => {
                            knowledge::KnowledgeIndex::remove(w, f, *file_id)
                        }
                        Resolved::DeleteUser { user_id } => {
                            knowledge::KnowledgeIndex::remove_user(w, f, *user_id)
                        }
                        _ => {}
                    }
                }
                Ok(())
            })?;
            self.knowledge.commit()?;
        }
        if batch
            .iter()
            .all(|op| matches!(op, Resolved::Document(_) | Resolved::DocumentGone { .. }))
        {
            return Ok(());
        }
        self.with_writer(WriterUse::Incremental, |w, f| {
            for op in batch {
                match op {
                    Resolved::Message(im) => {
                        w.delete_term(Term::from_field_bytes(f.key, &key(b'm', im.message.id)));
                        if !im.message.content.is_empty() {
                            w.add_document(Self::message_doc(f, im.user_id, &im.message))?;
                        }
                    }
                    Resolved::MessageGone { message_id } => {
                        w.delete_term(Term::from_field_bytes(f.key, &key(b'm', *message_id)));
                    }
                    Resolved::Title(c) => {
                        w.delete_term(Term::from_field_bytes(f.key, &key(b't', c.id)));
                        if let Some(d) = Self::title_doc(f, c) {
                            w.add_document(d)?;
                        }
                    }
                    Resolved::TitleGone { conversation_id } => {
                        w.delete_term(Term::from_field_bytes(f.key, &key(b't', *conversation_id)));
                    }
                    Resolved::DeleteConversation { conversation_id } => {
                        w.delete_term(Term::from_field_bytes(
                            f.conversation,
                            conversation_id.as_bytes(),
                        ));
                    }
                    Resolved::DeleteUser { user_id } => {
                        w.delete_term(Term::from_field_bytes(f.user, user_id.as_bytes()));
                    }
                    Resolved::Document(_) | Resolved::DocumentGone { .. } => {}
                }
            }
            commit(w, payload.as_deref())?;
            Ok(())
        })?;
        self.reader.reload()?;
        Ok(())
    }

    /// Rebuilds the whole index from the store. `progress(done, total)` is
    /// called now and then.
    ///
    /// The store is walked page by page; the outbox head read first is what
    /// the rebuilt index is known to cover. Changes made during the walk may
    /// or may not be in a page, and their ops (after that head) replay them
    /// afterwards, which is idempotent.
    pub async fn rebuild(
        self: &Arc<Self>,
        store: &SharedStore,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<u64, SearchError> {
        let total = store.message_count().await?;
        let feed = self.shared_feed().clone();
        let covered = match &feed {
            Some(f) => Covered::Cursor(f.store.feed_start().await?),
            None => Covered::Seq(store.outbox_head().await?),
        };
        let me = self.clone();
        blocking(move || {
            me.with_writer(WriterUse::Rebuild, |w, _| {
                w.delete_all_documents()?;
                Ok(())
            })
        })
        .await?;
        let mut done = 0u64;
        let mut after = None;
        loop {
            let page = store.searchable_page(after, REBUILD_PAGE).await?;
            let next = page.next;
            let me = self.clone();
            let added = blocking(move || {
                me.with_writer(WriterUse::Rebuild, |w, f| {
                    let mut n = 0u64;
                    for (c, msgs) in &page.conversations {
                        if let Some(d) = Self::title_doc(f, c) {
                            w.add_document(d)?;
                        }
                        for m in msgs {
                            n += 1;
                            if !m.content.is_empty() {
                                w.add_document(Self::message_doc(f, c.user_id, m))?;
                            }
                        }
                    }
                    Ok(n)
                })
            })
            .await?;
            // Report about every 10,000 messages, as before the paging.
            if (done + added) / 10_000 > done / 10_000 {
                progress(done + added, total);
            }
            done += added;
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        let me = self.clone();
        let payload = match &covered {
            Covered::Cursor(c) => Some(c.clone()),
            Covered::Seq(_) => None,
        };
        blocking(move || {
            me.with_writer(WriterUse::Rebuild, |w, _| {
                commit(w, payload.as_deref())?;
                Ok(())
            })?;
            me.reader.reload()?;
            Ok(())
        })
        .await?;
        match covered {
            Covered::Seq(seq) => store.outbox_ack(seq).await?,
            Covered::Cursor(c) => {
                if let Some(f) = self.shared_feed().as_mut() {
                    f.cursor = Some(c.clone());
                }
                if let Some(feed) = feed {
                    feed.store.feed_applied(feed.instance, &c).await?;
                }
            }
        }
        std::fs::write(self.dir.join(VERSION_FILE), INDEX_VERSION.to_string())?;
        progress(done, total);
        Ok(done)
    }

    /// The indexer: rebuilds when needed, then keeps draining the outbox
    /// until [`Search::shutdown`]. Index writes run on the blocking pool.
    pub async fn run_indexer(self: Arc<Self>, store: crate::store::WeakStore) {
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            let Some(st) = store.upgrade() else { return };
            let res = async {
                if self.knowledge.needs_rebuild.load(Ordering::SeqCst) {
                    let n = self.rebuild_knowledge(&st).await?;
                    self.knowledge.needs_rebuild.store(false, Ordering::SeqCst);
                    tracing::info!(chunks = n, "knowledge index rebuilt");
                }
                if self.is_partial() {
                    let started = Instant::now();
                    let n = self.rebuild(&st, |_, _| {}).await?;
                    // The rebuild skipped the outbox up to its place, the
                    // documents' ops with the rest (a new instance on a
                    // database, one whose place was trimmed, a copied data
                    // directory): the knowledge index is read again from the
                    // store, after that place, so nothing falls in between.
                    let k = self.rebuild_knowledge(&st).await?;
                    self.rebuilding.store(false, Ordering::SeqCst);
                    tracing::info!(
                        messages = n,
                        chunks = k,
                        seconds = started.elapsed().as_secs_f64(),
                        "search index rebuilt"
                    );
                }
                self.drain(&st).await?;
                Ok::<(), SearchError>(())
            }
            .await;
            drop(st);
            match res {
                Ok(()) => {}
                Err(SearchError::Stopped) => return,
                Err(e) => tracing::error!(error = %e, "search indexing failed; will retry"),
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Rebuilds the knowledge index from the store's documents (as
    /// [`rebuild`](Self::rebuild) does for messages, without touching the
    /// outbox: `Document` ops after the walk replay harmlessly).
    pub async fn rebuild_knowledge(
        self: &Arc<Self>,
        store: &SharedStore,
    ) -> Result<u64, SearchError> {
        let me = self.clone();
        blocking(move || {
            me.knowledge
                .with_writer(&me.stop, |w, _| knowledge::KnowledgeIndex::delete_all(w))
        })
        .await?;
        let mut after = None;
        let mut n = 0u64;
        loop {
            let page = store.documents_page(after, 64).await?;
            let Some(last) = page.last().map(|(d, _)| d.file_id) else {
                break;
            };
            after = Some(last);
            let me = self.clone();
            n += blocking(move || {
                me.knowledge.with_writer(&me.stop, |w, f| {
                    let mut n = 0u64;
                    for (d, chunks) in &page {
                        if d.status == crate::store::knowledge::DocumentStatus::Ready {
                            knowledge::KnowledgeIndex::put(w, f, d.owner, d.file_id, chunks)?;
                            n += chunks.len() as u64;
                        }
                    }
                    Ok(n)
                })
            })
            .await?;
        }
        let me = self.clone();
        blocking(move || {
            me.knowledge.commit()?;
            me.knowledge.mark_built()
        })
        .await?;
        Ok(n)
    }

    /// The best chunks of `files` (all the user's documents when empty)
    /// for `question`; see [`knowledge::KnowledgeIndex::retrieve`].
    pub async fn retrieve(
        self: &Arc<Self>,
        user: Uuid,
        files: Vec<Uuid>,
        question: String,
        limit: usize,
    ) -> Result<Vec<knowledge::ChunkHit>, SearchError> {
        let me = self.clone();
        blocking(move || me.knowledge.retrieve(user, &files, &question, limit)).await
    }

    /// Stops the indexer loop and releases the index writer (and its lock).
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.knowledge.shutdown();
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, writer)) = w.take()
            && let Err(e) = writer.wait_merging_threads()
        {
            tracing::warn!(error = %e, "search index merge did not finish");
        }
    }

    fn analyze(&self, text: &str) -> Vec<(usize, String)> {
        let mut a = tokenizer::analyzer();
        let mut s = a.token_stream(text);
        let mut out: Vec<(usize, String)> = Vec::new();
        while s.advance() {
            let t = s.token();
            // Keep the first token at each position: for identifiers that is
            // the whole identifier.
            if out.last().is_none_or(|(p, _)| *p != t.position) {
                out.push((t.position, t.text.clone()));
            }
        }
        out
    }

    fn clause_query(
        &self,
        c: &query::Clause,
        terms: &mut HashSet<String>,
        prefixes: &mut Vec<String>,
    ) -> Option<Box<dyn Query>> {
        let f = self.f.text;
        match c {
            query::Clause::Word(w) | query::Clause::Phrase(w) => {
                let toks = self.analyze(w);
                for (_, t) in &toks {
                    terms.insert(t.clone());
                }
                match toks.len() {
                    0 => None,
                    1 => Some(Box::new(TermQuery::new(
                        Term::from_field_text(f, &toks[0].1),
                        IndexRecordOption::WithFreqs,
                    ))),
                    _ if matches!(c, query::Clause::Word(_)) => {
                        // A "word" with punctuation inside (e.g. a sentence
                        // fragment without quotes) must match all its parts.
                        Some(Box::new(BooleanQuery::new(
                            toks.iter()
                                .map(|(_, t)| {
                                    (
                                        Occur::Must,
                                        Box::new(TermQuery::new(
                                            Term::from_field_text(f, t),
                                            IndexRecordOption::Basic,
                                        ))
                                            as Box<dyn Query>,
                                    )
                                })
                                .collect(),
                        )))
                    }
                    _ => {
                        let first = toks[0].0;
                        Some(Box::new(PhraseQuery::new_with_offset(
                            toks.iter()
                                .map(|(p, t)| (p - first, Term::from_field_text(f, t)))
                                .collect(),
                        )))
                    }
                }
            }
            query::Clause::Prefix(p) => {
                let p = p.to_lowercase();
                prefixes.push(p.clone());
                Some(Box::new(prefix::PrefixQuery::new(f, p)))
            }
        }
    }

    /// Runs a query for one user. Blocking; call from the blocking pool.
    pub fn search(&self, req: &SearchRequest) -> Result<SearchResult, SearchError> {
        let parsed = query::parse(&req.q).map_err(SearchError::BadQuery)?;
        let mut terms = HashSet::new();
        let mut prefixes = Vec::new();
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        // The isolation filter: always present, inside the query itself.
        clauses.push((
            Occur::Must,
            Box::new(TermQuery::new(
                Term::from_field_bytes(self.f.user, req.user_id.as_bytes()),
                IndexRecordOption::Basic,
            )),
        ));
        let mut positive = 0;
        for c in &parsed.include {
            if let Some(q) = self.clause_query(c, &mut terms, &mut prefixes) {
                clauses.push((Occur::Must, q));
                positive += 1;
            }
        }
        if positive == 0 {
            return Err(SearchError::BadQuery(
                "the query has no searchable words (only punctuation?)".into(),
            ));
        }
        let mut ignored = HashSet::new();
        let mut ignored_p = Vec::new();
        for c in &parsed.exclude {
            if let Some(q) = self.clause_query(c, &mut ignored, &mut ignored_p) {
                clauses.push((Occur::MustNot, q));
            }
        }
        if let Some(cid) = req.conversation_id {
            clauses.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_bytes(self.f.conversation, cid.as_bytes()),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        if let Some(role) = &req.role {
            clauses.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(self.f.role, role),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        if req.after.is_some() || req.before.is_some() {
            // created_at > after and created_at < before, in sort-key units.
            let lo = req
                .after
                .map(|a| {
                    Bound::Included(Term::from_field_i64(
                        self.f.sort,
                        a.saturating_add(1).saturating_mul(1 << SORT_SUBSECOND_BITS),
                    ))
                })
                .unwrap_or(Bound::Unbounded);
            let hi = req
                .before
                .map(|b| {
                    Bound::Excluded(Term::from_field_i64(
                        self.f.sort,
                        b.saturating_mul(1 << SORT_SUBSECOND_BITS),
                    ))
                })
                .unwrap_or(Bound::Unbounded);
            clauses.push((Occur::Must, Box::new(RangeQuery::new(lo, hi))));
        }
        let q = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let want = req.offset + req.limit + 1;
        let user_docs =
            searcher.doc_freq(&Term::from_field_bytes(self.f.user, req.user_id.as_bytes()))?;
        let top = collect::newest_first(&searcher, &q, SORT, want, user_docs, &self.maxima)?;
        let has_more = top.len() > req.offset + req.limit;
        let mut hits = Vec::new();
        // The id columns of each segment, opened once (opening one parses
        // its header: per hit, that was most of a query's time).
        type Cols = [Arc<dyn tantivy::columnar::ColumnValues<u64>>; 5];
        let mut columns: Vec<Option<Cols>> = vec![None; searcher.segment_readers().len()];
        for (sort, addr) in top.into_iter().skip(req.offset).take(req.limit) {
            let seg = addr.segment_ord as usize;
            if columns[seg].is_none() {
                let ff = searcher.segment_reader(addr.segment_ord).fast_fields();
                let col = |name: &str| -> Result<_, SearchError> {
                    Ok(ff.u64(name)?.first_or_default_col(0))
                };
                columns[seg] = Some([
                    col("conversation_hi")?,
                    col("conversation_lo")?,
                    col("message_hi")?,
                    col("message_lo")?,
                    col("role_code")?,
                ]);
            }
            let Some(c) = &columns[seg] else { continue };
            let get = |i: usize| c[i].get_val(addr.doc_id);
            let conversation_id = Uuid::from_u64_pair(get(0), get(1));
            let message = Uuid::from_u64_pair(get(2), get(3));
            let role = ROLES.get(get(4) as usize).copied().unwrap_or("user");
            hits.push(RawHit {
                conversation_id,
                message_id: (role != "title").then_some(message),
                role: role.to_string(),
                created_at: sort >> SORT_SUBSECOND_BITS,
            });
        }
        Ok(SearchResult {
            hits,
            has_more,
            terms,
            prefixes,
        })
    }

    /// Number of documents (messages and titles) in the index.
    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// The newest outbox seq applied so far.
    pub fn applied_seq(&self) -> u64 {
        self.applied.load(Ordering::SeqCst)
    }

    /// Size of the index on disk, in bytes.
    pub fn disk_bytes(&self) -> u64 {
        fn walk(p: &Path) -> u64 {
            std::fs::read_dir(p)
                .map(|rd| {
                    rd.filter_map(Result::ok)
                        .map(|e| {
                            let m = e.metadata().ok();
                            match m {
                                Some(m) if m.is_dir() => walk(&e.path()),
                                Some(m) => m.len(),
                                None => 0,
                            }
                        })
                        .sum()
                })
                .unwrap_or(0)
        }
        walk(&self.dir)
    }
}
