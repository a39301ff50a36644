//! Presets, the prompt library, custom instructions and branding through
//! the real server: ownership (another user's record answers 404), who may
//! share, validation, and what reaches the upstream when a chat starts with
//! a preset.

use crate::common;

use common::{Auth, Resp, TestServer, chat, chat_server};
use reqwest::Method;
use serde_json::{Value, json};

async fn put(s: &TestServer, path: &str, auth: Auth<'_>, body: Value) -> Resp {
    s.req(Method::PUT, path, auth, Some(body)).await
}

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\0\0\0\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\0\x05\0\x01\xff\x89\x99=\x1d\0\0\0\0IEND\xaeB`\x82";

#[tokio::test]
async fn presets_are_private_unless_an_admin_shares_them() {
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    let alice = s.user(&admin, "alice").await;
    let bob = s.user(&admin, "bob").await;

    let r = s
        .post(
            "/api/presets",
            Auth::Session(&alice),
            json!({"name": "  Pirate ", "model": "oa", "system_prompt": "Talk like a pirate.",
                   "temperature": 0.3, "max_tokens": 64, "top_p": 0.9}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["name"], "Pirate");
    assert_eq!(r.body["shared"], false);
    assert_eq!(r.body["editable"], true);
    assert_eq!(r.body["max_tokens"], 64);
    let id = r.body["id"].as_str().unwrap().to_string();
    let path = format!("/api/presets/{id}");

    // Bob cannot see, change or delete it: 404, as for a missing one.
    s.get(&path, Auth::Session(&bob))
        .await
        .assert_error(404, "NOT_FOUND");
    put(&s, &path, Auth::Session(&bob), json!({"name": "mine now"}))
        .await
        .assert_error(404, "NOT_FOUND");
    s.delete(&path, Auth::Session(&bob))
        .await
        .assert_error(404, "NOT_FOUND");
    let list = s.get("/api/presets", Auth::Session(&bob)).await;
    assert_eq!(list.body["items"], json!([]));

    // Only an admin shares.
    s.post(
        "/api/presets",
        Auth::Session(&alice),
        json!({"name": "For all", "shared": true}),
    )
    .await
    .assert_error(403, "FORBIDDEN");
    put(
        &s,
        &path,
        Auth::Session(&alice),
        json!({"name": "Pirate", "shared": true}),
    )
    .await
    .assert_error(403, "FORBIDDEN");
    let shared = s
        .post(
            "/api/presets",
            Auth::Session(&admin),
            json!({"name": "Careful reviewer", "system_prompt": "Review carefully.", "shared": true}),
        )
        .await;
    assert_eq!(shared.status, 201, "{}", shared.body);
    let shared_path = format!("/api/presets/{}", shared.body["id"].as_str().unwrap());
    let seen = s.get(&shared_path, Auth::Session(&bob)).await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.body["shared"], true);
    assert_eq!(seen.body["editable"], false);
    put(&s, &shared_path, Auth::Session(&bob), json!({"name": "x"}))
        .await
        .assert_error(403, "FORBIDDEN");
    s.delete(&shared_path, Auth::Session(&bob))
        .await
        .assert_error(403, "FORBIDDEN");

    // Alice sees hers and the shared one, by name.
    let list = s.get("/api/presets", Auth::Session(&alice)).await;
    let names: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Careful reviewer", "Pirate"]);

    // A full replace; fields left out are cleared.
    let r = put(
        &s,
        &path,
        Auth::Session(&alice),
        json!({"name": "Pirate", "temperature": 1.5}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["temperature"], 1.5);
    assert!(r.body["system_prompt"].is_null());
    assert!(r.body["max_tokens"].is_null());

    s.delete(&path, Auth::Session(&alice)).await;
    s.get(&path, Auth::Session(&alice))
        .await
        .assert_error(404, "NOT_FOUND");
    s.get("/api/presets/not-an-id", Auth::Session(&alice))
        .await
        .assert_error(404, "NOT_FOUND");
    let r = s.delete(&shared_path, Auth::Session(&admin)).await;
    assert_eq!(r.status, 204);
}

#[tokio::test]
async fn preset_fields_are_validated_with_sentences() {
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    let cases = [
        (json!({"name": ""}), "name must be 1 to 80 characters"),
        (
            json!({"name": "x".repeat(81)}),
            "name must be 1 to 80 characters",
        ),
        (json!({"name": "a\nb"}), "name must be one line"),
        (
            json!({"name": "t", "temperature": 2.5}),
            "temperature must be a number from 0 to 2",
        ),
        (
            json!({"name": "t", "top_p": -0.1}),
            "top_p must be a number from 0 to 1",
        ),
        (
            json!({"name": "t", "max_tokens": 0}),
            "max_tokens must be a whole number",
        ),
        (
            json!({"name": "t", "system_prompt": "x".repeat(20_001)}),
            "system_prompt must be at most",
        ),
        (json!({"name": "t", "knowledge": "docs"}), "unknown field"),
        (
            json!({"name": "t", "temperature": "hot"}),
            "invalid request body",
        ),
    ];
    for (body, want) in cases {
        let r = s
            .post("/api/presets", Auth::Session(&admin), body.clone())
            .await;
        r.assert_error(400, "VALIDATION_FAILED");
        let msg = r.body["message"].as_str().unwrap();
        assert!(msg.contains(want), "{body}: {msg}");
        assert!(r.body["request_id"].as_str().is_some());
    }
    assert_eq!(
        s.get("/api/presets", Auth::Session(&admin)).await.body["items"],
        json!([])
    );
}

#[tokio::test]
async fn a_chat_started_with_a_preset_uses_its_model_prompt_and_settings() {
    let (s, up, admin) = chat_server(&["oa", "ob"], |_| {}).await;
    let alice = s.user(&admin, "alice").await;
    let p = s
        .post(
            "/api/presets",
            Auth::Session(&alice),
            json!({"name": "Pirate", "model": "ob", "system_prompt": "Talk like a pirate.",
                   "temperature": 0.25, "max_tokens": 77, "top_p": 0.5}),
        )
        .await;
    let pid = p.body["id"].as_str().unwrap().to_string();
    let r = put(
        &s,
        "/api/settings",
        Auth::Session(&alice),
        json!({"custom_instructions": "  I use metric units.  "}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["custom_instructions"], "I use metric units.");

    up.clear_requests();
    let r = chat(&s, &alice, json!({"content": "ahoy", "preset_id": pid})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let cid = r.body["conversation_id"].as_str().unwrap().to_string();
    let req = up.chat_requests().into_iter().next().unwrap();
    assert_eq!(req.model(), Some("ob"));
    assert_eq!(req.body["temperature"], 0.25);
    assert_eq!(req.body["max_tokens"], 77);
    assert_eq!(req.body["top_p"], 0.5);
    // The conversation's (the preset's) system prompt first, then the
    // custom instructions.
    assert_eq!(req.body["messages"][0]["role"], "system");
    assert_eq!(
        req.body["messages"][0]["content"],
        "Talk like a pirate.\n\nI use metric units."
    );
    let c = s
        .get(&format!("/api/conversations/{cid}"), Auth::Session(&alice))
        .await;
    assert_eq!(c.body["model"], "ob");
    assert_eq!(c.body["system_prompt"], "Talk like a pirate.");

    // The next turn keeps the preset's settings; a preset only starts a chat.
    up.clear_requests();
    let r = chat(
        &s,
        &alice,
        json!({"conversation_id": cid, "content": "more"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let req = up.chat_requests().into_iter().next().unwrap();
    assert_eq!(req.body["temperature"], 0.25);
    assert_eq!(req.body["max_tokens"], 77);
    let r = chat(
        &s,
        &alice,
        json!({"conversation_id": cid, "content": "x", "preset_id": pid}),
    )
    .await;
    r.assert_error(400, "VALIDATION_FAILED");
    assert!(r.body["message"].as_str().unwrap().contains("preset_id"));

    // A model asked for beats the preset's.
    up.clear_requests();
    let r = chat(
        &s,
        &alice,
        json!({"content": "hi", "preset_id": pid, "model": "oa"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(up.chat_requests()[0].model(), Some("oa"));

    // Another user's preset does not exist for the admin.
    chat(&s, &admin, json!({"content": "hi", "preset_id": pid}))
        .await
        .assert_error(404, "NOT_FOUND");

    // Without a preset: only the custom instructions; cleared, nothing.
    up.clear_requests();
    chat(&s, &alice, json!({"content": "plain", "model": "oa"})).await;
    let req = up.chat_requests().into_iter().next().unwrap();
    assert_eq!(req.body["messages"][0]["content"], "I use metric units.");
    assert!(req.body.get("temperature").is_none());
    let r = put(
        &s,
        "/api/settings",
        Auth::Session(&alice),
        json!({"custom_instructions": null}),
    )
    .await;
    assert!(r.body["custom_instructions"].is_null());
    up.clear_requests();
    chat(&s, &alice, json!({"content": "plain", "model": "oa"})).await;
    let req = up.chat_requests().into_iter().next().unwrap();
    assert_eq!(req.body["messages"][0]["role"], "user");

    // Another user's custom instructions never reach alice's chats.
    put(
        &s,
        "/api/settings",
        Auth::Session(&admin),
        json!({"custom_instructions": "Admin's own."}),
    )
    .await;
    assert!(
        s.get("/api/settings", Auth::Session(&alice)).await.body["custom_instructions"].is_null()
    );
    let r = put(
        &s,
        "/api/settings",
        Auth::Session(&alice),
        json!({"custom_instructions": "x".repeat(4001)}),
    )
    .await;
    r.assert_error(400, "VALIDATION_FAILED");
}

#[tokio::test]
async fn prompts_have_unique_commands_and_owners() {
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    let alice = s.user(&admin, "alice").await;
    let bob = s.user(&admin, "bob").await;

    let r = s
        .post(
            "/api/prompts",
            Auth::Session(&alice),
            json!({"title": "Summarize", "command": "/Summarize", "text": "Summarize this:\n"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["command"], "summarize");
    assert_eq!(r.body["text"], "Summarize this:");
    let path = format!("/api/prompts/{}", r.body["id"].as_str().unwrap());

    let r = s
        .post(
            "/api/prompts",
            Auth::Session(&alice),
            json!({"title": "Again", "command": "summarize", "text": "x"}),
        )
        .await;
    r.assert_error(409, "CONFLICT");
    assert!(r.body["message"].as_str().unwrap().contains("/summarize"));
    // Bob has his own namespace.
    let r = s
        .post(
            "/api/prompts",
            Auth::Session(&bob),
            json!({"title": "Bob's", "command": "summarize", "text": "Bob's text"}),
        )
        .await;
    assert_eq!(r.status, 201);
    s.get(&path, Auth::Session(&bob))
        .await
        .assert_error(404, "NOT_FOUND");
    put(
        &s,
        &path,
        Auth::Session(&bob),
        json!({"title": "t", "command": "c", "text": "x"}),
    )
    .await
    .assert_error(404, "NOT_FOUND");

    for (body, want) in [
        (
            json!({"title": "t", "command": "two words", "text": "x"}),
            "command must be",
        ),
        (
            json!({"title": "t", "command": "-x", "text": "x"}),
            "command must be",
        ),
        (
            json!({"title": "t", "command": "ok", "text": "   "}),
            "text must not be empty",
        ),
        (
            json!({"title": "", "command": "ok", "text": "x"}),
            "title must be",
        ),
    ] {
        let r = s.post("/api/prompts", Auth::Session(&alice), body).await;
        r.assert_error(400, "VALIDATION_FAILED");
        assert!(r.body["message"].as_str().unwrap().contains(want));
    }
    s.post(
        "/api/prompts",
        Auth::Session(&alice),
        json!({"title": "t", "command": "team", "text": "x", "shared": true}),
    )
    .await
    .assert_error(403, "FORBIDDEN");
    let r = s
        .post(
            "/api/prompts",
            Auth::Session(&admin),
            json!({"title": "Translate", "command": "translate", "text": "Translate to French:", "shared": true}),
        )
        .await;
    assert_eq!(r.status, 201);
    let list = s.get("/api/prompts", Auth::Session(&alice)).await;
    let cmds: Vec<(&str, bool)> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["command"].as_str().unwrap(),
                p["shared"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(cmds, [("summarize", false), ("translate", true)]);

    let r = put(
        &s,
        &path,
        Auth::Session(&alice),
        json!({"title": "Summarize", "command": "sum", "text": "Short summary:"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["command"], "sum");
    assert_eq!(s.delete(&path, Auth::Session(&alice)).await.status, 204);
    s.get(&path, Auth::Session(&alice))
        .await
        .assert_error(404, "NOT_FOUND");
}

#[tokio::test]
async fn branding_is_public_to_read_and_set_by_admins() {
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    let alice = s.user(&admin, "alice").await;

    let r = s.get("/api/branding", Auth::None).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        json!({"server_name": null, "accent_color": null, "sign_in_message": null, "logo_url": null})
    );
    s.patch(
        "/api/admin/branding",
        Auth::Session(&alice),
        json!({"server_name": "Mine"}),
    )
    .await
    .assert_error(403, "ADMIN_REQUIRED");
    s.patch(
        "/api/admin/branding",
        Auth::None,
        json!({"server_name": "Mine"}),
    )
    .await
    .assert_error(401, "AUTH_REQUIRED");

    let r = s
        .patch(
            "/api/admin/branding",
            Auth::Session(&admin),
            json!({"server_name": " Acme Chat ", "accent_color": "#0A7", "sign_in_message": "Staff only. Ask IT for an account."}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["server_name"], "Acme Chat");
    assert_eq!(r.body["accent_color"], "#00aa77");
    let r = s.get("/api/branding", Auth::None).await;
    assert_eq!(
        r.body["sign_in_message"],
        "Staff only. Ask IT for an account."
    );

    for (body, want) in [
        (
            json!({"accent_color": "red"}),
            "accent_color must be a hex colour",
        ),
        (
            json!({"accent_color": "#12345g"}),
            "accent_color must be a hex colour",
        ),
        (
            json!({"server_name": "x".repeat(61)}),
            "server_name must be 1 to 60",
        ),
        (
            json!({"sign_in_message": "x".repeat(1001)}),
            "sign_in_message must be at most",
        ),
        (json!({"favicon": "x"}), "unknown field"),
    ] {
        let r = s
            .patch("/api/admin/branding", Auth::Session(&admin), body)
            .await;
        r.assert_error(400, "VALIDATION_FAILED");
        assert!(
            r.body["message"].as_str().unwrap().contains(want),
            "{}",
            r.body
        );
    }
    // Left out stays; null clears.
    let r = s
        .patch(
            "/api/admin/branding",
            Auth::Session(&admin),
            json!({"sign_in_message": null}),
        )
        .await;
    assert_eq!(r.body["server_name"], "Acme Chat");
    assert!(r.body["sign_in_message"].is_null());
}

async fn upload(s: &TestServer, who: &common::Session, bytes: &[u8], ct: &str) -> Resp {
    let r = s
        .http
        .put(s.url("/api/admin/branding/logo"))
        .header("cookie", format!("confab_session={}", who.cookie))
        .header("x-csrf-token", &who.csrf)
        .header("content-type", ct)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    Resp::from(r).await
}

#[tokio::test]
async fn the_logo_is_checked_by_content_and_served_safely() {
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    let alice = s.user(&admin, "alice").await;

    s.get("/api/branding/logo", Auth::None)
        .await
        .assert_error(404, "NOT_FOUND");
    upload(&s, &alice, PNG, "image/png")
        .await
        .assert_error(403, "ADMIN_REQUIRED");
    // The declared type does not count: an SVG or HTML called a PNG is
    // refused, a PNG called text is taken as a PNG.
    for bad in [
        &b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>"[..],
        b"<html><script>alert(1)</script></html>",
        b"",
    ] {
        let r = upload(&s, &admin, bad, "image/png").await;
        r.assert_error(400, "VALIDATION_FAILED");
    }
    let mut big = PNG.to_vec();
    big.resize(300 * 1024, 0);
    let r = upload(&s, &admin, &big, "image/png").await;
    r.assert_error(400, "VALIDATION_FAILED");
    assert!(r.body["message"].as_str().unwrap().contains("256 KiB"));

    let r = upload(&s, &admin, PNG, "text/plain").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let url = r.body["logo_url"].as_str().unwrap().to_string();
    assert!(url.starts_with("/api/branding/logo?v="));
    assert_eq!(
        s.get("/api/branding", Auth::None).await.body["logo_url"],
        url
    );

    let r = s.http.get(s.url(&url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let etag = h["etag"].to_str().unwrap().to_string();
    assert_eq!(r.bytes().await.unwrap().as_ref(), PNG);
    let r = s
        .http
        .get(s.url(&url))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);

    let r = s
        .delete("/api/admin/branding/logo", Auth::Session(&admin))
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body["logo_url"].is_null());
    s.get("/api/branding/logo", Auth::None)
        .await
        .assert_error(404, "NOT_FOUND");
}

#[tokio::test]
async fn the_new_operations_are_documented_with_unique_ids() {
    let s = TestServer::start().await;
    let doc = s.get("/api/openapi.json", Auth::None).await.body;
    let mut ids = std::collections::BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap().to_string();
            let what = format!("{} {path}", method.to_uppercase());
            if let Some(other) = ids.insert(id.clone(), what.clone()) {
                panic!("operationId {id} is used by {other} and {what}");
            }
        }
    }
    for (method, path) in [
        ("get", "/api/presets"),
        ("post", "/api/presets"),
        ("put", "/api/presets/{id}"),
        ("delete", "/api/prompts/{id}"),
        ("put", "/api/settings"),
        ("get", "/api/branding"),
        ("get", "/api/branding/logo"),
        ("patch", "/api/admin/branding"),
        ("put", "/api/admin/branding/logo"),
        ("delete", "/api/admin/branding/logo"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is documented"
        );
    }
    // The public reads take no credential; the logo upload takes raw bytes.
    assert_eq!(doc["paths"]["/api/branding"]["get"]["security"], json!([]));
    assert!(
        doc["paths"]["/api/admin/branding/logo"]["put"]["requestBody"]["content"]
            ["application/octet-stream"]
            .is_object()
    );
    assert!(
        doc["paths"]["/api/branding/logo"]["get"]["responses"]["200"]["content"]["image/png"]
            .is_object()
    );
}
