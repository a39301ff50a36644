//! Full-text search at scale (issue 5, "Figures").
//!
//! 1. Generates 1,000,000 messages for 1,000 users (one user with 100,000,
//!    one with 1,000, the rest spread over 998 users) with skewed lengths of
//!    20–2,000 characters, from a fixed-seed generator over an English-ish
//!    vocabulary plus code identifiers, and writes them through the store
//!    (`import_conversations`, many conversations per transaction).
//! 2. Rebuilds the index from redb (`Search::rebuild`): messages per second,
//!    set against a plain scan of the same data (the baseline), and the
//!    index size on disk against the raw text.
//! 3. Query latency (warm, `Search::search`, 20 hits) for 1-word, 3-word,
//!    phrase and prefix queries, by the user with 1,000 messages and by the
//!    one with 100,000, with words of different frequencies.
//! 4. Index lag under 500 messages/s written through the store of the real
//!    server (in-process, 127.0.0.1:0), each message with a unique token:
//!    time from the commit returning until `Search::search` finds it. Once on
//!    a fresh data directory and once on the 1M-message one; isolated writes
//!    on the idle server are the baseline.
//!
//! Run with `cargo bench --bench search` (`CONFAB_BENCH_MESSAGES=50000` and
//! `CONFAB_BENCH_LAG_SECS=5` for a quick try). On small (2-core) machines lone
//! absolute times are noise, so figures are medians and percentiles next to
//! a baseline taken in the same process. Every loop is bounded.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure};
use confab::search::{Search, SearchRequest};
use confab::store::SharedStore;
use confab::store::chat::{Conversation, Message, MessageRole, MessageStatus};
use confab::store::redb::RedbStore;
use tokio::sync::oneshot;
use uuid::Uuid;

const SEED: u64 = 0x5eed_c0f4_b5ea_2c11;
const USERS: usize = 1_000;
/// The full run; `CONFAB_BENCH_MESSAGES=50000` (say) gives a quick try,
/// with the heavy user scaled to a tenth of the total.
const TOTAL_MESSAGES: usize = 1_000_000;
const HEAVY_MESSAGES: usize = 100_000;
const LIGHT_MESSAGES: usize = 1_000;
const MIN_LEN: usize = 20;
const MAX_LEN: usize = 2_000;
/// Messages per conversation: uniform in this range (the last one of a
/// user may be shorter).
const CONV_MESSAGES: (usize, usize) = (2, 40);
const VOCAB: usize = 4_000;
const IDENTIFIERS: usize = 600;
/// Zipf–Mandelbrot offset: the top word is ~5% of all words.
const ZIPF_OFFSET: f64 = 2.7;
const IDENT_SHARE: f64 = 0.03;
const PHRASE_SHARE: f64 = 0.015;
/// Messages per `import_conversations` transaction (about 13 MB of text).
const IMPORT_BATCH: usize = 25_000;
/// 2026-01-01T00:00:00Z; the history spans the two years before.
const NOW_SECS: i64 = 1_767_225_600;
const HISTORY_SECS: i64 = 2 * 365 * 86_400;

const QUERY_WARMUP: usize = 30;
const QUERY_RUNS: usize = 300;
const QUERY_LIMIT: usize = 20;
/// The analyzer-alone baseline runs over every n-th message.
const ANALYZER_SAMPLE_EVERY: u64 = 10;
/// Cap for the one-off hit count (not timed).
const COUNT_LIMIT: usize = 200_000;

const LAG_RATE: f64 = 500.0;
/// How long the write load runs; `CONFAB_BENCH_LAG_SECS` overrides it.
const LAG_SECS: f64 = 20.0;
/// Every n-th message of the load is a lag sample.
const LAG_SAMPLE_EVERY: usize = 5;
/// The writer puts whatever is due (up to this many) in one transaction.
const LAG_MAX_BATCH: usize = 64;
const LAG_CONVERSATIONS: usize = 50;
const LAG_GIVE_UP: Duration = Duration::from_secs(30);
const LAG_POLL: Duration = Duration::from_millis(1);
/// Recheck every pending sample at least this often, even if the index
/// did not visibly change.
const LAG_RECHECK: Duration = Duration::from_millis(20);
const IDLE_PROBES: usize = 15;
const SETTLE_MAX: Duration = Duration::from_secs(120);

const GOAL_REINDEX_PER_S: f64 = 100_000.0;
const GOAL_QUERY_P99_MS: f64 = 10.0;
const GOAL_LAG_MS: f64 = 1_000.0;

// ---------------------------------------------------------------- helpers

fn env_num<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Messages in the data set (`CONFAB_BENCH_MESSAGES`, at least 10,000).
fn total_messages() -> usize {
    env_num::<usize>("CONFAB_BENCH_MESSAGES")
        .unwrap_or(TOTAL_MESSAGES)
        .max(10_000)
}

/// The heavy user's share: 100,000 of 1,000,000, a tenth of a smaller run.
fn heavy_messages() -> usize {
    HEAVY_MESSAGES.min(total_messages() / 10)
}

fn light_messages() -> usize {
    LIGHT_MESSAGES.min(total_messages() / 100)
}

/// `CONFAB_BENCH_LAG_SECS=0` skips the lag part.
fn lag_secs() -> f64 {
    match env_num::<f64>("CONFAB_BENCH_LAG_SECS").unwrap_or(LAG_SECS) {
        s if s <= 0.0 => 0.0,
        s => s.clamp(1.0, 600.0),
    }
}

/// xorshift64*: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        for chunk in b.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        b
    }
}

/// Samples ranks 0..n with p(r) ∝ 1 / (r + ZIPF_OFFSET).
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize) -> Zipf {
        let mut acc = 0.0;
        let cdf = (0..n)
            .map(|r| {
                acc += 1.0 / (r as f64 + ZIPF_OFFSET);
                acc
            })
            .collect();
        Zipf { cdf }
    }
    fn sample(&self, rng: &mut Rng) -> usize {
        let total = *self.cdf.last().expect("non-empty");
        let u = rng.unit() * total;
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
    /// Share of draws that give rank `r`.
    fn share(&self, r: usize) -> f64 {
        let prev = if r == 0 { 0.0 } else { self.cdf[r - 1] };
        (self.cdf[r] - prev) / self.cdf.last().expect("non-empty")
    }
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The 1/5/15-minute load averages: the machine is shared.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

// ----------------------------------------------------------------- corpus

/// The most frequent words, in rank order: English function words, then
/// words a chat about code uses a lot.
const COMMON: &str = "\
    the to and a of is in it you that for this i with be on not can if are as have we do or \
    but your what so at use an will from there how my was when which error file code \
    function data value server user request test should would one all need then make like \
    also just here way more some any only other new now get set by them they than into could \
    because about does see run build time type list config message result response client \
    query index cache token session stream buffer path model update change check call return \
    string number line output input version issue problem example option default field table \
    key name object array loop case thread memory disk network process command script \
    package module library method class struct trait variable parameter argument log event \
    state node map item page link image text word idea question answer thanks please sure \
    great good right wrong first last next before after still again already maybe probably \
    really very much many most well even each both same different small large fast slow \
    simple easy hard better instead without while until since where why who know think want \
    try work look find keep give take write read open close start stop send load save parse \
    handle create delete fetch store search sort filter merge split join format print debug \
    release deploy commit";

/// Two- and three-word collocations, most frequent first.
const PHRASES: &[&str] = &[
    "pull request",
    "error message",
    "unit test",
    "race condition",
    "memory leak",
    "stack trace",
    "edge case",
    "config file",
    "null pointer",
    "type mismatch",
    "dead code",
    "hot path",
    "connection pool",
    "rate limit",
    "exit code",
    "environment variable",
    "dependency injection",
    "garbage collector",
    "integration test suite",
    "regular expression",
    "binary search",
    "hash map",
    "linked list",
    "thread pool",
    "event loop",
    "file descriptor",
    "happy path",
    "breaking change",
    "code review",
    "load balancer",
    "message queue",
    "primary key",
    "foreign key constraint",
    "time zone",
    "character encoding",
    "virtual machine",
    "cold start",
    "feature flag",
    "technical debt",
    "single source of truth",
];

const ONSETS: &[&str] = &[
    "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "br",
    "cr", "dr", "fl", "gr", "pl", "pr", "st", "tr", "ch", "sh", "th", "sp", "cl",
];
const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "ai", "ea", "ou", "io", "ee"];
const CODAS: &[&str] = &[
    "", "", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ck", "ng", "x",
];

fn cap(w: &str) -> String {
    let mut c = w.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

struct Corpus {
    words: Vec<String>,
    word_zipf: Zipf,
    idents: Vec<String>,
    ident_zipf: Zipf,
    phrase_zipf: Zipf,
}

impl Corpus {
    fn new(rng: &mut Rng) -> Corpus {
        let mut words: Vec<String> = COMMON.split_whitespace().map(str::to_string).collect();
        let mut seen: std::collections::HashSet<String> = words.iter().cloned().collect();
        // English-ish made-up words for the long tail; bounded attempts.
        for _ in 0..VOCAB * 50 {
            if words.len() >= VOCAB {
                break;
            }
            let syllables = 1 + rng.below(3) + usize::from(rng.chance(0.3));
            let mut w = String::new();
            for _ in 0..syllables {
                w.push_str(ONSETS[rng.below(ONSETS.len())]);
                w.push_str(VOWELS[rng.below(VOWELS.len())]);
            }
            w.push_str(CODAS[rng.below(CODAS.len())]);
            if w.len() >= 4 && seen.insert(w.clone()) {
                words.push(w);
            }
        }
        assert_eq!(words.len(), VOCAB, "vocabulary generation is bounded");
        let mut idents = Vec::with_capacity(IDENTIFIERS);
        let pick = |rng: &mut Rng| words[30 + rng.below(1_500)].clone();
        for i in 0..IDENTIFIERS {
            let (a, b, c) = (pick(rng), pick(rng), pick(rng));
            let id = match i % 6 {
                0 => format!("{a}_{b}"),
                1 => format!("{a}_{b}_{c}"),
                2 => format!("{a}{}{}", cap(&b), cap(&c)),
                3 => format!("{}{}", cap(&a), cap(&b)),
                4 => {
                    let ext = ["rs", "py", "ts", "go"][rng.below(4)];
                    format!("src/{a}/{b}_{c}.{ext}")
                }
                _ => format!("{a}::{b}::{}", cap(&c)),
            };
            idents.push(id);
        }
        Corpus {
            word_zipf: Zipf::new(words.len()),
            words,
            ident_zipf: Zipf::new(IDENTIFIERS),
            idents,
            phrase_zipf: Zipf::new(PHRASES.len()),
        }
    }

    fn word(&self, rng: &mut Rng) -> &str {
        &self.words[self.word_zipf.sample(rng)]
    }

    /// A message of about `target` bytes (ASCII), within MIN_LEN..=MAX_LEN.
    fn text(&self, rng: &mut Rng, target: usize, code: bool, out: &mut String) {
        out.clear();
        let mut in_sentence = 0;
        let mut sentence_len = rng.range(6, 18);
        let code_at = if code { target / 3 } else { usize::MAX };
        let mut code_done = false;
        for _ in 0..MAX_LEN {
            if out.len() >= target {
                break;
            }
            if !code_done && out.len() >= code_at && in_sentence == 0 {
                code_done = true;
                let mut block = String::from("\n```\n");
                for _ in 0..rng.range(2, 6) {
                    let a = &self.idents[self.ident_zipf.sample(rng)];
                    let b = self.word(rng);
                    let line = match rng.below(3) {
                        0 => format!("let {b} = {a}({});\n", self.word(rng)),
                        1 => format!("fn {}_{b}() -> Result<{}> {{}}\n", self.word(rng), cap(b)),
                        _ => format!("use {a};\n"),
                    };
                    block.push_str(&line);
                }
                block.push_str("```\n");
                if out.len() + block.len() <= target {
                    out.push_str(&block);
                    continue;
                }
            }
            let r = rng.unit();
            let (tok, plain): (&str, bool) = if r < IDENT_SHARE {
                (&self.idents[self.ident_zipf.sample(rng)], false)
            } else if r < IDENT_SHARE + PHRASE_SHARE {
                (PHRASES[self.phrase_zipf.sample(rng)], true)
            } else {
                (self.word(rng), true)
            };
            if out.len() + tok.len() + 2 > target && out.len() >= MIN_LEN {
                break;
            }
            if !out.is_empty() && !out.ends_with('\n') {
                out.push(' ');
            }
            if in_sentence == 0 && plain {
                out.push_str(&cap(tok));
            } else {
                out.push_str(tok);
            }
            in_sentence += 1;
            if in_sentence >= sentence_len {
                out.push(if rng.chance(0.1) { '?' } else { '.' });
                in_sentence = 0;
                sentence_len = rng.range(6, 18);
                if target > 400 && rng.chance(0.12) {
                    out.push('\n');
                }
            } else if rng.chance(0.06) {
                out.push(',');
            }
        }
        if in_sentence > 0 && out.len() < target {
            out.push('.');
        }
        if out.len() > MAX_LEN {
            out.truncate(MAX_LEN);
        }
    }

    /// Skewed lengths: log-uniform shapes, the user's short, the assistant's
    /// longer. 20 * 100^x spans 20..2000.
    fn length(rng: &mut Rng, role: MessageRole) -> usize {
        let k = if role == MessageRole::User { 1.6 } else { 0.6 };
        let x = rng.unit().powf(k);
        ((MIN_LEN as f64) * 100f64.powf(x)).round() as usize
    }

    fn title(&self, rng: &mut Rng) -> String {
        let n = rng.range(2, 6);
        let mut t = String::new();
        for i in 0..n {
            let w = &self.words[20 + rng.below(1_500)];
            if i == 0 {
                t.push_str(&cap(w));
            } else {
                t.push(' ');
                t.push_str(w);
            }
        }
        t
    }
}

fn v7(rng: &mut Rng, ms: u64) -> Uuid {
    uuid::Builder::from_unix_timestamp_millis(ms, &rng.bytes::<10>()).into_uuid()
}

fn v4(rng: &mut Rng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.bytes::<16>()).into_uuid()
}

fn message(
    id: Uuid,
    conversation_id: Uuid,
    parent_id: Option<Uuid>,
    role: MessageRole,
    content: String,
    created_at: i64,
) -> Message {
    Message {
        id,
        conversation_id,
        parent_id,
        role,
        content,
        model: (role == MessageRole::Assistant).then(|| "llama3.1:8b".to_string()),
        provider: (role == MessageRole::Assistant).then(|| "ollama".to_string()),
        status: MessageStatus::Complete,
        usage: None,
        created_at,
        duration_ms: None,
        finish_reason: None,
        error: None,
        sources: Vec::new(),
        attachments: Vec::new(),
    }
}

fn conversation(id: Uuid, user_id: Uuid, title: String, created_at: i64) -> Conversation {
    Conversation {
        id,
        user_id,
        title,
        title_auto: false,
        model: Some("llama3.1:8b".into()),
        provider: Some("ollama".into()),
        system_prompt: None,
        created_at,
        updated_at_ms: created_at as u64 * 1000,
        pinned: false,
        archived: false,
        current_leaf: None,
        preset_id: None,
        params: Default::default(),
        collections: Vec::new(),
    }
}

// ------------------------------------------------------------- generation

struct Generated {
    heavy: Uuid,
    light: Uuid,
    messages: u64,
    conversations: u64,
    text_bytes: u64,
    title_bytes: u64,
    lengths: Vec<f64>,
    elapsed: Duration,
    text_gen: Duration,
}

fn generate(store: &SharedStore, corpus: &Corpus, rng: &mut Rng) -> anyhow::Result<Generated> {
    let started = Instant::now();
    let users: Vec<Uuid> = (0..USERS).map(|_| v4(rng)).collect();
    // User 0 is the heavy one, user 1 the light one; the rest share the
    // remainder evenly.
    let (total, heavy, light) = (total_messages(), heavy_messages(), light_messages());
    let rest = total - heavy - light;
    let others = USERS - 2;
    let quota = |u: usize| match u {
        0 => heavy,
        1 => light,
        _ => rest / others + usize::from(u - 2 < rest % others),
    };
    let mut g = Generated {
        heavy: users[0],
        light: users[1],
        messages: 0,
        conversations: 0,
        text_bytes: 0,
        title_bytes: 0,
        lengths: Vec::with_capacity(total),
        elapsed: Duration::ZERO,
        text_gen: Duration::ZERO,
    };
    let mut batch: Vec<(Conversation, Vec<Message>)> = Vec::new();
    let mut in_batch = 0;
    let mut buf = String::new();
    for (u, &user) in users.iter().enumerate() {
        let mut left = quota(u);
        while left > 0 {
            let n = rng.range(CONV_MESSAGES.0, CONV_MESSAGES.1).min(left);
            left -= n;
            let start = NOW_SECS - HISTORY_SECS + rng.below(HISTORY_SECS as usize - 86_400) as i64;
            let cid = v7(rng, start as u64 * 1000);
            let title = corpus.title(rng);
            g.title_bytes += title.len() as u64;
            let mut c = conversation(cid, user, title, start);
            let mut msgs = Vec::with_capacity(n);
            let mut parent = None;
            let t = Instant::now();
            for j in 0..n {
                let role = if j % 2 == 0 {
                    MessageRole::User
                } else {
                    MessageRole::Assistant
                };
                let len = Corpus::length(rng, role);
                let code = role == MessageRole::Assistant && len > 600 && rng.chance(0.25);
                corpus.text(rng, len, code, &mut buf);
                g.text_bytes += buf.len() as u64;
                g.lengths.push(buf.len() as f64);
                let at = start + 45 * j as i64;
                let id = v7(rng, at as u64 * 1000 + j as u64);
                msgs.push(message(id, cid, parent, role, buf.clone(), at));
                parent = Some(id);
            }
            g.text_gen += t.elapsed();
            c.current_leaf = parent;
            c.updated_at_ms = (start + 45 * n as i64) as u64 * 1000;
            g.messages += n as u64;
            g.conversations += 1;
            in_batch += n;
            batch.push((c, msgs));
            if in_batch >= IMPORT_BATCH {
                wait(store.import_conversations(&batch)).map_err(|e| anyhow!("import: {e}"))?;
                batch.clear();
                in_batch = 0;
            }
        }
    }
    if !batch.is_empty() {
        wait(store.import_conversations(&batch)).map_err(|e| anyhow!("import: {e}"))?;
    }
    g.elapsed = started.elapsed();
    Ok(g)
}

/// Runs one store or index call to completion from the bench's plain
/// threads (the store is async; its redb writes go to this runtime's
/// blocking pool).
fn wait<T, E: std::fmt::Display>(
    f: impl std::future::Future<Output = Result<T, E>>,
) -> anyhow::Result<T> {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let rt = RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    });
    rt.block_on(f).map_err(|e| anyhow!("{e}"))
}

/// CPU time (user + system) of this process so far, all threads.
fn cpu_secs() -> f64 {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF and a valid pointer.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return f64::NAN;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn file_bytes(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn segments(index_dir: &Path) -> usize {
    tantivy::Index::open_in_dir(index_dir)
        .and_then(|i| i.searchable_segment_ids())
        .map(|s| s.len())
        .unwrap_or(0)
}

// ---------------------------------------------------------------- queries

struct QueryRow {
    label: String,
    /// Variants of the same kind, cycled through.
    queries: Vec<String>,
}

fn query_rows(corpus: &Corpus) -> Vec<QueryRow> {
    let w = |r: usize| corpus.words[r].clone();
    let words = |ranks: std::ops::Range<usize>| ranks.map(w).collect::<Vec<_>>();
    let share = |r: usize| corpus.word_zipf.share(r) * 100.0;
    let mut rows = vec![
        QueryRow {
            label: format!("1 word, top ({:.1}% of words)", share(0)),
            queries: words(0..5),
        },
        QueryRow {
            label: format!("1 word, common ({:.2}%)", share(45)),
            queries: words(40..50),
        },
        QueryRow {
            label: format!("1 word, mid ({:.3}%)", share(500)),
            queries: words(500..510),
        },
        QueryRow {
            label: format!("1 word, rare ({:.4}%)", share(3500)),
            queries: words(3500..3510),
        },
        QueryRow {
            label: "3 words, common".into(),
            queries: (0..8)
                .map(|i| format!("{} {} {}", w(40 + i), w(50 + i), w(60 + i)))
                .collect(),
        },
        QueryRow {
            label: "3 words, common+mid+rare".into(),
            queries: (0..8)
                .map(|i| format!("{} {} {}", w(40 + i), w(500 + i), w(3000 + i)))
                .collect(),
        },
        QueryRow {
            label: "3 words, top".into(),
            queries: (0..5)
                .map(|i| format!("{} {} {}", w(i), w(i + 1), w(i + 2)))
                .collect(),
        },
        QueryRow {
            label: "phrase, common collocation".into(),
            queries: PHRASES[0..5].iter().map(|p| format!("\"{p}\"")).collect(),
        },
        QueryRow {
            label: "phrase, rare collocation".into(),
            queries: PHRASES[30..35].iter().map(|p| format!("\"{p}\"")).collect(),
        },
        QueryRow {
            label: "phrase, top words (\"of the\")".into(),
            queries: ["of the", "in the", "to the", "and the", "is a"]
                .iter()
                .map(|p| format!("\"{p}\""))
                .collect(),
        },
        QueryRow {
            label: "prefix, 2 chars".into(),
            queries: ["co*", "st*", "re*", "pa*", "th*"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        },
        QueryRow {
            label: "prefix, 4 chars of mid words".into(),
            queries: (500..505)
                .map(|r| format!("{}*", &corpus.words[r][..4]))
                .collect(),
        },
        QueryRow {
            label: "identifier (snake/camel/path)".into(),
            queries: corpus.idents[0..6].to_vec(),
        },
    ];
    rows.retain(|r| !r.queries.is_empty());
    rows
}

struct Latency {
    p50: f64,
    p99: f64,
    max: f64,
    /// Hits of the first variant (capped at COUNT_LIMIT).
    hits: usize,
}

fn run_queries(search: &Search, user: Uuid, row: &QueryRow) -> anyhow::Result<Latency> {
    let req = |q: &str, limit: usize| SearchRequest {
        user_id: user,
        q: q.to_string(),
        limit,
        ..Default::default()
    };
    let hits = search
        .search(&req(&row.queries[0], COUNT_LIMIT))
        .map_err(|e| anyhow!("{}: {e}", row.queries[0]))?
        .hits
        .len();
    for i in 0..QUERY_WARMUP {
        search
            .search(&req(&row.queries[i % row.queries.len()], QUERY_LIMIT))
            .map_err(|e| anyhow!("{e}"))?;
    }
    let mut times = Vec::with_capacity(QUERY_RUNS);
    for i in 0..QUERY_RUNS {
        let r = req(&row.queries[i % row.queries.len()], QUERY_LIMIT);
        let t = Instant::now();
        let res = search.search(&r).map_err(|e| anyhow!("{e}"))?;
        times.push(ms(t.elapsed()));
        std::hint::black_box(res.hits.len());
    }
    let times = sorted(times);
    Ok(Latency {
        p50: pct(&times, 0.5),
        p99: pct(&times, 0.99),
        max: pct(&times, 1.0),
        hits,
    })
}

// -------------------------------------------------------------------- lag

struct Server {
    rt: tokio::runtime::Runtime,
    state: confab::app::AppState,
    stop: Option<oneshot::Sender<()>>,
    serve: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

fn start_server(data_dir: &Path) -> anyhow::Result<Server> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-server")
        .build()?;
    let mut cfg = confab::config::Config {
        data_dir: data_dir.to_path_buf(),
        ..Default::default()
    };
    cfg.detect_local_providers = false;
    let store = RedbStore::open_shared(&cfg.data_dir).map_err(|e| anyhow!("{e}"))?;
    let (state, stop, serve) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = confab::app::AppState::new(cfg, store, addr).await?;
        let (tx, rx) = oneshot::channel::<()>();
        let serve = tokio::spawn(confab::app::serve(listener, state.clone(), async move {
            let _ = rx.await;
        }));
        anyhow::Ok((state, tx, serve))
    })?;
    Ok(Server {
        rt,
        state,
        stop: Some(stop),
        serve: Some(serve),
    })
}

impl Server {
    fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.serve.take() {
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(30), h).await });
        }
        for _ in 0..250 {
            if Arc::strong_count(&self.state.0) == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(self.state);
        self.rt.shutdown_timeout(Duration::from_secs(10));
    }
}

struct Sample {
    token: String,
    user: Uuid,
    committed: Instant,
}

struct LagStats {
    idle: Vec<f64>,
    lags: Vec<f64>,
    missed: usize,
    sent: usize,
    elapsed: Duration,
    transactions: usize,
    commit_ms: Vec<f64>,
    max_behind_ms: f64,
    docs_before: u64,
}

fn token(run: &str, i: usize) -> String {
    format!("lagtok{run}{i:06}")
}

/// Waits until `token` is found; returns the time since `since`.
fn wait_found(search: &Search, user: Uuid, tok: &str, since: Instant) -> anyhow::Result<f64> {
    let req = SearchRequest {
        user_id: user,
        q: tok.to_string(),
        limit: 1,
        ..Default::default()
    };
    let deadline = since + LAG_GIVE_UP;
    loop {
        let t = Instant::now();
        if !search
            .search(&req)
            .map_err(|e| anyhow!("{e}"))?
            .hits
            .is_empty()
        {
            return Ok(ms(t - since));
        }
        ensure!(t < deadline, "{tok} was not found within {LAG_GIVE_UP:?}");
        std::thread::sleep(LAG_POLL);
    }
}

fn lag_run(data_dir: &Path, run: &str, corpus: &Corpus, rng: &mut Rng) -> anyhow::Result<LagStats> {
    let server = start_server(data_dir)?;
    let store = server.state.store.clone();
    let search = server.state.search.clone();
    // Let start-up work (a pending rebuild, a leftover outbox) finish.
    let settle = Instant::now();
    while search.is_partial() || wait(store.outbox_len())? > 0 {
        ensure!(settle.elapsed() < SETTLE_MAX, "the indexer did not settle");
        std::thread::sleep(Duration::from_millis(50));
    }
    let docs_before = search.num_docs();
    let now = NOW_SECS;
    let mut convs = Vec::new();
    for _ in 0..LAG_CONVERSATIONS {
        let user = v4(rng);
        let id = Uuid::now_v7();
        wait(store.create_conversation(&conversation(id, user, corpus.title(rng), now)))?;
        convs.push((user, id));
    }
    let mut buf = String::new();
    let mut make = |rng: &mut Rng, conv: Uuid, tok: &str| {
        let role = if rng.chance(0.5) {
            MessageRole::User
        } else {
            MessageRole::Assistant
        };
        let len = Corpus::length(rng, role);
        corpus.text(rng, len, false, &mut buf);
        let content = format!("{tok} {buf}");
        let at = time::OffsetDateTime::now_utc().unix_timestamp();
        message(Uuid::now_v7(), conv, None, role, content, at)
    };

    // Baseline: isolated writes on the idle server, at random phases of
    // the indexer's poll.
    let mut idle = Vec::new();
    for i in 0..IDLE_PROBES {
        std::thread::sleep(Duration::from_millis(300 + rng.below(200) as u64));
        let (user, conv) = convs[i % convs.len()];
        let tok = token(&format!("{run}idle"), i);
        let m = make(rng, conv, &tok);
        wait(store.insert_messages(user, conv, std::slice::from_ref(&m)))?;
        let committed = Instant::now();
        idle.push(wait_found(&search, user, &tok, committed)?);
    }

    // The load: message i is due at i / LAG_RATE; whatever is due goes
    // into one transaction (redb commits one at a time, each with an
    // fsync, so this is how a server under this load commits too).
    let total = (LAG_RATE * lag_secs()) as usize;
    let (tx, rx) = mpsc::channel::<Sample>();
    let (writer, prober) = std::thread::scope(|s| {
        let store = &store;
        let convs = &convs;
        let writer = s.spawn(
            move || -> anyhow::Result<(Duration, usize, Vec<f64>, f64)> {
                let t0 = Instant::now();
                let mut next = 0usize;
                let mut transactions = 0usize;
                let mut commit_ms = Vec::new();
                let mut max_behind = 0f64;
                let hard_stop = Duration::from_secs_f64(lag_secs() * 4.0);
                while next < total && t0.elapsed() < hard_stop {
                    let now = t0.elapsed().as_secs_f64();
                    let due = ((now * LAG_RATE) as usize + 1).min(total);
                    if due <= next {
                        let at = next as f64 / LAG_RATE;
                        std::thread::sleep(Duration::from_secs_f64((at - now).max(0.0)));
                        continue;
                    }
                    max_behind = max_behind.max((now - next as f64 / LAG_RATE) * 1e3);
                    let end = due.min(next + LAG_MAX_BATCH);
                    let (user, conv) = convs[transactions % convs.len()];
                    let msgs: Vec<Message> = (next..end)
                        .map(|i| make(rng, conv, &token(run, i)))
                        .collect();
                    let t = Instant::now();
                    wait(store.insert_messages(user, conv, &msgs))?;
                    let committed = Instant::now();
                    commit_ms.push(ms(committed - t));
                    transactions += 1;
                    for i in (next..end).filter(|i| i % LAG_SAMPLE_EVERY == 0) {
                        let _ = tx.send(Sample {
                            token: token(run, i),
                            user,
                            committed,
                        });
                    }
                    next = end;
                }
                ensure!(next == total, "the writer fell behind: {next} of {total}");
                drop(tx);
                Ok((t0.elapsed(), transactions, commit_ms, max_behind))
            },
        );
        let search = &search;
        let prober = s.spawn(move || -> anyhow::Result<(Vec<f64>, usize, usize)> {
            let mut pending: Vec<Sample> = Vec::new();
            let mut lags = Vec::new();
            let mut missed = 0;
            let mut sent = 0;
            let mut writer_done = false;
            let mut last_docs = u64::MAX;
            let mut last_check = Instant::now();
            let hard_stop =
                Instant::now() + Duration::from_secs_f64(lag_secs() * 4.0) + LAG_GIVE_UP;
            while Instant::now() < hard_stop {
                let mut fresh = false;
                loop {
                    match rx.try_recv() {
                        Ok(s) => {
                            pending.push(s);
                            sent += 1;
                            fresh = true;
                        }
                        Err(mpsc::TryRecvError::Empty) => break,
                        Err(mpsc::TryRecvError::Disconnected) => {
                            writer_done = true;
                            break;
                        }
                    }
                }
                if writer_done && pending.is_empty() {
                    break;
                }
                let docs = search.num_docs();
                if fresh || docs != last_docs || last_check.elapsed() >= LAG_RECHECK {
                    last_docs = docs;
                    last_check = Instant::now();
                    let mut i = 0;
                    while i < pending.len() {
                        let p = &pending[i];
                        let req = SearchRequest {
                            user_id: p.user,
                            q: p.token.clone(),
                            limit: 1,
                            ..Default::default()
                        };
                        let t = Instant::now();
                        let found = !search
                            .search(&req)
                            .map_err(|e| anyhow!("{e}"))?
                            .hits
                            .is_empty();
                        if found {
                            lags.push(ms(t - p.committed));
                            pending.swap_remove(i);
                        } else if t - p.committed > LAG_GIVE_UP {
                            missed += 1;
                            pending.swap_remove(i);
                        } else {
                            i += 1;
                        }
                    }
                }
                std::thread::sleep(LAG_POLL);
            }
            missed += pending.len();
            Ok((lags, missed, sent))
        });
        (writer.join(), prober.join())
    });
    let (elapsed, transactions, commit_ms, max_behind_ms) =
        writer.map_err(|_| anyhow!("writer panicked"))??;
    let (lags, missed, sent) = prober.map_err(|_| anyhow!("prober panicked"))??;
    drop(store);
    drop(search);
    server.stop();
    Ok(LagStats {
        idle,
        lags,
        missed,
        sent,
        elapsed,
        transactions,
        commit_ms,
        max_behind_ms,
        docs_before,
    })
}

// ------------------------------------------------------------------- main

fn main() -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let profile = if cfg!(debug_assertions) {
        "debug-assertions ON (not a release build: figures are not representative)"
    } else {
        "release (cargo bench profile)"
    };
    println!(
        "confab search bench — {cores} cores, build: {profile}, load average {}",
        load()
    );
    println!();

    let mut rng = Rng::new(SEED);
    let corpus = Corpus::new(&mut rng);
    let big = tempfile::tempdir()?;

    // 1. Generate.
    let store = RedbStore::open_shared(big.path()).map_err(|e| anyhow!("{e}"))?;
    let g = generate(&store, &corpus, &mut rng)?;
    let lengths = sorted(g.lengths.clone());
    let redb_bytes = file_bytes(&big.path().join("confab.redb"));
    let raw = g.text_bytes + g.title_bytes;
    println!("1. Data set");
    println!(
        "   {} messages in {} conversations of {USERS} users (heavy user {}, light user {})",
        g.messages,
        g.conversations,
        heavy_messages(),
        light_messages()
    );
    println!(
        "   message length (chars): mean {:.0}, p10 {:.0}, p50 {:.0}, p90 {:.0}, p99 {:.0}, min {:.0}, max {:.0}",
        g.text_bytes as f64 / g.messages as f64,
        pct(&lengths, 0.1),
        pct(&lengths, 0.5),
        pct(&lengths, 0.9),
        pct(&lengths, 0.99),
        pct(&lengths, 0.0),
        pct(&lengths, 1.0),
    );
    println!(
        "   raw text {:.1} MB (messages {:.1} MB + titles {:.1} MB); redb file {:.1} MB",
        mb(raw),
        mb(g.text_bytes),
        mb(g.title_bytes),
        mb(redb_bytes)
    );
    println!(
        "   generation {:.1} s ({:.1} s making text, the rest JSON + redb writes of {IMPORT_BATCH}-message transactions with their outbox ops)",
        g.elapsed.as_secs_f64(),
        g.text_gen.as_secs_f64()
    );
    println!();

    // 2. Rebuild. Baselines: a plain scan of redb, and the analyzer alone
    // over a sample of the messages.
    let t = Instant::now();
    let cpu = cpu_secs();
    let mut scanned = 0u64;
    let mut scanned_bytes = 0u64;
    let mut sample: Vec<String> = Vec::new();
    let mut after = None;
    loop {
        let page = wait(store.searchable_page(after, 256))?;
        for m in page.conversations.iter().flat_map(|(_, msgs)| msgs) {
            if scanned.is_multiple_of(ANALYZER_SAMPLE_EVERY) {
                sample.push(m.content.clone());
            }
            scanned += 1;
            scanned_bytes += m.content.len() as u64;
        }
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let scan = t.elapsed();
    let scan_cpu = cpu_secs() - cpu;
    ensure!(scanned == g.messages, "scan saw {scanned} messages");
    ensure!(scanned_bytes == g.text_bytes, "scan saw other text");
    let t = Instant::now();
    let cpu = cpu_secs();
    let mut tokens = 0u64;
    let mut analyzer = confab::search::tokenizer::analyzer();
    for text in &sample {
        let mut s = analyzer.token_stream(text);
        while s.advance() {
            tokens += 1;
        }
    }
    let analyze = t.elapsed();
    let analyze_cpu = cpu_secs() - cpu;
    let analyzed = sample.len() as f64;
    drop(sample);

    let index_dir = big.path().join("index");
    let search = Search::open(big.path()).map_err(|e| anyhow!("{e}"))?;
    ensure!(search.is_partial(), "a new index needs a rebuild");
    let t = Instant::now();
    let cpu = cpu_secs();
    let mut fed: Option<Duration> = None;
    let total = g.messages;
    let done = wait(search.rebuild(&store, |d, _| {
        if d == total && fed.is_none() {
            fed = Some(t.elapsed());
        }
    }))
    .map_err(|e| anyhow!("rebuild: {e}"))?;
    let rebuild = t.elapsed();
    let rebuild_cpu = cpu_secs() - cpu;
    ensure!(done == g.messages, "rebuild indexed {done}");
    let pre_merge_bytes = search.disk_bytes();
    let pre_merge_segments = segments(&index_dir);
    let t = Instant::now();
    search.shutdown();
    let merge_tail = t.elapsed();
    drop(search);
    let search = Search::open(big.path()).map_err(|e| anyhow!("{e}"))?;
    ensure!(
        !search.is_partial(),
        "the rebuilt index reopens as complete"
    );
    let index_bytes = search.disk_bytes();
    let segs = segments(&index_dir);
    let docs = search.num_docs();
    let reindex_rate = done as f64 / rebuild.as_secs_f64();
    let scan_rate = scanned as f64 / scan.as_secs_f64();
    println!(
        "2. Rebuild (Search::rebuild over the whole store); load average {}",
        load()
    );
    println!(
        "   baseline: plain scan of redb (decode every message, no indexing) {:.2} s = {:.0} messages/s; {:.1} us CPU per message",
        scan.as_secs_f64(),
        scan_rate,
        scan_cpu / scanned as f64 * 1e6
    );
    println!(
        "   baseline: the analyzer alone (tokenize + split identifiers + lowercase + stem), one thread, every {ANALYZER_SAMPLE_EVERY}th message: {:.1} us CPU per message ({:.1} us wall), {:.0} tokens per message",
        analyze_cpu / analyzed * 1e6,
        analyze.as_secs_f64() / analyzed * 1e6,
        tokens as f64 / analyzed
    );
    println!(
        "   rebuild {:.2} s = {:.0} messages/s ({:.1}x the scan time); feeding documents {:.2} s, final commit + outbox ack {:.2} s",
        rebuild.as_secs_f64(),
        reindex_rate,
        rebuild.as_secs_f64() / scan.as_secs_f64(),
        fed.unwrap_or(rebuild).as_secs_f64(),
        (rebuild - fed.unwrap_or(rebuild)).as_secs_f64()
    );
    println!(
        "   rebuild CPU {:.1} s = {:.1} us per message ({:.1}x the analyzer alone), {:.2} of {cores} cores busy on average; with all {cores} cores to itself at most {:.0} messages/s",
        rebuild_cpu,
        rebuild_cpu / done as f64 * 1e6,
        (rebuild_cpu / done as f64) / (analyze_cpu / analyzed),
        rebuild_cpu / rebuild.as_secs_f64(),
        done as f64 / (rebuild_cpu / cores.max(1) as f64)
    );
    println!(
        "   right after: {:.1} MB in {pre_merge_segments} segments; background merges finished {:.2} s later",
        mb(pre_merge_bytes),
        merge_tail.as_secs_f64()
    );
    println!(
        "   index {:.1} MB in {segs} segments, {docs} documents (messages + titles) = {:.2}x the raw text ({:.1} MB); {:.2}x the redb file",
        mb(index_bytes),
        index_bytes as f64 / raw as f64,
        mb(raw),
        index_bytes as f64 / redb_bytes as f64
    );
    println!();

    // 3. Queries.
    println!(
        "3. Query latency, Search::search, {QUERY_LIMIT} hits, newest first; {QUERY_RUNS} runs per row after {QUERY_WARMUP} warm-up runs, cycling over the row's variants; load average {}",
        load()
    );
    println!(
        "   {:<36} {:>8} {:>7} {:>7} {:>7} | {:>8} {:>7} {:>7} {:>7}",
        "query", "hits", "p50 ms", "p99 ms", "max ms", "hits", "p50 ms", "p99 ms", "max ms"
    );
    println!(
        "   {:<36} {:^32} | {:^32}",
        "",
        format!("user with {} messages", light_messages()),
        format!("user with {} messages", heavy_messages())
    );
    let rows = query_rows(&corpus);
    let mut results = Vec::new();
    for row in &rows {
        let light = run_queries(&search, g.light, row)?;
        let heavy = run_queries(&search, g.heavy, row)?;
        let hits = |l: &Latency| {
            if l.hits >= COUNT_LIMIT {
                format!("{COUNT_LIMIT}+")
            } else {
                l.hits.to_string()
            }
        };
        println!(
            "   {:<36} {:>8} {:>7.2} {:>7.2} {:>7.2} | {:>8} {:>7.2} {:>7.2} {:>7.2}",
            row.label,
            hits(&light),
            light.p50,
            light.p99,
            light.max,
            hits(&heavy),
            heavy.p50,
            heavy.p99,
            heavy.max
        );
        results.push((row, light, heavy));
    }
    println!("   (hits: matches of the row's first variant: {})", {
        rows.iter()
            .map(|r| r.queries[0].as_str())
            .collect::<Vec<_>>()
            .join(" | ")
    });
    let cheapest = results
        .iter()
        .map(|(_, l, _)| l.p50)
        .fold(f64::INFINITY, f64::min);
    println!();
    drop(search);
    drop(store);

    // 4. Lag.
    println!(
        "4. Index lag at {LAG_RATE:.0} messages/s for {:.0} s through the store of the in-process server; every {LAG_SAMPLE_EVERY}th message sampled; load average {}",
        lag_secs(),
        load()
    );
    let mut lag = Vec::new();
    if lag_secs() > 0.0 {
        let fresh = tempfile::tempdir()?;
        lag.push((
            "fresh".to_string(),
            lag_run(fresh.path(), "f", &corpus, &mut rng)?,
        ));
        drop(fresh);
        lag.push((
            format!("{}-message", g.messages),
            lag_run(big.path(), "b", &corpus, &mut rng)?,
        ));
    } else {
        println!("   skipped (CONFAB_BENCH_LAG_SECS=0)");
    }
    for (name, l) in &lag {
        let name = format!("{name} data dir");
        let idle = sorted(l.idle.clone());
        let lags = sorted(l.lags.clone());
        let commits = sorted(l.commit_ms.clone());
        let total = LAG_RATE * lag_secs();
        println!(
            "   {name} ({} documents before): wrote {total:.0} messages in {:.1} s = {:.0}/s, {} transactions ({:.1} messages each), commit p50 {:.1} ms p99 {:.1} ms, at most {:.0} ms behind schedule",
            l.docs_before,
            l.elapsed.as_secs_f64(),
            total / l.elapsed.as_secs_f64(),
            l.transactions,
            total / l.transactions as f64,
            pct(&commits, 0.5),
            pct(&commits, 0.99),
            l.max_behind_ms
        );
        println!(
            "     baseline, {} isolated writes on the idle server: lag p50 {:.0} ms, max {:.0} ms",
            idle.len(),
            pct(&idle, 0.5),
            pct(&idle, 1.0)
        );
        println!(
            "     under load, {} samples ({} not found within {LAG_GIVE_UP:?}): lag p50 {:.0} ms ({:.2}x baseline), p99 {:.0} ms, max {:.0} ms",
            l.sent,
            l.missed,
            pct(&lags, 0.5),
            pct(&lags, 0.5) / pct(&idle, 0.5),
            pct(&lags, 0.99),
            pct(&lags, 1.0)
        );
    }
    drop(big);
    println!();

    // Summary.
    println!("Summary (goals from issue 5); load average {}", load());
    println!("   {:<58} {:>14} {:>12}  ", "figure", "measured", "goal");
    let line = |name: &str, value: String, goal: String, ok: bool| {
        println!("   {name:<58} {value:>14} {goal:>12}  {}", verdict(ok));
    };
    line(
        "reindex throughput (messages/s)",
        format!("{reindex_rate:.0}"),
        format!(">= {GOAL_REINDEX_PER_S:.0}"),
        reindex_rate >= GOAL_REINDEX_PER_S,
    );
    println!(
        "   {:<58} {:>14}",
        "index size / raw text",
        format!("{:.2}x", index_bytes as f64 / raw as f64)
    );
    let who_light = format!("{}-message user", light_messages());
    let who_heavy = format!("{}-message user", heavy_messages());
    for (who, pick) in [(&who_light, 0usize), (&who_heavy, 1usize)] {
        for kind in ["1 word", "3 words", "phrase", "prefix", "identifier"] {
            let p99 = results
                .iter()
                .filter(|(r, _, _)| r.label.starts_with(kind))
                .map(|(_, l, h)| if pick == 0 { l.p99 } else { h.p99 })
                .fold(0.0, f64::max);
            let name = format!("query p99, {kind} (worst row), {who}");
            line(
                &name,
                format!("{p99:.2} ms"),
                format!("<= {GOAL_QUERY_P99_MS:.0} ms"),
                p99 <= GOAL_QUERY_P99_MS,
            );
        }
    }
    println!(
        "   {:<58} {:>14}",
        format!("query p50 baseline: cheapest row, {who_light}"),
        format!("{cheapest:.3} ms")
    );
    for (name, l) in &lag {
        let lags = sorted(l.lags.clone());
        let p99 = pct(&lags, 0.99);
        let max = pct(&lags, 1.0);
        line(
            &format!("index lag p50 / p99 / max at 500 msg/s, {name} data dir"),
            format!("{:.0}/{p99:.0}/{max:.0} ms", pct(&lags, 0.5)),
            format!("<= {GOAL_LAG_MS:.0} ms"),
            max <= GOAL_LAG_MS && l.missed == 0,
        );
    }
    Ok(())
}
