//! `/metrics` through the real server: who may read it, that the output
//! parses as Prometheus text, and that counters move as things happen.

use crate::common;
use crate::common_upstream;

use common::{Auth, Resp, Session, TestServer};
use common_upstream::FakeUpstream;
use confab::config::{Config, Secret};
use prometheus_parse::{Scrape, Value as PValue};
use serde_json::json;
use std::time::Duration;

const TOKEN: &str = "scrape-token-0123456789";

async fn server(f: impl FnOnce(&mut Config)) -> (TestServer, FakeUpstream, Session) {
    common::chat_server(&["oa", "oa+500", "oa+slow"], f).await
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text parses")
}

/// The value of the sample `name` whose labels include `labels` (0 when
/// there is none yet).
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            PValue::Counter(v) | PValue::Gauge(v) | PValue::Untyped(v) => *v,
            PValue::Histogram(h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
            PValue::Summary(_) => 0.0,
        })
        .sum()
}

fn has(s: &Scrape, name: &str) -> bool {
    s.samples.iter().any(|x| x.metric == name)
}

/// Waits until no answer of `who` holds a quota reservation any more.
async fn settled(s: &TestServer, who: &Session) {
    for _ in 0..200 {
        let u = s.get("/api/usage", Auth::Session(who)).await;
        if u.body["quota"]["running"] == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("answers never settled");
}

async fn scrape(s: &TestServer, who: &Session) -> Scrape {
    let r = s.get("/metrics", Auth::Session(who)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    parse(&r.text)
}

#[tokio::test]
async fn only_admins_and_the_scraper_token_see_metrics() {
    let (s, _up, admin) = server(|c| c.metrics_token = Some(Secret(TOKEN.into()))).await;
    let bob = s.user(&admin, "bob").await;
    // Everyone else: the JSON 404, as if nothing were there.
    s.get("/metrics", Auth::None)
        .await
        .assert_error(404, "NOT_FOUND");
    s.get("/metrics", Auth::Session(&bob))
        .await
        .assert_error(404, "NOT_FOUND");
    s.get("/metrics", Auth::Bearer("scrape-token-wrong-000000"))
        .await
        .assert_error(404, "NOT_FOUND");
    let r = s.get("/metrics", Auth::Bearer(TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains("confab_build_info"));
    assert_eq!(s.get("/metrics", Auth::Session(&admin)).await.status, 200);
    // A non-admin API key cannot read it either.
    let key = s
        .post("/api/keys", Auth::Session(&bob), json!({"name": "k"}))
        .await;
    let k = key.body["key"].as_str().unwrap().to_string();
    s.get("/metrics", Auth::Bearer(&k))
        .await
        .assert_error(404, "NOT_FOUND");
}

#[tokio::test]
async fn counters_move_as_expected() {
    let (s, _up, admin) = server(|c| {
        c.quota.messages_per_day = Some(2);
        c.limits.anon_per_minute = 10;
        c.limits.anon_burst = 2;
    })
    .await;
    let before = scrape(&s, &admin).await;
    let route = [
        ("method", "GET"),
        ("route", "/api/conversations/:id"),
        ("status", "404"),
    ];
    let fake = "/api/conversations/00000000-0000-7000-8000-000000000000";
    for _ in 0..3 {
        s.get(fake, Auth::Session(&admin)).await;
    }
    // Answers: one complete, one failed at the provider.
    let c = s
        .post(
            "/api/chat/message",
            Auth::Session(&admin),
            json!({"content": "hello", "model": "oa"}),
        )
        .await;
    assert_eq!(c.status, 200, "{}", c.text);
    let input = c.body["usage"]["input_tokens"].as_f64().unwrap();
    let output = c.body["usage"]["output_tokens"].as_f64().unwrap();
    settled(&s, &admin).await;
    // Failed before the provider did any work: not charged.
    s.post(
        "/api/chat/message",
        Auth::Session(&admin),
        json!({"content": "x", "model": "oa+500"}),
    )
    .await
    .assert_error(502, "PROVIDER_ERROR");
    settled(&s, &admin).await;
    // A streamed answer counts as an open stream while it runs.
    let stream = s
        .http
        .post(s.url("/api/chat/stream"))
        .header("cookie", format!("confab_session={}", admin.cookie))
        .header("x-csrf-token", &admin.csrf)
        .json(&json!({"content": "slowly", "model": "oa+slow"}))
        .send()
        .await
        .unwrap();
    let mut reader = common::SseReader::new(stream);
    reader.next().await.unwrap();
    let during = scrape(&s, &admin).await;
    assert_eq!(value(&during, "confab_sse_streams_active", &[]), 1.0);
    assert_eq!(value(&during, "confab_generations_running", &[]), 1.0);
    reader.collect().await;
    settled(&s, &admin).await;
    // Quota: two answers were charged; the third of the day is refused.
    s.post(
        "/api/chat/message",
        Auth::Session(&admin),
        json!({"content": "y", "model": "oa"}),
    )
    .await
    .assert_error(429, "QUOTA_EXCEEDED");
    // Rate limit: anonymous requests past the burst.
    for _ in 0..3 {
        s.get("/api/server", Auth::None).await;
    }
    // Failed sign-in.
    s.post(
        "/api/auth/login",
        Auth::None,
        json!({"username": "admin", "password": "nope-nope-nope"}),
    )
    .await;

    // Charges and the streams gauge settle right after the answers end.
    let mut after = scrape(&s, &admin).await;
    for _ in 0..100 {
        if value(&after, "confab_sse_streams_active", &[]) == 0.0
            && value(
                &after,
                "confab_generations_total",
                &[("outcome", "complete")],
            ) >= 2.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        after = scrape(&s, &admin).await;
    }
    let d = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    let routes: std::collections::BTreeSet<String> = after
        .samples
        .iter()
        .filter_map(|x| x.labels.get("route").map(str::to_string))
        .collect();
    assert_eq!(
        d("confab_http_requests_total", &route),
        3.0,
        "{routes:?}: by route template, not raw path"
    );
    assert!(
        !after.samples.iter().any(|x| x
            .labels
            .get("route")
            .is_some_and(|r| r.contains("00000000"))),
        "raw paths never become labels"
    );
    // Latency histograms: one observation per request, by route template
    // (the parser folds the buckets into one sample; its count is +Inf's).
    assert_eq!(
        d(
            "confab_http_request_duration_seconds",
            &[("method", "GET"), ("route", "/api/conversations/:id")]
        ),
        3.0
    );
    assert_eq!(
        d(
            "confab_http_request_duration_seconds_count",
            &[("method", "GET"), ("route", "/api/conversations/:id")]
        ),
        3.0
    );
    let gens = |outcome| {
        d(
            "confab_generations_total",
            &[("provider", "oa"), ("outcome", outcome)],
        )
    };
    assert_eq!(gens("complete"), 2.0);
    assert_eq!(gens("failed"), 1.0);
    assert_eq!(
        d(
            "confab_provider_errors_total",
            &[("provider", "oa"), ("code", "PROVIDER_ERROR")]
        ),
        1.0
    );
    assert_eq!(
        d(
            "confab_tokens_total",
            &[("model", "oa"), ("direction", "input"), ("kind", "answer")]
        ),
        input
    );
    assert_eq!(
        d(
            "confab_tokens_total",
            &[("model", "oa"), ("direction", "output"), ("kind", "answer")]
        ),
        output
    );
    assert_eq!(
        d("confab_quota_rejections_total", &[("limit", "messages")]),
        1.0
    );
    assert_eq!(d("confab_rate_limited_total", &[("limiter", "anon")]), 1.0);
    assert_eq!(d("confab_login_failures_total", &[]), 1.0);
    assert_eq!(value(&after, "confab_sse_streams_active", &[]), 0.0);
    // First text arrived for the complete and the streamed answer, not for
    // the one that failed at once.
    assert_eq!(
        d(
            "confab_time_to_first_token_seconds_count",
            &[("provider", "oa")]
        ),
        2.0
    );
    assert!(
        d(
            "confab_time_to_first_token_seconds_sum",
            &[("provider", "oa")]
        ) > 0.0
    );
    // Every answer and charge committed to the store.
    assert!(d("confab_store_commit_duration_seconds_count", &[]) >= 3.0);
    assert!(d("confab_store_commit_duration_seconds", &[]) >= 3.0);
    for gauge in [
        "confab_search_index_lag",
        "confab_search_documents",
        "confab_store_size_bytes",
        "confab_process_resident_memory_bytes",
        "confab_rate_limiter_keys",
    ] {
        assert!(has(&after, gauge), "{gauge} missing");
    }
    assert!(value(&after, "confab_store_size_bytes", &[]) > 0.0);
    assert!(value(&after, "confab_process_resident_memory_bytes", &[]) > 1e6);
}

#[tokio::test]
async fn separate_metrics_listener() {
    let (s, _up, _admin) = server(|_| {}).await;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(confab::http::metrics::serve_metrics(l, s.state().clone()));
    let r = Resp::from(
        reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    parse(&r.text);
    let r = Resp::from(
        reqwest::get(format!("http://{addr}/api/server"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 404, "only /metrics lives there");

    // With a token configured, the separate listener wants it too.
    let (t, _up, _admin) = server(|c| c.metrics_token = Some(Secret(TOKEN.into()))).await;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(confab::http::metrics::serve_metrics(l, t.state().clone()));
    let client = reqwest::Client::new();
    let r = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = client
        .get(format!("http://{addr}/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
