//! Export and import of conversations through the real server over TCP,
//! with answers from the fake upstream.

use crate::common;
use crate::common_upstream;

use common::{Auth, Session, SseReader, TestServer};
use common_upstream::FakeUpstream;
use confab::providers::registry::ProviderConfig;
use confab::providers::{OpenAiProvider, ProviderKind, ProviderOptions, RetryPolicy};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

struct Env {
    s: TestServer,
    up: FakeUpstream,
    admin: Session,
}

/// A server with one OpenAI-dialect provider "oa" on a fake upstream.
async fn env() -> Env {
    let up = FakeUpstream::start().await;
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    let opts = ProviderOptions {
        idle_timeout: Duration::from_millis(2000),
        retry: RetryPolicy::none(),
        ..Default::default()
    };
    let client = confab::providers::default_client();
    let cfg = ProviderConfig::new(ProviderKind::Openai, "oa", up.openai_base())
        .with_api_key("sk-test-key-0000")
        .with_models(vec!["oa".to_string()]);
    s.state()
        .providers
        .add_with(
            cfg,
            Arc::new(
                OpenAiProvider::new(
                    "oa",
                    &up.openai_base(),
                    Some("sk-test-key-0000".into()),
                    client,
                )
                .with_options(opts),
            ),
        )
        .unwrap();
    Env { s, up, admin }
}

/// One chat turn; returns the `meta` event's data.
async fn chat(s: &TestServer, who: &Session, body: Value) -> Value {
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

fn id_of(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap().to_string()
}

/// A conversation with a user-set title and system prompt and three
/// branches (a regenerated answer, an edited question, an edited first
/// question). Returns its id.
async fn branched(e: &Env, who: &Session, title: &str) -> String {
    let c =
        e.s.post(
            "/api/conversations",
            Auth::Session(who),
            json!({"title": title, "model": "oa", "system_prompt": "Be brief.\n\nAnd kind."}),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.text);
    let cid = id_of(&c.body, "id");
    e.up.set_reply("answer one");
    let m1 = chat(
        &e.s,
        who,
        json!({"conversation_id": cid, "content": "first question"}),
    )
    .await;
    let a1 = id_of(&m1, "assistant_message_id");
    e.up.set_reply("answer two");
    let m2 = chat(
        &e.s,
        who,
        json!({"conversation_id": cid, "content": "second question"}),
    )
    .await;
    let a2 = id_of(&m2, "assistant_message_id");
    e.up.set_reply("answer two, again");
    chat(
        &e.s,
        who,
        json!({"conversation_id": cid, "regenerate_of": a2}),
    )
    .await;
    e.up.set_reply("answer to the edit");
    chat(
        &e.s,
        who,
        json!({"conversation_id": cid, "parent_id": a1, "content": "second question, edited"}),
    )
    .await;
    e.up.set_reply("a new beginning");
    chat(
        &e.s,
        who,
        json!({"conversation_id": cid, "parent_id": null, "content": "first, edited"}),
    )
    .await;
    cid
}

/// (role, content, status, index of the parent) per message, in order, and
/// the index of the current leaf.
type Shape = (Vec<(String, String, String, Option<usize>)>, Option<usize>);

/// The tree as (role, content, status, index of the parent) in order, and
/// the index of the current leaf: comparable across different ids.
fn shape(messages: &[Value], current_leaf: &Value) -> Shape {
    let pos: HashMap<&str, usize> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| (m["id"].as_str().unwrap(), i))
        .collect();
    let nodes = messages
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_string(),
                m["content"].as_str().unwrap().to_string(),
                m["status"].as_str().unwrap().to_string(),
                m["parent_id"].as_str().map(|p| pos[p]),
            )
        })
        .collect();
    (nodes, current_leaf.as_str().map(|l| pos[l]))
}

async fn tree(s: &TestServer, who: &Session, cid: &str) -> (Vec<Value>, Value) {
    let t = s
        .get(
            &format!("/api/conversations/{cid}/tree"),
            Auth::Session(who),
        )
        .await;
    assert_eq!(t.status, 200, "{}", t.text);
    (
        t.body["items"].as_array().unwrap().clone(),
        t.body["current_leaf"].clone(),
    )
}

async fn get_raw(s: &TestServer, who: &Session, path: &str) -> reqwest::Response {
    s.http
        .get(s.url(path))
        .header("cookie", format!("confab_session={}", who.cookie))
        .send()
        .await
        .unwrap()
}

async fn import(s: &TestServer, who: &Session, doc: &Value) -> common::Resp {
    s.post("/api/import", Auth::Session(who), doc.clone()).await
}

/// Every conversation of a user (archived too), by id.
async fn all_conversations(s: &TestServer, who: &Session) -> Vec<Value> {
    let mut out = Vec::new();
    for archived in [false, true] {
        let r = s
            .get(
                &format!("/api/conversations?limit=200&archived={archived}"),
                Auth::Session(who),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        out.extend(r.body["items"].as_array().unwrap().iter().cloned());
    }
    out
}

#[tokio::test]
async fn json_export_imports_as_a_copy_with_the_same_tree() {
    let e = env().await;
    let cid = branched(&e, &e.admin, "Trees: a study / part 1").await;
    let (orig_items, orig_leaf) = tree(&e.s, &e.admin, &cid).await;
    assert_eq!(orig_items.len(), 9);

    let r =
        e.s.get(
            &format!("/api/conversations/{cid}/export"),
            Auth::Session(&e.admin),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(
        r.header("content-disposition").unwrap(),
        "attachment; filename=\"Trees_ a study _ part 1.json\"; filename*=UTF-8''Trees_%20a%20study%20_%20part%201.json"
    );
    let doc = r.body.clone();
    assert_eq!(doc["format"], "confab.conversation.v1");
    assert!(doc["exported_at"].as_str().unwrap().ends_with('Z'));
    let conv = &doc["conversation"];
    for k in [
        "id",
        "title",
        "model",
        "system_prompt",
        "pinned",
        "archived",
        "current_leaf",
        "created_at",
        "updated_at",
    ] {
        assert!(conv.get(k).is_some(), "conversation.{k}");
    }
    assert_eq!(conv["id"], cid.as_str());
    assert_eq!(conv["title"], "Trees: a study / part 1");
    let exported = doc["messages"].as_array().unwrap();
    assert_eq!(exported.len(), 9, "every message of the tree, all branches");
    for m in exported {
        for k in [
            "id",
            "conversation_id",
            "parent_id",
            "role",
            "content",
            "status",
            "model",
            "usage",
            "created_at",
        ] {
            assert!(m.get(k).is_some(), "message.{k}: {m}");
        }
    }
    assert_eq!(
        shape(exported, &conv["current_leaf"]),
        shape(&orig_items, &orig_leaf)
    );
    // ?format=json is the default.
    let r2 =
        e.s.get(
            &format!("/api/conversations/{cid}/export?format=json"),
            Auth::Session(&e.admin),
        )
        .await;
    assert_eq!(r2.body["messages"], doc["messages"]);

    let imp = import(&e.s, &e.admin, &doc).await;
    assert_eq!(imp.status, 200, "{}", imp.text);
    assert_eq!(imp.body["skipped"], json!([]));
    let imported = imp.body["imported"].as_array().unwrap();
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0]["source_id"], cid.as_str());
    assert_eq!(imported[0]["title"], "Trees: a study / part 1");
    assert_eq!(imported[0]["messages"], 9);
    let nid = id_of(&imported[0], "id");
    assert_ne!(nid, cid);

    let (new_items, new_leaf) = tree(&e.s, &e.admin, &nid).await;
    assert_eq!(
        shape(&new_items, &new_leaf),
        shape(&orig_items, &orig_leaf),
        "same tree shape"
    );
    for m in &new_items {
        assert_eq!(m["conversation_id"], nid.as_str());
        assert!(
            orig_items.iter().all(|o| o["id"] != m["id"]),
            "new message ids"
        );
    }
    for (n, o) in new_items.iter().zip(&orig_items) {
        assert_eq!(n["model"], o["model"]);
        assert_eq!(n["usage"], o["usage"]);
        assert_eq!(n["created_at"], o["created_at"]);
    }
    let orig =
        e.s.get(
            &format!("/api/conversations/{cid}"),
            Auth::Session(&e.admin),
        )
        .await;
    let copy =
        e.s.get(
            &format!("/api/conversations/{nid}"),
            Auth::Session(&e.admin),
        )
        .await;
    for k in [
        "title",
        "model",
        "system_prompt",
        "pinned",
        "archived",
        "created_at",
    ] {
        assert_eq!(copy.body[k], orig.body[k], "{k}");
    }
    let contents = |v: &Value| -> Vec<String> {
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        contents(&copy.body),
        contents(&orig.body),
        "same shown thread"
    );
    assert_eq!(contents(&copy.body), ["first, edited", "a new beginning"]);

    // The copy keeps working: a new turn continues from its current leaf.
    e.up.set_reply("more");
    chat(
        &e.s,
        &e.admin,
        json!({"conversation_id": nid, "content": "go on"}),
    )
    .await;
    let (grown, _) = tree(&e.s, &e.admin, &nid).await;
    let go_on = grown.iter().find(|m| m["content"] == "go on").unwrap();
    assert_eq!(go_on["parent_id"], new_leaf);

    // The original is untouched.
    let (after, after_leaf) = tree(&e.s, &e.admin, &cid).await;
    assert_eq!(after, orig_items);
    assert_eq!(after_leaf, orig_leaf);

    // Importing the same file twice adds nothing: the conversation is
    // reported as already imported, with the copy it is in.
    let again = import(&e.s, &e.admin, &doc).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["imported"], json!([]), "{}", again.text);
    assert_eq!(again.body["skipped"][0]["reason"], "already imported");
    assert_eq!(again.body["skipped"][0]["existing_id"], nid.as_str());
    assert_eq!(all_conversations(&e.s, &e.admin).await.len(), 2);
}

#[tokio::test]
async fn markdown_export_renders_the_shown_thread() {
    let e = env().await;
    let cid = branched(&e, &e.admin, "Über Bäume").await;
    // Show the older branch: first question → answer one → edited second question.
    let (items, _) = tree(&e.s, &e.admin, &cid).await;
    let edited = items
        .iter()
        .find(|m| m["content"] == "second question, edited")
        .unwrap();
    let r =
        e.s.patch(
            &format!("/api/conversations/{cid}"),
            Auth::Session(&e.admin),
            json!({"current_leaf": edited["id"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    let r =
        e.s.get(
            &format!("/api/conversations/{cid}/export?format=markdown"),
            Auth::Session(&e.admin),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.header("content-type"),
        Some("text/markdown; charset=utf-8")
    );
    assert_eq!(
        r.header("content-disposition").unwrap(),
        "attachment; filename=\"ber B_ume.md\"; filename*=UTF-8''%C3%9Cber%20B%C3%A4ume.md"
    );
    let md = r.text;
    let expected = "# Über Bäume\n\n\
        > **System prompt**\n>\n> Be brief.\n>\n> And kind.\n\n\
        ## User\n\nfirst question\n\n\
        ## Assistant (oa)\n\nanswer one\n\n\
        ## User\n\nsecond question, edited\n\n\
        ## Assistant (oa)\n\nanswer to the edit\n";
    assert_eq!(md, expected);
    assert!(!md.contains("answer two"), "other branches are not shown");
}

#[tokio::test]
async fn full_export_streams_every_conversation_and_imports_into_another_account() {
    let e = env().await;
    let n = 30;
    let mut ids = Vec::new();
    for i in 0..n {
        let c =
            e.s.post(
                "/api/conversations",
                Auth::Session(&e.admin),
                json!({"title": format!("Conversation {i}"), "model": "oa"}),
            )
            .await;
        assert_eq!(c.status, 201);
        let cid = id_of(&c.body, "id");
        // Long enough answers that the export takes several chunks.
        e.up.set_reply(&format!("reply {i}{}", " and so on".repeat(200)));
        chat(
            &e.s,
            &e.admin,
            json!({"conversation_id": cid, "content": format!("question {i}")}),
        )
        .await;
        if i % 2 == 0 {
            chat(
                &e.s,
                &e.admin,
                json!({"conversation_id": cid, "content": format!("follow-up {i}")}),
            )
            .await;
        }
        ids.push(cid);
    }
    // Archived and pinned ones are exported too; an empty one as well.
    for cid in &ids[..5] {
        let r =
            e.s.patch(
                &format!("/api/conversations/{cid}"),
                Auth::Session(&e.admin),
                json!({"archived": true}),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    e.s.patch(
        &format!("/api/conversations/{}", ids[7]),
        Auth::Session(&e.admin),
        json!({"pinned": true}),
    )
    .await;
    let empty =
        e.s.post(
            "/api/conversations",
            Auth::Session(&e.admin),
            json!({"title": "Empty"}),
        )
        .await;
    ids.push(id_of(&empty.body, "id"));
    let branchy = branched(&e, &e.admin, "Branches").await;
    ids.push(branchy);

    // Read the export as a stream of chunks.
    let mut r = get_raw(&e.s, &e.admin, "/api/export").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert!(r.content_length().is_none(), "streamed, no Content-Length");
    assert_eq!(r.headers()["transfer-encoding"], "chunked");
    let today = time::OffsetDateTime::now_utc().date();
    let cd = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cd.starts_with("attachment; filename=\"confab-export-"),
        "{cd}"
    );
    let date = &cd["attachment; filename=\"confab-export-".len()..cd.len() - ".json\"".len()];
    assert_eq!(date.len(), 10, "{cd}");
    assert!(
        date == today.to_string() || date == today.previous_day().unwrap().to_string(),
        "{date}"
    );
    let mut body = Vec::new();
    let mut chunks = 0;
    while let Some(c) = r.chunk().await.unwrap() {
        body.extend_from_slice(&c);
        chunks += 1;
    }
    assert!(
        chunks >= 2,
        "written incrementally ({} bytes in {chunks} chunks)",
        body.len()
    );
    let doc: Value = serde_json::from_slice(&body).expect("one valid JSON document");
    assert_eq!(doc["format"], "confab.export.v1");
    assert!(doc["exported_at"].is_string());
    let convs = doc["conversations"].as_array().unwrap();
    assert_eq!(convs.len(), ids.len());
    let mut got: Vec<&str> = convs.iter().map(|c| c["id"].as_str().unwrap()).collect();
    got.sort();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(got, want, "every conversation, archived ones included");
    let by_id = |id: &str| convs.iter().find(|c| c["id"] == id).unwrap();
    assert_eq!(by_id(&ids[0])["archived"], true);
    assert_eq!(by_id(&ids[7])["pinned"], true);
    assert_eq!(by_id(&ids[0])["messages"].as_array().unwrap().len(), 4);
    assert_eq!(by_id(&ids[1])["messages"].as_array().unwrap().len(), 2);
    assert_eq!(by_id(&ids[n])["messages"], json!([]));
    assert_eq!(by_id(&ids[n + 1])["messages"].as_array().unwrap().len(), 9);
    assert!(
        by_id(&ids[3])["messages"][1]["content"]
            .as_str()
            .unwrap()
            .starts_with("reply 3 and so on")
    );
    // The same entries as the single-conversation export, whole trees.
    let single =
        e.s.get(
            &format!("/api/conversations/{}/export", ids[n + 1]),
            Auth::Session(&e.admin),
        )
        .await;
    assert_eq!(by_id(&ids[n + 1])["messages"], single.body["messages"]);

    // Another user imports the whole file.
    let bob = e.s.user(&e.admin, "bob").await;
    let before = all_conversations(&e.s, &e.admin).await;
    let imp = import(&e.s, &bob, &doc).await;
    assert_eq!(imp.status, 200, "{}", imp.text);
    assert_eq!(imp.body["skipped"], json!([]));
    let imported = imp.body["imported"].as_array().unwrap();
    assert_eq!(imported.len(), ids.len());
    let bobs = all_conversations(&e.s, &bob).await;
    assert_eq!(bobs.len(), ids.len());
    for item in imported {
        let src = item["source_id"].as_str().unwrap();
        let nid = item["id"].as_str().unwrap();
        assert!(!ids.iter().any(|i| i == nid), "new ids");
        let orig = by_id(src);
        let copy = bobs.iter().find(|c| c["id"] == nid).unwrap();
        for k in [
            "title",
            "pinned",
            "archived",
            "model",
            "created_at",
            "updated_at",
        ] {
            assert_eq!(copy[k], orig[k], "{k}");
        }
        assert_eq!(item["messages"], orig["messages"].as_array().unwrap().len());
        let (items, leaf) = tree(&e.s, &bob, nid).await;
        assert_eq!(
            shape(&items, &leaf),
            shape(orig["messages"].as_array().unwrap(), &orig["current_leaf"]),
        );
    }
    // The list keeps the original order (by last activity).
    let order = |list: &[Value]| -> Vec<String> {
        list.iter()
            .map(|c| c["title"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(order(&bobs), order(&before));

    // The original user's data is untouched, and neither sees the other's.
    assert_eq!(all_conversations(&e.s, &e.admin).await, before);
    let again = get_raw(&e.s, &e.admin, "/api/export").await;
    let again: Value = serde_json::from_slice(&again.bytes().await.unwrap()).unwrap();
    assert_eq!(again["conversations"], doc["conversations"]);
    let bob_export: Value = serde_json::from_slice(
        &get_raw(&e.s, &bob, "/api/export")
            .await
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        bob_export["conversations"].as_array().unwrap().len(),
        ids.len()
    );
    assert!(
        bob_export["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| !ids.iter().any(|i| c["id"] == i.as_str()))
    );

    // A user with nothing exports an empty, valid document.
    let carol = e.s.user(&e.admin, "carol").await;
    let r = get_raw(&e.s, &carol, "/api/export").await;
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["conversations"], json!([]));
}

#[tokio::test]
async fn invalid_conversations_are_skipped_with_a_reason() {
    let e = env().await;
    let msg = |id: &str, parent: Option<&str>, role: &str, content: &str| json!({"id": id, "parent_id": parent, "role": role, "content": content, "status": "complete"});
    let doc = json!({
        "format": "confab.export.v1",
        "exported_at": "2024-05-01T10:00:00Z",
        "conversations": [
            {"id": "good", "title": "Good one", "system_prompt": "Be nice.", "current_leaf": "m2",
             "created_at": "2024-05-01T09:00:00Z", "updated_at": "2024-05-01T09:30:00Z",
             "messages": [msg("m1", None, "user", "hello"), msg("m2", Some("m1"), "assistant", "hi!")]},
            {"id": "long-title", "title": "x".repeat(201), "messages": []},
            {"id": "long-prompt", "title": "Long prompt", "system_prompt": "p".repeat(20_001), "messages": []},
            {"id": "bad-role", "title": "Bad role",
             "messages": [msg("m1", None, "robot", "beep")]},
            {"id": "orphan", "title": "Orphan",
             "messages": [msg("m1", None, "user", "a"), msg("m2", Some("elsewhere"), "assistant", "b")]},
            {"id": "cycle", "title": "Cycle",
             "messages": [msg("r", None, "user", "root"), msg("a", Some("b"), "user", "a"), msg("b", Some("a"), "assistant", "b")]},
            {"id": "self", "title": "Self parent",
             "messages": [msg("a", Some("a"), "user", "a")]},
            {"id": "dup", "title": "Duplicate ids",
             "messages": [msg("a", None, "user", "a"), msg("a", None, "user", "again")]},
            {"id": "bad-leaf", "title": "Bad leaf", "current_leaf": "zzz",
             "messages": [msg("a", None, "user", "a")]},
            {"id": "no-content", "title": "No content",
             "messages": [{"id": "a", "role": "user"}]},
            "not an object",
            {"id": "streaming", "title": "Was streaming",
             "messages": [msg("u", None, "user", "question"),
                          {"id": "a", "parent_id": "u", "role": "assistant", "content": "partial ans", "status": "streaming", "model": "oa"}]},
            {"conversation": {"id": "wrapped", "title": "Wrapped shape"},
             "messages": [msg("u", None, "user", "wrapped question")]},
        ]
    });
    let r = import(&e.s, &e.admin, &doc).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let imported: Vec<&str> = r.body["imported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["source_id"].as_str().unwrap())
        .collect();
    assert_eq!(imported, ["good", "streaming", "wrapped"]);
    let skipped = r.body["skipped"].as_array().unwrap();
    let reason = |id: &str| -> String {
        skipped
            .iter()
            .find(|s| s["source_id"] == id)
            .unwrap_or_else(|| panic!("{id} skipped: {}", r.text))["reason"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        reason("long-title").contains("title"),
        "{}",
        reason("long-title")
    );
    assert!(
        reason("long-prompt").contains("system_prompt"),
        "{}",
        reason("long-prompt")
    );
    assert!(
        reason("bad-role").contains("robot"),
        "{}",
        reason("bad-role")
    );
    assert!(
        reason("orphan").contains("elsewhere"),
        "{}",
        reason("orphan")
    );
    assert!(reason("cycle").contains("cycle"), "{}", reason("cycle"));
    assert!(reason("self").contains("cycle"), "{}", reason("self"));
    assert!(
        reason("dup").contains("more than once"),
        "{}",
        reason("dup")
    );
    assert!(
        reason("bad-leaf").contains("current_leaf"),
        "{}",
        reason("bad-leaf")
    );
    assert!(
        reason("no-content").contains("content"),
        "{}",
        reason("no-content")
    );
    assert_eq!(skipped.len(), 10, "{}", r.text);
    let not_obj = skipped.iter().find(|s| s["source_id"].is_null()).unwrap();
    assert!(not_obj["title"].is_null());
    assert!(
        not_obj["reason"]
            .as_str()
            .unwrap()
            .contains("not a conversation")
    );
    let lt = skipped
        .iter()
        .find(|s| s["source_id"] == "long-title")
        .unwrap();
    assert_eq!(
        lt["title"].as_str().unwrap().len(),
        200,
        "titles in the report are shortened"
    );

    let find = |src: &str| -> String {
        r.body["imported"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["source_id"] == src)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let good =
        e.s.get(
            &format!("/api/conversations/{}", find("good")),
            Auth::Session(&e.admin),
        )
        .await;
    assert_eq!(good.body["title"], "Good one");
    assert_eq!(good.body["system_prompt"], "Be nice.");
    assert_eq!(good.body["created_at"], "2024-05-01T09:00:00Z");
    assert_eq!(good.body["updated_at"], "2024-05-01T09:30:00Z");
    let thread: Vec<&str> = good.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(thread, ["hello", "hi!"]);

    let st =
        e.s.get(
            &format!("/api/conversations/{}", find("streaming")),
            Auth::Session(&e.admin),
        )
        .await;
    let a = &st.body["messages"][1];
    assert_eq!(
        a["status"], "interrupted",
        "a message still streaming is imported as interrupted"
    );
    assert_eq!(a["content"], "partial ans");
    assert!(a.get("generation_id").is_none());
    // Without a current_leaf, the newest path is shown.
    assert_eq!(st.body["current_leaf"], a["id"]);

    let w =
        e.s.get(
            &format!("/api/conversations/{}", find("wrapped")),
            Auth::Session(&e.admin),
        )
        .await;
    assert_eq!(w.body["title"], "Wrapped shape");
    assert_eq!(w.body["messages"][0]["content"], "wrapped question");

    // Only the valid ones exist now.
    assert_eq!(all_conversations(&e.s, &e.admin).await.len(), 3);

    // A single-conversation document whose conversation is invalid: 200 with
    // it skipped, nothing created.
    let r = import(
        &e.s,
        &e.admin,
        &json!({"format": "confab.conversation.v1", "conversation": {"id": "x", "title": ""}, "messages": []}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["imported"], json!([]));
    assert_eq!(r.body["skipped"][0]["source_id"], "x");
    assert_eq!(all_conversations(&e.s, &e.admin).await.len(), 3);
}

#[tokio::test]
async fn errors_other_users_bad_format_and_bad_bodies() {
    let e = env().await;
    let cid = branched(&e, &e.admin, "Private").await;
    let bob = e.s.user(&e.admin, "bob").await;

    // Another user's conversation, or no conversation at all: 404.
    for fmt in ["json", "markdown"] {
        let r =
            e.s.get(
                &format!("/api/conversations/{cid}/export?format={fmt}"),
                Auth::Session(&bob),
            )
            .await;
        r.assert_error(404, "CONVERSATION_NOT_FOUND");
    }
    let r =
        e.s.get(
            &format!("/api/conversations/{}/export", uuid::Uuid::now_v7()),
            Auth::Session(&e.admin),
        )
        .await;
    r.assert_error(404, "CONVERSATION_NOT_FOUND");
    let r =
        e.s.get(
            "/api/conversations/not-an-id/export",
            Auth::Session(&e.admin),
        )
        .await;
    r.assert_error(404, "CONVERSATION_NOT_FOUND");

    // Unsupported format.
    let r =
        e.s.get(
            &format!("/api/conversations/{cid}/export?format=pdf"),
            Auth::Session(&e.admin),
        )
        .await;
    r.assert_error(400, "VALIDATION_FAILED");

    // Signed out.
    e.s.get(&format!("/api/conversations/{cid}/export"), Auth::None)
        .await
        .assert_error(401, "AUTH_REQUIRED");
    e.s.get("/api/export", Auth::None)
        .await
        .assert_error(401, "AUTH_REQUIRED");
    e.s.post("/api/import", Auth::None, json!({"conversations": []}))
        .await
        .assert_error(401, "AUTH_REQUIRED");

    // Garbage and non-export bodies: 400.
    let raw = |body: &'static str| {
        e.s.http
            .post(e.s.url("/api/import"))
            .header("cookie", format!("confab_session={}", bob.cookie))
            .header("x-csrf-token", &bob.csrf)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    common::Resp::from(raw("this is not json {").await.unwrap())
        .await
        .assert_error(400, "VALIDATION_FAILED");
    common::Resp::from(raw("").await.unwrap())
        .await
        .assert_error(400, "VALIDATION_FAILED");
    for bad in [
        json!([1, 2, 3]),
        json!("text"),
        json!({"hello": "world"}),
        json!({"format": "someone.else.v9", "conversations": []}),
        json!({"format": 7}),
        json!({"format": "confab.export.v1", "conversations": {"not": "a list"}}),
        json!({"format": "confab.conversation.v1", "messages": []}),
    ] {
        let r = import(&e.s, &bob, &bad).await;
        r.assert_error(400, "VALIDATION_FAILED");
    }

    // Larger than `max_import_bytes`: 413 (see `too_large_imports` for a
    // small limit); a 52 MiB body is well within the default 2 GiB.
    let big = json!({"format": "confab.export.v1", "conversations": [
        {"title": "Big", "messages": [{"id": "a", "role": "user", "content": "x".repeat(52 * 1024 * 1024)}]}
    ]});
    let r = import(&e.s, &bob, &big).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["imported"][0]["messages"], 1);
    e.s.delete("/api/conversations?confirm=all", Auth::Session(&bob))
        .await;

    // Nothing was created for bob by any of this.
    assert!(all_conversations(&e.s, &bob).await.is_empty());
    // An empty export imports as nothing.
    let r = import(
        &e.s,
        &bob,
        &json!({"format": "confab.export.v1", "conversations": []}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({"imported": [], "skipped": []}));

    // The endpoints are in the OpenAPI document.
    let doc = e.s.get("/api/openapi.json", Auth::None).await;
    for p in [
        "/api/conversations/{id}/export",
        "/api/export",
        "/api/import",
    ] {
        assert!(doc.body["paths"].get(p).is_some(), "{p}");
    }
}

#[tokio::test]
async fn too_large_imports_are_refused() {
    let s = TestServer::start_with(|c| c.max_import_bytes = 64 * 1024).await;
    let admin = s.setup_admin("admin").await;
    let big = json!({"format": "confab.export.v1", "conversations": [
        {"title": "Big", "messages": [{"id": "a", "role": "user", "content": "x".repeat(100 * 1024)}]}
    ]});
    for path in ["/api/import", "/api/imports"] {
        s.post(path, Auth::Session(&admin), big.clone())
            .await
            .assert_error(413, "PAYLOAD_TOO_LARGE");
        // Without a Content-Length, the limit holds while the body streams.
        let chunks = vec![Ok::<_, std::io::Error>(big.to_string().into_bytes())];
        let r = s
            .http
            .post(s.url(path))
            .header("cookie", format!("confab_session={}", admin.cookie))
            .header("x-csrf-token", &admin.csrf)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
            .send()
            .await
            .unwrap();
        common::Resp::from(r)
            .await
            .assert_error(413, "PAYLOAD_TOO_LARGE");
    }
    let r = s.get("/api/conversations", Auth::Session(&admin)).await;
    assert_eq!(r.body["items"], json!([]));
}
