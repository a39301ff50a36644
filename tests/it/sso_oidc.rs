//! OpenID Connect sign-in against a real provider (the certified
//! `oidc-provider` package, see `common::oidc`): the code flow with PKCE
//! signs in and links by `sub`; a rotated signing key is fetched; a wrong
//! audience, an expired token, a replayed state and a tampered nonce are
//! each refused with their own code; linking and unlinking from settings;
//! `auth.local_passwords = false`.

use crate::common::oidc::{Browser, CLIENT_ID, CLIENT_SECRET, Provider, free_port};
use crate::common::{Auth, PASSWORD, Session, TestServer};
use confab::config::{Config, OidcEntry, Secret};
use reqwest::{StatusCode, Url};
use serde_json::{Value, json};

const NAME: &str = "test";

fn entry(issuer: &str, f: impl FnOnce(&mut OidcEntry)) -> OidcEntry {
    let mut e = OidcEntry {
        name: NAME.into(),
        display_name: Some("Test Provider".into()),
        issuer: issuer.into(),
        client_id: CLIENT_ID.into(),
        client_secret: Some(Secret(CLIENT_SECRET.into())),
        scopes: vec!["email".into(), "profile".into(), "groups".into()],
        ..OidcEntry::default()
    };
    f(&mut e);
    e
}

/// confab with the provider configured, and the provider running.
pub(crate) async fn setup(
    f: impl FnOnce(&mut OidcEntry),
    g: impl FnOnce(&mut Config),
) -> (TestServer, Provider) {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let e = entry(&issuer, f);
    let s = TestServer::start_with(|c| {
        c.oidc = vec![e];
        g(c);
    })
    .await;
    let p = Provider::start(port, &callback_uri(&s), 1);
    (s, p)
}

fn callback_uri(s: &TestServer) -> String {
    s.url(&format!("/api/auth/oidc/{NAME}/callback"))
}

fn host_of(s: &TestServer) -> String {
    let u = Url::parse(&s.base).unwrap();
    format!("{}:{}", u.host_str().unwrap(), u.port().unwrap())
}

/// What the callback did: where it sent the browser, and the session
/// cookie it set (if any).
pub(crate) struct Outcome {
    pub(crate) location: String,
    pub(crate) session: Option<String>,
    callback: Url,
}

impl Outcome {
    fn error(&self) -> Option<String> {
        let u = Url::parse(&format!("http://x{}", self.location)).ok()?;
        u.query_pairs()
            .find(|(k, _)| k == "sso_error")
            .map(|(_, v)| v.to_string())
    }
}

/// Signs in as `login` at the provider through confab's start and
/// callback, as a browser does.
pub(crate) async fn sign_in(s: &TestServer, b: &mut Browser, login: &str) -> Outcome {
    let start = Url::parse(&s.url(&format!("/api/auth/oidc/{NAME}/start"))).unwrap();
    let hop = b.get(&start).await;
    assert_eq!(hop.status, 303, "{}", hop.body);
    let to_idp = hop.location.expect("start redirects");
    let q: Vec<(String, String)> = to_idp
        .query_pairs()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    let has = |k: &str, v: &str| q.iter().any(|(a, b)| a == k && (v.is_empty() || b == v));
    assert!(has("code_challenge_method", "S256"), "{to_idp}");
    assert!(
        has("code_challenge", "") && has("nonce", "") && has("state", ""),
        "{to_idp}"
    );
    assert!(
        has("response_type", "code") && has("client_id", CLIENT_ID),
        "{to_idp}"
    );
    let callback = b.follow_until(to_idp, &host_of(s), login).await;
    finish(s, b, callback).await
}

async fn finish(_s: &TestServer, b: &mut Browser, callback: Url) -> Outcome {
    let hop = b.get(&callback).await;
    assert_eq!(hop.status, 303, "{}", hop.body);
    Outcome {
        location: hop
            .location
            .map(|l| l.path().to_string() + &l.query().map(|q| format!("?{q}")).unwrap_or_default())
            .unwrap(),
        session: b.cookie(callback.as_str(), "confab_session"),
        callback,
    }
}

/// The signed-in session of a cookie: `/api/auth/me` gives the CSRF token.
pub(crate) async fn session_of(s: &TestServer, cookie: &str) -> (Session, Value) {
    let r = s
        .http
        .get(s.url("/api/auth/me"))
        .header("cookie", format!("confab_session={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let me: Value = r.json().await.unwrap();
    let sess = Session {
        cookie: cookie.into(),
        csrf: me["csrf_token"].as_str().unwrap().into(),
        user_id: me["user"]["id"].as_str().unwrap().into(),
        set_cookie: String::new(),
    };
    (sess, me["user"].clone())
}

async fn audit(s: &TestServer, admin: &Session) -> Vec<Value> {
    let r = s
        .get("/api/admin/audit?limit=200", Auth::Session(admin))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body["entries"]
        .as_array()
        .or_else(|| r.body["items"].as_array())
        .or_else(|| r.body.as_array())
        .cloned()
        .unwrap_or_else(|| panic!("audit list: {}", r.text))
}

#[tokio::test]
async fn code_flow_with_pkce_signs_in_and_links_by_sub() {
    let (s, _p) = setup(
        |e| {
            e.auto_create = true;
            e.allowed_domains = vec!["example.com".into()];
            e.admin_groups = vec!["confab-admins".into()];
        },
        |_| {},
    )
    .await;
    let admin = s.setup_admin("root").await;

    // The sign-in page learns the provider from /api/server.
    let info = s.get("/api/server", Auth::None).await;
    assert_eq!(info.body["sso"][0]["name"], NAME, "{}", info.text);
    assert_eq!(info.body["sso"][0]["display_name"], "Test Provider");
    assert_eq!(
        info.body["sso"][0]["start_url"],
        "/api/auth/oidc/test/start"
    );
    assert_eq!(info.body["local_passwords"], true);

    // First sign-in: an account is made (verified address at an allowed
    // domain) and linked; the session works like a password one.
    let mut b = Browser::new();
    let out = sign_in(&s, &mut b, "bob").await;
    assert_eq!(out.location, "/", "{:?}", out.error());
    let (bob, user) = session_of(&s, out.session.as_deref().unwrap()).await;
    assert_eq!(user["username"], "bob");
    assert_eq!(user["role"], "user");
    assert_eq!(user["email"], "bob@example.com");
    let ids = s.get("/api/auth/identities", Auth::Session(&bob)).await;
    assert_eq!(
        ids.body["identities"].as_array().unwrap().len(),
        1,
        "{}",
        ids.text
    );
    assert_eq!(ids.body["identities"][0]["provider"], NAME);
    assert_eq!(ids.body["has_password"], false);
    // The CSRF token of the session works for unsafe requests.
    let r = s
        .post("/api/auth/logout", Auth::Session(&bob), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);

    // Again, in a fresh browser: the same account (linked by sub).
    let mut b2 = Browser::new();
    let out = sign_in(&s, &mut b2, "bob").await;
    let (_, again) = session_of(&s, out.session.as_deref().unwrap()).await;
    assert_eq!(again["id"], user["id"]);

    // The admin group maps to the admin role.
    let out = sign_in(&s, &mut Browser::new(), "alice").await;
    let (_, alice) = session_of(&s, out.session.as_deref().unwrap()).await;
    assert_eq!(alice["role"], "admin");

    // Outside the allowed domains, or an unverified address: no account.
    let out = sign_in(&s, &mut Browser::new(), "carol").await;
    assert_eq!(
        out.error().as_deref(),
        Some("SSO_NOT_ALLOWED"),
        "{}",
        out.location
    );
    assert!(out.session.is_none());
    assert!(out.location.starts_with("/login?"));
    let out = sign_in(&s, &mut Browser::new(), "dave").await;
    assert_eq!(out.error().as_deref(), Some("SSO_NOT_ALLOWED"));

    // Audited: creation, sign-ins and refusals, never a code or a token.
    let entries = audit(&s, &admin).await;
    let text = serde_json::to_string(&entries).unwrap();
    let count = |action: &str, outcome: &str| {
        entries
            .iter()
            .filter(|e| e["action"] == action && e["outcome"] == outcome)
            .count()
    };
    assert_eq!(count("sso.create", "ok"), 2, "{text}");
    assert_eq!(count("sso.login", "ok"), 3, "{text}");
    assert_eq!(count("sso.login", "SSO_NOT_ALLOWED"), 2, "{text}");
    let code = out
        .callback
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.to_string())
        .unwrap();
    assert!(
        !text.contains(&code),
        "the authorization code is in the audit log"
    );
    assert!(!text.contains(CLIENT_SECRET));
}

#[tokio::test]
async fn refused_tokens_and_states_each_have_their_code() {
    let (s, p) = setup(|e| e.auto_create = true, |_| {}).await;

    for (mode, code) in [
        ("wrong_audience", "SSO_TOKEN_AUDIENCE"),
        ("expired", "SSO_TOKEN_EXPIRED"),
        ("wrong_nonce", "SSO_NONCE_MISMATCH"),
    ] {
        p.set_mode(mode).await;
        let out = sign_in(&s, &mut Browser::new(), "bob").await;
        assert_eq!(
            out.error().as_deref(),
            Some(code),
            "{mode}: {}",
            out.location
        );
        assert!(out.session.is_none(), "{mode} signed in");
    }
    p.set_mode("normal").await;

    // A callback replayed (same browser, same state): refused.
    let mut b = Browser::new();
    let out = sign_in(&s, &mut b, "bob").await;
    assert_eq!(out.location, "/");
    b.forget(&s.base, "confab_session");
    // The browser cookie was cleared by the callback; put it back as an
    // attacker replaying the whole request would.
    let st = out
        .callback
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.to_string())
        .unwrap();
    b.set_cookie(&s.base, "confab_sso", &st);
    let replay = finish(&s, &mut b, out.callback.clone()).await;
    assert_eq!(replay.error().as_deref(), Some("SSO_STATE_INVALID"));
    assert!(replay.session.is_none());

    // A callback in a browser that did not start the sign-in (no cookie
    // binding the state): refused, even with a fresh code.
    let mut victim = Browser::new();
    let mut attacker = Browser::new();
    let start = Url::parse(&s.url("/api/auth/oidc/test/start")).unwrap();
    let to_idp = attacker.get(&start).await.location.unwrap();
    let callback = attacker.follow_until(to_idp, &host_of(&s), "bob").await;
    let forged = finish(&s, &mut victim, callback).await;
    assert_eq!(forged.error().as_deref(), Some("SSO_STATE_INVALID"));

    // The response names another issuer (RFC 9207 mix-up): refused.
    let mut b = Browser::new();
    let to_idp = b.get(&start).await.location.unwrap();
    let callback = b.follow_until(to_idp, &host_of(&s), "bob").await;
    assert!(
        callback.query_pairs().any(|(k, _)| k == "iss"),
        "{callback}"
    );
    let mut mixed = callback.clone();
    let pairs: Vec<(String, String)> = callback
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "iss" {
                "https://evil.example".into()
            } else {
                v.to_string()
            };
            (k.to_string(), v)
        })
        .collect();
    mixed.query_pairs_mut().clear().extend_pairs(pairs);
    let out = finish(&s, &mut b, mixed).await;
    assert_eq!(out.error().as_deref(), Some("SSO_TOKEN_ISSUER"));

    // The provider refusing (the user cancelled): its own code.
    let mut b = Browser::new();
    let hop = b.get(&start).await;
    let st: String = hop
        .location
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.to_string())
        .unwrap();
    let cancelled = Url::parse(&format!(
        "{}?error=access_denied&state={st}",
        callback_uri(&s)
    ))
    .unwrap();
    let out = finish(&s, &mut b, cancelled).await;
    assert_eq!(out.error().as_deref(), Some("SSO_PROVIDER_REFUSED"));

    // An unknown provider.
    let r = s.get("/api/auth/oidc/nope/start", Auth::None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(
        r.header("location")
            .unwrap()
            .contains("SSO_UNKNOWN_PROVIDER")
    );
}

#[tokio::test]
async fn a_rotated_signing_key_is_fetched_from_the_jwks() {
    let (s, p) = setup(|e| e.auto_create = true, |_| {}).await;
    let out = sign_in(&s, &mut Browser::new(), "bob").await;
    assert_eq!(out.location, "/");
    let (_, first) = session_of(&s, out.session.as_deref().unwrap()).await;
    // The provider restarts with a new signing key (new kid) on the same
    // port; confab has only the old key cached.
    let port = p.port;
    p.stop();
    let _p2 = Provider::start(port, &callback_uri(&s), 2);
    let out = sign_in(&s, &mut Browser::new(), "bob").await;
    assert_eq!(out.location, "/", "{:?}", out.error());
    let (_, again) = session_of(&s, out.session.as_deref().unwrap()).await;
    assert_eq!(again["id"], first["id"]);
}

#[tokio::test]
async fn not_linked_without_auto_create_and_linking_from_settings() {
    let (s, _p) = setup(|_| {}, |_| {}).await;
    let admin = s.setup_admin("root").await;
    let out = sign_in(&s, &mut Browser::new(), "bob").await;
    assert_eq!(out.error().as_deref(), Some("SSO_NOT_LINKED"));

    // A local user links the identity from settings, then signs in with it.
    let carl = s.user(&admin, "carl").await;
    let mut b = Browser::new();
    b.set_cookie(&s.base, "confab_session", &carl.cookie);
    let r = s
        .post(
            &format!("/api/auth/oidc/{NAME}/link"),
            Auth::Session(&carl),
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let to_idp = Url::parse(r.body["redirect_url"].as_str().unwrap()).unwrap();
    let bound = r.header("set-cookie").unwrap();
    let st = bound
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("confab_sso=")
        .unwrap();
    b.set_cookie(&s.base, "confab_sso", st);
    let callback = b.follow_until(to_idp, &host_of(&s), "bob").await;
    let out = finish(&s, &mut b, callback).await;
    assert_eq!(out.location, "/settings/account?linked=1");
    let out = sign_in(&s, &mut Browser::new(), "bob").await;
    let (_, me) = session_of(&s, out.session.as_deref().unwrap()).await;
    assert_eq!(me["id"].as_str().unwrap(), carl.user_id);

    // Linking needs a browser session (CSRF-checked like every change).
    let r = s
        .post(
            &format!("/api/auth/oidc/{NAME}/link"),
            Auth::CookieOnly(&carl),
            json!({}),
        )
        .await;
    r.assert_error(403, "CSRF_INVALID");

    // The identity is already carl's: another account cannot link it.
    let dora = s.user(&admin, "dora").await;
    let r = s
        .post(
            &format!("/api/auth/oidc/{NAME}/link"),
            Auth::Session(&dora),
            json!({}),
        )
        .await;
    let mut b = Browser::new();
    let st = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("confab_sso=")
        .unwrap()
        .to_string();
    b.set_cookie(&s.base, "confab_sso", &st);
    let to_idp = Url::parse(r.body["redirect_url"].as_str().unwrap()).unwrap();
    let callback = b.follow_until(to_idp, &host_of(&s), "bob").await;
    let out = finish(&s, &mut b, callback).await;
    assert_eq!(
        out.location,
        "/settings/account?sso_error=SSO_ALREADY_LINKED"
    );

    // Unlink: another user's identity is not found; carl has a password,
    // so his only identity may go.
    let ids = s.get("/api/auth/identities", Auth::Session(&carl)).await;
    let id = ids.body["identities"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(ids.body["has_password"], true);
    let r = s
        .delete(&format!("/api/auth/identities/{id}"), Auth::Session(&dora))
        .await;
    r.assert_error(404, "NOT_FOUND");
    let r = s
        .delete(&format!("/api/auth/identities/{id}"), Auth::Session(&carl))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = s
        .delete(&format!("/api/auth/identities/{id}"), Auth::Session(&carl))
        .await;
    r.assert_error(404, "NOT_FOUND");
    let out = sign_in(&s, &mut Browser::new(), "bob").await;
    assert_eq!(out.error().as_deref(), Some("SSO_NOT_LINKED"));
    let entries = audit(&s, &admin).await;
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "sso.link" && e["outcome"] == "ok")
    );
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "sso.unlink" && e["outcome"] == "ok")
    );
}

#[tokio::test]
async fn the_last_way_to_sign_in_cannot_be_unlinked() {
    let (s, _p) = setup(|e| e.auto_create = true, |_| {}).await;
    let out = sign_in(&s, &mut Browser::new(), "bob").await;
    let (bob, _) = session_of(&s, out.session.as_deref().unwrap()).await;
    let ids = s.get("/api/auth/identities", Auth::Session(&bob)).await;
    let id = ids.body["identities"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s
        .delete(&format!("/api/auth/identities/{id}"), Auth::Session(&bob))
        .await;
    r.assert_error(409, "SSO_LAST_SIGN_IN");
    // An account made by single sign-on has no password to sign in with.
    let r = s
        .post(
            "/api/auth/login",
            Auth::None,
            json!({"username": "bob", "password": PASSWORD}),
        )
        .await;
    r.assert_error(401, "INVALID_CREDENTIALS");
}

#[tokio::test]
async fn local_passwords_off_refuses_the_password_form() {
    let (s, _p) = setup(|e| e.auto_create = true, |c| c.auth.local_passwords = false).await;
    let admin = s.setup_admin("root").await;
    let info = s.get("/api/server", Auth::None).await;
    assert_eq!(info.body["local_passwords"], false);
    let r = s
        .post(
            "/api/auth/login",
            Auth::None,
            json!({"username": "root", "password": PASSWORD}),
        )
        .await;
    r.assert_error(403, "LOCAL_PASSWORDS_DISABLED");
    let r = s
        .post(
            "/api/auth/token",
            Auth::None,
            json!({"username": "root", "password": PASSWORD}),
        )
        .await;
    r.assert_error(403, "LOCAL_PASSWORDS_DISABLED");
    let r = s
        .post(
            "/api/auth/register",
            Auth::None,
            json!({"username": "newbie", "password": PASSWORD}),
        )
        .await;
    r.assert_error(403, "LOCAL_PASSWORDS_DISABLED");
    // Single sign-on still works.
    let out = sign_in(&s, &mut Browser::new(), "bob").await;
    assert_eq!(out.location, "/");
    // The admin's session from setup still works.
    let r = s.get("/api/auth/me", Auth::Session(&admin)).await;
    assert_eq!(r.status, StatusCode::OK);
}
