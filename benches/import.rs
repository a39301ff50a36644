//! Import of a large ChatGPT export (issue 20, "Figures"): memory stays
//! bounded while a file of hundreds of megabytes is imported.
//!
//! 1. Writes a ChatGPT-style `conversations.json` of `CONFAB_BENCH_IMPORT_MB`
//!    (default 200) MiB, one conversation at a time (40 messages of ~1 KiB
//!    each, every fourth answer regenerated), so the generator never holds
//!    the file.
//! 2. Starts the real server in-process (127.0.0.1:0), completes setup,
//!    resets the process's peak RSS (`/proc/self/clear_refs`), streams the
//!    file to `POST /api/imports` and polls the job to the end.
//! 3. Prints the RSS (anonymous and file-backed) every five seconds as the
//!    import goes on, then conversations and MiB imported, the time, and the
//!    peak RSS before and during the import; fails when the peak grew by
//!    more than `BOUND_MIB`. `CONFAB_BENCH_CACHE_MIB` sets `store_cache_mib`.
//!
//! Run with `MALLOC_ARENA_MAX=2 cargo bench --profile dev --bench import`
//! (or `CONFAB_BENCH_IMPORT_MB=50` for a quick try).

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::ensure;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// The most the server's peak RSS may grow while importing 200 MiB. The
/// import itself holds a few conversations and one batch (≤ 8 MiB of text)
/// at a time; redb's page cache is bounded by `store_cache_mib` (64 MiB);
/// the rest is the search indexer's writer and glibc's arenas keeping freed
/// memory. Measured (dev profile), with `MALLOC_ARENA_MAX=2` as the
/// systemd unit sets it: +131 and +141 MiB for 200 MiB (3,350
/// conversations, 147,000 messages), +112 MiB for 50 MiB; without it,
/// +100 to +210 MiB whatever the size; with redb's default 1 GiB cache it
/// was +440 MiB for 200 MiB (`CONFAB_BENCH_CACHE_MIB=1024` shows it again).
const BOUND_MIB: u64 = 256;

fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// A figure of /proc/self/status, in bytes.
fn status(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// Resident memory now: heap and other anonymous memory, and file pages
/// mapped (the search index's segments).
fn rss() -> String {
    format!(
        "RSS {} MiB (anonymous {} MiB, files {} MiB)",
        status("VmRSS:") >> 20,
        status("RssAnon:") >> 20,
        status("RssFile:") >> 20
    )
}

fn node(id: &str, parent: Option<&str>, message: Value) -> (String, Value) {
    (
        id.to_string(),
        json!({"id": id, "parent": parent, "children": [], "message": message}),
    )
}

fn msg(role: &str, t: f64, text: String) -> Value {
    json!({"author": {"role": role}, "create_time": t, "content": {"content_type": "text", "parts": [text]},
        "metadata": {"model_slug": "gpt-4o"}, "recipient": "all"})
}

fn write_export(path: &std::path::Path, target: u64) -> anyhow::Result<usize> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    w.write_all(b"[")?;
    let filler = "lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(18);
    let (mut n, mut written) = (0usize, 0u64);
    while written < target {
        let mut nodes = vec![node("root", None, Value::Null)];
        let mut parent = "root".to_string();
        for k in 0..40 {
            let id = format!("n{k}");
            let role = if k % 2 == 0 { "user" } else { "assistant" };
            let t = 1_700_000_000.0 + k as f64;
            nodes.push(node(
                &id,
                Some(&parent),
                msg(role, t, format!("{n} {k} {filler}")),
            ));
            if k % 4 == 3 {
                let alt = format!("n{k}b");
                nodes.push(node(
                    &alt,
                    Some(&parent),
                    msg(role, t + 0.5, format!("again {k} {filler}")),
                ));
            }
            parent = id;
        }
        let c = json!({"title": format!("Big {n}"), "id": format!("big-{n}"), "current_node": parent,
            "create_time": 1_700_000_000.0, "update_time": 1_700_000_000.0 + n as f64,
            "mapping": nodes.into_iter().collect::<serde_json::Map<_, _>>()});
        let bytes = serde_json::to_vec(&c)?;
        if n > 0 {
            w.write_all(b",")?;
        }
        w.write_all(&bytes)?;
        written += bytes.len() as u64 + 1;
        n += 1;
    }
    w.write_all(b"]")?;
    w.flush()?;
    Ok(n)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mb: u64 = std::env::var("CONFAB_BENCH_IMPORT_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("conversations.json");
    let t = Instant::now();
    let n = write_export(&file, mb * 1024 * 1024)?;
    let size = std::fs::metadata(&file)?.len();
    println!(
        "generated {n} conversations, {} MiB, in {:.1?}",
        size >> 20,
        t.elapsed()
    );

    let data = dir.path().join("data");
    let mut cfg = confab::config::Config {
        data_dir: data.clone(),
        ..Default::default()
    };
    cfg.detect_local_providers = false;
    cfg.limits.api_per_minute = 1_000_000;
    cfg.limits.api_burst = 1_000_000;
    if let Some(mib) = std::env::var("CONFAB_BENCH_CACHE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        cfg.store_cache_mib = mib;
    }
    println!("redb page cache: {} MiB", cfg.store_cache_mib);
    let store = confab::store::open(&cfg).await?;
    let listener = confab::server::listen("127.0.0.1:0".parse()?)?;
    let addr = listener.local_addr()?;
    let state = confab::state::AppState::new(cfg, store, addr).await?;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(confab::app::serve(listener, state.clone(), async move {
        let _ = stopped.await;
    }));
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let token = state
        .setup_url()
        .and_then(|u| u.split("token=").nth(1).map(str::to_string))
        .ok_or_else(|| anyhow::anyhow!("setup is not pending"))?;
    let r = http
        .post(format!("{base}/api/setup"))
        .json(&json!({"token": token, "username": "bench", "password": "correct horse battery staple"}))
        .send()
        .await?;
    ensure!(r.status().is_success(), "setup: {}", r.status());
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .to_string();
    let login: Value = r.json().await?;
    let csrf = login["csrf_token"].as_str().unwrap_or("").to_string();

    std::fs::write("/proc/self/clear_refs", "5")?;
    let before = peak_rss();
    let t = Instant::now();
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(
        tokio::fs::File::open(&file).await?,
    ));
    let r = http
        .post(format!("{base}/api/imports?name=conversations.json"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    ensure!(r.status() == 202, "import: {}", r.status());
    let job: Value = r.json().await?;
    let id = job["id"].as_str().unwrap_or("").to_string();
    let uploaded = t.elapsed();
    println!("uploaded: {}", rss());
    let mut shown = Instant::now();
    let job = loop {
        let j: Value = http
            .get(format!("{base}/api/imports/{id}"))
            .header("cookie", &cookie)
            .send()
            .await?
            .json()
            .await?;
        if j["status"] != "running" {
            break j;
        }
        // RSS at steps: what grows with the part of the file imported.
        if shown.elapsed() >= Duration::from_secs(5) {
            shown = Instant::now();
            println!(
                "  {} conversations imported: {}, peak {} MiB",
                j["imported"],
                rss(),
                peak_rss() >> 20
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let took = t.elapsed();
    let peak = peak_rss();
    let _ = stop.send(());
    let _ = server.await;
    let db = std::fs::metadata(data.join("confab.redb"))
        .map(|m| m.len() >> 20)
        .unwrap_or(0);
    println!("the database file is {db} MiB");
    ensure!(
        job["status"] == "done",
        "the import failed: {}",
        job["error"]
    );
    let imported = job["imported"].as_u64().unwrap_or(0);
    ensure!(imported as usize == n, "imported {imported} of {n}");
    let grew = peak.saturating_sub(before) >> 20;
    println!(
        "imported {imported} conversations ({} MiB) in {took:.1?} (upload {uploaded:.1?}): peak RSS {} MiB before, {} MiB during (+{grew} MiB; bound {BOUND_MIB} MiB)",
        size >> 20,
        before >> 20,
        peak >> 20,
    );
    ensure!(grew < BOUND_MIB, "peak RSS grew by {grew} MiB");
    Ok(())
}
