//! Full-text search: the only code that touches tantivy.
//!
//! One index under `<data>/index` holds a document per message and per
//! conversation title. redb stays the truth: writes append to the
//! `search_outbox` in the same transaction, and one indexer task drains it
//! in batches (see [`Search::run_indexer`]). Every query carries the
//! caller's user id as a required term, so another user's documents can
//! never match; hits are ordered newest first (not by index-wide scores,
//! which would leak other users' statistics).

pub mod query;
pub mod snippet;
pub mod tokenizer;

use std::collections::HashSet;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, PhraseQuery, Query, RangeQuery, TermQuery};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, Order, ReloadPolicy, TantivyDocument, Term, doc,
};
use uuid::Uuid;

use crate::store::Store;
use crate::store::chat::{Conversation, Message, MessageRole};
use crate::store::search_outbox::Resolved;

/// Bump when the schema or the analyzer changes: the index is rebuilt.
pub const INDEX_VERSION: u32 = 2;
const VERSION_FILE: &str = "confab-index-version";
const WRITER_MEMORY: usize = 64 * 1024 * 1024;
/// How often the indexer looks at the outbox when idle.
pub const POLL_EVERY: Duration = Duration::from_millis(200);
const BATCH: usize = 2000;

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
}

#[derive(Clone, Copy)]
struct Fields {
    doc_id: Field,
    kind: Field,
    message_id: Field,
    conversation_id: Field,
    user_id: Field,
    role: Field,
    created_at: Field,
    /// Newest-first order: the id's millisecond time and sequence bits.
    sort: Field,
    text: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text_opts = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(tokenizer::NAME)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let f = Fields {
        doc_id: b.add_text_field("doc_id", STRING),
        kind: b.add_text_field("kind", STRING | STORED),
        message_id: b.add_text_field("message_id", STRING | STORED),
        conversation_id: b.add_text_field("conversation_id", STRING | STORED),
        user_id: b.add_text_field("user_id", STRING),
        role: b.add_text_field("role", STRING | STORED),
        created_at: b.add_i64_field("created_at", INDEXED | STORED),
        sort: b.add_i64_field("sort", FAST),
        // The text itself is not stored: snippets are cut from redb's copy,
        // which keeps the index about the size of its postings.
        text: b.add_text_field("text", text_opts),
    };
    (b.build(), f)
}

/// A UUIDv7's millisecond timestamp and 12 sequence bits: sorts documents
/// in creation order even within one second.
fn sort_key(id: Uuid) -> i64 {
    let u = id.as_u128();
    (((u >> 80) << 12) | ((u >> 64) & 0xfff)) as i64
}

fn role_str(r: MessageRole) -> &'static str {
    match r {
        MessageRole::User => "user",
        MessageRole::Assistant => "assistant",
        MessageRole::System => "system",
    }
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
    writer: Mutex<Option<IndexWriter>>,
    /// The newest outbox seq applied, and when the indexer last caught up.
    applied: AtomicU64,
    stop: AtomicBool,
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
        });
        Ok(search)
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
        f: impl FnOnce(&mut IndexWriter, &Fields) -> Result<T, SearchError>,
    ) -> Result<T, SearchError> {
        let mut guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            let threads = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .clamp(1, 4);
            *guard = Some(self.index.writer_with_num_threads(threads, WRITER_MEMORY)?);
        }
        f(guard.as_mut().expect("writer just set"), &self.f)
    }

    fn message_doc(f: &Fields, user_id: Uuid, m: &Message) -> TantivyDocument {
        doc!(
            f.doc_id => format!("m:{}", m.id),
            f.kind => "message",
            f.message_id => m.id.to_string(),
            f.conversation_id => m.conversation_id.to_string(),
            f.user_id => user_id.to_string(),
            f.role => role_str(m.role),
            f.created_at => m.created_at,
            f.sort => sort_key(m.id),
            f.text => m.content.as_str(),
        )
    }

    fn title_doc(f: &Fields, c: &Conversation) -> Option<TantivyDocument> {
        // A placeholder title is not worth finding.
        if c.title_auto && c.title == crate::chat::DEFAULT_TITLE {
            return None;
        }
        Some(doc!(
            f.doc_id => format!("t:{}", c.id),
            f.kind => "title",
            f.conversation_id => c.id.to_string(),
            f.user_id => c.user_id.to_string(),
            f.role => "title",
            f.created_at => c.created_at,
            f.sort => sort_key(c.id),
            f.text => c.title.as_str(),
        ))
    }

    /// Applies pending outbox ops until the outbox is empty. Returns how
    /// many ops were applied.
    pub fn drain(&self, store: &Store) -> Result<usize, SearchError> {
        let mut total = 0;
        loop {
            let batch = store.outbox_batch(BATCH)?;
            let Some(&(last, _)) = batch.last() else {
                return Ok(total);
            };
            self.with_writer(|w, f| {
                for (_, op) in &batch {
                    match op {
                        Resolved::Message(im) => {
                            w.delete_term(Term::from_field_text(
                                f.doc_id,
                                &format!("m:{}", im.message.id),
                            ));
                            if !im.message.content.is_empty() {
                                w.add_document(Self::message_doc(f, im.user_id, &im.message))?;
                            }
                        }
                        Resolved::MessageGone { message_id } => {
                            w.delete_term(Term::from_field_text(
                                f.doc_id,
                                &format!("m:{message_id}"),
                            ));
                        }
                        Resolved::Title(c) => {
                            w.delete_term(Term::from_field_text(f.doc_id, &format!("t:{}", c.id)));
                            if let Some(d) = Self::title_doc(f, c) {
                                w.add_document(d)?;
                            }
                        }
                        Resolved::TitleGone { conversation_id } => {
                            w.delete_term(Term::from_field_text(
                                f.doc_id,
                                &format!("t:{conversation_id}"),
                            ));
                        }
                        Resolved::DeleteConversation { conversation_id } => {
                            w.delete_term(Term::from_field_text(
                                f.conversation_id,
                                &conversation_id.to_string(),
                            ));
                        }
                        Resolved::DeleteUser { user_id } => {
                            w.delete_term(Term::from_field_text(f.user_id, &user_id.to_string()));
                        }
                    }
                }
                w.commit()?;
                Ok(())
            })?;
            self.reader.reload()?;
            // Acknowledge only after the commit: a crash in between replays
            // the batch, which is idempotent.
            store.outbox_ack(last)?;
            self.applied.store(last, Ordering::SeqCst);
            total += batch.len();
        }
    }

    /// Rebuilds the whole index from redb. `progress(done, total)` is called
    /// now and then.
    pub fn rebuild(
        &self,
        store: &Store,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<u64, SearchError> {
        let total = store.message_count()?;
        let mut done = 0u64;
        let err: std::cell::RefCell<Option<SearchError>> = std::cell::RefCell::new(None);
        let covered = self.with_writer(|w, f| {
            w.delete_all_documents()?;
            let w: &IndexWriter = w;
            let covered = store.for_each_searchable(
                |c| {
                    if let Some(d) = Self::title_doc(f, c)
                        && let Err(e) = w.add_document(d)
                    {
                        err.borrow_mut().get_or_insert(e.into());
                    }
                },
                |user_id, m| {
                    done += 1;
                    if !m.content.is_empty()
                        && let Err(e) = w.add_document(Self::message_doc(f, user_id, m))
                    {
                        err.borrow_mut().get_or_insert(e.into());
                    }
                    if done.is_multiple_of(10_000) {
                        progress(done, total);
                    }
                },
            )?;
            if let Some(e) = err.borrow_mut().take() {
                return Err(e);
            }
            Ok(covered)
        })?;
        self.with_writer(|w, _| {
            w.commit()?;
            Ok(())
        })?;
        self.reader.reload()?;
        store.outbox_ack(covered)?;
        std::fs::write(self.dir.join(VERSION_FILE), INDEX_VERSION.to_string())?;
        progress(done, total);
        Ok(done)
    }

    /// The indexer: rebuilds when needed, then keeps draining the outbox
    /// until [`Search::shutdown`]. Runs on the blocking pool.
    pub async fn run_indexer(self: Arc<Self>, store: crate::store::WeakStore) {
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            let Some(st) = store.upgrade() else { return };
            let me = self.clone();
            let res = tokio::task::spawn_blocking(move || -> Result<(), SearchError> {
                if me.is_partial() {
                    let started = Instant::now();
                    let n = me.rebuild(&st, |_, _| {})?;
                    me.rebuilding.store(false, Ordering::SeqCst);
                    tracing::info!(
                        messages = n,
                        seconds = started.elapsed().as_secs_f64(),
                        "search index rebuilt"
                    );
                }
                me.drain(&st)?;
                Ok(())
            })
            .await;
            match res {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "search indexing failed; will retry"),
                Err(e) => tracing::error!(error = %e, "search indexer task failed; will retry"),
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Stops the indexer loop and releases the index writer (and its lock).
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(writer) = w.take()
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
                let mut upper = p.clone();
                upper.push(char::MAX);
                Some(Box::new(RangeQuery::new(
                    Bound::Included(Term::from_field_text(f, &p)),
                    Bound::Excluded(Term::from_field_text(f, &upper)),
                )))
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
                Term::from_field_text(self.f.user_id, &req.user_id.to_string()),
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
                    Term::from_field_text(self.f.conversation_id, &cid.to_string()),
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
            let lo = req
                .after
                .map(|a| Bound::Excluded(Term::from_field_i64(self.f.created_at, a)))
                .unwrap_or(Bound::Unbounded);
            let hi = req
                .before
                .map(|b| Bound::Excluded(Term::from_field_i64(self.f.created_at, b)))
                .unwrap_or(Bound::Unbounded);
            clauses.push((Occur::Must, Box::new(RangeQuery::new(lo, hi))));
        }
        let q = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let top: Vec<(i64, DocAddress)> = searcher.search(
            &q,
            &TopDocs::with_limit(req.limit + 1)
                .and_offset(req.offset)
                .order_by_fast_field::<i64>("sort", Order::Desc),
        )?;
        let has_more = top.len() > req.limit;
        let mut hits = Vec::new();
        for (_, addr) in top.into_iter().take(req.limit) {
            let d: TantivyDocument = searcher.doc(addr)?;
            let created_at = d
                .get_first(self.f.created_at)
                .and_then(|v| v.as_i64())
                .unwrap_or(0);
            let get = |field: Field| {
                d.get_first(field)
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string()
            };
            let Ok(conversation_id) = Uuid::parse_str(&get(self.f.conversation_id)) else {
                continue;
            };
            hits.push(RawHit {
                conversation_id,
                message_id: Uuid::parse_str(&get(self.f.message_id)).ok(),
                role: get(self.f.role),
                created_at,
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
