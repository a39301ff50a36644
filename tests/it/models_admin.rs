//! Admin → Models through the real server over TCP: the admin model list
//! with capabilities, per-model settings (admins only, validated), the
//! picker's filtered list (`/api/models?use=chat`), the default model, price
//! overrides feeding usage cost, and the "Test" buttons against the fake
//! upstream (and a port nothing listens on).

use crate::common;

use std::time::Duration;

use common::{Auth, Resp, Session, TestServer, chat_server};
use reqwest::Method;
use serde_json::{Value, json};

const MODELS: &[&str] = &[
    "gpt-4o",
    "gpt-image-1",
    "text-embedding-3-small",
    "fake-model",
];

/// A port nothing listens on (connections are refused at once).
fn dead_base() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}/v1")
}

fn ids(r: &Resp) -> Vec<String> {
    let mut v: Vec<String> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn row<'a>(r: &'a Resp, id: &str) -> &'a Value {
    r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed: {}", r.text))
}

async fn put(s: &TestServer, who: &Session, path: &str, body: Value) -> Resp {
    s.req(Method::PUT, path, Auth::Session(who), Some(body))
        .await
}

#[tokio::test]
async fn the_admin_list_shows_every_model_with_its_capabilities() {
    let (s, _up, admin) = chat_server(MODELS, |_| {}).await;
    let r = s.get("/api/admin/models", Auth::Session(&admin)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(ids(&r), {
        let mut v: Vec<String> = MODELS.iter().map(|m| m.to_string()).collect();
        v.sort();
        v
    });
    let gpt = row(&r, "gpt-4o");
    assert_eq!(gpt["provider"], "oa");
    assert_eq!(gpt["capabilities"]["use"], "chat");
    assert_eq!(gpt["capabilities"]["vision"], true);
    assert_eq!(gpt["capabilities"]["tools"], true);
    assert_eq!(gpt["capabilities"]["context_window"], 128_000);
    assert_eq!(gpt["capabilities"]["max_output_tokens"], 16_384);
    assert_eq!(gpt["in_picker"], true);
    assert_eq!(gpt["hidden"], false);
    assert!(gpt["price"].is_null(), "unpriced without [[prices]]");
    assert_eq!(row(&r, "gpt-image-1")["capabilities"]["use"], "image");
    assert_eq!(row(&r, "gpt-image-1")["in_picker"], false);
    let emb = row(&r, "text-embedding-3-small");
    assert_eq!(emb["capabilities"]["use"], "embedding");
    assert_eq!(emb["in_picker"], false);
    // An unknown model chats, with no capability claimed.
    let fake = row(&r, "fake-model");
    assert_eq!(fake["capabilities"]["use"], "chat");
    assert_eq!(fake["capabilities"]["vision"], false);
    assert!(fake["capabilities"]["context_window"].is_null());
}

#[tokio::test]
async fn model_settings_are_for_admins_only() {
    let (s, _up, admin) = chat_server(MODELS, |_| {}).await;
    let user = s.user(&admin, "bob").await;
    s.get("/api/admin/models", Auth::Session(&user))
        .await
        .assert_error(403, "ADMIN_REQUIRED");
    s.patch(
        "/api/admin/models/gpt-4o",
        Auth::Session(&user),
        json!({"hidden": true}),
    )
    .await
    .assert_error(403, "ADMIN_REQUIRED");
    put(
        &s,
        &user,
        "/api/admin/default-model",
        json!({"model": "gpt-4o"}),
    )
    .await
    .assert_error(403, "ADMIN_REQUIRED");
    s.post(
        "/api/admin/models/gpt-4o/test",
        Auth::Session(&user),
        json!({}),
    )
    .await
    .assert_error(403, "ADMIN_REQUIRED");
    s.post(
        "/api/admin/providers/oa/test",
        Auth::Session(&user),
        json!({}),
    )
    .await
    .assert_error(403, "ADMIN_REQUIRED");
    s.get("/api/admin/models", Auth::None)
        .await
        .assert_error(401, "AUTH_REQUIRED");
    // Nothing changed.
    let r = s.get("/api/admin/models", Auth::Session(&admin)).await;
    assert_eq!(row(&r, "gpt-4o")["hidden"], false);
}

#[tokio::test]
async fn model_settings_are_validated() {
    let (s, _up, admin) = chat_server(MODELS, |_| {}).await;
    let a = Auth::Session(&admin);
    for body in [
        json!({"display_name": "x".repeat(101)}),
        json!({"description": "y".repeat(501)}),
        json!({"display_name": "bad\u{7}name"}),
        json!({"price": {"input_per_million": -1.0, "output_per_million": 1.0}}),
        json!({"price": {"input_per_million": 1.0, "output_per_million": 1e9}}),
        json!({"price": {"input_per_million": 1.0}}),
        json!({"hidden": "yes"}),
        json!({"colour": "red"}),
    ] {
        let r = s.patch("/api/admin/models/gpt-4o", a, body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert!(
            r.body["code"].as_str().unwrap().starts_with("VALIDATION")
                || r.body["code"] == "INVALID_JSON"
                || r.body["code"] == "BAD_REQUEST",
            "{}",
            r.text
        );
    }
    s.patch(
        "/api/admin/models/no-such-model",
        a,
        json!({"hidden": true}),
    )
    .await
    .assert_error(404, "NOT_FOUND");
    // The default must be a chat model offered now.
    for m in ["gpt-image-1", "text-embedding-3-small", "no-such-model"] {
        put(&s, &admin, "/api/admin/default-model", json!({"model": m}))
            .await
            .assert_error(400, "VALIDATION_FAILED");
    }
    s.get("/api/models?use=everything", a)
        .await
        .assert_error(400, "VALIDATION_FAILED");
    // Nothing was stored by the refused changes.
    let r = s.get("/api/admin/models", a).await;
    let gpt = row(&r, "gpt-4o");
    assert_eq!(gpt["display_name"], "gpt-4o");
    assert!(gpt["price_override"].is_null());
    assert!(r.body["default_model"].is_null());
}

#[tokio::test]
async fn the_picker_lists_only_chat_models_that_are_not_hidden() {
    let (s, _up, admin) = chat_server(MODELS, |_| {}).await;
    let user = s.user(&admin, "bob").await;
    let r = s
        .patch(
            "/api/admin/models/fake-model",
            Auth::Session(&admin),
            json!({"hidden": true, "display_name": "  Fake  ", "description": "For tests"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["items"][0]["hidden"], true);
    assert_eq!(r.body["items"][0]["display_name"], "Fake");
    assert_eq!(r.body["items"][0]["in_picker"], false);

    // The picker, for anyone: chat models only, hidden ones left out.
    for who in [&admin, &user] {
        let r = s.get("/api/models?use=chat", Auth::Session(who)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(ids(&r), ["gpt-4o"]);
        let gpt = row(&r, "gpt-4o");
        assert_eq!(gpt["use"], "chat");
        assert_eq!(gpt["vision"], true);
        assert_eq!(gpt["tools"], true);
        assert_eq!(r.body["default_model"], "gpt-4o");
    }
    // The full list: admins see everything, users all but hidden models.
    let r = s.get("/api/models", Auth::Session(&admin)).await;
    assert_eq!(ids(&r).len(), 4);
    let fake = row(&r, "fake-model");
    assert_eq!(fake["hidden"], true);
    assert_eq!(fake["display_name"], "Fake");
    assert_eq!(fake["label"], "Fake");
    assert_eq!(fake["description"], "For tests");
    assert_eq!(row(&r, "gpt-image-1")["use"], "image");
    let r = s.get("/api/models", Auth::Session(&user)).await;
    assert_eq!(ids(&r), ["gpt-4o", "gpt-image-1", "text-embedding-3-small"]);

    // Shown again, with the provider's name back.
    let r = s
        .patch(
            "/api/admin/models/fake-model",
            Auth::Session(&admin),
            json!({"hidden": false, "display_name": null, "description": ""}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = s.get("/api/models?use=chat", Auth::Session(&user)).await;
    assert_eq!(ids(&r), ["fake-model", "gpt-4o"]);
    assert_eq!(row(&r, "fake-model")["display_name"], "fake-model");
    assert!(row(&r, "fake-model")["description"].is_null());
}

#[tokio::test]
async fn the_default_model_and_settings_survive_a_restart() {
    let (s, up, admin) = chat_server(MODELS, |_| {}).await;
    let r = put(
        &s,
        &admin,
        "/api/admin/default-model",
        json!({"model": "fake-model"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["default_model"], "fake-model");
    s.patch(
        "/api/admin/models/gpt-4o",
        Auth::Session(&admin),
        json!({"display_name": "GPT-4o"}),
    )
    .await;
    let user = s.user(&admin, "bob").await;
    let r = s.get("/api/models?use=chat", Auth::Session(&user)).await;
    assert_eq!(r.body["default_model"], "fake-model");
    // A chat without a model uses the default.
    let r = common::chat(&s, &user, json!({"content": "hello there"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(up.last_request().unwrap().model(), Some("fake-model"));

    let dir = s.stop().await;
    let s = TestServer::start_in(dir, |_| {}).await;
    up.register_openai(s.state(), MODELS);
    let admin = s.login("admin", common::PASSWORD).await;
    let r = s.get("/api/admin/models", Auth::Session(&admin)).await;
    assert_eq!(r.body["default_model"], "fake-model");
    assert_eq!(row(&r, "gpt-4o")["display_name"], "GPT-4o");
    assert_eq!(row(&r, "fake-model")["default"], true);
    // Cleared: the first chat model is offered again.
    let r = put(
        &s,
        &admin,
        "/api/admin/default-model",
        json!({"model": null}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body["default_model"].is_null());
}

#[tokio::test]
async fn a_price_override_feeds_usage_cost() {
    let (s, _up, admin) = chat_server(MODELS, |c| {
        c.prices = vec![confab::config::Price {
            provider: None,
            model: "fake-model".into(),
            input_per_million: 1.0,
            output_per_million: 1.0,
        }];
    })
    .await;
    let r = s
        .patch(
            "/api/admin/models/fake-model",
            Auth::Session(&admin),
            json!({"price": {"input_per_million": 3.0, "output_per_million": 7.5}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let m = &r.body["items"][0];
    assert_eq!(m["price"]["input_per_million"], 3.0);
    assert_eq!(m["price_override"]["output_per_million"], 7.5);

    let r = common::chat(
        &s,
        &admin,
        json!({"content": "what does this cost", "model": "fake-model"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Every charge (the answer, and its title, also by fake-model) is at
    // the admin's price.
    let mut seen = Value::Null;
    for _ in 0..200 {
        let u = s.get("/api/usage", Auth::Session(&admin)).await;
        if u.body["totals"]["messages"] == 1 {
            seen = u.body["totals"].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (i, o) = (
        seen["input_tokens"].as_u64().unwrap(),
        seen["output_tokens"].as_u64().unwrap(),
    );
    let want = (i as f64 * 3.0 + o as f64 * 7.5) / 1e6;
    let cost = seen["cost"].as_f64().unwrap();
    assert!(
        cost > 0.0 && (cost - want).abs() < 1e-12,
        "{cost} vs {want}"
    );
    // Cleared: the table's price applies again.
    let r = s
        .patch(
            "/api/admin/models/fake-model",
            Auth::Session(&admin),
            json!({"price": null}),
        )
        .await;
    assert_eq!(r.body["items"][0]["price"]["input_per_million"], 1.0);
    assert!(r.body["items"][0]["price_override"].is_null());
}

#[tokio::test]
async fn test_buttons_make_a_tiny_real_request() {
    let (s, up, admin) = chat_server(MODELS, |_| {}).await;
    let a = Auth::Session(&admin);
    up.clear_requests();
    let r = s
        .post("/api/admin/models/fake-model/test", a, json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["ok"], true, "{}", r.text);
    let msg = r.body["message"].as_str().unwrap();
    assert!(
        msg.starts_with("\"fake-model\" on \"oa\" answered in "),
        "{msg}"
    );
    let req = up.chat_requests();
    assert_eq!(req.len(), 1);
    let body = &req[0].body;
    assert!(
        body["max_tokens"] == 1 || body["max_completion_tokens"] == 1,
        "{body}"
    );
    // An embedding model is tested with an embedding.
    let r = s
        .post(
            "/api/admin/models/text-embedding-3-small/test",
            a,
            json!({}),
        )
        .await;
    assert_eq!(r.body["ok"], true, "{}", r.text);
    assert!(r.body["message"].as_str().unwrap().contains("embedding of"));
    // An image model cannot be tested this way; unknown models are 404.
    s.post("/api/admin/models/gpt-image-1/test", a, json!({}))
        .await
        .assert_error(400, "VALIDATION_FAILED");
    s.post("/api/admin/models/nope/test", a, json!({}))
        .await
        .assert_error(404, "NOT_FOUND");
    s.post(
        "/api/admin/models/fake-model/test",
        a,
        json!({"provider": "other"}),
    )
    .await
    .assert_error(404, "NOT_FOUND");
    // A failing upstream: ok false, with the reason and its code.
    up.set_flags(&["500"]);
    let r = s
        .post("/api/admin/models/fake-model/test", a, json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["ok"], false);
    assert_eq!(r.body["code"], "PROVIDER_ERROR");
    assert!(r.body["message"].as_str().unwrap().contains("failed"));
    up.set_flags(&[]);

    // The provider test lists its models.
    let r = s.post("/api/admin/providers/oa/test", a, json!({})).await;
    assert_eq!(r.body["ok"], true, "{}", r.text);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .starts_with("Connected to \"oa\": it lists "),
        "{}",
        r.text
    );
    s.post("/api/admin/providers/nope/test", a, json!({}))
        .await
        .assert_error(404, "NOT_FOUND");
}

#[tokio::test]
async fn adding_a_provider_can_test_it_first() {
    let (s, up, admin) = chat_server(MODELS, |_| {}).await;
    let a = Auth::Session(&admin);
    // Nothing listens: refused with the reason, and not saved.
    let dead = dead_base();
    let r = s
        .post(
            "/api/admin/providers",
            a,
            json!({"kind": "openai", "name": "dead", "base_url": dead, "test": true}),
        )
        .await;
    r.assert_error(422, "PROVIDER_TEST_FAILED");
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .starts_with("Could not use \"dead\""),
        "{}",
        r.text
    );
    let list = s.get("/api/admin/providers", a).await;
    assert!(!list.text.contains("\"dead\""), "{}", list.text);
    // Save anyway: the same request without `test`.
    let r = s
        .post(
            "/api/admin/providers",
            a,
            json!({"kind": "openai", "name": "dead", "base_url": dead_base()}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // A provider that answers is saved after its test.
    let r = s
        .post(
            "/api/admin/providers",
            a,
            json!({"kind": "openai", "name": "live", "base_url": up.openai_base(), "api_key": "sk-live-test-0001", "test": true}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["name"], "live");
    // A malformed one never reaches the network.
    s.post(
        "/api/admin/providers",
        a,
        json!({"kind": "openai", "name": "bad", "base_url": "ftp://x", "test": true}),
    )
    .await
    .assert_error(400, "VALIDATION_FAILED");
}
