//! Several confab instances on one PostgreSQL database (the test cluster of
//! `common::pg`), driven the way a round-robin load balancer would: each
//! request may land on any instance. Every instance is a server of its own
//! (its own `AppState`, data directory and search index); they share only
//! the database and the key files an operator copies to each.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{self, Auth, PASSWORD, Session, SseReader, TestServer, pg, text_of};
use crate::common_upstream::FakeUpstream;
use confab::config::{Config, RegistrationMode, StoreUrl};
use confab::store::cluster::ClusterStore;

/// What an operator copies from the first instance to the others.
const KEY_FILES: [&str; 3] = ["jwt.key", "device.key", "provider.key"];
/// A short lease, so a dead instance is noticed quickly.
const LEASE_SECS: u64 = 4;
const SLOW: &str = "fake-model+slow";

struct Trio {
    s: Vec<TestServer>,
    up: FakeUpstream,
}

fn config(url: &str, f: fn(&mut Config)) -> impl FnOnce(&mut Config) + use<> {
    let url = url.to_string();
    move |c| {
        c.store = Some(StoreUrl(url));
        c.cluster_lease_secs = LEASE_SECS;
        c.registration = RegistrationMode::Open;
        f(c)
    }
}

/// A new data directory holding the first instance's keys.
fn dir_with_keys_of(first: &TestServer) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for k in KEY_FILES {
        std::fs::copy(first.dir.path().join(k), dir.path().join(k)).unwrap();
    }
    dir
}

/// `n` instances on a new database, each with the fake upstream's models.
async fn instances(n: usize, f: fn(&mut Config)) -> Trio {
    let url = pg::fresh_url().await;
    let up = FakeUpstream::start().await;
    let first = TestServer::start_with(config(&url, f)).await;
    let mut s = vec![first];
    for _ in 1..n {
        let dir = dir_with_keys_of(&s[0]);
        s.push(TestServer::start_in(dir, config(&url, f)).await);
    }
    for x in &s {
        up.register_openai(x.state(), &["fake-model", SLOW, "gpt-4o"]);
    }
    Trio { s, up }
}

async fn open_stream(s: &TestServer, who: &Session, body: Value) -> SseReader {
    let r = s
        .http
        .post(s.url("/api/chat/stream"))
        .header("cookie", format!("confab_session={}", who.cookie))
        .header("x-csrf-token", &who.csrf)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    SseReader::new(r)
}

/// The events of generation `gid` on `s` after `last_event_id`.
async fn follow(s: &TestServer, who: &Session, gid: &str, last: Option<u64>) -> Vec<common::Sse> {
    let mut rb = s
        .http
        .get(s.url(&format!("/api/generations/{gid}/events")))
        .header("cookie", format!("confab_session={}", who.cookie));
    if let Some(id) = last {
        rb = rb.header("last-event-id", id.to_string());
    }
    let r = rb.send().await.unwrap();
    assert_eq!(r.status(), 200, "following {gid}");
    SseReader::new(r).collect().await
}

async fn message(s: &TestServer, who: &Session, cid: &str, i: usize) -> Value {
    let r = s
        .get(&format!("/api/conversations/{cid}"), Auth::Session(who))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["messages"][i].clone()
}

/// Setup with the token one instance printed, on another; then one account
/// registered, signed in and used on three different instances, with a
/// session, a JWT and its refresh, and an API key.
#[tokio::test]
async fn accounts_and_credentials_work_on_every_instance() {
    let t = instances(3, |_| {}).await;
    let (a, b, c) = (&t.s[0], &t.s[1], &t.s[2]);
    let a_token = a.setup_token();
    // Any instance's link works anywhere, once.
    let r = c
        .post(
            "/api/setup",
            Auth::None,
            json!({"token": b.setup_token(), "username": "admin", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    for s in &t.s {
        let r = s.get("/api/setup", Auth::None).await;
        assert_eq!(r.body["required"], false, "setup is done everywhere");
    }
    let r = a
        .post(
            "/api/setup",
            Auth::None,
            json!({"token": a_token, "username": "admin2", "password": PASSWORD}),
        )
        .await;
    r.assert_error(403, "FORBIDDEN");

    let r = a
        .post(
            "/api/auth/register",
            Auth::None,
            json!({"username": "bob", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let bob = b.login("bob", PASSWORD).await;
    let me = c.get("/api/auth/me", Auth::Session(&bob)).await;
    assert_eq!(me.status, 200, "a session from b works on c: {}", me.text);
    assert_eq!(me.body["user"]["username"], "bob");
    // CSRF too: an unsafe request with b's session and token on a.
    let r = a
        .post("/api/keys", Auth::Session(&bob), json!({"name": "laptop"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let key = r.body["key"].as_str().unwrap().to_string();
    let r = c.get("/api/conversations", Auth::Bearer(&key)).await;
    assert_eq!(r.status, 200, "an API key from a works on c: {}", r.text);

    let r = a
        .post(
            "/api/auth/token",
            Auth::None,
            json!({"username": "bob", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let access = r.body["access_token"].as_str().unwrap().to_string();
    let refresh = r.body["refresh_token"].as_str().unwrap().to_string();
    let r = b.get("/api/auth/me", Auth::Bearer(&access)).await;
    assert_eq!(r.status, 200, "a JWT signed by a verifies on b: {}", r.text);
    let r = c
        .post(
            "/api/auth/refresh",
            Auth::None,
            json!({"refresh_token": refresh}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Spent on c, refused on a.
    let r = a
        .post(
            "/api/auth/refresh",
            Auth::None,
            json!({"refresh_token": refresh}),
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text);

    // Signing out on one instance ends the session everywhere.
    let r = b
        .post("/api/auth/logout", Auth::Session(&bob), json!({}))
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    let r = c.get("/api/auth/me", Auth::Session(&bob)).await;
    assert_eq!(r.status, 401, "{}", r.text);
}

/// An answer streaming on one instance is read, resumed and stopped from
/// the others.
#[tokio::test]
async fn an_answer_is_followed_read_and_stopped_from_other_instances() {
    let t = instances(3, |_| {}).await;
    let admin = t.s[0].setup_admin("admin").await;
    let bob = t.s[1].user(&admin, "bob").await;
    let (a, b, c) = (&t.s[0], &t.s[1], &t.s[2]);

    // Started on c; the client reads the first events there, then its
    // connection drops and it resumes on a.
    let mut reader = open_stream(c, &bob, json!({"content": "go", "model": SLOW})).await;
    let meta = reader.next().await.unwrap();
    assert_eq!(meta.event, "meta");
    let gid = meta.data["generation_id"].as_str().unwrap().to_string();
    let cid = meta.data["conversation_id"].as_str().unwrap().to_string();
    let mut seen = vec![meta.clone()];
    for _ in 0..3 {
        seen.push(reader.next().await.unwrap());
    }
    drop(reader);
    let last = seen.last().unwrap().id.unwrap();
    let rest = follow(a, &bob, &gid, Some(last)).await;
    assert_eq!(
        rest[0].id,
        Some(last + 1),
        "resumes right after the last id seen"
    );
    assert_eq!(rest.last().unwrap().event, "done");
    let mut all = seen.clone();
    all.extend(rest);
    let reply = t.up.reply_for(SLOW);
    assert_eq!(text_of(&all), reply, "nothing lost, nothing twice");
    // A full replay from b, after the end, is the same stream.
    let replay = follow(b, &bob, &gid, None).await;
    assert_eq!(replay.len(), all.len());
    assert_eq!(text_of(&replay), reply);
    let m = message(b, &bob, &cid, 1).await;
    assert_eq!(m["status"], "complete");
    assert_eq!(m["content"], reply.as_str());

    // Read while it streams: b shows the live text and where to follow
    // from, and following from there appends exactly the rest.
    let mut reader = open_stream(
        c,
        &bob,
        json!({"content": "again", "model": SLOW, "conversation_id": cid}),
    )
    .await;
    let meta = reader.next().await.unwrap();
    let gid = meta.data["generation_id"].as_str().unwrap().to_string();
    for _ in 0..3 {
        reader.next().await.unwrap();
    }
    let m = wait_for(Duration::from_secs(10), || async {
        let m = message(b, &bob, &cid, 3).await;
        (m["generation_event_id"].as_u64().unwrap_or(0) >= 3).then_some(m)
    })
    .await;
    assert_eq!(m["status"], "streaming");
    assert_eq!(m["generation_id"], gid.as_str());
    let upto = m["generation_event_id"].as_u64().unwrap();
    let rest = follow(b, &bob, &gid, Some(upto)).await;
    assert_eq!(rest[0].id, Some(upto + 1));
    assert_eq!(
        format!("{}{}", m["content"].as_str().unwrap(), text_of(&rest)),
        reply,
        "the live text plus what follows is the answer"
    );
    drop(reader);

    // Stopped from a while it runs on c: the stream on c ends as stopped
    // and every instance reads the partial answer.
    let mut reader = open_stream(
        c,
        &bob,
        json!({"content": "third", "model": SLOW, "conversation_id": cid}),
    )
    .await;
    let meta = reader.next().await.unwrap();
    let gid = meta.data["generation_id"].as_str().unwrap().to_string();
    let first = reader.next().await.unwrap();
    assert_eq!(first.event, "delta");
    let r = a
        .delete(&format!("/api/generations/{gid}"), Auth::Session(&bob))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let mut events = vec![meta, first];
    while let Some(e) = reader.next().await {
        events.push(e);
    }
    let end = events.last().unwrap();
    assert_eq!(end.event, "done");
    assert_eq!(end.data["finish_reason"], "stopped");
    let partial = text_of(&events);
    assert!(
        !partial.is_empty() && partial.len() < reply.len(),
        "{partial:?}"
    );
    for s in &t.s {
        let m = message(s, &bob, &cid, 5).await;
        assert_eq!(m["status"], "interrupted");
        assert_eq!(m["content"], partial.as_str());
    }
    // Another user's generation is not found, wherever it runs.
    let r = a
        .get(
            &format!("/api/generations/{gid}/events"),
            Auth::Session(&admin),
        )
        .await;
    r.assert_error(404, "NOT_FOUND");
}

/// 30 answers asked for at once, spread over the instances, against a quota
/// of 10 messages a day: exactly 10 run.
#[tokio::test]
async fn thirty_concurrent_answers_against_a_quota_of_ten_admit_ten() {
    let t = instances(3, |c| c.quota.messages_per_day = Some(10)).await;
    let admin = t.s[0].setup_admin("admin").await;
    let bob = t.s[1].user(&admin, "bob").await;
    let mut tasks = Vec::new();
    for i in 0..30 {
        let s = &t.s[i % 3];
        let (http, url, bob) = (s.http.clone(), s.url("/api/chat/message"), bob.clone());
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .header("cookie", format!("confab_session={}", bob.cookie))
                .header("x-csrf-token", &bob.csrf)
                .json(&json!({"content": format!("question {i}"), "model": "fake-model"}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (status, body)
        }));
    }
    let mut admitted = 0;
    let mut refused = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            200 => admitted += 1,
            429 => {
                assert_eq!(body["code"], "QUOTA_EXCEEDED", "{body}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((admitted, refused), (10, 20));
    // Every instance reports the same day, once the charges are written.
    for s in &t.s {
        let q = wait_for(Duration::from_secs(10), || async {
            let r = s.get("/api/usage", Auth::Session(&bob)).await;
            assert_eq!(r.status, 200, "{}", r.text);
            (r.body["quota"]["running"] == 0).then_some(r.body["quota"].clone())
        })
        .await;
        assert_eq!(q["messages_used"], 10, "{q}");
        assert_eq!(q["messages_remaining"], 0, "{q}");
    }
}

/// A user's request budget and a sign-in failure budget are one budget,
/// whichever instance a request lands on.
#[tokio::test]
async fn rate_limits_hold_across_instances() {
    let t = instances(3, |c| {
        c.limits.enabled = true;
        // One request a minute refills: nothing refills during the test.
        c.limits.api_per_minute = 1;
        c.limits.api_burst = 12;
        c.auth.login_failures_per_source_per_hour = 3;
    })
    .await;
    let admin = t.s[0].setup_admin("admin").await;
    let bob = t.s[1].user(&admin, "bob").await;
    let mut ok = 0;
    let mut limited = 0;
    for i in 0..30 {
        let r = t.s[i % 3]
            .get("/api/conversations", Auth::Session(&bob))
            .await;
        match r.status.as_u16() {
            200 => ok += 1,
            429 => {
                r.assert_error(429, "RATE_LIMITED");
                assert!(r.header("retry-after").is_some());
                limited += 1;
            }
            other => panic!("unexpected {other}: {}", r.text),
        }
    }
    // The setup admin's and bob's sign-ins went through other budgets; the
    // user creation above was the admin's.
    assert_eq!(
        (ok, limited),
        (12, 18),
        "one bucket of 12 for three instances"
    );

    // Three wrong passwords for carol from this address, one per
    // instance, spend the pair's budget everywhere.
    t.s[0].user(&admin, "carol").await;
    for s in &t.s {
        let r = s
            .post(
                "/api/auth/login",
                Auth::None,
                json!({"username": "carol", "password": "wrong password!"}),
            )
            .await;
        r.assert_error(401, "INVALID_CREDENTIALS");
    }
    for s in &t.s {
        let r = s
            .post(
                "/api/auth/login",
                Auth::None,
                json!({"username": "carol", "password": PASSWORD}),
            )
            .await;
        r.assert_error(429, "RATE_LIMITED");
    }
}

/// A message written through one instance is found by the others' own
/// indexes within 2 s.
#[tokio::test]
async fn search_finds_what_another_instance_wrote_within_two_seconds() {
    let t = instances(3, |_| {}).await;
    let admin = t.s[0].setup_admin("admin").await;
    let bob = t.s[1].user(&admin, "bob").await;
    for (i, word) in ["quasar", "nebula", "pulsar"].iter().enumerate() {
        let writer = &t.s[i % 3];
        let r = writer
            .post(
                "/api/chat/message",
                Auth::Session(&bob),
                json!({"content": format!("Tell me about the {word} nearby"), "model": "fake-model"}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let written = Instant::now();
        for s in &t.s {
            wait_for(Duration::from_secs(2), || async {
                let r = s
                    .get(&format!("/api/search?q={word}"), Auth::Session(&bob))
                    .await;
                assert_eq!(r.status, 200, "{}", r.text);
                let hits = r.body["hits"].as_array().unwrap();
                hits.iter().any(|h| h["role"] == "user").then_some(())
            })
            .await;
        }
        eprintln!(
            "{word}: searchable on all three {:?} after the write",
            written.elapsed()
        );
    }
    // A deletion reaches every index the same way.
    let list = t.s[0].get("/api/conversations", Auth::Session(&bob)).await;
    let id = list.body["items"][0]["id"].as_str().unwrap().to_string();
    let r = t.s[2]
        .delete(&format!("/api/conversations/{id}"), Auth::Session(&bob))
        .await;
    assert_eq!(r.status, 204);
    for s in &t.s {
        wait_for(Duration::from_secs(2), || async {
            let r = s.get("/api/search?q=pulsar", Auth::Session(&bob)).await;
            r.body["hits"].as_array().unwrap().is_empty().then_some(())
        })
        .await;
    }
}

/// An instance started with keys other than those the database has seen
/// refuses to start and says what to copy.
#[tokio::test]
async fn an_instance_with_other_keys_refuses_to_start() {
    let url = pg::fresh_url().await;
    let _first = TestServer::start_with(config(&url, |_| {})).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::test_config(dir.path());
    config(&url, |_| {})(&mut cfg);
    let store = confab::store::open(&cfg).await.unwrap();
    let err = confab::app::AppState::new(cfg, store, "127.0.0.1:1".parse().unwrap())
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("jwt key") && err.contains("copy jwt.key from the data directory"),
        "{err}"
    );
    assert!(!err.contains(&url), "no URL in the message: {err}");
}

/// `kill -9` of the instance running an answer: within the lease (and a
/// look of the reaper) the others mark it interrupted with the text last
/// published, and its followers get their end.
#[tokio::test]
async fn a_killed_instance_leaves_its_answer_interrupted_with_its_text() {
    let t = instances(2, |_| {}).await;
    let admin = t.s[0].setup_admin("admin").await;
    let bob = t.s[1].user(&admin, "bob").await;
    // Long enough to be killed in the middle.
    let reply: String = (0..200).map(|i| format!("word{i} ")).collect();
    t.up.set_reply_for(SLOW, &reply);

    // The instance to kill is a real process on the same database.
    let data = dir_with_keys_of(&t.s[0]);
    let conf = data.path().join("confab.toml");
    common::proc::fake_provider_config(&conf, &t.up.openai_base());
    let text = std::fs::read_to_string(&conf).unwrap().replace(
        "models = [\"fake-model\"]",
        &format!("models = [\"{SLOW}\"]"),
    );
    let url = t.s[0].state().cfg.store.clone().unwrap();
    std::fs::write(
        &conf,
        format!(
            "store = \"{}\"\ncluster_lease_secs = {LEASE_SECS}\n{text}",
            url.expose()
        ),
    )
    .unwrap();
    let mut victim = common::proc::start(data.path(), &conf);
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/api/chat/stream", victim.url))
        .header("cookie", format!("confab_session={}", bob.cookie))
        .header("x-csrf-token", &bob.csrf)
        .json(&json!({"content": "go", "model": SLOW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut reader = SseReader::new(r);
    let meta = reader.next().await.unwrap();
    let gid = meta.data["generation_id"].as_str().unwrap().to_string();
    let cid = meta.data["conversation_id"].as_str().unwrap().to_string();
    // Until the other instance reads some of the text as live.
    let other = &t.s[1];
    let live = wait_for(Duration::from_secs(10), || async {
        let m = message(other, &bob, &cid, 1).await;
        (m["content"].as_str().unwrap_or("").len() > 20).then_some(m)
    })
    .await;
    assert_eq!(live["status"], "streaming");
    // A follower on the other instance, across the kill.
    let follower = {
        let (s, bob, gid) = (other.http.clone(), bob.clone(), gid.clone());
        let url = other.url(&format!("/api/generations/{gid}/events"));
        tokio::spawn(async move {
            let r = s
                .get(url)
                .header("cookie", format!("confab_session={}", bob.cookie))
                .send()
                .await
                .unwrap();
            SseReader::new(r).collect().await
        })
    };
    victim.child.kill().unwrap();
    victim.child.wait().unwrap();
    let killed = Instant::now();
    drop(reader);

    let m = wait_for(Duration::from_secs(LEASE_SECS + 10), || async {
        let m = message(other, &bob, &cid, 1).await;
        (m["status"] == "interrupted").then_some(m)
    })
    .await;
    let after = killed.elapsed();
    eprintln!("interrupted {after:?} after the kill (lease {LEASE_SECS} s)");
    assert!(
        after < Duration::from_secs(LEASE_SECS + 2 * 2 + 2),
        "within the lease and a reaper's look: {after:?}"
    );
    assert_eq!(m["finish_reason"], "server_restart");
    let kept = m["content"].as_str().unwrap();
    assert!(kept.len() >= live["content"].as_str().unwrap().len());
    assert!(
        kept.len() < reply.len() && reply.starts_with(kept),
        "{kept:?}"
    );
    for s in &t.s {
        assert_eq!(message(s, &bob, &cid, 1).await["status"], "interrupted");
    }
    let events = tokio::time::timeout(Duration::from_secs(10), follower)
        .await
        .expect("the follower ends")
        .unwrap();
    let end = events.last().unwrap();
    assert_eq!(
        (end.event.as_str(), &end.data["finish_reason"]),
        ("done", &json!("server_restart"))
    );
    assert!(reply.starts_with(&text_of(&events)));
}

/// The stores of two instances: the ACME renewal lock is held by one at a
/// time and freed when its holder lets go; a certificate one stores is
/// announced to the other.
#[tokio::test]
async fn one_instance_renews_at_a_time_and_the_others_hear_of_it() {
    let url = pg::fresh_url().await;
    let a = pg::open(&url).await.cluster().unwrap();
    let b = pg::open(&url).await.cluster().unwrap();
    let held = a.try_lock_renewal().await.unwrap().expect("free at first");
    assert!(b.try_lock_renewal().await.unwrap().is_none(), "a holds it");
    // Not even a's other sessions: the lock belongs to the one holding it.
    assert!(a.try_lock_renewal().await.unwrap().is_none());
    drop(held);
    let again = wait_for(Duration::from_secs(5), || async {
        b.try_lock_renewal().await.unwrap()
    })
    .await;
    assert!(
        a.try_lock_renewal().await.unwrap().is_none(),
        "b holds it now"
    );
    drop(again);

    let mut heard = b.subscribe();
    // The notice connection announces itself first.
    let first = tokio::time::timeout(Duration::from_secs(10), heard.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.kind, confab::store::cluster::NoticeKind::Reconnected);
    a.certificate_stored().await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(10), heard.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n.kind, confab::store::cluster::NoticeKind::Certificate);

    // HTTP-01 answers one instance stores, another serves.
    a.put_challenge("tok", "tok.answer", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        b.get_challenge("tok").await.unwrap().as_deref(),
        Some("tok.answer")
    );
    b.delete_challenge("tok").await.unwrap();
    assert!(a.get_challenge("tok").await.unwrap().is_none());
}

/// An instance serving HTTPS with ACME certificates from `pebble`, on
/// the database at `url`.
async fn start_acme(
    dir: &std::path::Path,
    url: &str,
    pebble: &crate::pebble::Pebble,
    https: tokio::net::TcpListener,
    http: tokio::net::TcpListener,
) -> (
    confab::app::AppState,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let mut cfg = common::test_config(dir);
    config(url, |_| {})(&mut cfg);
    let addr = https.local_addr().unwrap();
    cfg.tls.domains = vec![crate::pebble::DOMAIN.into()];
    cfg.tls.acme_email = Some("ops@confab.test".into());
    cfg.tls.acme_directory = Some(pebble.directory.clone());
    cfg.tls.acme_ca_root = Some(pebble.ca_root.clone());
    cfg.tls.https_listen = Some(addr);
    cfg.tls.http_listen = Some(http.local_addr().unwrap().to_string());
    cfg.validate().unwrap();
    let store = confab::store::open(&cfg).await.unwrap();
    let state = confab::app::AppState::new(cfg, store, addr).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let listeners = confab::tls::Listeners {
        app: https,
        http: Some(http),
        https: true,
    };
    let handle = tokio::spawn(confab::app::serve_listeners(
        listeners,
        state.clone(),
        async move {
            let _ = rx.await;
        },
    ));
    (state, tx, handle)
}

/// Two instances behind one name: the one that takes the renewal lock
/// orders, the CA's HTTP-01 request reaches the other (it holds the port
/// the CA checks) and is answered from the database, and both serve the
/// one certificate issued without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_instance_obtains_the_certificate_and_every_instance_serves_it() {
    use crate::pebble::{DOMAIN, Pebble, PebbleOpts, free_port, handshake};
    let bind = || async { tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap() };
    let (a_https, a_http, b_https, b_http) =
        (bind().await, bind().await, bind().await, bind().await);
    // HTTP-01 is checked on a's plain port; TLS-ALPN-01 on a port nobody
    // listens on (a load balancer that ends TLS itself).
    let pebble = Pebble::start(PebbleOpts::new(
        a_http.local_addr().unwrap().port(),
        free_port(),
    ))
    .await;
    let url = pg::fresh_url().await;
    let b_dir = tempfile::tempdir().unwrap();
    // b starts first, so it takes the lock and orders.
    let (b, b_stop, b_task) = start_acme(b_dir.path(), &url, &pebble, b_https, b_http).await;
    let a_dir = tempfile::tempdir().unwrap();
    for k in KEY_FILES {
        std::fs::copy(b_dir.path().join(k), a_dir.path().join(k)).unwrap();
    }
    let a_addr = a_https.local_addr().unwrap();
    let (a, a_stop, a_task) = start_acme(a_dir.path(), &url, &pebble, a_https, a_http).await;
    let cert_of = |s: &confab::app::AppState| s.tls.as_ref().unwrap().status().certificate.unwrap();
    let issued = wait_for(Duration::from_secs(90), || async {
        let (ca, cb) = (cert_of(&a), cert_of(&b));
        (ca.source == confab::tls::CertSource::Acme && cb.source == confab::tls::CertSource::Acme)
            .then_some((ca, cb))
    })
    .await;
    assert_eq!(issued.0.serial, issued.1.serial, "one certificate for both");
    assert_eq!(pebble.issued(), 1, "issued once:\n{}", pebble.log());
    let st = b.tls.as_ref().unwrap().status();
    assert_eq!(st.challenge.as_deref(), Some("http-01"), "{st:?}");
    // a serves it on its own port, swapped in without a restart.
    let root = pebble.root_pem().await;
    let hs = handshake(a_addr, DOMAIN, Some(&root), &[b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(hs.info().serial, issued.0.serial);
    for (stop, task) in [(a_stop, a_task), (b_stop, b_task)] {
        let _ = stop.send(());
        task.await.unwrap().unwrap();
    }
}

/// The shared GCRA bucket: burst, refusal with the wait, and refill, with
/// two stores (two instances) drawing from one bucket.
#[tokio::test]
async fn the_shared_bucket_counts_every_instances_requests() {
    let url = pg::fresh_url().await;
    let a = pg::open(&url).await.cluster().unwrap();
    let b = pg::open(&url).await.cluster().unwrap();
    let period = 50_000; // 50 ms per cell
    let mut allowed = 0;
    for i in 0..10 {
        let s: &dyn ClusterStore = if i % 2 == 0 { &*a } else { &*b };
        if s.rate_check("k", period, 4).await.unwrap().allowed {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 4, "a burst of 4, whoever asks");
    let refused = a.rate_check("k", period, 4).await.unwrap();
    assert!(!refused.allowed);
    assert!(refused.tat_us - refused.now_us > 3 * period);
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(
        b.rate_check("k", period, 4).await.unwrap().allowed,
        "refilled"
    );
    assert!(a.rate_check("other", period, 4).await.unwrap().allowed);
}

/// A shared failure budget: reservations count until settled, failures
/// until they leak away, from any instance.
#[tokio::test]
async fn the_shared_failure_budget_counts_reservations_and_failures() {
    let url = pg::fresh_url().await;
    let a = pg::open(&url).await.cluster().unwrap();
    let b = pg::open(&url).await.cluster().unwrap();
    let (period, ttl) = (60_000_000, Duration::from_secs(60));
    let first = a.failure_begin("f", period, 3, ttl).await.unwrap();
    assert!(first.allowed && first.pending == 1, "{first:?}");
    let second = b.failure_begin("f", period, 3, ttl).await.unwrap();
    assert!(second.allowed && second.pending == 2, "{second:?}");
    let settled = a.failure_settle("f", period, true).await.unwrap();
    assert_eq!(settled.pending, 1);
    assert!(settled.empty_at_us - settled.now_us > period - 1_000_000);
    b.failure_settle("f", period, true).await.unwrap();
    assert!(b.failure_begin("f", period, 3, ttl).await.unwrap().allowed);
    a.failure_settle("f", period, true).await.unwrap();
    let refused = b.failure_begin("f", period, 3, ttl).await.unwrap();
    assert!(!refused.allowed, "three failures spent it: {refused:?}");
    let peek = a.failure_peek("f").await.unwrap().unwrap();
    assert_eq!(peek.pending, 0);
    // A reservation nobody settles stops counting after its time.
    let short = Duration::from_millis(100);
    assert!(
        a.failure_begin("g", period, 1, short)
            .await
            .unwrap()
            .allowed
    );
    assert!(
        !b.failure_begin("g", period, 1, short)
            .await
            .unwrap()
            .allowed
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        b.failure_begin("g", period, 1, short)
            .await
            .unwrap()
            .allowed
    );
}

/// A primary and a streaming replica: the primary stops and the replica is
/// promoted while answers stream. The instances find the new primary
/// through the multi-host URL; every acknowledged message is there, the
/// answers that streamed across it end stored, and new chats work.
#[tokio::test]
async fn instances_carry_on_after_a_failover_to_the_promoted_replica() {
    let pair = pg::Pair::start("confab").await;
    let url = pair.url("confab");
    let up = FakeUpstream::start().await;
    // A lease longer than the failover: no answer is ended for it.
    let f: fn(&mut Config) = |c| c.cluster_lease_secs = 60;
    let a = TestServer::start_with(config(&url, f)).await;
    let b = TestServer::start_in(dir_with_keys_of(&a), config(&url, f)).await;
    for s in [&a, &b] {
        up.register_openai(s.state(), &["fake-model", SLOW]);
    }
    let admin = a.setup_admin("admin").await;
    let bob = b.user(&admin, "bob").await;
    let mut acked = Vec::new();
    for i in 0..6 {
        let s = if i % 2 == 0 { &a } else { &b };
        let r = s
            .post(
                "/api/chat/message",
                Auth::Session(&bob),
                json!({"content": format!("before the failover {i}"), "model": "fake-model"}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let cid = r.body["conversation_id"].as_str().unwrap().to_string();
        acked.push((cid, r.body["id"].as_str().unwrap().to_string()));
    }
    let reply: String = (0..60).map(|i| format!("w{i} ")).collect();
    up.set_reply_for(SLOW, &reply);
    let mut streams = Vec::new();
    for s in [&a, &b] {
        let mut r = open_stream(s, &bob, json!({"content": "across", "model": SLOW})).await;
        let meta = r.next().await.unwrap();
        r.next().await.unwrap();
        streams.push((
            meta.data["conversation_id"].as_str().unwrap().to_string(),
            r,
        ));
    }

    pair.stop_primary();
    pair.promote_replica();
    let promoted = Instant::now();

    // The answers run on (the provider never saw the database) and end.
    let mut across = Vec::new();
    for (cid, mut r) in streams {
        let mut last = None;
        while let Some(e) = tokio::time::timeout(Duration::from_secs(60), r.next())
            .await
            .expect("the stream ends")
        {
            last = Some(e);
        }
        assert_eq!(last.unwrap().event, "done");
        across.push(cid);
    }
    // New chats work on both instances once they find the new primary.
    for s in [&a, &b] {
        wait_for(Duration::from_secs(60), || async {
            let r = s
                .post(
                    "/api/chat/message",
                    Auth::Session(&bob),
                    json!({"content": "after the failover", "model": "fake-model"}),
                )
                .await;
            (r.status == 200).then_some(())
        })
        .await;
    }
    eprintln!(
        "new chats answered {:?} after the promotion",
        promoted.elapsed()
    );
    // Every acknowledged message is there, as every instance reads it.
    for s in [&a, &b] {
        for (cid, mid) in &acked {
            let m = message(s, &bob, cid, 1).await;
            assert_eq!(m["id"], mid.as_str());
            assert_eq!(m["status"], "complete");
        }
        // The answers that streamed across were stored in full.
        for cid in &across {
            let m = wait_for(Duration::from_secs(30), || async {
                let m = message(s, &bob, cid, 1).await;
                (m["status"] != "streaming").then_some(m)
            })
            .await;
            assert_eq!(m["status"], "complete", "{m}");
            assert_eq!(m["content"], reply.as_str());
        }
    }
    // Search follows the new primary too.
    wait_for(Duration::from_secs(10), || async {
        let r = a.get("/api/search?q=failover", Auth::Session(&bob)).await;
        (r.status == 200 && r.body["hits"].as_array().unwrap().len() >= 7).then_some(())
    })
    .await;
}

/// Files on a shared database: uploaded on A, downloaded, thumbnailed and
/// sent to a vision model on B, deleted on B and gone on A. The bytes live
/// in the database (no instance has a blob on its disk), a larger file
/// streams through in chunks, and a full export on one instance imports
/// on another.
#[tokio::test]
async fn a_file_uploaded_on_one_instance_is_served_and_deleted_on_another() {
    use crate::files::{png, raw_get, uploaded};
    use base64::Engine;
    use sha2::Digest;
    let t = instances(2, |_| {}).await;
    let (a, b) = (&t.s[0], &t.s[1]);
    let admin = a.setup_admin("admin").await;
    let bob = b.user(&admin, "bob").await;
    let bytes = png(640, 480);
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    let id = uploaded(a, &bob, "chart.png", &bytes).await;

    // B serves the content and makes the thumbnail; A serves the same one.
    let d = raw_get(b, &bob, &format!("/api/files/{id}/content")).await;
    assert_eq!(d.status(), 200);
    assert_eq!(d.headers()["content-type"], "image/png");
    assert_eq!(&d.bytes().await.unwrap()[..], &bytes[..]);
    let thumb = raw_get(b, &bob, &format!("/api/files/{id}/thumbnail")).await;
    assert_eq!(thumb.status(), 200);
    let thumb = thumb.bytes().await.unwrap();
    let img = image::load_from_memory(&thumb).unwrap();
    assert_eq!((img.width(), img.height()), (256, 192));
    let again = raw_get(a, &bob, &format!("/api/files/{id}/thumbnail")).await;
    assert_eq!(again.bytes().await.unwrap(), thumb);

    // B sends the image A stored to a vision model.
    t.up.clear_requests();
    let events = open_stream(
        b,
        &bob,
        json!({"content": "What does the chart show?", "model": "gpt-4o", "attachments": [id]}),
    )
    .await
    .collect()
    .await;
    assert_eq!(events.last().unwrap().event, "done", "{:?}", events.last());
    let req = t.up.chat_requests().into_iter().next().unwrap();
    let url = req.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .unwrap()["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["type"] == "image_url")
        .expect("an image part")["image_url"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, data) = url.split_once(";base64,").unwrap();
    let sent = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap();
    let sent = image::load_from_memory(&sent).unwrap();
    assert_eq!((sent.width(), sent.height()), (640, 480));

    // Nothing is on either instance's disk: the bytes are in the database.
    let blobs = a.state().files.blobs().clone();
    assert!(blobs.exists(&sha).await.unwrap());
    for s in [a, b] {
        let dir = s.data_dir().join("blobs");
        let on_disk = walkdir(&dir);
        assert!(on_disk.is_empty(), "{on_disk:?}");
    }

    // Deleted on B: gone on A, bytes and thumbnail too.
    let thumb_sha = hex::encode(sha2::Sha256::digest(&thumb));
    let r = b
        .delete(&format!("/api/files/{id}"), Auth::Session(&bob))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    a.get(&format!("/api/files/{id}"), Auth::Session(&bob))
        .await
        .assert_error(404, "NOT_FOUND");
    let d = raw_get(a, &bob, &format!("/api/files/{id}/content")).await;
    assert_eq!(d.status(), 404);
    assert!(!blobs.exists(&sha).await.unwrap());
    assert!(!blobs.exists(&thumb_sha).await.unwrap());
    assert!(blobs.list().await.unwrap().is_empty());

    // A larger image (noise, so about 3 MB: several chunks) goes up on A
    // and comes back from B byte for byte.
    let noise = image::RgbImage::from_fn(1024, 1024, |x, y| {
        let v = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)).rotate_left(x % 31);
        image::Rgb([v as u8, (v >> 8) as u8, (v >> 16) as u8])
    });
    let mut big = Vec::new();
    image::DynamicImage::ImageRgb8(noise)
        .write_to(&mut std::io::Cursor::new(&mut big), image::ImageFormat::Png)
        .unwrap();
    assert!(big.len() > 2 * 1024 * 1024, "{} bytes", big.len());
    let big_id = uploaded(a, &bob, "noise.png", &big).await;
    let d = raw_get(b, &bob, &format!("/api/files/{big_id}/content")).await;
    assert_eq!(d.status(), 200);
    assert_eq!(
        d.headers()["content-length"].to_str().unwrap(),
        big.len().to_string()
    );
    assert!(d.bytes().await.unwrap()[..] == big[..], "came back changed");

    // A full export on B carries it; imported on A as the admin's own
    // file, B serves the copy.
    let export = b.get("/api/export", Auth::Session(&bob)).await;
    assert_eq!(export.status, 200);
    let files = export.body["files"].as_array().unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["id"], big_id.as_str());
    let r = a
        .post("/api/import", Auth::Session(&admin), export.body.clone())
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["files_imported"], 1, "{}", r.text);
    let list = b.get("/api/files", Auth::Session(&admin)).await;
    let copy = list.body["items"][0]["id"].as_str().unwrap().to_string();
    assert_ne!(copy, big_id);
    let d = raw_get(b, &admin, &format!("/api/files/{copy}/content")).await;
    assert!(d.bytes().await.unwrap()[..] == big[..], "the copy differs");
}

/// Every file under `dir` (none when it does not exist).
fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walkdir(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Polls `f` until it gives a value, for at most `limit`.
async fn wait_for<T, F, Fut>(limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(started.elapsed() < limit, "not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The model ids `who` sees in `GET /api/models` on `s`, sorted.
async fn model_ids(s: &TestServer, who: &Session) -> Vec<String> {
    let r = s.get("/api/models", Auth::Session(who)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut v: Vec<String> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// Groups are read from the database at each request: a change an admin
/// makes on one instance limits (and frees) a user's models on the others
/// at their next request.
#[tokio::test]
async fn group_changes_apply_on_every_instance_at_once() {
    let t = instances(2, |_| {}).await;
    let (a, b) = (&t.s[0], &t.s[1]);
    let admin = a.setup_admin("admin").await;
    let bob = a.user(&admin, "bob").await;
    assert_eq!(model_ids(b, &bob).await.len(), 3);
    let r = a
        .post(
            "/api/admin/groups",
            Auth::Session(&admin),
            json!({"name": "Only gpt", "models": ["gpt-4o"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let g = r.body["id"].as_str().unwrap().to_string();
    let r = a
        .req(
            reqwest::Method::PUT,
            &format!("/api/admin/groups/{g}/members/{}", bob.user_id),
            Auth::Session(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    // The other instance applies it at once.
    assert_eq!(model_ids(b, &bob).await, ["gpt-4o"]);
    common::chat(b, &bob, json!({"content": "hi", "model": "fake-model"}))
        .await
        .assert_error(404, "MODEL_NOT_FOUND");
    // Changed on b, seen on a.
    let r = b
        .patch(
            &format!("/api/admin/groups/{g}"),
            Auth::Session(&admin),
            json!({"models": ["gpt-4o", "fake-model"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(model_ids(a, &bob).await, ["fake-model", "gpt-4o"]);
    let r = common::chat(a, &bob, json!({"content": "hi", "model": "fake-model"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// An import started on one instance is followed to its end from another
/// (the job is kept in the database), and another user's poll is a 404
/// there too.
#[tokio::test]
async fn an_import_job_is_answered_by_every_instance() {
    let t = instances(2, |_| {}).await;
    let (a, b) = (&t.s[0], &t.s[1]);
    let admin = a.setup_admin("admin").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conversations.json");
    let n = crate::imports::write_big_chatgpt(&path, 2 * 1024 * 1024);
    let r = a
        .http
        .post(a.url("/api/imports?name=c.json"))
        .header("cookie", format!("confab_session={}", admin.cookie))
        .header("x-csrf-token", &admin.csrf)
        .header("content-type", "application/json")
        .body(std::fs::read(&path).unwrap())
        .send()
        .await
        .unwrap();
    let r = common::Resp::from(r).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_string();
    let job = wait_for(Duration::from_secs(120), || {
        let (b, admin, id) = (b, &admin, id.clone());
        async move {
            let j = b
                .get(&format!("/api/imports/{id}"), Auth::Session(admin))
                .await;
            assert_eq!(j.status, 200, "{}", j.text);
            (j.body["status"] != "running").then_some(j.body)
        }
    })
    .await;
    assert_eq!(job["status"], "done", "{}", job["error"]);
    assert_eq!(job["imported"].as_u64().unwrap() as usize, n);
    assert_eq!(job["report"]["imported"].as_array().unwrap().len(), n);
    let listed = b.get("/api/imports", Auth::Session(&admin)).await;
    assert_eq!(listed.body["items"][0]["id"], id.as_str());
    let bob = b.user(&admin, "bob").await;
    b.get(&format!("/api/imports/{id}"), Auth::Session(&bob))
        .await
        .assert_error(404, "NOT_FOUND");
}
