//! kill -9 of the real binary mid-answer, then a restart: the answer is
//! stored `interrupted` with the text received up to about a second before
//! the kill.

use crate::common;
use crate::common_upstream;

use common::proc::{fake_provider_config, start};
use common_upstream::FakeUpstream;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_answer_keeps_the_text_up_to_a_second_before() {
    let up = FakeUpstream::start().await;
    let words: Vec<String> = (0..400).map(|i| format!("word{i}")).collect();
    let reply = words.join(" ");
    up.set_reply(&reply);
    up.set_token_delay(Duration::from_millis(20));

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("confab.toml");
    fake_provider_config(&config, &up.openai_base());

    let srv = start(&data, &config);
    let token = srv
        .setup
        .clone()
        .expect("setup link")
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
    assert_eq!(r.status(), 201);
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

    let mut resp = http
        .post(format!("{}/api/chat/stream", srv.url))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({"content": "count", "model": "fake-model"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Read the stream, remembering when each piece of text arrived.
    let mut buf = String::new();
    let mut received: Vec<(Instant, String)> = Vec::new();
    let mut conv_id = String::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(3000) {
        let Some(chunk) = resp.chunk().await.unwrap() else {
            break;
        };
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(pos) = buf.find("\n\n") {
            let block: String = buf.drain(..pos + 2).collect();
            let event = block
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or("");
            let data = block
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or("null");
            let v: Value = serde_json::from_str(data).unwrap();
            match event {
                "meta" => conv_id = v["conversation_id"].as_str().unwrap().to_string(),
                "delta" => received.push((Instant::now(), v["text"].as_str().unwrap().to_string())),
                _ => {}
            }
        }
    }
    let mut srv = srv;
    let killed_at = Instant::now();
    srv.child.kill().unwrap(); // SIGKILL
    srv.child.wait().unwrap();
    drop(resp);
    let all_text: String = received.iter().map(|(_, t)| t.as_str()).collect();
    let before_cutoff: String = received
        .iter()
        .filter(|(at, _)| *at + Duration::from_secs(1) <= killed_at)
        .map(|(_, t)| t.as_str())
        .collect();
    assert!(
        before_cutoff.len() > 20,
        "the answer had been streaming for a while"
    );
    assert!(
        all_text.len() < reply.len(),
        "killed before the answer ended"
    );

    let srv = start(&data, &config);
    assert!(srv.setup.is_none());
    let r = http
        .get(format!("{}/api/conversations/{conv_id}", srv.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the session survived the crash");
    let conv: Value = r.json().await.unwrap();
    let answer = &conv["messages"][1];
    assert_eq!(answer["status"], "interrupted");
    let stored = answer["content"].as_str().unwrap();
    assert!(
        reply.starts_with(stored),
        "stored text is a prefix of the answer"
    );
    assert!(
        stored.len() >= before_cutoff.len(),
        "stored {} chars, but {} had arrived a second before the kill",
        stored.len(),
        before_cutoff.len()
    );
    assert_eq!(conv["messages"][0]["content"], "count");
}
