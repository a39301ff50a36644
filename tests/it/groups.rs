//! Groups and model access through the real server: a group allowing one
//! model and one whole provider limits its members' model list, chat turns
//! and `/v1` (models, chat completions, messages, embeddings), a model not
//! allowed answering exactly as one nobody serves; admins and users in no
//! restricting group keep every model; group quotas sit beneath the
//! per-user override; the admin endpoints are admins' only; `allowed_models`
//! on a user is refused; an OIDC group claim maps to group membership,
//! refreshed at every sign-in; every change is audited.

use crate::common::oidc::Browser;
use crate::common::{Auth, Resp, Session, TestServer, chat, chat_server};
use crate::common_upstream::FakeUpstream;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// A second OpenAI-compatible provider, `ob`, on the same fake upstream.
fn register_second(s: &TestServer, up: &FakeUpstream, models: &[&str]) {
    use confab::providers::registry::ProviderConfig;
    use confab::providers::{OpenAiProvider, ProviderKind, ProviderOptions, RetryPolicy};
    let cfg = ProviderConfig::new(ProviderKind::Openai, "ob", up.openai_base())
        .with_api_key("sk-test-key-0000")
        .with_models(models.iter().map(|m| m.to_string()).collect());
    let p = OpenAiProvider::new(
        "ob",
        &up.openai_base(),
        Some("sk-test-key-0000".into()),
        confab::providers::default_client(),
    )
    .with_options(ProviderOptions {
        retry: RetryPolicy::none(),
        ..Default::default()
    });
    s.state()
        .providers
        .add_with(cfg, std::sync::Arc::new(p))
        .unwrap();
}

async fn put(s: &TestServer, path: &str, who: &Session) -> Resp {
    s.req(Method::PUT, path, Auth::Session(who), None).await
}

/// (model, provider) of every row of `GET /api/models`.
async fn model_rows(s: &TestServer, who: &Session) -> BTreeSet<(String, String)> {
    let r = s.get("/api/models", Auth::Session(who)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_string(),
                m["provider"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn rows(list: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    list.iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect()
}

async fn create_group(s: &TestServer, admin: &Session, body: Value) -> String {
    let r = s
        .post("/api/admin/groups", Auth::Session(admin), body)
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().unwrap().to_string()
}

async fn api_key(s: &TestServer, who: &Session) -> String {
    let r = s
        .post(
            "/api/keys",
            Auth::Session(who),
            json!({"name": "sdk", "scopes": ["read", "write"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["key"].as_str().unwrap().to_string()
}

async fn v1(
    s: &TestServer,
    method: Method,
    path: &str,
    key: &str,
    anthropic: bool,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = s.http.request(method, s.url(path)).bearer_auth(key);
    if anthropic {
        rb = rb
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01");
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn audit_actions(s: &TestServer, admin: &Session) -> Vec<(String, String)> {
    let r = s
        .get("/api/admin/audit?limit=200", Auth::Session(admin))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_group_limits_the_model_list_chat_and_v1() {
    let (s, up, admin) = chat_server(&["m-open", "m-secret", "shared", "oa-embed"], |_| {}).await;
    register_second(&s, &up, &["ob-only", "shared"]);
    let ann = s.user(&admin, "ann").await;
    let ben = s.user(&admin, "ben").await;
    let everything = rows(&[
        ("m-open", "oa"),
        ("m-secret", "oa"),
        ("shared", "oa"),
        ("oa-embed", "oa"),
        ("ob-only", "ob"),
        ("shared", "ob"),
    ]);
    // No group yet: everyone sees every model, as before groups existed.
    assert_eq!(model_rows(&s, &ann).await, everything);

    // One model by name, and a whole provider.
    let g = create_group(
        &s,
        &admin,
        json!({"name": "Limited", "models": ["m-open"], "providers": ["ob"]}),
    )
    .await;
    let r = put(
        &s,
        &format!("/api/admin/groups/{g}/members/{}", ann.user_id),
        &admin,
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let allowed = rows(&[("m-open", "oa"), ("ob-only", "ob"), ("shared", "ob")]);
    assert_eq!(model_rows(&s, &ann).await, allowed);
    let r = s.get("/api/models?use=chat", Auth::Session(&ann)).await;
    assert!(
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["id"] != "m-secret"),
        "{}",
        r.text
    );
    // A user in no group and the admin still see everything.
    assert_eq!(model_rows(&s, &ben).await, everything);
    assert_eq!(model_rows(&s, &admin).await, everything);

    // Chat: a model not allowed answers as one nobody serves.
    let hidden = chat(&s, &ann, json!({"content": "hi", "model": "m-secret"})).await;
    hidden.assert_error(404, "MODEL_NOT_FOUND");
    let missing = chat(&s, &ann, json!({"content": "hi", "model": "no-such"})).await;
    missing.assert_error(404, "MODEL_NOT_FOUND");
    assert_eq!(
        hidden.body["message"]
            .as_str()
            .unwrap()
            .replace("m-secret", "X"),
        missing.body["message"]
            .as_str()
            .unwrap()
            .replace("no-such", "X"),
    );
    let r = chat(&s, &ann, json!({"content": "hi", "model": "m-open"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // A model two providers serve goes only to the allowed one.
    for _ in 0..3 {
        let r = chat(&s, &ann, json!({"content": "hi", "model": "shared"})).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["provider"], "ob", "{}", r.text);
    }
    // Streaming turns too.
    let r = s
        .post(
            "/api/chat/stream",
            Auth::Session(&ann),
            json!({"content": "hi", "model": "m-secret"}),
        )
        .await;
    r.assert_error(404, "MODEL_NOT_FOUND");
    // Ben is not limited.
    let r = chat(&s, &ben, json!({"content": "hi", "model": "m-secret"})).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // /v1, in each SDK's own not-found shape.
    let key = api_key(&s, &ann).await;
    let (st, list) = v1(&s, Method::GET, "/v1/models", &key, false, None).await;
    assert_eq!(st, 200);
    let ids: BTreeSet<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, BTreeSet::from(["m-open", "ob-only", "shared"]));
    let (st, e) = v1(&s, Method::GET, "/v1/models/m-secret", &key, false, None).await;
    assert_eq!(st, 404, "{e}");
    assert_eq!(e["error"]["code"], "model_not_found");
    let body = |m: &str| json!({"model": m, "messages": [{"role": "user", "content": "hi"}]});
    for model in ["m-secret", "no-such"] {
        let (st, e) = v1(
            &s,
            Method::POST,
            "/v1/chat/completions",
            &key,
            false,
            Some(body(model)),
        )
        .await;
        assert_eq!(st, 404, "{e}");
        assert_eq!(e["error"]["type"], "invalid_request_error", "{e}");
        assert_eq!(e["error"]["code"], "model_not_found", "{e}");
        let mut b = body(model);
        b["max_tokens"] = json!(50);
        let (st, e) = v1(&s, Method::POST, "/v1/messages", &key, true, Some(b)).await;
        assert_eq!(st, 404, "{e}");
        assert_eq!(e["type"], "error", "{e}");
        assert_eq!(e["error"]["type"], "not_found_error", "{e}");
    }
    let (st, e) = v1(
        &s,
        Method::POST,
        "/v1/embeddings",
        &key,
        false,
        Some(json!({"model": "oa-embed", "input": "hi"})),
    )
    .await;
    assert_eq!(st, 404, "{e}");
    assert_eq!(e["error"]["code"], "model_not_found", "{e}");
    let (st, e) = v1(
        &s,
        Method::POST,
        "/v1/chat/completions",
        &key,
        false,
        Some(body("m-open")),
    )
    .await;
    assert_eq!(st, 200, "{e}");

    // A quota-only group beside it gives every model back.
    let open = create_group(&s, &admin, json!({"name": "Quota only"})).await;
    put(
        &s,
        &format!("/api/admin/groups/{open}/members/{}", ann.user_id),
        &admin,
    )
    .await;
    assert_eq!(model_rows(&s, &ann).await, everything);
    s.delete(&format!("/api/admin/groups/{open}"), Auth::Session(&admin))
        .await;
    assert_eq!(model_rows(&s, &ann).await, allowed);

    // Changing what the group allows applies at the next request.
    let r = s
        .patch(
            &format!("/api/admin/groups/{g}"),
            Auth::Session(&admin),
            json!({"name": "Narrow", "models": ["m-secret"], "providers": []}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["name"], "Narrow");
    assert_eq!(r.body["members"][0]["username"], "ann");
    assert_eq!(model_rows(&s, &ann).await, rows(&[("m-secret", "oa")]));
    // Removed from the group: everything again.
    let r = s
        .delete(
            &format!("/api/admin/groups/{g}/members/{}", ann.user_id),
            Auth::Session(&admin),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(model_rows(&s, &ann).await, everything);
    let r = s
        .delete(&format!("/api/admin/groups/{g}"), Auth::Session(&admin))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    s.get(&format!("/api/admin/groups/{g}"), Auth::Session(&admin))
        .await
        .assert_error(404, "NOT_FOUND");

    let actions = audit_actions(&s, &admin).await;
    for want in [
        "admin.group.create",
        "admin.group.access",
        "admin.group.rename",
        "admin.group.member.add",
        "admin.group.member.remove",
        "admin.group.delete",
    ] {
        assert!(
            actions.iter().any(|(a, o)| a == want && o == "ok"),
            "{want} missing: {actions:?}"
        );
    }
}

#[tokio::test]
async fn group_quotas_sit_beneath_the_user_override() {
    let (s, _up, admin) = chat_server(&["m"], |c| c.quota.messages_per_day = Some(100)).await;
    let ann = s.user(&admin, "ann").await;
    let small = create_group(
        &s,
        &admin,
        json!({"name": "Small", "quota": {"messages_per_day": 2}}),
    )
    .await;
    let big = create_group(
        &s,
        &admin,
        json!({"name": "Big", "quota": {"messages_per_day": 5}}),
    )
    .await;
    for g in [&small, &big] {
        put(
            &s,
            &format!("/api/admin/groups/{g}/members/{}", ann.user_id),
            &admin,
        )
        .await;
    }
    let own_limit = |r: &Resp| r.body["quota"]["messages_per_day"].clone();
    // The most generous of the groups'.
    let r = s.get("/api/usage", Auth::Session(&ann)).await;
    assert_eq!(own_limit(&r), 5, "{}", r.text);
    let r = s.get("/api/admin/users", Auth::Session(&admin)).await;
    let row = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "ann")
        .unwrap()
        .clone();
    assert_eq!(row["effective_quota"]["messages_per_day"], 5, "{row}");
    assert_eq!(row["quota"], Value::Null);
    let names: Vec<&str> = row["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Big", "Small"]);
    // Quota-only groups do not limit models.
    assert_eq!(model_rows(&s, &ann).await, rows(&[("m", "oa")]));

    // The user's own override wins, lower or higher, and is enforced.
    let r = s
        .patch(
            &format!("/api/admin/users/{}", ann.user_id),
            Auth::Session(&admin),
            json!({"quota": {"messages_per_day": 1}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["effective_quota"]["messages_per_day"], 1);
    let r = chat(&s, &ann, json!({"content": "hi", "model": "m"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    chat(&s, &ann, json!({"content": "hi", "model": "m"}))
        .await
        .assert_error(429, "QUOTA_EXCEEDED");
    // Back to the groups' value: 5, of which 1 is used.
    let r = s
        .patch(
            &format!("/api/admin/users/{}", ann.user_id),
            Auth::Session(&admin),
            json!({"quota": null}),
        )
        .await;
    assert_eq!(
        r.body["effective_quota"]["messages_per_day"], 5,
        "{}",
        r.text
    );
    let r = chat(&s, &ann, json!({"content": "hi", "model": "m"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Leaving the generous group: the other group's 2, used up now.
    s.delete(
        &format!("/api/admin/groups/{big}/members/{}", ann.user_id),
        Auth::Session(&admin),
    )
    .await;
    let r = s.get("/api/usage", Auth::Session(&ann)).await;
    assert_eq!(own_limit(&r), 2, "{}", r.text);
    chat(&s, &ann, json!({"content": "hi", "model": "m"}))
        .await
        .assert_error(429, "QUOTA_EXCEEDED");
    // A group's quota removed: the server default.
    let r = s
        .patch(
            &format!("/api/admin/groups/{small}"),
            Auth::Session(&admin),
            json!({"quota": null}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["quota"], Value::Null);
    let r = s.get("/api/usage", Auth::Session(&ann)).await;
    assert_eq!(own_limit(&r), 100, "{}", r.text);
    let actions = audit_actions(&s, &admin).await;
    assert!(
        actions.iter().any(|(a, _)| a == "admin.group.quota"),
        "{actions:?}"
    );
}

#[tokio::test]
async fn group_admin_is_for_admins_and_allowed_models_is_refused() {
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    let ann = s.user(&admin, "ann").await;
    let g = create_group(&s, &admin, json!({"name": "Staff"})).await;
    let member = format!("/api/admin/groups/{g}/members/{}", ann.user_id);
    // A user gets 403 on every group endpoint, whatever the id.
    for r in [
        s.get("/api/admin/groups", Auth::Session(&ann)).await,
        s.post(
            "/api/admin/groups",
            Auth::Session(&ann),
            json!({"name": "Mine"}),
        )
        .await,
        s.get(&format!("/api/admin/groups/{g}"), Auth::Session(&ann))
            .await,
        s.patch(
            &format!("/api/admin/groups/{g}"),
            Auth::Session(&ann),
            json!({"name": "x"}),
        )
        .await,
        s.delete(&format!("/api/admin/groups/{g}"), Auth::Session(&ann))
            .await,
        put(&s, &member, &ann).await,
        s.delete(&member, Auth::Session(&ann)).await,
    ] {
        r.assert_error(403, "ADMIN_REQUIRED");
    }
    // Without a credential: 401.
    s.get("/api/admin/groups", Auth::None)
        .await
        .assert_error(401, "AUTH_REQUIRED");
    // Nothing changed.
    let r = s.get("/api/admin/groups", Auth::Session(&admin)).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1, "{}", r.text);
    assert_eq!(r.body["items"][0]["name"], "Staff");
    assert_eq!(r.body["items"][0]["member_count"], 0);
    assert_eq!(r.body["items"][0]["restricts_models"], false);

    // Names: unique (case-insensitively), not empty.
    s.post(
        "/api/admin/groups",
        Auth::Session(&admin),
        json!({"name": "staff"}),
    )
    .await
    .assert_error(409, "CONFLICT");
    s.post(
        "/api/admin/groups",
        Auth::Session(&admin),
        json!({"name": "  "}),
    )
    .await
    .assert_error(400, "VALIDATION_FAILED");
    s.post(
        "/api/admin/groups",
        Auth::Session(&admin),
        json!({"name": "x", "models": ["a b"]}),
    )
    .await
    .assert_error(400, "VALIDATION_FAILED");
    // Unknown ids: 404.
    let nobody = uuid::Uuid::now_v7();
    s.get(
        &format!("/api/admin/groups/{nobody}"),
        Auth::Session(&admin),
    )
    .await
    .assert_error(404, "NOT_FOUND");
    put(
        &s,
        &format!("/api/admin/groups/{g}/members/{nobody}"),
        &admin,
    )
    .await
    .assert_error(404, "NOT_FOUND");
    put(
        &s,
        &format!("/api/admin/groups/{nobody}/members/{}", ann.user_id),
        &admin,
    )
    .await
    .assert_error(404, "NOT_FOUND");
    // Adding twice is one membership.
    for _ in 0..2 {
        assert_eq!(put(&s, &member, &admin).await.status, 204);
    }
    let r = s
        .get(&format!("/api/admin/groups/{g}"), Auth::Session(&admin))
        .await;
    assert_eq!(r.body["member_count"], 1, "{}", r.text);

    // allowed_models on a user was silently ignored: now a clear 400.
    let r = s
        .patch(
            &format!("/api/admin/users/{}", ann.user_id),
            Auth::Session(&admin),
            json!({"allowed_models": ["gpt-4o"]}),
        )
        .await;
    r.assert_error(400, "VALIDATION_FAILED");
    assert!(
        r.body["message"].as_str().unwrap().contains("group"),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn an_oidc_group_claim_maps_to_groups_at_every_sign_in() {
    let (s, _p) = crate::sso_oidc::setup(
        |e| {
            e.auto_create = true;
            e.group_map = [
                ("confab-users".to_string(), "Users".to_string()),
                ("confab-admins".to_string(), "Admins".to_string()),
            ]
            .into_iter()
            .collect();
        },
        |_| {},
    )
    .await;
    let admin = s.setup_admin("root").await;
    let users = create_group(&s, &admin, json!({"name": "Users"})).await;
    let admins = create_group(&s, &admin, json!({"name": "Admins"})).await;
    let other = create_group(&s, &admin, json!({"name": "Other"})).await;

    // Bob's provider groups: confab-users.
    let out = crate::sso_oidc::sign_in(&s, &mut Browser::new(), "bob").await;
    let (bob, _) = crate::sso_oidc::session_of(&s, out.session.as_deref().unwrap()).await;
    let members = |g: &str| {
        let (s, admin, g) = (&s, &admin, g.to_string());
        async move {
            let r = s
                .get(&format!("/api/admin/groups/{g}"), Auth::Session(admin))
                .await;
            r.body["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["username"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(members(&users).await, ["bob"]);
    assert!(members(&admins).await.is_empty());

    // An admin puts Bob in a mapped group he is not in at the provider, and
    // in an unmapped one: the next sign-in takes him out of the first only.
    for g in [&admins, &other] {
        put(
            &s,
            &format!("/api/admin/groups/{g}/members/{}", bob.user_id),
            &admin,
        )
        .await;
    }
    let out = crate::sso_oidc::sign_in(&s, &mut Browser::new(), "bob").await;
    assert!(out.session.is_some(), "{}", out.location);
    assert_eq!(members(&users).await, ["bob"]);
    assert!(members(&admins).await.is_empty());
    assert_eq!(members(&other).await, ["bob"]);

    let actions = audit_actions(&s, &admin).await;
    assert!(
        actions.contains(&("sso.group.add".into(), "ok".into())),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("sso.group.remove".into(), "ok".into())),
        "{actions:?}"
    );
}

#[tokio::test]
async fn ldap_groups_map_to_groups_by_dn_or_name() {
    let d = crate::sso_ldap::Slapd::start();
    let s = TestServer::start_with(|c| {
        let mut l = d.config();
        l.group_map = [
            ("confab-admins".to_string(), "Leads".to_string()),
            (
                "CN=confab-users,ou=groups,dc=example,dc=org".to_string(),
                "Staff".to_string(),
            ),
        ]
        .into_iter()
        .collect();
        c.ldap = Some(l);
    })
    .await;
    let admin = s.setup_admin("root").await;
    let leads = create_group(&s, &admin, json!({"name": "leads"})).await;
    let staff = create_group(&s, &admin, json!({"name": "Staff"})).await;
    for (name, pw) in [("alice", "alice-secret"), ("bob", "bob-secret")] {
        let r = crate::sso_ldap::login(&s, name, pw).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let members = |g: String| {
        let (s, admin) = (&s, &admin);
        async move {
            let r = s
                .get(&format!("/api/admin/groups/{g}"), Auth::Session(admin))
                .await;
            r.body["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["username"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    // By the group's name (cn) and by its DN, both case-insensitively.
    assert_eq!(members(leads.clone()).await, ["alice"]);
    assert_eq!(members(staff.clone()).await, ["alice", "bob"]);
}
