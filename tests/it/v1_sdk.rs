//! `/v1` driven by the official `openai` and `anthropic` Python SDKs, against
//! each of the three provider kinds: the SDK scripts in tests/sdk/ run as
//! child processes (the venv with the pinned SDKs is made by tests/run.sh)
//! and print one JSON result document; this side asserts on it and on what
//! the fake upstream received in its own wire format.
//!
//! Without the venv these tests FAIL, saying to run tests/run.sh: an SDK
//! test that silently skips would prove nothing.

use crate::common;
use crate::common_upstream;

use common::{Auth, TestServer};
use common_upstream::{Dialect, FakeUpstream, RecordedRequest, tokens, word_count};
use confab::providers::registry::ProviderConfig;
use confab::providers::{
    AnthropicProvider, OllamaProvider, OpenAiProvider, Provider, ProviderKind, ProviderOptions,
    RetryPolicy,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The fake upstream's flag that makes a model answer a request carrying
/// tools with a tool call (tests/it/common_upstream).
const TOOL_FLAG: &str = "tools";
const REPLY: &str = "The SDK answer has exactly seven words.";
const SYSTEM: &str = "Be brief.";

/// The Python of the SDK venv: `CONFAB_SDK_PYTHON` (exported by
/// tests/run.sh), else `<target>/sdk/venv/bin/python` where tests/run.sh
/// makes it.
fn sdk_python() -> PathBuf {
    let p = match std::env::var_os("CONFAB_SDK_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
            let target = if target.is_relative() {
                Path::new(env!("CARGO_MANIFEST_DIR")).join(target)
            } else {
                target
            };
            target.join("sdk/venv/bin/python")
        }
    };
    assert!(
        p.exists(),
        "the Python venv with the official openai and anthropic SDKs is missing at {}: \
         run tests/run.sh once (it installs tests/sdk/requirements.txt into that venv), \
         or point CONFAB_SDK_PYTHON at a python that has them",
        p.display()
    );
    p
}

struct Kind {
    dialect: Dialect,
    provider: &'static str,
    chat: &'static str,
    embed: Option<&'static str>,
}

const OPENAI: Kind = Kind {
    dialect: Dialect::OpenAi,
    provider: "oa",
    chat: "gpt-sdk",
    embed: Some("text-embedding-sdk"),
};
const ANTHROPIC: Kind = Kind {
    dialect: Dialect::Anthropic,
    provider: "an",
    chat: "claude-sdk",
    embed: None,
};
const OLLAMA: Kind = Kind {
    dialect: Dialect::Ollama,
    provider: "ol",
    chat: "llama-sdk",
    embed: Some("nomic-embed-sdk"),
};

impl Kind {
    fn tool_model(&self) -> String {
        format!("{}+{TOOL_FLAG}", self.chat)
    }
    fn model_429(&self) -> String {
        format!("{}+429", self.chat)
    }
}

struct Env {
    s: TestServer,
    up: FakeUpstream,
    /// A regular user (not an admin), who owns the keys.
    user: common::Session,
    key: String,
    key_id: String,
}

/// A server with one provider of `kind` on a fake upstream, a regular
/// user and an API key of theirs.
async fn env(kind: &Kind) -> Env {
    env_with(kind, |_| {}).await
}

async fn env_with(kind: &Kind, f: impl FnOnce(&mut confab::config::Config)) -> Env {
    let up = FakeUpstream::start().await;
    up.set_reply(REPLY);
    let s = TestServer::start_with(f).await;
    let admin = s.setup_admin("admin").await;
    let base = up.base_for(kind.dialect);
    let key = (kind.dialect != Dialect::Ollama).then(|| "sk-test-key-0000".to_string());
    let client = confab::providers::default_client();
    let opts = ProviderOptions {
        idle_timeout: Duration::from_secs(15),
        retry: RetryPolicy::none(),
        ..Default::default()
    };
    let (pkind, provider): (ProviderKind, Arc<dyn Provider>) = match kind.dialect {
        Dialect::OpenAi => (
            ProviderKind::Openai,
            Arc::new(OpenAiProvider::new(kind.provider, &base, key, client).with_options(opts)),
        ),
        Dialect::Anthropic => (
            ProviderKind::Anthropic,
            Arc::new(AnthropicProvider::new(kind.provider, &base, key, client).with_options(opts)),
        ),
        Dialect::Ollama => (
            ProviderKind::Ollama,
            Arc::new(OllamaProvider::new(kind.provider, &base, key, client).with_options(opts)),
        ),
    };
    let mut models = vec![kind.chat.to_string(), kind.tool_model(), kind.model_429()];
    models.extend(kind.embed.map(str::to_string));
    let cfg = ProviderConfig::new(pkind, kind.provider, base)
        .with_api_key("sk-test-key-0000")
        .with_models(models);
    s.state().providers.add_with(cfg, provider).unwrap();
    let user = s.user(&admin, "sdk_user").await;
    let (key, key_id) = new_key(&s, &user, "sdk").await;
    Env {
        s,
        up,
        user,
        key,
        key_id,
    }
}

/// A new API key of `who` (read and write): the key and its id.
async fn new_key(s: &TestServer, who: &common::Session, name: &str) -> (String, String) {
    let r = s
        .post("/api/keys", Auth::Session(who), json!({"name": name}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    (
        r.body["key"].as_str().unwrap().to_string(),
        r.body["id"].as_str().unwrap().to_string(),
    )
}

/// Runs one SDK script and returns its JSON document.
async fn run_script(script: &str, envs: &[(&str, String)]) -> Value {
    let python = sdk_python();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sdk")
        .join(script);
    let mut cmd = tokio::process::Command::new(&python);
    common::proc::without_confab_env(cmd.as_std_mut());
    // The SDKs read these; the test's own environment must not steer them.
    for k in [
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        cmd.env_remove(k);
    }
    cmd.env("NO_PROXY", "127.0.0.1,localhost")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within 120 s"))
        .unwrap_or_else(|e| panic!("cannot run {} {script}: {e}", python.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stderr}\n{stdout}",
        out.status
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{script} printed no JSON document ({e}):\n{stdout}\n{stderr}"))
}

/// Collects every failed expectation, so one run shows all of them.
struct Checks {
    what: String,
    failed: Vec<String>,
}

impl Checks {
    fn new(what: impl Into<String>) -> Checks {
        Checks {
            what: what.into(),
            failed: Vec::new(),
        }
    }
    fn eq(&mut self, label: &str, got: &Value, want: Value) {
        if *got != want {
            self.failed.push(format!("{label}: got {got}, want {want}"));
        }
    }
    fn that(&mut self, label: &str, ok: bool, detail: impl std::fmt::Display) {
        if !ok {
            self.failed.push(format!("{label}: {detail}"));
        }
    }
    /// A step of the script must not have raised.
    fn step<'a>(&mut self, doc: &'a Value, name: &str) -> &'a Value {
        let v = &doc[name];
        if v.get("error").is_some() {
            self.failed.push(format!("{name} raised: {v}"));
        }
        v
    }
    #[track_caller]
    fn done(self, doc: &Value) {
        assert!(
            self.failed.is_empty(),
            "{}: {} failed expectation(s):\n  {}\nresult document: {doc:#}",
            self.what,
            self.failed.len(),
            self.failed.join("\n  ")
        );
    }
}

fn usage_numbers(prompt: &[&str]) -> (u64, u64) {
    let input = prompt.iter().map(|t| word_count(t)).sum();
    (input, tokens(REPLY).len() as u64)
}

/// The one request whose body mentions `marker`.
fn upstream_request(up: &FakeUpstream, marker: &str) -> Option<RecordedRequest> {
    up.chat_requests()
        .into_iter()
        .find(|r| r.body.to_string().contains(marker))
}

/// What the upstream saw for the script's plain completion (temperature
/// 0.3, max_tokens 50, stop ["END"], the system prompt) and for its tool
/// request (the weather tool), in the dialect's own words.
fn check_upstream(c: &mut Checks, up: &FakeUpstream, kind: &Kind, marker: &str) {
    let Some(plain) = upstream_request(up, &format!("{marker}-plain")) else {
        c.that("upstream", false, "never saw the plain completion");
        return;
    };
    let b = &plain.body;
    c.eq("upstream model", &b["model"], json!(kind.chat));
    match kind.dialect {
        Dialect::OpenAi => {
            c.eq("openai temperature", &b["temperature"], json!(0.3));
            c.eq("openai max_tokens", &b["max_tokens"], json!(50));
            c.eq("openai stop", &b["stop"], json!(["END"]));
            c.eq(
                "openai system message",
                &b["messages"][0],
                json!({"role": "system", "content": SYSTEM}),
            );
        }
        Dialect::Anthropic => {
            c.eq("anthropic temperature", &b["temperature"], json!(0.3));
            c.eq("anthropic max_tokens", &b["max_tokens"], json!(50));
            c.eq(
                "anthropic stop_sequences",
                &b["stop_sequences"],
                json!(["END"]),
            );
            c.eq("anthropic system", &b["system"], json!(SYSTEM));
        }
        Dialect::Ollama => {
            c.eq(
                "ollama temperature",
                &b["options"]["temperature"],
                json!(0.3),
            );
            c.eq(
                "ollama num_predict",
                &b["options"]["num_predict"],
                json!(50),
            );
            c.eq("ollama stop", &b["options"]["stop"], json!(["END"]));
            c.eq(
                "ollama system message",
                &b["messages"][0],
                json!({"role": "system", "content": SYSTEM}),
            );
        }
    }
    let Some(tool) = upstream_request(up, &format!("{marker}-tool")) else {
        c.that("upstream", false, "never saw the tool request");
        return;
    };
    let t = &tool.body["tools"][0];
    match kind.dialect {
        Dialect::OpenAi | Dialect::Ollama => {
            c.eq("tool type", &t["type"], json!("function"));
            c.eq("tool name", &t["function"]["name"], json!("get_weather"));
            c.eq(
                "tool parameters",
                &t["function"]["parameters"]["required"],
                json!(["city"]),
            );
        }
        Dialect::Anthropic => {
            c.eq("tool name", &t["name"], json!("get_weather"));
            c.eq(
                "tool input_schema",
                &t["input_schema"]["required"],
                json!(["city"]),
            );
        }
    }
}

/// Expectations every typed error shares.
fn check_error(c: &mut Checks, v: &Value, exception: &str, status: u16) {
    c.eq(
        &format!("{exception} class"),
        &v["exception"],
        json!(exception),
    );
    c.eq(&format!("{exception} status"), &v["status"], json!(status));
}

async fn openai_sdk(kind: &Kind) {
    let e = env(kind).await;
    let marker = format!("oai{}", kind.provider);
    let mut envs = vec![
        ("CONFAB_BASE_URL", format!("{}/v1", e.s.base)),
        ("CONFAB_API_KEY", e.key.clone()),
        ("CONFAB_MODEL", kind.chat.to_string()),
        ("CONFAB_TOOL_MODEL", kind.tool_model()),
        ("CONFAB_429_MODEL", kind.model_429()),
        ("CONFAB_MARKER", marker.clone()),
    ];
    envs.push(("CONFAB_EMBED_MODEL", kind.embed.unwrap_or("").to_string()));
    let doc = run_script("openai_client.py", &envs).await;
    let mut c = Checks::new(format!("openai SDK against {:?}", kind.dialect));

    let models = c.step(&doc, "models");
    let ids = models["ids"].as_array().cloned().unwrap_or_default();
    c.that(
        "models list",
        ids.contains(&json!(kind.chat)),
        format!("{} not in {ids:?}", kind.chat),
    );
    if let Some(m) = kind.embed {
        c.that(
            "models list",
            ids.contains(&json!(m)),
            format!("{m} not in {ids:?}"),
        );
    }

    let (input, output) = usage_numbers(&[SYSTEM, &format!("Say hello {marker}-plain")]);
    let r = c.step(&doc, "completion");
    c.eq("completion object", &r["object"], json!("chat.completion"));
    c.eq("completion content", &r["content"], json!(REPLY));
    c.eq("completion role", &r["role"], json!("assistant"));
    c.eq(
        "completion finish_reason",
        &r["finish_reason"],
        json!("stop"),
    );
    c.eq(
        "completion usage",
        &r["usage"],
        json!({"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output}),
    );

    let (input, output) = usage_numbers(&[&format!("Stream please {marker}-stream")]);
    let r = c.step(&doc, "stream");
    c.eq("stream content", &r["content"], json!(REPLY));
    c.eq("stream roles", &r["roles"], json!(["assistant"]));
    c.eq("stream finish_reason", &r["finish_reason"], json!("stop"));
    c.eq(
        "stream usage (include_usage)",
        &r["usage"],
        json!({"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output}),
    );
    c.that(
        "stream chunks",
        r["chunks"].as_u64().unwrap_or(0) >= 3,
        "role, content and usage chunks at least",
    );
    if let Some(s) = upstream_request(&e.up, &format!("{marker}-stream")) {
        let top_p = match kind.dialect {
            Dialect::Ollama => &s.body["options"]["top_p"],
            _ => &s.body["top_p"],
        };
        c.eq("upstream top_p", top_p, json!(0.5));
    } else {
        c.that("upstream", false, "never saw the streamed completion");
    }

    let r = c.step(&doc, "tool");
    c.eq(
        "tool finish_reason",
        &r["finish_reason"],
        json!("tool_calls"),
    );
    c.eq(
        "tool call name",
        &r["calls"][0]["name"],
        json!("get_weather"),
    );
    let args = r["calls"][0]["arguments"].as_str().unwrap_or("");
    c.that(
        "tool call arguments",
        serde_json::from_str::<Value>(args).is_ok_and(|v| v.is_object()),
        format!("not a JSON object: {args:?}"),
    );
    c.that(
        "tool call id",
        r["calls"][0]["id"].as_str().is_some_and(|i| !i.is_empty()),
        "empty",
    );
    c.that(
        "tool round trip answer",
        r["answer"]
            .as_str()
            .is_some_and(|a| a.contains(&format!("sunny-{marker}"))),
        format!("the answer does not carry the tool result: {}", r["answer"]),
    );
    let r = c.step(&doc, "tool_stream");
    c.eq(
        "streamed tool finish_reason",
        &r["finish_reason"],
        json!("tool_calls"),
    );
    c.eq(
        "streamed tool call name",
        &r["calls"][0]["name"],
        json!("get_weather"),
    );
    let args = r["calls"][0]["arguments"].as_str().unwrap_or("");
    c.that(
        "streamed tool call arguments",
        serde_json::from_str::<Value>(args).is_ok_and(|v| v.is_object()),
        format!("not a JSON object: {args:?}"),
    );

    // Explicit float, and the SDK's default (base64, which the SDK decodes):
    // a plain `client.embeddings.create(model=…, input=…)` sends the latter.
    for step in ["embedding", "embedding_default_encoding"] {
        let r = c.step(&doc, step);
        if kind.embed.is_none() {
            continue;
        }
        c.eq(&format!("{step} count"), &r["count"], json!(2));
        c.eq(&format!("{step} indexes"), &r["indexes"], json!([0, 1]));
        let dims = r["dims"].as_array().cloned().unwrap_or_default();
        c.that(
            &format!("{step} dims"),
            dims.len() == 2 && dims[0] == dims[1] && dims[0].as_u64().unwrap_or(0) > 0,
            format!("{dims:?}"),
        );
        c.that(
            &format!("{step} usage"),
            r["usage"]["prompt_tokens"].as_u64().unwrap_or(0) > 0,
            format!("{}", r["usage"]),
        );
    }

    if let Some(m) = kind.embed {
        // The upstream got the texts in its own embeddings API.
        let path = match kind.dialect {
            Dialect::Ollama => "/api/embed",
            _ => "/embeddings",
        };
        let seen =
            e.up.requests()
                .into_iter()
                .find(|r| r.path.ends_with(path) && r.body["model"] == m);
        match seen {
            Some(r) => c.eq(
                "upstream embedding input",
                &r.body["input"],
                json!([format!("first {marker}"), "second text"]),
            ),
            None => c.that("upstream", false, format!("never saw a {path} request")),
        }
    }

    check_error(&mut c, &doc["error_auth"], "AuthenticationError", 401);
    let r = &doc["error_rate_limit"];
    check_error(&mut c, r, "RateLimitError", 429);
    c.eq(
        "429 Retry-After",
        &r["retry_after"],
        json!(common_upstream::RETRY_AFTER_SECS.to_string()),
    );
    check_error(&mut c, &doc["error_not_found"], "NotFoundError", 404);

    check_upstream(&mut c, &e.up, kind, &marker);
    c.done(&doc);
}

async fn anthropic_sdk(kind: &Kind) {
    let e = env(kind).await;
    let marker = format!("ant{}", kind.provider);
    let envs = vec![
        ("CONFAB_BASE_URL", e.s.base.clone()),
        ("CONFAB_API_KEY", e.key.clone()),
        ("CONFAB_MODEL", kind.chat.to_string()),
        ("CONFAB_TOOL_MODEL", kind.tool_model()),
        ("CONFAB_429_MODEL", kind.model_429()),
        ("CONFAB_MARKER", marker.clone()),
    ];
    let doc = run_script("anthropic_client.py", &envs).await;
    let mut c = Checks::new(format!("anthropic SDK against {:?}", kind.dialect));

    let models = c.step(&doc, "models");
    let ids = models["ids"].as_array().cloned().unwrap_or_default();
    c.that(
        "models list (Anthropic shape)",
        ids.contains(&json!(kind.chat)),
        format!("{} not in {ids:?}", kind.chat),
    );

    let (input, output) = usage_numbers(&[SYSTEM, &format!("Say hello {marker}-plain")]);
    let r = c.step(&doc, "completion");
    c.eq("message type", &r["type"], json!("message"));
    c.eq("message role", &r["role"], json!("assistant"));
    c.eq("message content", &r["content"], json!(REPLY));
    c.eq("message stop_reason", &r["stop_reason"], json!("end_turn"));
    c.eq(
        "message usage",
        &r["usage"],
        json!({"input_tokens": input, "output_tokens": output}),
    );

    let (input, output) = usage_numbers(&[&format!("Stream please {marker}-stream")]);
    let r = c.step(&doc, "stream");
    c.eq("stream text", &r["content"], json!(REPLY));
    c.eq("stream final message", &r["final_content"], json!(REPLY));
    c.eq("stream stop_reason", &r["stop_reason"], json!("end_turn"));
    c.eq(
        "stream usage",
        &r["usage"],
        json!({"input_tokens": input, "output_tokens": output}),
    );
    let events = r["events"].as_array().cloned().unwrap_or_default();
    for want in [
        "message_start",
        "content_block_start",
        "text",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ] {
        c.that(
            "stream event types",
            events.contains(&json!(want)),
            format!("no {want} in {events:?}"),
        );
    }

    let r = c.step(&doc, "tool");
    c.eq("tool stop_reason", &r["stop_reason"], json!("tool_use"));
    c.eq(
        "tool_use name",
        &r["calls"][0]["name"],
        json!("get_weather"),
    );
    c.that(
        "tool_use input",
        r["calls"][0]["input"].is_object(),
        format!("not an object: {}", r["calls"][0]["input"]),
    );
    c.that(
        "tool round trip answer",
        r["answer"]
            .as_str()
            .is_some_and(|a| a.contains(&format!("sunny-{marker}"))),
        format!("the answer does not carry the tool result: {}", r["answer"]),
    );
    let r = c.step(&doc, "tool_stream");
    c.eq(
        "streamed tool stop_reason",
        &r["stop_reason"],
        json!("tool_use"),
    );
    c.eq(
        "streamed tool_use name",
        &r["calls"][0]["name"],
        json!("get_weather"),
    );
    c.that(
        "streamed tool_use input",
        r["calls"][0]["input"].is_object(),
        format!("not an object: {}", r["calls"][0]["input"]),
    );

    check_error(&mut c, &doc["error_auth"], "AuthenticationError", 401);
    let r = &doc["error_rate_limit"];
    check_error(&mut c, r, "RateLimitError", 429);
    c.eq(
        "429 retry-after",
        &r["retry_after"],
        json!(common_upstream::RETRY_AFTER_SECS.to_string()),
    );
    check_error(&mut c, &doc["error_not_found"], "NotFoundError", 404);

    check_upstream(&mut c, &e.up, kind, &marker);
    c.done(&doc);
}

#[tokio::test]
async fn openai_sdk_against_openai_provider() {
    openai_sdk(&OPENAI).await;
}

#[tokio::test]
async fn openai_sdk_against_anthropic_provider() {
    openai_sdk(&ANTHROPIC).await;
}

#[tokio::test]
async fn openai_sdk_against_ollama_provider() {
    openai_sdk(&OLLAMA).await;
}

#[tokio::test]
async fn anthropic_sdk_against_openai_provider() {
    anthropic_sdk(&OPENAI).await;
}

#[tokio::test]
async fn anthropic_sdk_against_anthropic_provider() {
    anthropic_sdk(&ANTHROPIC).await;
}

#[tokio::test]
async fn anthropic_sdk_against_ollama_provider() {
    anthropic_sdk(&OLLAMA).await;
}

/// 50 concurrent calls through both SDKs' async clients, over two keys,
/// against a daily quota of 20 messages: exactly 20 are admitted, the
/// other 30 raise the SDK's RateLimitError (429 with Retry-After), and
/// `/api/usage` per key adds up to what the admitted calls reported.
#[tokio::test]
async fn quota_holds_under_50_concurrent_sdk_calls_and_usage_adds_up_per_key() {
    const QUOTA: u64 = 20;
    let kind = &OPENAI;
    let e = env_with(kind, |c| c.quota.messages_per_day = Some(QUOTA)).await;
    // Slow enough that the calls overlap.
    e.up.set_token_delay(Duration::from_millis(20));
    let (key2, key2_id) = new_key(&e.s, &e.user, "second").await;
    let doc = run_script(
        "concurrent_clients.py",
        &[
            ("CONFAB_BASE_URL", e.s.base.clone()),
            ("CONFAB_API_KEY", e.key.clone()),
            ("CONFAB_API_KEY_2", key2),
            ("CONFAB_MODEL", kind.chat.to_string()),
            ("CONFAB_CALLS", "50".into()),
        ],
    )
    .await;
    let calls = doc["calls"].as_array().expect("calls");
    assert_eq!(calls.len(), 50, "{doc:#}");
    let mut per_key = [(0u64, 0u64, 0u64); 2];
    let (mut ok, mut refused) = (0, 0);
    for c in calls {
        if c["ok"] == true {
            ok += 1;
            let k = &mut per_key[c["key"].as_u64().unwrap() as usize];
            k.0 += 1;
            k.1 += c["input_tokens"].as_u64().unwrap();
            k.2 += c["output_tokens"].as_u64().unwrap();
            assert_eq!(c["output_tokens"], tokens(REPLY).len() as u64, "{c}");
        } else {
            refused += 1;
            assert_eq!(c["exception"], "RateLimitError", "{c}");
            assert_eq!(c["status"], 429, "{c}");
            assert!(
                c["retry_after"].as_str().is_some_and(|r| !r.is_empty()),
                "{c}"
            );
        }
    }
    assert_eq!((ok, refused), (QUOTA, 50 - QUOTA), "{doc:#}");

    let r = e.s.get("/api/usage", Auth::Session(&e.user)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["totals"]["messages"], QUOTA, "{}", r.text);
    let rows = r.body["keys"].as_array().expect("usage per key");
    for (id, (n, input, output)) in [(&e.key_id, per_key[0]), (&key2_id, per_key[1])] {
        if n == 0 {
            continue;
        }
        let row = rows
            .iter()
            .find(|k| k["api_key_id"] == *id)
            .unwrap_or_else(|| panic!("no usage row for key {id}: {}", r.text));
        assert_eq!(row["messages"], n, "{row}");
        assert_eq!(row["input_tokens"], input, "{row}");
        assert_eq!(row["output_tokens"], output, "{row}");
    }
    let sum = |f: &str| rows.iter().map(|k| k[f].as_u64().unwrap()).sum::<u64>();
    assert_eq!(sum("messages"), QUOTA);
    assert_eq!(sum("input_tokens"), per_key[0].1 + per_key[1].1);
    assert_eq!(sum("output_tokens"), per_key[0].2 + per_key[1].2);
}
