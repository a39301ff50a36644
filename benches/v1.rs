//! `/v1` overhead: time to first token (TTFT) of a streamed
//! `POST /v1/chat/completions` through confab, set against the same request
//! sent directly to the same fake upstream (OpenAI SSE), in the same run, at
//! 1, 50 and 200 concurrent streams. Reports median and p99 TTFT of both
//! paths and the added latency (confab minus direct) at each level; the goal
//! is a p99 added latency of at most 2 ms at 50 concurrent streams with the
//! data directory on disk.
//!
//! Each level runs at two paces of the fake model: tokens 10 ms apart (100
//! tokens a second, a fast hosted model), and tokens 1 ms apart, where 50
//! clients starting a new ten-token answer the moment the last one ends ask
//! for thousands of answers a second and saturate the 2 cores (client,
//! confab and upstream included): a throughput test, not a latency one.
//!
//! The clients of a level start spread over one answer's length, so the
//! streams in flight are staggered as real users' are, not a burst of N
//! starting in the same millisecond (see [`batch`]).
//!
//! Run with `cargo bench --bench v1` (`CONFAB_BENCH_DATA_DIR=/dev/shm` puts
//! the data directory on tmpfs instead, to tell fsync from CPU). Closed loop: at level N, N clients each
//! run streams back to back; the direct and the confab batches alternate
//! (rounds) so drift on the machine hits both alike. The client, confab and
//! the fake upstream each get their own tokio runtime but share the
//! machine's cores. Everything talks to 127.0.0.1 and every loop is bounded.

#[path = "../tests/it/common_upstream/mod.rs"]
mod common_upstream;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use bytes::Bytes;
use common_upstream::FakeUpstream;
use futures::StreamExt;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, SET_COOKIE};
use serde_json::{Value, json};
use tokio::task::JoinSet;

const PASSWORD: &str = "bench-password-1234";
const MODEL: &str = "fake-model";
const UPSTREAM_KEY: &str = "sk-bench-0000000000";
/// Ten tokens: the fake streams one word (with its space) per token.
const REPLY: &str = "one two three four five six seven eight nine ten";
const PROMPT: &str = "Say something short.";
/// A pace of the fake model: what it is called, its pause before each
/// token, and the levels run at it as (concurrent streams, streams per
/// client per round).
struct Pace {
    name: &'static str,
    token_delay: Duration,
    levels: &'static [(usize, usize)],
}

const PACES: &[Pace] = &[
    Pace {
        name: "tokens 10 ms apart (100 tokens/s, a fast hosted model)",
        token_delay: Duration::from_millis(10),
        levels: &[(1, 30), (50, 6), (200, 2)],
    },
    Pace {
        name: "tokens 1 ms apart (1,000 tokens/s: the clients saturate the machine)",
        token_delay: Duration::from_millis(1),
        levels: &[(1, 100), (50, 6), (200, 2)],
    },
];
/// Alternating direct/confab batches per level (after one warm-up round).
const ROUNDS: usize = 3;
/// A stream that has not ended by then counts as an error.
const STREAM_TIMEOUT: Duration = Duration::from_secs(60);
const GOAL_LEVEL: usize = 50;
const GOAL_P99_ADDED_MS: f64 = 2.0;

fn main() -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let profile = if cfg!(debug_assertions) {
        "debug-assertions ON (not a release build: figures are not representative)"
    } else {
        "release (cargo bench profile)"
    };
    println!("confab /v1 bench — {cores} cores, build: {profile}");
    println!(
        "client, confab and the fake upstream share these cores: every figure includes their contention"
    );
    let rt = |name: &str, threads: usize| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .thread_name(name)
            .build()
    };
    let upstream_rt = rt("bench-upstream", 1)?;
    let server_rt = rt("bench-server", 2)?;
    let client_rt = rt("bench-client", 2)?;

    let up = upstream_rt.block_on(FakeUpstream::start());
    up.set_reply(REPLY);

    // On disk, as the goal says: under the target dir, not /tmp (often
    // tmpfs). CONFAB_BENCH_DATA_DIR puts it elsewhere (e.g. /dev/shm, to
    // tell fsync cost from CPU).
    let parent = std::env::var_os("CONFAB_BENCH_DATA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::create_dir_all(&parent)?;
    let dir = tempfile::tempdir_in(&parent)?;
    println!(
        "data dir: {} ({})",
        dir.path().display(),
        fs_type(dir.path())
    );
    let (base, token, stop, serve) =
        server_rt.block_on(start_server(dir.path(), &up.openai_base()))?;
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1024)
        .build()?;
    let key = client_rt.block_on(async {
        let key = setup_and_key(&client, &base, &token).await?;
        wait_for_model(&client, &base, &key).await?;
        anyhow::Ok(key)
    })?;

    let body = Bytes::from(
        json!({"model": MODEL, "messages": [{"role": "user", "content": PROMPT}],
            "stream": true, "stream_options": {"include_usage": true}})
        .to_string(),
    );
    let direct = Target {
        client: client.clone(),
        url: format!("{}/chat/completions", up.openai_base()),
        auth: format!("Bearer {UPSTREAM_KEY}"),
        body: body.clone(),
    };
    let confab = Target {
        client,
        url: format!("{base}/v1/chat/completions"),
        auth: format!("Bearer {key}"),
        body,
    };

    for pace in PACES {
        up.set_token_delay(pace.token_delay);
        // How long an answer takes upstream: its tokens, each after the pause.
        let spread = pace.token_delay * (REPLY.split(' ').count() as u32 + 1);
        let mut rows = Vec::new();
        for &(level, per_client) in pace.levels {
            // Warm-up: connections in both pools, caches, the first allocations.
            client_rt.block_on(batch(&direct, level, 1, spread))?;
            client_rt.block_on(batch(&confab, level, 1, spread))?;
            let (mut d, mut c) = (Vec::new(), Vec::new());
            let (mut d_cpu, mut c_cpu) = (Duration::ZERO, Duration::ZERO);
            for _ in 0..ROUNDS {
                let t = cpu_time();
                d.extend(client_rt.block_on(batch(&direct, level, per_client, spread))?);
                let t2 = cpu_time();
                c.extend(client_rt.block_on(batch(&confab, level, per_client, spread))?);
                d_cpu += t2 - t;
                c_cpu += cpu_time() - t2;
            }
            let streams = (ROUNDS * level * per_client) as f64;
            let cpu = (
                d_cpu.as_secs_f64() * 1e3 / streams,
                c_cpu.as_secs_f64() * 1e3 / streams,
            );
            rows.push((level, stats(d), stats(c), cpu));
        }
        report(pace, &rows);
    }

    let _ = stop.send(());
    server_rt.block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(10), serve).await;
    });
    Ok(())
}

/// One level's figures: TTFT of both paths, CPU per stream of both.
type Row = (usize, Stats, Stats, (f64, f64));

/// Prints one pace's table and the verdict on the goal at it.
fn report(pace: &Pace, rows: &[Row]) {
    println!();
    println!(
        "{}: TTFT in ms (streamed /v1/chat/completions; nearest-rank percentiles); cpu = ms of CPU (user + system, whole process) per stream",
        pace.name
    );
    println!(
        "{:>7} {:>8} | {:>8} {:>8} | {:>8} {:>8} | {:>10} {:>10} | {:>10} {:>10}",
        "streams",
        "samples",
        "direct50",
        "direct99",
        "confab50",
        "confab99",
        "added p50",
        "added p99",
        "cpu direct",
        "cpu confab"
    );
    let mut goal = None;
    for (level, d, c, (d_cpu, c_cpu)) in rows {
        let (a50, a99) = (c.p50 - d.p50, c.p99 - d.p99);
        println!(
            "{level:>7} {:>8} | {:>8.3} {:>8.3} | {:>8.3} {:>8.3} | {a50:>10.3} {a99:>10.3} | {d_cpu:>10.3} {c_cpu:>10.3}",
            c.n, d.p50, d.p99, c.p50, c.p99
        );
        if *level == GOAL_LEVEL {
            goal = Some(a99);
        }
    }
    if let Some(a99) = goal {
        let verdict = if a99 <= GOAL_P99_ADDED_MS {
            "met"
        } else {
            "NOT met"
        };
        println!(
            "goal: p99 added ≤ {GOAL_P99_ADDED_MS} ms at {GOAL_LEVEL} concurrent streams, {}: {verdict} ({a99:.3} ms)",
            pace.name
        );
    }
}

/// CPU time (user + system) this process has used: client, confab and the
/// fake upstream all run in it, so the difference between a confab batch
/// and a direct one is what confab's hop costs per stream.
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// TTFT percentiles of one path, in ms.
struct Stats {
    n: usize,
    p50: f64,
    p99: f64,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort_unstable();
    let pct = |p: f64| {
        let rank = (p / 100.0 * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1].as_secs_f64() * 1e3
    };
    Stats {
        n: v.len(),
        p50: pct(50.0),
        p99: pct(99.0),
    }
}

#[derive(Clone)]
struct Target {
    client: reqwest::Client,
    url: String,
    auth: String,
    body: Bytes,
}

/// `level` clients, each running `per_client` streams back to back; the
/// TTFT of every stream. Client `i` starts `i/level` of `spread` after the
/// first, so that the streams in flight are spread over an answer's length
/// rather than all starting in the same millisecond (a thundering herd of
/// 50 that the clients' loop would repeat each round, and which measures the
/// burst, not the hop). Any failed stream fails the bench: a figure over
/// errors would mislead.
async fn batch(
    t: &Target,
    level: usize,
    per_client: usize,
    spread: Duration,
) -> anyhow::Result<Vec<Duration>> {
    let mut set = JoinSet::new();
    for i in 0..level {
        let t = t.clone();
        let offset = spread.mul_f64(i as f64 / level as f64);
        set.spawn(async move {
            tokio::time::sleep(offset).await;
            let mut out = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let s = tokio::time::timeout(STREAM_TIMEOUT, one_stream(&t))
                    .await
                    .map_err(|_| anyhow!("a stream took longer than {STREAM_TIMEOUT:?}"))??;
                out.push(s);
            }
            anyhow::Ok(out)
        });
    }
    let mut all = Vec::with_capacity(level * per_client);
    while let Some(r) = set.join_next().await {
        all.extend(r??);
    }
    Ok(all)
}

/// Sends one streamed completion and reads it to the end; the time from
/// sending to the chunk holding the first content delta.
async fn one_stream(t: &Target) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let resp = t
        .client
        .post(&t.url)
        .header(AUTHORIZATION, &t.auth)
        .header(CONTENT_TYPE, "application/json")
        .body(t.body.clone())
        .send()
        .await?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        bail!("{} answered {status}: {body}", t.url);
    }
    let mut body = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let (mut first, mut text, mut done) = (None, String::new(), false);
    // Read to the end so the connection goes back to the pool.
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        let now = Instant::now();
        buf.extend(chunk.iter().copied().filter(|&b| b != b'\r'));
        while let Some(pos) = buf.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = buf.drain(..pos + 2).collect();
            let block = String::from_utf8_lossy(&block[..pos]);
            for data in block.lines().filter_map(|l| l.strip_prefix("data:")) {
                let data = data.trim_start();
                if data == "[DONE]" {
                    done = true;
                    continue;
                }
                let v: Value = serde_json::from_str(data)?;
                if let Some(e) = v.get("error") {
                    bail!("in-stream error: {e}");
                }
                if let Some(d) = v["choices"][0]["delta"]["content"].as_str()
                    && !d.is_empty()
                {
                    first.get_or_insert(now);
                    text.push_str(d);
                }
            }
        }
    }
    ensure!(done, "the stream ended without data: [DONE]");
    ensure!(text == REPLY, "wrong text {text:?}");
    Ok(first.context("no content delta")?.duration_since(t0))
}

/// A confab server on the current runtime with one OpenAI-compatible
/// provider on the fake upstream. Rate limits are left on (as high as they
/// go) so the admission and charging of every call are measured.
async fn start_server(
    data_dir: &Path,
    upstream_base: &str,
) -> anyhow::Result<(
    String,
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
)> {
    let mut cfg = confab::config::Config {
        data_dir: data_dir.to_path_buf(),
        detect_local_providers: false,
        ..Default::default()
    };
    for (rate, burst) in [
        (&mut cfg.limits.api_per_minute, &mut cfg.limits.api_burst),
        (&mut cfg.limits.chat_per_minute, &mut cfg.limits.chat_burst),
    ] {
        (*rate, *burst) = (1_000_000, 1_000_000);
    }
    cfg.limits.max_concurrent_generations = 1_000_000;
    cfg.http.max_connections = 100_000;
    cfg.http.max_connections_per_ip = 100_000;
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
    let state = confab::app::AppState::new(cfg, store, addr).await?;
    let setup_url = state.setup_url().context("a fresh data dir needs setup")?;
    let (_, token) = setup_url
        .split_once("token=")
        .context("setup URL has no token")?;
    let token = token.split('&').next().unwrap_or(token).to_string();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serve = tokio::spawn(confab::app::serve(listener, state, async move {
        let _ = rx.await;
    }));
    Ok((format!("http://{addr}"), token, tx, serve))
}

/// Runs setup and creates an API key (read and write); returns the key.
async fn setup_and_key(c: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<String> {
    let r = c
        .post(format!("{base}/api/setup"))
        .json(&json!({"token": token, "username": "admin", "password": PASSWORD}))
        .send()
        .await?;
    ensure!(r.status() == 201, "setup answered {}", r.status());
    let cookie = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|kv| kv.starts_with("confab_session="))
        .context("setup set no session cookie")?
        .to_string();
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
    for _ in 0..100 {
        let body: Value = c
            .get(format!("{base}/api/models"))
            .header(AUTHORIZATION, format!("Bearer {key}"))
            .send()
            .await?
            .json()
            .await?;
        if body["items"]
            .as_array()
            .is_some_and(|a| a.iter().any(|m| m["id"] == MODEL))
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{MODEL} was not offered by /api/models within 10 s")
}

/// The filesystem type holding `path`, from /proc/self/mounts.
fn fs_type(path: &Path) -> String {
    let (Ok(path), Ok(mounts)) = (
        path.canonicalize(),
        std::fs::read_to_string("/proc/self/mounts"),
    ) else {
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
