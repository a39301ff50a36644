//! Quotas and usage through the real server: the message quota holds
//! exactly under 50 concurrent requests, token quotas and per-user
//! overrides, usage totals equal the sum of the stored messages' usage,
//! costs from the price table, CSV exports, and the audit trail.

use crate::common;
use crate::common_upstream;

use common::{Auth, Resp, Session, TestServer, chat};
use common_upstream::FakeUpstream;
use confab::config::{Config, Price};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const MODELS: &[&str] = &["oa", "oa+slow", "oa+error-midstream", "oa+500", "oa-cheap"];

async fn server(f: impl FnOnce(&mut Config)) -> (TestServer, FakeUpstream, Session) {
    common::chat_server(MODELS, f).await
}

/// Polls `/api/usage` until `ok` holds (charges land just after an answer
/// is announced as done).
async fn usage_until(s: &TestServer, who: &Session, ok: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        let r = s.get("/api/usage", Auth::Session(who)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        if ok(&r.body) {
            return r.body;
        }
        last = r.body;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("usage never settled: {last}");
}

fn secs_to_midnight() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    let next = (now.date() + time::Duration::days(1))
        .midnight()
        .assume_utc();
    (next - now).whole_seconds()
}

#[tokio::test]
async fn message_quota_is_exact_under_fifty_concurrent_requests() {
    let (s, _up, admin) = server(|c| c.quota.messages_per_day = Some(10)).await;
    // Conversations with titles of their own: no title requests, so the
    // tokens charged are exactly the answers'.
    let mut convs = Vec::new();
    for i in 0..50 {
        let c = s
            .post(
                "/api/conversations",
                Auth::Session(&admin),
                json!({"title": format!("c{i}")}),
            )
            .await;
        convs.push(c.body["id"].as_str().unwrap().to_string());
    }
    let s = Arc::new(s);
    let mut tasks = Vec::new();
    for (i, cid) in convs.into_iter().enumerate() {
        let (s, admin) = (s.clone(), admin.clone());
        tasks.push(tokio::spawn(async move {
            chat(
                &s,
                &admin,
                json!({"conversation_id": cid, "content": format!("question {i}"), "model": "oa+slow"}),
            )
            .await
        }));
    }
    let mut ok = 0;
    let mut tokens = 0;
    let mut refused = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        match r.status.as_u16() {
            200 => {
                ok += 1;
                tokens += r.body["usage"]["input_tokens"].as_u64().unwrap()
                    + r.body["usage"]["output_tokens"].as_u64().unwrap();
            }
            429 => refused.push(r),
            other => panic!("unexpected {other}: {}", r.text),
        }
    }
    assert_eq!(ok, 10, "exactly the quota is admitted");
    assert_eq!(refused.len(), 40);
    let r = &refused[0];
    r.assert_error(429, "QUOTA_EXCEEDED");
    let msg = r.body["message"].as_str().unwrap();
    assert!(
        msg.contains("message") && msg.contains("resets at"),
        "{msg}"
    );
    let retry: i64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (retry - secs_to_midnight()).abs() <= 5,
        "retry-after {retry}"
    );

    let u = usage_until(&s, &admin, |u| {
        u["quota"]["messages_used"] == 10 && u["totals"]["messages"] == 10
    })
    .await;
    assert_eq!(u["quota"]["messages_per_day"], 10);
    assert_eq!(u["quota"]["messages_remaining"], 0);
    assert_eq!(u["quota"]["running"], 0);
    assert_eq!(u["totals"]["messages"], 10);
    // Charged exactly the admitted answers' tokens.
    assert_eq!(u["totals"]["tokens"], tokens);
    assert_eq!(u["quota"]["tokens_used"], tokens);
    assert!(
        u["quota"]["resets_at"]
            .as_str()
            .unwrap()
            .ends_with("T00:00:00Z")
    );
    // Still refused afterwards.
    chat(&s, &admin, json!({"content": "one more", "model": "oa"}))
        .await
        .assert_error(429, "QUOTA_EXCEEDED");
}

#[tokio::test]
async fn token_quota_overrides_and_their_audit_trail() {
    let (s, _up, admin) = server(|c| c.quota.messages_per_day = Some(1000)).await;
    let bob = s.user(&admin, "bob").await;
    // Override: at most 10 tokens a day for bob.
    let r = s
        .patch(
            &format!("/api/admin/users/{}", bob.user_id),
            Auth::Session(&admin),
            json!({"quota": {"tokens_per_day": 10}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["quota"]["tokens_per_day"], 10);
    assert_eq!(r.body["quota"]["messages_per_day"], Value::Null);
    assert_eq!(r.body["effective_quota"]["tokens_per_day"], 10);
    assert_eq!(
        r.body["effective_quota"]["messages_per_day"], 1000,
        "server default"
    );
    assert_eq!(r.body["username"], "bob");
    let list = s.get("/api/admin/users", Auth::Session(&admin)).await;
    let row = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "bob")
        .unwrap()
        .clone();
    assert_eq!(row["quota"]["tokens_per_day"], 10);

    // A conversation with a title of its own (no title request).
    let c = s
        .post(
            "/api/conversations",
            Auth::Session(&bob),
            json!({"title": "mine"}),
        )
        .await;
    let cid = c.body["id"].as_str().unwrap().to_string();
    let r = chat(
        &s,
        &bob,
        json!({"conversation_id": cid, "content": "hello there", "model": "oa"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let used = r.body["usage"]["input_tokens"].as_u64().unwrap()
        + r.body["usage"]["output_tokens"].as_u64().unwrap();
    assert!(used > 10, "{used}");
    usage_until(&s, &bob, |u| u["quota"]["tokens_used"] == used).await;
    let r = chat(
        &s,
        &bob,
        json!({"conversation_id": cid, "content": "more", "model": "oa"}),
    )
    .await;
    r.assert_error(429, "QUOTA_EXCEEDED");
    assert!(
        r.body["message"].as_str().unwrap().contains("token"),
        "{}",
        r.text
    );
    // The admin (server default) is not limited by bob's override.
    assert_eq!(
        chat(&s, &admin, json!({"content": "hi", "model": "oa"}))
            .await
            .status,
        200
    );

    // null = back to the server default (no token limit).
    let r = s
        .patch(
            &format!("/api/admin/users/{}", bob.user_id),
            Auth::Session(&admin),
            json!({"quota": null}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["quota"], Value::Null);
    assert_eq!(r.body["effective_quota"]["tokens_per_day"], Value::Null);
    let r = chat(
        &s,
        &bob,
        json!({"conversation_id": cid, "content": "more", "model": "oa"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Leaving `quota` out changes nothing; bad values are refused.
    let r = s
        .patch(
            &format!("/api/admin/users/{}", bob.user_id),
            Auth::Session(&admin),
            json!({"role": "user"}),
        )
        .await;
    assert_eq!(r.body["quota"], Value::Null);
    for bad in [
        json!({"quota": {"messages_per_day": -1}}),
        json!({"quota": {"tokens": 5}}),
        json!({"quota": {"messages_per_day": 1e15}}),
    ] {
        s.patch(
            &format!("/api/admin/users/{}", bob.user_id),
            Auth::Session(&admin),
            bad,
        )
        .await
        .assert_error(400, "VALIDATION_FAILED");
    }
    // Users cannot change quotas.
    s.patch(
        &format!("/api/admin/users/{}", bob.user_id),
        Auth::Session(&bob),
        json!({"quota": null}),
    )
    .await
    .assert_error(403, "ADMIN_REQUIRED");

    // Every quota change is in the audit log, and the filters find them.
    let a = s
        .get(
            "/api/admin/audit?action=admin.user.quota",
            Auth::Session(&admin),
        )
        .await;
    let items = a.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{}", a.text);
    assert!(items.iter().all(|e| e["action"] == "admin.user.quota"));
    assert!(
        items[1]["target"]
            .as_str()
            .unwrap()
            .contains("tokens_per_day=10")
    );
    assert!(
        items[0]["target"]
            .as_str()
            .unwrap()
            .contains("server default")
    );
    let a = s
        .get(
            "/api/admin/audit?actor=bob&action=login",
            Auth::Session(&admin),
        )
        .await;
    let items = a.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", a.text);
    assert_eq!(items[0]["actor"], "bob");
    let a = s
        .get("/api/admin/audit?action=admin.*", Auth::Session(&admin))
        .await;
    assert!(a.body["items"].as_array().unwrap().len() >= 4);
    let today = time::OffsetDateTime::now_utc().date();
    let a = s
        .get(
            &format!(
                "/api/admin/audit?from={}&to={}",
                today - time::Duration::days(3),
                today - time::Duration::days(1)
            ),
            Auth::Session(&admin),
        )
        .await;
    assert_eq!(
        a.body["items"].as_array().unwrap().len(),
        0,
        "nothing before today"
    );
    let a = s
        .get(
            &format!("/api/admin/audit?from={today}"),
            Auth::Session(&admin),
        )
        .await;
    assert!(a.body["items"].as_array().unwrap().len() >= 5);
    s.get("/api/admin/audit?from=soon", Auth::Session(&admin))
        .await
        .assert_error(400, "VALIDATION_FAILED");
}

#[tokio::test]
async fn usage_totals_match_the_messages_and_export_as_csv() {
    let (s, _up, admin) = server(|c| {
        c.prices = vec![
            Price {
                provider: None,
                model: "oa*".into(),
                input_per_million: 2.5,
                output_per_million: 10.0,
            },
            Price {
                provider: Some("oa".into()),
                model: "oa-cheap".into(),
                input_per_million: 0.15,
                output_per_million: 0.6,
            },
        ];
    })
    .await;
    let c = s
        .post(
            "/api/conversations",
            Auth::Session(&admin),
            json!({"title": "counted"}),
        )
        .await;
    let cid = c.body["id"].as_str().unwrap().to_string();
    for (content, model) in [
        ("first question here", "oa"),
        ("a second one", "oa-cheap"),
        ("this fails midway", "oa+error-midstream"),
        ("this fails at once", "oa+500"),
        ("and a last one please", "oa"),
    ] {
        chat(
            &s,
            &admin,
            json!({"conversation_id": cid, "content": content, "model": model}),
        )
        .await;
    }
    // A stopped answer keeps what it produced, and is charged for it.
    let slow = s
        .http
        .post(s.url("/api/chat/stream"))
        .header("cookie", format!("confab_session={}", admin.cookie))
        .header("x-csrf-token", &admin.csrf)
        .json(&json!({"conversation_id": cid, "content": "long one", "model": "oa+slow"}))
        .send()
        .await
        .unwrap();
    let mut reader = common::SseReader::new(slow);
    let meta = reader.next().await.unwrap();
    let gid = meta.data["generation_id"].as_str().unwrap().to_string();
    while let Some(e) = reader.next().await {
        if e.event == "delta" {
            break;
        }
    }
    s.delete(&format!("/api/generations/{gid}"), Auth::Session(&admin))
        .await;
    reader.collect().await;

    // The stored messages: every assistant message that consumed tokens.
    let msgs = s
        .get(
            &format!("/api/conversations/{cid}/messages?limit=200"),
            Auth::Session(&admin),
        )
        .await;
    let mut want = (0u64, 0u64, 0u64, 0u64); // messages, input, output, cost nanos
    let mut statuses = Vec::new();
    for m in msgs.body["messages"].as_array().unwrap() {
        if m["role"] != "assistant" {
            continue;
        }
        statuses.push(m["status"].as_str().unwrap().to_string());
        let u = &m["usage"];
        let consumed = m["status"] == "complete"
            || !m["content"].as_str().unwrap().is_empty()
            || u["estimated"] == false;
        if !consumed {
            continue;
        }
        let (i, o) = (
            u["input_tokens"].as_u64().unwrap(),
            u["output_tokens"].as_u64().unwrap(),
        );
        let (pi, po) = if m["model"] == "oa-cheap" {
            (0.15, 0.6)
        } else {
            (2.5, 10.0)
        };
        want.0 += 1;
        want.1 += i;
        want.2 += o;
        want.3 += ((i as f64 * pi + o as f64 * po) * 1000.0).round() as u64;
    }
    statuses.sort();
    assert_eq!(
        statuses,
        [
            "complete",
            "complete",
            "complete",
            "error",
            "error",
            "interrupted"
        ]
    );
    assert_eq!(want.0, 5, "the answer that failed before any work is free");
    let u = usage_until(&s, &admin, |u| u["totals"]["messages"] == 5).await;
    let t = &u["totals"];
    assert_eq!(t["input_tokens"], want.1, "{u}");
    assert_eq!(t["output_tokens"], want.2);
    assert_eq!(t["tokens"], want.1 + want.2);
    let cost = t["cost"].as_f64().unwrap();
    assert!(
        (cost - want.3 as f64 / 1e9).abs() < 1e-12,
        "{cost} vs {}",
        want.3
    );
    // 30 days by default, today last, with the per-model split.
    let days = u["days"].as_array().unwrap();
    assert_eq!(days.len(), 30);
    assert_eq!(days[29]["messages"], 5);
    assert_eq!(days[0]["messages"], 0);
    let models = u["models"].as_array().unwrap();
    assert!(
        models
            .iter()
            .any(|m| m["model"] == "oa-cheap" && m["messages"] == 1)
    );
    assert_eq!(
        u["quota"]["messages_per_day"],
        Value::Null,
        "unlimited by default"
    );

    // CSV for the user: by ?format=csv or Accept.
    let r = s.get("/api/usage?format=csv", Auth::Session(&admin)).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/csv"));
    assert!(
        r.header("content-disposition")
            .unwrap()
            .contains("attachment")
    );
    let mut lines = r.text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "date,provider,model,messages,input_tokens,output_tokens,tokens,cost"
    );
    let rows: Vec<&str> = lines.collect();
    let csv_messages: u64 = rows
        .iter()
        .map(|l| l.split(',').nth(3).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(csv_messages, 5);
    let r = Resp::from(
        s.http
            .get(s.url("/api/usage"))
            .header("cookie", format!("confab_session={}", admin.cookie))
            .header("accept", "text/csv")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(r.text.starts_with("date,provider,model"));

    // Admin reports: by user, model and day, JSON and CSV.
    let bob = s.user(&admin, "bob").await;
    chat(
        &s,
        &bob,
        json!({"content": "hi from bob", "model": "oa-cheap"}),
    )
    .await;
    // Bob sees only his own usage (and his charge has landed).
    let b = usage_until(&s, &bob, |u| u["totals"]["messages"] == 1).await;
    assert_eq!(b["models"][0]["model"], "oa-cheap");
    let r = s
        .get("/api/admin/usage?group_by=user", Auth::Session(&admin))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let users = r.body["users"].as_array().unwrap();
    assert_eq!(users[0]["username"], "admin", "most tokens first");
    assert!(users.iter().any(|x| x["username"] == "bob"));
    let r = s
        .get("/api/admin/usage?group_by=model", Auth::Session(&admin))
        .await;
    assert!(r.body["models"].as_array().unwrap().len() >= 2);
    let r = s.get("/api/admin/usage", Auth::Session(&admin)).await;
    assert_eq!(r.body["group_by"], "day");
    let today = r.body["days"].as_array().unwrap().last().unwrap().clone();
    assert!(today["models"].as_array().unwrap().len() >= 2, "{today}");
    let r = s
        .get(
            "/api/admin/usage?group_by=user&format=csv",
            Auth::Session(&admin),
        )
        .await;
    assert!(
        r.text.starts_with("user_id,username,messages"),
        "{}",
        r.text
    );
    s.get("/api/admin/usage?group_by=weekday", Auth::Session(&admin))
        .await
        .assert_error(400, "VALIDATION_FAILED");
    s.get(
        "/api/usage?from=2020-01-01&to=2024-01-01",
        Auth::Session(&admin),
    )
    .await
    .assert_error(400, "VALIDATION_FAILED");
    s.get("/api/admin/usage", Auth::Session(&bob))
        .await
        .assert_error(403, "ADMIN_REQUIRED");
    s.get("/api/usage", Auth::None)
        .await
        .assert_error(401, "AUTH_REQUIRED");
}

#[tokio::test]
async fn title_requests_are_charged_too() {
    let (s, _up, admin) = server(|_| {}).await;
    let r = chat(
        &s,
        &admin,
        json!({"content": "name this chat", "model": "oa"}),
    )
    .await;
    assert_eq!(r.status, 200);
    let answer = r.body["usage"]["input_tokens"].as_u64().unwrap()
        + r.body["usage"]["output_tokens"].as_u64().unwrap();
    // The title is asked of the same model once the answer is done; the
    // two charges land in either order, so wait for both (the title's
    // tokens alone can exceed the answer's).
    let u = usage_until(&s, &admin, |u| {
        u["totals"]["tokens"].as_u64().unwrap() > answer
            && u["totals"]["messages"].as_u64().unwrap() >= 1
    })
    .await;
    assert_eq!(
        u["totals"]["messages"], 1,
        "a title is tokens, not a message"
    );
}

#[tokio::test]
async fn usage_survives_a_restart() {
    let (s, _up, admin) = server(|c| c.quota.messages_per_day = Some(2)).await;
    let c = s
        .post(
            "/api/conversations",
            Auth::Session(&admin),
            json!({"title": "t"}),
        )
        .await;
    let cid = c.body["id"].as_str().unwrap().to_string();
    chat(
        &s,
        &admin,
        json!({"conversation_id": cid, "content": "one", "model": "oa"}),
    )
    .await;
    usage_until(&s, &admin, |u| u["quota"]["messages_used"] == 1).await;
    let dir = s.stop().await;
    let (s, _up2, _) = {
        let up = FakeUpstream::start().await;
        let s = TestServer::start_in(dir, |c| c.quota.messages_per_day = Some(2)).await;
        (s, up, ())
    };
    let admin = s.login("admin", common::PASSWORD).await;
    let u = s.get("/api/usage", Auth::Session(&admin)).await;
    assert_eq!(u.body["quota"]["messages_used"], 1, "{}", u.text);
    assert_eq!(u.body["quota"]["messages_remaining"], 1);
}

#[tokio::test]
async fn token_quota_under_fifty_concurrent_requests_overshoots_only_by_running_answers() {
    // Each request reserves its estimated input (40 characters: 10 tokens)
    // until it is settled, so with 55 tokens a day at most 5 can be running
    // at once, however many arrive together; what they produce beyond the
    // estimate is the only way past the limit.
    const LIMIT: u64 = 55;
    let content = "abc ".repeat(10);
    let est = confab::chat::estimate_tokens(&content);
    assert_eq!(est, 10);
    let (s, up, admin) = server(|c| c.quota.tokens_per_day = Some(LIMIT)).await;
    // Slow enough that every request arrives while the first are running.
    up.set_token_delay(Duration::from_millis(300));
    let mut convs = Vec::new();
    for i in 0..50 {
        let c = s
            .post(
                "/api/conversations",
                Auth::Session(&admin),
                json!({"title": format!("c{i}")}),
            )
            .await;
        convs.push(c.body["id"].as_str().unwrap().to_string());
    }
    let s = Arc::new(s);
    let mut tasks = Vec::new();
    for cid in &convs {
        let (s, admin, cid, content) = (s.clone(), admin.clone(), cid.clone(), content.clone());
        tasks.push(tokio::spawn(async move {
            chat(
                &s,
                &admin,
                json!({"conversation_id": cid, "content": content, "model": "oa"}),
            )
            .await
        }));
    }
    let mut answered = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        match r.status.as_u16() {
            200 => answered.push(r),
            429 => {
                r.assert_error(429, "QUOTA_EXCEEDED");
                let msg = r.body["message"].as_str().unwrap();
                assert!(msg.contains("token") && msg.contains("resets at"), "{msg}");
            }
            other => panic!("unexpected {other}: {}", r.text),
        }
    }
    let n = answered.len() as u64;
    assert_eq!(n, LIMIT / est, "reservations never exceed the limit");
    // Charged exactly what the answers used.
    let per_answer: Vec<u64> = answered
        .iter()
        .map(|r| {
            r.body["usage"]["input_tokens"].as_u64().unwrap()
                + r.body["usage"]["output_tokens"].as_u64().unwrap()
        })
        .collect();
    let used: u64 = per_answer.iter().sum();
    let u = usage_until(&s, &admin, |u| {
        u["quota"]["running"] == 0
            && u["quota"]["tokens_used"] == used
            && u["totals"]["tokens"] == used
    })
    .await;
    assert_eq!(u["totals"]["tokens"], used);
    assert_eq!(u["totals"]["messages"], n);
    // The overshoot is at most what the running answers used beyond
    // their reservations.
    let beyond: u64 = per_answer.iter().map(|t| t.saturating_sub(est)).sum();
    assert!(
        used <= LIMIT + beyond,
        "used {used}, limit {LIMIT}, beyond {beyond}"
    );
    // Nothing more fits now that they have been charged.
    assert!(used + est > LIMIT);
    chat(
        &s,
        &admin,
        json!({"conversation_id": convs[0], "content": content, "model": "oa"}),
    )
    .await
    .assert_error(429, "QUOTA_EXCEEDED");
    assert_eq!(u["quota"]["tokens_remaining"], LIMIT.saturating_sub(used));
}

#[tokio::test]
async fn provider_changes_are_in_the_audit_log_and_the_filters_find_them() {
    let up = FakeUpstream::start().await;
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    let r = s
        .post(
            "/api/admin/providers",
            Auth::Session(&admin),
            json!({"kind": "openai", "name": "audited", "base_url": up.openai_base(), "api_key": "sk-test-key-0000"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = s
        .patch(
            "/api/admin/providers/audited",
            Auth::Session(&admin),
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = s
        .delete("/api/admin/providers/audited", Auth::Session(&admin))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    // A refused change is recorded with its outcome.
    s.delete("/api/admin/providers/audited", Auth::Session(&admin))
        .await
        .assert_error(404, "NOT_FOUND");

    let today = time::OffsetDateTime::now_utc().date();
    let r = s
        .get(
            &format!(
                "/api/admin/audit?action=admin.provider.*&actor=admin&from={today}&to={today}"
            ),
            Auth::Session(&admin),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let got: Vec<(String, String, String)> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["target"].as_str().unwrap().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = [
        ("admin.provider.delete", "audited", "NOT_FOUND"),
        ("admin.provider.delete", "audited", "ok"),
        ("admin.provider.update", "audited fields=enabled", "ok"),
        ("admin.provider.create", "audited kind=openai", "ok"),
    ];
    assert_eq!(got.len(), want.len(), "{}", r.text);
    for ((a, t, o), (wa, wt, wo)) in got.iter().zip(want) {
        assert_eq!((a.as_str(), o.as_str()), (wa, wo), "{}", r.text);
        assert!(t.starts_with(wt), "{t} vs {wt}");
    }
    assert!(!r.text.contains("sk-test-key-0000"), "no key in the log");
    // Another actor, or another day: none of them.
    let r = s
        .get(
            "/api/admin/audit?action=admin.provider.*&actor=bob",
            Auth::Session(&admin),
        )
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 0, "{}", r.text);
}
