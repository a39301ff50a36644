//! Users' own keys and temporary chats through the real server.
//!
//! Own keys: a key said to be for one kind of provider reaches only
//! upstreams of that kind (three fake upstreams, one per kind, serve the
//! same model and record every header they get), title requests included;
//! the admin's per-provider switch; `POST /api/chat/validate-key` for a
//! good and a bad key, its rate limit. Temporary chats: they stream and
//! continue like others, are never listed, searchable or readable as
//! conversations, are counted in usage, close with DELETE, and leave no
//! byte of their text anywhere in the data directory.

use crate::common;
use crate::common_upstream;

use common::{Auth, Session, SseReader, TestServer};
use common_upstream::{FakeUpstream, REJECTED_KEY};
use confab::providers::registry::ProviderConfig;
use confab::providers::{
    AnthropicProvider, OllamaProvider, OpenAiProvider, Provider, ProviderKind, ProviderOptions,
    RetryPolicy,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const MODEL: &str = "shared-model";
const SERVER_KEY: &str = "sk-server-key-9999";
const OWN_KEY: &str = "sk-own-openai-key-5555";

/// kind, name, base URL, priority, the provider.
type Entry = (ProviderKind, &'static str, String, i32, Arc<dyn Provider>);

struct Env {
    s: TestServer,
    admin: Session,
    oa: FakeUpstream,
    an: FakeUpstream,
    ol: FakeUpstream,
}

/// Three providers of the same model, one of each kind, on three fake
/// upstreams. Anthropic first, then Ollama, then OpenAI by priority, so a
/// key that strayed would reach the others first.
async fn env_with(f: impl FnOnce(&mut confab::config::Config)) -> Env {
    let (oa, an, ol) = (
        FakeUpstream::start().await,
        FakeUpstream::start().await,
        FakeUpstream::start().await,
    );
    for up in [&oa, &an, &ol] {
        up.set_models(&[MODEL]);
    }
    let s = TestServer::start_with(f).await;
    let admin = s.setup_admin("admin").await;
    let opts = ProviderOptions {
        idle_timeout: Duration::from_secs(15),
        retry: RetryPolicy::none(),
        ..Default::default()
    };
    let client = confab::providers::default_client();
    let reg = &s.state().providers;
    let key = || Some(SERVER_KEY.to_string());
    let entries: [Entry; 3] = [
        (
            ProviderKind::Anthropic,
            "an",
            an.anthropic_base(),
            30,
            Arc::new(
                AnthropicProvider::new("an", &an.anthropic_base(), key(), client.clone())
                    .with_options(opts.clone()),
            ),
        ),
        (
            ProviderKind::Ollama,
            "ol",
            ol.ollama_base(),
            20,
            Arc::new(
                OllamaProvider::new("ol", &ol.ollama_base(), None, client.clone())
                    .with_options(opts.clone()),
            ),
        ),
        (
            ProviderKind::Openai,
            "oa",
            oa.openai_base(),
            10,
            Arc::new(
                OpenAiProvider::new("oa", &oa.openai_base(), key(), client.clone())
                    .with_options(opts.clone()),
            ),
        ),
    ];
    for (kind, name, base, priority, p) in entries {
        let cfg = ProviderConfig::new(kind, name, base)
            .with_models(vec![MODEL.into()])
            .with_priority(priority);
        reg.add_with(cfg, p).unwrap();
    }
    Env {
        s,
        admin,
        oa,
        an,
        ol,
    }
}

async fn stream(
    s: &TestServer,
    who: &Session,
    headers: &[(&str, &str)],
    body: Value,
) -> reqwest::Response {
    let mut r = s
        .http
        .post(s.url("/api/chat/stream"))
        .header("cookie", format!("confab_session={}", who.cookie))
        .header("x-csrf-token", &who.csrf);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.json(&body).send().await.unwrap()
}

/// Every header value any request to `up` carried.
fn header_values(up: &FakeUpstream) -> Vec<String> {
    up.requests()
        .into_iter()
        .flat_map(|r| r.headers.into_iter().map(|(_, v)| v))
        .collect()
}

async fn wait_for_title(s: &TestServer, who: &Session, cid: &str) {
    for _ in 0..200 {
        let r = s
            .get(&format!("/api/conversations/{cid}"), Auth::Session(who))
            .await;
        if r.body["title"] != "New chat" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the conversation was never named");
}

#[tokio::test]
async fn an_openai_key_reaches_only_openai_upstreams() {
    let e = env_with(|c| c.allow_user_keys = true).await;
    let kind = [
        ("x-provider-key", OWN_KEY),
        ("x-provider-key-kind", "openai"),
    ];
    let r = stream(
        &e.s,
        &e.admin,
        &kind,
        json!({"content": "hi", "model": MODEL}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let events = SseReader::new(r).collect().await;
    assert_eq!(events[0].data["provider"], "oa", "{:?}", events[0].data);
    assert_eq!(events.last().unwrap().event, "done");
    let cid = events[0].data["conversation_id"].as_str().unwrap();
    wait_for_title(&e.s, &e.admin, cid).await;
    // The answer and its title, both with the user's key.
    let sent = e.oa.chat_requests();
    assert_eq!(sent.len(), 2, "the answer and the title");
    for r in &sent {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {OWN_KEY}").as_str())
        );
    }
    // Not one header of any request to the other kinds held the key.
    for up in [&e.an, &e.ol] {
        for v in header_values(up) {
            assert!(!v.contains(OWN_KEY), "{v}");
        }
        assert!(up.chat_requests().is_empty());
    }

    // An admin turns own keys off for "oa": the key has nowhere to go,
    // and the server does not send it to another kind instead.
    let r =
        e.s.patch(
            "/api/admin/providers/oa",
            Auth::Session(&e.admin),
            json!({"allow_user_keys": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["allow_user_keys"], false);
    let list =
        e.s.get("/api/admin/providers", Auth::Session(&e.admin))
            .await;
    let oa = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "oa")
        .unwrap()
        .clone();
    assert_eq!(oa["allow_user_keys"], false);
    e.oa.clear_requests();
    let r = stream(
        &e.s,
        &e.admin,
        &kind,
        json!({"content": "hi", "model": MODEL}),
    )
    .await;
    common::Resp::from(r)
        .await
        .assert_error(404, "MODEL_NOT_FOUND");
    for up in [&e.oa, &e.an, &e.ol] {
        assert!(up.chat_requests().is_empty());
        for v in header_values(up) {
            assert!(!v.contains(OWN_KEY), "{v}");
        }
    }
    // Without the user's key, the chat still works (the server's key).
    let r = stream(
        &e.s,
        &e.admin,
        &[],
        json!({"content": "hi", "model": MODEL}),
    )
    .await;
    let events = SseReader::new(r).collect().await;
    assert_eq!(events[0].data["provider"], "an");
    assert_eq!(events.last().unwrap().event, "done");

    // A key without its kind (older clients) stays with the first
    // provider's kind, and never goes to Ollama, even ranked above OpenAI.
    let r =
        e.s.patch(
            "/api/admin/providers/an",
            Auth::Session(&e.admin),
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r =
        e.s.patch(
            "/api/admin/providers/oa",
            Auth::Session(&e.admin),
            json!({"allow_user_keys": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    e.oa.clear_requests();
    let r = stream(
        &e.s,
        &e.admin,
        &[("x-provider-key", OWN_KEY)],
        json!({"content": "hi", "model": MODEL}),
    )
    .await;
    let events = SseReader::new(r).collect().await;
    assert_eq!(events[0].data["provider"], "oa");
    assert_eq!(events.last().unwrap().event, "done");
    for v in header_values(&e.ol) {
        assert!(!v.contains(OWN_KEY), "{v}");
    }

    // Own keys are for openai or anthropic; a kind without a key is refused.
    let r = stream(
        &e.s,
        &e.admin,
        &[
            ("x-provider-key", OWN_KEY),
            ("x-provider-key-kind", "ollama"),
        ],
        json!({"content": "hi", "model": MODEL}),
    )
    .await;
    common::Resp::from(r)
        .await
        .assert_error(400, "VALIDATION_FAILED");
    let r = stream(
        &e.s,
        &e.admin,
        &[("x-provider-key-kind", "martian")],
        json!({"content": "hi", "model": MODEL}),
    )
    .await;
    common::Resp::from(r)
        .await
        .assert_error(400, "VALIDATION_FAILED");
}

#[tokio::test]
async fn an_anthropic_key_reaches_only_anthropic_upstreams() {
    let e = env_with(|c| c.allow_user_keys = true).await;
    let own = "sk-ant-own-key-7777";
    // Anthropic is preferred; the key goes there and nowhere else.
    let r = stream(
        &e.s,
        &e.admin,
        &[
            ("x-provider-key", own),
            ("x-provider-key-kind", "anthropic"),
        ],
        json!({"content": "hi", "model": MODEL}),
    )
    .await;
    let events = SseReader::new(r).collect().await;
    assert_eq!(events[0].data["provider"], "an");
    assert_eq!(events.last().unwrap().event, "done");
    assert_eq!(e.an.chat_requests()[0].header("x-api-key"), Some(own));
    for up in [&e.oa, &e.ol] {
        for v in header_values(up) {
            assert!(!v.contains(own), "{v}");
        }
    }
}

#[tokio::test]
async fn validating_a_key_answers_for_good_and_bad_keys() {
    let e = env_with(|c| c.allow_user_keys = true).await;
    let check = |kind: &str, key: &str| {
        let body = json!({"kind": kind, "key": key});
        let (s, admin) = (&e.s, &e.admin);
        async move {
            s.post("/api/chat/validate-key", Auth::Session(admin), body)
                .await
        }
    };
    let r = check("openai", OWN_KEY).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["valid"], true);
    assert_eq!(r.body["provider"], "oa");
    assert_eq!(r.body["models"], 1);
    // The check was an authenticated model listing with the user's key.
    let listed = e.oa.requests().into_iter().last().unwrap();
    assert_eq!(listed.method, "GET");
    assert!(listed.path.ends_with("/models"), "{}", listed.path);
    assert_eq!(
        listed.header("authorization"),
        Some(format!("Bearer {OWN_KEY}").as_str())
    );

    let r = check("openai", REJECTED_KEY).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["valid"], false);
    assert!(r.body["message"].as_str().unwrap().contains("refused"));
    assert!(!r.text.contains(REJECTED_KEY), "the key is not echoed");

    let r = check("anthropic", REJECTED_KEY).await;
    assert_eq!(r.body["valid"], false, "{}", r.text);
    assert_eq!(r.body["provider"], "an");
    assert_eq!(
        e.an.requests()
            .into_iter()
            .last()
            .unwrap()
            .header("x-api-key"),
        Some(REJECTED_KEY)
    );
    // No key went to a provider of another kind.
    for v in header_values(&e.ol) {
        assert!(!v.contains(OWN_KEY) && !v.contains(REJECTED_KEY));
    }

    check("ollama", "x")
        .await
        .assert_error(400, "VALIDATION_FAILED");
    check("openai", "  ")
        .await
        .assert_error(400, "VALIDATION_FAILED");

    // Checks are rate-limited per user.
    let mut limited = None;
    for _ in 0..10 {
        let r = check("openai", OWN_KEY).await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("a burst of checks is refused");
    r.assert_error(429, "RATE_LIMITED");
    assert!(r.headers.get("retry-after").is_some());

    // Signed out, nothing is checked.
    let r =
        e.s.post(
            "/api/chat/validate-key",
            Auth::None,
            json!({"kind": "openai", "key": OWN_KEY}),
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text);
}

#[tokio::test]
async fn a_server_without_own_keys_refuses_checks_and_kinds() {
    let e = env_with(|_| {}).await;
    let r =
        e.s.post(
            "/api/chat/validate-key",
            Auth::Session(&e.admin),
            json!({"kind": "openai", "key": OWN_KEY}),
        )
        .await;
    r.assert_error(403, "FORBIDDEN");
    assert!(
        e.oa.requests()
            .iter()
            .all(|r| r.header("authorization") != Some(format!("Bearer {OWN_KEY}").as_str()))
    );
}

/// The first number under `key` anywhere in `v`.
fn find_u64(v: &Value, key: &str) -> Option<u64> {
    match v {
        Value::Object(m) => m
            .get(key)
            .and_then(Value::as_u64)
            .or_else(|| m.values().find_map(|x| find_u64(x, key))),
        Value::Array(a) => a.iter().find_map(|x| find_u64(x, key)),
        _ => None,
    }
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[tokio::test]
async fn a_temporary_chat_leaves_no_byte_on_disk() {
    let e = env_with(|_| {}).await;
    let (s, admin) = (&e.s, &e.admin);
    let kept = "keptmarker8c1d2e";
    let secret = "tempmarker5b7e9f";
    // A saved chat first, so the store and the index hold something, and
    // the scan below is shown to find what was written.
    e.an.set_reply(&format!("A saved answer {kept}"));
    let r = stream(
        s,
        admin,
        &[],
        json!({"content": format!("saved {kept}"), "model": MODEL}),
    )
    .await;
    let events = SseReader::new(r).collect().await;
    assert_eq!(events.last().unwrap().event, "done");
    let used_before = find_u64(
        &s.get("/api/usage", Auth::Session(admin)).await.body,
        "messages_used",
    )
    .unwrap();

    e.an.set_reply(&format!("The temporary answer {secret} ends here"));
    let body = json!({"content": format!("question {secret}"), "model": MODEL, "temporary": true});
    let r = stream(s, admin, &[], body).await;
    assert_eq!(r.status(), 200);
    let events = SseReader::new(r).collect().await;
    assert_eq!(events.last().unwrap().event, "done", "{events:?}");
    let text: String = events
        .iter()
        .filter(|e| e.event == "delta")
        .map(|e| e.data["text"].as_str().unwrap().to_string())
        .collect();
    assert!(text.contains(secret), "{text}");
    assert!(
        events.iter().all(|e| e.event != "title"),
        "a temporary chat is not named"
    );
    let cid = events[0].data["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();
    let gid = events[0].data["generation_id"]
        .as_str()
        .unwrap()
        .to_string();

    // A new temporary chat may bring its system prompt (it has no PATCH);
    // a saved one takes it through /api/conversations.
    e.an.clear_requests();
    let r = s
        .post(
            "/api/chat/message",
            Auth::Session(admin),
            json!({"content": "hi", "model": MODEL, "temporary": true, "system_prompt": "Answer in French."}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = e.an.chat_requests().into_iter().next().unwrap();
    assert_eq!(sent.body["system"], "Answer in French.", "{}", sent.body);
    s.post(
        "/api/chat/message",
        Auth::Session(admin),
        json!({"content": "hi", "model": MODEL, "system_prompt": "Answer in French."}),
    )
    .await
    .assert_error(400, "VALIDATION_FAILED");

    // It resumes while it lives, like any answer.
    let r = s
        .http
        .get(s.url(&format!("/api/generations/{gid}/events")))
        .header("cookie", format!("confab_session={}", admin.cookie))
        .header("last-event-id", "1")
        .send()
        .await
        .unwrap();
    let replay = SseReader::new(r).collect().await;
    assert_eq!(replay.last().unwrap().event, "done");

    // It continues with its history, from memory.
    e.an.clear_requests();
    let r = stream(
        s,
        admin,
        &[],
        json!({"conversation_id": cid, "content": "and then?", "model": MODEL}),
    )
    .await;
    let events = SseReader::new(r).collect().await;
    assert_eq!(events.last().unwrap().event, "done");
    let sent = e.an.chat_requests().into_iter().next().unwrap();
    assert!(
        sent.body.to_string().contains(secret),
        "the history was sent"
    );
    let r = s
        .post(
            "/api/chat/message",
            Auth::Session(admin),
            json!({"conversation_id": cid, "content": "once more", "model": MODEL}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body["content"].as_str().unwrap().contains(secret));

    // Not a conversation: not listed, not readable, not searchable.
    s.get(&format!("/api/conversations/{cid}"), Auth::Session(admin))
        .await
        .assert_error(404, "CONVERSATION_NOT_FOUND");
    let list = s.get("/api/conversations", Auth::Session(admin)).await;
    assert!(!list.text.contains(&cid), "{}", list.text);
    assert!(!list.text.contains(secret));
    // Usage still counts them: four temporary answers.
    let used = find_u64(
        &s.get("/api/usage", Auth::Session(admin)).await.body,
        "messages_used",
    )
    .unwrap();
    assert_eq!(used, used_before + 4);

    // Another user cannot close or continue it.
    let other = s.user(admin, "other").await;
    s.delete(&format!("/api/chat/temporary/{cid}"), Auth::Session(&other))
        .await
        .assert_error(404, "CONVERSATION_NOT_FOUND");
    // Temporary applies to new chats only.
    let saved_cid = {
        let l = s.get("/api/conversations", Auth::Session(admin)).await;
        l.body["items"][0]["id"].as_str().unwrap().to_string()
    };
    s.post(
        "/api/chat/message",
        Auth::Session(admin),
        json!({"conversation_id": saved_cid, "content": "x", "temporary": true}),
    )
    .await
    .assert_error(400, "VALIDATION_FAILED");

    // Closed, it is gone.
    let r = s
        .delete(&format!("/api/chat/temporary/{cid}"), Auth::Session(admin))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    s.delete(&format!("/api/chat/temporary/{cid}"), Auth::Session(admin))
        .await
        .assert_error(404, "CONVERSATION_NOT_FOUND");
    s.post(
        "/api/chat/message",
        Auth::Session(admin),
        json!({"conversation_id": cid, "content": "still there?"}),
    )
    .await
    .assert_error(404, "CONVERSATION_NOT_FOUND");
    let hits = s
        .get(&format!("/api/search?q={secret}"), Auth::Session(admin))
        .await;
    assert_eq!(hits.status, 200);
    assert!(!hits.text.contains(secret), "{}", hits.text);

    // Stop the server (every write flushed, the index committed), then
    // read every file of the data directory.
    let Env { s, .. } = e;
    let dir = s.stop().await;
    assert!(
        !files_containing(dir.path(), kept.as_bytes()).is_empty(),
        "the saved chat is on disk, so the scan sees what is written"
    );
    let found = files_containing(dir.path(), secret.as_bytes());
    assert!(found.is_empty(), "temporary text found in {found:?}");
}

/// The frames of one answer over the socket, up to its end.
async fn ws_answer(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    frame: Value,
) -> Vec<Value> {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
    let mut frames = Vec::new();
    while let Some(Ok(Message::Text(t))) = ws.next().await {
        let v: Value = serde_json::from_str(&t).unwrap();
        let end = v["event"] == "done" || v["event"] == "error";
        frames.push(v);
        if end {
            break;
        }
    }
    frames
}

#[tokio::test]
async fn the_socket_keeps_a_key_to_its_kind_and_starts_temporary_chats() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let e = env_with(|c| c.allow_user_keys = true).await;
    let url = e.s.base.replace("http://", "ws://") + "/api/chat/ws";
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "cookie",
        format!("confab_session={}", e.admin.cookie)
            .parse()
            .unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let frames = ws_answer(
        &mut ws,
        json!({"type": "chat", "content": "hi", "model": MODEL, "temporary": true,
            "provider_key": OWN_KEY, "provider_key_kind": "openai"}),
    )
    .await;
    assert_eq!(frames[0]["data"]["provider"], "oa", "{frames:?}");
    assert_eq!(frames.last().unwrap()["event"], "done");
    assert_eq!(
        e.oa.chat_requests()[0].header("authorization"),
        Some(format!("Bearer {OWN_KEY}").as_str())
    );
    for up in [&e.an, &e.ol] {
        for v in header_values(up) {
            assert!(!v.contains(OWN_KEY), "{v}");
        }
    }
    // Temporary: not a stored conversation, and no title request was made.
    let cid = frames[0]["data"]["conversation_id"].as_str().unwrap();
    e.s.get(
        &format!("/api/conversations/{cid}"),
        Auth::Session(&e.admin),
    )
    .await
    .assert_error(404, "CONVERSATION_NOT_FOUND");
    assert_eq!(
        e.oa.chat_requests().len(),
        1,
        "no title for a temporary chat"
    );
    // A bad kind is an error frame; the socket stays open.
    let frames = ws_answer(
        &mut ws,
        json!({"type": "chat", "content": "hi", "model": MODEL,
            "provider_key": OWN_KEY, "provider_key_kind": "ollama"}),
    )
    .await;
    assert_eq!(frames.last().unwrap()["event"], "error");
    assert_eq!(frames.last().unwrap()["data"]["code"], "VALIDATION_FAILED");
    let frames = ws_answer(
        &mut ws,
        json!({"type": "chat", "content": "hi", "model": MODEL}),
    )
    .await;
    assert_eq!(frames.last().unwrap()["event"], "done");
}
