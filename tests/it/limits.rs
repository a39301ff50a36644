//! Rate limits through the real server: each limiter trips at its bound,
//! says when to come back (`Retry-After`, `RateLimit-*`) and recovers after
//! the window; `X-Forwarded-For` counts only from trusted proxies; limiter
//! memory stays bounded under many addresses.

use crate::common;
use crate::common_upstream;

use common::{Auth, Resp, Session, TestServer, chat};
use common_upstream::FakeUpstream;
use confab::config::Config;
use serde_json::{Value, json};
use std::net::IpAddr;
use std::time::Duration;

/// 600 per minute: one request back every 100 ms.
const FAST: u32 = 600;
/// One back per second, for tests whose requests take a while themselves
/// (argon2 hashing, answers).
const PER_SEC: u32 = 60;

fn header_u64(r: &Resp, name: &str) -> u64 {
    r.header(name)
        .unwrap_or_else(|| panic!("no {name} header: {:?}", r.headers))
        .parse()
        .unwrap()
}

async fn get_with(s: &TestServer, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut rb = s.http.get(s.url(path));
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    Resp::from(rb.send().await.unwrap()).await
}

/// A server with an OpenAI-compatible provider "oa" on the fake upstream.
async fn chat_server(f: impl FnOnce(&mut Config)) -> (TestServer, FakeUpstream, Session) {
    common::chat_server(&["oa", "oa+slow"], f).await
}

#[tokio::test]
async fn anonymous_limit_trips_at_its_bound_and_recovers() {
    let s = TestServer::start_with(|c| {
        c.limits.anon_per_minute = FAST;
        c.limits.anon_burst = 3;
    })
    .await;
    for left in [2, 1, 0] {
        let r = s.get("/api/server", Auth::None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(header_u64(&r, "ratelimit-limit"), 3);
        assert_eq!(header_u64(&r, "ratelimit-remaining"), left);
        assert!(header_u64(&r, "ratelimit-reset") <= 1);
    }
    let r = s.get("/api/server", Auth::None).await;
    r.assert_error(429, "RATE_LIMITED");
    assert_eq!(
        header_u64(&r, "retry-after"),
        1,
        "the next slot is 100 ms away"
    );
    assert_eq!(header_u64(&r, "ratelimit-remaining"), 0);
    // Unknown API paths count too (an attacker cannot probe for free).
    s.get("/api/nothing-here", Auth::None)
        .await
        .assert_error(429, "RATE_LIMITED");
    // Static files and /health are not limited.
    assert_eq!(s.get("/health", Auth::None).await.status, 200);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(s.get("/api/server", Auth::None).await.status, 200);

    // Retry-After is the real wait: 10 per minute refills one every 6 s.
    let slow = TestServer::start_with(|c| {
        c.limits.anon_per_minute = 10;
        c.limits.anon_burst = 1;
    })
    .await;
    assert_eq!(slow.get("/api/server", Auth::None).await.status, 200);
    let r = slow.get("/api/server", Auth::None).await;
    r.assert_error(429, "RATE_LIMITED");
    let wait = header_u64(&r, "retry-after");
    assert!((5..=6).contains(&wait), "{wait}");
    assert_eq!(header_u64(&r, "ratelimit-reset"), wait);
}

#[tokio::test]
async fn auth_routes_have_their_own_stricter_limit() {
    let s = TestServer::start_with(|c| {
        c.auth.login_per_ip_per_minute = PER_SEC;
        c.auth.login_burst = 3;
        c.limits.anon_per_minute = FAST;
        c.limits.anon_burst = 100;
    })
    .await;
    // Only failures count: a successful setup is free.
    let admin = s.setup_admin("admin").await;
    for _ in 0..2 {
        s.post(
            "/api/auth/login",
            Auth::None,
            json!({"username": "admin", "password": "wrong-password"}),
        )
        .await
        .assert_error(401, "INVALID_CREDENTIALS");
    }
    // A failed registration (no invite) is the third failure.
    s.post(
        "/api/auth/register",
        Auth::None,
        json!({"username": "mallory", "password": common::PASSWORD}),
    )
    .await
    .assert_error(403, "INVALID_INVITE");
    let r = s
        .post(
            "/api/auth/token",
            Auth::None,
            json!({"username": "admin", "password": common::PASSWORD}),
        )
        .await;
    r.assert_error(429, "RATE_LIMITED");
    assert_eq!(header_u64(&r, "retry-after"), 1);
    assert_eq!(header_u64(&r, "ratelimit-limit"), 3);
    // Registration and token refresh share the same per-IP budget.
    for path in ["/api/auth/register", "/api/auth/refresh"] {
        let r = s
            .post(
                path,
                Auth::None,
                json!({"username": "mallory", "password": common::PASSWORD, "refresh_token": "x"}),
            )
            .await;
        r.assert_error(429, "RATE_LIMITED");
        assert_eq!(header_u64(&r, "ratelimit-limit"), 3, "{path}");
    }
    // Counted once, by one limiter: anonymous reads are unaffected, and so
    // is the signed-in admin.
    assert_eq!(s.get("/api/server", Auth::None).await.status, 200);
    assert_eq!(
        s.get("/api/auth/me", Auth::Session(&admin)).await.status,
        200
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = s
        .post(
            "/api/auth/token",
            Auth::None,
            json!({"username": "admin", "password": common::PASSWORD}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Turning the request limits off keeps sign-in throttling.
    let off = TestServer::start_with(|c| {
        c.limits.enabled = false;
        c.auth.login_per_ip_per_minute = 10;
        c.auth.login_burst = 1;
    })
    .await;
    off.setup_admin("admin").await;
    for status in [401, 429] {
        let r = off
            .post(
                "/api/auth/login",
                Auth::None,
                json!({"username": "admin", "password": "wrong-password"}),
            )
            .await;
        assert_eq!(r.status.as_u16(), status, "{}", r.text);
    }
    let r = off.get("/api/server", Auth::None).await;
    assert_eq!(r.status, 200);
    assert!(r.header("ratelimit-limit").is_none(), "limits are off");
}

#[tokio::test]
async fn api_limit_is_per_user() {
    // One request back per second: the five below must fit in that, even on
    // a busy machine (at FAST, a 100 ms stall let a fifth one through).
    let s = TestServer::start_with(|c| {
        c.limits.api_per_minute = PER_SEC;
        c.limits.api_burst = 4;
    })
    .await;
    let admin = s.setup_admin("admin").await;
    let bob = s.user(&admin, "bob").await;
    for _ in 0..4 {
        assert_eq!(
            s.get("/api/conversations", Auth::Session(&bob))
                .await
                .status,
            200
        );
    }
    let r = s.get("/api/conversations", Auth::Session(&bob)).await;
    r.assert_error(429, "RATE_LIMITED");
    assert_eq!(header_u64(&r, "ratelimit-limit"), 4);
    // Another user (same address) has their own budget.
    let r = s.get("/api/conversations", Auth::Session(&admin)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        s.get("/api/conversations", Auth::Session(&bob))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn chat_limit_and_concurrent_answers() {
    let (s, _up, admin) = chat_server(|c| {
        c.limits.chat_per_minute = PER_SEC;
        c.limits.chat_burst = 2;
    })
    .await;
    for left in [1, 0] {
        let r = chat(&s, &admin, json!({"content": "hello", "model": "oa"})).await;
        assert_eq!(r.status, 200, "{}", r.text);
        // The chat limiter's numbers, not the general API limiter's.
        assert_eq!(header_u64(&r, "ratelimit-limit"), 2);
        assert_eq!(header_u64(&r, "ratelimit-remaining"), left);
    }
    let r = chat(&s, &admin, json!({"content": "hello", "model": "oa"})).await;
    r.assert_error(429, "RATE_LIMITED");
    assert_eq!(header_u64(&r, "retry-after"), 1);
    assert!(r.body["message"].as_str().unwrap().contains("answers"));
    // Other API calls still work.
    assert_eq!(
        s.get("/api/conversations", Auth::Session(&admin))
            .await
            .status,
        200
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = chat(&s, &admin, json!({"content": "hello", "model": "oa"})).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // At most one answer at a time.
    let (s, _up, admin) = chat_server(|c| c.limits.max_concurrent_generations = 1).await;
    let slow = s
        .http
        .post(s.url("/api/chat/stream"))
        .header("cookie", format!("confab_session={}", admin.cookie))
        .header("x-csrf-token", &admin.csrf)
        .json(&json!({"content": "take your time", "model": "oa+slow"}))
        .send()
        .await
        .unwrap();
    assert_eq!(slow.status(), 200);
    let r = chat(&s, &admin, json!({"content": "me too", "model": "oa"})).await;
    r.assert_error(429, "RATE_LIMITED");
    assert!(
        r.body["message"].as_str().unwrap().contains("running"),
        "{}",
        r.text
    );
    assert_eq!(header_u64(&r, "retry-after"), 1);
    // Once it has finished, the next one may start.
    let events = common::SseReader::new(slow).collect().await;
    assert_eq!(events.last().unwrap().event, "done");
    let mut ok = false;
    for _ in 0..50 {
        let r = chat(&s, &admin, json!({"content": "now?", "model": "oa"})).await;
        if r.status == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "the slot is released when the answer ends");
}

#[tokio::test]
async fn forwarded_for_only_counts_from_trusted_proxies() {
    // No trusted proxies: a spoofed header changes nothing.
    let s = TestServer::start_with(|c| {
        c.limits.anon_per_minute = 10;
        c.limits.anon_burst = 2;
    })
    .await;
    for ip in ["198.51.100.1", "198.51.100.2"] {
        let r = get_with(&s, "/api/server", &[("x-forwarded-for", ip)]).await;
        assert_eq!(r.status, 200);
    }
    get_with(&s, "/api/server", &[("x-forwarded-for", "198.51.100.3")])
        .await
        .assert_error(429, "RATE_LIMITED");

    // Behind a trusted proxy (127.0.0.1): the right-most untrusted hop.
    let s = TestServer::start_with(|c| {
        c.trusted_proxies = vec!["127.0.0.0/8".into()];
        c.limits.anon_per_minute = 10;
        c.limits.anon_burst = 2;
    })
    .await;
    // The client forged "6.6.6.6"; the proxy appended the real address.
    for _ in 0..2 {
        let r = get_with(
            &s,
            "/api/server",
            &[("x-forwarded-for", "6.6.6.6, 198.51.100.1")],
        )
        .await;
        assert_eq!(r.status, 200);
    }
    get_with(
        &s,
        "/api/server",
        &[("x-forwarded-for", "7.7.7.7, 198.51.100.1")],
    )
    .await
    .assert_error(429, "RATE_LIMITED");
    // Another client behind the same proxy is not affected.
    let r = get_with(&s, "/api/server", &[("x-forwarded-for", "198.51.100.2")]).await;
    assert_eq!(r.status, 200);
    // The resolved address is what sessions and the audit log record.
    let admin = {
        let r = s
            .http
            .post(s.url("/api/setup"))
            .header("x-forwarded-for", "203.0.113.77")
            .json(&json!({"token": s.setup_token(), "username": "admin", "password": common::PASSWORD}))
            .send()
            .await
            .unwrap();
        Session::from_resp(&Resp::from(r).await)
    };
    let sessions = s.get("/api/auth/sessions", Auth::Session(&admin)).await;
    assert_eq!(
        sessions.body["items"][0]["ip"], "203.0.113.77",
        "{}",
        sessions.text
    );
    let audit = s.get("/api/admin/audit", Auth::Session(&admin)).await;
    assert_eq!(
        audit.body["items"][0]["ip"], "203.0.113.77",
        "{}",
        audit.text
    );
}

#[tokio::test]
async fn limiter_memory_stays_bounded_under_many_addresses() {
    // 100,000 distinct addresses against the server's own anonymous
    // limiter (refilling every 100 µs, so a key is stale almost at once).
    let s = TestServer::start_with(|c| {
        c.limits.anon_per_minute = 600_000;
        c.limits.anon_burst = 1;
        c.limits.max_tracked_keys = 10_000;
    })
    .await;
    let limiter = &s.state().limits.rate.anon;
    let mut most = 0;
    for i in 0..100_000u32 {
        let ip = IpAddr::from((0x0a00_0000u32 + i).to_be_bytes());
        assert!(limiter.check_local(&ip).allowed);
        most = most.max(limiter.len());
    }
    // Past max_tracked_keys the limiter prunes itself between maintenance
    // runs (checked every 1024 requests), so it never held all 100,000.
    assert!(most <= 12_000, "tracked keys peaked at {most}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.state().limits.prune();
    assert_eq!(limiter.len(), 0, "stale keys are dropped");
    // Through HTTP as well: each distinct forwarded address is its own key.
    // A slow refill (one token per 10 s, burst 5) keeps every key live for
    // the whole test, so neither the maintenance task nor an explicit prune
    // may drop one: pruning only forgets keys that are back to a full bucket.
    let t = TestServer::start_with(|c| {
        c.trusted_proxies = vec!["127.0.0.1".into()];
        c.limits.anon_per_minute = 6;
        c.limits.anon_burst = 5;
    })
    .await;
    for i in 0..200u32 {
        let ip = format!("198.18.{}.{}", i / 250, i % 250);
        let r = get_with(&t, "/api/server", &[("x-forwarded-for", &ip)]).await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(t.state().limits.rate.anon.len(), 200);
    t.state().limits.prune();
    assert_eq!(
        t.state().limits.rate.anon.len(),
        200,
        "keys with spent tokens survive a prune"
    );
}

#[tokio::test]
async fn config_changes_of_limits_are_audited_at_start_up() {
    let entries = |r: &Resp| -> Vec<Value> { r.body["items"].as_array().unwrap().clone() };
    let s = TestServer::start_with(|c| c.quota.messages_per_day = Some(50)).await;
    let admin = s.setup_admin("admin").await;
    let q = "/api/admin/audit?action=config.limits";
    let r = s.get(q, Auth::Session(&admin)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let first = entries(&r);
    assert_eq!(first.len(), 1, "{}", r.text);
    assert_eq!(first[0]["actor"], "config");
    let target = first[0]["target"].as_str().unwrap();
    assert!(target.starts_with("in force | rate limits on;"), "{target}");
    assert!(target.contains("quota messages/day 50 tokens/day unlimited"));

    // The same settings again: nothing new.
    let dir = s.stop().await;
    let s = TestServer::start_in(dir, |c| c.quota.messages_per_day = Some(50)).await;
    let admin = s.login("admin", common::PASSWORD).await;
    assert_eq!(entries(&s.get(q, Auth::Session(&admin)).await).len(), 1);

    // Changed limits, quota and prices: one entry naming what changed.
    let dir = s.stop().await;
    let s = TestServer::start_in(dir, |c| {
        c.quota.messages_per_day = Some(20);
        c.limits.api_per_minute = 77;
        c.prices = vec![confab::config::Price {
            provider: None,
            model: "gpt-4o*".into(),
            input_per_million: 2.5,
            output_per_million: 10.0,
        }];
    })
    .await;
    let admin = s.login("admin", common::PASSWORD).await;
    let now = entries(&s.get(q, Auth::Session(&admin)).await);
    assert_eq!(now.len(), 2);
    let target = now[0]["target"].as_str().unwrap();
    assert!(
        target.starts_with("changed: api, quota, prices | "),
        "{target}"
    );
    assert!(target.contains("api 77/min burst"), "{target}");
    assert!(target.contains("prices gpt-4o*=2.5/10"), "{target}");
    // The actor filter finds them as well.
    let by_actor = s
        .get("/api/admin/audit?actor=config", Auth::Session(&admin))
        .await;
    assert_eq!(entries(&by_actor).len(), 2, "{}", by_actor.text);
}
