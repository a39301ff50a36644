//! A conversation's sampling settings (temperature, max_tokens, top_p):
//! stored through the conversations API and the chat API, validated with
//! clear errors, and sent to the provider with every answer.

use crate::common;

use common::{Auth, chat, chat_server};
use serde_json::{Value, json};

/// The request that answered `content` (not the title request that
/// follows it).
fn sent_for(up: &crate::common_upstream::FakeUpstream, content: &str) -> Value {
    up.chat_requests()
        .into_iter()
        .rev()
        .find(|r| {
            r.body["messages"]
                .as_array()
                .and_then(|m| m.last())
                .is_some_and(|m| m["content"] == content)
        })
        .unwrap_or_else(|| panic!("the upstream got no request answering {content:?}"))
        .body
}

#[tokio::test]
async fn settings_set_on_a_conversation_reach_the_provider() {
    let (s, up, admin) = chat_server(&["fake-model"], |_| {}).await;
    let r = s
        .post(
            "/api/conversations",
            Auth::Session(&admin),
            json!({"model": "fake-model", "temperature": 0.25, "max_tokens": 77, "top_p": 0.5}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["temperature"], 0.25);
    assert_eq!(r.body["max_tokens"], 77);
    assert_eq!(r.body["top_p"], 0.5);
    let id = r.body["id"].as_str().unwrap().to_string();

    let r = chat(&s, &admin, json!({"conversation_id": id, "content": "hi"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = sent_for(&up, "hi");
    assert_eq!(sent["temperature"], 0.25, "{sent}");
    assert_eq!(sent["max_tokens"], 77, "{sent}");
    assert_eq!(sent["top_p"], 0.5, "{sent}");

    // PATCH changes one and clears another; the third stays.
    let r = s
        .patch(
            &format!("/api/conversations/{id}"),
            Auth::Session(&admin),
            json!({"temperature": 1.5, "max_tokens": null}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["temperature"], 1.5);
    assert_eq!(r.body["max_tokens"], Value::Null);
    assert_eq!(r.body["top_p"], 0.5);

    let r = chat(
        &s,
        &admin,
        json!({"conversation_id": id, "content": "again"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = sent_for(&up, "again");
    assert_eq!(sent["temperature"], 1.5, "{sent}");
    assert!(sent.get("max_tokens").is_none(), "cleared: {sent}");
    assert_eq!(sent["top_p"], 0.5, "{sent}");

    // A reload shows what is stored.
    let r = s
        .get(&format!("/api/conversations/{id}"), Auth::Session(&admin))
        .await;
    assert_eq!(r.body["temperature"], 1.5);
    assert_eq!(r.body["max_tokens"], Value::Null);
    assert_eq!(r.body["top_p"], 0.5);
}

#[tokio::test]
async fn settings_sent_with_a_message_are_used_and_remembered() {
    let (s, up, admin) = chat_server(&["fake-model"], |_| {}).await;
    let r = chat(
        &s,
        &admin,
        json!({"content": "hello", "model": "fake-model", "temperature": 0.0, "max_tokens": 12, "top_p": 0.9}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = sent_for(&up, "hello");
    assert_eq!(sent["temperature"], 0.0, "{sent}");
    assert_eq!(sent["max_tokens"], 12, "{sent}");
    let id = r.body["conversation_id"].as_str().unwrap().to_string();
    let conv = s
        .get(&format!("/api/conversations/{id}"), Auth::Session(&admin))
        .await;
    assert_eq!(conv.body["temperature"], 0.0);
    assert_eq!(conv.body["max_tokens"], 12);
    assert_abs(&conv.body["top_p"], 0.9);

    // The next message without settings keeps them.
    let r = chat(
        &s,
        &admin,
        json!({"conversation_id": id, "content": "more"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = sent_for(&up, "more");
    assert_eq!(sent["max_tokens"], 12, "{sent}");
}

/// f32 settings come back as the nearest f64: compare loosely.
#[track_caller]
fn assert_abs(v: &Value, want: f64) {
    let got = v.as_f64().unwrap_or_else(|| panic!("a number: {v}"));
    assert!((got - want).abs() < 1e-6, "{got} != {want}");
}

#[tokio::test]
async fn out_of_range_settings_are_refused_with_a_sentence() {
    let (s, up, admin) = chat_server(&["fake-model"], |_| {}).await;
    let r = s
        .post(
            "/api/conversations",
            Auth::Session(&admin),
            json!({"title": "t"}),
        )
        .await;
    let id = r.body["id"].as_str().unwrap().to_string();
    let cases = [
        (
            json!({"temperature": 2.5}),
            "temperature must be a number from 0 to 2",
        ),
        (
            json!({"temperature": -0.1}),
            "temperature must be a number from 0 to 2",
        ),
        (json!({"top_p": 1.01}), "top_p must be a number from 0 to 1"),
        (
            json!({"max_tokens": 0}),
            "max_tokens must be a whole number from 1 to 1000000",
        ),
        (
            json!({"max_tokens": 1_000_001}),
            "max_tokens must be a whole number from 1 to 1000000",
        ),
    ];
    for (body, msg) in cases {
        let r = s
            .patch(
                &format!("/api/conversations/{id}"),
                Auth::Session(&admin),
                body.clone(),
            )
            .await;
        r.assert_error(400, "VALIDATION_FAILED");
        assert_eq!(r.body["message"], msg, "{body}");

        let r = s
            .post("/api/conversations", Auth::Session(&admin), body.clone())
            .await;
        r.assert_error(400, "VALIDATION_FAILED");

        let mut turn = body.clone();
        turn["content"] = json!("hi");
        turn["conversation_id"] = json!(id);
        let r = chat(&s, &admin, turn).await;
        r.assert_error(400, "VALIDATION_FAILED");
        assert_eq!(r.body["message"], msg, "{body}");
    }
    // A wrong type is refused too, not dropped.
    let r = s
        .patch(
            &format!("/api/conversations/{id}"),
            Auth::Session(&admin),
            json!({"max_tokens": 1.5}),
        )
        .await;
    r.assert_error(400, "VALIDATION_FAILED");
    // Nothing was stored, nothing was sent.
    let conv = s
        .get(&format!("/api/conversations/{id}"), Auth::Session(&admin))
        .await;
    assert_eq!(conv.body["temperature"], Value::Null);
    assert_eq!(conv.body["max_tokens"], Value::Null);
    assert_eq!(conv.body["top_p"], Value::Null);
    assert!(up.chat_requests().is_empty());
}

#[tokio::test]
async fn another_users_conversation_settings_are_not_found() {
    let (s, _up, admin) = chat_server(&["fake-model"], |_| {}).await;
    let bob = s.user(&admin, "bob").await;
    let r = s
        .post(
            "/api/conversations",
            Auth::Session(&admin),
            json!({"temperature": 1.0}),
        )
        .await;
    let id = r.body["id"].as_str().unwrap().to_string();
    let r = s
        .patch(
            &format!("/api/conversations/{id}"),
            Auth::Session(&bob),
            json!({"temperature": 0.1}),
        )
        .await;
    r.assert_error(404, "CONVERSATION_NOT_FOUND");
    let r = s
        .get(&format!("/api/conversations/{id}"), Auth::Session(&admin))
        .await;
    assert_eq!(r.body["temperature"], 1.0);
}

#[tokio::test]
async fn max_tokens_above_the_models_output_limit_is_refused_at_send() {
    use confab::providers::registry::ProviderConfig;
    use confab::providers::{AnthropicProvider, ProviderKind};
    let up = crate::common_upstream::FakeUpstream::start().await;
    // Claude 3.5 Haiku writes at most 8192 tokens (the provider's table).
    let model = "claude-3-5-haiku-latest";
    up.set_models(&[model]);
    let s = common::TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    let p = AnthropicProvider::new(
        "an",
        &up.anthropic_base(),
        Some("sk-test-key-0000".into()),
        confab::providers::default_client(),
    );
    let cfg = ProviderConfig::new(ProviderKind::Anthropic, "an", up.anthropic_base())
        .with_api_key("sk-test-key-0000");
    let reg = &s.state().providers;
    reg.add_with(cfg, std::sync::Arc::new(p)).unwrap();
    reg.refresh().await;
    let limit = reg
        .models()
        .into_iter()
        .find(|m| m.id == model)
        .and_then(|m| m.max_output_tokens);
    assert_eq!(limit, Some(8192));

    let r = chat(
        &s,
        &admin,
        json!({"content": "long please", "model": model, "max_tokens": 9000}),
    )
    .await;
    r.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(
        r.body["message"],
        "max_tokens is 9000, more than the 8192 tokens model \"claude-3-5-haiku-latest\" can write: lower it or clear it"
    );
    assert!(
        up.chat_requests().is_empty(),
        "nothing reached the provider"
    );

    let r = chat(
        &s,
        &admin,
        json!({"content": "long please", "model": model, "max_tokens": 8192, "temperature": 0.5, "top_p": 0.25}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = sent_for(&up, "long please");
    assert_eq!(sent["max_tokens"], 8192, "{sent}");
    assert_eq!(sent["temperature"], 0.5, "{sent}");
    assert_eq!(sent["top_p"], 0.25, "{sent}");
}
