//! Several instances on one PostgreSQL database:
//!
//! 1. what the shared rate limit costs per request: the check itself (one
//!    `INSERT … ON CONFLICT DO UPDATE … RETURNING` on an UNLOGGED table)
//!    one at a time and with concurrent callers, beside the in-process
//!    limiter of a single server; then the API throughput of one instance
//!    on PostgreSQL with the limits on and off, in the same run;
//! 2. list-conversations and chat-turn throughput with 1 and 3 instances on
//!    PostgreSQL and 1 on redb, in the same run (clients spread round robin
//!    over the instances, as a load balancer would).
//!
//! Run with `cargo bench --bench cluster`. PostgreSQL: a server named by
//! `CONFAB_BENCH_PG` (`postgres://USER@HOST:PORT`, a superuser: each part
//! creates a database of its own), else a throwaway cluster like the tests'
//! (`tests/it/common/pg.rs`: fsync off, so its commits cost less than a
//! real server's). Everything (client, confab, PostgreSQL, fake upstream)
//! shares this machine's cores.

#[path = "../tests/it/common_upstream/mod.rs"]
mod common_upstream;
#[path = "../tests/it/common/pg.rs"]
mod pg;
// The test cluster's TLS certificate comes from this CA.
#[path = "../tests/it/pebble/mod.rs"]
mod pebble;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use common_upstream::FakeUpstream;
use confab::app::{AppState, serve};
use confab::config::{Config, StoreUrl};
use confab::limits::rate::Limiter;
use serde_json::json;
use tokio::sync::oneshot;
use uuid::Uuid;

const SEQ_N: usize = 5_000;
const LOCAL_N: usize = 200_000;
const USERS: usize = 1_000;
const WINDOW: Duration = Duration::from_secs(4);
const CLIENTS: usize = 32;
const CHAT_CLIENTS: usize = 16;
const KEY_FILES: [&str; 3] = ["jwt.key", "device.key", "provider.key"];

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort_unstable();
    v[((p / 100.0) * (v.len() - 1) as f64).round() as usize]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// A new database; its URL.
async fn fresh_db() -> anyhow::Result<String> {
    match std::env::var("CONFAB_BENCH_PG") {
        Ok(base) => {
            let name = format!("bench_{}", Uuid::now_v7().simple());
            let (client, conn) = tokio_postgres::connect(
                &format!("{base}/postgres?sslmode=disable"),
                tokio_postgres::NoTls,
            )
            .await
            .context("connect to CONFAB_BENCH_PG")?;
            let task = tokio::spawn(conn);
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await?;
            drop(client);
            let _ = task.await;
            Ok(format!("{base}/{name}?sslmode=disable"))
        }
        Err(_) => Ok(pg::fresh_url().await),
    }
}

fn bench_config(dir: &std::path::Path, store: Option<&str>, limits_on: bool) -> Config {
    let mut cfg = Config {
        data_dir: dir.to_path_buf(),
        ..Default::default()
    };
    cfg.store = store.map(|u| StoreUrl(u.to_string()));
    cfg.detect_local_providers = false;
    cfg.limits.enabled = limits_on;
    // Limits that never refuse, so every run does the same work.
    for (rate, burst) in [
        (&mut cfg.limits.anon_per_minute, &mut cfg.limits.anon_burst),
        (&mut cfg.limits.api_per_minute, &mut cfg.limits.api_burst),
        (&mut cfg.limits.chat_per_minute, &mut cfg.limits.chat_burst),
    ] {
        (*rate, *burst) = (100_000_000, 100_000_000);
    }
    cfg.limits.max_concurrent_generations = 100_000;
    cfg.auth.login_per_ip_per_minute = 100_000;
    cfg.auth.login_burst = 100_000;
    cfg.quota.messages_per_day = Some(1_000_000_000);
    cfg.quota.tokens_per_day = Some(1_000_000_000_000);
    cfg
}

/// (1a) The limiter check, local and shared.
async fn limiter_cost(url: &str) -> anyhow::Result<()> {
    let users: Vec<Uuid> = (0..USERS).map(|_| Uuid::now_v7()).collect();
    let local: Limiter<Uuid> = Limiter::per_minute(100_000_000, 100_000_000, 1_000_000);
    let mut v = Vec::with_capacity(LOCAL_N);
    for i in 0..LOCAL_N {
        let t = Instant::now();
        assert!(local.check_local(&users[i % USERS]).allowed);
        v.push(t.elapsed());
    }
    println!(
        "  one server, in memory (governor):  p50 {:>9}  p99 {:>9}",
        us(pct(&mut v, 50.0)),
        us(pct(&mut v, 99.0))
    );

    let dir = tempfile::tempdir()?;
    let cfg = bench_config(dir.path(), Some(url), true);
    let store = confab::store::open(&cfg).await?;
    let cluster = store.cluster().context("a PostgreSQL store shares")?;
    let shared =
        Arc::new(Limiter::per_minute(100_000_000, 100_000_000, 1_000_000).share(cluster, "bench"));
    for u in &users {
        shared.check(u).await;
    }
    let mut v = Vec::with_capacity(SEQ_N);
    for i in 0..SEQ_N {
        let t = Instant::now();
        assert!(shared.check(&users[i % USERS]).await.allowed);
        v.push(t.elapsed());
    }
    let mean = v.iter().sum::<Duration>() / v.len() as u32;
    println!(
        "  shared, one caller:               p50 {:>9}  p99 {:>9}  mean {:>9}  ({:.0} checks/s)",
        us(pct(&mut v, 50.0)),
        us(pct(&mut v, 99.0)),
        us(mean),
        1.0 / mean.as_secs_f64()
    );
    for (callers, same_key) in [(8, false), (32, false), (32, true)] {
        let started = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for c in 0..callers {
            let (l, users) = (shared.clone(), users.clone());
            set.spawn(async move {
                let mut v = Vec::with_capacity(SEQ_N / callers);
                for i in 0..SEQ_N / callers {
                    let key = if same_key {
                        users[0]
                    } else {
                        users[(c * 97 + i) % USERS]
                    };
                    let t = Instant::now();
                    l.check(&key).await;
                    v.push(t.elapsed());
                }
                v
            });
        }
        let mut all = Vec::new();
        while let Some(v) = set.join_next().await {
            all.extend(v?);
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "  shared, {callers:>2} callers{}:  p50 {:>9}  p99 {:>9}  {:>7.0} checks/s",
            if same_key {
                ", one key "
            } else {
                ", many keys"
            },
            us(pct(&mut all, 50.0)),
            us(pct(&mut all, 99.0)),
            all.len() as f64 / secs
        );
    }
    Ok(())
}

struct Instance {
    base: String,
    state: AppState,
    stop: oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

/// `n` instances on `store` (None: one on redb).
async fn instances(
    n: usize,
    store: Option<&str>,
    limits_on: bool,
    up: &FakeUpstream,
) -> anyhow::Result<Vec<Instance>> {
    let mut out: Vec<Instance> = Vec::new();
    for _ in 0..n {
        let dir = tempfile::tempdir()?;
        if let Some(first) = out.first() {
            for k in KEY_FILES {
                std::fs::copy(first._dir.path().join(k), dir.path().join(k))?;
            }
        }
        let cfg = bench_config(dir.path(), store, limits_on);
        let st = confab::store::open(&cfg).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = AppState::new(cfg, st, addr).await?;
        up.register_openai(&state, &["fake-model"]);
        let (tx, rx) = oneshot::channel();
        let handle = tokio::spawn(serve(listener, state.clone(), async move {
            let _ = rx.await;
        }));
        out.push(Instance {
            base: format!("http://{addr}"),
            state,
            stop: tx,
            handle,
            _dir: dir,
        });
    }
    Ok(out)
}

async fn stop(list: Vec<Instance>) {
    for i in list {
        let _ = i.stop.send(());
        let _ = i.handle.await;
    }
}

/// Sets the admin up (on the first instance) and returns the cookie and
/// CSRF token every instance accepts.
async fn admin(first: &Instance, token: &str) -> anyhow::Result<(String, String)> {
    let r = reqwest::Client::new()
        .post(format!("{}/api/setup", first.base))
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
    let body: serde_json::Value = r.json().await?;
    let csrf = body["csrf_token"].as_str().context("csrf")?.to_string();
    Ok((cookie, csrf))
}

/// Requests per second of `clients` clients, spread round robin over
/// `bases`, each doing `req` until `WINDOW` ends.
async fn throughput<F, Fut>(bases: &[String], clients: usize, req: F) -> anyhow::Result<f64>
where
    F: Fn(reqwest::Client, String, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()?;
    let deadline = Instant::now() + WINDOW;
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for c in 0..clients {
        let (client, base, req) = (client.clone(), bases[c % bases.len()].clone(), req.clone());
        set.spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                req(client.clone(), base.clone(), c * 1_000_000 + n as usize).await?;
                n += 1;
            }
            Ok::<u64, anyhow::Error>(n)
        });
    }
    let mut total = 0;
    while let Some(r) = set.join_next().await {
        total += r??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// (2) One scenario: list-conversations and chat-turn throughput.
async fn scenario(n: usize, store: Option<&str>, limits_on: bool) -> anyhow::Result<(f64, f64)> {
    let up = FakeUpstream::start().await;
    let list = instances(n, store, limits_on, &up).await?;
    let token = list[0]
        .state
        .setup_url()
        .context("setup pending")?
        .split("token=")
        .nth(1)
        .context("token")?
        .to_string();
    let (cookie, csrf) = admin(&list[0], &token).await?;
    let bases: Vec<String> = list.iter().map(|i| i.base.clone()).collect();
    let client = reqwest::Client::new();
    for i in 0..20 {
        let r = client
            .post(format!("{}/api/chat/message", bases[i % n]))
            .header("cookie", &cookie)
            .header("x-csrf-token", &csrf)
            .json(&json!({"content": format!("seed {i}"), "model": "fake-model"}))
            .send()
            .await?;
        anyhow::ensure!(r.status() == 200, "seed chat: {}", r.status());
    }
    let c = cookie.clone();
    let list_rps = throughput(&bases, CLIENTS, move |client, base, _| {
        let c = c.clone();
        async move {
            let r = client
                .get(format!("{base}/api/conversations?limit=20"))
                .header("cookie", c)
                .send()
                .await?;
            anyhow::ensure!(r.status() == 200, "list: {}", r.status());
            r.bytes().await?;
            Ok(())
        }
    })
    .await?;
    let (c, x) = (cookie.clone(), csrf.clone());
    let chat_rps = throughput(&bases, CHAT_CLIENTS, move |client, base, i| {
        let (c, x) = (c.clone(), x.clone());
        async move {
            let r = client
                .post(format!("{base}/api/chat/message"))
                .header("cookie", c)
                .header("x-csrf-token", x)
                .json(&json!({"content": format!("question {i}"), "model": "fake-model"}))
                .send()
                .await?;
            anyhow::ensure!(r.status() == 200, "chat: {}", r.status());
            r.bytes().await?;
            Ok(())
        }
    })
    .await?;
    if n > 1 {
        search_lag(&bases, &cookie, &csrf).await?;
    }
    stop(list).await;
    Ok((list_rps, chat_rps))
}

/// How long after a message is written through one instance the others'
/// own indexes find it (written on the first, searched on the others).
async fn search_lag(bases: &[String], cookie: &str, csrf: &str) -> anyhow::Result<()> {
    const SAMPLES: usize = 30;
    let client = reqwest::Client::new();
    let mut lags = Vec::new();
    for i in 0..SAMPLES {
        let word = format!("zq{}x{i}", Uuid::now_v7().simple());
        let r = client
            .post(format!("{}/api/chat/message", bases[0]))
            .header("cookie", cookie)
            .header("x-csrf-token", csrf)
            .json(&json!({"content": format!("look for {word}"), "model": "fake-model"}))
            .send()
            .await?;
        anyhow::ensure!(r.status() == 200, "chat: {}", r.status());
        let written = Instant::now();
        for base in &bases[1..] {
            loop {
                let r = client
                    .get(format!("{base}/api/search?q={word}"))
                    .header("cookie", cookie)
                    .send()
                    .await?;
                let v: serde_json::Value = r.json().await?;
                if v["hits"].as_array().is_some_and(|h| !h.is_empty()) {
                    break;
                }
                anyhow::ensure!(written.elapsed() < Duration::from_secs(30), "never found");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        lags.push(written.elapsed());
    }
    println!(
        "  search on the other instances finds a message written on one: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({SAMPLES} samples)",
        pct(&mut lags, 50.0).as_secs_f64() * 1e3,
        pct(&mut lags, 99.0).as_secs_f64() * 1e3,
        pct(&mut lags, 100.0).as_secs_f64() * 1e3
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let profile = if cfg!(debug_assertions) {
        "debug-assertions ON (not a release build: figures are not representative)"
    } else {
        "release"
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("confab cluster bench: {profile}, {cores} cores");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let url = fresh_db().await?;
        println!("\n(1) rate-limit check per request ({SEQ_N} checks, {USERS} keys)");
        limiter_cost(&url).await?;

        println!(
            "\n(1b) GET /api/conversations on one instance on PostgreSQL, {CLIENTS} clients, {} s, limits off/on alternating x2",
            WINDOW.as_secs()
        );
        let (mut off, mut on) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            for limits_on in [false, true] {
                let url = fresh_db().await?;
                let (rps, _) = scenario(1, Some(&url), limits_on).await?;
                println!("  limits {:<3} {rps:>8.0} req/s", if limits_on { "on" } else { "off" });
                if limits_on { on.push(rps) } else { off.push(rps) }
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (a, b) = (mean(&off), mean(&on));
        println!(
            "  mean: off {a:.0} req/s, on {b:.0} req/s: the shared limit costs {:.0} µs of request time ({:+.1}% throughput)",
            (1.0 / b - 1.0 / a) * 1e6 * CLIENTS as f64,
            (b / a - 1.0) * 100.0
        );

        println!(
            "\n(2) throughput, clients round robin over the instances, {} s each: list = GET /api/conversations ({CLIENTS} clients), chat = POST /api/chat/message ({CHAT_CLIENTS} clients, fake upstream)",
            WINDOW.as_secs()
        );
        for (label, n, pg) in [("redb, 1 instance", 1, false), ("PostgreSQL, 1 instance", 1, true), ("PostgreSQL, 3 instances", 3, true)] {
            let url = if pg { Some(fresh_db().await?) } else { None };
            let (list, chat) = scenario(n, url.as_deref(), true).await?;
            println!("  {label:<24} list {list:>8.0} req/s   chat {chat:>7.0} turns/s");
        }
        anyhow::Ok(())
    })?;
    Ok(())
}
