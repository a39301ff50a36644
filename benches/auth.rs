//! Auth under load: login throughput, `/api/auth/me` latency while 50
//! logins run at once (argon2 must not starve other requests), and the
//! resident memory of the real binary after start-up.
//!
//! Run with `cargo bench --bench auth`. On small (2-core) machines lone
//! absolute times are noise, so every latency figure is a percentile and is
//! compared with a baseline taken in the same process.
//!
//! The in-process server runs on its own tokio runtime (default worker
//! count, like `confab serve`); the load generators run on a second one.
//! Everything talks to 127.0.0.1 and every loop is bounded.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

const PASSWORD: &str = "bench-password-1234";
/// Accounts the logins are spread over.
const USERS: usize = 50;
/// Logins in flight at once.
const CONCURRENCY: usize = 50;
const ME_WARMUP: usize = 200;
const ME_BASELINE: usize = 2_000;
const LOGIN_SEQUENTIAL: usize = 20;
const LOGIN_TOTAL: usize = 200;
/// The loaded `me` series runs until this many logins completed during it
/// (two full rounds of the 50 in flight), bounded by the two caps below.
const LOAD_WINDOW_LOGINS: usize = 2 * CONCURRENCY;
const ME_UNDER_LOAD_MAX: usize = 200_000;
const LOAD_WINDOW_MAX: Duration = Duration::from_secs(60);
/// Per-worker cap on logins during the mixed phase; the stop flag normally
/// ends it long before.
const LOAD_MAX_ROUNDS: usize = 500;
const RSS_LOGINS: usize = 20;
const RSS_ME: usize = 100;
const RSS_GOAL_MB: f64 = 25.0;

fn main() -> anyhow::Result<()> {
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-server")
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
    println!("confab auth bench — {cores} cores, build: {profile}");
    println!();

    let tmp = tempfile::tempdir()?;
    let (base, token, stop_tx, serve) = server_rt.block_on(start_server(tmp.path()))?;
    let result = client_rt.block_on(in_process(&base, &token));
    let _ = stop_tx.send(());
    let _ =
        server_rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), serve).await });
    drop(server_rt);
    result?;

    println!();
    rss(&client_rt)?;
    Ok(())
}

/// Starts the server in-process with login throttling off; returns the base
/// URL, the setup token, the shutdown trigger and the serve task.
async fn start_server(
    data_dir: &Path,
) -> anyhow::Result<(
    String,
    String,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
)> {
    let mut cfg = confab::config::Config {
        data_dir: data_dir.to_path_buf(),
        ..Default::default()
    };
    cfg.auth.login_per_ip_per_minute = 1_000_000;
    cfg.auth.login_burst = 1_000_000;
    let store = confab::store::redb::RedbStore::open_shared(&cfg.data_dir)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let state = confab::app::AppState::new(cfg, store, addr).await?;
    let setup_url = state.setup_url().context("a fresh data dir needs setup")?;
    let token = setup_token(&setup_url)?;
    let (tx, rx) = oneshot::channel::<()>();
    let serve = tokio::spawn(confab::app::serve(listener, state, async move {
        let _ = rx.await;
    }));
    Ok((format!("http://{addr}"), token, tx, serve))
}

fn setup_token(setup_url: &str) -> anyhow::Result<String> {
    let (_, t) = setup_url
        .split_once("token=")
        .context("setup URL has no token")?;
    Ok(t.split('&').next().unwrap_or(t).to_string())
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(2 * CONCURRENCY)
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

/// Runs setup; returns the admin's cookie and CSRF token.
async fn setup(c: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<(String, String)> {
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
    Ok((cookie, csrf))
}

/// Signs in; returns the session cookie and how long it took.
async fn login(c: &reqwest::Client, base: &str, user: &str) -> anyhow::Result<(String, Duration)> {
    let t = Instant::now();
    let r = c
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"username": user, "password": PASSWORD}))
        .send()
        .await?;
    let status = r.status();
    let cookie = session_cookie(&r);
    let body = r.bytes().await?;
    let took = t.elapsed();
    ensure!(
        status == 200,
        "login as {user} answered {status}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok((cookie.context("login set no session cookie")?, took))
}

/// One `GET /api/auth/me`; returns its latency.
async fn me(c: &reqwest::Client, url: &str, cookie: &str) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let r = c.get(url).header(COOKIE, cookie).send().await?;
    let status = r.status();
    r.bytes().await?;
    let took = t.elapsed();
    ensure!(status == 200, "/api/auth/me answered {status}");
    Ok(took)
}

async fn me_series(
    c: &reqwest::Client,
    url: &str,
    cookie: &str,
    n: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(me(c, url, cookie).await?);
    }
    Ok(out)
}

fn user_name(i: usize) -> String {
    format!("bench{:02}", i % USERS)
}

struct Stats {
    n: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Stats {
    fn of(mut v: Vec<Duration>) -> Stats {
        assert!(!v.is_empty(), "no samples");
        v.sort_unstable();
        // Nearest-rank percentile.
        let pct = |p: f64| {
            let rank = (p / 100.0 * v.len() as f64).ceil() as usize;
            v[rank.clamp(1, v.len()) - 1]
        };
        Stats {
            n: v.len(),
            p50: pct(50.0),
            p99: pct(99.0),
            max: v[v.len() - 1],
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn row(label: &str, s: &Stats, extra: &str) {
    println!(
        "  {label:<34} n={:<5} p50 {:>11}   p99 {:>11}   max {:>11}{extra}",
        s.n,
        ms(s.p50),
        ms(s.p99),
        ms(s.max)
    );
}

async fn in_process(base: &str, token: &str) -> anyhow::Result<()> {
    let c = client()?;
    let (admin_cookie, csrf) = setup(&c, base, token).await?;

    // Accounts to sign in as (each creation is one argon2 hash).
    let mut set = JoinSet::new();
    for i in 0..USERS {
        let (c, base, cookie, csrf) = (
            c.clone(),
            base.to_string(),
            admin_cookie.clone(),
            csrf.clone(),
        );
        set.spawn(async move {
            let r = c
                .post(format!("{base}/api/admin/users"))
                .header(COOKIE, cookie)
                .header("X-CSRF-Token", csrf)
                .json(&json!({"username": user_name(i), "password": PASSWORD}))
                .send()
                .await?;
            ensure!(
                r.status() == 201,
                "creating {} answered {}",
                user_name(i),
                r.status()
            );
            anyhow::Ok(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }

    let me_url = format!("{base}/api/auth/me");
    let me_client = client()?;
    let (me_cookie, _) = login(&c, base, "bench00").await?;

    // 1. Baseline.
    me_series(&me_client, &me_url, &me_cookie, ME_WARMUP).await?;
    let baseline = Stats::of(me_series(&me_client, &me_url, &me_cookie, ME_BASELINE).await?);

    // 2a. One login at a time: the cost of a single sign-in.
    let mut seq = Vec::with_capacity(LOGIN_SEQUENTIAL);
    for i in 0..LOGIN_SEQUENTIAL {
        seq.push(login(&c, base, &user_name(i)).await?.1);
    }
    let seq_total: Duration = seq.iter().sum();
    let seq_rate = LOGIN_SEQUENTIAL as f64 / seq_total.as_secs_f64();
    let seq = Stats::of(seq);

    // 2b. LOGIN_TOTAL logins, CONCURRENCY in flight at once.
    let next = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (c, base, next) = (c.clone(), base.to_string(), next.clone());
        set.spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= LOGIN_TOTAL {
                    break;
                }
                lat.push(login(&c, &base, &user_name(i)).await?.1);
            }
            anyhow::Ok(lat)
        });
    }
    let mut conc = Vec::with_capacity(LOGIN_TOTAL);
    while let Some(r) = set.join_next().await {
        conc.extend(r??);
    }
    let wall = t.elapsed();
    let conc_rate = LOGIN_TOTAL as f64 / wall.as_secs_f64();
    let conc = Stats::of(conc);

    // 3. `me` while CONCURRENCY logins run continuously.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for w in 0..CONCURRENCY {
        let (c, base, stop, done) = (c.clone(), base.to_string(), stop.clone(), done.clone());
        set.spawn(async move {
            for round in 0..LOAD_MAX_ROUNDS {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                login(&c, &base, &user_name(w + round)).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        });
    }
    // Let the queue fill: wait for a few logins to complete (bounded).
    let settle = Instant::now();
    while done.load(Ordering::Relaxed) < 4 && settle.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let done_before = done.load(Ordering::Relaxed);
    let t = Instant::now();
    let loaded = async {
        let mut out = Vec::new();
        while out.len() < ME_UNDER_LOAD_MAX
            && done.load(Ordering::Relaxed) - done_before < LOAD_WINDOW_LOGINS
            && t.elapsed() < LOAD_WINDOW_MAX
        {
            out.push(me(&me_client, &me_url, &me_cookie).await?);
        }
        anyhow::Ok(out)
    }
    .await;
    let window = t.elapsed();
    let done_during = done.load(Ordering::Relaxed) - done_before;
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = set.join_next().await {
        r??;
    }
    let loaded = Stats::of(loaded?);
    let mixed_rate = done_during as f64 / window.as_secs_f64();

    // Baseline again, to see how much the machine drifted.
    let after = Stats::of(me_series(&me_client, &me_url, &me_cookie, ME_BASELINE).await?);

    println!("1. GET /api/auth/me, sequential, no login load (baseline)");
    row("baseline", &baseline, "");
    println!();
    println!("2. POST /api/auth/login (argon2id m=19 MiB t=2 p=1; {USERS} accounts)");
    row("one at a time", &seq, &format!("   {seq_rate:.1} logins/s"));
    row(
        &format!("{LOGIN_TOTAL} logins, {CONCURRENCY} concurrent"),
        &conc,
        &format!("   {conc_rate:.1} logins/s in {:.2} s", wall.as_secs_f64()),
    );
    println!(
        "  throughput ratio concurrent/sequential: {:.2}x",
        conc_rate / seq_rate
    );
    println!();
    println!("3. GET /api/auth/me, sequential, while {CONCURRENCY} logins run at once");
    row(
        "under login load",
        &loaded,
        &format!(
            "   over {:.2} s, {done_during} logins completed meanwhile ({mixed_rate:.1}/s)",
            window.as_secs_f64()
        ),
    );
    row("baseline repeated afterwards", &after, "");
    println!(
        "  ratio to baseline:  p50 {:.2}x   p99 {:.2}x   (repeat/baseline p50 {:.2}x: run-to-run noise)",
        ratio(loaded.p50, baseline.p50),
        ratio(loaded.p99, baseline.p99),
        ratio(after.p50, baseline.p50)
    );
    println!(
        "  me p99 under load / one login p50: {:.3}  (well below 1 = not queued behind argon2)",
        ratio(loaded.p99, seq.p50)
    );
    Ok(())
}

/// Kills the child on every exit path.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `(VmRSS, RssAnon, RssFile, VmHWM)` of a process, in MB (10^6 bytes).
fn mem(pid: u32) -> anyhow::Result<[f64; 4]> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<f64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("{name} missing from /proc/{pid}/status"))?;
        let kb: f64 = line
            .trim_start_matches(name)
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("cannot parse {line:?}"))?;
        Ok(kb * 1024.0 / 1e6)
    };
    Ok([
        field("VmRSS:")?,
        field("RssAnon:")?,
        field("RssFile:")?,
        field("VmHWM:")?,
    ])
}

fn mem_row(label: &str, m: [f64; 4]) {
    println!(
        "  {label:<34} VmRSS {:>6.1} MB  (anon {:>5.1}, file {:>5.1})   peak VmHWM {:>6.1} MB",
        m[0], m[1], m[2], m[3]
    );
}

/// 4. Resident memory of the real binary.
fn rss(rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let exe = env!("CARGO_BIN_EXE_confab");
    let tmp = tempfile::tempdir()?;
    let mut cmd = Command::new(exe);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CONFAB_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("--data-dir")
        .arg(tmp.path())
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
        .env("CONFAB_LOGIN_PER_IP_PER_MINUTE", "1000000")
        .env("CONFAB_LOGIN_BURST", "1000000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = KillOnDrop(cmd.spawn().with_context(|| format!("spawning {exe}"))?);
    let pid = child.0.id();
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
    let (base, setup_url) = (base.unwrap_or_default(), setup_url.unwrap_or_default());
    drop(rx);

    std::thread::sleep(Duration::from_secs(2));
    let idle = mem(pid)?;

    let token = setup_token(&setup_url)?;
    rt.block_on(async {
        let c = client()?;
        setup(&c, &base, &token).await?;
        let mut set = JoinSet::new();
        for _ in 0..RSS_LOGINS {
            let (c, base) = (c.clone(), base.clone());
            set.spawn(async move { login(&c, &base, "admin").await });
        }
        let mut cookie = String::new();
        while let Some(r) = set.join_next().await {
            cookie = r??.0;
        }
        me_series(&c, &format!("{base}/api/auth/me"), &cookie, RSS_ME).await?;
        anyhow::Ok(())
    })?;
    std::thread::sleep(Duration::from_secs(1));
    let used = mem(pid)?;
    drop(child);

    println!("4. Resident memory of the confab binary, MB = 10^6 bytes ({exe})");
    println!(
        "  (figures are for the profile this bench was built with: {profile})",
        profile = if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    mem_row("idle, 2 s after start-up", idle);
    mem_row(
        &format!("after setup + {RSS_LOGINS} logins + {RSS_ME} me"),
        used,
    );
    println!(
        "  idle goal <= {RSS_GOAL_MB} MB: {}",
        if idle[0] <= RSS_GOAL_MB {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}
