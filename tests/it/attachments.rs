//! Files attached to chat turns: images reach each provider kind in its own
//! format (scaled down, re-encoded), through the app's SSE and WebSocket
//! chats and through `/v1`; models that cannot read images are refused
//! before any provider call; other users' files and documents are refused.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use confab::providers::registry::ProviderConfig;
use confab::providers::{
    AnthropicProvider, OllamaProvider, OpenAiProvider, Provider, ProviderKind, ProviderOptions,
    RetryPolicy,
};
use serde_json::{Value, json};

use crate::common::{Auth, Session, SseReader, TestServer, chat};
use crate::common_upstream::{Dialect, FakeUpstream, RecordedRequest};
use crate::files::{jpeg, png, uploaded};

/// A provider to register: kind, name, base URL, models, client.
type ProviderSetup = (
    ProviderKind,
    &'static str,
    String,
    Vec<&'static str>,
    Arc<dyn Provider>,
);

struct Env {
    s: TestServer,
    up: FakeUpstream,
    admin: Session,
}

/// A server with one provider of each kind on the fake upstream: vision
/// models `gpt-4o` (openai), `claude-sonnet-4-5` (anthropic) and `llava`
/// (ollama), and the text-only `fake-model` (openai).
async fn env() -> Env {
    let up = FakeUpstream::start().await;
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    let opts = ProviderOptions {
        idle_timeout: Duration::from_secs(15),
        retry: RetryPolicy::none(),
        ..Default::default()
    };
    let client = confab::providers::default_client();
    let key = Some("sk-test-key-0000".to_string());
    let providers: [ProviderSetup; 3] = [
        (
            ProviderKind::Openai,
            "oa",
            up.openai_base(),
            vec!["gpt-4o", "fake-model"],
            Arc::new(
                OpenAiProvider::new("oa", &up.openai_base(), key.clone(), client.clone())
                    .with_options(opts.clone()),
            ),
        ),
        (
            ProviderKind::Anthropic,
            "an",
            up.anthropic_base(),
            vec!["claude-sonnet-4-5"],
            Arc::new(
                AnthropicProvider::new("an", &up.anthropic_base(), key.clone(), client.clone())
                    .with_options(opts.clone()),
            ),
        ),
        (
            ProviderKind::Ollama,
            "ol",
            up.ollama_base(),
            vec!["llava"],
            Arc::new(
                OllamaProvider::new("ol", &up.ollama_base(), None, client.clone())
                    .with_options(opts.clone()),
            ),
        ),
    ];
    for (kind, name, base, models, p) in providers {
        let cfg = ProviderConfig::new(kind, name, base)
            .with_api_key("sk-test-key-0000")
            .with_models(models.iter().map(|m| m.to_string()).collect());
        s.state().providers.add_with(cfg, p).unwrap();
    }
    Env { s, up, admin }
}

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

/// (width, height) of an encoded image.
fn dims(bytes: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory(bytes).unwrap();
    (img.width(), img.height())
}

/// The images of the last user message of a captured request, decoded,
/// with the type each says it is, in the dialect's own format.
fn sent_images(r: &RecordedRequest) -> Vec<(String, Vec<u8>)> {
    let msgs = r.body["messages"].as_array().unwrap();
    let last = msgs
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .expect("a user message");
    match r.dialect.unwrap() {
        Dialect::OpenAi => last["content"]
            .as_array()
            .expect("content parts")
            .iter()
            .filter(|p| p["type"] == "image_url")
            .map(|p| {
                let url = p["image_url"]["url"].as_str().unwrap();
                let (meta, data) = url
                    .strip_prefix("data:")
                    .unwrap()
                    .split_once(";base64,")
                    .unwrap();
                (meta.to_string(), b64(data))
            })
            .collect(),
        Dialect::Anthropic => last["content"]
            .as_array()
            .expect("content blocks")
            .iter()
            .filter(|b| b["type"] == "image")
            .map(|b| {
                assert_eq!(b["source"]["type"], "base64");
                (
                    b["source"]["media_type"].as_str().unwrap().to_string(),
                    b64(b["source"]["data"].as_str().unwrap()),
                )
            })
            .collect(),
        Dialect::Ollama => last["images"]
            .as_array()
            .expect("images")
            .iter()
            .map(|i| ("".to_string(), b64(i.as_str().unwrap())))
            .collect(),
    }
}

/// The text the model got with the images.
fn sent_text(r: &RecordedRequest) -> String {
    let msgs = r.body["messages"].as_array().unwrap();
    let last = msgs.iter().rev().find(|m| m["role"] == "user").unwrap();
    match &last["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| p["type"] == "text")
            .map(|p| p["text"].as_str().unwrap())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

#[tokio::test]
async fn a_png_and_a_jpeg_reach_each_provider_in_its_own_format() {
    let e = env().await;
    let big = png(2600, 1950);
    let small = jpeg(300, 200);
    let a = uploaded(&e.s, &e.admin, "diagram.png", &big).await;
    let b = uploaded(&e.s, &e.admin, "photo.jpg", &small).await;
    for (model, dialect, edge) in [
        ("gpt-4o", Dialect::OpenAi, 2048),
        ("claude-sonnet-4-5", Dialect::Anthropic, 1238),
        ("llava", Dialect::Ollama, 1344),
    ] {
        e.up.clear_requests();
        let r = chat(
            &e.s,
            &e.admin,
            json!({"content": "What is in these pictures?", "model": model, "attachments": [a, b]}),
        )
        .await;
        assert_eq!(r.status, 200, "{model}: {}", r.text);
        // The answer's request (a title request may follow it).
        let reqs = e.up.chat_requests();
        let req = &reqs[0];
        assert_eq!(req.dialect, Some(dialect));
        let imgs = sent_images(req);
        assert_eq!(imgs.len(), 2, "{model}: {}", req.body);
        // The PNG (no transparency) was scaled into the provider's box and
        // re-encoded as JPEG; the small JPEG kept its size.
        let (w, h) = dims(&imgs[0].1);
        assert_eq!(w, edge, "{model}: {w}x{h}");
        assert!(h < w);
        assert_eq!(dims(&imgs[1].1), (300, 200), "{model}");
        for (mime, bytes) in &imgs {
            assert_eq!(&bytes[..3], b"\xff\xd8\xff", "{model}: a JPEG");
            if dialect != Dialect::Ollama {
                assert_eq!(mime, "image/jpeg");
            }
        }
        assert_eq!(sent_text(req), "What is in these pictures?");
    }
    // The stored user message remembers the files.
    let convs = e.s.get("/api/conversations", Auth::Session(&e.admin)).await;
    let cid = convs.body["items"][0]["id"].as_str().unwrap();
    let msgs =
        e.s.get(
            &format!("/api/conversations/{cid}/messages"),
            Auth::Session(&e.admin),
        )
        .await;
    let user = msgs.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "user")
        .unwrap()
        .clone();
    let att = user["attachments"].as_array().unwrap();
    assert_eq!(att.len(), 2);
    assert_eq!(att[0]["id"], a.as_str());
    assert_eq!(att[0]["name"], "diagram.png");
    assert_eq!(att[0]["mime"], "image/png");
    assert_eq!(
        (att[0]["width"].as_u64(), att[0]["height"].as_u64()),
        (Some(2600), Some(1950))
    );
    assert_eq!(att[1]["name"], "photo.jpg");
}

#[tokio::test]
async fn later_turns_and_regenerations_resend_the_threads_images() {
    let e = env().await;
    let a = uploaded(&e.s, &e.admin, "chart.png", &png(64, 64)).await;
    let r = open(
        &e,
        json!({"content": "Describe", "model": "gpt-4o", "attachments": [a]}),
    )
    .await;
    let meta = r[0].data.clone();
    let cid = meta["conversation_id"].as_str().unwrap().to_string();
    let answer = meta["assistant_message_id"].as_str().unwrap().to_string();
    e.up.clear_requests();
    // A follow-up without attachments still shows the model the image.
    open(
        &e,
        json!({"conversation_id": cid, "content": "And the colours?"}),
    )
    .await;
    let req = answer_request(&e.up);
    let msgs = req.body["messages"].as_array().unwrap();
    let first_user = msgs.iter().find(|m| m["role"] == "user").unwrap();
    let parts = first_user["content"].as_array().expect("parts");
    assert!(parts.iter().any(|p| p["type"] == "image_url"));
    // Regenerating the first answer sends its image again.
    e.up.clear_requests();
    open(&e, json!({"conversation_id": cid, "regenerate_of": answer})).await;
    let req = answer_request(&e.up);
    assert_eq!(sent_images(&req).len(), 1);
    // A model without vision gets a note instead of the earlier image.
    e.up.clear_requests();
    open(
        &e,
        json!({"conversation_id": cid, "content": "Summarise in words", "model": "fake-model"}),
    )
    .await;
    let req = answer_request(&e.up);
    let text = req.body.to_string();
    assert!(!text.contains("image_url"), "{text}");
    assert!(text.contains("[image not shown: chart.png]"), "{text}");
}

/// The first chat request since the requests were last cleared: the
/// answer's (the conversation's title request comes after it).
fn answer_request(up: &FakeUpstream) -> RecordedRequest {
    up.chat_requests()
        .into_iter()
        .next()
        .expect("a chat request")
}

async fn open(e: &Env, body: Value) -> Vec<crate::common::Sse> {
    let resp =
        e.s.http
            .post(e.s.url("/api/chat/stream"))
            .header("cookie", format!("confab_session={}", e.admin.cookie))
            .header("x-csrf-token", &e.admin.csrf)
            .json(&body)
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 200);
    let events = SseReader::new(resp).collect().await;
    assert_eq!(events.last().unwrap().event, "done", "{events:?}");
    events
}

#[tokio::test]
async fn a_model_without_vision_is_refused_before_any_provider_call() {
    let e = env().await;
    let a = uploaded(&e.s, &e.admin, "x.png", &png(16, 16)).await;
    let r =
        e.s.post(
            "/api/chat/stream",
            Auth::Session(&e.admin),
            json!({"content": "look", "model": "fake-model", "attachments": [a]}),
        )
        .await;
    r.assert_error(422, "VISION_UNSUPPORTED");
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("cannot read images")
    );
    assert!(e.up.chat_requests().is_empty(), "no provider call");
    let convs = e.s.get("/api/conversations", Auth::Session(&e.admin)).await;
    assert!(
        convs.body["items"].as_array().unwrap().is_empty(),
        "nothing stored"
    );
    // An admin says the model reads images: now it is sent.
    let r =
        e.s.patch(
            "/api/admin/models/fake-model",
            Auth::Session(&e.admin),
            json!({"vision": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let models =
        e.s.get("/api/models?use=chat", Auth::Session(&e.admin))
            .await;
    let fm = models.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "fake-model")
        .unwrap()
        .clone();
    assert_eq!(fm["vision"], true);
    e.up.clear_requests();
    let r = chat(
        &e.s,
        &e.admin,
        json!({"content": "look", "model": "fake-model", "attachments": [a]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(sent_images(&answer_request(&e.up)).len(), 1);
}

#[tokio::test]
async fn other_users_files_are_refused_and_documents_are_read() {
    let e = env().await;
    let eve = e.s.user(&e.admin, "eve").await;
    let mine = uploaded(&e.s, &e.admin, "x.png", &png(8, 8)).await;
    let r =
        e.s.post(
            "/api/chat/message",
            Auth::Session(&eve),
            json!({"content": "look", "model": "gpt-4o", "attachments": [mine]}),
        )
        .await;
    r.assert_error(404, "NOT_FOUND");
    let r =
        e.s.post(
            "/api/chat/message",
            Auth::Session(&eve),
            json!({"content": "look", "model": "gpt-4o", "attachments": ["not-an-id"]}),
        )
        .await;
    r.assert_error(404, "NOT_FOUND");
    assert!(e.up.chat_requests().is_empty());
    // A document is read and its text reaches the model.
    let doc = uploaded(
        &e.s,
        &e.admin,
        "notes.md",
        b"# Notes\n\nThe quokka count is 417.\n",
    )
    .await;
    let r =
        e.s.post(
            "/api/chat/message",
            Auth::Session(&e.admin),
            json!({"content": "summarise", "model": "gpt-4o", "attachments": [doc]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        answer_request(&e.up)
            .body
            .to_string()
            .contains("quokka count is 417"),
        "the document's text is in the context"
    );
}

#[tokio::test]
async fn images_over_the_websocket_chat() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as WsMsg;
    let e = env().await;
    let a = uploaded(&e.s, &e.admin, "ws.jpg", &jpeg(100, 80)).await;
    let url = format!("ws{}/api/chat/ws", e.s.base.trim_start_matches("http"));
    let mut req =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
            .unwrap();
    req.headers_mut().insert(
        "cookie",
        format!("confab_session={}", e.admin.cookie)
            .parse()
            .unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    e.up.clear_requests();
    ws.send(WsMsg::Text(
        json!({"type": "chat", "content": "what is it", "model": "claude-sonnet-4-5", "attachments": [a]})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let WsMsg::Text(t) = m else { continue };
        let v: Value = serde_json::from_str(&t).unwrap();
        assert_ne!(v["event"], "error", "{v}");
        if v["event"] == "done" {
            break;
        }
    }
    let req = answer_request(&e.up);
    assert_eq!(req.dialect, Some(Dialect::Anthropic));
    let imgs = sent_images(&req);
    assert_eq!(imgs.len(), 1);
    assert_eq!(dims(&imgs[0].1), (100, 80));
}

/// `/v1`: OpenAI `image_url` parts with data URLs and Anthropic base64
/// `image` blocks, each reaching a provider of another kind too.
#[tokio::test]
async fn v1_accepts_inline_images_and_refuses_remote_urls() {
    let e = env().await;
    let key =
        e.s.post(
            "/api/keys",
            Auth::Session(&e.admin),
            json!({"name": "sdk", "scopes": ["read", "write"]}),
        )
        .await
        .body["key"]
            .as_str()
            .unwrap()
            .to_string();
    let png_b64 = base64::engine::general_purpose::STANDARD.encode(png(50, 40));
    let jpg_b64 = base64::engine::general_purpose::STANDARD.encode(jpeg(60, 30));
    let post = |path: &'static str, body: Value| {
        let s = &e.s;
        let key = key.clone();
        async move {
            let r = s
                .http
                .post(s.url(path))
                .bearer_auth(&key)
                .header("anthropic-version", "2023-06-01")
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // OpenAI's shape, to an Anthropic model.
    let (st, body) = post(
        "/v1/chat/completions",
        json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "two pictures"},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{png_b64}")}},
            {"type": "image_url", "image_url": {"url": format!("data:image/jpeg;base64,{jpg_b64}"), "detail": "low"}}
        ]}]}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let req = answer_request(&e.up);
    assert_eq!(req.dialect, Some(Dialect::Anthropic));
    let imgs = sent_images(&req);
    assert_eq!(
        imgs.iter().map(|i| dims(&i.1)).collect::<Vec<_>>(),
        vec![(50, 40), (60, 30)]
    );
    // Anthropic's shape, to an OpenAI model and to Ollama.
    for model in ["gpt-4o", "llava"] {
        e.up.clear_requests();
        let (st, body) = post(
            "/v1/messages",
            json!({"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": jpg_b64}},
                {"type": "text", "text": "what is this"}
            ]}]}),
        )
        .await;
        assert_eq!(st, 200, "{model}: {body}");
        let imgs = sent_images(&answer_request(&e.up));
        assert_eq!(imgs.len(), 1, "{model}");
        assert_eq!(dims(&imgs[0].1), (60, 30));
    }
    // Remote URLs are not fetched.
    e.up.clear_requests();
    let (st, body) = post(
        "/v1/chat/completions",
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest/meta-data"}}
        ]}]}),
    )
    .await;
    assert_eq!(st, 400, "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not fetched")
    );
    let (st, body) = post(
        "/v1/messages",
        json!({"model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
        ]}]}),
    )
    .await;
    assert_eq!(st, 400, "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    // Not an image at all, and a model without vision.
    let (st, _) = post(
        "/v1/chat/completions",
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,PGh0bWw+PC9odG1sPg=="}}
        ]}]}),
    )
    .await;
    assert_eq!(st, 400);
    let (st, body) = post(
        "/v1/chat/completions",
        json!({"model": "fake-model", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{png_b64}")}}
        ]}]}),
    )
    .await;
    assert_eq!(st, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot read images")
    );
    assert!(e.up.chat_requests().is_empty());
}
