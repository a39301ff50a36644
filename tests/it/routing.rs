//! One model served by several providers, through the real server: the
//! order providers are tried in (priority, least busy), failover before the
//! first token (refused connection, timeout, 429, 500, an error event before
//! any text) and never after it, cooldown of a provider that keeps failing,
//! and the names a model answers to (`llama3.2`, `llama3.2:latest`,
//! `ollama/llama3.2:latest`). Two fake upstreams stand for two hosts.

use crate::common;
use crate::common_upstream;

use common::{Auth, Session, SseReader, TestServer, text_of};
use common_upstream::FakeUpstream;
use confab::providers::registry::ProviderConfig;
use confab::providers::{
    OllamaProvider, OpenAiProvider, Provider, ProviderKind, ProviderOptions, RetryPolicy, Strategy,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const MODEL: &str = "llama3.2:latest";

/// Short enough that the timeout case stays quick, long enough for a
/// loaded machine to deliver a healthy first token.
fn options(idle: Duration) -> ProviderOptions {
    ProviderOptions {
        idle_timeout: idle,
        retry: RetryPolicy::none(),
        ..Default::default()
    }
}

/// Adds an Ollama provider at `base` offering `models` (all it lists when
/// `None`).
fn add_ollama(
    s: &TestServer,
    name: &str,
    base: &str,
    models: Option<&[&str]>,
    priority: i32,
    idle: Duration,
) {
    let p = OllamaProvider::new(name, base, None, confab::providers::default_client())
        .with_options(options(idle));
    let mut cfg = ProviderConfig::new(ProviderKind::Ollama, name, base).with_priority(priority);
    if let Some(m) = models {
        cfg = cfg.with_models(m.iter().map(|m| m.to_string()).collect());
    }
    s.state().providers.add_with(cfg, Arc::new(p)).unwrap();
}

struct Env {
    s: TestServer,
    admin: Session,
    /// The preferred provider "first" (priority 10).
    a: FakeUpstream,
    /// The fallback "second" (priority 0).
    b: FakeUpstream,
}

async fn env_with(f: impl FnOnce(&mut confab::config::Config)) -> Env {
    let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let s = TestServer::start_with(f).await;
    let admin = s.setup_admin("admin").await;
    let idle = Duration::from_secs(10);
    add_ollama(&s, "first", &a.ollama_base(), Some(&[MODEL]), 10, idle);
    add_ollama(&s, "second", &b.ollama_base(), Some(&[MODEL]), 0, idle);
    Env { s, admin, a, b }
}

async fn env() -> Env {
    env_with(|_| {}).await
}

async fn open(s: &TestServer, who: &Session, body: Value) -> reqwest::Response {
    let r = s
        .http
        .post(s.url("/api/chat/stream"))
        .header("cookie", format!("confab_session={}", who.cookie))
        .header("x-csrf-token", &who.csrf)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r
}

async fn chat(s: &TestServer, who: &Session, model: &str) -> Vec<common::Sse> {
    let r = open(s, who, json!({"content": "hello there", "model": model})).await;
    SseReader::new(r).collect().await
}

fn metas(events: &[common::Sse]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.event == "meta")
        .map(|e| e.data["provider"].as_str().unwrap().to_string())
        .collect()
}

/// The chat requests an upstream got for answers (title requests left out).
fn answers(up: &FakeUpstream) -> Vec<common_upstream::RecordedRequest> {
    up.chat_requests()
        .into_iter()
        .filter(|r| {
            r.body["messages"]
                .as_array()
                .and_then(|m| m.last())
                .is_some_and(|m| !m["content"].as_str().unwrap_or("").contains("Title:"))
        })
        .collect()
}

fn last(events: &[common::Sse]) -> &common::Sse {
    events.last().expect("some events")
}

/// The stored answer of a finished stream, as the API shows it.
async fn stored_answer(e: &Env, events: &[common::Sse]) -> Value {
    let meta = &events[0].data;
    let cid = meta["conversation_id"].as_str().unwrap();
    let r =
        e.s.get(
            &format!("/api/conversations/{cid}"),
            Auth::Session(&e.admin),
        )
        .await;
    assert_eq!(r.status, 200);
    let aid = meta["assistant_message_id"].as_str().unwrap();
    r.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == aid)
        .cloned()
        .expect("the answer is stored")
}

/// The preferred provider fails as `break_first` makes it; the answer
/// comes whole from the other, and a second `meta` names it.
async fn fails_over(e: &Env, expected_code_in_status: &str) {
    let events = chat(&e.s, &e.admin, MODEL).await;
    assert_eq!(metas(&events), ["first", "second"], "{events:?}");
    assert_eq!(events[0].event, "meta");
    assert_eq!(last(&events).event, "done", "{events:?}");
    // Every token once: nothing of the failed attempt, all of the answer.
    assert_eq!(text_of(&events), e.b.reply_for(MODEL));
    assert_eq!(answers(&e.b).len(), 1);
    assert_eq!(answers(&e.b)[0].model(), Some(MODEL));
    // The title is asked of the provider that answered.
    assert!(answers(&e.a).len() <= 1);
    assert_eq!(e.a.chat_requests().len(), answers(&e.a).len());
    let m = stored_answer(e, &events).await;
    assert_eq!(m["provider"], "second");
    assert_eq!(m["content"], e.b.reply_for(MODEL));
    let st = e.s.state().providers.status("first").unwrap();
    assert_eq!(st.last_error_code, Some(expected_code_in_status));
    assert_eq!(st.consecutive_failures, 1);
    assert!(!st.cooling_down);
}

#[tokio::test]
async fn fails_over_from_a_refused_connection() {
    let e = env().await;
    // A port nobody listens on any more.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    e.s.state().providers.remove("first");
    add_ollama(
        &e.s,
        "first",
        &format!("http://{closed}"),
        Some(&[MODEL]),
        10,
        Duration::from_secs(10),
    );
    fails_over(&e, "PROVIDER_UNREACHABLE").await;
}

#[tokio::test]
async fn fails_over_from_a_timeout() {
    let e = env().await;
    e.s.state().providers.remove("first");
    add_ollama(
        &e.s,
        "first",
        &e.a.ollama_base(),
        Some(&[MODEL]),
        10,
        Duration::from_millis(600),
    );
    e.a.set_flags(&["stall-headers"]);
    fails_over(&e, "PROVIDER_TIMEOUT").await;
    assert_eq!(answers(&e.a).len(), 1);
}

#[tokio::test]
async fn fails_over_from_429() {
    let e = env().await;
    e.a.set_flags(&["429"]);
    fails_over(&e, "RATE_LIMITED").await;
    assert_eq!(answers(&e.a).len(), 1);
}

#[tokio::test]
async fn fails_over_from_500() {
    let e = env().await;
    e.a.set_flags(&["500"]);
    fails_over(&e, "PROVIDER_ERROR").await;
}

#[tokio::test]
async fn fails_over_from_an_error_event_before_any_text() {
    let e = env().await;
    e.a.set_flags(&["error-first"]);
    fails_over(&e, "PROVIDER_ERROR").await;
}

#[tokio::test]
async fn never_fails_over_after_the_first_token() {
    let e = env().await;
    e.a.set_flags(&["error-midstream"]);
    let events = chat(&e.s, &e.admin, MODEL).await;
    assert_eq!(metas(&events), ["first"]);
    assert_eq!(last(&events).event, "error");
    assert_eq!(last(&events).data["code"], "PROVIDER_ERROR");
    assert_eq!(
        text_of(&events),
        common_upstream::partial(&e.a.reply_for(MODEL))
    );
    assert!(answers(&e.b).is_empty(), "no second answer was asked");
    let m = stored_answer(&e, &events).await;
    assert_eq!(m["provider"], "first");
    assert_eq!(m["status"], "error");
}

#[tokio::test]
async fn a_failure_the_next_provider_cannot_fix_stands() {
    // A refused key is not the provider being down: no failover.
    let e = env().await;
    e.a.set_flags(&["401"]);
    for _ in 0..4 {
        let events = chat(&e.s, &e.admin, MODEL).await;
        assert_eq!(metas(&events), ["first"]);
        assert_eq!(last(&events).event, "error");
    }
    assert!(answers(&e.b).is_empty());
    // Not the provider's fault: it does not cool down.
    let st = e.s.state().providers.status("first").unwrap();
    assert_eq!(st.last_error_code, Some("PROVIDER_ERROR"));
    assert!(!st.cooling_down);
    assert_eq!(st.consecutive_failures, 0);
}

#[tokio::test]
async fn the_last_error_stands_when_every_provider_fails() {
    let e = env().await;
    e.a.set_flags(&["500"]);
    e.b.set_flags(&["429"]);
    let events = chat(&e.s, &e.admin, MODEL).await;
    assert_eq!(last(&events).event, "error");
    assert_eq!(last(&events).data["code"], "RATE_LIMITED");
    assert_eq!(text_of(&events), "");
    assert_eq!(answers(&e.a).len(), 1);
    assert_eq!(answers(&e.b).len(), 1);
}

async fn provider_view(e: &Env, name: &str) -> Value {
    let r = e.s.get("/api/providers", Auth::Session(&e.admin)).await;
    assert_eq!(r.status, 200);
    r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap()
}

async fn model_view(e: &Env, provider: &str) -> Value {
    let r = e.s.get("/api/models", Auth::Session(&e.admin)).await;
    assert_eq!(r.status, 200);
    r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["provider"] == provider)
        .cloned()
        .unwrap()
}

#[tokio::test]
async fn a_provider_that_keeps_failing_cools_down_until_it_answers() {
    let e = env().await;
    e.a.set_flags(&["500"]);
    for _ in 0..3 {
        let events = chat(&e.s, &e.admin, MODEL).await;
        assert_eq!(metas(&events), ["first", "second"]);
        assert_eq!(last(&events).event, "done");
    }
    let p = provider_view(&e, "first").await;
    assert_eq!(p["cooling_down"], true, "{p}");
    assert!(p["cooling_until"].as_str().is_some(), "{p}");
    assert_eq!(provider_view(&e, "second").await["cooling_down"], false);
    let admin =
        e.s.get("/api/admin/providers", Auth::Session(&e.admin))
            .await;
    let a = admin.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "first")
        .cloned()
        .unwrap();
    assert_eq!(a["status"]["cooling_down"], true, "{a}");
    let m = model_view(&e, "first").await;
    assert_eq!(m["reachable"], false, "{m}");
    assert_eq!(m["cooling_down"], true);
    assert_eq!(model_view(&e, "second").await["reachable"], true);

    // Skipped while cooling: the fallback answers at once.
    let events = chat(&e.s, &e.admin, MODEL).await;
    assert_eq!(metas(&events), ["second"]);
    assert_eq!(answers(&e.a).len(), 3);

    // Pinned, it is the only candidate and is tried; its success ends
    // the cooldown.
    e.a.set_flags(&[]);
    let events = chat(&e.s, &e.admin, &format!("first/{MODEL}")).await;
    assert_eq!(metas(&events), ["first"]);
    assert_eq!(last(&events).event, "done");
    let p = provider_view(&e, "first").await;
    assert_eq!(p["cooling_down"], false, "{p}");
    assert_eq!(p["cooling_until"], Value::Null);
    let events = chat(&e.s, &e.admin, MODEL).await;
    assert_eq!(metas(&events), ["first"]);
}

#[tokio::test]
async fn the_highest_priority_answers_and_ties_go_by_registration_order() {
    let e = env().await;
    let events = chat(&e.s, &e.admin, MODEL).await;
    assert_eq!(metas(&events), ["first"]);
    assert!(answers(&e.b).is_empty());
    // A third provider with a higher priority takes over.
    let c = FakeUpstream::start().await;
    add_ollama(
        &e.s,
        "third",
        &c.ollama_base(),
        Some(&[MODEL]),
        20,
        Duration::from_secs(10),
    );
    let events = chat(&e.s, &e.admin, MODEL).await;
    assert_eq!(metas(&events), ["third"]);
    let p = provider_view(&e, "third").await;
    assert_eq!(p["priority"], 20);
    // Equal priorities: the one registered first, whatever its name.
    let d = FakeUpstream::start().await;
    add_ollama(
        &e.s,
        "also-third",
        &d.ollama_base(),
        Some(&[MODEL]),
        20,
        Duration::from_secs(10),
    );
    let events = chat(&e.s, &e.admin, MODEL).await;
    assert_eq!(metas(&events), ["third"]);
}

#[tokio::test]
async fn least_busy_spreads_answers() {
    let e = env_with(|c| c.routing.strategy = Strategy::LeastBusy).await;
    // "first" (higher priority) gets the first answer and stays busy.
    e.a.set_token_delay(Duration::from_millis(150));
    let r = open(&e.s, &e.admin, json!({"content": "one", "model": MODEL})).await;
    let mut reader = SseReader::new(r);
    let meta = reader.next().await.unwrap();
    assert_eq!(meta.data["provider"], "first");
    let delta = reader.next().await.unwrap();
    assert_eq!(delta.event, "delta");
    assert_eq!(provider_view(&e, "first").await["cooling_down"], false);
    let busy =
        e.s.get("/api/admin/providers", Auth::Session(&e.admin))
            .await;
    let first = busy.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "first")
        .cloned()
        .unwrap();
    assert_eq!(first["status"]["in_flight"], 1, "{first}");
    // While it streams, the idle one answers.
    let events = chat(&e.s, &e.admin, MODEL).await;
    assert_eq!(metas(&events), ["second"]);
    let rest = reader.collect().await;
    assert_eq!(last(&rest).event, "done");
    // Both idle again: priority decides.
    let events = chat(&e.s, &e.admin, MODEL).await;
    assert_eq!(metas(&events), ["first"]);
}

#[tokio::test]
async fn priority_keeps_the_preferred_provider_even_when_busy() {
    let e = env().await;
    e.a.set_token_delay(Duration::from_millis(150));
    let r = open(&e.s, &e.admin, json!({"content": "one", "model": MODEL})).await;
    let mut reader = SseReader::new(r);
    assert_eq!(reader.next().await.unwrap().data["provider"], "first");
    assert_eq!(reader.next().await.unwrap().event, "delta");
    let events = chat(&e.s, &e.admin, MODEL).await;
    assert_eq!(metas(&events), ["first"]);
    assert_eq!(last(&reader.collect().await).event, "done");
}

#[tokio::test]
async fn ollama_names_with_and_without_tag_and_provider_resolve_to_one_model() {
    let up = FakeUpstream::start().await;
    up.set_models(&[MODEL, "nomic-embed-text:latest"]);
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    // Its models come from the upstream's list, as for a detected Ollama.
    add_ollama(
        &s,
        "ollama",
        &up.ollama_base(),
        None,
        0,
        Duration::from_secs(10),
    );
    s.state().providers.refresh().await;
    for name in [
        "ollama/llama3.2:latest",
        "llama3.2:latest",
        "llama3.2",
        "ollama/llama3.2",
    ] {
        up.clear_requests();
        let events = chat(&s, &admin, name).await;
        assert_eq!(metas(&events), ["ollama"], "{name}");
        assert_eq!(last(&events).event, "done", "{name}: {events:?}");
        assert_eq!(text_of(&events), up.reply_for(MODEL), "{name}");
        // The upstream is always asked for its own name of the model.
        assert_eq!(answers(&up)[0].model(), Some(MODEL), "{name}");
    }
    for name in ["llama3.1", "ollama/llama3.1", "other/llama3.2"] {
        let r = s
            .post(
                "/api/chat/message",
                Auth::Session(&admin),
                json!({"content": "hi", "model": name}),
            )
            .await;
        r.assert_error(404, "MODEL_NOT_FOUND");
    }
    // The model list says what each model is.
    let r = s.get("/api/models", Auth::Session(&admin)).await;
    let items = r.body["items"].as_array().unwrap();
    let chat_model = items.iter().find(|m| m["id"] == MODEL).unwrap();
    assert_eq!(chat_model["kind"], "chat");
    assert_eq!(chat_model["providers"], json!(["ollama"]));
    assert_eq!(chat_model["label"], chat_model["display_name"]);
    assert_eq!(chat_model["reachable"], true);
    let embed = items
        .iter()
        .find(|m| m["id"] == "nomic-embed-text:latest")
        .unwrap();
    assert_eq!(embed["kind"], "embedding");
}

#[tokio::test]
async fn duplicate_models_carry_their_providers_and_a_label() {
    let e = env().await;
    let r = e.s.get("/api/models", Auth::Session(&e.admin)).await;
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    for m in items {
        assert_eq!(m["providers"], json!(["first", "second"]));
        let label = m["label"].as_str().unwrap();
        assert!(
            label.ends_with(&format!("({})", m["provider"].as_str().unwrap())),
            "{label}"
        );
    }
}

#[tokio::test]
async fn an_own_key_never_fails_over_to_another_kind() {
    let e = env_with(|c| c.allow_user_keys = true).await;
    // An OpenAI-compatible provider of the same model, preferred, and down.
    let oa = FakeUpstream::start().await;
    let p = OpenAiProvider::new(
        "oa",
        &oa.openai_base(),
        Some("sk-server-key-0000".into()),
        confab::providers::default_client(),
    )
    .with_options(options(Duration::from_secs(10)));
    let cfg = ProviderConfig::new(ProviderKind::Openai, "oa", oa.openai_base())
        .with_models(vec![MODEL.into()])
        .with_priority(50);
    let provider: Arc<dyn Provider> = Arc::new(p);
    e.s.state().providers.add_with(cfg, provider).unwrap();
    oa.set_flags(&["500"]);
    let r =
        e.s.http
            .post(e.s.url("/api/chat/stream"))
            .header("cookie", format!("confab_session={}", e.admin.cookie))
            .header("x-csrf-token", &e.admin.csrf)
            .header("x-provider-key", "sk-user-own-key-123")
            .json(&json!({"content": "hi", "model": MODEL}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    let events = SseReader::new(r).collect().await;
    assert_eq!(metas(&events), ["oa"]);
    assert_eq!(last(&events).event, "error");
    assert_eq!(
        oa.chat_requests()[0].header("authorization"),
        Some("Bearer sk-user-own-key-123")
    );
    // The Ollama hosts never saw the request, nor the key.
    assert!(e.a.requests().is_empty());
    assert!(e.b.requests().is_empty());

    // Without an own key, the same request fails over across kinds.
    let events = chat(&e.s, &e.admin, MODEL).await;
    assert_eq!(metas(&events), ["oa", "first"]);
    assert_eq!(last(&events).event, "done");
}

#[tokio::test]
async fn admins_set_the_priority_of_providers_they_add() {
    let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    for (name, up, priority) in [("host-a", &a, 1), ("host-b", &b, 2)] {
        let r = s
            .post(
                "/api/admin/providers",
                Auth::Session(&admin),
                json!({"kind": "ollama", "name": name, "base_url": up.ollama_base(),
                    "models": [MODEL], "priority": priority}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(r.body["priority"], priority);
    }
    let events = chat(&s, &admin, "llama3.2").await;
    assert_eq!(metas(&events), ["host-b"]);

    let r = s
        .patch(
            "/api/admin/providers/host-a",
            Auth::Session(&admin),
            json!({"priority": 3}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["priority"], 3);
    let events = chat(&s, &admin, "llama3.2").await;
    assert_eq!(metas(&events), ["host-a"]);

    let r = s
        .patch(
            "/api/admin/providers/host-a",
            Auth::Session(&admin),
            json!({"priority": 5000}),
        )
        .await;
    r.assert_error(400, "VALIDATION_FAILED");
    // Kept across a restart: it is stored with the provider.
    let dir = s.stop().await;
    let s = TestServer::start_in(dir, |_| {}).await;
    let admin = s.login("admin", common::PASSWORD).await;
    let r = s.get("/api/admin/providers", Auth::Session(&admin)).await;
    let host_a = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "host-a")
        .cloned()
        .unwrap();
    assert_eq!(host_a["priority"], 3);
}

#[tokio::test]
async fn the_json_answer_names_the_provider_that_answered() {
    let e = env().await;
    e.a.set_flags(&["500"]);
    let r = common::chat(
        &e.s,
        &e.admin,
        json!({"content": "hello there", "model": MODEL}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["provider"], "second");
    assert_eq!(r.body["content"], e.b.reply_for(MODEL));
    assert_eq!(answers(&e.a).len(), 1);
}
