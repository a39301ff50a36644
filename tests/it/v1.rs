//! `/v1`, the OpenAI- and Anthropic-compatible front end, through the real
//! server and the fake upstream speaking each provider's wire format: the
//! model lists in both shapes, completions streamed (exact chunk and event
//! sequences) and not against the three provider kinds, authentication by
//! each header and the refusal of browser sessions, scopes, each error in
//! each API's shape and status, quotas and rate limits under 50 concurrent
//! calls, usage per API key, statelessness, the audit log and JSON 404s.

use crate::common::{Auth, Session, SseReader, TestServer};
use crate::common_upstream::{self, FakeUpstream, tokens};
use confab::config::Config;
use confab::providers::registry::ProviderConfig;
use confab::providers::{
    AnthropicProvider, OllamaProvider, OpenAiProvider, Provider, ProviderKind, ProviderOptions,
    RetryPolicy,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// The three provider kinds: (provider name = model prefix, kind).
const KINDS: [(&str, ProviderKind); 3] = [
    ("oa", ProviderKind::Openai),
    ("an", ProviderKind::Anthropic),
    ("ol", ProviderKind::Ollama),
];

/// Behaviours each provider offers as `<prefix>+<flag>` models.
const FLAGS: [&str; 5] = ["error-midstream", "500", "missing-model", "slow", "tools"];

/// Models per provider: the plain one, one per flag, and `<prefix>-embed`.
const PER_PROVIDER: usize = 1 + FLAGS.len() + 1;

struct Env {
    s: TestServer,
    up: FakeUpstream,
    admin: Session,
    /// An API key of the admin with read and write.
    key: String,
}

async fn env(f: impl FnOnce(&mut Config)) -> Env {
    let up = FakeUpstream::start().await;
    let s = TestServer::start_with(f).await;
    let admin = s.setup_admin("admin").await;
    let client = confab::providers::default_client();
    let opts = ProviderOptions {
        idle_timeout: Duration::from_secs(10),
        retry: RetryPolicy::none(),
        ..Default::default()
    };
    for (p, kind) in KINDS {
        let base = match kind {
            ProviderKind::Openai => up.openai_base(),
            ProviderKind::Anthropic => up.anthropic_base(),
            ProviderKind::Ollama => up.ollama_base(),
        };
        let key = (kind != ProviderKind::Ollama).then(|| "sk-test-key-0000".to_string());
        let provider: Arc<dyn Provider> = match kind {
            ProviderKind::Openai => Arc::new(
                OpenAiProvider::new(p, &base, key, client.clone()).with_options(opts.clone()),
            ),
            ProviderKind::Anthropic => Arc::new(
                AnthropicProvider::new(p, &base, key, client.clone()).with_options(opts.clone()),
            ),
            ProviderKind::Ollama => Arc::new(
                OllamaProvider::new(p, &base, key, client.clone()).with_options(opts.clone()),
            ),
        };
        let mut models = vec![p.to_string()];
        models.extend(FLAGS.iter().map(|f| format!("{p}+{f}")));
        models.push(format!("{p}-embed"));
        let cfg = ProviderConfig::new(kind, p, base)
            .with_api_key("sk-test-key-0000")
            .with_models(models);
        s.state().providers.add_with(cfg, provider).unwrap();
    }
    let key = new_key(&s, &admin, "main", &["read", "write"]).await;
    Env { s, up, admin, key }
}

async fn new_key(s: &TestServer, who: &Session, name: &str, scopes: &[&str]) -> String {
    new_key_with_id(s, who, name, scopes).await.0
}

/// A new API key and its id.
async fn new_key_with_id(
    s: &TestServer,
    who: &Session,
    name: &str,
    scopes: &[&str],
) -> (String, String) {
    let r = s
        .post(
            "/api/keys",
            Auth::Session(who),
            json!({"name": name, "scopes": scopes}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    (
        r.body["key"].as_str().unwrap().to_string(),
        r.body["id"].as_str().unwrap().to_string(),
    )
}

/// How a request presents its key.
#[derive(Clone, Copy)]
enum Via<'a> {
    Bearer(&'a str),
    /// `X-API-Key` as the seed requirement spells it.
    XApiKey(&'a str),
    /// Anthropic's SDK: `x-api-key` and `anthropic-version`.
    Anthropic(&'a str),
    None,
}

fn with(b: reqwest::RequestBuilder, via: Via<'_>) -> reqwest::RequestBuilder {
    match via {
        Via::Bearer(k) => b.bearer_auth(k),
        Via::XApiKey(k) => b.header("X-API-Key", k),
        Via::Anthropic(k) => b
            .header("x-api-key", k)
            .header("anthropic-version", "2023-06-01"),
        Via::None => b,
    }
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
    text: String,
}

async fn answer(r: reqwest::Response) -> Answer {
    let status = r.status();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    Answer {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

async fn post(s: &TestServer, path: &str, via: Via<'_>, body: Value) -> Answer {
    answer(
        with(s.http.post(s.url(path)), via)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn get(s: &TestServer, path: &str, via: Via<'_>) -> Answer {
    answer(with(s.http.get(s.url(path)), via).send().await.unwrap()).await
}

/// Asserts OpenAI's error shape: `{"error":{message,type,param,code}}`.
#[track_caller]
fn openai_error(a: &Answer, status: u16, kind: &str, code: &str) {
    assert_eq!(a.status.as_u16(), status, "{}", a.text);
    let e = &a.body["error"];
    assert_eq!(e["type"], kind, "{}", a.text);
    assert_eq!(e["code"], code, "{}", a.text);
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(e.as_object().unwrap().contains_key("param"), "{}", a.text);
    assert_eq!(a.body.as_object().unwrap().len(), 1, "{}", a.text);
}

/// Asserts Anthropic's error shape: `{"type":"error","error":{type,message}}`.
#[track_caller]
fn anthropic_error(a: &Answer, status: u16, kind: &str) {
    assert_eq!(a.status.as_u16(), status, "{}", a.text);
    assert_eq!(a.body["type"], "error", "{}", a.text);
    assert_eq!(a.body["error"]["type"], kind, "{}", a.text);
    assert!(
        a.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
}

fn chat_body(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

fn messages_body(model: &str, text: &str) -> Value {
    json!({"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": text}]})
}

async fn open(s: &TestServer, path: &str, via: Via<'_>, body: Value) -> SseReader {
    let r = with(s.http.post(s.url(path)), via)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    SseReader::new(r)
}

#[tokio::test]
async fn models_are_listed_in_each_apis_shape() {
    let e = env(|_| {}).await;
    let a = get(&e.s, "/v1/models", Via::Bearer(&e.key)).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["object"], "list");
    let data = a.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3 * PER_PROVIDER);
    for (p, _) in KINDS {
        let m = data.iter().find(|m| m["id"] == p).unwrap();
        assert_eq!(m["object"], "model");
        assert_eq!(m["owned_by"], p);
        assert!(m["created"].is_i64());
    }

    let a = get(&e.s, "/v1/models", Via::Anthropic(&e.key)).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let data = a.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3 * PER_PROVIDER);
    assert!(data.iter().all(|m| m["type"] == "model"
        && m["display_name"].is_string()
        && m["created_at"].is_string()));
    assert_eq!(a.body["has_more"], false);
    assert_eq!(a.body["first_id"], data[0]["id"]);
    assert_eq!(a.body["last_id"], data[data.len() - 1]["id"]);
    assert!(a.body.get("object").is_none());

    // One model, in each shape (the SDKs' `models.retrieve`).
    let a = get(&e.s, "/v1/models/an", Via::Bearer(&e.key)).await;
    assert_eq!(
        a.body,
        json!({"id": "an", "object": "model", "created": 0, "owned_by": "an"})
    );
    let a = get(&e.s, "/v1/models/an", Via::Anthropic(&e.key)).await;
    assert_eq!(a.body["type"], "model");
    assert_eq!(a.body["id"], "an");
    let a = get(&e.s, "/v1/models/nope", Via::Bearer(&e.key)).await;
    openai_error(&a, 404, "invalid_request_error", "model_not_found");
    let a = get(&e.s, "/v1/models/nope", Via::Anthropic(&e.key)).await;
    anthropic_error(&a, 404, "not_found_error");
}

#[tokio::test]
async fn chat_completions_answer_from_every_provider_kind() {
    let e = env(|_| {}).await;
    for (p, _) in KINDS {
        let a = post(
            &e.s,
            "/v1/chat/completions",
            Via::Bearer(&e.key),
            json!({
                "model": p,
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": [{"type": "text", "text": "say hello"}]}
                ],
                "temperature": 0.2, "max_tokens": 64, "stop": ["END"],
                "store": false, "metadata": {"tag": "x"}
            }),
        )
        .await;
        assert_eq!(a.status, 200, "{p}: {}", a.text);
        let b = &a.body;
        assert_eq!(b["object"], "chat.completion");
        assert!(b["id"].as_str().unwrap().starts_with("chatcmpl-"));
        assert_eq!(b["model"], p);
        let choice = &b["choices"][0];
        assert_eq!(b["choices"].as_array().unwrap().len(), 1);
        assert_eq!(choice["index"], 0);
        assert_eq!(choice["message"]["role"], "assistant");
        assert_eq!(choice["message"]["content"], e.up.reply_for(p), "{p}");
        assert_eq!(choice["finish_reason"], "stop");
        let u = &b["usage"];
        assert_eq!(
            u["completion_tokens"],
            tokens(&e.up.reply_for(p)).len() as u64,
            "{p}: the provider's own count"
        );
        assert_eq!(
            u["total_tokens"].as_u64().unwrap(),
            u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
        );
        assert!(u.get("estimated").is_none(), "{p}: reported, not estimated");
        // The parameters reached the provider in its own wire format.
        let sent = e.up.chat_requests().pop().unwrap();
        assert_eq!(sent.model(), Some(p));
        let b = &sent.body;
        match p {
            "oa" => {
                assert_eq!(b["temperature"].as_f64().unwrap() as f32, 0.2);
                assert!(
                    b["max_tokens"] == 64 || b["max_completion_tokens"] == 64,
                    "{b}"
                );
                assert_eq!(b["stop"], json!(["END"]));
            }
            "an" => {
                assert_eq!(b["temperature"].as_f64().unwrap() as f32, 0.2);
                assert_eq!(b["max_tokens"], 64);
                assert_eq!(b["stop_sequences"], json!(["END"]));
                assert_eq!(b["system"], "be brief");
            }
            _ => {
                assert_eq!(b["options"]["temperature"].as_f64().unwrap() as f32, 0.2);
                assert_eq!(b["options"]["num_predict"], 64);
                assert_eq!(b["options"]["stop"], json!(["END"]));
            }
        }
    }
}

#[tokio::test]
async fn streamed_chat_completions_send_openais_chunk_sequence() {
    let e = env(|_| {}).await;
    for (p, _) in KINDS {
        let sse = open(
            &e.s,
            "/v1/chat/completions",
            Via::Bearer(&e.key),
            json!({"model": p, "stream": true, "stream_options": {"include_usage": true},
                   "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
        let events = sse.collect().await;
        assert!(
            events.iter().all(|e| e.event == "message"),
            "data-only lines"
        );
        let n = events.len();
        assert_eq!(events[n - 1].data, Value::String("[DONE]".into()), "{p}");
        let chunks: Vec<&Value> = events[..n - 1].iter().map(|e| &e.data).collect();
        let id = chunks[0]["id"].as_str().unwrap();
        for c in &chunks {
            assert_eq!(c["object"], "chat.completion.chunk");
            assert_eq!(c["id"], id, "one id for the whole stream");
            assert_eq!(c["model"], p);
            assert!(c.as_object().unwrap().contains_key("usage"));
        }
        // The role first, then content, then the finish, then the usage.
        assert_eq!(
            chunks[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": ""})
        );
        let usage = chunks[chunks.len() - 1];
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(
            usage["usage"]["completion_tokens"],
            tokens(&e.up.reply_for(p)).len() as u64
        );
        let finish = chunks[chunks.len() - 2];
        assert_eq!(finish["choices"][0]["delta"], json!({}));
        assert_eq!(finish["choices"][0]["finish_reason"], "stop");
        let text: String = chunks[1..chunks.len() - 2]
            .iter()
            .map(|c| {
                assert!(c["choices"][0]["finish_reason"].is_null());
                assert!(c["usage"].is_null());
                c["choices"][0]["delta"]["content"].as_str().unwrap()
            })
            .collect();
        assert_eq!(text, e.up.reply_for(p), "{p}");
    }

    // Without include_usage no chunk carries a usage key.
    let events = open(
        &e.s,
        "/v1/chat/completions",
        Via::Bearer(&e.key),
        json!({"model": "oa", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await
    .collect()
    .await;
    let n = events.len();
    assert_eq!(events[n - 1].data, Value::String("[DONE]".into()));
    assert!(events[..n - 1].iter().all(
        |e| e.data.get("usage").is_none() && !e.data["choices"].as_array().unwrap().is_empty()
    ));
}

#[tokio::test]
async fn anthropic_messages_answer_from_every_provider_kind() {
    let e = env(|_| {}).await;
    for (p, _) in KINDS {
        let a = post(
            &e.s,
            "/v1/messages",
            Via::Anthropic(&e.key),
            json!({"model": p, "max_tokens": 50, "system": "be brief",
                   "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                   "stop_sequences": ["END"], "metadata": {"user_id": "u-1"}}),
        )
        .await;
        assert_eq!(a.status, 200, "{p}: {}", a.text);
        let b = &a.body;
        assert_eq!(b["type"], "message");
        assert_eq!(b["role"], "assistant");
        assert!(b["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(b["model"], p);
        assert_eq!(
            b["content"],
            json!([{"type": "text", "text": e.up.reply_for(p)}])
        );
        assert_eq!(b["stop_reason"], "end_turn");
        assert!(b["stop_sequence"].is_null());
        assert_eq!(
            b["usage"]["output_tokens"],
            tokens(&e.up.reply_for(p)).len() as u64
        );
        assert!(b["usage"]["input_tokens"].as_u64().unwrap() > 0);

        let events = open(
            &e.s,
            "/v1/messages",
            Via::Anthropic(&e.key),
            json!({"model": p, "max_tokens": 50, "stream": true,
                   "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await
        .collect()
        .await;
        let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
        let deltas = names.len() - 6;
        let mut want = vec!["message_start", "content_block_start", "ping"];
        want.extend(std::iter::repeat_n("content_block_delta", deltas));
        want.extend(["content_block_stop", "message_delta", "message_stop"]);
        assert_eq!(names, want, "{p}");
        for ev in &events {
            assert_eq!(ev.data["type"], ev.event, "the data names its event");
        }
        assert_eq!(events[0].data["message"]["role"], "assistant");
        assert_eq!(events[0].data["message"]["content"], json!([]));
        assert_eq!(
            events[1].data["content_block"],
            json!({"type": "text", "text": ""})
        );
        let text: String = events[3..3 + deltas]
            .iter()
            .map(|e| {
                assert_eq!(e.data["index"], 0);
                assert_eq!(e.data["delta"]["type"], "text_delta");
                e.data["delta"]["text"].as_str().unwrap()
            })
            .collect();
        assert_eq!(text, e.up.reply_for(p), "{p}");
        let md = &events[events.len() - 2].data;
        assert_eq!(md["delta"]["stop_reason"], "end_turn");
        assert_eq!(
            md["usage"]["output_tokens"],
            tokens(&e.up.reply_for(p)).len() as u64
        );
    }
}

#[tokio::test]
async fn keys_are_taken_from_each_header_and_sessions_are_refused() {
    let e = env(|_| {}).await;
    for via in [
        Via::Bearer(&e.key),
        Via::XApiKey(&e.key),
        Via::Anthropic(&e.key),
    ] {
        let a = post(&e.s, "/v1/chat/completions", via, chat_body("oa", "hi")).await;
        assert_eq!(a.status, 200, "{}", a.text);
    }
    // A browser session (cookie and CSRF header) is not a credential here.
    let r =
        e.s.http
            .post(e.s.url("/v1/chat/completions"))
            .header("cookie", format!("confab_session={}", e.admin.cookie))
            .header("x-csrf-token", &e.admin.csrf)
            .json(&chat_body("oa", "hi"))
            .send()
            .await
            .unwrap();
    let a = answer(r).await;
    openai_error(&a, 401, "authentication_error", "invalid_api_key");
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("session")
    );
    // Nor is a JWT access token: /v1 takes API keys only.
    let a = post(
        &e.s,
        "/v1/chat/completions",
        Via::Bearer("eyJhbGciOi.x.y"),
        chat_body("oa", "hi"),
    )
    .await;
    openai_error(&a, 401, "authentication_error", "invalid_api_key");
    let a = post(
        &e.s,
        "/v1/chat/completions",
        Via::None,
        chat_body("oa", "hi"),
    )
    .await;
    openai_error(&a, 401, "authentication_error", "invalid_api_key");
    let a = post(
        &e.s,
        "/v1/chat/completions",
        Via::Bearer("cfk_not_a_real_key_000000"),
        chat_body("oa", "hi"),
    )
    .await;
    openai_error(&a, 401, "authentication_error", "invalid_api_key");
    let a = post(
        &e.s,
        "/v1/messages",
        Via::Anthropic("cfk_not_a_real_key_000000"),
        messages_body("oa", "hi"),
    )
    .await;
    anthropic_error(&a, 401, "authentication_error");
    let a = get(&e.s, "/v1/models", Via::None).await;
    openai_error(&a, 401, "authentication_error", "invalid_api_key");

    // Scopes: read lists models, write generates.
    let reader = new_key(&e.s, &e.admin, "reader", &["read"]).await;
    assert_eq!(
        get(&e.s, "/v1/models", Via::Bearer(&reader)).await.status,
        200
    );
    let a = post(
        &e.s,
        "/v1/chat/completions",
        Via::Bearer(&reader),
        chat_body("oa", "hi"),
    )
    .await;
    openai_error(&a, 403, "permission_error", "permission_denied");
    let a = post(
        &e.s,
        "/v1/messages",
        Via::Anthropic(&reader),
        messages_body("oa", "hi"),
    )
    .await;
    anthropic_error(&a, 403, "permission_error");
    let a = post(
        &e.s,
        "/v1/embeddings",
        Via::Bearer(&reader),
        json!({"model": "oa", "input": "x"}),
    )
    .await;
    openai_error(&a, 403, "permission_error", "permission_denied");
    let writer = new_key(&e.s, &e.admin, "writer", &["write"]).await;
    let a = get(&e.s, "/v1/models", Via::Bearer(&writer)).await;
    openai_error(&a, 403, "permission_error", "permission_denied");
}

#[tokio::test]
async fn errors_come_in_each_apis_shape_and_status() {
    let e = env(|c| c.max_body_bytes = 64 * 1024).await;
    let k = &e.key;
    // Unknown model: 404 NotFoundError.
    let a = post(
        &e.s,
        "/v1/chat/completions",
        Via::Bearer(k),
        chat_body("nope", "hi"),
    )
    .await;
    openai_error(&a, 404, "invalid_request_error", "model_not_found");
    let a = post(
        &e.s,
        "/v1/messages",
        Via::Anthropic(k),
        messages_body("nope", "hi"),
    )
    .await;
    anthropic_error(&a, 404, "not_found_error");

    // Malformed JSON, wrong types, refused and unknown fields: 400.
    let r =
        e.s.http
            .post(e.s.url("/v1/chat/completions"))
            .bearer_auth(k)
            .header("content-type", "application/json")
            .body("{\"model\": ")
            .send()
            .await
            .unwrap();
    openai_error(
        &answer(r).await,
        400,
        "invalid_request_error",
        "invalid_request",
    );
    let r =
        e.s.http
            .post(e.s.url("/v1/messages"))
            .header("x-api-key", k)
            .header("anthropic-version", "2023-06-01")
            .header("content-type", "application/json")
            .body("[1, 2]")
            .send()
            .await
            .unwrap();
    anthropic_error(&answer(r).await, 400, "invalid_request_error");
    for (extra, param) in [
        (json!({"n": 3}), "n"),
        (json!({"logprobs": true}), "logprobs"),
        (json!({"logit_bias": {"50256": -100}}), "logit_bias"),
        (json!({"temperature": "hot"}), "temperature"),
        (json!({"frobnicate": true}), "frobnicate"),
    ] {
        let mut b = chat_body("oa", "hi");
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let a = post(&e.s, "/v1/chat/completions", Via::Bearer(k), b).await;
        openai_error(&a, 400, "invalid_request_error", "invalid_request");
        assert_eq!(a.body["error"]["param"], param, "{}", a.text);
    }
    // An image part whose bytes are no image.
    let image = json!({"model": "oa", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]});
    let a = post(&e.s, "/v1/chat/completions", Via::Bearer(k), image).await;
    openai_error(&a, 400, "invalid_request_error", "invalid_request");
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("PNG, JPEG, GIF or WebP"),
        "{}",
        a.text
    );
    // Anthropic's API requires max_tokens.
    let a = post(
        &e.s,
        "/v1/messages",
        Via::Anthropic(k),
        json!({"model": "oa", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    anthropic_error(&a, 400, "invalid_request_error");
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens")
    );
    let a = post(&e.s, "/v1/messages", Via::Anthropic(k),
        json!({"model": "oa", "max_tokens": 5, "top_k": 5, "messages": [{"role": "user", "content": "hi"}]})).await;
    anthropic_error(&a, 400, "invalid_request_error");

    // Over the body limit: 413 in the API's shape.
    let big = "x".repeat(100 * 1024);
    let a = post(
        &e.s,
        "/v1/chat/completions",
        Via::Bearer(k),
        chat_body("oa", &big),
    )
    .await;
    assert_eq!(a.status, 413, "{}", a.text);
    assert_eq!(
        a.body["error"]["type"], "invalid_request_error",
        "{}",
        a.text
    );
    let a = post(
        &e.s,
        "/v1/messages",
        Via::Anthropic(k),
        messages_body("oa", &big),
    )
    .await;
    anthropic_error(&a, 413, "request_too_large");

    // The provider fails before answering: 502 APIError.
    let a = post(
        &e.s,
        "/v1/chat/completions",
        Via::Bearer(k),
        chat_body("oa+500", "hi"),
    )
    .await;
    openai_error(&a, 502, "api_error", "provider_error");
    let a = post(
        &e.s,
        "/v1/messages",
        Via::Anthropic(k),
        messages_body("an+500", "hi"),
    )
    .await;
    anthropic_error(&a, 502, "api_error");

    // It fails mid-answer: the API's in-stream error, and the stream ends.
    for (p, _) in KINDS {
        let model = format!("{p}+error-midstream");
        let events = open(&e.s, "/v1/chat/completions", Via::Bearer(k),
            json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
            .await
            .collect()
            .await;
        let last = &events.last().unwrap().data;
        assert_eq!(last["error"]["type"], "api_error", "{p}: {last}");
        assert!(
            !events
                .iter()
                .any(|e| e.data == Value::String("[DONE]".into()))
        );
        let text: String = events
            .iter()
            .filter_map(|e| e.data["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, common_upstream::partial(&e.up.reply_for(&model)));

        let events = open(&e.s, "/v1/messages", Via::Anthropic(k),
            json!({"model": model, "max_tokens": 9, "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
            .await
            .collect()
            .await;
        let last = events.last().unwrap();
        assert_eq!(last.event, "error", "{p}");
        assert_eq!(last.data["type"], "error");
        assert_eq!(last.data["error"]["type"], "api_error");
        assert!(!events.iter().any(|e| e.event == "message_stop"));
    }

    // Embeddings from a provider that has none: 400, said so.
    let a = post(
        &e.s,
        "/v1/embeddings",
        Via::Bearer(k),
        json!({"model": "an", "input": ["a", "b"]}),
    )
    .await;
    openai_error(&a, 400, "invalid_request_error", "invalid_request");
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no embeddings")
    );
    let a = post(
        &e.s,
        "/v1/embeddings",
        Via::Bearer(k),
        json!({"model": "oa", "input": "a", "encoding_format": "hex"}),
    )
    .await;
    openai_error(&a, 400, "invalid_request_error", "invalid_request");
    assert_eq!(a.body["error"]["param"], "encoding_format");
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_in_each_shape() {
    let e = env(|c| {
        c.limits.chat_per_minute = 1;
        c.limits.chat_burst = 2;
    })
    .await;
    let k = &e.key;
    for _ in 0..2 {
        let a = post(
            &e.s,
            "/v1/chat/completions",
            Via::Bearer(k),
            chat_body("oa", "hi"),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.text);
    }
    let a = post(
        &e.s,
        "/v1/chat/completions",
        Via::Bearer(k),
        chat_body("oa", "hi"),
    )
    .await;
    openai_error(&a, 429, "rate_limit_error", "rate_limit_exceeded");
    let secs: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(secs >= 1);
    let a = post(
        &e.s,
        "/v1/messages",
        Via::Anthropic(k),
        messages_body("oa", "hi"),
    )
    .await;
    anthropic_error(&a, 429, "rate_limit_error");
    assert!(a.headers.contains_key("retry-after"));
    // Listing models is not generating: still allowed.
    assert_eq!(get(&e.s, "/v1/models", Via::Bearer(k)).await.status, 200);
}

/// 50 concurrent calls against a daily quota of 20 messages: exactly 20
/// are admitted, the rest get 429 with Retry-After; the usage of each key
/// adds up to the sum of the calls it made.
#[tokio::test]
async fn quota_holds_under_50_concurrent_calls_and_usage_adds_up_per_key() {
    let e = env(|c| c.quota.messages_per_day = Some(20)).await;
    e.up.set_token_delay(Duration::from_millis(20));
    let (second, second_id) = new_key_with_id(&e.s, &e.admin, "second", &["read", "write"]).await;
    let listed = e.s.get("/api/keys", Auth::Session(&e.admin)).await;
    let main_id = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "main")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut calls = Vec::new();
    for i in 0..50 {
        let s_http = e.s.http.clone();
        let url = e.s.url(if i % 2 == 0 {
            "/v1/chat/completions"
        } else {
            "/v1/messages"
        });
        let key = if i % 3 == 0 {
            second.clone()
        } else {
            e.key.clone()
        };
        let model = KINDS[i % 3].0;
        calls.push(tokio::spawn(async move {
            let b = s_http.post(url.clone());
            let r = if url.ends_with("/v1/messages") {
                b.header("x-api-key", &key)
                    .header("anthropic-version", "2023-06-01")
                    .json(&messages_body(model, "count me"))
            } else {
                b.bearer_auth(&key).json(&chat_body(model, "count me"))
            };
            (key, answer(r.send().await.unwrap()).await)
        }));
    }
    let mut ok = 0;
    let mut refused = 0;
    let mut spent: std::collections::HashMap<String, (u64, u64, u64)> = Default::default();
    for c in calls {
        let (key, a) = c.await.unwrap();
        match a.status.as_u16() {
            200 => {
                ok += 1;
                let (i, o) = if a.body["object"] == "chat.completion" {
                    (
                        a.body["usage"]["prompt_tokens"].as_u64().unwrap(),
                        a.body["usage"]["completion_tokens"].as_u64().unwrap(),
                    )
                } else {
                    (
                        a.body["usage"]["input_tokens"].as_u64().unwrap(),
                        a.body["usage"]["output_tokens"].as_u64().unwrap(),
                    )
                };
                let s = spent.entry(key).or_default();
                s.0 += 1;
                s.1 += i;
                s.2 += o;
            }
            429 => {
                refused += 1;
                assert!(a.headers.contains_key("retry-after"), "{}", a.text);
                let t = if a.body["type"] == "error" {
                    a.body["error"]["type"].clone()
                } else {
                    a.body["error"]["code"].clone()
                };
                assert!(
                    t == "rate_limit_error" || t == "insufficient_quota",
                    "{}",
                    a.text
                );
            }
            other => panic!("unexpected {other}: {}", a.text),
        }
    }
    assert_eq!((ok, refused), (20, 30));

    let r = e.s.get("/api/usage", Auth::Session(&e.admin)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["totals"]["messages"], 20);
    let keys = r.body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), spent.len());
    for (key, (n, i, o)) in &spent {
        let id = if *key == second { &second_id } else { &main_id };
        let row = keys.iter().find(|k| k["api_key_id"] == *id).unwrap();
        assert_eq!(row["messages"], *n);
        assert_eq!(row["input_tokens"], *i);
        assert_eq!(row["output_tokens"], *o);
        assert_eq!(row["username"], "admin");
    }
    let sum = |f: &str| keys.iter().map(|k| k[f].as_u64().unwrap()).sum::<u64>();
    assert_eq!(
        sum("input_tokens"),
        r.body["totals"]["input_tokens"].as_u64().unwrap()
    );
    assert_eq!(
        sum("output_tokens"),
        r.body["totals"]["output_tokens"].as_u64().unwrap()
    );

    // The admin report groups the same by key.
    let r =
        e.s.get("/api/admin/usage?group_by=key", Auth::Session(&e.admin))
            .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["group_by"], "key");
    let admin_keys = r.body["keys"].as_array().unwrap();
    assert_eq!(admin_keys.len(), spent.len());
    assert_eq!(
        admin_keys
            .iter()
            .map(|k| k["messages"].as_u64().unwrap())
            .sum::<u64>(),
        20
    );
    assert!(
        admin_keys
            .iter()
            .all(|k| k["name"] == "main" || k["name"] == "second")
    );
}

/// The chat rate limit under 50 concurrent calls: exactly the burst.
#[tokio::test]
async fn rate_limit_admits_exactly_the_burst_under_50_concurrent_calls() {
    let e = env(|c| {
        c.limits.chat_per_minute = 1;
        c.limits.chat_burst = 7;
    })
    .await;
    let mut calls = Vec::new();
    for _ in 0..50 {
        let http = e.s.http.clone();
        let url = e.s.url("/v1/chat/completions");
        let key = e.key.clone();
        calls.push(tokio::spawn(async move {
            answer(
                http.post(url)
                    .bearer_auth(key)
                    .json(&chat_body("oa", "hi"))
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }));
    }
    let mut ok = 0;
    for c in calls {
        let a = c.await.unwrap();
        match a.status.as_u16() {
            200 => ok += 1,
            429 => openai_error(&a, 429, "rate_limit_error", "rate_limit_exceeded"),
            s => panic!("{s}: {}", a.text),
        }
    }
    assert_eq!(ok, 7);
}

#[tokio::test]
async fn calls_are_stateless_audited_without_content_and_counted() {
    let e = env(|_| {}).await;
    let secret = "my-secret-prompt-words";
    let a = post(
        &e.s,
        "/v1/chat/completions",
        Via::Bearer(&e.key),
        chat_body("oa", secret),
    )
    .await;
    assert_eq!(a.status, 200);
    let events = open(&e.s, "/v1/messages", Via::Anthropic(&e.key),
        json!({"model": "an", "max_tokens": 20, "stream": true, "messages": [{"role": "user", "content": secret}]}))
        .await
        .collect()
        .await;
    assert_eq!(events.last().unwrap().event, "message_stop");
    let a = post(
        &e.s,
        "/v1/chat/completions",
        Via::Bearer(&e.key),
        chat_body("nope", secret),
    )
    .await;
    assert_eq!(a.status, 404);

    // No conversation was created.
    let r = e.s.get("/api/conversations", Auth::Session(&e.admin)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["items"], json!([]), "{}", r.text);

    // Audited: who, which model, how it ended; never the content.
    // The entries are written as each call ends; wait (bounded) for both.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r =
            e.s.get("/api/admin/audit?action=v1.", Auth::Session(&e.admin))
                .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let n = r.body["items"].as_array().unwrap().len();
        if n >= 3 || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let items = r.body["items"].as_array().unwrap();
    let chat: Vec<&Value> = items.iter().filter(|i| i["outcome"] == "ok").collect();
    assert_eq!(items.len(), 3, "{}", r.text);
    assert!(items.iter().all(|i| i["action"] == "v1.chat"));
    assert_eq!(chat.len(), 2, "{}", r.text);
    assert!(
        items.iter().any(|i| i["outcome"] == "MODEL_NOT_FOUND"),
        "{}",
        r.text
    );
    assert!(
        chat.iter()
            .all(|i| i["outcome"] == "ok" && i["actor"] == "admin")
    );
    assert!(
        chat.iter()
            .any(|i| i["target"].as_str().unwrap().contains("model oa"))
    );
    assert!(
        chat.iter()
            .any(|i| i["target"].as_str().unwrap().contains("model an"))
    );
    assert!(!r.text.contains(secret));

    // Counted.
    let m = e.s.get("/metrics", Auth::Session(&e.admin)).await;
    assert!(
        m.text
            .lines()
            .any(|l| l.starts_with("confab_v1_calls_total{")
                && l.contains("endpoint=\"chat\"")
                && l.contains("provider=\"oa\"")
                && l.contains("outcome=\"complete\"")),
        "{}",
        m.text
    );
    assert!(m.text.contains("kind=\"v1\""));
}

#[tokio::test]
async fn unknown_paths_outside_the_api_answer_json_404s() {
    let e = env(|_| {}).await;
    for path in [
        "/v1/anything-unknown",
        "/v1/chat",
        "/v1",
        "/v1/chat/completions/x",
    ] {
        let a = get(&e.s, path, Via::Bearer(&e.key)).await;
        openai_error(&a, 404, "invalid_request_error", "not_found");
        assert!(
            a.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
    }
    let a = post(
        &e.s,
        "/v1/messages/batches",
        Via::Anthropic(&e.key),
        json!({}),
    )
    .await;
    anthropic_error(&a, 404, "not_found_error");
    let a = post(&e.s, "/v1/completions", Via::None, json!({})).await;
    openai_error(&a, 404, "invalid_request_error", "not_found");
    // A known path with another method: 405, in the same shape.
    let r = e.s.http.delete(e.s.url("/v1/models")).send().await.unwrap();
    let a = answer(r).await;
    assert_eq!(a.status, 405, "{}", a.text);
    assert_eq!(a.body["error"]["type"], "invalid_request_error");

    let r = e.s.get("/health/unknown", Auth::None).await;
    r.assert_error(404, "NOT_FOUND");
    // The app's own routes still serve the app.
    for path in ["/", "/settings", "/c/some-conversation"] {
        let r = e.s.http.get(e.s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }
}

fn weather_tool_openai() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather now",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}, "unit": {"type": "string"}}, "required": ["location"]}}}])
}

fn weather_tool_anthropic() -> Value {
    json!([{"name": "get_weather", "description": "Weather now",
        "input_schema": {"type": "object", "properties": {"location": {"type": "string"}, "unit": {"type": "string"}}, "required": ["location"]}}])
}

/// A tool call and its result, through OpenAI's API, against each kind:
/// the call (streamed as tool_call deltas, and whole), then the answer to
/// the tool's result.
#[tokio::test]
async fn openai_tool_calls_round_trip_on_every_provider_kind() {
    let e = env(|_| {}).await;
    for (p, _) in KINDS {
        let model = format!("{p}+tools");
        let ask = json!({"model": model, "tools": weather_tool_openai(), "tool_choice": "auto",
            "messages": [{"role": "user", "content": "weather in Paris?"}]});
        let a = post(
            &e.s,
            "/v1/chat/completions",
            Via::Bearer(&e.key),
            ask.clone(),
        )
        .await;
        assert_eq!(a.status, 200, "{p}: {}", a.text);
        let choice = &a.body["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls", "{p}: {}", a.text);
        assert!(choice["message"]["content"].is_null(), "{p}: {}", a.text);
        let call = &choice["message"]["tool_calls"][0];
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["name"], "get_weather");
        assert_eq!(
            call["function"]["arguments"],
            common_upstream::DEFAULT_TOOL_ARGUMENTS
        );
        let id = call["id"].as_str().unwrap().to_string();
        assert!(!id.is_empty());

        // Streamed: the first piece names the call, the rest add arguments.
        let mut streamed = ask.clone();
        streamed["stream"] = json!(true);
        let events = open(&e.s, "/v1/chat/completions", Via::Bearer(&e.key), streamed)
            .await
            .collect()
            .await;
        let pieces: Vec<&Value> = events
            .iter()
            .filter_map(|e| e.data["choices"][0]["delta"].get("tool_calls"))
            .map(|t| &t[0])
            .collect();
        // Ollama sends each call whole; the others stream the arguments.
        assert!(!pieces.is_empty(), "{p}");
        if p != "ol" {
            assert!(pieces.len() > 1, "{p}");
        }
        assert_eq!(pieces[0]["index"], 0);
        assert_eq!(pieces[0]["type"], "function");
        assert_eq!(pieces[0]["function"]["name"], "get_weather");
        assert!(pieces[0]["id"].is_string());
        assert!(pieces[1..].iter().all(|c| c.get("id").is_none()));
        let args: String = pieces
            .iter()
            .map(|c| c["function"]["arguments"].as_str().unwrap())
            .collect();
        assert_eq!(args, common_upstream::DEFAULT_TOOL_ARGUMENTS, "{p}");
        let finish = events
            .iter()
            .find_map(|e| e.data["choices"][0]["finish_reason"].as_str())
            .unwrap();
        assert_eq!(finish, "tool_calls");

        // The tool's result goes back; the model answers from it.
        let result = json!({"model": model, "tools": weather_tool_openai(), "messages": [
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": id, "content": "sunny, 21 C"}
        ]});
        let a = post(&e.s, "/v1/chat/completions", Via::Bearer(&e.key), result).await;
        assert_eq!(a.status, 200, "{p}: {}", a.text);
        assert_eq!(
            a.body["choices"][0]["message"]["content"],
            common_upstream::tool_result_reply("sunny, 21 C"),
            "{p}"
        );
        assert_eq!(a.body["choices"][0]["finish_reason"], "stop");
    }
}

/// The same through Anthropic's API: tool_use blocks (streamed as
/// input_json_delta, and whole), then a tool_result.
#[tokio::test]
async fn anthropic_tool_use_round_trips_on_every_provider_kind() {
    let e = env(|_| {}).await;
    for (p, _) in KINDS {
        let model = format!("{p}+tools");
        let ask = json!({"model": model, "max_tokens": 200, "tools": weather_tool_anthropic(),
            "tool_choice": {"type": "auto"},
            "messages": [{"role": "user", "content": "weather in Paris?"}]});
        let a = post(&e.s, "/v1/messages", Via::Anthropic(&e.key), ask.clone()).await;
        assert_eq!(a.status, 200, "{p}: {}", a.text);
        assert_eq!(a.body["stop_reason"], "tool_use", "{p}: {}", a.text);
        let blocks = a.body["content"].as_array().unwrap();
        let tool = blocks.iter().find(|b| b["type"] == "tool_use").unwrap();
        assert_eq!(tool["name"], "get_weather");
        let want: Value = serde_json::from_str(common_upstream::DEFAULT_TOOL_ARGUMENTS).unwrap();
        assert_eq!(tool["input"], want);
        let id = tool["id"].as_str().unwrap().to_string();

        let mut streamed = ask.clone();
        streamed["stream"] = json!(true);
        let events = open(&e.s, "/v1/messages", Via::Anthropic(&e.key), streamed)
            .await
            .collect()
            .await;
        let start = events
            .iter()
            .find(|e| {
                e.event == "content_block_start" && e.data["content_block"]["type"] == "tool_use"
            })
            .unwrap();
        assert_eq!(start.data["content_block"]["name"], "get_weather");
        assert_eq!(start.data["content_block"]["input"], json!({}));
        let index = &start.data["index"];
        let args: String = events
            .iter()
            .filter(|e| e.event == "content_block_delta" && &e.data["index"] == index)
            .map(|e| {
                assert_eq!(e.data["delta"]["type"], "input_json_delta");
                e.data["delta"]["partial_json"].as_str().unwrap()
            })
            .collect();
        assert_eq!(args, common_upstream::DEFAULT_TOOL_ARGUMENTS, "{p}");
        let stops = events
            .iter()
            .filter(|e| e.event == "content_block_stop")
            .count();
        let starts = events
            .iter()
            .filter(|e| e.event == "content_block_start")
            .count();
        assert_eq!(stops, starts, "every block is closed");
        let md = events.iter().find(|e| e.event == "message_delta").unwrap();
        assert_eq!(md.data["delta"]["stop_reason"], "tool_use");
        assert_eq!(events.last().unwrap().event, "message_stop");

        let result = json!({"model": model, "max_tokens": 200, "tools": weather_tool_anthropic(), "messages": [
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "get_weather", "input": want}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "sunny, 21 C"}]}
        ]});
        let a = post(&e.s, "/v1/messages", Via::Anthropic(&e.key), result).await;
        assert_eq!(a.status, 200, "{p}: {}", a.text);
        assert_eq!(
            a.body["content"],
            json!([{"type": "text", "text": common_upstream::tool_result_reply("sunny, 21 C")}]),
            "{p}"
        );
        assert_eq!(a.body["stop_reason"], "end_turn");
    }
}

/// Embeddings from the providers that have them, charged like calls.
#[tokio::test]
async fn embeddings_come_back_in_order_and_are_charged_to_the_key() {
    let e = env(|_| {}).await;
    for p in ["oa", "ol"] {
        let model = format!("{p}-embed");
        let a = post(
            &e.s,
            "/v1/embeddings",
            Via::Bearer(&e.key),
            json!({"model": model, "input": ["first text", "second"], "encoding_format": "float"}),
        )
        .await;
        assert_eq!(a.status, 200, "{p}: {}", a.text);
        assert_eq!(a.body["object"], "list");
        assert_eq!(a.body["model"], model);
        let data = a.body["data"].as_array().unwrap();
        assert_eq!(data.len(), 2);
        for (i, text) in ["first text", "second"].iter().enumerate() {
            assert_eq!(data[i]["object"], "embedding");
            assert_eq!(data[i]["index"], i);
            let got: Vec<f64> = data[i]["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            let want = common_upstream::fake_embedding(text, common_upstream::EMBEDDING_DIMS);
            assert_eq!(got.len(), want.len());
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(g, w)| (g - f64::from(*w)).abs() < 1e-5),
                "{p}"
            );
        }
        assert_eq!(
            a.body["usage"]["prompt_tokens"], 3,
            "{p}: the provider's count"
        );
        assert_eq!(a.body["usage"]["total_tokens"], 3);
        // A chat completion cannot be asked of an embedding model.
        let a = post(
            &e.s,
            "/v1/chat/completions",
            Via::Bearer(&e.key),
            chat_body(&model, "hi"),
        )
        .await;
        openai_error(&a, 400, "invalid_request_error", "invalid_request");
    }
    let r = e.s.get("/api/usage", Auth::Session(&e.admin)).await;
    let keys = r.body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["messages"], 2);
    assert_eq!(keys[0]["input_tokens"], 6);
    assert_eq!(keys[0]["output_tokens"], 0);
}

/// A client that goes away mid-answer: the upstream call is dropped, what
/// was used is charged (estimated: the provider never sent its count) to
/// the key, and the audit entry says it stopped.
#[tokio::test]
async fn a_client_that_leaves_mid_answer_is_charged_what_was_used() {
    let e = env(|_| {}).await;
    let mut sse = open(
        &e.s,
        "/v1/chat/completions",
        Via::Bearer(&e.key),
        json!({"model": "oa+slow", "stream": true, "messages": [{"role": "user", "content": "take your time"}]}),
    )
    .await;
    let mut seen = 0;
    while seen < 2 {
        let ev = sse.next().await.unwrap();
        if ev.data["choices"][0]["delta"]["content"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
        {
            seen += 1;
        }
    }
    drop(sse);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let keys = loop {
        let r = e.s.get("/api/usage", Auth::Session(&e.admin)).await;
        let keys = r.body["keys"].as_array().unwrap().clone();
        if !keys.is_empty() || std::time::Instant::now() > deadline {
            break keys;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(keys.len(), 1, "charged once the call ended");
    assert_eq!(keys[0]["messages"], 1);
    assert!(keys[0]["output_tokens"].as_u64().unwrap() >= 1);
    assert!(keys[0]["input_tokens"].as_u64().unwrap() >= 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r =
            e.s.get("/api/admin/audit?action=v1.chat", Auth::Session(&e.admin))
                .await;
        let items = r.body["items"].as_array().unwrap();
        if let Some(i) = items.first() {
            assert_eq!(i["outcome"], "stopped", "{}", r.text);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no audit entry");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// No CSRF surface: /v1 takes no cookie, so a request from another origin
/// with an API key is served (browser tools call it with a key).
#[tokio::test]
async fn a_foreign_origin_with_a_key_is_served() {
    let e = env(|_| {}).await;
    let r =
        e.s.http
            .post(e.s.url("/v1/chat/completions"))
            .bearer_auth(&e.key)
            .header("origin", "https://elsewhere.example")
            .json(&chat_body("oa", "hi"))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
}

/// Every /v1 request counts against the per-user API rate limit, listing
/// models included.
#[tokio::test]
async fn the_per_user_api_rate_limit_applies_to_every_v1_request() {
    let e = env(|c| {
        c.limits.api_per_minute = 1;
        c.limits.api_burst = 3;
    })
    .await;
    // The burst is shared with the user's /api requests (the setup made one).
    let mut ok = 0;
    let a = loop {
        let a = get(&e.s, "/v1/models", Via::Bearer(&e.key)).await;
        if a.status != 200 {
            break a;
        }
        ok += 1;
        assert!(ok <= 3, "the burst is 3");
    };
    assert!(ok >= 1);
    openai_error(&a, 429, "rate_limit_error", "rate_limit_exceeded");
    assert!(a.headers.contains_key("retry-after"));
    let a = post(
        &e.s,
        "/v1/messages",
        Via::Anthropic(&e.key),
        messages_body("oa", "hi"),
    )
    .await;
    anthropic_error(&a, 429, "rate_limit_error");
    assert!(
        e.up.chat_requests().is_empty(),
        "refused before the upstream call"
    );
}
