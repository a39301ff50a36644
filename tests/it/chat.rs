//! The chat engine through the real server over TCP, against a fake
//! upstream that speaks each provider's wire format byte for byte.

use crate::common;
use crate::common_upstream;

use common::{Auth, Session, SseReader, TestServer, text_of};
use common_upstream::FakeUpstream;
use confab::providers::registry::ProviderConfig;
use confab::providers::{
    AnthropicProvider, OllamaProvider, OpenAiProvider, Provider, ProviderKind, ProviderOptions,
    RetryPolicy,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const BEHAVIOURS: &[&str] = &[
    "split-bytes",
    "utf8-split",
    "slow",
    "error-midstream",
    "429",
    "401",
    "500",
    "reset",
    "stall",
];

/// Model ids per provider: `<prefix>` and `<prefix>+<behaviour>`.
fn models_for(prefix: &str) -> Vec<String> {
    let mut m = vec![prefix.to_string()];
    m.extend(
        BEHAVIOURS
            .iter()
            .filter(|b| **b != "stall")
            .map(|b| format!("{prefix}+{b}")),
    );
    m
}

struct Env {
    s: TestServer,
    up: FakeUpstream,
    admin: Session,
}

/// A server with three providers (openai "oa", anthropic "an", ollama "ol")
/// pointing at one fake upstream, with a short idle timeout and no retries
/// so failure tests are quick.
async fn env() -> Env {
    env_with(|_| {}).await
}

async fn env_with(f: impl FnOnce(&mut confab::config::Config)) -> Env {
    let up = FakeUpstream::start().await;
    let s = TestServer::start_with(f).await;
    let admin = s.setup_admin("admin").await;
    // A generous idle timeout for everything, so a loaded 2-core machine
    // never turns a slow token into a timeout; the `+stall` models go to
    // twin providers with a short one, so the stall tests stay quick.
    let relaxed = ProviderOptions {
        idle_timeout: Duration::from_secs(15),
        retry: RetryPolicy::none(),
        ..Default::default()
    };
    let short = ProviderOptions {
        idle_timeout: Duration::from_millis(700),
        retry: RetryPolicy::none(),
        ..Default::default()
    };
    let client = confab::providers::default_client();
    let reg = &s.state().providers;
    for (name, models, opts) in [("", None, &relaxed), ("-stall", Some("stall"), &short)] {
        for (kind, p) in [
            (ProviderKind::Openai, "oa"),
            (ProviderKind::Anthropic, "an"),
            (ProviderKind::Ollama, "ol"),
        ] {
            let pname = format!("{p}{name}");
            let base = match kind {
                ProviderKind::Openai => up.openai_base(),
                ProviderKind::Anthropic => up.anthropic_base(),
                ProviderKind::Ollama => up.ollama_base(),
            };
            let key = (kind != ProviderKind::Ollama).then(|| "sk-test-key-0000".to_string());
            let provider: Arc<dyn Provider> = match kind {
                ProviderKind::Openai => Arc::new(
                    OpenAiProvider::new(&pname, &base, key, client.clone())
                        .with_options(opts.clone()),
                ),
                ProviderKind::Anthropic => Arc::new(
                    AnthropicProvider::new(&pname, &base, key, client.clone())
                        .with_options(opts.clone()),
                ),
                ProviderKind::Ollama => Arc::new(
                    OllamaProvider::new(&pname, &base, key, client.clone())
                        .with_options(opts.clone()),
                ),
            };
            let allow: Vec<String> = match models {
                Some(b) => vec![format!("{p}+{b}")],
                None => models_for(p),
            };
            let cfg = ProviderConfig::new(kind, pname, base)
                .with_api_key("sk-test-key-0000")
                .with_models(allow);
            reg.add_with(cfg, provider).unwrap();
        }
    }
    Env { s, up, admin }
}

async fn open_stream(s: &TestServer, who: &Session, body: Value) -> reqwest::Response {
    s.http
        .post(s.url("/api/chat/stream"))
        .header("cookie", format!("confab_session={}", who.cookie))
        .header("x-csrf-token", &who.csrf)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn chat(s: &TestServer, who: &Session, body: Value) -> Vec<common::Sse> {
    let r = open_stream(s, who, body).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    SseReader::new(r).collect().await
}

/// Starts an answer from `model` and reads its `meta` and `n` more events;
/// the reader stays open on the rest.
async fn start_and_read(
    e: &Env,
    model: &str,
    n: usize,
) -> (SseReader, common::Sse, Vec<common::Sse>) {
    let r = open_stream(&e.s, &e.admin, json!({"content": "go", "model": model})).await;
    let mut reader = SseReader::new(r);
    let meta = reader.next().await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..n {
        seen.push(reader.next().await.unwrap());
    }
    (reader, meta, seen)
}

/// The events of generation `gid` after `last_event_id` (all with None).
async fn follow(e: &Env, gid: &str, last_event_id: Option<u64>) -> Vec<common::Sse> {
    let mut rb =
        e.s.http
            .get(e.s.url(&format!("/api/generations/{gid}/events")))
            .header("cookie", format!("confab_session={}", e.admin.cookie));
    if let Some(id) = last_event_id {
        rb = rb.header("last-event-id", id.to_string());
    }
    let r = rb.send().await.unwrap();
    assert_eq!(r.status(), 200);
    SseReader::new(r).collect().await
}

/// The admin's view of message `i` of conversation `cid`.
async fn message_view(e: &Env, cid: &str, i: usize) -> Value {
    let conv =
        e.s.get(
            &format!("/api/conversations/{cid}"),
            Auth::Session(&e.admin),
        )
        .await;
    conv.body["messages"][i].clone()
}

fn check_shape(events: &[common::Sse]) {
    assert_eq!(events[0].event, "meta", "meta comes first");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.id, Some(i as u64 + 1), "ids count up from 1");
    }
    let last = events.last().unwrap();
    assert!(last.event == "done" || last.event == "error", "{last:?}");
    assert_eq!(events[events.len() - 2].event, "usage");
}

#[tokio::test]
async fn answers_stream_from_each_provider_and_are_stored() {
    let e = env().await;
    for p in ["oa", "an", "ol"] {
        let events = chat(
            &e.s,
            &e.admin,
            json!({"content": "hello there", "model": p}),
        )
        .await;
        check_shape(&events);
        let meta = &events[0].data;
        for k in [
            "conversation_id",
            "user_message_id",
            "assistant_message_id",
            "generation_id",
        ] {
            assert_eq!(meta[k].as_str().unwrap().len(), 36, "{k}");
        }
        assert_eq!(meta["model"], p);
        assert_eq!(meta["provider"], p);
        assert_eq!(text_of(&events), e.up.reply_for(p), "{p}");
        let usage = &events[events.len() - 2].data;
        assert!(usage["output_tokens"].as_u64().unwrap() > 0);
        assert_eq!(events.last().unwrap().data["finish_reason"], "stop");

        let cid = meta["conversation_id"].as_str().unwrap();
        let conv =
            e.s.get(
                &format!("/api/conversations/{cid}"),
                Auth::Session(&e.admin),
            )
            .await;
        assert_eq!(conv.status, 200, "{}", conv.text);
        let msgs = conv.body["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0]["role"], "user");
        assert_eq!(msgs[0]["content"], "hello there");
        assert_eq!(msgs[1]["role"], "assistant");
        assert_eq!(msgs[1]["status"], "complete");
        assert_eq!(msgs[1]["content"], e.up.reply_for(p));
        assert_eq!(msgs[1]["model"], p);
        assert_eq!(msgs[1]["provider"], p);
        assert_eq!(msgs[1]["parent_id"], msgs[0]["id"]);
        assert!(msgs[1]["duration_ms"].is_number());
        assert_eq!(msgs[1]["usage"]["output_tokens"], usage["output_tokens"]);
        assert_eq!(
            conv.body["model"], p,
            "sending with a model sets the conversation's model"
        );

        // A title is made in the background, by the model.
        let mut title = String::new();
        for _ in 0..100 {
            title =
                e.s.get(
                    &format!("/api/conversations/{cid}"),
                    Auth::Session(&e.admin),
                )
                .await
                .body["title"]
                    .as_str()
                    .unwrap()
                    .to_string();
            if title != "New chat" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_ne!(title, "New chat", "{p}");
        assert!(title.chars().count() <= 81);
    }
    // Anthropic got the system prompt top-level, with its headers.
    let c =
        e.s.post(
            "/api/conversations",
            Auth::Session(&e.admin),
            json!({"model": "an", "system_prompt": "Answer like a pirate."}),
        )
        .await;
    assert_eq!(c.status, 201);
    e.up.clear_requests();
    chat(
        &e.s,
        &e.admin,
        json!({"conversation_id": c.body["id"], "content": "hi"}),
    )
    .await;
    let req = e.up.chat_requests().into_iter().next().unwrap();
    assert_eq!(req.body["system"], "Answer like a pirate.");
    assert!(req.header("anthropic-version").is_some());
    assert!(
        req.body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["role"] != "system")
    );
}

#[tokio::test]
async fn every_provider_and_behaviour_ends_in_one_stable_code() {
    let e = env().await;
    for p in ["oa", "an", "ol"] {
        for b in BEHAVIOURS {
            let model = format!("{p}+{b}");
            let events = chat(&e.s, &e.admin, json!({"content": "test", "model": model})).await;
            check_shape(&events);
            let last = events.last().unwrap();
            let (want_event, want_code) = match *b {
                "split-bytes" | "utf8-split" | "slow" => ("done", None),
                "error-midstream" | "401" | "500" | "reset" => ("error", Some("PROVIDER_ERROR")),
                "429" => ("error", Some("RATE_LIMITED")),
                "stall" => ("error", Some("PROVIDER_TIMEOUT")),
                _ => unreachable!(),
            };
            assert_eq!(last.event, want_event, "{model}: {last:?}");
            let cid = events[0].data["conversation_id"].as_str().unwrap();
            let conv =
                e.s.get(
                    &format!("/api/conversations/{cid}"),
                    Auth::Session(&e.admin),
                )
                .await;
            let stored = &conv.body["messages"][1];
            match want_code {
                None => {
                    assert_eq!(text_of(&events), e.up.reply_for(&model), "{model}");
                    assert_eq!(stored["status"], "complete");
                    assert_eq!(stored["content"], e.up.reply_for(&model));
                }
                Some(code) => {
                    assert_eq!(last.data["code"], code, "{model}: {last:?}");
                    assert!(!last.data["message"].as_str().unwrap().is_empty());
                    assert!(last.data["request_id"].is_string());
                    assert!(
                        !last.data["message"]
                            .as_str()
                            .unwrap()
                            .contains("sk-test-key"),
                        "never the key"
                    );
                    if *b == "429" {
                        assert_eq!(last.data["retry_after"], 7);
                    }
                    assert_eq!(stored["status"], "error", "{model}");
                    assert_eq!(stored["error"]["code"], code);
                    // Whatever text arrived before the failure is kept.
                    assert_eq!(stored["content"], text_of(&events), "{model}");
                }
            }
        }
    }
    // A provider that cannot be reached at all.
    let dead = ProviderConfig::new(ProviderKind::Openai, "dead", "http://127.0.0.1:9/v1")
        .with_models(vec!["dead-model".into()]);
    e.s.state().providers.add(dead).unwrap();
    let events = chat(
        &e.s,
        &e.admin,
        json!({"content": "x", "model": "dead-model"}),
    )
    .await;
    assert_eq!(events.last().unwrap().data["code"], "PROVIDER_UNREACHABLE");
}

/// Polls the conversation's title until `done(title)` (the titles are
/// written in the background after an answer ends).
async fn title_when(e: &Env, cid: &str, done: impl Fn(&str) -> bool) -> String {
    let mut title = String::new();
    for _ in 0..200 {
        title =
            e.s.get(
                &format!("/api/conversations/{cid}"),
                Auth::Session(&e.admin),
            )
            .await
            .body["title"]
                .as_str()
                .unwrap()
                .to_string();
        if done(&title) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    title
}

#[tokio::test]
async fn a_chat_whose_first_answer_failed_is_named_and_renamed_when_one_succeeds() {
    let e = env().await;
    let events = chat(
        &e.s,
        &e.admin,
        json!({"content": "Plan a weekend in Lisbon with kids", "model": "oa+500"}),
    )
    .await;
    assert_eq!(events.last().unwrap().event, "error");
    let cid = events[0].data["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Named from the question, not "New chat" for good.
    let title = title_when(&e, &cid, |t| t != "New chat").await;
    assert_eq!(title, "Plan a weekend in Lisbon with kids");
    // The first answer that completes names it with the model, as usual.
    let events = chat(
        &e.s,
        &e.admin,
        json!({"conversation_id": cid, "content": "again please", "model": "oa"}),
    )
    .await;
    assert_eq!(events.last().unwrap().event, "done");
    let title = title_when(&e, &cid, |t| t != "Plan a weekend in Lisbon with kids").await;
    assert_ne!(
        title, "Plan a weekend in Lisbon with kids",
        "the model titled it"
    );
    assert_ne!(title, "New chat");
}

#[tokio::test]
async fn unknown_model_and_bad_requests_are_clear_errors() {
    let e = env().await;
    let r =
        e.s.post(
            "/api/chat/stream",
            Auth::Session(&e.admin),
            json!({"content": "x", "model": "nope"}),
        )
        .await;
    r.assert_error(404, "MODEL_NOT_FOUND");
    e.s.post(
        "/api/chat/stream",
        Auth::Session(&e.admin),
        json!({"content": "  ", "model": "oa"}),
    )
    .await
    .assert_error(400, "VALIDATION_FAILED");
    e.s.post(
        "/api/chat/stream",
        Auth::Session(&e.admin),
        json!({"content": "x", "conversation_id": "01a2009b-0000-7000-8000-000000000000"}),
    )
    .await
    .assert_error(404, "CONVERSATION_NOT_FOUND");
    e.s.post("/api/chat/stream", Auth::None, json!({"content": "x"}))
        .await
        .assert_error(401, "AUTH_REQUIRED");
    e.s.post(
        "/api/chat/stream",
        Auth::CookieOnly(&e.admin),
        json!({"content": "x"}),
    )
    .await
    .assert_error(403, "CSRF_INVALID");
    // A failed request stored nothing.
    let list = e.s.get("/api/conversations", Auth::Session(&e.admin)).await;
    assert_eq!(
        list.body["items"].as_array().unwrap().len(),
        0,
        "{}",
        list.text
    );
}

#[tokio::test]
async fn resume_after_a_dropped_client_yields_exactly_the_same_text() {
    let e = env().await;
    let model = "oa+slow";
    let (reader, meta, seen) = start_and_read(&e, model, 3).await;
    let gid = meta.data["generation_id"].as_str().unwrap().to_string();
    let last_id = seen.last().unwrap().id.unwrap();
    drop(reader); // the connection drops mid-answer

    let rest = follow(&e, &gid, Some(last_id)).await;
    assert_eq!(
        rest[0].id,
        Some(last_id + 1),
        "resumes right after the last seen id"
    );
    let mut all = vec![meta.clone()];
    all.extend(seen);
    all.extend(rest);
    check_shape(&all);
    assert_eq!(text_of(&all), e.up.reply_for(model));

    // A full replay from the start is identical, even after the end.
    let replay = follow(&e, &gid, None).await;
    assert_eq!(replay.len(), all.len());
    assert_eq!(text_of(&replay), e.up.reply_for(model));
}

#[tokio::test]
async fn opening_a_streaming_answer_gives_its_live_text_and_where_to_follow_from() {
    let e = env().await;
    let model = "oa+slow";
    let (reader, meta, _) = start_and_read(&e, model, 3).await;
    let gid = meta.data["generation_id"].as_str().unwrap().to_string();
    let cid = meta.data["conversation_id"].as_str().unwrap().to_string();
    // Read well before the first 500 ms flush: the stored text is behind,
    // the view is not.
    let m = message_view(&e, &cid, 1).await;
    assert_eq!(m["status"], "streaming");
    assert_eq!(m["generation_id"], gid.as_str());
    let upto = m["generation_event_id"]
        .as_u64()
        .expect("generation_event_id");
    let content = m["content"].as_str().unwrap().to_string();
    assert!(
        upto >= 4,
        "the view reaches at least the events already read: {upto}"
    );
    drop(reader);

    // Following from that id appends exactly the rest.
    let rest = follow(&e, &gid, Some(upto)).await;
    assert_eq!(rest[0].id, Some(upto + 1));
    assert_eq!(rest.last().unwrap().event, "done");
    assert_eq!(
        format!("{content}{}", text_of(&rest)),
        e.up.reply_for(model),
        "the live text plus what follows is the answer, nothing twice"
    );
    // Once stored, the message carries neither mark.
    let m = message_view(&e, &cid, 1).await;
    assert_eq!(m["status"], "complete");
    assert!(m.get("generation_id").is_none() && m.get("generation_event_id").is_none());
}

#[tokio::test]
async fn stop_keeps_the_partial_answer() {
    let e = env().await;
    let r = open_stream(&e.s, &e.admin, json!({"content": "go", "model": "ol+slow"})).await;
    let mut reader = SseReader::new(r);
    let meta = reader.next().await.unwrap();
    let gid = meta.data["generation_id"].as_str().unwrap();
    let cid = meta.data["conversation_id"].as_str().unwrap().to_string();
    let first = reader.next().await.unwrap();
    assert_eq!(first.event, "delta");
    let r =
        e.s.delete(&format!("/api/generations/{gid}"), Auth::Session(&e.admin))
            .await;
    assert_eq!(r.status, 204);
    let mut events = vec![meta.clone(), first];
    while let Some(ev) = reader.next().await {
        events.push(ev);
    }
    check_shape(&events);
    assert_eq!(events.last().unwrap().event, "done");
    assert_eq!(events.last().unwrap().data["finish_reason"], "stopped");
    let partial = text_of(&events);
    assert!(!partial.is_empty() && partial.len() < e.up.reply_for("ol+slow").len());
    let m = message_view(&e, &cid, 1).await;
    assert_eq!(m["status"], "interrupted");
    assert_eq!(m["content"], partial.as_str());
    assert_eq!(m["finish_reason"], "stopped");
}

#[tokio::test]
async fn branches_regenerate_edit_and_switch() {
    let e = env().await;
    let ev = chat(
        &e.s,
        &e.admin,
        json!({"content": "first question", "model": "oa"}),
    )
    .await;
    let cid = ev[0].data["conversation_id"].as_str().unwrap().to_string();
    let u1 = ev[0].data["user_message_id"].as_str().unwrap().to_string();
    let a1 = ev[0].data["assistant_message_id"]
        .as_str()
        .unwrap()
        .to_string();
    let ev2 = chat(
        &e.s,
        &e.admin,
        json!({"conversation_id": cid, "content": "second question"}),
    )
    .await;
    let u2 = ev2[0].data["user_message_id"].as_str().unwrap().to_string();
    assert_eq!(ev2[0].data["parent_id"], u2.as_str());
    let a2 = ev2[0].data["assistant_message_id"]
        .as_str()
        .unwrap()
        .to_string();

    // Regenerate the second answer: a sibling under u2.
    let ev3 = chat(
        &e.s,
        &e.admin,
        json!({"conversation_id": cid, "regenerate_of": a2}),
    )
    .await;
    assert!(ev3[0].data["user_message_id"].is_null());
    let a2b = ev3[0].data["assistant_message_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(ev3[0].data["parent_id"], u2.as_str());

    // Edit the second question: a sibling of u2 under a1.
    let ev4 = chat(
        &e.s,
        &e.admin,
        json!({"conversation_id": cid, "parent_id": a1, "content": "second question, edited"}),
    )
    .await;
    let u2b = ev4[0].data["user_message_id"].as_str().unwrap().to_string();
    // Edit the very first question: a new root.
    let ev5 = chat(
        &e.s,
        &e.admin,
        json!({"conversation_id": cid, "parent_id": null, "content": "first, edited"}),
    )
    .await;
    let u1b = ev5[0].data["user_message_id"].as_str().unwrap().to_string();

    let tree =
        e.s.get(
            &format!("/api/conversations/{cid}/tree"),
            Auth::Session(&e.admin),
        )
        .await;
    let items = tree.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 9);
    let parent = |id: &str| items.iter().find(|m| m["id"] == id).unwrap()["parent_id"].clone();
    assert_eq!(parent(&a2b), json!(u2));
    assert_eq!(parent(&u2b), json!(a1));
    assert_eq!(parent(&u1b), Value::Null);

    // The shown thread is the newest branch.
    let conv =
        e.s.get(
            &format!("/api/conversations/{cid}"),
            Auth::Session(&e.admin),
        )
        .await;
    let thread: Vec<&str> = conv.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(thread.len(), 2);
    assert_eq!(thread[0], "first, edited");
    assert_eq!(
        conv.body["messages"][0]["sibling_ids"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Switch back to the first root: the newest path below it is shown.
    let r =
        e.s.patch(
            &format!("/api/conversations/{cid}"),
            Auth::Session(&e.admin),
            json!({"current_leaf": u1}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let conv =
        e.s.get(
            &format!("/api/conversations/{cid}"),
            Auth::Session(&e.admin),
        )
        .await;
    let ids: Vec<&str> = conv.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids[0], u1);
    assert_eq!(ids[2], u2b, "newest child of a1 is the edited question");
    // Switch to the regenerated answer under the original second question.
    e.s.patch(
        &format!("/api/conversations/{cid}"),
        Auth::Session(&e.admin),
        json!({"current_leaf": a2b}),
    )
    .await;
    let page =
        e.s.get(
            &format!("/api/conversations/{cid}/messages?limit=2"),
            Auth::Session(&e.admin),
        )
        .await;
    let msgs = page.body["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(page.body["has_more"], true);
    assert_eq!(msgs[0]["id"], u2.as_str());
    assert_eq!(msgs[1]["id"], a2b.as_str());
    assert_eq!(msgs[1]["sibling_ids"].as_array().unwrap().len(), 2);
    let newest =
        e.s.get(
            &format!("/api/conversations/{cid}?limit=1"),
            Auth::Session(&e.admin),
        )
        .await;
    assert_eq!(newest.body["messages"].as_array().unwrap().len(), 1);
    assert_eq!(newest.body["messages"][0]["id"], a2b.as_str());
    assert_eq!(newest.body["has_more"], true);
    e.s.get(
        &format!("/api/conversations/{cid}?limit=0"),
        Auth::Session(&e.admin),
    )
    .await
    .assert_error(400, "VALIDATION_FAILED");
    let older =
        e.s.get(
            &format!("/api/conversations/{cid}/messages?limit=5&before={u2}"),
            Auth::Session(&e.admin),
        )
        .await;
    assert_eq!(older.body["messages"].as_array().unwrap().len(), 2);
    assert_eq!(older.body["has_more"], false);
    e.s.patch(
        &format!("/api/conversations/{cid}"),
        Auth::Session(&e.admin),
        json!({"current_leaf": "01a2009b-0000-7000-8000-000000000000"}),
    )
    .await
    .assert_error(400, "VALIDATION_FAILED");
}

#[tokio::test]
async fn conversations_crud_paging_and_filters() {
    let e = env().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let r =
            e.s.post(
                "/api/conversations",
                Auth::Session(&e.admin),
                json!({"title": format!("chat {i}")}),
            )
            .await;
        assert_eq!(r.status, 201);
        assert_eq!(r.body["title"], format!("chat {i}"));
        ids.push(r.body["id"].as_str().unwrap().to_string());
    }
    let p1 =
        e.s.get("/api/conversations?limit=3", Auth::Session(&e.admin))
            .await;
    let titles: Vec<&str> = p1.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["chat 6", "chat 5", "chat 4"], "newest first");
    let mut seen = titles.len();
    let mut cursor = p1.body["next_cursor"].as_str().unwrap().to_string();
    loop {
        let p =
            e.s.get(
                &format!("/api/conversations?limit=3&cursor={cursor}"),
                Auth::Session(&e.admin),
            )
            .await;
        seen += p.body["items"].as_array().unwrap().len();
        match p.body["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, 7);
    e.s.get("/api/conversations?cursor=garbage", Auth::Session(&e.admin))
        .await
        .assert_error(400, "VALIDATION_FAILED");

    // Rename moves it to the top; pin and archive filter.
    let r =
        e.s.patch(
            &format!("/api/conversations/{}", ids[0]),
            Auth::Session(&e.admin),
            json!({"title": "renamed", "pinned": true}),
        )
        .await;
    assert_eq!(r.body["title"], "renamed");
    assert_eq!(r.body["pinned"], true);
    let top =
        e.s.get("/api/conversations?limit=1", Auth::Session(&e.admin))
            .await;
    assert_eq!(top.body["items"][0]["title"], "renamed");
    let pinned =
        e.s.get("/api/conversations?pinned=true", Auth::Session(&e.admin))
            .await;
    assert_eq!(pinned.body["items"].as_array().unwrap().len(), 1);
    e.s.patch(
        &format!("/api/conversations/{}", ids[1]),
        Auth::Session(&e.admin),
        json!({"archived": true}),
    )
    .await;
    let active = e.s.get("/api/conversations", Auth::Session(&e.admin)).await;
    assert_eq!(active.body["items"].as_array().unwrap().len(), 6);
    let archived =
        e.s.get("/api/conversations?archived=true", Auth::Session(&e.admin))
            .await;
    assert_eq!(archived.body["items"][0]["id"], ids[1].as_str());
    e.s.patch(
        &format!("/api/conversations/{}", ids[2]),
        Auth::Session(&e.admin),
        json!({"title": ""}),
    )
    .await
    .assert_error(400, "VALIDATION_FAILED");
    e.s.patch(
        &format!("/api/conversations/{}", ids[2]),
        Auth::Session(&e.admin),
        json!({"system_prompt": "be terse", "model": "oa"}),
    )
    .await;
    let c =
        e.s.get(
            &format!("/api/conversations/{}", ids[2]),
            Auth::Session(&e.admin),
        )
        .await;
    assert_eq!(c.body["system_prompt"], "be terse");
    e.s.patch(
        &format!("/api/conversations/{}", ids[2]),
        Auth::Session(&e.admin),
        json!({"system_prompt": null}),
    )
    .await;
    let c =
        e.s.get(
            &format!("/api/conversations/{}", ids[2]),
            Auth::Session(&e.admin),
        )
        .await;
    assert!(c.body["system_prompt"].is_null());
    assert_eq!(c.body["model"], "oa", "absent fields are kept");

    // Delete removes the conversation and its messages.
    let ev = chat(
        &e.s,
        &e.admin,
        json!({"conversation_id": ids[3], "content": "hi", "model": "oa"}),
    )
    .await;
    assert_eq!(ev.last().unwrap().event, "done");
    let r =
        e.s.delete(
            &format!("/api/conversations/{}", ids[3]),
            Auth::Session(&e.admin),
        )
        .await;
    assert_eq!(r.status, 204);
    e.s.get(
        &format!("/api/conversations/{}", ids[3]),
        Auth::Session(&e.admin),
    )
    .await
    .assert_error(404, "CONVERSATION_NOT_FOUND");
    e.s.get(
        &format!("/api/conversations/{}/tree", ids[3]),
        Auth::Session(&e.admin),
    )
    .await
    .assert_error(404, "CONVERSATION_NOT_FOUND");
}

#[tokio::test]
async fn another_users_ids_are_all_404() {
    let e = env().await;
    let bob = e.s.user(&e.admin, "bob").await;
    let r = open_stream(
        &e.s,
        &e.admin,
        json!({"content": "secret plans", "model": "oa+slow"}),
    )
    .await;
    let mut reader = SseReader::new(r);
    let meta = reader.next().await.unwrap().data;
    let cid = meta["conversation_id"].as_str().unwrap();
    let gid = meta["generation_id"].as_str().unwrap();
    let aid = meta["assistant_message_id"].as_str().unwrap();

    for path in [
        format!("/api/conversations/{cid}"),
        format!("/api/conversations/{cid}/messages"),
        format!("/api/conversations/{cid}/tree"),
    ] {
        e.s.get(&path, Auth::Session(&bob))
            .await
            .assert_error(404, "CONVERSATION_NOT_FOUND");
    }
    e.s.get(
        &format!("/api/generations/{gid}/events"),
        Auth::Session(&bob),
    )
    .await
    .assert_error(404, "NOT_FOUND");
    e.s.delete(&format!("/api/generations/{gid}"), Auth::Session(&bob))
        .await
        .assert_error(404, "NOT_FOUND");
    e.s.patch(
        &format!("/api/conversations/{cid}"),
        Auth::Session(&bob),
        json!({"title": "mine"}),
    )
    .await
    .assert_error(404, "CONVERSATION_NOT_FOUND");
    e.s.delete(&format!("/api/conversations/{cid}"), Auth::Session(&bob))
        .await
        .assert_error(404, "CONVERSATION_NOT_FOUND");
    e.s.post(
        "/api/chat/stream",
        Auth::Session(&bob),
        json!({"conversation_id": cid, "content": "hijack", "model": "oa"}),
    )
    .await
    .assert_error(404, "CONVERSATION_NOT_FOUND");
    e.s.post(
        "/api/chat/stream",
        Auth::Session(&bob),
        json!({"conversation_id": cid, "regenerate_of": aid}),
    )
    .await
    .assert_error(404, "CONVERSATION_NOT_FOUND");
    assert_eq!(
        e.s.get("/api/conversations", Auth::Session(&bob))
            .await
            .body["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // The owner's answer was not disturbed.
    let rest = {
        let mut v = Vec::new();
        while let Some(ev) = reader.next().await {
            v.push(ev);
        }
        v
    };
    assert_eq!(rest.last().unwrap().event, "done");
}

#[tokio::test]
async fn plain_json_message_endpoint() {
    let e = env().await;
    let r =
        e.s.post(
            "/api/chat/message",
            Auth::Session(&e.admin),
            json!({"content": "hi", "model": "an", "stream": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["role"], "assistant");
    assert_eq!(r.body["status"], "complete");
    assert_eq!(r.body["content"], e.up.reply_for("an"));
    assert!(r.body["usage"]["input_tokens"].as_u64().unwrap() > 0);
    let r =
        e.s.post(
            "/api/chat/message",
            Auth::Session(&e.admin),
            json!({"content": "hi", "model": "an+429"}),
        )
        .await;
    r.assert_error(429, "RATE_LIMITED");
    let r =
        e.s.post(
            "/api/chat/message",
            Auth::Session(&e.admin),
            json!({"content": "hi", "model": "oa+stall"}),
        )
        .await;
    r.assert_error(504, "PROVIDER_TIMEOUT");
}

#[tokio::test]
async fn two_hundred_concurrent_streams_all_complete() {
    let e = env().await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let http = e.s.http.clone();
        let url = e.s.url("/api/chat/stream");
        let cookie = format!("confab_session={}", e.admin.cookie);
        let csrf = e.admin.csrf.clone();
        let model = ["oa", "an", "ol"][i % 3];
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .header("cookie", cookie)
                .header("x-csrf-token", csrf)
                .json(&json!({"content": format!("question {i}"), "model": model}))
                .send()
                .await
                .unwrap();
            (model, SseReader::new(r).collect().await)
        }));
    }
    let mut convs = std::collections::HashSet::new();
    for t in tasks {
        let (model, events) = t.await.unwrap();
        check_shape(&events);
        assert_eq!(events.last().unwrap().event, "done");
        assert_eq!(text_of(&events), e.up.reply_for(model));
        convs.insert(
            events[0].data["conversation_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(convs.len(), 200);
    let all =
        e.s.get("/api/conversations?limit=200", Auth::Session(&e.admin))
            .await;
    assert_eq!(all.body["items"].as_array().unwrap().len(), 200);
}

#[tokio::test]
async fn long_threads_are_trimmed_oldest_first() {
    let e = env().await;
    let long = "lorem ipsum dolor sit amet ".repeat(500); // ~3,400 tokens
    let ev = chat(&e.s, &e.admin, json!({"content": long, "model": "oa"})).await;
    let cid = ev[0].data["conversation_id"].as_str().unwrap().to_string();
    assert_eq!(ev[0].data["trimmed_messages"], 0);
    chat(
        &e.s,
        &e.admin,
        json!({"conversation_id": cid, "content": long}),
    )
    .await;
    e.up.clear_requests();
    let ev = chat(
        &e.s,
        &e.admin,
        json!({"conversation_id": cid, "content": "short question"}),
    )
    .await;
    assert_eq!(ev[0].data["context_trimmed"], true);
    assert!(ev[0].data["trimmed_messages"].as_u64().unwrap() >= 1);
    let sent = e.up.chat_requests().into_iter().next().unwrap();
    let msgs = sent.body["messages"].as_array().unwrap();
    assert_eq!(msgs.last().unwrap()["content"], "short question");
    assert!(msgs.len() < 5);
}

#[tokio::test]
async fn bring_your_own_key_only_when_allowed() {
    let e = env().await;
    let r =
        e.s.http
            .post(e.s.url("/api/chat/stream"))
            .header("cookie", format!("confab_session={}", e.admin.cookie))
            .header("x-csrf-token", &e.admin.csrf)
            .header("x-provider-key", "sk-user-own-key-123")
            .json(&json!({"content": "hi", "model": "oa"}))
            .send()
            .await
            .unwrap();
    common::Resp::from(r).await.assert_error(403, "FORBIDDEN");

    let e = env_with(|c| c.allow_user_keys = true).await;
    e.up.clear_requests();
    let r =
        e.s.http
            .post(e.s.url("/api/chat/stream"))
            .header("cookie", format!("confab_session={}", e.admin.cookie))
            .header("x-csrf-token", &e.admin.csrf)
            .header("x-provider-key", "sk-user-own-key-123")
            .json(&json!({"content": "hi", "model": "oa"}))
            .send()
            .await
            .unwrap();
    let events = SseReader::new(r).collect().await;
    assert_eq!(events.last().unwrap().event, "done");
    let req = e.up.chat_requests().into_iter().next().unwrap();
    assert_eq!(
        req.header("authorization"),
        Some("Bearer sk-user-own-key-123")
    );
    let cid = events[0].data["conversation_id"].as_str().unwrap();
    wait_for_title(&e, cid).await;
    // The title request went with the user's key too: the server's key never
    // carries a bring-your-own-key user's message (issue 13, item 7).
    let sent = e.up.chat_requests();
    assert_eq!(sent.len(), 2, "the answer and the title");
    for r in &sent {
        assert_eq!(
            r.header("authorization"),
            Some("Bearer sk-user-own-key-123"),
            "{}",
            r.body
        );
    }

    // The same with Anthropic's header.
    e.up.clear_requests();
    let r =
        e.s.http
            .post(e.s.url("/api/chat/stream"))
            .header("cookie", format!("confab_session={}", e.admin.cookie))
            .header("x-csrf-token", &e.admin.csrf)
            .header("x-provider-key", "sk-ant-user-own-456")
            .json(&json!({"content": "hello", "model": "an"}))
            .send()
            .await
            .unwrap();
    let events = SseReader::new(r).collect().await;
    assert_eq!(events.last().unwrap().event, "done");
    wait_for_title(&e, events[0].data["conversation_id"].as_str().unwrap()).await;
    let sent = e.up.chat_requests();
    assert_eq!(sent.len(), 2, "the answer and the title");
    for r in &sent {
        assert_eq!(r.header("x-api-key"), Some("sk-ant-user-own-456"));
    }
    // No request at all carried the server's key with a user's words.
    for r in e.up.requests() {
        for (_, v) in &r.headers {
            assert!(!v.contains("sk-test-key-0000"), "{} {}", r.path, r.body);
        }
    }
}

/// Waits until the background titling has named the conversation.
async fn wait_for_title(e: &Env, cid: &str) -> String {
    for _ in 0..200 {
        let r =
            e.s.get(
                &format!("/api/conversations/{cid}"),
                Auth::Session(&e.admin),
            )
            .await;
        let title = r.body["title"].as_str().unwrap().to_string();
        if title != "New chat" {
            return title;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("conversation {cid} was never titled");
}

#[tokio::test]
async fn websocket_carries_the_same_events_and_stop() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    let e = env().await;
    let url = e.s.base.replace("http://", "ws://") + "/api/chat/ws";
    let mut req = url.clone().into_client_request().unwrap();
    req.headers_mut().insert(
        "cookie",
        format!("confab_session={}", e.admin.cookie)
            .parse()
            .unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::Text(
        json!({"type": "chat", "content": "hi", "model": "an"})
            .to_string()
            .into(),
    ))
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
    assert_eq!(frames[0]["event"], "meta");
    assert_eq!(frames.last().unwrap()["event"], "done");
    let text: String = frames
        .iter()
        .filter(|f| f["event"] == "delta")
        .map(|f| f["data"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, e.up.reply_for("an"));

    // Stop over the socket.
    ws.send(Message::Text(
        json!({"type": "chat", "content": "hi", "model": "oa+slow"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let mut stopped = false;
    while let Some(Ok(Message::Text(t))) = ws.next().await {
        let v: Value = serde_json::from_str(&t).unwrap();
        if v["event"] == "delta" && !stopped {
            ws.send(Message::Text(
                json!({"type": "stop", "generation_id": v["generation_id"]})
                    .to_string()
                    .into(),
            ))
            .await
            .unwrap();
            stopped = true;
        }
        if v["event"] == "done" {
            assert_eq!(v["data"]["finish_reason"], "stopped");
            break;
        }
    }
    assert!(stopped);

    // Cross-site pages cannot open the socket with the cookie.
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "cookie",
        format!("confab_session={}", e.admin.cookie)
            .parse()
            .unwrap(),
    );
    req.headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_err());
}

#[tokio::test]
async fn graceful_shutdown_stores_running_answers_as_interrupted() {
    let e = env_with(|c| c.shutdown_grace_secs = 0).await;
    let r = open_stream(&e.s, &e.admin, json!({"content": "go", "model": "oa+slow"})).await;
    let mut reader = SseReader::new(r);
    let meta = reader.next().await.unwrap().data;
    reader.next().await.unwrap();
    let cid = meta["conversation_id"].as_str().unwrap().to_string();
    let admin = e.admin.clone();
    let dir = e.s.stop().await;
    let s = TestServer::start_in(dir, |_| {}).await;
    let conv = s
        .get(&format!("/api/conversations/{cid}"), Auth::Session(&admin))
        .await;
    let m = &conv.body["messages"][1];
    assert_eq!(m["status"], "interrupted", "{}", conv.text);
    assert!(!m["content"].as_str().unwrap().is_empty());
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the chat WebSocket with a session cookie or a bearer credential.
async fn open_ws(s: &TestServer, auth: Auth<'_>) -> Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = s.base.replace("http://", "ws://") + "/api/chat/ws";
    let mut req = url.into_client_request().unwrap();
    let (name, value) = match auth {
        Auth::Session(who) | Auth::CookieOnly(who) => {
            ("cookie", format!("confab_session={}", who.cookie))
        }
        Auth::Bearer(t) => ("authorization", format!("Bearer {t}")),
        Auth::None => panic!("the socket needs a credential"),
    };
    req.headers_mut().insert(name, value.parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

async fn ws_send(ws: &mut Ws, frame: Value) {
    use futures::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        frame.to_string().into(),
    ))
    .await
    .unwrap();
}

/// The next frame: `Ok(json)` for a text frame, `Err(close code)` when the
/// server closes the socket (0 when it ends without a close frame).
async fn ws_next(ws: &mut Ws) -> Result<Value, u16> {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("a frame within 20 s");
        match msg {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Close(f))) => return Err(f.map_or(0, |f| u16::from(f.code))),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Err(0),
        }
    }
}

/// Sends a chat frame and reads to its `done`; returns the generation id.
async fn ws_chat_done(ws: &mut Ws) -> String {
    ws_send(ws, json!({"type": "chat", "content": "hi", "model": "an"})).await;
    loop {
        let v = ws_next(ws).await.expect("frames, not a close");
        assert_ne!(v["event"], "error", "{v}");
        if v["event"] == "done" {
            return v["generation_id"].as_str().unwrap().to_string();
        }
    }
}

/// Sends a chat frame on a socket whose credential is dead: an error frame
/// with `code`, then a close with 1008 (policy violation).
async fn ws_refused_and_closed(ws: &mut Ws, code: &str) {
    ws_send(
        ws,
        json!({"type": "chat", "content": "still there?", "model": "an"}),
    )
    .await;
    let v = ws_next(ws).await.expect("an error frame first");
    assert_eq!(v["event"], "error", "{v}");
    assert_eq!(v["data"]["code"], code, "{v}");
    assert!(v["data"]["request_id"].is_string(), "{v}");
    assert_eq!(ws_next(ws).await, Err(1008));
}

/// Issue 13 item 2: a socket opened before a logout, a disabled account or a
/// password reset stops acting at its next frame instead of generating on.
#[tokio::test]
async fn websocket_frames_recheck_the_credential() {
    let e = env().await;
    let s = &e.s;
    let conversations = |who: common::Session| async move {
        s.get("/api/conversations", Auth::Session(&who)).await.body["items"]
            .as_array()
            .unwrap()
            .len()
    };

    // Logged out: that session's socket is refused and closed.
    let bob = s.user(&e.admin, "bob").await;
    let mut ws = open_ws(s, Auth::Session(&bob)).await;
    ws_chat_done(&mut ws).await;
    let r = s
        .post("/api/auth/logout", Auth::Session(&bob), json!({}))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    ws_refused_and_closed(&mut ws, "AUTH_REQUIRED").await;
    assert_eq!(
        conversations(s.login("bob", common::PASSWORD).await).await,
        1,
        "nothing was started after the logout"
    );

    // Disabled: an API key's socket is refused and closed.
    let carol = s.user(&e.admin, "carol").await;
    let key = s
        .post("/api/keys", Auth::Session(&carol), json!({"name": "ws"}))
        .await
        .body["key"]
        .as_str()
        .unwrap()
        .to_string();
    let mut ws = open_ws(s, Auth::Bearer(&key)).await;
    ws_chat_done(&mut ws).await;
    let r = s
        .patch(
            &format!("/api/admin/users/{}", carol.user_id),
            Auth::Session(&e.admin),
            json!({"status": "disabled"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    ws_refused_and_closed(&mut ws, "USER_INACTIVE").await;

    // Password reset: both the session's and the key's sockets die.
    let dave = s.user(&e.admin, "dave").await;
    let key = s
        .post("/api/keys", Auth::Session(&dave), json!({"name": "ws"}))
        .await
        .body["key"]
        .as_str()
        .unwrap()
        .to_string();
    let mut by_session = open_ws(s, Auth::Session(&dave)).await;
    let mut by_key = open_ws(s, Auth::Bearer(&key)).await;
    let gid = ws_chat_done(&mut by_session).await;
    let r = s
        .patch(
            &format!("/api/admin/users/{}", dave.user_id),
            Auth::Session(&e.admin),
            json!({"password": "daves-new-password"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    ws_refused_and_closed(&mut by_session, "AUTH_REQUIRED").await;
    // Resume (a read) is refused too.
    ws_send(
        &mut by_key,
        json!({"type": "resume", "generation_id": gid, "last_event_id": 0}),
    )
    .await;
    let v = ws_next(&mut by_key).await.unwrap();
    assert_eq!(v["data"]["code"], "AUTH_REQUIRED", "{v}");
    assert_eq!(ws_next(&mut by_key).await, Err(1008));
}

/// Issue 13 item 2: frames count against the per-user API limit like HTTP
/// requests (500 resume frames once replayed 46,500 events unchecked).
#[tokio::test]
async fn websocket_frames_count_against_the_api_limit() {
    let e = env_with(|c| {
        c.limits.api_per_minute = 1;
        c.limits.api_burst = 6;
    })
    .await;
    let s = &e.s;
    let bob = s.user(&e.admin, "bob").await;
    // The upgrade and the chat frame: two of bob's six.
    let mut ws = open_ws(s, Auth::Session(&bob)).await;
    let gid = ws_chat_done(&mut ws).await;
    for _ in 0..10 {
        ws_send(
            &mut ws,
            json!({"type": "resume", "generation_id": gid, "last_event_id": 0}),
        )
        .await;
    }
    let (mut replays, mut limited) = (0, 0);
    while replays + limited < 10 {
        let v = ws_next(&mut ws).await.expect("still open");
        if v["event"] == "done" {
            replays += 1;
        } else if v["event"] == "error" {
            assert_eq!(v["data"]["code"], "RATE_LIMITED", "{v}");
            assert!(v["data"]["retry_after"].as_u64().unwrap() >= 1, "{v}");
            limited += 1;
        }
    }
    assert_eq!((replays, limited), (4, 6));
    // The HTTP API shares the same budget.
    s.get("/api/conversations", Auth::Session(&bob))
        .await
        .assert_error(429, "RATE_LIMITED");
}

/// Issue 14: naming a new conversation ends in a `title` event on the
/// answer's stream (before `usage`), over SSE and over the WebSocket, with
/// the title that was stored.
#[tokio::test]
async fn a_new_conversations_title_arrives_on_its_stream() {
    let e = env().await;
    let events = chat(
        &e.s,
        &e.admin,
        json!({"content": "hello there", "model": "an"}),
    )
    .await;
    check_shape(&events);
    let cid = events[0].data["conversation_id"].as_str().unwrap();
    let title = events
        .iter()
        .find(|ev| ev.event == "title")
        .expect("a title event");
    assert_eq!(title.data["conversation_id"], cid);
    let named = title.data["title"].as_str().unwrap();
    assert_ne!(named, "New chat");
    let conv =
        e.s.get(
            &format!("/api/conversations/{cid}"),
            Auth::Session(&e.admin),
        )
        .await;
    assert_eq!(conv.body["title"], named);

    // A later turn in the same, named conversation sends none.
    let again = chat(
        &e.s,
        &e.admin,
        json!({"conversation_id": cid, "content": "and again", "model": "an"}),
    )
    .await;
    assert!(again.iter().all(|ev| ev.event != "title"), "{again:?}");

    let mut ws = open_ws(&e.s, Auth::Session(&e.admin)).await;
    ws_send(
        &mut ws,
        json!({"type": "chat", "content": "hi", "model": "an"}),
    )
    .await;
    let mut frames = Vec::new();
    loop {
        let v = ws_next(&mut ws).await.expect("frames, not a close");
        let end = v["event"] == "done" || v["event"] == "error";
        frames.push(v);
        if end {
            break;
        }
    }
    let cid = frames[0]["data"]["conversation_id"].clone();
    let t = frames
        .iter()
        .find(|f| f["event"] == "title")
        .expect("a title frame");
    assert_eq!(t["data"]["conversation_id"], cid);
    assert_eq!(t["generation_id"], frames[0]["generation_id"]);
    let conv =
        e.s.get(
            &format!("/api/conversations/{}", cid.as_str().unwrap()),
            Auth::Session(&e.admin),
        )
        .await;
    assert_eq!(conv.body["title"], t["data"]["title"]);
}
