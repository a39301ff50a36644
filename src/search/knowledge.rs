//! The knowledge index: one tantivy document per chunk of a user's
//! uploaded documents, under `<data>/knowledge`, beside the message index.
//! It is fed by the same search outbox (`Document` ops) and answers BM25
//! queries for retrieval.
//!
//! Why a second index and not more documents in the message index: the
//! message index is read newest-first with no scores and no stored
//! statistics that retrieval needs; chunks must never show up in message
//! search; and each can change its schema (and be rebuilt) without the
//! other — rebuilding a million messages because the chunk schema changed
//! would be waste. Both use the same analyzer.
//!
//! Scores use BM25 with **the caller's own statistics** (document count,
//! average length and each term's document frequency among the caller's
//! chunks), not the index-wide ones tantivy would use: those would let one
//! user's ranking move with what others uploaded (see the message index's
//! note on side channels).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use tantivy::collector::{Collector, Count, FilterCollector, SegmentCollector, TopDocs};
use tantivy::query::{
    Bm25StatisticsProvider, BooleanQuery, ConstScoreQuery, Occur, Query, TermQuery,
};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::{
    DocId, Index, IndexReader, IndexWriter, ReloadPolicy, Score, SegmentReader, TantivyDocument,
    Term,
};
use uuid::Uuid;

use super::{SearchError, tokenizer};
use crate::store::knowledge::Chunk;

/// Bump when the schema or the analyzer changes: the index is rebuilt.
pub const KNOWLEDGE_INDEX_VERSION: u32 = 1;
const VERSION_FILE: &str = "confab-knowledge-version";
const WRITER_MEMORY: usize = 32 * 1024 * 1024;

#[derive(Clone, Copy)]
pub(super) struct Fields {
    /// The document's file id (16 bytes): replacing and deleting a
    /// document's chunks.
    file: Field,
    /// The isolation filter: every query requires the caller's id here.
    user: Field,
    file_hi: Field,
    file_lo: Field,
    ordinal: Field,
    text: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text_opts = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(tokenizer::NAME)
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let f = Fields {
        file: b.add_bytes_field("file", INDEXED),
        user: b.add_bytes_field("user", INDEXED),
        file_hi: b.add_u64_field("file_hi", FAST),
        file_lo: b.add_u64_field("file_lo", FAST),
        ordinal: b.add_u64_field("ordinal", FAST),
        // Not stored: the text is read from the store, like messages.
        text: b.add_text_field("text", text_opts),
    };
    (b.build(), f)
}

/// One chunk found for a question.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkHit {
    pub file_id: Uuid,
    pub ordinal: u32,
    pub score: f32,
}

pub struct KnowledgeIndex {
    index: Index,
    reader: IndexReader,
    f: Fields,
    dir: PathBuf,
    writer: std::sync::Mutex<Option<IndexWriter>>,
    /// A rebuild is needed (new, outdated or unreadable index).
    pub(super) needs_rebuild: std::sync::atomic::AtomicBool,
}

impl KnowledgeIndex {
    pub fn open(data_dir: &Path) -> Result<KnowledgeIndex, SearchError> {
        let dir = data_dir.join("knowledge");
        let (schema, f) = schema();
        let version_ok = std::fs::read_to_string(dir.join(VERSION_FILE))
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
            == Some(KNOWLEDGE_INDEX_VERSION);
        let existing = if version_ok {
            Index::open_in_dir(&dir).ok()
        } else {
            None
        };
        let (index, rebuild) = match existing {
            Some(i) => (i, false),
            None => {
                if dir.exists() {
                    tracing::warn!(path = %dir.display(), "knowledge index is missing, outdated or unreadable; rebuilding it");
                    std::fs::remove_dir_all(&dir)?;
                }
                std::fs::create_dir_all(&dir)?;
                (Index::create_in_dir(&dir, schema)?, true)
            }
        };
        index
            .tokenizers()
            .register(tokenizer::NAME, tokenizer::analyzer());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(KnowledgeIndex {
            index,
            reader,
            f,
            dir,
            writer: std::sync::Mutex::new(None),
            needs_rebuild: std::sync::atomic::AtomicBool::new(rebuild),
        })
    }

    pub(super) fn with_writer<T>(
        &self,
        stop: &std::sync::atomic::AtomicBool,
        f: impl FnOnce(&mut IndexWriter, &Fields) -> Result<T, SearchError>,
    ) -> Result<T, SearchError> {
        let mut guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(SearchError::Stopped);
            }
            *guard = Some(self.index.writer_with_num_threads(1, WRITER_MEMORY)?);
        }
        let w = guard.as_mut().expect("writer just set");
        f(w, &self.f)
    }

    /// Replaces what the index has of one document.
    pub(super) fn put(
        w: &mut IndexWriter,
        f: &Fields,
        owner: Uuid,
        file_id: Uuid,
        chunks: &[Chunk],
    ) -> Result<(), SearchError> {
        w.delete_term(Term::from_field_bytes(f.file, file_id.as_bytes()));
        let (hi, lo) = file_id.as_u64_pair();
        for c in chunks {
            if c.text.trim().is_empty() {
                continue;
            }
            let mut d = TantivyDocument::new();
            d.add_bytes(f.file, file_id.as_bytes());
            d.add_bytes(f.user, owner.as_bytes());
            d.add_u64(f.file_hi, hi);
            d.add_u64(f.file_lo, lo);
            d.add_u64(f.ordinal, u64::from(c.ordinal));
            d.add_text(f.text, &c.text);
            w.add_document(d)?;
        }
        Ok(())
    }

    pub(super) fn remove(w: &mut IndexWriter, f: &Fields, file_id: Uuid) {
        w.delete_term(Term::from_field_bytes(f.file, file_id.as_bytes()));
    }

    pub(super) fn remove_user(w: &mut IndexWriter, f: &Fields, user_id: Uuid) {
        w.delete_term(Term::from_field_bytes(f.user, user_id.as_bytes()));
    }

    pub(super) fn delete_all(w: &mut IndexWriter) -> Result<(), SearchError> {
        w.delete_all_documents()?;
        Ok(())
    }

    /// Commits the open writer (if any) and reloads the reader.
    pub(super) fn commit(&self) -> Result<(), SearchError> {
        let mut guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = guard.as_mut() {
            w.commit()?;
        }
        drop(guard);
        self.reader.reload()?;
        Ok(())
    }

    pub(super) fn mark_built(&self) -> Result<(), SearchError> {
        std::fs::write(
            self.dir.join(VERSION_FILE),
            KNOWLEDGE_INDEX_VERSION.to_string(),
        )?;
        Ok(())
    }

    pub(super) fn shutdown(&self) {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(writer) = w.take()
            && let Err(e) = writer.wait_merging_threads()
        {
            tracing::warn!(error = %e, "knowledge index merge did not finish");
        }
    }

    /// The distinct analyzed terms of `text` (at most 64).
    fn terms(&self, text: &str) -> Vec<String> {
        let mut a = tokenizer::analyzer();
        let mut s = a.token_stream(text);
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        while s.advance() {
            let t = &s.token().text;
            if seen.insert(t.clone()) {
                out.push(t.clone());
                if out.len() >= 64 {
                    break;
                }
            }
        }
        out
    }

    /// The `limit` best chunks of `files` (all of the user's documents
    /// when empty) for `question`, by BM25 over the user's own statistics.
    /// Blocking; call from the blocking pool.
    pub fn retrieve(
        &self,
        user: Uuid,
        files: &[Uuid],
        question: &str,
        limit: usize,
    ) -> Result<Vec<ChunkHit>, SearchError> {
        let terms = self.terms(question);
        if terms.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let user_term = Term::from_field_bytes(self.f.user, user.as_bytes());
        let user_filter: Box<dyn Query> = Box::new(ConstScoreQuery::new(
            Box::new(TermQuery::new(user_term.clone(), IndexRecordOption::Basic)),
            0.0,
        ));
        let words: Vec<(Occur, Box<dyn Query>)> = terms
            .iter()
            .map(|t| {
                (
                    Occur::Should,
                    Box::new(TermQuery::new(
                        Term::from_field_text(self.f.text, t),
                        IndexRecordOption::WithFreqs,
                    )) as Box<dyn Query>,
                )
            })
            .collect();
        let q = BooleanQuery::new(vec![
            (Occur::Must, user_filter),
            (Occur::Must, Box::new(BooleanQuery::new(words))),
        ]);
        let searcher = self.reader.searcher();
        let stats = UserStats::new(&searcher, &user_term, self.f.text)?;
        let top = TopDocs::with_limit(limit);
        let found: Vec<(Score, tantivy::DocAddress)> = if files.is_empty() {
            searcher.search_with_statistics_provider(&q, &top, &stats)?
        } else {
            let lows: HashSet<u64> = files.iter().map(|f| f.as_u64_pair().1).collect();
            let filter = FilterCollector::new(
                "file_lo".to_string(),
                move |lo: u64| lows.contains(&lo),
                top,
            );
            searcher.search_with_statistics_provider(&q, &filter, &stats)?
        };
        let wanted: HashSet<Uuid> = files.iter().copied().collect();
        let mut hits = Vec::with_capacity(found.len());
        for (score, addr) in found {
            let ff = searcher.segment_reader(addr.segment_ord).fast_fields();
            let get = |name: &str| -> Result<u64, SearchError> {
                Ok(ff.u64(name)?.first_or_default_col(0).get_val(addr.doc_id))
            };
            let file_id = Uuid::from_u64_pair(get("file_hi")?, get("file_lo")?);
            // The filter compared the low half only.
            if !wanted.is_empty() && !wanted.contains(&file_id) {
                continue;
            }
            hits.push(ChunkHit {
                file_id,
                ordinal: get("ordinal")? as u32,
                score,
            });
        }
        Ok(hits)
    }

    /// Chunks in the index (all users).
    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }
}

/// BM25 statistics over one user's chunks only.
struct UserStats<'a> {
    searcher: &'a tantivy::Searcher,
    user: Term,
    docs: u64,
    tokens: u64,
    cache: RefCell<HashMap<Term, u64>>,
}

impl<'a> UserStats<'a> {
    fn new(searcher: &'a tantivy::Searcher, user: &Term, text: Field) -> Result<Self, SearchError> {
        let q = TermQuery::new(user.clone(), IndexRecordOption::Basic);
        let (docs, tokens) = searcher.search(&q, &NormSum { field: text })?;
        Ok(UserStats {
            searcher,
            user: user.clone(),
            docs: docs.max(1),
            tokens: tokens.max(1),
            cache: RefCell::new(HashMap::new()),
        })
    }
}

impl Bm25StatisticsProvider for UserStats<'_> {
    fn total_num_tokens(&self, _field: Field) -> tantivy::Result<u64> {
        Ok(self.tokens)
    }
    fn total_num_docs(&self) -> tantivy::Result<u64> {
        Ok(self.docs)
    }
    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        if let Some(n) = self.cache.borrow().get(term) {
            return Ok(*n);
        }
        let q = BooleanQuery::new(vec![
            (
                Occur::Must,
                Box::new(TermQuery::new(self.user.clone(), IndexRecordOption::Basic))
                    as Box<dyn Query>,
            ),
            (
                Occur::Must,
                Box::new(TermQuery::new(term.clone(), IndexRecordOption::Basic)),
            ),
        ]);
        let n = self.searcher.search(&q, &Count)? as u64;
        self.cache.borrow_mut().insert(term.clone(), n);
        Ok(n)
    }
}

/// Counts matching documents and adds up their lengths in `field` (its
/// field norms, the token counts BM25 uses).
struct NormSum {
    field: Field,
}

struct NormSumSegment {
    norms: tantivy::fieldnorm::FieldNormReader,
    docs: u64,
    tokens: u64,
}

impl Collector for NormSum {
    type Fruit = (u64, u64);
    type Child = NormSumSegment;

    fn for_segment(&self, _: u32, segment: &SegmentReader) -> tantivy::Result<NormSumSegment> {
        Ok(NormSumSegment {
            norms: segment.get_fieldnorms_reader(self.field)?,
            docs: 0,
            tokens: 0,
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<(u64, u64)>) -> tantivy::Result<(u64, u64)> {
        Ok(fruits
            .into_iter()
            .fold((0, 0), |(d, t), (d2, t2)| (d + d2, t + t2)))
    }
}

impl SegmentCollector for NormSumSegment {
    type Fruit = (u64, u64);

    fn collect(&mut self, doc: DocId, _: Score) {
        self.docs += 1;
        self.tokens += u64::from(self.norms.fieldnorm(doc));
    }

    fn harvest(self) -> (u64, u64) {
        (self.docs, self.tokens)
    }
}
