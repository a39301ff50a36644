//! Full-text search through the real server: the durable outbox pipeline,
//! query syntax, isolation between users, rebuilds and crash recovery.

use crate::common;

use common::{Auth, Session, SseReader, TestServer, chat_server};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Sends one message and waits for the answer; returns the meta data.
pub(crate) async fn say(s: &TestServer, who: &Session, conv: Option<&str>, text: &str) -> Value {
    let mut body = json!({"content": text, "model": "fake-model"});
    if let Some(c) = conv {
        body["conversation_id"] = json!(c);
    }
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
    let events = SseReader::new(r).collect().await;
    assert_eq!(events.last().unwrap().event, "done", "{events:?}");
    events[0].data.clone()
}

async fn find(s: &TestServer, who: &Session, query: &str) -> Value {
    let q = url_escape(query);
    let r = s
        .get(&format!("/api/search?q={q}"), Auth::Session(who))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Polls until `query` has `n` hits; returns how long it took.
pub(crate) async fn until_hits(s: &TestServer, who: &Session, query: &str, n: usize) -> Duration {
    let t = Instant::now();
    loop {
        let b = find(s, who, query).await;
        if b["hits"].as_array().unwrap().len() == n {
            return t.elapsed();
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{query}: {b}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ids(b: &Value) -> Vec<String> {
    b["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["message_id"].as_str().unwrap_or("title").to_string())
        .collect()
}

#[tokio::test]
async fn written_messages_become_searchable_quickly_with_snippets() {
    let (s, up, admin) = chat_server(&["fake-model"], |_| {}).await;
    let meta = say(
        &s,
        &admin,
        None,
        "How do I configure the flux capacitor for time travel?",
    )
    .await;
    let lag = until_hits(&s, &admin, "capacitor", 1).await;
    assert!(
        lag < Duration::from_millis(1500),
        "indexed within the lag bound: {lag:?}"
    );
    let b = find(&s, &admin, "capacitor").await;
    assert_eq!(b["partial"], false);
    let hit = &b["hits"][0];
    assert_eq!(hit["conversation_id"], meta["conversation_id"]);
    assert_eq!(hit["message_id"], meta["user_message_id"]);
    assert_eq!(hit["role"], "user");
    assert!(hit["created_at"].as_str().unwrap().ends_with('Z'));
    let snip = &hit["snippet"];
    let text: Vec<u16> = snip["text"].as_str().unwrap().encode_utf16().collect();
    let [a, b2] = [
        snip["highlights"][0][0].as_u64().unwrap() as usize,
        snip["highlights"][0][1].as_u64().unwrap() as usize,
    ];
    assert_eq!(String::from_utf16(&text[a..b2]).unwrap(), "capacitor");
    // Stemming: "configuring" finds "configure"; the answer is indexed too.
    until_hits(&s, &admin, "configuring capacitor", 1).await;
    let reply_word = up
        .reply_for("fake-model")
        .split_whitespace()
        .nth(2)
        .unwrap()
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_string();
    // The answer's op may come a drain after the question's.
    let t = Instant::now();
    loop {
        let b = find(&s, &admin, &reply_word).await;
        if b["hits"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["role"] == "assistant")
        {
            break;
        }
        assert!(t.elapsed() < Duration::from_millis(1500), "{b}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn query_syntax_filters_and_paging() {
    let (s, _up, admin) = chat_server(&["fake-model"], |_| {}).await;
    let m1 = say(
        &s,
        &admin,
        None,
        "the quick brown fox jumps over the lazy dog",
    )
    .await;
    let c1 = m1["conversation_id"].as_str().unwrap().to_string();
    say(&s, &admin, Some(&c1), "a quick red fox naps under a tree").await;
    let m3 = say(
        &s,
        &admin,
        None,
        "use my_var_name and parseHttpRequest in src/main.rs",
    )
    .await;
    until_hits(&s, &admin, "fox", 2).await;
    // The index lags writes a little; wait for the last message too.
    until_hits(&s, &admin, "my_var_name", 1).await;

    assert_eq!(
        find(&s, &admin, "quick fox").await["hits"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        find(&s, &admin, "\"brown fox\"").await["hits"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        find(&s, &admin, "\"fox brown\"").await["hits"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        find(&s, &admin, "fox -lazy").await["hits"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        find(&s, &admin, "fox -\"lazy dog\"").await["hits"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        find(&s, &admin, "jump*").await["hits"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Code stays findable, whole and in parts.
    for q in [
        "my_var_name",
        "parseHttpRequest",
        "http",
        "src/main.rs",
        "main",
    ] {
        let b = find(&s, &admin, q).await;
        assert_eq!(
            b["hits"][0]["message_id"], m3["user_message_id"],
            "{q}: {b}"
        );
    }
    // Filters.
    let b = s
        .get(
            &format!("/api/search?q=fox&conversation_id={c1}&role=user"),
            Auth::Session(&admin),
        )
        .await;
    assert_eq!(b.body["hits"].as_array().unwrap().len(), 2);
    let b = s
        .get("/api/search?q=fox&role=assistant", Auth::Session(&admin))
        .await;
    assert_eq!(b.body["hits"].as_array().unwrap().len(), 0);
    let b = s
        .get(
            "/api/search?q=fox&after=2100-01-01T00:00:00Z",
            Auth::Session(&admin),
        )
        .await;
    assert_eq!(b.body["hits"].as_array().unwrap().len(), 0);
    let b = s
        .get(
            "/api/search?q=fox&before=2100-01-01T00:00:00Z",
            Auth::Session(&admin),
        )
        .await;
    assert_eq!(b.body["hits"].as_array().unwrap().len(), 2);
    // Both bounds are exclusive, to the second: a message written at t is
    // found with after=t-1 and before=t+1, not with after=t or before=t.
    let newest = &b.body["hits"][0];
    let mid = newest["message_id"].clone();
    let t = time::OffsetDateTime::parse(
        newest["created_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let at = |d: time::OffsetDateTime| {
        d.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let second = time::Duration::seconds(1);
    for (param, when, found) in [
        ("after", t - second, true),
        ("after", t, false),
        ("before", t, false),
        ("before", t + second, true),
    ] {
        let b = s
            .get(
                &format!("/api/search?q=fox&{param}={}", url_escape(&at(when))),
                Auth::Session(&admin),
            )
            .await;
        let hit = b.body["hits"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["message_id"] == mid);
        assert_eq!(hit, found, "{param}={}: {}", at(when), b.body);
    }
    // Paging, newest first.
    let p1 = s
        .get("/api/search?q=fox&limit=1", Auth::Session(&admin))
        .await;
    assert!(
        p1.body["hits"][0]["snippet"]["text"]
            .as_str()
            .unwrap()
            .contains("red fox")
    );
    let cur = p1.body["next_cursor"].as_str().unwrap();
    let p2 = s
        .get(
            &format!("/api/search?q=fox&limit=1&cursor={cur}"),
            Auth::Session(&admin),
        )
        .await;
    assert!(
        p2.body["hits"][0]["snippet"]["text"]
            .as_str()
            .unwrap()
            .contains("brown fox")
    );
    assert!(p2.body["next_cursor"].is_null());
}

#[tokio::test]
async fn bad_queries_are_400_never_500() {
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    for q in [
        "",
        "%22unclosed",
        "-only",
        "a*b",
        "x*",
        "%2A",
        "...",
        "%22%22",
        "-",
    ] {
        let r = s
            .get(&format!("/api/search?q={q}"), Auth::Session(&admin))
            .await;
        r.assert_error(400, "VALIDATION_FAILED");
        assert!(
            r.body["message"].as_str().unwrap().starts_with("q"),
            "{q}: {}",
            r.text
        );
    }
    for qs in [
        "q=a&limit=0",
        "q=a&limit=1000",
        "q=a&cursor=x",
        "q=a&role=robot",
        "q=a&after=yesterday",
        "q=a&conversation_id=nope",
    ] {
        s.get(&format!("/api/search?{qs}"), Auth::Session(&admin))
            .await
            .assert_error(400, "VALIDATION_FAILED");
    }
    s.get("/api/search?q=a", Auth::None)
        .await
        .assert_error(401, "AUTH_REQUIRED");
}

#[tokio::test]
async fn titles_follow_renames_and_deletes_remove_everything() {
    let (s, _up, admin) = chat_server(&["fake-model"], |_| {}).await;
    let meta = say(&s, &admin, None, "zymurgy questions").await;
    let cid = meta["conversation_id"].as_str().unwrap().to_string();
    until_hits(&s, &admin, "zymurgy", 1).await;
    let r = s
        .patch(
            &format!("/api/conversations/{cid}"),
            Auth::Session(&admin),
            json!({"title": "Brewing notes xylophone"}),
        )
        .await;
    assert_eq!(r.status, 200);
    until_hits(&s, &admin, "xylophone", 1).await;
    let b = find(&s, &admin, "xylophone").await;
    assert_eq!(b["hits"][0]["role"], "title");
    assert!(b["hits"][0]["message_id"].is_null());
    assert_eq!(
        b["hits"][0]["conversation_title"],
        "Brewing notes xylophone"
    );
    s.patch(
        &format!("/api/conversations/{cid}"),
        Auth::Session(&admin),
        json!({"title": "Other name"}),
    )
    .await;
    until_hits(&s, &admin, "xylophone", 0).await;

    let r = s
        .delete(&format!("/api/conversations/{cid}"), Auth::Session(&admin))
        .await;
    assert_eq!(r.status, 204);
    until_hits(&s, &admin, "zymurgy", 0).await;
    // Nothing of it is left in the index either.
    let st = s.state();
    let t = Instant::now();
    while st.search.num_docs() != 0 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "docs left: {}",
            st.search.num_docs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn users_never_see_each_others_words() {
    let (s, _up, admin) = chat_server(&["fake-model"], |_| {}).await;
    let bob = s.user(&admin, "bob").await;
    let alice = s.user(&admin, "alice").await;
    say(&s, &bob, None, "my quixotic sesquipedalian secret").await;
    say(&s, &alice, None, "alice also says quixotic sesquipedalian").await;
    until_hits(&s, &bob, "sesquipedalian", 1).await;
    until_hits(&s, &alice, "sesquipedalian", 1).await;
    for (who, mine) in [(&bob, "secret"), (&alice, "alice")] {
        let b = find(&s, who, "quixotic").await;
        let hits = b["hits"].as_array().unwrap();
        assert_eq!(hits.len(), 1);
        assert!(hits[0]["snippet"]["text"].as_str().unwrap().contains(mine));
    }
    assert_eq!(
        find(&s, &alice, "secret").await["hits"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        find(&s, &admin, "quixotic").await["hits"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // Another user's conversation id as a filter finds nothing, not an error.
    let bob_conv = find(&s, &bob, "quixotic").await["hits"][0]["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s
        .get(
            &format!("/api/search?q=quixotic&conversation_id={bob_conv}"),
            Auth::Session(&alice),
        )
        .await;
    assert_eq!(r.body["hits"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn rebuild_gives_the_same_results_as_incremental_indexing() {
    let (s, _up, admin) = chat_server(&["fake-model"], |_| {}).await;
    let mut conv: Option<String> = None;
    for i in 0..12 {
        let m = say(
            &s,
            &admin,
            conv.as_deref(),
            &format!("alpha beta message number {i} gamma{}", i % 3),
        )
        .await;
        if i % 4 == 3 {
            conv = None;
        } else {
            conv = Some(m["conversation_id"].as_str().unwrap().to_string());
        }
    }
    until_hits(&s, &admin, "alpha", 12).await;
    let queries = [
        "alpha",
        "gamma1",
        "\"message number\"",
        "beta -gamma2",
        "mess*",
    ];
    let mut before = Vec::new();
    for q in queries {
        before.push(ids(&find(&s, &admin, q).await));
    }
    let dir = s.stop().await;
    // Drop the index: the server rebuilds it by itself, answering partial
    // until done, and the results match.
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let s = TestServer::start_in(dir, |_| {}).await;
    let t = Instant::now();
    while s.state().search.is_partial() {
        assert!(t.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (q, want) in queries.iter().zip(&before) {
        assert_eq!(&ids(&find(&s, &admin, q).await), want, "{q}");
    }
    // And an explicit full rebuild through the library, as `confab reindex` does.
    let dir = s.stop().await;
    {
        let store = confab::store::redb::RedbStore::open_shared(dir.path()).unwrap();
        let search = confab::search::Search::open(dir.path()).unwrap();
        let n = search.rebuild(&store, |_, _| {}).await.unwrap();
        assert!(n >= 24);
        search.shutdown();
        // Once shut down it never takes the index lock again, and the lock
        // it held is free for the next opener.
        assert!(matches!(
            search.rebuild(&store, |_, _| {}).await,
            Err(confab::search::SearchError::Stopped)
        ));
        let next = confab::search::Search::open(dir.path()).unwrap();
        assert_eq!(next.rebuild(&store, |_, _| {}).await.unwrap(), n);
        next.shutdown();
    }
    let s = TestServer::start_in(dir, |_| {}).await;
    for (q, want) in queries.iter().zip(&before) {
        assert_eq!(&ids(&find(&s, &admin, q).await), want, "{q}");
    }
}
