//! The fake LLM upstream of the Rust tests as a stand-alone process, for the
//! browser tests (tests/e2e) that drive the real `confab` binary.
//!
//! ```text
//! cargo run --example fake_upstream
//! {"base_url":"http://127.0.0.1:40123","openai_base":"http://127.0.0.1:40123/openai/v1",...}
//! ```
//!
//! It prints one JSON line with its URLs, then serves until standard input
//! closes or it gets SIGTERM / SIGINT.
//!
//! Replies can be scripted before start with `FAKE_UPSTREAM_REPLIES`, a JSON
//! object `{"model name": "reply text"}` (exact model names, flags such as
//! `+slow` included), and at run time with one JSON command per stdin line;
//! each command is answered with one JSON line on stdout:
//!
//! | command | effect |
//! | --- | --- |
//! | `{"cmd":"set_reply","text":"…"}` | the text every model answers |
//! | `{"cmd":"set_reply_for","model":"…","text":"…"}` | the text one exact model name answers |
//! | `{"cmd":"set_token_delay_ms","ms":50}` | pause before every token |
//! | `{"cmd":"fail_next","n":1}` | the next n chat requests answer 503 |
//! | `{"cmd":"chat_requests"}` | answers `{"ok":true,"count":n,"last":{…body}}` |
//! | `{"cmd":"clear_requests"}` | forgets the recorded requests |
//!
//! Model names carry the flags of `tests/it/common_upstream` (`slow`, `echo`,
//! `reset`, `500`, …), so `fake-model+slow` streams one word every 100 ms.

#[path = "../tests/it/common_upstream/mod.rs"]
mod common_upstream;

use std::time::Duration;

use common_upstream::FakeUpstream;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn answer(up: &FakeUpstream, line: &str) -> Value {
    let cmd: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return json!({"ok": false, "error": format!("not JSON: {e}")}),
    };
    let text = |k: &str| cmd.get(k).and_then(Value::as_str).unwrap_or_default();
    match cmd.get("cmd").and_then(Value::as_str).unwrap_or_default() {
        "set_reply" => up.set_reply(text("text")),
        "set_reply_for" => up.set_reply_for(text("model"), text("text")),
        "set_token_delay_ms" => up.set_token_delay(Duration::from_millis(
            cmd.get("ms").and_then(Value::as_u64).unwrap_or(0),
        )),
        "fail_next" => up.fail_next(cmd.get("n").and_then(Value::as_u64).unwrap_or(1) as usize),
        "clear_requests" => up.clear_requests(),
        "chat_requests" => {
            let reqs = up.chat_requests();
            return json!({
                "ok": true,
                "count": reqs.len(),
                "last": reqs.last().map(|r| r.body.clone()),
            });
        }
        other => return json!({"ok": false, "error": format!("unknown command {other:?}")}),
    }
    json!({"ok": true})
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let up = FakeUpstream::start().await;
    if let Ok(raw) = std::env::var("FAKE_UPSTREAM_REPLIES") {
        let map: serde_json::Map<String, Value> =
            serde_json::from_str(&raw).expect("FAKE_UPSTREAM_REPLIES must be a JSON object");
        for (model, text) in map {
            up.set_reply_for(&model, text.as_str().unwrap_or_default());
        }
    }
    let mut out = tokio::io::stdout();
    let hello = json!({
        "base_url": up.base_url(),
        "openai_base": up.openai_base(),
        "anthropic_base": up.anthropic_base(),
        "ollama_base": up.ollama_base(),
    });
    out.write_all(format!("{hello}\n").as_bytes()).await.ok();
    out.flush().await.ok();

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(l)) if l.trim().is_empty() => {}
                Ok(Some(l)) => {
                    let reply = answer(&up, &l);
                    out.write_all(format!("{reply}\n").as_bytes()).await.ok();
                    out.flush().await.ok();
                }
                // Standard input closed (or unreadable): the parent is gone.
                _ => break,
            },
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
}
