//! kill -9 of the real binary while messages are being written, then a
//! restart: every message whose write was acknowledged is findable exactly
//! once (the outbox is replayed; nothing is lost or duplicated).

use crate::common;
use crate::common_upstream;

use common::proc::{fake_provider_config, start};
use common_upstream::FakeUpstream;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_writes_loses_and_duplicates_nothing_in_search() {
    let up = FakeUpstream::start().await;
    up.set_reply("short answer");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("confab.toml");
    fake_provider_config(&config, &up.openai_base());
    // The writers send far more answers than the default chat burst allows.
    let mut text = std::fs::read_to_string(&config).unwrap();
    text = text.replacen("[auth]", "[limits]\nenabled = false\n\n[auth]", 1);
    std::fs::write(&config, text).unwrap();
    let srv = start(&data, &config);
    let token = srv
        .setup
        .clone()
        .unwrap()
        .split("token=")
        .nth(1)
        .unwrap()
        .to_string();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/api/setup", srv.url))
        .json(&json!({"token": token, "username": "admin", "password": "correct-horse-battery"}))
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let csrf = r.json::<Value>().await.unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();

    // Three writers send messages with unique words until the kill.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3 {
        let (http, url, cookie, csrf, acked, stop) = (
            http.clone(),
            srv.url.clone(),
            cookie.clone(),
            csrf.clone(),
            acked.clone(),
            stop.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && n < 500 {
                let word = format!("uniq{w}x{n}z");
                n += 1;
                let r = http
                    .post(format!("{url}/api/chat/stream"))
                    .header("cookie", &cookie)
                    .header("x-csrf-token", &csrf)
                    .json(&json!({"content": format!("note {word} here"), "model": "fake-model"}))
                    .send()
                    .await;
                let Ok(mut r) = r else { break };
                // The meta event arrives after the user's message committed.
                match r.chunk().await {
                    Ok(Some(c)) if String::from_utf8_lossy(&c).contains("event: meta") => {
                        acked.lock().unwrap().push(word);
                    }
                    _ => break,
                }
                while let Ok(Some(_)) = r.chunk().await {}
            }
        }));
    }
    // Kill once enough writes were acknowledged (an event, not a fixed
    // sleep: on a loaded 2-core CI machine a turn can take half a second).
    let t = Instant::now();
    while acked.lock().unwrap().len() < 15 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "only {} writes acknowledged in 60 s",
            acked.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut srv = srv;
    srv.child.kill().unwrap();
    srv.child.wait().unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 15,
        "only {} writes before the kill",
        acked.len()
    );

    let srv = start(&data, &config);
    let t = Instant::now();
    let mut missing = acked.clone();
    while !missing.is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{} of {} not findable: {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(5)]
        );
        let mut still = Vec::new();
        for word in &missing {
            let b: Value = http
                .get(format!("{}/api/search?q={word}", srv.url))
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let n = b["hits"].as_array().unwrap().len();
            assert!(n <= 1, "{word} found {n} times: {b}");
            if n == 0 {
                still.push(word.clone());
            }
        }
        missing = still;
        if !missing.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Exactly once each, after the replay too.
    for word in acked.iter().step_by(3) {
        let b: Value = http
            .get(format!("{}/api/search?q={word}", srv.url))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(b["hits"].as_array().unwrap().len(), 1, "{word}");
    }
}
