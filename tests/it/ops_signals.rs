//! Signals and systemd, with the real binary: SIGTERM drains running
//! answers for the grace period and exits 0; `Type=notify` readiness,
//! watchdog pings, SIGHUP reload (RELOADING=1 … READY=1) and STOPPING=1
//! are sent over `$NOTIFY_SOCKET` as systemd expects.

use crate::common_upstream;
use crate::ops_support;

use common_upstream::FakeUpstream;
use ops_support::{Client, confab, start, start_with, tempdir, write_config};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_running_answers_for_the_grace_period_and_exits_0() {
    let up = FakeUpstream::start().await;
    up.set_models(&["fake-model", "fake-model-2"]);
    let long: Vec<String> = (0..300).map(|i| format!("w{i}")).collect();
    up.set_reply_for("fake-model", &long.join(" "));
    up.set_reply_for("fake-model-2", "short and sweet");
    up.set_token_delay(Duration::from_millis(30));
    let dir = tempdir();
    let (data, config) = (dir.path().join("data"), dir.path().join("confab.toml"));
    write_config(&config, &up.openai_base(), "shutdown_grace_secs = 2");
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).unwrap().replace(
            "models = [\"fake-model\"]",
            "models = [\"fake-model\", \"fake-model-2\"]",
        ),
    )
    .unwrap();
    let mut srv = start(&data, &config);
    let c = Client::setup(&srv, "admin").await;

    // A long answer (about 9 s) and, started later, a short one (about 0.1 s).
    let long_task = {
        let c = c.clone();
        tokio::spawn(async move { c.chat(None, "long please", "fake-model").await })
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    let short_task = {
        let c = c.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            c.chat(None, "short please", "fake-model-2").await
        })
    };
    let termed = Instant::now();
    srv.signal("TERM");
    // New connections are refused at once while running answers drain.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = reqwest::Client::new()
        .get(format!("{}/health", srv.url))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "still accepting after SIGTERM: {refused:?}"
    );

    let status = tokio::task::spawn_blocking(move || {
        let st = srv.wait_exit(Duration::from_secs(20));
        (st, srv)
    })
    .await
    .unwrap();
    let took = termed.elapsed();
    assert!(status.0.success(), "SIGTERM exits 0: {:?}", status.0);
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(8),
        "the grace period (2 s) bounds the drain: {took:?}"
    );
    drop(status);
    let (long_conv, long_text, long_done) = long_task.await.unwrap().unwrap();
    assert!(
        !long_done,
        "the long answer was cut at the end of the grace period"
    );
    assert!(!long_text.is_empty());
    let short = short_task.await.unwrap();

    let srv = start(&data, &config);
    let c = c.at(&srv.url);
    let (s, conv) = c.get(&format!("/api/conversations/{long_conv}")).await;
    assert_eq!(s, 200);
    let answer = &conv["messages"][1];
    assert_eq!(answer["status"], "interrupted", "{answer}");
    let stored = answer["content"].as_str().unwrap();
    assert!(long.join(" ").starts_with(stored) && stored.len() >= long_text.len() / 2);
    // The short answer, if it got in before the listener closed, finished.
    if let Ok((short_conv, text, done)) = short {
        assert!(done && text == "short and sweet");
        let (_, conv) = c.get(&format!("/api/conversations/{short_conv}")).await;
        assert_eq!(conv["messages"][1]["status"], "complete");
    }
}

/// Reads notify datagrams until one contains `want` (returns everything
/// received, in order).
fn recv_until(sock: &UnixDatagram, want: &str, limit: Duration) -> Vec<String> {
    let t = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.checked_sub(t.elapsed()).unwrap_or_default();
        assert!(!left.is_zero(), "no {want:?} within {limit:?}; got {got:?}");
        sock.set_read_timeout(Some(left)).unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            let done = msg.lines().any(|l| l == want);
            got.push(msg);
            if done {
                return got;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_notify_watchdog_and_sighup_reload() {
    let up = FakeUpstream::start().await;
    let dir = tempdir();
    let (data, config) = (dir.path().join("data"), dir.path().join("confab.toml"));
    write_config(&config, &up.openai_base(), "registration = \"invite\"");
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();

    let mut cmd = confab();
    cmd.env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000");
    let mut srv = start_with(cmd, &data, &config);
    let got = recv_until(&sock, "READY=1", Duration::from_secs(10));
    // Ready means the listener is bound: a request succeeds right away.
    let r = reqwest::get(format!("{}/health", srv.url)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        got.iter().any(|m| m.contains("STATUS=listening on")),
        "{got:?}"
    );
    // Watchdog pings at half the 400 ms interval.
    let t = Instant::now();
    recv_until(&sock, "WATCHDOG=1", Duration::from_secs(2));
    recv_until(&sock, "WATCHDOG=1", Duration::from_secs(2));
    assert!(t.elapsed() < Duration::from_secs(2));

    let server = |url: String| async move {
        reqwest::get(format!("{url}/api/server"))
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    assert_eq!(server(srv.url.clone()).await["registration"], "invite");

    // Change one live and one restart-only setting, then SIGHUP.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            "registration = \"invite\"",
            "registration = \"closed\"\nmax_body_bytes = 4096",
        ),
    )
    .unwrap();
    srv.signal("HUP");
    let got = recv_until(&sock, "READY=1", Duration::from_secs(10));
    let all = got.join("");
    assert!(all.contains("RELOADING=1"), "{got:?}");
    assert!(all.contains("MONOTONIC_USEC="), "{got:?}");
    let line = srv
        .wait_log("configuration reloaded", Duration::from_secs(5))
        .await;
    assert_eq!(line["fields"]["applied"], "[\"registration\"]", "{line}");
    assert_eq!(
        line["fields"]["restart_needed"], "[\"max_body_bytes\"]",
        "{line}"
    );
    assert_eq!(server(srv.url.clone()).await["registration"], "closed");
    let r = reqwest::Client::new()
        .post(format!("{}/api/auth/register", srv.url))
        .json(&serde_json::json!({"username": "late", "password": "correct-horse-battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "registration closed live");

    // An invalid file is refused and changes nothing.
    std::fs::write(&config, "registration = \"sometimes\"\n").unwrap();
    srv.signal("HUP");
    recv_until(&sock, "READY=1", Duration::from_secs(10));
    srv.wait_log(
        "configuration reload failed; keeping the running configuration",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(server(srv.url.clone()).await["registration"], "closed");

    srv.signal("TERM");
    recv_until(&sock, "STOPPING=1", Duration::from_secs(10));
    assert!(srv.wait_exit(Duration::from_secs(20)).success());
}

#[test]
fn version_reports_build_facts() {
    let out = confab().arg("version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for field in ["commit:", "built:", "target:", "features:"] {
        assert!(text.contains(field), "{text}");
    }
    assert!(
        text.starts_with(&format!("confab {}\n", confab::VERSION)),
        "{text}"
    );
    let out = confab().args(["version", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], confab::VERSION);
    assert_eq!(v["target"], "x86_64-unknown-linux-gnu");
    let commit = v["commit"].as_str().unwrap();
    assert!(commit == "unknown" || commit.len() == 12, "{commit}");
    assert!(v["build_date"].as_str().unwrap().ends_with('Z'));
    assert!(v["features"].is_array());
    // Without systemd, nothing is sent and nothing fails.
    let _ = start;
}
