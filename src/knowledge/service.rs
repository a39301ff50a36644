//! The knowledge service: reading a user's uploaded files into chunks
//! (once, then kept), retrieving what a question needs for the chat
//! context, and knowledge collections.

use async_trait::async_trait;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

use super::chunk;
use super::extract::{self, DocKind, Limits};
use super::vectors;
use crate::error::{AppError, AppResult};
use crate::providers::registry::Registry;
use crate::search::Search;
use crate::store::chat::Source;
use crate::store::knowledge::*;
use crate::store::{SharedStore, StoreError};

/// An uploaded file as the knowledge service needs it.
#[derive(Debug, Clone)]
pub struct FileMeta {
    pub id: Uuid,
    pub owner: Uuid,
    pub name: String,
    pub mime: String,
}

/// Where uploaded files come from (the files service): the seam between
/// file storage and reading documents.
#[async_trait]
pub trait FileSource: Send + Sync {
    /// The owner's file; NotFound when missing or another user's.
    async fn meta(&self, owner: Uuid, id: Uuid) -> AppResult<FileMeta>;
    /// The owner's file and its bytes.
    async fn read(&self, owner: Uuid, id: Uuid) -> AppResult<(FileMeta, Vec<u8>)>;
}

/// What goes into a turn's context from documents.
#[derive(Debug, Clone, Default)]
pub struct Retrieved {
    /// Text for the system prompt: the passages, numbered.
    pub context: Option<String>,
    pub sources: Vec<Source>,
}

/// Most passages one answer is given.
pub const MAX_SOURCES: usize = 24;
/// A BM25 hit scoring less than this share of the best one is left out.
pub const MIN_RELATIVE_SCORE: f32 = 0.25;
/// Longest snippet kept with a source, in characters.
pub const SNIPPET_CHARS: usize = 700;

pub struct Knowledge {
    pub store: SharedStore,
    pub search: Arc<Search>,
    pub providers: Arc<Registry>,
    pub files: Arc<dyn FileSource>,
    pub limits: Limits,
    /// The embedding model for vectors (hybrid retrieval), if configured.
    pub embedding_model: Option<String>,
    /// One reading per file at a time.
    reading: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
    /// Readings at once (each may use a core and `max_inflated_bytes`).
    permits: tokio::sync::Semaphore,
}

impl Knowledge {
    pub fn new(
        store: SharedStore,
        search: Arc<Search>,
        providers: Arc<Registry>,
        files: Arc<dyn FileSource>,
        embedding_model: Option<String>,
    ) -> Arc<Knowledge> {
        Arc::new(Knowledge {
            store,
            search,
            providers,
            files,
            limits: Limits::default(),
            embedding_model,
            reading: Mutex::new(HashMap::new()),
            permits: tokio::sync::Semaphore::new(2),
        })
    }

    /// Whether a file of this type and name can be read as a document.
    pub fn is_document(mime: &str, name: &str) -> bool {
        !mime.starts_with("image/") && extract::detect(b"", mime, name).is_some()
    }

    /// Reads a file into chunks and stores them (replacing an earlier
    /// reading). A file that cannot be read is stored as `failed` with the
    /// reason, so it is not read again on every question.
    pub async fn ingest(&self, meta: &FileMeta, bytes: Vec<u8>) -> AppResult<DocumentRecord> {
        let kind = extract::detect(&bytes, &meta.mime, &meta.name);
        let mut rec = DocumentRecord {
            file_id: meta.id,
            owner: meta.owner,
            name: meta.name.clone(),
            kind: kind.map(DocKind::as_str).unwrap_or("other").to_string(),
            status: DocumentStatus::Failed,
            error: None,
            pages: None,
            chars: 0,
            tokens: 0,
            chunks: 0,
            truncated: None,
            embedding_model: None,
            created_at: crate::clock::now(),
        };
        let result = match kind {
            None => Err(extract::ExtractError::Unsupported),
            Some(k) => {
                let _permit = self.permits.acquire().await.map_err(AppError::internal)?;
                extract::extract(Arc::new(bytes), k, self.limits).await
            }
        };
        let mut chunks = Vec::new();
        match result {
            Ok(ex) => {
                let pieces = chunk::chunk(&ex);
                rec.status = DocumentStatus::Ready;
                rec.pages = ex.pages;
                rec.chars = ex.chars();
                rec.tokens = pieces.iter().map(|p| estimate(&p.text)).sum();
                rec.truncated = ex.truncated.clone();
                chunks = pieces
                    .into_iter()
                    .enumerate()
                    .map(|(i, p)| Chunk {
                        file_id: meta.id,
                        ordinal: i as u32,
                        text: p.text,
                        span: p.span,
                    })
                    .collect();
                rec.chunks = chunks.len() as u32;
            }
            Err(e) => {
                tracing::info!(file_id = %meta.id, error = %e, "document could not be read");
                rec.error = Some(e.to_string());
            }
        }
        self.store.put_document(&rec, &chunks).await?;
        if rec.status == DocumentStatus::Ready
            && let Some(model) = self.embedding_model.clone()
        {
            match vectors::embed_chunks(&self.providers, &model, &chunks).await {
                Ok(v) => {
                    self.store.put_vectors(rec.owner, &v).await?;
                    rec.embedding_model = Some(model);
                }
                Err(e) => {
                    tracing::warn!(file_id = %meta.id, error = %e, "document chunks got no vectors")
                }
            }
        }
        Ok(rec)
    }

    /// The document of an uploaded file, read now if it never was.
    pub async fn ensure(&self, owner: Uuid, file_id: Uuid) -> AppResult<DocumentRecord> {
        if let Ok(d) = self.store.get_document(owner, file_id).await {
            return Ok(d);
        }
        let lock = {
            let mut m = self.reading.lock().unwrap_or_else(|e| e.into_inner());
            m.entry(file_id).or_default().clone()
        };
        let guard = lock.lock().await;
        let r = match self.store.get_document(owner, file_id).await {
            Ok(d) => Ok(d),
            Err(_) => {
                let (meta, bytes) = self.files.read(owner, file_id).await?;
                self.ingest(&meta, bytes).await
            }
        };
        drop(guard);
        self.reading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&file_id);
        r
    }

    /// Reads a file in the background (after an upload, or when it joins a
    /// collection), so the first question about it does not wait.
    pub fn ensure_later(self: &Arc<Self>, owner: Uuid, file_id: Uuid) {
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.ensure(owner, file_id).await {
                tracing::debug!(file_id = %file_id, error = %e, "document not read");
            }
        });
    }

    /// Forgets what was read of a file (it was deleted): record, chunks,
    /// vectors, its place in collections and in the index.
    pub async fn forget(&self, owner: Uuid, file_id: Uuid) -> AppResult<()> {
        self.store.delete_document(owner, file_id).await?;
        Ok(())
    }

    /// The passages a turn's context gets: from the documents attached in
    /// the thread (`attached`, read now if needed) and the conversation's
    /// collections, within `budget` tokens. Documents that fit whole are
    /// sent whole; otherwise the best chunks for `question`.
    pub async fn for_turn(
        &self,
        owner: Uuid,
        question: &str,
        attached: &[Uuid],
        collections: &[Uuid],
        budget: u64,
    ) -> AppResult<Retrieved> {
        let mut docs: Vec<DocumentRecord> = Vec::new();
        let mut seen = HashSet::new();
        for &f in attached {
            if !seen.insert(f) {
                continue;
            }
            let meta = self.files.meta(owner, f).await?;
            if !Self::is_document(&meta.mime, &meta.name) {
                continue;
            }
            let d = self.ensure(owner, f).await?;
            if d.status == DocumentStatus::Failed {
                return Err(AppError::DocumentUnreadable(format!(
                    "{} could not be read: {}",
                    d.name,
                    d.error.as_deref().unwrap_or("unknown reason")
                )));
            }
            docs.push(d);
        }
        // The collections' files. Few: their records are read (a document
        // sent whole needs them). Many (more than could ever be sent whole):
        // only the index is asked, and records are read for the files the
        // passages come from.
        let mut extra: Vec<Uuid> = Vec::new();
        for &c in collections {
            let Ok(col) = self.store.get_collection(owner, c).await else {
                continue;
            };
            extra.extend(col.file_ids.into_iter().filter(|f| seen.insert(*f)));
        }
        if docs.len() + extra.len() <= MAX_SOURCES {
            for f in extra.drain(..) {
                match self.store.get_document(owner, f).await {
                    Ok(d) if d.status == DocumentStatus::Ready => docs.push(d),
                    Ok(_) => {}
                    // Not read yet: read it for the next question.
                    Err(StoreError::NotFound) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        docs.retain(|d| d.chunks > 0);
        if (docs.is_empty() && extra.is_empty()) || budget == 0 {
            return Ok(Retrieved::default());
        }
        let total: u64 = docs.iter().map(|d| d.tokens).sum();
        if extra.is_empty() && total <= budget && docs.len() <= MAX_SOURCES {
            return self.whole(owner, &docs).await;
        }
        self.best_chunks(owner, &docs, &extra, attached, question, budget)
            .await
    }

    /// Every document whole (their chunks joined, overlaps dropped).
    async fn whole(&self, owner: Uuid, docs: &[DocumentRecord]) -> AppResult<Retrieved> {
        let mut passages = Vec::new();
        for d in docs {
            let chunks = self
                .store
                .document_chunks(owner, d.file_id, 0, d.chunks)
                .await?;
            let text = join_chunks(&chunks);
            let mut span = ChunkSpan::default();
            if let (Some(first), Some(last)) = (chunks.first(), chunks.last()) {
                span = first.span.clone();
                span.page_end = last.span.page_end.or(span.page_end);
                span.line_end = last.span.line_end.or(span.line_end);
                span.paragraph_end = last.span.paragraph_end.or(span.paragraph_end);
            }
            passages.push(Passage {
                source: Source {
                    file_id: d.file_id,
                    name: d.name.clone(),
                    chunk: None,
                    span,
                    snippet: snippet(&text, &[]),
                    whole: true,
                },
                text,
            });
        }
        Ok(render(passages))
    }

    /// The best chunks for the question (BM25, fused with vectors when an
    /// embedding model is set), as many as fit `budget`.
    async fn best_chunks(
        &self,
        owner: Uuid,
        docs: &[DocumentRecord],
        extra: &[Uuid],
        attached: &[Uuid],
        question: &str,
        budget: u64,
    ) -> AppResult<Retrieved> {
        // A document read a moment ago may still be in the outbox.
        if let Err(e) = self.search.drain(&self.store).await {
            tracing::warn!(error = %e, "could not bring the knowledge index up to date");
        }
        let want = ((budget / 200) as usize).clamp(4, 64);
        let files: Vec<Uuid> = docs
            .iter()
            .map(|d| d.file_id)
            .chain(extra.iter().copied())
            .collect();
        let bm25 = self
            .search
            .retrieve(owner, files.clone(), question.to_string(), want)
            .await
            .map_err(AppError::internal)?;
        // Chunks that match only the question's commonest words ("the",
        // "is") score a small fraction of the best: they are noise, not
        // passages.
        let best = bm25.first().map(|h| h.score).unwrap_or(0.0);
        let mut ranked: Vec<(Uuid, u32)> = bm25
            .iter()
            .filter(|h| h.score >= best * MIN_RELATIVE_SCORE)
            .map(|h| (h.file_id, h.ordinal))
            .collect();
        if let Some(model) = &self.embedding_model {
            match vectors::rank(
                &self.store,
                &self.providers,
                owner,
                docs,
                model,
                question,
                want,
            )
            .await
            {
                Ok(v) if !v.is_empty() => ranked = vectors::fuse(&ranked, &v),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "vector retrieval failed; words only"),
            }
        }
        if ranked.is_empty() {
            // Nothing matched ("summarize this"): the start of each
            // attached document, in turn.
            let mut k = 0u32;
            while ranked.len() < want {
                let before = ranked.len();
                for d in docs.iter().filter(|d| attached.contains(&d.file_id)) {
                    if k < d.chunks {
                        ranked.push((d.file_id, k));
                    }
                }
                if ranked.len() == before {
                    break;
                }
                k += 1;
            }
        }
        let chunks = self.store.get_chunks(owner, &ranked).await?;
        let names: HashMap<Uuid, &str> =
            docs.iter().map(|d| (d.file_id, d.name.as_str())).collect();
        let mut used = 0u64;
        let mut picked: Vec<Chunk> = Vec::new();
        for c in chunks {
            let cost = estimate(&c.text) + 12;
            if used + cost > budget {
                continue;
            }
            used += cost;
            picked.push(c);
            if picked.len() >= MAX_SOURCES {
                break;
            }
        }
        // In reading order: document by document, chunk by chunk.
        let order: HashMap<Uuid, usize> = files.iter().enumerate().map(|(i, f)| (*f, i)).collect();
        picked.sort_by_key(|c| {
            (
                order.get(&c.file_id).copied().unwrap_or(usize::MAX),
                c.ordinal,
            )
        });
        let words = question_words(question);
        let passages = picked
            .into_iter()
            .map(|c| Passage {
                source: Source {
                    file_id: c.file_id,
                    name: names
                        .get(&c.file_id)
                        .copied()
                        .unwrap_or("document")
                        .to_string(),
                    chunk: Some(c.ordinal),
                    span: c.span.clone(),
                    snippet: snippet(&c.text, &words),
                    whole: false,
                },
                text: c.text,
            })
            .collect();
        Ok(render(passages))
    }

    /// The collections among `ids` that are the owner's; NotFound for any
    /// other (another user's collection is not found).
    pub async fn check_collections(&self, owner: Uuid, ids: &[Uuid]) -> AppResult<()> {
        for &id in ids {
            self.store
                .get_collection(owner, id)
                .await
                .map_err(|_| AppError::not_found("collection"))?;
        }
        Ok(())
    }

    pub async fn create_collection(
        self: &Arc<Self>,
        owner: Uuid,
        name: &str,
        description: &str,
        files: &[Uuid],
    ) -> AppResult<Collection> {
        let name = valid_name(name)?;
        let description = valid_description(description)?;
        self.check_files(owner, files).await?;
        let now = crate::clock::now();
        let mut file_ids = Vec::new();
        for f in files {
            if !file_ids.contains(f) {
                file_ids.push(*f);
            }
        }
        if file_ids.len() > MAX_COLLECTION_FILES {
            return Err(AppError::Validation(format!(
                "a collection holds at most {MAX_COLLECTION_FILES} files"
            )));
        }
        let c = Collection {
            id: Uuid::now_v7(),
            owner,
            name,
            description,
            file_ids,
            created_at: now,
            updated_at: now,
        };
        self.store.create_collection(&c).await?;
        for f in &c.file_ids {
            self.ensure_later(owner, *f);
        }
        Ok(c)
    }

    pub async fn update_collection(
        self: &Arc<Self>,
        owner: Uuid,
        id: Uuid,
        mut patch: CollectionPatch,
    ) -> AppResult<Collection> {
        patch.name = patch.name.as_deref().map(valid_name).transpose()?;
        patch.description = patch
            .description
            .as_deref()
            .map(valid_description)
            .transpose()?;
        // Ownership of the collection first: another user's is not found
        // whatever the files say.
        self.store
            .get_collection(owner, id)
            .await
            .map_err(|_| AppError::not_found("collection"))?;
        self.check_files(owner, &patch.add).await?;
        let added = patch.add.clone();
        let c = self
            .store
            .update_collection(owner, id, patch, crate::clock::now())
            .await
            .map_err(|e| match e {
                StoreError::NotFound => AppError::not_found("collection"),
                StoreError::Conflict(m) => AppError::Validation(m),
                o => o.into(),
            })?;
        for f in added {
            self.ensure_later(owner, f);
        }
        Ok(c)
    }

    /// What was read of each file of a collection: ready, failed (with
    /// the reason) or pending (not read yet).
    pub async fn describe(&self, owner: Uuid, c: &Collection) -> AppResult<Vec<DocInfo>> {
        let mut out = Vec::with_capacity(c.file_ids.len());
        for &f in &c.file_ids {
            out.push(self.document(owner, f).await?);
        }
        Ok(out)
    }

    /// What was read of one file; NotFound when the file is not the
    /// owner's.
    pub async fn document(&self, owner: Uuid, file_id: Uuid) -> AppResult<DocInfo> {
        match self.store.get_document(owner, file_id).await {
            Ok(d) => Ok(DocInfo {
                file_id,
                name: d.name,
                status: match d.status {
                    DocumentStatus::Ready => "ready",
                    DocumentStatus::Failed => "failed",
                },
                kind: Some(d.kind),
                error: d.error,
                pages: d.pages,
                chunks: d.chunks,
                tokens: d.tokens,
                truncated: d.truncated,
            }),
            Err(StoreError::NotFound) => {
                let meta = self.files.meta(owner, file_id).await?;
                Ok(DocInfo {
                    file_id,
                    name: meta.name,
                    status: "pending",
                    kind: None,
                    error: None,
                    pages: None,
                    chunks: 0,
                    tokens: 0,
                    truncated: None,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get_collection(&self, owner: Uuid, id: Uuid) -> AppResult<Collection> {
        self.store
            .get_collection(owner, id)
            .await
            .map_err(|_| AppError::not_found("collection"))
    }

    pub async fn list_collections(&self, owner: Uuid) -> AppResult<Vec<Collection>> {
        Ok(self.store.list_collections(owner).await?)
    }

    pub async fn delete_collection(&self, owner: Uuid, id: Uuid) -> AppResult<()> {
        self.store
            .delete_collection(owner, id)
            .await
            .map_err(|_| AppError::not_found("collection"))
    }

    /// Every file must be the owner's: another user's id is not found.
    async fn check_files(&self, owner: Uuid, files: &[Uuid]) -> AppResult<()> {
        for &f in files {
            let meta = self.files.meta(owner, f).await?;
            if !Self::is_document(&meta.mime, &meta.name) {
                return Err(AppError::Validation(format!(
                    "{} is not a document (images answer in a chat, not from a collection)",
                    meta.name
                )));
            }
        }
        Ok(())
    }
}

/// What was read of one file.
#[derive(Debug, Clone)]
pub struct DocInfo {
    pub file_id: Uuid,
    pub name: String,
    /// ready | failed | pending
    pub status: &'static str,
    pub kind: Option<String>,
    pub error: Option<String>,
    pub pages: Option<u32>,
    pub chunks: u32,
    pub tokens: u64,
    pub truncated: Option<String>,
}

fn valid_name(name: &str) -> AppResult<String> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 100 {
        return Err(AppError::validation("name must be 1 to 100 characters"));
    }
    Ok(n.to_string())
}

fn valid_description(d: &str) -> AppResult<String> {
    if d.chars().count() > 2000 {
        return Err(AppError::validation(
            "description must be at most 2000 characters",
        ));
    }
    Ok(d.trim().to_string())
}

/// The chat's token estimate (about four characters a token).
pub fn estimate(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

struct Passage {
    source: Source,
    text: String,
}

/// "page 3", "pages 3–4", "lines 10–42", "paragraphs 2–5 (Intro)".
pub fn location(span: &ChunkSpan) -> String {
    let range = |what: &str, a: Option<u32>, b: Option<u32>| match (a, b) {
        (Some(a), Some(b)) if a != b => Some(format!("{what}s {a}–{b}")),
        (Some(a), _) => Some(format!("{what} {a}")),
        _ => None,
    };
    let mut parts: Vec<String> = [
        range("page", span.page_start, span.page_end),
        range("line", span.line_start, span.line_end),
        range("paragraph", span.paragraph_start, span.paragraph_end),
    ]
    .into_iter()
    .flatten()
    .collect();
    if let Some(h) = &span.heading {
        parts.push(format!("under “{h}”"));
    }
    parts.join(", ")
}

fn render(passages: Vec<Passage>) -> Retrieved {
    if passages.is_empty() {
        return Retrieved::default();
    }
    let mut s = String::from(
        "Passages from the user's documents follow, numbered. Answer from them where they \
         help, and cite the ones you use by number, like [1]. If they do not contain the \
         answer, say so.\n",
    );
    let mut sources = Vec::new();
    for (i, p) in passages.into_iter().enumerate() {
        let loc = location(&p.source.span);
        let whole = if p.source.whole {
            "the whole document"
        } else {
            ""
        };
        let label = [loc.as_str(), whole]
            .into_iter()
            .filter(|x| !x.is_empty())
            .collect::<Vec<_>>()
            .join(", ");
        s.push_str(&format!("\n[{}] {}", i + 1, p.source.name));
        if !label.is_empty() {
            s.push_str(&format!(" ({label})"));
        }
        s.push_str(":\n");
        s.push_str(&p.text);
        s.push('\n');
        sources.push(p.source);
    }
    Retrieved {
        context: Some(s),
        sources,
    }
}

/// Chunks of one document joined again: each chunk repeats the end of
/// the one before (the overlap), which is dropped.
pub fn join_chunks(chunks: &[Chunk]) -> String {
    let mut out = String::new();
    for c in chunks {
        let t = c.text.as_str();
        // The longest end of `out` that starts `t` (up to 1,000 bytes).
        let max = out.len().min(t.len()).min(1000);
        let mut skip = 0;
        for k in (1..=max).rev() {
            if t.is_char_boundary(k)
                && out.is_char_boundary(out.len() - k)
                && out.ends_with(&t[..k])
            {
                skip = k;
                break;
            }
        }
        if !out.is_empty() && skip == 0 {
            out.push('\n');
        }
        out.push_str(&t[skip..]);
    }
    out
}

/// Lower-cased words of four or more letters.
fn question_words(q: &str) -> Vec<String> {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 4)
        .map(str::to_lowercase)
        .collect()
}

/// At most [`SNIPPET_CHARS`] of `text`, starting a little before the first
/// question word it contains, whitespace collapsed.
pub fn snippet(text: &str, words: &[String]) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let lower = flat.to_lowercase();
    let hit = words
        .iter()
        .filter_map(|w| lower.find(w.as_str()))
        .min()
        .filter(|_| lower.len() == flat.len());
    let chars: Vec<char> = flat.chars().collect();
    let start_char = match hit {
        Some(byte) => flat[..byte].chars().count().saturating_sub(150),
        None => 0,
    };
    let start_char = start_char.min(chars.len().saturating_sub(SNIPPET_CHARS));
    let end = (start_char + SNIPPET_CHARS).min(chars.len());
    let mut s: String = chars[start_char..end].iter().collect();
    if start_char > 0 {
        s = format!("…{s}");
    }
    if end < chars.len() {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(ordinal: u32, text: &str) -> Chunk {
        Chunk {
            file_id: Uuid::nil(),
            ordinal,
            text: text.into(),
            span: ChunkSpan::default(),
        }
    }

    #[test]
    fn joining_drops_overlaps() {
        let c = [
            chunk(0, "one two\nthree four"),
            chunk(1, "three four\nfive"),
            chunk(2, "six"),
        ];
        assert_eq!(join_chunks(&c), "one two\nthree four\nfive\nsix");
    }

    #[test]
    fn locations_read_well() {
        let span = ChunkSpan {
            page_start: Some(3),
            page_end: Some(3),
            ..Default::default()
        };
        assert_eq!(location(&span), "page 3");
        let span = ChunkSpan {
            line_start: Some(10),
            line_end: Some(42),
            ..Default::default()
        };
        assert_eq!(location(&span), "lines 10–42");
        let span = ChunkSpan {
            paragraph_start: Some(2),
            paragraph_end: Some(2),
            heading: Some("Intro".into()),
            ..Default::default()
        };
        assert_eq!(location(&span), "paragraph 2, under “Intro”");
    }

    #[test]
    fn snippets_start_near_the_question() {
        let text = format!(
            "{} the secret code is 42. {}",
            "filler ".repeat(200),
            "tail ".repeat(200)
        );
        let s = snippet(&text, &question_words("what is the secret code?"));
        assert!(s.contains("secret code is 42"), "{s}");
        assert!(s.starts_with('…') && s.ends_with('…'));
        assert!(s.chars().count() <= SNIPPET_CHARS + 2);
        assert_eq!(snippet("short", &[]), "short");
    }
}
