//! Documents answered with sources (issue 17, "Benchmarks").
//!
//! 1. Reading and indexing throughput: PDFs of 40 pages made with `lopdf`
//!    (about 2,000 characters a page), read with the real extractor
//!    (`extract_now`), chunked, stored through the store (`put_document`,
//!    with its outbox op) and indexed by the real indexer (`Search::drain`):
//!    pages per second for reading alone and for the whole path.
//! 2. Retrieval over 10,000 documents of one user (about 40,000 chunks),
//!    with 10,000 documents of two other users in the same index: p50/p99
//!    of `Search::retrieve` (BM25 with the user's own statistics) scoped to
//!    all 10,000 files, unscoped, and of `Knowledge::for_turn` with the 10,000
//!    documents in one collection (store reads and snippets included).
//!
//! Run with `cargo bench --bench knowledge` (`CONFAB_BENCH_DOCS=1000` for a
//! quick try). Every loop is bounded.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::anyhow;
use async_trait::async_trait;
use confab::error::{AppError, AppResult};
use confab::knowledge::extract::{self, DocKind, Limits, samples};
use confab::knowledge::{FileMeta, FileSource, Knowledge, chunk};
use confab::search::Search;
use confab::store::SharedStore;
use confab::store::knowledge::{Chunk, ChunkSpan, Collection, DocumentRecord, DocumentStatus};
use confab::store::redb::RedbStore;
use uuid::Uuid;

const SEED: u64 = 0x0dc5_2e1e_7a11_9b3d;
const PDFS: usize = 20;
const PAGES: usize = 40;
const QUERIES: usize = 300;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A vocabulary of made-up words; picks are skewed (a few words are
/// common, most are rare), as in real text.
struct Words(Vec<String>);
impl Words {
    fn new(rng: &mut Rng) -> Words {
        let syl = [
            "ka", "lo", "mi", "ra", "te", "su", "no", "vi", "del", "tor", "an", "es",
        ];
        let mut v = Vec::new();
        for _ in 0..5000 {
            let n = 2 + rng.below(3);
            let w: String = (0..n).map(|_| syl[rng.below(syl.len())]).collect();
            v.push(w);
        }
        Words(v)
    }
    fn pick(&self, rng: &mut Rng) -> &str {
        // Skew: the square of a uniform number favours low indices.
        let u = rng.below(10_000) as f64 / 10_000.0;
        &self.0[((u * u) * self.0.len() as f64) as usize]
    }
    fn text(&self, rng: &mut Rng, words: usize) -> String {
        let mut s = String::new();
        for i in 0..words {
            if i > 0 {
                s.push(if i % 14 == 0 { '\n' } else { ' ' });
            }
            s.push_str(self.pick(rng));
        }
        s
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn report(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "   {name:<58} p50 {:7.2} ms   p99 {:7.2} ms   max {:7.2} ms",
        pct(&ms, 0.5),
        pct(&ms, 0.99),
        ms[ms.len() - 1]
    );
}

struct NoFiles;
#[async_trait]
impl FileSource for NoFiles {
    async fn meta(&self, _: Uuid, _: Uuid) -> AppResult<FileMeta> {
        Err(AppError::not_found("file"))
    }
    async fn read(&self, _: Uuid, _: Uuid) -> AppResult<(FileMeta, Vec<u8>)> {
        Err(AppError::not_found("file"))
    }
}

fn record(owner: Uuid, file_id: Uuid, chunks: &[Chunk]) -> DocumentRecord {
    DocumentRecord {
        file_id,
        owner,
        name: format!("doc-{}.txt", &file_id.simple().to_string()[24..]),
        kind: "text".into(),
        status: DocumentStatus::Ready,
        error: None,
        pages: None,
        chars: chunks.iter().map(|c| c.text.len() as u64).sum(),
        tokens: chunks.iter().map(|c| c.text.len() as u64 / 4).sum(),
        chunks: chunks.len() as u32,
        truncated: None,
        embedding_model: None,
        created_at: 1_767_225_600,
    }
}

/// `docs` documents of `owner`, 2–6 chunks of about 300 words, stored 32 at
/// a time concurrently (group commit).
async fn fill(
    store: &SharedStore,
    words: &Words,
    rng: &Mutex<Rng>,
    owner: Uuid,
    docs: usize,
) -> Vec<Uuid> {
    let mut ids = Vec::with_capacity(docs);
    let mut pending = Vec::new();
    for _ in 0..docs {
        let f = Uuid::now_v7();
        ids.push(f);
        let chunks: Vec<Chunk> = {
            let mut r = rng.lock().unwrap();
            let n = 2 + r.below(5);
            (0..n)
                .map(|i| Chunk {
                    file_id: f,
                    ordinal: i as u32,
                    text: words.text(&mut r, 300),
                    span: ChunkSpan {
                        line_start: Some(i as u32 * 20 + 1),
                        line_end: Some(i as u32 * 20 + 20),
                        ..Default::default()
                    },
                })
                .collect()
        };
        let st = store.clone();
        pending.push(tokio::spawn(async move {
            st.put_document(&record(owner, f, &chunks), &chunks).await
        }));
        if pending.len() >= 32 {
            for p in pending.drain(..) {
                p.await.unwrap().unwrap();
            }
        }
    }
    for p in pending {
        p.await.unwrap().unwrap();
    }
    ids
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let profile = if cfg!(debug_assertions) {
        "debug-assertions ON (not representative)"
    } else {
        "release (cargo bench profile)"
    };
    println!("confab knowledge bench — {cores} cores, build: {profile}\n");
    let docs: usize = std::env::var("CONFAB_BENCH_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let mut rng = Rng(SEED);
    let words = Words::new(&mut rng);
    let dir = tempfile::tempdir()?;
    let store = RedbStore::open_shared(dir.path()).map_err(|e| anyhow!("{e}"))?;
    let search = Search::open(dir.path()).map_err(|e| anyhow!("{e}"))?;
    search
        .rebuild_knowledge(&store)
        .await
        .map_err(|e| anyhow!("{e}"))?;

    // 1. Reading and indexing.
    let pdfs: Vec<Vec<u8>> = (0..PDFS)
        .map(|_| {
            let pages: Vec<String> = (0..PAGES).map(|_| words.text(&mut rng, 330)).collect();
            samples::pdf(&pages)
        })
        .collect();
    let limits = Limits::default();
    let started = Instant::now();
    let mut read = Vec::new();
    for p in &pdfs {
        read.push(extract::extract_now(p, DocKind::Pdf, &limits).map_err(|e| anyhow!("{e}"))?);
    }
    let reading = started.elapsed();
    let owner = Uuid::now_v7();
    let t_store = Instant::now();
    let mut chunks_total = 0;
    for ex in &read {
        let f = Uuid::now_v7();
        let chunks: Vec<Chunk> = chunk::chunk(ex)
            .into_iter()
            .enumerate()
            .map(|(i, p)| Chunk {
                file_id: f,
                ordinal: i as u32,
                text: p.text,
                span: p.span,
            })
            .collect();
        chunks_total += chunks.len();
        store
            .put_document(&record(owner, f, &chunks), &chunks)
            .await
            .map_err(|e| anyhow!("{e}"))?;
    }
    search.drain(&store).await.map_err(|e| anyhow!("{e}"))?;
    let indexing = t_store.elapsed();
    let pages = (PDFS * PAGES) as f64;
    let bytes: usize = pdfs.iter().map(Vec::len).sum();
    println!(
        "1. Reading and indexing {PDFS} PDFs of {PAGES} pages ({:.1} MB, {chunks_total} chunks)",
        bytes as f64 / 1e6
    );
    println!(
        "   reading (extract_now):            {:8.0} pages/s  ({:.2} s)",
        pages / reading.as_secs_f64(),
        reading.as_secs_f64()
    );
    println!(
        "   chunk + store + index:            {:8.0} pages/s  ({:.2} s)",
        pages / indexing.as_secs_f64(),
        indexing.as_secs_f64()
    );
    println!(
        "   whole path:                       {:8.0} pages/s",
        pages / (reading + indexing).as_secs_f64()
    );

    // 2. Retrieval over `docs` documents of one user.
    let rng = Mutex::new(rng);
    let user = Uuid::now_v7();
    let t = Instant::now();
    let ids = fill(&store, &words, &rng, user, docs).await;
    for _ in 0..2 {
        fill(&store, &words, &rng, Uuid::now_v7(), docs / 2).await;
    }
    let filled = t.elapsed();
    let t = Instant::now();
    search.drain(&store).await.map_err(|e| anyhow!("{e}"))?;
    let drained = t.elapsed();
    println!(
        "\n2. Retrieval: {docs} documents of one user, {} in the index ({} chunks); stored in {:.1} s, indexed in {:.1} s",
        docs * 2,
        search.knowledge.num_docs(),
        filled.as_secs_f64(),
        drained.as_secs_f64()
    );
    let questions: Vec<String> = {
        let mut r = rng.lock().unwrap();
        (0..QUERIES)
            .map(|_| words.text(&mut r, 6).replace('\n', " "))
            .collect()
    };
    // Warm up.
    for q in questions.iter().take(20) {
        search
            .retrieve(user, ids.clone(), q.clone(), 16)
            .await
            .map_err(|e| anyhow!("{e}"))?;
    }
    let mut scoped = Vec::new();
    let mut unscoped = Vec::new();
    let mut hits = 0usize;
    for q in &questions {
        let t = Instant::now();
        let h = search
            .retrieve(user, ids.clone(), q.clone(), 16)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        scoped.push(t.elapsed().as_secs_f64() * 1000.0);
        hits += h.len();
        let t = Instant::now();
        search
            .retrieve(user, Vec::new(), q.clone(), 16)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        unscoped.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    report(
        &format!("Search::retrieve, scoped to the {docs} files, 16 chunks"),
        scoped,
    );
    report(
        "Search::retrieve, all the user's documents, 16 chunks",
        unscoped,
    );
    println!(
        "   (average {:.1} hits per question)",
        hits as f64 / QUERIES as f64
    );

    // The whole turn path: a collection of every document.
    let k = Knowledge::new(
        store.clone(),
        search.clone(),
        Arc::new(confab::providers::registry::Registry::new(
            confab::providers::default_client(),
            Default::default(),
        )),
        Arc::new(NoFiles),
        None,
    );
    let c = Collection {
        id: Uuid::now_v7(),
        owner: user,
        name: "all".into(),
        description: String::new(),
        file_ids: ids.clone(),
        created_at: 0,
        updated_at: 0,
    };
    store
        .create_collection(&c)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let mut turn = Vec::new();
    let mut sources = 0usize;
    for q in questions.iter().take(100) {
        let t = Instant::now();
        let r = k
            .for_turn(user, q, &[], &[c.id], 6000)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        turn.push(t.elapsed().as_secs_f64() * 1000.0);
        sources += r.sources.len();
    }
    report(
        &format!("Knowledge::for_turn, a collection of {docs}, 6,000 tokens"),
        turn,
    );
    println!(
        "   (average {:.1} passages per turn)",
        sources as f64 / 100.0
    );
    search.shutdown();
    Ok(())
}
