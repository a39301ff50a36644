//! Providers through the real server over TCP: admins add, change, disable
//! and delete providers pointing at the fake upstream; users see the merged
//! model list and provider health without base URLs; keys are encrypted at
//! rest and never answered; config and environment providers stay read-only;
//! admin-added providers survive a restart.

use crate::common;
use crate::common_upstream;

use std::time::{Duration, Instant};

use common::{Auth, PASSWORD, Resp, Session, TestServer};
use common_upstream::{DEFAULT_MODELS, FakeUpstream, REJECTED_KEY};
use confab::config::{Config, Overrides, ProviderEntry};
use confab::providers::ProviderKind;
use reqwest::StatusCode;
use serde_json::{Value, json};

const KEY: &str = "sk-admin-stored-key-5f1e9c2a7b3d";
const KEY2: &str = "sk-rotated-key-0a9b8c7d6e5f";
const CONFIG_KEY: &str = "sk-config-file-key-77aa88bb";

/// Every answer a test saw, to check that no key ever comes back.
#[derive(Default)]
struct Seen(Vec<String>);

impl Seen {
    fn add(&mut self, r: &Resp) {
        self.0.push(r.text.clone());
    }
    fn assert_no(&self, secret: &str) {
        for t in &self.0 {
            assert!(!t.contains(secret), "an answer carried a key: {t}");
        }
    }
}

async fn admin_and_user(s: &TestServer) -> (Session, Session) {
    let admin = s.setup_admin("admin").await;
    let user = s.user(&admin, "bob").await;
    (admin, user)
}

fn items(r: &Resp) -> Vec<Value> {
    r.body["items"].as_array().cloned().unwrap_or_default()
}

fn find<'a>(list: &'a [Value], name: &str) -> Option<&'a Value> {
    list.iter().find(|p| p["name"] == name)
}

/// Model ids `/api/models` lists for `provider`, sorted.
async fn models_of(s: &TestServer, who: &Session, provider: &str) -> Vec<String> {
    let r = s.get("/api/models", Auth::Session(who)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let mut ids: Vec<String> = items(&r)
        .iter()
        .filter(|m| m["provider"] == provider)
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// Polls `/api/models` until `provider` offers exactly `expected`.
async fn wait_models(s: &TestServer, who: &Session, provider: &str, expected: &[&str]) {
    let mut want: Vec<String> = expected.iter().map(|m| m.to_string()).collect();
    want.sort();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = models_of(s, who, provider).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "provider {provider}: wanted models {want:?}, still {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls `/api/providers` until `name` has been checked (reachable or not).
async fn wait_checked(s: &TestServer, who: &Session, name: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = s.get("/api/providers", Auth::Session(who)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        if let Some(p) = find(&items(&r), name)
            && (p["reachable"] == true || !p["last_error"].is_null())
        {
            return p.clone();
        }
        assert!(Instant::now() < deadline, "provider {name} never checked");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until the fake has seen a model-list request carrying `bearer`.
async fn wait_upstream_auth(fake: &FakeUpstream, bearer: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = fake.requests().iter().any(|r| {
            r.method == "GET"
                && r.path.ends_with("/models")
                && r.header("authorization") == bearer.map(|k| format!("Bearer {k}")).as_deref()
        });
        if seen {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "upstream never saw a model listing with authorization {bearer:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn create(s: &TestServer, admin: &Session, body: Value) -> Resp {
    s.post("/api/admin/providers", Auth::Session(admin), body)
        .await
}

async fn audit_actions(s: &TestServer, admin: &Session) -> Resp {
    let r = s
        .get("/api/admin/audit?limit=200", Auth::Session(admin))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r
}

#[tokio::test]
async fn admin_added_provider_serves_models_and_keeps_its_key_secret() {
    let fake = FakeUpstream::start().await;
    let s = TestServer::start().await;
    let (admin, user) = admin_and_user(&s).await;
    let mut seen = Seen::default();

    let r = create(
        &s,
        &admin,
        json!({"kind": "openai", "name": "fake", "base_url": fake.openai_base(), "api_key": KEY}),
    )
    .await;
    seen.add(&r);
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["name"], "fake");
    assert_eq!(r.body["kind"], "openai");
    assert_eq!(r.body["base_url"], fake.openai_base());
    assert_eq!(r.body["has_api_key"], true);
    assert_eq!(r.body["enabled"], true);
    assert_eq!(r.body["source"], "admin");
    assert!(r.body["models"].is_null());
    assert!(r.body.get("api_key").is_none());

    // The fake's models show up for an ordinary user within moments.
    wait_models(&s, &user, "fake", DEFAULT_MODELS).await;
    let r = s.get("/api/models", Auth::Session(&user)).await;
    seen.add(&r);
    let m = items(&r)
        .into_iter()
        .find(|m| m["id"] == "fake-model")
        .unwrap();
    assert_eq!(m["provider"], "fake");
    assert!(m["display_name"].is_string());
    assert!(m.as_object().unwrap().contains_key("context_window"));
    assert!(r.body.as_object().unwrap().contains_key("default_model"));
    assert_eq!(r.body["default_model"], "fake-model", "first listed");
    assert_eq!(r.body["allow_user_keys"], false);
    // The decrypted key is what the upstream receives.
    wait_upstream_auth(&fake, Some(KEY)).await;

    // Health for users: reachable, counted, no base URL anywhere.
    let p = wait_checked(&s, &user, "fake").await;
    assert_eq!(p["reachable"], true, "{p}");
    assert!(p["last_error"].is_null());
    assert_eq!(p["models_count"], 2);
    assert_eq!(p["enabled"], true);
    assert_eq!(p["kind"], "openai");
    let r = s.get("/api/providers", Auth::Session(&user)).await;
    seen.add(&r);
    assert!(!r.text.contains("base_url"), "{}", r.text);
    assert!(!r.text.contains(&fake.addr.to_string()), "{}", r.text);

    // Admins see everything but the key.
    let r = s.get("/api/admin/providers", Auth::Session(&admin)).await;
    seen.add(&r);
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let list = items(&r);
    let p = find(&list, "fake").unwrap();
    assert_eq!(p["base_url"], fake.openai_base());
    assert_eq!(p["has_api_key"], true);
    assert_eq!(p["source"], "admin");
    assert_eq!(p["status"]["reachable"], true);
    assert!(p["status"]["checked_at"].is_string());
    assert!(p["created_at"].is_string());
    assert_eq!(p["models_count"], 2);

    // Audited, without the key.
    let r = audit_actions(&s, &admin).await;
    seen.add(&r);
    assert!(
        items(&r)
            .iter()
            .any(|e| e["action"] == "admin.provider.create" && e["outcome"] == "ok"),
        "{}",
        r.text
    );

    // Encrypted at rest: the raw database never holds the key, and the key
    // file is private.
    let raw = std::fs::read(s.data_dir().join("confab.redb")).unwrap();
    assert!(
        !raw.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
        "the key is stored in clear"
    );
    let key_file = s.data_dir().join("provider.key");
    let text = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(text.trim().len(), 64, "32 bytes, hex");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The OpenAPI document describes the routes.
    let r = s.get("/api/openapi.json", Auth::None).await;
    for path in [
        "/api/models",
        "/api/providers",
        "/api/admin/providers",
        "/api/admin/providers/{name}",
    ] {
        assert!(r.body["paths"].get(path).is_some(), "{path} missing");
    }
    seen.assert_no(KEY);
}

#[tokio::test]
async fn non_admins_are_refused_and_never_see_base_urls() {
    let fake = FakeUpstream::start().await;
    let s = TestServer::start().await;
    let (admin, user) = admin_and_user(&s).await;
    let r = create(
        &s,
        &admin,
        json!({"kind": "openai", "name": "fake", "base_url": fake.openai_base(), "api_key": KEY}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    s.get("/api/admin/providers", Auth::Session(&user))
        .await
        .assert_error(403, "ADMIN_REQUIRED");
    create(
        &s,
        &user,
        json!({"kind": "openai", "name": "mine", "base_url": "http://169.254.169.254/v1"}),
    )
    .await
    .assert_error(403, "ADMIN_REQUIRED");
    s.patch(
        "/api/admin/providers/fake",
        Auth::Session(&user),
        json!({"base_url": "http://169.254.169.254/v1"}),
    )
    .await
    .assert_error(403, "ADMIN_REQUIRED");
    s.delete("/api/admin/providers/fake", Auth::Session(&user))
        .await
        .assert_error(403, "ADMIN_REQUIRED");
    // Nothing changed.
    let r = s.get("/api/admin/providers", Auth::Session(&admin)).await;
    assert_eq!(items(&r).len(), 1);
    assert_eq!(items(&r)[0]["base_url"], fake.openai_base());

    // Anonymous callers get nothing.
    s.get("/api/models", Auth::None)
        .await
        .assert_error(401, "AUTH_REQUIRED");
    s.get("/api/providers", Auth::None)
        .await
        .assert_error(401, "AUTH_REQUIRED");

    wait_models(&s, &user, "fake", DEFAULT_MODELS).await;
    for path in ["/api/providers", "/api/models"] {
        let r = s.get(path, Auth::Session(&user)).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(!r.text.contains("base_url"), "{}", r.text);
        assert!(!r.text.contains(&fake.addr.to_string()), "{}", r.text);
        assert!(!r.text.contains(KEY), "{}", r.text);
    }
}

#[tokio::test]
async fn patch_disable_and_delete() {
    let fake = FakeUpstream::start().await;
    let s = TestServer::start().await;
    let (admin, user) = admin_and_user(&s).await;
    let mut seen = Seen::default();
    let r = create(
        &s,
        &admin,
        json!({"kind": "openai", "name": "fake", "base_url": fake.openai_base(), "api_key": KEY}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    wait_models(&s, &user, "fake", DEFAULT_MODELS).await;

    // Disable: its models go away at once, and users see it disabled.
    let r = s
        .patch(
            "/api/admin/providers/fake",
            Auth::Session(&admin),
            json!({"enabled": false}),
        )
        .await;
    seen.add(&r);
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["enabled"], false);
    assert_eq!(r.body["has_api_key"], true, "the key is kept");
    assert!(models_of(&s, &user, "fake").await.is_empty());
    let r = s.get("/api/providers", Auth::Session(&user)).await;
    assert_eq!(find(&items(&r), "fake").unwrap()["enabled"], false);
    // Enable again.
    let r = s
        .patch(
            "/api/admin/providers/fake",
            Auth::Session(&admin),
            json!({"enabled": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    wait_models(&s, &user, "fake", DEFAULT_MODELS).await;

    // An allowlist narrows the list; null lifts it.
    let r = s
        .patch(
            "/api/admin/providers/fake",
            Auth::Session(&admin),
            json!({"models": ["fake-model"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["models"], json!(["fake-model"]));
    wait_models(&s, &user, "fake", &["fake-model"]).await;
    let r = s
        .patch(
            "/api/admin/providers/fake",
            Auth::Session(&admin),
            json!({"models": null}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.body["models"].is_null());
    wait_models(&s, &user, "fake", DEFAULT_MODELS).await;

    // A new key is used upstream; the empty string removes it.
    fake.clear_requests();
    let r = s
        .patch(
            "/api/admin/providers/fake",
            Auth::Session(&admin),
            json!({"api_key": KEY2}),
        )
        .await;
    seen.add(&r);
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["has_api_key"], true);
    wait_upstream_auth(&fake, Some(KEY2)).await;
    fake.clear_requests();
    let r = s
        .patch(
            "/api/admin/providers/fake",
            Auth::Session(&admin),
            json!({"api_key": ""}),
        )
        .await;
    seen.add(&r);
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["has_api_key"], false);
    wait_upstream_auth(&fake, None).await;

    // A key the upstream refuses: reachable (it answered) with the error,
    // and neither key nor URL leaks to users.
    let r = s
        .patch(
            "/api/admin/providers/fake",
            Auth::Session(&admin),
            json!({"api_key": REJECTED_KEY}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let deadline = Instant::now() + Duration::from_secs(10);
    let p = loop {
        let r = s.get("/api/providers", Auth::Session(&user)).await;
        seen.add(&r);
        let p = find(&items(&r), "fake").unwrap().clone();
        if !p["last_error"].is_null() {
            break p;
        }
        assert!(Instant::now() < deadline, "refused key never reported");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(p["reachable"], true, "{p}");
    let msg = p["last_error"].as_str().unwrap();
    assert!(msg.contains("fake"), "{msg}");
    assert!(!msg.contains(&fake.addr.to_string()), "{msg}");
    let r = s.get("/api/admin/providers", Auth::Session(&admin)).await;
    seen.add(&r);
    assert_eq!(
        find(&items(&r), "fake").unwrap()["status"]["last_error_code"],
        "PROVIDER_ERROR"
    );

    // Bad changes are refused and change nothing.
    s.patch(
        "/api/admin/providers/fake",
        Auth::Session(&admin),
        json!({"base_url": "file:///etc/passwd"}),
    )
    .await
    .assert_error(400, "VALIDATION_FAILED");
    s.patch(
        "/api/admin/providers/fake",
        Auth::Session(&admin),
        json!({"models": ["a", "a"]}),
    )
    .await
    .assert_error(400, "VALIDATION_FAILED");
    s.patch(
        "/api/admin/providers/nope",
        Auth::Session(&admin),
        json!({"enabled": false}),
    )
    .await
    .assert_error(404, "NOT_FOUND");
    // Moving it to another URL works (here: a port nobody listens on).
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let r = s
        .patch(
            "/api/admin/providers/fake",
            Auth::Session(&admin),
            json!({"base_url": format!("http://{dead}/v1"), "api_key": KEY}),
        )
        .await;
    seen.add(&r);
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["base_url"], format!("http://{dead}/v1"));
    let p = wait_checked(&s, &user, "fake").await;
    assert_eq!(p["reachable"], false, "{p}");
    assert!(
        !p["last_error"]
            .as_str()
            .unwrap()
            .contains(&dead.to_string()),
        "{p}"
    );

    // Delete: 204, gone everywhere, a second delete is 404.
    let r = s
        .delete("/api/admin/providers/fake", Auth::Session(&admin))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert!(models_of(&s, &user, "fake").await.is_empty());
    let r = s.get("/api/providers", Auth::Session(&user)).await;
    assert!(find(&items(&r), "fake").is_none());
    let r = s.get("/api/admin/providers", Auth::Session(&admin)).await;
    assert!(items(&r).is_empty(), "{}", r.text);
    s.delete("/api/admin/providers/fake", Auth::Session(&admin))
        .await
        .assert_error(404, "NOT_FOUND");

    let r = audit_actions(&s, &admin).await;
    seen.add(&r);
    let actions: Vec<(String, String)> = items(&r)
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for want in [
        ("admin.provider.update", "ok"),
        ("admin.provider.update", "VALIDATION_FAILED"),
        ("admin.provider.update", "NOT_FOUND"),
        ("admin.provider.delete", "ok"),
        ("admin.provider.delete", "NOT_FOUND"),
    ] {
        assert!(
            actions.iter().any(|(a, o)| a == want.0 && o == want.1),
            "{want:?} not audited: {actions:?}"
        );
    }
    for k in [KEY, KEY2, REJECTED_KEY] {
        seen.assert_no(k);
    }
}

#[tokio::test]
async fn create_validates_and_refuses_duplicates() {
    let fake = FakeUpstream::start().await;
    let s = TestServer::start_with(|cfg| {
        cfg.providers.push(ProviderEntry::new(
            ProviderKind::Ollama,
            "from-config",
            fake.ollama_base(),
        ));
    })
    .await;
    let (admin, _) = admin_and_user(&s).await;
    let ok = json!({"kind": "anthropic", "name": "claude", "base_url": fake.anthropic_base(), "api_key": KEY});
    let r = create(&s, &admin, ok.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["kind"], "anthropic");
    create(&s, &admin, ok).await.assert_error(409, "CONFLICT");
    // A name taken by the config file is taken too.
    create(
        &s,
        &admin,
        json!({"kind": "openai", "name": "from-config", "base_url": fake.openai_base()}),
    )
    .await
    .assert_error(409, "CONFLICT");

    for bad in [
        json!({"kind": "openai", "name": "", "base_url": "http://h/v1"}),
        json!({"kind": "openai", "name": "has space", "base_url": "http://h/v1"}),
        json!({"kind": "openai", "name": "x".repeat(51), "base_url": "http://h/v1"}),
        json!({"kind": "openai", "name": "slash/y", "base_url": "http://h/v1"}),
        json!({"kind": "openai", "name": "ok", "base_url": "127.0.0.1:8000/v1"}),
        json!({"kind": "openai", "name": "ok", "base_url": "file:///etc/passwd"}),
        json!({"kind": "openai", "name": "ok", "base_url": "/v1"}),
        json!({"kind": "openai", "name": "ok", "base_url": "http://user:pw@h/v1"}),
        json!({"kind": "gemini", "name": "ok", "base_url": "http://h/v1"}),
        json!({"name": "ok", "base_url": "http://h/v1"}),
        json!({"kind": "openai", "name": "ok", "base_url": "http://h/v1", "api_key": "two words"}),
        json!({"kind": "openai", "name": "ok", "base_url": "http://h/v1", "models": ["", "b"]}),
    ] {
        let r = create(&s, &admin, bad.clone()).await;
        r.assert_error(400, "VALIDATION_FAILED");
        assert!(!r.text.contains("two words"), "{}", r.text);
    }
    // A disabled provider is stored but offers nothing and is not polled.
    let r = create(
        &s,
        &admin,
        json!({"kind": "ollama", "name": "off.1", "base_url": fake.ollama_base(), "enabled": false}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["enabled"], false);
    assert_eq!(r.body["has_api_key"], false);
    let r = s.get("/api/admin/providers", Auth::Session(&admin)).await;
    let names: Vec<String> = items(&r)
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["from-config", "claude", "off.1"]);
    let r = audit_actions(&s, &admin).await;
    assert!(
        items(&r)
            .iter()
            .any(|e| e["action"] == "admin.provider.create" && e["outcome"] == "CONFLICT"),
        "{}",
        r.text
    );
    assert!(!r.text.contains(KEY));
}

#[tokio::test]
async fn config_providers_are_read_only_but_can_be_disabled() {
    let fake = FakeUpstream::start().await;
    let keydir = tempfile::tempdir().unwrap();
    let key_file = keydir.path().join("fake.key");
    std::fs::write(&key_file, format!("{CONFIG_KEY}\n")).unwrap();
    let s = TestServer::start_with(|cfg| {
        let mut p = ProviderEntry::new(ProviderKind::Openai, "from-config", fake.openai_base());
        p.api_key_file = Some(key_file.clone());
        p.models = Some(vec!["fake-model-2".into()]);
        cfg.providers.push(p);
        cfg.default_model = Some("fake-model-2".into());
        cfg.allow_user_keys = true;
    })
    .await;
    let (admin, user) = admin_and_user(&s).await;
    let mut seen = Seen::default();

    // Refreshed at start-up, with the key read from the file.
    wait_models(&s, &user, "from-config", &["fake-model-2"]).await;
    wait_upstream_auth(&fake, Some(CONFIG_KEY)).await;
    let r = s.get("/api/models", Auth::Session(&user)).await;
    assert_eq!(r.body["default_model"], "fake-model-2");
    assert_eq!(r.body["allow_user_keys"], true);

    let r = s.get("/api/admin/providers", Auth::Session(&admin)).await;
    seen.add(&r);
    let list = items(&r);
    let p = find(&list, "from-config").unwrap();
    assert_eq!(p["source"], "config");
    assert_eq!(p["has_api_key"], true);
    assert_eq!(p["models"], json!(["fake-model-2"]));
    assert!(p["created_at"].is_null());

    let r = s
        .delete("/api/admin/providers/from-config", Auth::Session(&admin))
        .await;
    r.assert_error(400, "VALIDATION_FAILED");
    assert!(
        r.body["message"].as_str().unwrap().contains("config file"),
        "{}",
        r.text
    );
    for change in [
        json!({"base_url": "http://127.0.0.1:1/v1"}),
        json!({"api_key": "sk-other"}),
        json!({"models": null}),
        json!({"enabled": false, "api_key": ""}),
    ] {
        let r = s
            .patch(
                "/api/admin/providers/from-config",
                Auth::Session(&admin),
                change,
            )
            .await;
        r.assert_error(400, "VALIDATION_FAILED");
        assert!(r.body["message"].as_str().unwrap().contains("config file"));
    }
    // Still there, unchanged and enabled.
    wait_models(&s, &user, "from-config", &["fake-model-2"]).await;

    // Disabling at runtime works (in memory).
    let r = s
        .patch(
            "/api/admin/providers/from-config",
            Auth::Session(&admin),
            json!({"enabled": false}),
        )
        .await;
    seen.add(&r);
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["enabled"], false);
    assert_eq!(r.body["source"], "config");
    assert!(models_of(&s, &user, "from-config").await.is_empty());
    let r = s
        .patch(
            "/api/admin/providers/from-config",
            Auth::Session(&admin),
            json!({"enabled": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    wait_models(&s, &user, "from-config", &["fake-model-2"]).await;
    // Nothing of it went to the store.
    assert!(s.state().store.list_providers().await.unwrap().is_empty());
    assert!(!s.data_dir().join("provider.key").exists());

    let r = audit_actions(&s, &admin).await;
    seen.add(&r);
    assert!(
        items(&r)
            .iter()
            .any(|e| e["action"] == "admin.provider.delete" && e["outcome"] == "VALIDATION_FAILED")
    );
    seen.assert_no(CONFIG_KEY);
}

#[tokio::test]
async fn admin_providers_survive_a_restart() {
    let fake = FakeUpstream::start().await;
    let s = TestServer::start().await;
    let (admin, user) = admin_and_user(&s).await;
    let r = create(
        &s,
        &admin,
        json!({"kind": "openai", "name": "kept", "base_url": fake.openai_base(), "api_key": KEY, "models": ["fake-model"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = create(
        &s,
        &admin,
        json!({"kind": "ollama", "name": "sleeping", "base_url": fake.ollama_base()}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = s
        .patch(
            "/api/admin/providers/sleeping",
            Auth::Session(&admin),
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    wait_models(&s, &user, "kept", &["fake-model"]).await;
    let key_before = std::fs::read(s.data_dir().join("provider.key")).unwrap();

    let dir = s.stop().await;
    fake.clear_requests();
    let s = TestServer::start_in(dir, |_| {}).await;
    let admin = s.login("admin", PASSWORD).await;
    let user = s.login("bob", PASSWORD).await;
    assert_eq!(
        std::fs::read(s.data_dir().join("provider.key")).unwrap(),
        key_before,
        "the key file is reused, not replaced"
    );

    wait_models(&s, &user, "kept", &["fake-model"]).await;
    // The key came back out of the store, decrypted.
    wait_upstream_auth(&fake, Some(KEY)).await;
    let r = s.get("/api/admin/providers", Auth::Session(&admin)).await;
    assert!(!r.text.contains(KEY));
    let list = items(&r);
    let kept = find(&list, "kept").unwrap();
    assert_eq!(kept["source"], "admin");
    assert_eq!(kept["has_api_key"], true);
    assert_eq!(kept["models"], json!(["fake-model"]));
    let sleeping = find(&list, "sleeping").unwrap();
    assert_eq!(sleeping["enabled"], false, "disabled state is stored");
    assert_eq!(sleeping["has_api_key"], false);
    assert!(models_of(&s, &user, "sleeping").await.is_empty());
    // Still editable after the restart.
    let r = s
        .delete("/api/admin/providers/sleeping", Auth::Session(&admin))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
}

#[tokio::test]
async fn stored_key_is_unusable_without_the_key_file() {
    let fake = FakeUpstream::start().await;
    let s = TestServer::start().await;
    let (admin, _) = admin_and_user(&s).await;
    let r = create(
        &s,
        &admin,
        json!({"kind": "openai", "name": "kept", "base_url": fake.openai_base(), "api_key": KEY}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let dir = s.stop().await;
    // Someone swaps in a different key file: the record cannot be opened,
    // and the server still starts, with the provider listed without a key.
    std::fs::remove_file(dir.path().join("provider.key")).unwrap();
    confab::providers::secrets::SecretBox::load_or_create(dir.path()).unwrap();
    let s = TestServer::start_in(dir, |_| {}).await;
    let admin = s.login("admin", PASSWORD).await;
    let r = s.get("/api/admin/providers", Auth::Session(&admin)).await;
    let list = items(&r);
    let kept = find(&list, "kept").unwrap();
    assert_eq!(kept["has_api_key"], false);
    // A new key can be entered.
    let r = s
        .patch(
            "/api/admin/providers/kept",
            Auth::Session(&admin),
            json!({"api_key": KEY2}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["has_api_key"], true);
}

#[tokio::test]
async fn bad_api_key_file_fails_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such.key");

    // Through the config loader.
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        format!(
            "[[providers]]\nkind = \"openai\"\nname = \"vllm\"\nbase_url = \"http://127.0.0.1:8000/v1\"\napi_key_file = {:?}\n",
            missing.to_str().unwrap()
        ),
    )
    .unwrap();
    let e = Config::load_from(Some(&file), &[], &Overrides::default())
        .unwrap_err()
        .0;
    assert!(e.contains("api_key_file"), "{e}");
    assert!(e.contains("no-such.key"), "{e}");

    // Through server start-up with a config built in code.
    let mut cfg = common::test_config(dir.path());
    let mut p = ProviderEntry::new(ProviderKind::Openai, "vllm", "http://127.0.0.1:8000/v1");
    p.api_key_file = Some(missing.clone());
    cfg.providers.push(p);
    let store = confab::store::redb::RedbStore::open_shared(&cfg.data_dir).unwrap();
    let e = confab::app::AppState::new(cfg, store, "127.0.0.1:1".parse().unwrap())
        .await
        .err()
        .expect("start-up must fail");
    let msg = format!("{e:#}");
    assert!(
        msg.contains("api_key_file") && msg.contains("no-such.key"),
        "{msg}"
    );

    // Through the real binary: exit 2 with one line naming it.
    let out = common::proc::confab()
        .current_dir(dir.path())
        .args(["--config", file.to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("api_key_file"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// Issue 13 item 7: base_url must be a sane absolute http(s) URL, on create
/// and on update, and for config-file providers.
#[tokio::test]
async fn provider_base_url_is_validated_for_length_credentials_and_fragments() {
    let s = TestServer::start().await;
    let (admin, _) = admin_and_user(&s).await;
    let long = format!("http://127.0.0.1:9/{}", "a".repeat(100_000));
    let at_limit = format!("http://127.0.0.1:9/{}", "a".repeat(2048 - 19));
    assert_eq!(at_limit.len(), 2048);
    for (url, says) in [
        (long.as_str(), "2048"),
        ("http://user:pw@127.0.0.1:9/v1", "user name or password"),
        ("http://127.0.0.1:9/v1#frag", "fragment"),
        ("ftp://127.0.0.1/v1", "http"),
        ("/v1", "http"),
    ] {
        let r = create(
            &s,
            &admin,
            json!({"kind": "openai", "name": "bad", "base_url": url}),
        )
        .await;
        r.assert_error(400, "VALIDATION_FAILED");
        let msg = r.body["message"].as_str().unwrap();
        assert!(msg.contains(says), "{url:.40}: {msg}");
        assert!(msg.len() < 500, "the message does not echo a huge URL");
    }
    let r = create(
        &s,
        &admin,
        json!({"kind": "openai", "name": "ok", "base_url": at_limit}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = s
        .patch(
            "/api/admin/providers/ok",
            Auth::Session(&admin),
            json!({"base_url": long}),
        )
        .await;
    r.assert_error(400, "VALIDATION_FAILED");

    // The same rule for the config file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        format!("[[providers]]\nkind = \"openai\"\nname = \"x\"\nbase_url = \"{long}\"\n"),
    )
    .unwrap();
    let e = Config::load_from(Some(&path), &[], &Overrides::default()).unwrap_err();
    assert!(
        e.0.contains("providers[0].base_url") && e.0.contains("2048"),
        "{:.200}",
        e.0
    );
}

/// A provider on HTTPS behind a CA that is not a public one: refused with a
/// clear error until `provider_ca_file` names the CA, then reached over
/// HTTP/2 (ALPN), as the cloud providers are.
#[tokio::test]
async fn an_https_provider_behind_an_internal_ca_is_reached_over_http2() {
    let fake = FakeUpstream::start_tls().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("internal-ca.pem");
    std::fs::write(&ca, fake.cert_pem.as_deref().unwrap()).unwrap();
    let entry = || {
        let mut p = ProviderEntry::new(ProviderKind::Openai, "internal", fake.openai_base());
        p.api_key = Some(confab::config::Secret("sk-internal-0000".into()));
        p.models = Some(vec!["fake-model".into()]);
        p
    };

    // Without the CA the certificate is refused and the answer says so.
    let s = TestServer::start_with(|cfg| cfg.providers.push(entry())).await;
    let (_admin, user) = admin_and_user(&s).await;
    let r = common::chat(&s, &user, json!({"content": "hi", "model": "fake-model"})).await;
    assert_ne!(r.status, 200, "{}", r.text);
    assert!(
        r.text.contains("not signed by a trusted authority"),
        "{}",
        r.text
    );
    assert!(fake.requests().is_empty(), "no request got through TLS");
    s.stop().await;

    let s = TestServer::start_with(|cfg| {
        cfg.providers.push(entry());
        cfg.provider_ca_file = Some(ca.clone());
    })
    .await;
    let (_admin, user) = admin_and_user(&s).await;
    let r = common::chat(&s, &user, json!({"content": "hi", "model": "fake-model"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.text.contains(common_upstream::DEFAULT_REPLY),
        "{}",
        r.text
    );
    let chats: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|q| q.path.ends_with("/chat/completions"))
        .collect();
    assert!(!chats.is_empty());
    assert!(
        chats.iter().all(|q| q.version == "HTTP/2.0"),
        "{:?}",
        chats.iter().map(|q| &q.version).collect::<Vec<_>>()
    );

    // A file that holds no certificate stops the start with its name.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let err = confab::providers::client_factory(Some(&junk))
        .err()
        .expect("refused");
    assert!(format!("{err:#}").contains("junk.pem"), "{err:#}");
}
