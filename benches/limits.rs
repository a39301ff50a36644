//! Governance overhead: (1) a micro-bench of what every request pays — the
//! keyed rate limiter — and what every new answer pays on top — the chat
//! limiter, the concurrency cap and the quota reservation — as per-call
//! percentiles (goal: p99 under 2 µs); (2) API throughput of the real
//! server with the limits on and off, in the same process, as a ratio.
//!
//! Run with `cargo bench --bench limits`. Loops are bounded; all traffic
//! goes to 127.0.0.1.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use confab::app::{AppState, serve};
use confab::config::Config;
use confab::limits::Limits;
use confab::limits::quota::Effective;
use confab::store::redb::RedbStore;
use serde_json::json;
use tokio::sync::oneshot;
use uuid::Uuid;

const MICRO_N: usize = 1_000_000;
const USERS: usize = 1_000;
const CLIENTS: usize = 32;
const WINDOW: Duration = Duration::from_secs(3);
const ROUNDS: usize = 2;
const GOAL_P99: Duration = Duration::from_micros(2);

struct Stats {
    p50: Duration,
    p99: Duration,
    p999: Duration,
    mean: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort_unstable();
    let pct = |p: f64| v[((p / 100.0) * (v.len() - 1) as f64).round() as usize];
    let sum: Duration = v.iter().sum();
    Stats {
        p50: pct(50.0),
        p99: pct(99.0),
        p999: pct(99.9),
        mean: sum / v.len() as u32,
    }
}

fn ns(d: Duration) -> String {
    format!("{} ns", d.as_nanos())
}

fn report(label: &str, s: &Stats) {
    println!(
        "  {label:<44} p50 {:>8}   p99 {:>8}   p99.9 {:>8}   mean {:>8}  {}",
        ns(s.p50),
        ns(s.p99),
        ns(s.p999),
        ns(s.mean),
        if s.p99 < GOAL_P99 {
            "(p99 < 2 µs: ok)"
        } else {
            "(p99 ≥ 2 µs: OVER GOAL)"
        }
    );
}

fn bench_config(dir: &std::path::Path, limits_on: bool) -> Config {
    let mut cfg = Config {
        data_dir: dir.to_path_buf(),
        ..Default::default()
    };
    cfg.detect_local_providers = false;
    cfg.limits.enabled = limits_on;
    // Limits that never refuse, so both runs do the same work.
    cfg.limits.api_per_minute = 100_000_000;
    cfg.limits.api_burst = 100_000_000;
    cfg.limits.anon_per_minute = 100_000_000;
    cfg.limits.anon_burst = 100_000_000;
    cfg.limits.chat_per_minute = 100_000_000;
    cfg.limits.chat_burst = 100_000_000;
    cfg.auth.login_per_ip_per_minute = 100_000;
    cfg.auth.login_burst = 100_000;
    cfg.quota.messages_per_day = Some(1_000_000_000);
    cfg.quota.tokens_per_day = Some(1_000_000_000_000);
    cfg
}

fn micro(rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = bench_config(dir.path(), true);
    let store = RedbStore::open_shared(dir.path())?;
    let limits = Arc::new(Limits::new(&cfg, None));
    let users: Vec<Uuid> = (0..USERS).map(|_| Uuid::now_v7()).collect();
    let ips: Vec<std::net::IpAddr> = (0..USERS as u32)
        .map(|i| std::net::IpAddr::from((0x0a00_0000u32 + i).to_be_bytes()))
        .collect();
    let quota = Effective {
        messages_per_day: cfg.quota.messages_per_day,
        tokens_per_day: cfg.quota.tokens_per_day,
    };
    // Warm: every key known, every user's day totals cached.
    rt.block_on(async {
        for u in &users {
            limits.rate.api.check_local(u);
            let r = limits.quotas.reserve(&store, *u, quota, 4, 10).await;
            drop(r);
        }
    });
    for ip in &ips {
        limits.rate.anon.check_local(ip);
    }

    println!("micro-bench: {MICRO_N} calls each, {USERS} keys, one thread");
    let timer = {
        let mut v = Vec::with_capacity(MICRO_N);
        for _ in 0..MICRO_N {
            let t = Instant::now();
            v.push(t.elapsed());
        }
        stats(v)
    };
    println!(
        "  (timer overhead alone: p50 {}, p99 {}; included below)",
        ns(timer.p50),
        ns(timer.p99)
    );

    let mut v = Vec::with_capacity(MICRO_N);
    for i in 0..MICRO_N {
        let u = &users[i % USERS];
        let t = Instant::now();
        let d = limits.rate.api.check_local(u);
        v.push(t.elapsed());
        assert!(d.allowed);
    }
    report("API request: per-user limiter", &stats(v));

    let mut v = Vec::with_capacity(MICRO_N);
    for i in 0..MICRO_N {
        let ip = &ips[i % USERS];
        let t = Instant::now();
        let d = limits
            .rate
            .anon
            .check_local(&confab::limits::ip::limiter_key(*ip));
        v.push(t.elapsed());
        assert!(d.allowed);
    }
    report("anonymous request: per-IP limiter", &stats(v));

    let v = rt.block_on(async {
        let mut v = Vec::with_capacity(MICRO_N);
        for i in 0..MICRO_N {
            let u = users[i % USERS];
            let t = Instant::now();
            let r = limits.quotas.reserve(&store, u, quota, 4, 10).await;
            drop(r);
            v.push(t.elapsed());
        }
        v
    });
    report("new answer: quota reserve + release", &stats(v));

    let v = rt.block_on(async {
        let mut v = Vec::with_capacity(MICRO_N);
        for i in 0..MICRO_N {
            let u = users[i % USERS];
            let t = Instant::now();
            let a = limits.rate.api.check_local(&u);
            let c = limits.rate.chat.check_local(&u);
            let r = limits.quotas.reserve(&store, u, quota, 4, 10).await;
            let ok = a.allowed && c.allowed && matches!(r, Ok(Ok(_)));
            drop(r);
            v.push(t.elapsed());
            assert!(ok);
        }
        v
    });
    report("new answer: api + chat limiter + quota", &stats(v));
    Ok(())
}

struct Server {
    base: String,
    stop: oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
    cookie: String,
}

async fn start(limits_on: bool) -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let cfg = bench_config(dir.path(), limits_on);
    let store = RedbStore::open_shared(dir.path())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let state = AppState::new(cfg, store, addr).await?;
    let token = state
        .setup_url()
        .context("setup pending")?
        .split("token=")
        .nth(1)
        .context("token")?
        .to_string();
    let (tx, rx) = oneshot::channel();
    let handle = tokio::spawn(serve(listener, state, async move {
        let _ = rx.await;
    }));
    let base = format!("http://{addr}");
    let r = reqwest::Client::new()
        .post(format!("{base}/api/setup"))
        .json(&json!({"token": token, "username": "admin", "password": "bench-password-1234"}))
        .send()
        .await?;
    anyhow::ensure!(r.status() == 201, "setup: {}", r.status());
    let cookie = r
        .headers()
        .get("set-cookie")
        .context("cookie")?
        .to_str()?
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    Ok(Server {
        base,
        stop: tx,
        handle,
        _dir: dir,
        cookie,
    })
}

/// Requests per second of `CLIENTS` clients reading `/api/conversations`
/// for `WINDOW`.
async fn throughput(s: &Server) -> anyhow::Result<f64> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()?;
    let url = format!("{}/api/conversations?limit=20", s.base);
    // Warm-up.
    for _ in 0..200 {
        client
            .get(&url)
            .header("cookie", &s.cookie)
            .send()
            .await?
            .bytes()
            .await?;
    }
    let deadline = Instant::now() + WINDOW;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (client, url, cookie) = (client.clone(), url.clone(), s.cookie.clone());
        set.spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline && n < 1_000_000 {
                let r = client.get(&url).header("cookie", &cookie).send().await?;
                anyhow::ensure!(r.status() == 200, "status {}", r.status());
                r.bytes().await?;
                n += 1;
            }
            Ok::<u64, anyhow::Error>(n)
        });
    }
    let started = Instant::now();
    let mut total = 0;
    while let Some(r) = set.join_next().await {
        total += r??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

fn main() -> anyhow::Result<()> {
    let profile = if cfg!(debug_assertions) {
        "debug-assertions ON (not a release build: figures are not representative)"
    } else {
        "release"
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("confab limits bench: {profile}, {cores} cores");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    micro(&rt)?;

    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-server")
        .build()?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("bench-client")
        .build()?;
    println!(
        "\nAPI throughput: GET /api/conversations, {CLIENTS} clients, {} s per run, limits off/on alternating ×{ROUNDS}",
        WINDOW.as_secs()
    );
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        for limits_on in [false, true] {
            let s = server_rt.block_on(start(limits_on))?;
            let rps = client_rt.block_on(throughput(&s))?;
            println!(
                "  round {} limits {:<3}  {:>8.0} req/s",
                round + 1,
                if limits_on { "on" } else { "off" },
                rps
            );
            if limits_on {
                on.push(rps)
            } else {
                off.push(rps)
            }
            let _ = s.stop.send(());
            let _ = server_rt.block_on(s.handle);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (a, b) = (mean(&off), mean(&on));
    println!(
        "  mean: off {a:.0} req/s, on {b:.0} req/s; on/off ratio {:.3} ({:+.1}%)",
        b / a,
        (b / a - 1.0) * 100.0
    );
    Ok(())
}
