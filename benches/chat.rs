//! Chat streaming under load.
//!
//! (a) Time to first token (TTFT) and the gaps between deltas, through
//!     confab's `POST /api/chat/stream` and directly against the same fake
//!     upstream (OpenAI SSE), with new streams started on a fixed schedule
//!     (open loop) at several rates up to 1,000 per second, plus a
//!     one-at-a-time baseline. confab runs twice: with its data directory on
//!     the real disk (every stored turn waits for an fsync) and on tmpfs
//!     (same code, no fsync cost), to tell storage from CPU.
//! (b) Resident memory of the real `confab` binary holding 10,000 open
//!     streams against an upstream that answers very slowly.
//!
//! Run with `cargo bench --bench chat` (`CONFAB_BENCH_PARTS=transport,latency,memory`
//! picks parts; all by default; for a profile of one load,
//! `CONFAB_BENCH_RATES=750` runs only those open-loop rates and
//! `CONFAB_BENCH_TMPFS=0` leaves out the tmpfs server). On small (2-core) machines lone
//! absolute times are noise, so every figure is a percentile and every
//! confab figure is set against the direct path measured in the same process.
//! Client, server and fake upstream each get their own tokio runtime but
//! share the machine's cores. Everything talks to 127.0.0.1 and every loop
//! is bounded.

#[path = "../tests/it/common_upstream/mod.rs"]
mod common_upstream;

use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use bytes::Bytes;
use common_upstream::FakeUpstream;
use confab::app::AppState;
use futures::StreamExt;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, SET_COOKIE};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;

const PASSWORD: &str = "bench-password-1234";
const MODEL: &str = "fake-model";
const UPSTREAM_KEY: &str = "sk-bench-0000000000";
/// Ten tokens: the fake streams one word (with its space) per token.
const REPLY: &str = "one two three four five six seven eight nine ten";
const REPLY_TOKENS: usize = 10;
/// The fake upstream's pause before each token in (a).
const TOKEN_DELAY: Duration = Duration::from_millis(2);
const PROMPT: &str = "Say something short.";
/// `limits.max_concurrent_generations` for the bench's one user.
const UNCAPPED: u32 = 1_000_000;

const WARMUP_SEQUENTIAL: usize = 30;
const WARMUP_RATE: f64 = 200.0;
const WARMUP_SECS: f64 = 1.0;
const SEQUENTIAL: usize = 300;
/// Open-loop rates, new streams per second, lowest first so a backlog
/// never spills into a lighter run.
const RATES: &[f64] = &[50.0, 200.0, 500.0, 750.0, 1000.0];
const LOAD_SECS: f64 = 5.0;
/// A stream that has not ended by then counts as an error.
const STREAM_TIMEOUT: Duration = Duration::from_secs(180);
/// Longest wait for confab to finish background work between runs.
const QUIESCE_MAX: Duration = Duration::from_secs(240);
const ADDED_P99_GOAL_MS: f64 = 0.5;
const FSYNC_PROBES: usize = 50;

/// (b): open streams at which memory is read.
const HOLD_STEPS: &[usize] = &[1_000, 5_000, 10_000];
/// (b): the model streams are held on: its first token comes at once, then
/// the upstream pauses before each next one, so every stream is mid-answer.
const HOLD_MODEL: &str = "fake-model+first-now";
/// (b): the fake upstream's pause before each token: streams stay open.
const HOLD_TOKEN_DELAY: Duration = Duration::from_secs(20);
const HOLD_REPLY_WORDS: usize = 40;
/// (b): streams being opened at once (each stores a turn first).
const OPEN_CONCURRENCY: usize = 64;
/// (b): longest time to open all streams.
const OPEN_MAX: Duration = Duration::from_secs(600);
const SETTLE: Duration = Duration::from_secs(3);
const RSS_GOAL_MB: f64 = 300.0;
/// File descriptors wanted: (b) needs two per stream in the bench process
/// (client side + the fake upstream's side) and two in the server.
const NOFILE_WANTED: u64 = 65_536;
/// Streams served by the minimal SSE servers of the transport check.
const TRANSPORT_STREAMS: usize = 200;

/// Set in the environment of the child process that serves the fake
/// upstream for (b).
const UPSTREAM_ROLE_ENV: &str = "CHAT_BENCH_FAKE_UPSTREAM";

fn main() -> anyhow::Result<()> {
    let nofile = raise_nofile(NOFILE_WANTED);
    if std::env::var_os(UPSTREAM_ROLE_ENV).is_some() {
        return upstream_child();
    }
    let upstream_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("bench-upstream")
        .build()?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("bench-client")
        .build()?;

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let profile = if cfg!(debug_assertions) {
        "debug-assertions ON (not a release build: figures are not representative)"
    } else {
        "release (cargo bench profile)"
    };
    println!("confab chat bench — {cores} cores, build: {profile}, open files limit {nofile}");
    println!(
        "client, confab and the fake upstream all share these {cores} cores: every figure includes their contention"
    );
    println!(
        "load average (1, 5, 15 min) at start: {} (anything else running on the machine skews every figure)",
        loadavg()
    );
    println!();

    // `CONFAB_BENCH_PARTS=latency` (say) runs only the named parts.
    let parts = std::env::var("CONFAB_BENCH_PARTS").unwrap_or_default();
    let part = |name: &str| parts.is_empty() || parts.split(',').any(|p| p.trim() == name);
    if part("transport") {
        transport(&upstream_rt, &client_rt)?;
        println!();
    }
    if part("latency") {
        latency(&upstream_rt, &client_rt, nofile)?;
        println!();
    }
    if part("memory") {
        memory(&client_rt, nofile)?;
        println!();
    }
    println!("load average (1, 5, 15 min) at end: {}", loadavg());
    upstream_rt.shutdown_background();
    client_rt.shutdown_background();
    Ok(())
}

/// The machine's 1, 5 and 15 minute load averages.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "?".to_string(),
        |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

/// Raises this process's open-files limit (Linux: `rlim_t` is `u64`) (children inherit it); returns
/// the soft limit in force afterwards.
fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur >= want {
            return lim.rlim_cur;
        }
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: lim.rlim_max.max(want),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            return want;
        }
        // Not allowed to raise the hard limit: take all it allows.
        let soft = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &soft) == 0 {
            return lim.rlim_max;
        }
        lim.rlim_cur
    }
}

// ---------------------------------------------------------------------------
// Shared helpers

fn setup_token(setup_url: &str) -> anyhow::Result<String> {
    let (_, t) = setup_url
        .split_once("token=")
        .context("setup URL has no token")?;
    Ok(t.split('&').next().unwrap_or(t).to_string())
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(4096)
        .pool_idle_timeout(Duration::from_secs(5))
        .build()?)
}

/// `name=value` of the session cookie in a response.
fn session_cookie(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|kv| kv.starts_with("confab_session="))
        .map(str::to_string)
}

/// Runs setup and creates an API key; returns the key.
async fn setup_and_key(c: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<String> {
    let r = c
        .post(format!("{base}/api/setup"))
        .json(&json!({"token": token, "username": "admin", "password": PASSWORD}))
        .send()
        .await?;
    ensure!(r.status() == 201, "setup answered {}", r.status());
    let cookie = session_cookie(&r).context("setup set no session cookie")?;
    let body: Value = r.json().await?;
    let csrf = body["csrf_token"]
        .as_str()
        .context("setup returned no csrf_token")?
        .to_string();
    let r = c
        .post(format!("{base}/api/keys"))
        .header(COOKIE, cookie)
        .header("X-CSRF-Token", csrf)
        .json(&json!({"name": "bench"}))
        .send()
        .await?;
    let status = r.status();
    let body: Value = r.json().await?;
    ensure!(
        status == 201,
        "creating an API key answered {status}: {body}"
    );
    Ok(body["key"]
        .as_str()
        .context("no key in the answer")?
        .to_string())
}

/// Waits (bounded) until `/api/models` offers [`MODEL`].
async fn wait_for_model(c: &reqwest::Client, base: &str, key: &str) -> anyhow::Result<()> {
    wait_for(c, base, key, MODEL).await
}

async fn wait_for(c: &reqwest::Client, base: &str, key: &str, model: &str) -> anyhow::Result<()> {
    for _ in 0..100 {
        let r = c
            .get(format!("{base}/api/models"))
            .header(AUTHORIZATION, format!("Bearer {key}"))
            .send()
            .await?;
        let body: Value = r.json().await?;
        let offered = body["items"]
            .as_array()
            .is_some_and(|a| a.iter().any(|m| m["id"] == model));
        if offered {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{model} was not offered by /api/models within 10 s")
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[derive(Clone, Copy)]
struct Stats {
    n: usize,
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
}

impl Stats {
    fn of(mut v: Vec<Duration>) -> Option<Stats> {
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        // Nearest-rank percentile.
        let pct = |p: f64| {
            let rank = (p / 100.0 * v.len() as f64).ceil() as usize;
            v[rank.clamp(1, v.len()) - 1]
        };
        Some(Stats {
            n: v.len(),
            p50: pct(50.0),
            p90: pct(90.0),
            p99: pct(99.0),
            max: v[v.len() - 1],
        })
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ---------------------------------------------------------------------------
// (a) Latency

/// One server-sent event.
struct SseEvent {
    event: String,
    data: String,
}

/// Splits a byte stream into events (LF or CRLF line ends).
#[derive(Default)]
struct SseParser {
    buf: Vec<u8>,
}

impl SseParser {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) {
        self.buf
            .extend(chunk.iter().copied().filter(|&b| b != b'\r'));
        while let Some(pos) = find(&self.buf, b"\n\n") {
            let block: Vec<u8> = self.buf.drain(..pos + 2).collect();
            let text = String::from_utf8_lossy(&block[..pos]);
            let mut ev = SseEvent {
                event: "message".into(),
                data: String::new(),
            };
            let mut has_data = false;
            for line in text.split('\n') {
                if let Some(v) = line.strip_prefix("event:") {
                    ev.event = v.trim_start().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    if has_data {
                        ev.data.push('\n');
                    }
                    ev.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    has_data = true;
                }
            }
            if has_data {
                out.push(ev);
            }
        }
    }
}

enum Item {
    Delta(String),
    End,
    Other,
}

/// The upstream's own wire format: OpenAI chat completion chunks.
fn openai_item(ev: &SseEvent) -> anyhow::Result<Item> {
    if ev.data == "[DONE]" {
        return Ok(Item::End);
    }
    let v: Value = serde_json::from_str(&ev.data)?;
    if let Some(e) = v.get("error") {
        bail!("upstream error: {e}");
    }
    Ok(match v["choices"][0]["delta"]["content"].as_str() {
        Some(t) if !t.is_empty() => Item::Delta(t.to_string()),
        _ => Item::Other,
    })
}

/// confab's events: meta, delta, usage, done | error.
fn confab_item(ev: &SseEvent) -> anyhow::Result<Item> {
    Ok(match ev.event.as_str() {
        "delta" => {
            let v: Value = serde_json::from_str(&ev.data)?;
            Item::Delta(
                v["text"]
                    .as_str()
                    .context("delta without text")?
                    .to_string(),
            )
        }
        "done" => Item::End,
        "error" => bail!("error event: {}", ev.data),
        _ => Item::Other,
    })
}

/// One stream's timings.
struct Sample {
    ttft: Duration,
    gaps: Vec<Duration>,
}

/// Sends the request and reads the whole stream, time-stamping each delta
/// as the chunk holding it arrives.
async fn one_stream(
    req: reqwest::RequestBuilder,
    classify: fn(&SseEvent) -> anyhow::Result<Item>,
) -> anyhow::Result<Sample> {
    let t0 = Instant::now();
    let resp = req.send().await?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        bail!("answered {status}: {body}");
    }
    let mut body = resp.bytes_stream();
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    let mut stamps = Vec::with_capacity(REPLY_TOKENS + 2);
    let mut text = String::new();
    let mut ended = false;
    // Read to the end of the body so the connection goes back to the pool.
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        let now = Instant::now();
        parser.push(&chunk, &mut events);
        for ev in events.drain(..) {
            match classify(&ev)? {
                Item::Delta(t) => {
                    stamps.push(now);
                    text.push_str(&t);
                }
                Item::End => ended = true,
                Item::Other => {}
            }
        }
    }
    ensure!(ended, "the stream ended without its final event");
    ensure!(text == REPLY, "wrong text {text:?}");
    let ttft = stamps.first().context("no delta")?.duration_since(t0);
    let gaps = stamps.windows(2).map(|w| w[1] - w[0]).collect();
    Ok(Sample { ttft, gaps })
}

/// Where streams go: the fake upstream itself, or a confab server.
#[derive(Clone)]
struct Target {
    label: &'static str,
    client: reqwest::Client,
    url: String,
    auth: String,
    body: Bytes,
    classify: fn(&SseEvent) -> anyhow::Result<Item>,
    /// The server behind it, for waiting out its background work.
    state: Option<AppState>,
}

impl Target {
    fn stream(&self) -> impl Future<Output = anyhow::Result<Sample>> + Send + 'static {
        let req = self
            .client
            .post(&self.url)
            .header(AUTHORIZATION, &self.auth)
            .header(CONTENT_TYPE, "application/json")
            .body(self.body.clone());
        one_stream(req, self.classify)
    }
}

/// The outcome of one run of streams.
struct Run {
    label: &'static str,
    target_rate: Option<f64>,
    launched: usize,
    samples: Vec<Sample>,
    errors: usize,
    first_error: Option<String>,
    /// From the first start to the last start.
    launch_wall: Duration,
    /// From the first start to the last end.
    wall: Duration,
    max_in_flight: usize,
    /// Starts skipped because too many streams were in flight.
    shed: usize,
    start_lag: Option<Stats>,
    /// TTFTs of the streams started in the schedule's first second and in
    /// its last: a path that falls behind builds a queue, and the later
    /// streams wait longer than the first ones.
    first_second: Vec<Duration>,
    last_second: Vec<Duration>,
}

impl Run {
    fn ttft(&self) -> Option<Stats> {
        Stats::of(self.samples.iter().map(|s| s.ttft).collect())
    }
    fn gaps(&self) -> Option<Stats> {
        Stats::of(
            self.samples
                .iter()
                .flat_map(|s| s.gaps.iter().copied())
                .collect(),
        )
    }
    fn started_rate(&self) -> f64 {
        if self.launched < 2 {
            return 0.0;
        }
        (self.launched - 1) as f64 / self.launch_wall.as_secs_f64()
    }
    fn done_rate(&self) -> f64 {
        self.samples.len() as f64 / self.wall.as_secs_f64()
    }
    /// Median TTFT of the schedule's first second and of its last.
    fn drift(&self) -> Option<(Duration, Duration)> {
        let p50 = |v: &[Duration]| Stats::of(v.to_vec()).map(|s| s.p50);
        Some((p50(&self.first_second)?, p50(&self.last_second)?))
    }
    /// A queue grew during the run: the last second's median TTFT is more
    /// than twice the first second's (and 1 ms more).
    fn falling_behind(&self) -> bool {
        self.drift()
            .is_some_and(|(first, last)| last > first * 2 + Duration::from_millis(1))
    }
    /// Whether the path kept up with the schedule.
    fn kept_up(&self) -> bool {
        match self.target_rate {
            None => self.errors == 0,
            Some(r) => {
                self.errors == 0
                    && self.shed == 0
                    && self.started_rate() >= 0.95 * r
                    && self.done_rate() >= 0.9 * r
                    && !self.falling_behind()
            }
        }
    }
}

/// Streams one after another.
async fn sequential(t: &Target, n: usize) -> Run {
    let t0 = Instant::now();
    let mut run = Run {
        label: t.label,
        target_rate: None,
        launched: n,
        samples: Vec::with_capacity(n),
        errors: 0,
        first_error: None,
        launch_wall: Duration::ZERO,
        wall: Duration::ZERO,
        max_in_flight: 1,
        shed: 0,
        start_lag: None,
        first_second: Vec::new(),
        last_second: Vec::new(),
    };
    for _ in 0..n {
        match tokio::time::timeout(STREAM_TIMEOUT, t.stream()).await {
            Ok(Ok(s)) => run.samples.push(s),
            Ok(Err(e)) => {
                run.errors += 1;
                run.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
            Err(_) => {
                run.errors += 1;
                run.first_error
                    .get_or_insert_with(|| format!("no end within {STREAM_TIMEOUT:?}"));
            }
        }
    }
    run.launch_wall = t0.elapsed();
    run.wall = run.launch_wall;
    run
}

/// Starts a new stream every 1/`rate` s for `secs`, whatever the earlier
/// ones are doing (open loop), then waits for all of them (bounded by
/// [`STREAM_TIMEOUT`] each). A start is skipped (shed) while `cap` streams
/// are in flight: each costs up to four descriptors in this process, whose
/// open-files limit may not be raisable.
async fn open_loop(t: &Target, rate: f64, secs: f64, cap: usize) -> Run {
    let n = (rate * secs).round() as usize;
    let period = Duration::from_secs_f64(1.0 / rate);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut max_in_flight = 0;
    let mut lags = Vec::with_capacity(n);
    let mut set = JoinSet::new();
    let t0 = Instant::now();
    let mut last_start = t0;
    let mut shed = 0;
    for i in 0..n {
        let due = t0 + period.mul_f64(i as f64);
        if Instant::now() < due {
            tokio::time::sleep_until(due.into()).await;
        }
        last_start = Instant::now();
        lags.push(last_start.saturating_duration_since(due));
        if in_flight.load(Ordering::Relaxed) >= cap {
            shed += 1;
            continue;
        }
        let now_in_flight = in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        max_in_flight = max_in_flight.max(now_in_flight);
        let fut = t.stream();
        let in_flight = in_flight.clone();
        let at = due.duration_since(t0);
        set.spawn(async move {
            let r = tokio::time::timeout(STREAM_TIMEOUT, fut).await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
            let r = r.unwrap_or_else(|_| Err(anyhow!("no end within {STREAM_TIMEOUT:?}")));
            (r, Instant::now(), at)
        });
    }
    let mut run = Run {
        label: t.label,
        target_rate: Some(rate),
        launched: n,
        samples: Vec::with_capacity(n),
        errors: 0,
        first_error: None,
        launch_wall: last_start.duration_since(t0),
        wall: Duration::ZERO,
        max_in_flight,
        shed,
        start_lag: Stats::of(lags),
        first_second: Vec::new(),
        last_second: Vec::new(),
    };
    let schedule = Duration::from_secs_f64(secs);
    let second = Duration::from_secs(1);
    let mut last_end = t0;
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((r, ended, at)) => {
                last_end = last_end.max(ended);
                match r {
                    Ok(s) => {
                        if at < second {
                            run.first_second.push(s.ttft);
                        } else if at + second >= schedule {
                            run.last_second.push(s.ttft);
                        }
                        run.samples.push(s)
                    }
                    Err(e) => {
                        run.errors += 1;
                        run.first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
            }
            Err(e) => {
                run.errors += 1;
                run.first_error.get_or_insert_with(|| format!("task: {e}"));
            }
        }
    }
    run.wall = last_end.duration_since(t0);
    run
}

/// Waits until a confab server has no running answer and its background
/// work (titles, which ask the upstream again) has stopped reaching the
/// upstream; then forgets the upstream's request log.
async fn quiesce(t: &Target, up: &FakeUpstream) {
    if let Some(state) = &t.state {
        let deadline = Instant::now() + QUIESCE_MAX;
        let mut last = usize::MAX;
        loop {
            let running = state.generations.running();
            let seen = up.chat_requests().len();
            if running == 0 && seen == last {
                break;
            }
            if Instant::now() > deadline {
                println!(
                    "    (warning: {} still busy after {QUIESCE_MAX:?}: {running} answers running)",
                    t.label
                );
                break;
            }
            last = seen;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    up.clear_requests();
}

/// A confab server on the current runtime with one OpenAI-compatible
/// provider pointing at the fake upstream.
async fn start_server(
    data_dir: &Path,
    upstream_base: &str,
) -> anyhow::Result<(
    String,
    String,
    AppState,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
)> {
    let mut cfg = confab::config::Config {
        data_dir: data_dir.to_path_buf(),
        detect_local_providers: false,
        ..Default::default()
    };
    cfg.auth.login_per_ip_per_minute = 1_000_000;
    cfg.auth.login_burst = 1_000_000;
    // One bench user starts thousands of answers: no rate limit, no cap on
    // running answers (the governance defaults would refuse all but a few).
    cfg.limits.enabled = false;
    cfg.limits.max_concurrent_generations = UNCAPPED;
    // Thousands of streams from one loopback address: no connection cap.
    cfg.http.max_connections = 1_000_000;
    cfg.http.max_connections_per_ip = 1_000_000;
    let mut entry = confab::config::ProviderEntry::new(
        confab::providers::ProviderKind::Openai,
        "fake",
        upstream_base,
    );
    entry.api_key = Some(confab::config::Secret(UPSTREAM_KEY.into()));
    entry.models = Some(vec![MODEL.into()]);
    cfg.providers = vec![entry];
    let store =
        confab::store::redb::RedbStore::open_shared(&cfg.data_dir).map_err(|e| anyhow!("{e}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let state = AppState::new(cfg, store, addr).await?;
    let setup_url = state.setup_url().context("a fresh data dir needs setup")?;
    let token = setup_token(&setup_url)?;
    let (tx, rx) = oneshot::channel::<()>();
    let serve = tokio::spawn(confab::app::serve(listener, state.clone(), async move {
        let _ = rx.await;
    }));
    Ok((format!("http://{addr}"), token, state, tx, serve))
}

/// The filesystem type holding `path`, from /proc/self/mounts.
fn fs_type(path: &Path) -> String {
    let Ok(path) = path.canonicalize() else {
        return "?".into();
    };
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return "?".into();
    };
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, at, kind) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(at).then(|| (at.len(), kind.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "?".into(), |(_, k)| k)
}

/// p50/p99 of a 4 KiB write + fsync in `dir`: what one durable commit
/// costs at least.
fn fsync_probe(dir: &Path) -> anyhow::Result<Option<Stats>> {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path)?;
    let block = [7u8; 4096];
    let mut v = Vec::with_capacity(FSYNC_PROBES);
    for _ in 0..FSYNC_PROBES {
        let t = Instant::now();
        f.write_all(&block)?;
        f.sync_all()?;
        v.push(t.elapsed());
    }
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(Stats::of(v))
}

fn latency(
    upstream_rt: &tokio::runtime::Runtime,
    client_rt: &tokio::runtime::Runtime,
    nofile: u64,
) -> anyhow::Result<()> {
    // Client, confab's two sides and the fake upstream: four descriptors
    // per stream in flight, and as many again for connections an earlier
    // run left idle in confab's upstream pool (kept 90 s) and the client's.
    let cap = (nofile.saturating_sub(2_000) / 9) as usize;
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-server")
        .build()?;
    let up = upstream_rt.block_on(async { FakeUpstream::start().await });
    up.set_reply(REPLY);
    up.set_token_delay(TOKEN_DELAY);

    let disk = tempfile::tempdir()?;
    let shm = Path::new("/dev/shm");
    let tmpfs = if shm.is_dir() && std::env::var("CONFAB_BENCH_TMPFS").as_deref() != Ok("0") {
        Some(tempfile::tempdir_in(shm)?)
    } else {
        None
    };
    let disk_fsync = fsync_probe(disk.path())?;
    let tmpfs_fsync = match &tmpfs {
        Some(d) => fsync_probe(d.path())?,
        None => None,
    };

    let mut servers = Vec::new();
    let mut targets = Vec::new();
    let c = client_rt.block_on(async { client() })?;
    targets.push(Target {
        label: "direct",
        client: c,
        url: format!("{}/chat/completions", up.openai_base()),
        auth: format!("Bearer {UPSTREAM_KEY}"),
        body: Bytes::from(
            json!({"model": MODEL, "messages": [{"role": "user", "content": PROMPT}],
                "stream": true, "stream_options": {"include_usage": true}})
            .to_string(),
        ),
        classify: openai_item,
        state: None,
    });
    let dirs: Vec<(&'static str, &Path)> = std::iter::once(("confab (disk)", disk.path()))
        .chain(tmpfs.as_ref().map(|d| ("confab (tmpfs)", d.path())))
        .collect();
    for (label, dir) in dirs {
        let (base, token, state, stop, serve) =
            server_rt.block_on(start_server(dir, &up.openai_base()))?;
        servers.push((stop, serve));
        let c = client_rt.block_on(async { client() })?;
        let key = client_rt.block_on(async {
            let key = setup_and_key(&c, &base, &token).await?;
            wait_for_model(&c, &base, &key).await?;
            anyhow::Ok(key)
        })?;
        targets.push(Target {
            label,
            client: c,
            url: format!("{base}/api/chat/stream"),
            auth: format!("Bearer {key}"),
            // A new conversation each time, naming the model as the web app does.
            body: Bytes::from(json!({"content": PROMPT, "model": MODEL}).to_string()),
            classify: confab_item,
            state: Some(state),
        });
    }

    println!("(a) Streaming latency: time to first delta (TTFT) and gaps between deltas, in ms");
    println!(
        "    each stream: a {REPLY_TOKENS}-token reply, the fake upstream pausing {} ms before each token (OpenAI SSE)",
        ms(TOKEN_DELAY)
    );
    println!(
        "    direct = reqwest → fake upstream /v1/chat/completions; confab = POST /api/chat/stream (API key, new conversation) → confab → fake upstream"
    );
    println!(
        "    confab runs in this process on its own runtime; the fake upstream has 1 worker thread, the client 2"
    );
    let fs_line = |label: &str, dir: &Path, s: Option<Stats>| {
        if let Some(s) = s {
            println!(
                "    {label}: data dir on {}, 4 KiB write+fsync p50 {:.3} ms, p99 {:.3} ms",
                fs_type(dir),
                ms(s.p50),
                ms(s.p99)
            );
        }
    };
    fs_line("confab (disk) ", disk.path(), disk_fsync);
    if let Some(d) = &tmpfs {
        fs_line("confab (tmpfs)", d.path(), tmpfs_fsync);
    }
    println!();

    client_rt.block_on(async {
        // Warm-up: connection pools, caches, the allocator.
        for t in &targets {
            sequential(t, WARMUP_SEQUENTIAL).await;
            open_loop(t, WARMUP_RATE, WARMUP_SECS, cap).await;
            quiesce(t, &up).await;
        }

        let mut runs = Vec::new();
        for t in &targets {
            runs.push(sequential(t, SEQUENTIAL).await);
            quiesce(t, &up).await;
        }
        report(
            &format!("one stream at a time, {SEQUENTIAL} streams"),
            &runs,
            true,
        );
        let rates: Vec<f64> = match std::env::var("CONFAB_BENCH_RATES") {
            Ok(v) => v
                .split(',')
                .map(|r| r.trim().parse())
                .collect::<Result<_, _>>()
                .context("CONFAB_BENCH_RATES: a comma-separated list of streams per second")?,
            Err(_) => RATES.to_vec(),
        };
        for rate in rates {
            let mut runs = Vec::new();
            for t in &targets {
                runs.push(open_loop(t, rate, LOAD_SECS, cap).await);
                quiesce(t, &up).await;
            }
            report(
                &format!(
                    "open loop: a new stream every {} ms ({rate:.0}/s) for {LOAD_SECS:.0} s",
                    format!("{:.2}", 1e3 / rate)
                        .trim_end_matches('0')
                        .trim_end_matches('.')
                ),
                &runs,
                true,
            );
        }
        anyhow::Ok(())
    })?;

    for (stop, serve) in servers {
        let _ = stop.send(());
        let _ = server_rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), serve).await });
    }
    server_rt.shutdown_timeout(Duration::from_secs(5));
    drop(up);
    Ok(())
}

/// One OpenAI-style stream from the minimal SSE server: the role chunk at
/// once, then [`REPLY`] a word at a time after [`TOKEN_DELAY`] each, then
/// `[DONE]` — the fake upstream's timing without anything else.
async fn bare_sse() -> axum::response::Response {
    let words: Vec<String> = REPLY.split_inclusive(' ').map(str::to_string).collect();
    let stream = futures::stream::unfold(0usize, move |i| {
        let words = words.clone();
        async move {
            let text = if i == 0 {
                "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n".to_string()
            } else if i <= words.len() {
                tokio::time::sleep(TOKEN_DELAY).await;
                let chunk = json!({"choices": [{"index": 0, "delta": {"content": words[i - 1]}}]});
                format!("data: {chunk}\n\n")
            } else if i == words.len() + 1 {
                "data: [DONE]\n\n".to_string()
            } else {
                return None;
            };
            Some((Ok::<_, std::io::Error>(Bytes::from(text)), i + 1))
        }
    });
    axum::response::Response::builder()
        .header(CONTENT_TYPE, "text/event-stream")
        .body(axum::body::Body::from_stream(stream))
        .expect("static response parts")
}

/// A minimal SSE server on the current runtime; returns its URL.
async fn bare_server(nodelay: bool) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    use axum::serve::ListenerExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().route("/v1/chat/completions", axum::routing::post(bare_sse));
    let task = if nodelay {
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        })
    } else {
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        })
    };
    Ok((format!("http://{addr}/v1/chat/completions"), task))
}

/// (a0) What the transport alone does to these timings: the same stream
/// shape from a minimal server with and without TCP_NODELAY on its
/// accepted sockets, and from the fake upstream.
fn transport(
    upstream_rt: &tokio::runtime::Runtime,
    client_rt: &tokio::runtime::Runtime,
) -> anyhow::Result<()> {
    let up = upstream_rt.block_on(async { FakeUpstream::start().await });
    up.set_reply(REPLY);
    up.set_token_delay(TOKEN_DELAY);
    let (on_url, on_task) = upstream_rt.block_on(bare_server(true))?;
    let (off_url, off_task) = upstream_rt.block_on(bare_server(false))?;
    let body = Bytes::from(
        json!({"model": MODEL, "messages": [{"role": "user", "content": PROMPT}],
            "stream": true, "stream_options": {"include_usage": true}})
        .to_string(),
    );
    let c = client()?;
    let target = |label: &'static str, url: String| Target {
        label,
        client: c.clone(),
        url,
        auth: format!("Bearer {UPSTREAM_KEY}"),
        body: body.clone(),
        classify: openai_item,
        state: None,
    };
    let targets = [
        target("bare, NODELAY on", on_url),
        target("bare, NODELAY off", off_url),
        target(
            "fake upstream",
            format!("{}/chat/completions", up.openai_base()),
        ),
    ];
    let runs = client_rt.block_on(async {
        let mut runs = Vec::new();
        for t in &targets {
            sequential(t, WARMUP_SEQUENTIAL).await;
            runs.push(sequential(t, TRANSPORT_STREAMS).await);
        }
        runs
    });
    println!(
        "(a0) Transport check, in ms: the same {REPLY_TOKENS}-token stream ({} ms before each token) from a",
        ms(TOKEN_DELAY)
    );
    println!(
        "     minimal axum SSE server with TCP_NODELAY on / off on its accepted sockets, and from the fake"
    );
    println!(
        "     upstream used below; one stream at a time over a kept-alive connection. With NODELAY off, Nagle"
    );
    println!(
        "     holds each small write until the previous one is ACKed, and the client delays its ACKs (~40 ms)."
    );
    report(
        &format!("one stream at a time, {TRANSPORT_STREAMS} streams"),
        &runs,
        false,
    );
    on_task.abort();
    off_task.abort();
    drop(up);
    Ok(())
}

/// Prints a run table; later rows are compared with the first, against
/// the added-latency goal when `goal`.
fn report(title: &str, runs: &[Run], goal: bool) {
    println!("  {title}");
    println!(
        "    {:<18} {:>7} {:>4} {:>9} {:>8} {:>7} {:>6} | {:>8} {:>8} {:>8} {:>8} | {:>7} {:>7} {:>7} {:>7}",
        "path",
        "streams",
        "err",
        "started/s",
        "ended/s",
        "in-flt",
        "kept",
        "TTFT p50",
        "p90",
        "p99",
        "max",
        "gap p50",
        "p90",
        "p99",
        "max"
    );
    for r in runs {
        let (Some(t), Some(g)) = (r.ttft(), r.gaps()) else {
            println!(
                "    {:<18} no complete stream ({} errors: {})",
                r.label,
                r.errors,
                r.first_error.as_deref().unwrap_or("?")
            );
            continue;
        };
        let started = match r.target_rate {
            Some(_) => format!("{:.1}", r.started_rate()),
            None => "-".into(),
        };
        println!(
            "    {:<18} {:>7} {:>4} {:>9} {:>8.1} {:>7} {:>6} | {:>8.3} {:>8.3} {:>8.3} {:>8.3} | {:>7.3} {:>7.3} {:>7.3} {:>7.3}",
            r.label,
            t.n,
            r.errors,
            started,
            r.done_rate(),
            r.max_in_flight,
            if r.kept_up() { "yes" } else { "NO" },
            ms(t.p50),
            ms(t.p90),
            ms(t.p99),
            ms(t.max),
            ms(g.p50),
            ms(g.p90),
            ms(g.p99),
            ms(g.max)
        );
        if let Some(e) = &r.first_error {
            println!("      first error: {e}");
        }
        if r.shed > 0 {
            println!(
                "      ({} starts skipped: {} streams were already in flight, the most the open-files limit allows)",
                r.shed, r.max_in_flight
            );
        }
        if r.falling_behind()
            && let Some((first, last)) = r.drift()
        {
            println!(
                "      (falling behind: TTFT p50 {:.3} ms in the first second, {:.3} ms in the last)",
                ms(first),
                ms(last)
            );
        }
        if let Some(l) = r.start_lag
            && ms(l.p99) > 1.0
        {
            println!(
                "      (the client started streams late: start lag p50 {:.3} ms, p99 {:.3} ms)",
                ms(l.p50),
                ms(l.p99)
            );
        }
    }
    let Some(base) = runs.first() else { return };
    let (Some(bt), Some(bg)) = (base.ttft(), base.gaps()) else {
        return;
    };
    for r in &runs[1..] {
        let (Some(t), Some(g)) = (r.ttft(), r.gaps()) else {
            continue;
        };
        let add = |a: Duration, b: Duration| ms(a) - ms(b);
        let (tp99, gp99) = (add(t.p99, bt.p99), add(g.p99, bg.p99));
        let verdict = |x: f64| {
            if x <= ADDED_P99_GOAL_MS {
                "met"
            } else {
                "NOT met"
            }
        };
        let goal_note = if goal {
            format!(
                " | goal p99 added <= {ADDED_P99_GOAL_MS} ms: TTFT {}, gaps {}",
                verdict(tp99),
                verdict(gp99)
            )
        } else {
            String::new()
        };
        println!(
            "    added by {:<18} TTFT p50 {:+.3} p99 {:+.3} (x{:.2} at p99) | gaps p50 {:+.3} p99 {:+.3} (x{:.2} at p99){goal_note}",
            r.label,
            add(t.p50, bt.p50),
            tp99,
            ms(t.p99) / ms(bt.p99),
            add(g.p50, bg.p50),
            gp99,
            ms(g.p99) / ms(bg.p99),
        );
    }
    println!();
}

// ---------------------------------------------------------------------------
// (b) Memory

/// Kills the child on every exit path.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Clone, Copy)]
struct Mem {
    rss: f64,
    anon: f64,
    file: f64,
    hwm: f64,
    threads: u64,
}

/// Memory of a process, in MB (10^6 bytes), and its thread count.
fn mem(pid: u32) -> anyhow::Result<Mem> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let raw = |name: &str| -> anyhow::Result<f64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("{name} missing from /proc/{pid}/status"))?;
        line.trim_start_matches(name)
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("cannot parse {line:?}"))
    };
    let mb = |name: &str| raw(name).map(|kb| kb * 1024.0 / 1e6);
    Ok(Mem {
        rss: mb("VmRSS:")?,
        anon: mb("RssAnon:")?,
        file: mb("RssFile:")?,
        hwm: mb("VmHWM:")?,
        threads: raw("Threads:")? as u64,
    })
}

fn mem_row(label: &str, m: Mem, extra: &str) {
    println!(
        "    {label:<22} {:>8.1} {:>7.1} {:>6.1} {:>8.1} {:>8}{extra}",
        m.rss, m.anon, m.file, m.hwm, m.threads
    );
}

/// A reply of `n` words (one token each).
fn long_reply(n: usize) -> String {
    (0..n)
        .map(|i| format!("word{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The real binary with a config file pointing at the fake upstream;
/// returns the child, its base URL and its setup URL.
fn spawn_server(
    dir: &Path,
    upstream_base: &str,
    ca_file: Option<&str>,
) -> anyhow::Result<(KillOnDrop, String, String)> {
    let ca_line = ca_file
        .map(|f| format!("provider_ca_file = \"{f}\"\n"))
        .unwrap_or_default();
    let exe = env!("CARGO_BIN_EXE_confab");
    let cfg_path = dir.join("confab.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "detect_local_providers = false\n\
             provider_idle_timeout_secs = 600\n\
             {ca_line}\
             \n\
             [auth]\n\
             login_per_ip_per_minute = 1000000\n\
             login_burst = 1000000\n\
             \n\
             [limits]\n\
             enabled = false\n\
             max_concurrent_generations = {UNCAPPED}\n\
             \n\
             # Thousands of streams from one loopback address.\n\
             [http]\n\
             max_connections = 1000000\n\
             max_connections_per_ip = 1000000\n\
             \n\
             [[providers]]\n\
             kind = \"openai\"\n\
             name = \"fake\"\n\
             base_url = \"{upstream_base}\"\n\
             api_key = \"{UPSTREAM_KEY}\"\n\
             models = [\"{HOLD_MODEL}\"]\n"
        ),
    )?;
    // `CONFAB_BENCH_SERVER_WRAPPER="heaptrack -o /tmp/x"` (say) runs the
    // server under a profiler; memory figures then include the profiler's.
    let wrapper = std::env::var("CONFAB_BENCH_SERVER_WRAPPER").unwrap_or_default();
    let mut words = wrapper.split_whitespace();
    let mut cmd = match words.next() {
        Some(prog) => {
            let mut c = Command::new(prog);
            c.args(words).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("CONFAB_") || k == "OPENAI_API_KEY" || k == "ANTHROPIC_API_KEY" {
            cmd.env_remove(k);
        }
    }
    // The child inherits this process's raised open-files limit.
    cmd.arg("--config")
        .arg(&cfg_path)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = KillOnDrop(cmd.spawn().with_context(|| format!("spawning {exe}"))?);
    let stderr = child.0.stderr.take().context("stderr is piped")?;

    // Drain stderr for the child's whole life so logging never blocks it.
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut base, mut setup_url) = (None, None);
    while base.is_none() || setup_url.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(v) = rx.recv_timeout(left) else {
            bail!("the server did not log \"listening\" and its setup URL within 60 s");
        };
        let url = v["fields"]["url"].as_str().map(str::to_string);
        match v["fields"]["message"].as_str() {
            Some("listening") => base = url,
            Some("first-run setup") => setup_url = url,
            _ => {}
        }
    }
    Ok((
        child,
        base.unwrap_or_default(),
        setup_url.unwrap_or_default(),
    ))
}

/// The pid of the confab process: `spawned` itself, or under
/// `CONFAB_BENCH_SERVER_WRAPPER` the descendant running the binary.
fn server_pid(spawned: u32) -> u32 {
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_confab")).ok();
    let mut todo = vec![spawned];
    while let Some(pid) = todo.pop() {
        if std::fs::read_link(format!("/proc/{pid}/exe")).ok() == exe {
            return pid;
        }
        let Ok(dir) = std::fs::read_dir("/proc") else {
            break;
        };
        for e in dir.flatten() {
            let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            // pid (comm) state ppid ...: the comm may hold spaces.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(pid) {
                todo.push(child);
            }
        }
    }
    spawned
}

/// Failures of streams that never reached `meta`.
#[derive(Default)]
struct Failures {
    count: AtomicUsize,
    first: Mutex<Option<String>>,
}

/// Opens one stream over its own connection, counts it once `meta` has
/// arrived, then keeps reading (deltas, heartbeats) until the server goes.
async fn hold_stream(
    addr: SocketAddr,
    request: Bytes,
    opened: Arc<AtomicUsize>,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> anyhow::Result<()> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    s.write_all(&request).await?;
    let mut buf = Vec::with_capacity(1024);
    let mut scratch = [0u8; 1024];
    loop {
        let n = s.read(&mut scratch).await?;
        ensure!(
            n > 0,
            "closed before the first delta: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&scratch[..n]);
        if find(&buf, b"\r\n\r\n").is_some() && !buf.starts_with(b"HTTP/1.1 200") {
            bail!("answered {}", String::from_utf8_lossy(&buf));
        }
        // Mid-answer: the first text has arrived, the rest is slow.
        if find(&buf, b"event: delta").is_some() {
            break;
        }
        ensure!(buf.len() < 64 * 1024, "no delta event in the first 64 KiB");
    }
    opened.fetch_add(1, Ordering::SeqCst);
    drop(permit);
    drop(buf);
    loop {
        match s.read(&mut scratch).await {
            Ok(0) | Err(_) => return Ok(()),
            Ok(_) => {}
        }
    }
}

/// Descriptors a process has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// The soft open-files limit of a process.
fn fd_limit(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// One reading of (b).
struct Held {
    streams: usize,
    mem: Mem,
    /// Descriptors the server had open.
    fds: usize,
    /// From the first stream's start until all of them were open.
    took: Duration,
}

/// Opens streams up to each step, reading the server's memory at each.
/// `upstream_chats` counts the requests the upstream got.
async fn hold_streams<F: Future<Output = usize>>(
    base: &str,
    key: &str,
    pid: u32,
    steps: &[usize],
    upstream_chats: impl Fn() -> F,
) -> anyhow::Result<Vec<Held>> {
    let addr: SocketAddr = base
        .trim_start_matches("http://")
        .parse()
        .context("server address")?;
    // No model named: the only one offered is used, and the conversation
    // is stored with one commit less.
    let body = json!({"content": "Tell me a very long story."}).to_string();
    let request = Bytes::from(format!(
        "POST /api/chat/stream HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nAccept: text/event-stream\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    let opened = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Failures::default());
    let sem = Arc::new(Semaphore::new(OPEN_CONCURRENCY));
    let mut set = JoinSet::new();
    let mut launched = 0;
    let mut out = Vec::new();
    let t0 = Instant::now();
    let failed = |f: &Failures| -> anyhow::Result<()> {
        let n = f.count.load(Ordering::SeqCst);
        if n > 0 {
            let first = f.first.lock().unwrap().clone().unwrap_or_default();
            bail!("{n} streams failed to open; first: {first}");
        }
        Ok(())
    };
    for &step in steps {
        while launched < step {
            let left = OPEN_MAX.saturating_sub(t0.elapsed());
            let permit = tokio::time::timeout(left, sem.clone().acquire_owned())
                .await
                .map_err(|_| anyhow!("{launched} streams started within {OPEN_MAX:?}"))??;
            failed(&failures)?;
            let (opened, failures, request) = (opened.clone(), failures.clone(), request.clone());
            set.spawn(async move {
                if let Err(e) = hold_stream(addr, request, opened, permit).await {
                    failures.count.fetch_add(1, Ordering::SeqCst);
                    failures
                        .first
                        .lock()
                        .unwrap()
                        .get_or_insert_with(|| format!("{e:#}"));
                }
            });
            launched += 1;
        }
        while opened.load(Ordering::SeqCst) < step {
            failed(&failures)?;
            ensure!(
                t0.elapsed() < OPEN_MAX,
                "only {} of {step} streams had their meta event within {OPEN_MAX:?}",
                opened.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // meta is sent before the upstream is asked: wait (bounded) until
        // the upstream has every stream's request.
        let waited = Instant::now();
        while upstream_chats().await < step && waited.elapsed() < Duration::from_secs(120) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let took = t0.elapsed();
        tokio::time::sleep(SETTLE).await;
        failed(&failures)?;
        out.push(Held {
            streams: step,
            mem: mem(pid)?,
            fds: open_fds(pid),
            took,
        });
    }
    // The streams end when the caller kills the server; drop ends the rest.
    set.abort_all();
    Ok(out)
}

/// The role of the child process that serves the slow fake upstream for
/// (b): keeping its descriptors out of this process, whose open-files
/// limit may not be raisable. Prints the OpenAI base URL, then serves until
/// its stdin closes.
fn upstream_child() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("fake-upstream")
        .build()?;
    let https = std::env::var(UPSTREAM_ROLE_ENV).is_ok_and(|v| v == "https");
    let up = rt.block_on(async {
        if https {
            FakeUpstream::start_tls().await
        } else {
            FakeUpstream::start().await
        }
    });
    up.set_reply(&long_reply(HOLD_REPLY_WORDS));
    up.set_token_delay(HOLD_TOKEN_DELAY);
    // The certificate to trust goes in a file that lives as long as this process.
    let dir = tempfile::tempdir()?;
    let pem = dir.path().join("fake-upstream.pem");
    if let Some(cert) = &up.cert_pem {
        std::fs::write(&pem, cert)?;
    }
    println!(
        "{}\t{}",
        up.openai_base(),
        if https {
            pem.display().to_string()
        } else {
            String::new()
        }
    );
    std::io::stdout().flush()?;
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(up);
    rt.shutdown_background();
    Ok(())
}

/// Starts [`upstream_child`] (over HTTPS with HTTP/2 by ALPN when `https`);
/// returns it, its OpenAI base URL and the certificate file to trust.
fn spawn_upstream(https: bool) -> anyhow::Result<(KillOnDrop, String, Option<String>)> {
    let exe = std::env::current_exe()?;
    let mut child = KillOnDrop(
        Command::new(&exe)
            .env(UPSTREAM_ROLE_ENV, if https { "https" } else { "http" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("spawning {}", exe.display()))?,
    );
    let stdout = child.0.stdout.take().context("stdout is piped")?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .context("the fake upstream process did not start within 30 s")?;
    let (base, pem) = line
        .trim_end()
        .split_once('\t')
        .unwrap_or((line.trim(), ""));
    ensure!(
        base.starts_with("http://") || base.starts_with("https://"),
        "the fake upstream process printed {line:?}"
    );
    Ok((
        child,
        base.to_string(),
        (!pem.is_empty()).then(|| pem.to_string()),
    ))
}

/// (b) against each kind of upstream `CONFAB_BENCH_UPSTREAM` names
/// (`http1,h2` by default): plain HTTP/1.1 (a local model server: one
/// upstream connection per stream) and HTTPS with HTTP/2 agreed by ALPN (a
/// cloud provider: all streams share connections).
fn memory(client_rt: &tokio::runtime::Runtime, nofile: u64) -> anyhow::Result<()> {
    let kinds = std::env::var("CONFAB_BENCH_UPSTREAM").unwrap_or_else(|_| "http1,h2".into());
    for kind in kinds.split(',').map(str::trim) {
        match kind {
            "http1" => memory_with(client_rt, nofile, false)?,
            "h2" => memory_with(client_rt, nofile, true)?,
            other => bail!("CONFAB_BENCH_UPSTREAM: unknown upstream kind {other:?} (http1, h2)"),
        }
        println!();
    }
    Ok(())
}

/// How many answers the fake upstream (in its own process) was asked for.
async fn upstream_chats(c: &reqwest::Client, upstream_base: &str) -> usize {
    let root = upstream_base.trim_end_matches("/openai/v1");
    let Ok(r) = c.get(format!("{root}/_fake/chats")).send().await else {
        return 0;
    };
    let v: Value = r.json().await.unwrap_or_default();
    v["count"].as_u64().unwrap_or(0) as usize
}

fn memory_with(
    client_rt: &tokio::runtime::Runtime,
    nofile: u64,
    https: bool,
) -> anyhow::Result<()> {
    let (upstream, upstream_base, pem) = spawn_upstream(https)?;
    let tmp = tempfile::tempdir()?;
    let (child, base, setup_url) = spawn_server(tmp.path(), &upstream_base, pem.as_deref())?;
    // Server descriptors per stream: the client's connection, and over
    // HTTP/1 one upstream connection each.
    let fds_per_stream = if https { 1 } else { 2 };
    let pid = server_pid(child.0.id());
    let token = setup_token(&setup_url)?;
    let server_limit = fd_limit(pid).unwrap_or(nofile);

    let result = client_rt.block_on(async {
        let c = client()?;
        let key = setup_and_key(&c, &base, &token).await?;
        wait_for(&c, &base, &key, HOLD_MODEL).await?;
        drop(c);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = mem(pid)?;
        let base_fds = open_fds(pid);
        // Descriptors per stream in the server, one here; keep some slack.
        let server_fit = (server_limit as usize).saturating_sub(base_fds + 100) / fds_per_stream;
        let client_fit = (nofile as usize).saturating_sub(500);
        let fit = server_fit.min(client_fit) / 100 * 100;
        // `CONFAB_BENCH_HOLD=1000` (say) holds only that many streams (profiling runs).
        let wanted: Vec<usize> = std::env::var("CONFAB_BENCH_HOLD")
            .ok()
            .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
            .filter(|v: &Vec<usize>| !v.is_empty())
            .unwrap_or_else(|| HOLD_STEPS.to_vec());
        let mut steps: Vec<usize> = wanted.iter().copied().filter(|&s| s <= fit).collect();
        let largest = wanted.iter().copied().max().unwrap_or(0);
        if fit < largest && steps.last().is_none_or(|&l| l < fit) {
            steps.push(fit);
        }
        let mut up_client = reqwest::Client::builder();
        if let Some(pem) = &pem {
            up_client = up_client
                .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(pem)?)?);
        }
        let up_client = up_client.build()?;
        let held = hold_streams(&base, &key, pid, &steps, || {
            upstream_chats(&up_client, &upstream_base)
        })
        .await;
        anyhow::Ok((idle, base_fds, fit, held))
    });
    drop(child);
    drop(upstream);
    let (idle, base_fds, fit, held) = result?;

    println!(
        "(b) Resident memory of the confab binary holding open streams, MB = 10^6 bytes ({})",
        env!("CARGO_BIN_EXE_confab")
    );
    println!(
        "    the real binary ({}) spawned with --config: one [[providers]] entry at the fake upstream;",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!(
        "    upstream: {}",
        if https {
            "HTTPS, HTTP/2 agreed by ALPN (as OpenAI and Anthropic): streams share upstream connections"
        } else {
            "plain HTTP/1.1 (as Ollama or vLLM on localhost): one upstream connection per stream"
        }
    );
    println!(
        "    each stream: POST /api/chat/stream (API key) starting a new conversation, on its own HTTP/1.1 connection,"
    );
    println!(
        "    counted once its first delta arrived (mid-answer; the upstream got its request); the upstream pauses {} s",
        HOLD_TOKEN_DELAY.as_secs()
    );
    println!(
        "    before each later token, so no stream ends. Clients (this process) and the fake upstream (a child process) not counted."
    );
    println!(
        "    server open-files limit {server_limit} ({base_fds} in use when idle, {fds_per_stream} per stream): at most {fit} streams fit"
    );
    println!(
        "    {:<22} {:>8} {:>7} {:>6} {:>8} {:>8} {:>8}",
        "open streams", "VmRSS", "anon", "file", "VmHWM", "threads", "fds"
    );
    mem_row("0 (set up, idle)", idle, &format!(" {base_fds:>8}"));
    let held = match held {
        Ok(h) => h,
        Err(e) => {
            println!("    could not hold the streams: {e:#}");
            return Ok(());
        }
    };
    let mut prev: Option<&Held> = None;
    for h in &held {
        let per = (h.mem.rss - idle.rss) * 1e3 / h.streams as f64;
        let marginal = prev
            .map(|p| {
                format!(
                    ", marginal {:.1}",
                    (h.mem.rss - p.mem.rss) * 1e3 / (h.streams - p.streams) as f64
                )
            })
            .unwrap_or_default();
        mem_row(
            &format!("{}", h.streams),
            h.mem,
            &format!(
                " {:>8}   ({per:.1} KB/stream over idle{marginal}; all open {:.1} s after the first)",
                h.fds,
                h.took.as_secs_f64()
            ),
        );
        prev = Some(h);
    }
    let goal_streams = HOLD_STEPS.iter().copied().max().unwrap_or(0);
    let Some(last) = held.last() else {
        return Ok(());
    };
    if last.streams >= goal_streams {
        println!(
            "    goal <= {RSS_GOAL_MB} MB at {goal_streams} streams: {} ({:.1} MB; peak VmHWM {:.1} MB)",
            if last.mem.rss <= RSS_GOAL_MB {
                "met"
            } else {
                "NOT met"
            },
            last.mem.rss,
            last.mem.hwm
        );
    } else {
        // Extrapolate with the per-stream cost between the last two readings.
        let per_stream_mb = match held.len() {
            n if n >= 2 => {
                let p = &held[n - 2];
                (last.mem.rss - p.mem.rss) / (last.streams - p.streams) as f64
            }
            _ => (last.mem.rss - idle.rss) / last.streams as f64,
        };
        let est = last.mem.rss + per_stream_mb * (goal_streams - last.streams) as f64;
        println!(
            "    {goal_streams} streams do not fit under this machine's open-files limit; extrapolated from {} with the",
            last.streams
        );
        println!(
            "    marginal cost: {est:.1} MB at {goal_streams} -> goal <= {RSS_GOAL_MB} MB: {} (estimate)",
            if est <= RSS_GOAL_MB { "met" } else { "NOT met" }
        );
    }
    Ok(())
}
