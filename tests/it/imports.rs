//! Imports from other chat apps (ChatGPT, Claude, Open WebUI, LibreChat)
//! through the real server: fixtures built from the documented export
//! structures, imported as a job with progress or in one request, read back
//! message by message; idempotency; files that match no format; and the
//! memory a large import takes.

use crate::common;

use common::{Auth, Session, TestServer};
use serde_json::{Value, json};
use std::io::Write;
use std::time::Duration;

/// A ChatGPT `mapping` node.
fn node(id: &str, parent: Option<&str>, children: &[&str], message: Value) -> (String, Value) {
    (
        id.to_string(),
        json!({"id": id, "parent": parent, "children": children, "message": message}),
    )
}

fn msg(role: &str, t: f64, content: Value, model: Option<&str>) -> Value {
    let mut meta = json!({});
    if let Some(m) = model {
        meta["model_slug"] = json!(m);
    }
    json!({
        "id": format!("m-{t}"), "author": {"role": role, "name": null, "metadata": {}},
        "create_time": t, "update_time": null, "content": content, "status": "finished_successfully",
        "end_turn": true, "weight": 1.0, "metadata": meta, "recipient": "all"
    })
}

fn text(parts: &[&str]) -> Value {
    json!({"content_type": "text", "parts": parts})
}

fn mapping(nodes: Vec<(String, Value)>) -> Value {
    Value::Object(nodes.into_iter().collect())
}

/// A ChatGPT export (`conversations.json`): three conversations.
///
/// 1. "Branches": a hidden system message under a null-message root, a
///    question edited once (two user siblings), an answer regenerated (two
///    assistant siblings), a code interpreter call with its tool output,
///    and a shown thread that ends on the second regeneration.
/// 2. "Picture": a multimodal question with an image that the zip holds
///    and one it does not, and a custom system prompt.
/// 3. "Plain": a root with a null message only followed by one exchange,
///    no title.
fn chatgpt_export() -> Value {
    let c1 = json!({
        "title": "Branches", "create_time": 1_700_000_000.5, "update_time": 1_700_000_900.0,
        "conversation_id": "conv-branches", "id": "conv-branches", "current_node": "a2b",
        "default_model_slug": "gpt-4o",
        "mapping": mapping(vec![
            node("root", None, &["sys"], Value::Null),
            node("sys", Some("root"), &["u1", "u1e"], {
                let mut m = msg("system", 1_700_000_000.0, text(&[""]), None);
                m["metadata"]["is_visually_hidden_from_conversation"] = json!(true);
                m
            }),
            node("u1", Some("sys"), &["a1"], msg("user", 1_700_000_010.0, text(&["How do I sort in Rust?"]), None)),
            node("a1", Some("u1"), &[], msg("assistant", 1_700_000_011.0, text(&["Use `sort`."]), Some("gpt-4o"))),
            node("u1e", Some("sys"), &["code", "a2a"], msg("user", 1_700_000_020.0, text(&["How do I sort a Vec in Rust?"]), None)),
            node("code", Some("u1e"), &["tool"], {
                let mut m = msg("assistant", 1_700_000_021.0,
                    json!({"content_type": "code", "language": "python", "text": "sorted([3, 1, 2])"}), Some("gpt-4o"));
                m["recipient"] = json!("python");
                m
            }),
            node("tool", Some("code"), &["a2b"], msg("tool", 1_700_000_022.0,
                json!({"content_type": "execution_output", "text": "[1, 2, 3]"}), None)),
            node("a2a", Some("u1e"), &[], msg("assistant", 1_700_000_023.0,
                text(&["```rust\nlet mut v = vec![3, 1, 2];\nv.sort();\n```"]), Some("gpt-4o"))),
            node("a2b", Some("tool"), &[], msg("assistant", 1_700_000_024.0,
                text(&["Call `v.sort()`:\n\n```rust\nv.sort();\n```"]), Some("o1-mini"))),
        ]),
    });
    let c2 = json!({
        "title": "Picture", "create_time": 1_699_000_000.0, "update_time": 1_699_000_100.0,
        "conversation_id": "conv-picture", "current_node": "pa",
        "mapping": mapping(vec![
            node("r", None, &["ps"], Value::Null),
            node("ps", Some("r"), &["pu"], msg("system", 1_699_000_000.0, text(&["You are terse."]), None)),
            node("pu", Some("ps"), &["pa"], msg("user", 1_699_000_010.0, json!({
                "content_type": "multimodal_text",
                "parts": [
                    {"content_type": "image_asset_pointer", "asset_pointer": "file-service://file-Present123", "size_bytes": 100, "width": 2, "height": 2},
                    {"content_type": "image_asset_pointer", "asset_pointer": "file-service://file-Missing456", "size_bytes": 100, "width": 2, "height": 2},
                    "What is in these pictures?"
                ]
            }), None)),
            node("pa", Some("pu"), &[], msg("assistant", 1_699_000_011.0, text(&["A red dot."]), Some("gpt-4o"))),
        ]),
    });
    let c3 = json!({
        "title": null, "create_time": 1_698_000_000.0, "update_time": 1_698_000_000.0,
        "id": "conv-plain", "current_node": "x2",
        "mapping": mapping(vec![
            node("x0", None, &["x1"], Value::Null),
            node("x1", Some("x0"), &["x2"], msg("user", 1_698_000_001.0, text(&["hi"]), None)),
            node("x2", Some("x1"), &[], msg("assistant", 1_698_000_002.0, text(&["hello"]), Some("gpt-3.5-turbo"))),
        ]),
    });
    json!([c1, c2, c3])
}

fn png() -> Vec<u8> {
    let img = image::RgbImage::from_pixel(2, 2, image::Rgb([255, 0, 0]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// The export as downloaded: a zip with conversations.json and the files.
fn zip_of(conversations: &Value, files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opt = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    w.start_file("conversations.json", opt).unwrap();
    w.write_all(conversations.to_string().as_bytes()).unwrap();
    w.start_file("user.json", opt).unwrap();
    w.write_all(b"{\"id\":\"user-1\"}").unwrap();
    for (name, bytes) in files {
        w.start_file(*name, opt).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}

async fn upload(
    s: &TestServer,
    who: &Session,
    path: &str,
    ct: &str,
    body: Vec<u8>,
) -> common::Resp {
    let r = s
        .http
        .post(s.url(path))
        .header("cookie", format!("confab_session={}", who.cookie))
        .header("x-csrf-token", &who.csrf)
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    common::Resp::from(r).await
}

/// Starts an import job and polls it to the end; returns the finished job.
async fn import_job(s: &TestServer, who: &Session, name: &str, ct: &str, body: Vec<u8>) -> Value {
    let r = upload(s, who, &format!("/api/imports?name={name}"), ct, body).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["file_name"], name);
    for _ in 0..600 {
        let j = s
            .get(&format!("/api/imports/{id}"), Auth::Session(who))
            .await;
        assert_eq!(j.status, 200, "{}", j.text);
        let p = j.body["progress"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p), "{}", j.text);
        if j.body["status"] != "running" {
            assert_eq!(p, 1.0);
            return j.body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the import did not finish");
}

async fn tree(s: &TestServer, who: &Session, cid: &str) -> (Value, Vec<Value>) {
    let c = s
        .get(&format!("/api/conversations/{cid}"), Auth::Session(who))
        .await;
    assert_eq!(c.status, 200, "{}", c.text);
    let t = s
        .get(
            &format!("/api/conversations/{cid}/tree"),
            Auth::Session(who),
        )
        .await;
    assert_eq!(t.status, 200, "{}", t.text);
    let items = t.body["items"]
        .as_array()
        .or_else(|| t.body["messages"].as_array())
        .expect("tree items")
        .clone();
    (c.body, items)
}

fn by_content<'a>(items: &'a [Value], needle: &str) -> &'a Value {
    items
        .iter()
        .find(|m| m["content"].as_str().unwrap_or("").contains(needle))
        .unwrap_or_else(|| panic!("no message with {needle:?} in {items:#?}"))
}

fn id(v: &Value) -> &str {
    v["id"].as_str().unwrap()
}

async fn count(s: &TestServer, who: &Session) -> usize {
    let r = s
        .get("/api/conversations?limit=100", Auth::Session(who))
        .await;
    r.body["items"].as_array().unwrap().len()
}

#[tokio::test]
async fn chatgpt_zip_imports_every_message_and_branch_once() {
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    let zip = zip_of(
        &chatgpt_export(),
        &[
            ("file-Present123-red.png", png()),
            ("dalle-generations/other.webp", vec![1, 2, 3]),
        ],
    );
    let job = import_job(&s, &admin, "chatgpt.zip", "application/zip", zip.clone()).await;
    assert_eq!(job["status"], "done", "{job:#}");
    let rep = &job["report"];
    assert_eq!(rep["imported"].as_array().unwrap().len(), 3, "{rep:#}");
    assert_eq!(rep["skipped"], json!([]));
    assert_eq!(job["imported"], 3);
    let item = |src: &str| {
        rep["imported"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["source_id"] == src)
            .unwrap_or_else(|| panic!("{src} not imported: {rep:#}"))
            .clone()
    };

    // 1. Branches: 6 shown messages (the hidden system message and the tool
    // output are left out), both edits and both regenerations kept.
    let b = item("conv-branches");
    assert_eq!(b["format"], "chatgpt");
    assert_eq!(b["messages"], 6);
    let (conv, items) = tree(&s, &admin, id(&b)).await;
    assert_eq!(conv["title"], "Branches");
    assert_eq!(conv["model"], "gpt-4o");
    assert_eq!(conv["created_at"], "2023-11-14T22:13:20Z");
    assert_eq!(items.len(), 6, "{items:#?}");
    let u1 = by_content(&items, "How do I sort in Rust?");
    let u1e = by_content(&items, "How do I sort a Vec in Rust?");
    let a1 = by_content(&items, "Use `sort`.");
    let code = by_content(&items, "sorted([3, 1, 2])");
    let a2a = by_content(&items, "let mut v = vec![3, 1, 2];");
    let a2b = by_content(&items, "Call `v.sort()`");
    // The edit: two roots (the system node was not kept).
    assert_eq!(u1["parent_id"], Value::Null);
    assert_eq!(u1e["parent_id"], Value::Null);
    assert_eq!(u1["role"], "user");
    assert_eq!(a1["parent_id"], u1["id"]);
    // The regeneration: two answers to the edited question; the one after
    // the tool call hangs on the code message.
    assert_eq!(code["parent_id"], u1e["id"]);
    assert_eq!(code["content"], "```python\nsorted([3, 1, 2])\n```");
    assert_eq!(a2a["parent_id"], u1e["id"]);
    assert_eq!(a2b["parent_id"], code["id"]);
    // Code blocks intact, models per message, times kept.
    assert_eq!(
        a2a["content"],
        "```rust\nlet mut v = vec![3, 1, 2];\nv.sort();\n```"
    );
    assert_eq!(a2b["model"], "o1-mini");
    assert_eq!(a1["model"], "gpt-4o");
    assert_eq!(u1["created_at"], "2023-11-14T22:13:30Z");
    assert!(items.iter().all(|m| m["status"] == "complete"));
    assert!(!items.iter().any(|m| m["content"] == "[1, 2, 3]"));
    // The shown thread is ChatGPT's current_node.
    assert_eq!(conv["current_leaf"], a2b["id"]);

    // 2. Picture: the image in the zip is an attachment (a file of the
    // user's), the missing one a visible placeholder; the system prompt is
    // the conversation's.
    let p = item("conv-picture");
    let (conv, items) = tree(&s, &admin, id(&p)).await;
    assert_eq!(conv["system_prompt"], "You are terse.");
    assert_eq!(items.len(), 2);
    let q = by_content(&items, "What is in these pictures?");
    assert!(
        q["content"]
            .as_str()
            .unwrap()
            .contains("[Image not included in the export: file-Missing456]"),
        "{q:#}"
    );
    let att = q["attachments"].as_array().expect("attachments");
    assert_eq!(att.len(), 1, "{q:#}");
    assert_eq!(att[0]["name"], "file-Present123-red.png");
    assert_eq!(att[0]["mime"], "image/png");
    let f = s
        .get(
            &format!("/api/files/{}", att[0]["id"].as_str().unwrap()),
            Auth::Session(&admin),
        )
        .await;
    assert_eq!(f.status, 200, "{}", f.text);

    // 3. Plain: a null-message root only; no title → the default title.
    let pl = item("conv-plain");
    let (conv, items) = tree(&s, &admin, id(&pl)).await;
    assert_eq!(conv["title"], "New chat");
    assert_eq!(items.len(), 2);
    assert_eq!(
        by_content(&items, "hello")["parent_id"],
        by_content(&items, "hi")["id"]
    );

    // Importing the same file again adds nothing: each is reported as
    // already imported, pointing at its conversation.
    assert_eq!(count(&s, &admin).await, 3);
    let again = import_job(&s, &admin, "chatgpt.zip", "application/zip", zip).await;
    assert_eq!(again["status"], "done");
    assert_eq!(again["report"]["imported"], json!([]));
    let skipped = again["report"]["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 3);
    assert!(skipped.iter().all(|x| x["reason"] == "already imported"));
    assert!(skipped.iter().any(|x| x["existing_id"] == b["id"]));
    assert_eq!(count(&s, &admin).await, 3);

    // The bare conversations.json (the same data, no zip) is recognised
    // too, and is idempotent with the zip.
    let again = upload(
        &s,
        &admin,
        "/api/import",
        "application/json",
        chatgpt_export().to_string().into_bytes(),
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["skipped"].as_array().unwrap().len(), 3);

    // A deleted conversation comes back when imported again.
    s.delete(
        &format!("/api/conversations/{}", id(&pl)),
        Auth::Session(&admin),
    )
    .await;
    let again = upload(
        &s,
        &admin,
        "/api/import",
        "application/json",
        chatgpt_export().to_string().into_bytes(),
    )
    .await;
    assert_eq!(
        again.body["imported"].as_array().unwrap().len(),
        1,
        "{}",
        again.text
    );
    assert_eq!(again.body["imported"][0]["source_id"], "conv-plain");

    // The jobs are listed (the app finds them after a reload); another
    // user sees none of them.
    let list = s.get("/api/imports", Auth::Session(&admin)).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 2);
    let bob = s.user(&admin, "bob").await;
    let theirs = s.get("/api/imports", Auth::Session(&bob)).await;
    assert_eq!(theirs.body["items"], json!([]));
    let jid = list.body["items"][0]["id"].as_str().unwrap();
    s.get(&format!("/api/imports/{jid}"), Auth::Session(&bob))
        .await
        .assert_error(404, "NOT_FOUND");
}

/// A Claude data export: linear and branched conversations.
fn claude_export() -> Value {
    json!([
        {
            "uuid": "claude-linear", "name": "Poem", "summary": "",
            "created_at": "2024-05-01T10:00:00.000000Z", "updated_at": "2024-05-01T10:05:00.000000Z",
            "account": {"uuid": "acct"},
            "chat_messages": [
                {"uuid": "h1", "text": "Write a haiku", "sender": "human",
                 "content": [{"type": "text", "text": "Write a haiku", "start_timestamp": null}],
                 "created_at": "2024-05-01T10:00:01.000000Z", "updated_at": "2024-05-01T10:00:01.000000Z",
                 "attachments": [{"file_name": "notes.txt", "file_size": 5, "file_type": "txt", "extracted_content": "autumn"}],
                 "files": [{"file_name": "photo.jpg"}]},
                {"uuid": "a1", "text": "ignored when content has text", "sender": "assistant",
                 "content": [{"type": "text", "text": "Leaves fall"}, {"type": "tool_use", "name": "x", "input": {}}, {"type": "text", "text": "softly down"}],
                 "created_at": "2024-05-01T10:00:05.000000Z", "updated_at": "2024-05-01T10:00:05.000000Z",
                 "attachments": [], "files": []}
            ]
        },
        {
            "uuid": "claude-branched", "name": "Retry",
            "created_at": "2024-06-01T10:00:00Z", "updated_at": "2024-06-01T10:10:00Z",
            "chat_messages": [
                {"uuid": "q", "text": "Pick a number", "sender": "human", "created_at": "2024-06-01T10:00:01Z",
                 "parent_message_uuid": "00000000-0000-4000-8000-000000000000", "attachments": [], "files": []},
                {"uuid": "r1", "text": "7", "sender": "assistant", "created_at": "2024-06-01T10:00:02Z",
                 "parent_message_uuid": "q", "attachments": [], "files": []},
                {"uuid": "r2", "text": "42", "sender": "assistant", "created_at": "2024-06-01T10:00:09Z",
                 "parent_message_uuid": "q", "attachments": [], "files": []}
            ]
        },
        {"uuid": "claude-bad", "name": "Broken", "created_at": "2024-06-01T10:00:00Z",
         "chat_messages": [{"uuid": "z", "text": "?", "sender": "robot"}]}
    ])
}

#[tokio::test]
async fn claude_open_webui_and_librechat_exports_import() {
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    let r = upload(
        &s,
        &admin,
        "/api/import",
        "application/json",
        claude_export().to_string().into_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["imported"].as_array().unwrap().len(),
        2,
        "{}",
        r.text
    );
    // A conversation that cannot be read is reported, not imported.
    let sk = r.body["skipped"].as_array().unwrap();
    assert_eq!(sk.len(), 1);
    assert_eq!(sk[0]["source_id"], "claude-bad");
    assert!(
        sk[0]["reason"].as_str().unwrap().contains("unknown sender"),
        "{}",
        r.text
    );

    let lin = r.body["imported"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["source_id"] == "claude-linear")
        .unwrap()
        .clone();
    assert_eq!(lin["format"], "claude");
    let (conv, items) = tree(&s, &admin, id(&lin)).await;
    assert_eq!(conv["title"], "Poem");
    assert_eq!(items.len(), 2);
    let h = by_content(&items, "Write a haiku");
    assert_eq!(h["role"], "user");
    assert!(
        h["content"]
            .as_str()
            .unwrap()
            .contains("notes.txt:\n```\nautumn\n```")
    );
    assert!(
        h["content"]
            .as_str()
            .unwrap()
            .contains("[File not included in the export: photo.jpg]")
    );
    let a = by_content(&items, "Leaves fall");
    assert_eq!(a["content"], "Leaves fall\n\nsoftly down");
    assert_eq!(a["parent_id"], h["id"]);
    assert_eq!(a["created_at"], "2024-05-01T10:00:05Z");

    let br = r.body["imported"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["source_id"] == "claude-branched")
        .unwrap()
        .clone();
    let (conv, items) = tree(&s, &admin, id(&br)).await;
    let q = by_content(&items, "Pick a number");
    let r1 = by_content(&items, "7");
    let r2 = by_content(&items, "42");
    assert_eq!(r1["parent_id"], q["id"]);
    assert_eq!(r2["parent_id"], q["id"]);
    assert_eq!(conv["current_leaf"], r2["id"]);

    // Open WebUI: the history tree with a regenerated answer.
    let owui = json!([{
        "id": "owui-1", "user_id": "u", "title": "Open chat", "created_at": 1_710_000_000, "updated_at": 1_710_000_100,
        "chat": {"id": "", "title": "Open chat", "models": ["llama3:8b"], "params": {},
            "history": {"currentId": "b2", "messages": {
                "q1": {"id": "q1", "parentId": null, "childrenIds": ["b1", "b2"], "role": "user", "content": "Hi there", "timestamp": 1_710_000_001},
                "b1": {"id": "b1", "parentId": "q1", "childrenIds": [], "role": "assistant", "content": "Hello!", "model": "llama3:8b", "timestamp": 1_710_000_002},
                "b2": {"id": "b2", "parentId": "q1", "childrenIds": [], "role": "assistant", "content": "Hey!", "model": "qwen2", "timestamp": 1_710_000_003}
            }},
            "messages": []}
    }]);
    let r = upload(
        &s,
        &admin,
        "/api/import",
        "application/json",
        owui.to_string().into_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["imported"][0]["format"], "open_webui");
    let (conv, items) = tree(&s, &admin, r.body["imported"][0]["id"].as_str().unwrap()).await;
    assert_eq!(conv["title"], "Open chat");
    assert_eq!(conv["model"], "llama3:8b");
    assert_eq!(items.len(), 3);
    assert_eq!(conv["current_leaf"], by_content(&items, "Hey!")["id"]);
    assert_eq!(by_content(&items, "Hey!")["model"], "qwen2");
    assert_eq!(
        by_content(&items, "Hello!")["parent_id"],
        by_content(&items, "Hi there")["id"]
    );

    // LibreChat: one conversation, nested (recursive) messages.
    let libre = json!({
        "conversationId": "lc-1", "title": "Libre", "endpoint": "openAI", "model": "gpt-4o-mini", "recursive": true,
        "messages": [{
            "messageId": "m1", "parentMessageId": "00000000-0000-0000-0000-000000000000", "isCreatedByUser": true,
            "sender": "User", "text": "2+2?", "createdAt": "2024-07-01T00:00:00.000Z",
            "children": [{
                "messageId": "m2", "parentMessageId": "m1", "isCreatedByUser": false, "sender": "GPT-4",
                "text": "", "content": [{"type": "text", "text": {"value": "4"}}], "model": "gpt-4o-mini",
                "createdAt": "2024-07-01T00:00:01.000Z", "children": []
            }]
        }]
    });
    let r = upload(
        &s,
        &admin,
        "/api/import",
        "application/json",
        libre.to_string().into_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["imported"][0]["format"], "librechat");
    assert_eq!(r.body["imported"][0]["source_id"], "lc-1");
    let (conv, items) = tree(&s, &admin, r.body["imported"][0]["id"].as_str().unwrap()).await;
    assert_eq!(conv["title"], "Libre");
    assert_eq!(items.len(), 2);
    assert_eq!(
        by_content(&items, "4")["parent_id"],
        by_content(&items, "2+2?")["id"]
    );
    assert_eq!(by_content(&items, "4")["role"], "assistant");
}

#[tokio::test]
async fn files_that_match_no_format_import_nothing_and_say_why() {
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    let full = chatgpt_export().to_string();
    // Corrupt: cut in the middle of the second conversation. The job says
    // why, and keeps (and lists) only the conversation read completely.
    let cut = full.as_bytes()[..full.len() * 2 / 3].to_vec();
    let job = import_job(&s, &admin, "cut.json", "application/json", cut.clone()).await;
    assert_eq!(job["status"], "failed", "{job:#}");
    assert!(
        job["error"].as_str().unwrap().contains("not valid JSON"),
        "{job:#}"
    );
    let imported = job["report"]["imported"].as_array().unwrap().len();
    assert_eq!(count(&s, &admin).await, imported);

    let bob = s.user(&admin, "bob").await;
    for (body, why) in [
        (
            b"this is not json {".to_vec(),
            "matches no known export format",
        ),
        (b"".to_vec(), "empty"),
        (
            br#"[{"hello": "world"}, {"a": 1}]"#.to_vec(),
            "matches no known export format",
        ),
        (
            br#"{"data": [1, 2, 3]}"#.to_vec(),
            "matches no known export format",
        ),
        (b"PK\x03\x04 not really a zip".to_vec(), "zip"),
        (zip_of(&json!([]), &[]).into_iter().collect(), ""),
    ] {
        let r = upload(
            &s,
            &bob,
            "/api/import",
            "application/octet-stream",
            body.clone(),
        )
        .await;
        if why.is_empty() {
            // An empty export is not an error: nothing to import.
            assert_eq!(r.status, 200, "{}", r.text);
            continue;
        }
        r.assert_error(400, "VALIDATION_FAILED");
        assert!(
            r.body["message"].as_str().unwrap().contains(why),
            "{}",
            r.text
        );
        let job = import_job(&s, &bob, "bad", "application/octet-stream", body).await;
        assert_eq!(job["status"], "failed");
        assert!(job["error"].as_str().unwrap().contains(why), "{job:#}");
        assert_eq!(job["imported"], 0);
    }
    assert_eq!(count(&s, &bob).await, 0);

    // Not an export type at all.
    let r = upload(&s, &bob, "/api/imports", "text/plain", b"[]".to_vec()).await;
    r.assert_error(400, "VALIDATION_FAILED");
    // Signed out.
    s.post("/api/imports", Auth::None, json!([]))
        .await
        .assert_error(401, "AUTH_REQUIRED");
}

/// Peak resident memory of this process since the last reset, in bytes
/// (each test runs in its own process under nextest).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

fn reset_peak_rss() {
    // "5" resets the peak resident set size (Linux ≥ 4.0).
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

/// Writes a ChatGPT-style export of about `target` bytes, one conversation
/// at a time: 40 messages of ~1 KiB each, every fourth answer regenerated.
pub fn write_big_chatgpt(path: &std::path::Path, target: u64) -> usize {
    let f = std::fs::File::create(path).unwrap();
    let mut w = std::io::BufWriter::new(f);
    w.write_all(b"[").unwrap();
    let filler = "lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(18);
    let mut n = 0;
    let mut written = 0u64;
    while written < target {
        let mut nodes = vec![node("root", None, &[], Value::Null)];
        let mut parent = "root".to_string();
        for k in 0..40 {
            let nid = format!("n{k}");
            let role = if k % 2 == 0 { "user" } else { "assistant" };
            nodes.push(node(
                &nid,
                Some(&parent),
                &[],
                msg(
                    role,
                    1_700_000_000.0 + k as f64,
                    text(&[&format!("{k} {filler}")]),
                    Some("gpt-4o"),
                ),
            ));
            if k % 4 == 3 {
                let alt = format!("n{k}b");
                nodes.push(node(
                    &alt,
                    Some(&parent),
                    &[],
                    msg(
                        role,
                        1_700_000_000.5 + k as f64,
                        text(&[&format!("again {k} {filler}")]),
                        Some("gpt-4o"),
                    ),
                ));
            }
            parent = nid;
        }
        let c = json!({"title": format!("Big {n}"), "id": format!("big-{n}"), "create_time": 1_700_000_000.0,
            "update_time": 1_700_000_000.0 + n as f64, "current_node": parent, "mapping": mapping(nodes)});
        let bytes = serde_json::to_vec(&c).unwrap();
        if n > 0 {
            w.write_all(b",").unwrap();
        }
        w.write_all(&bytes).unwrap();
        written += bytes.len() as u64 + 1;
        n += 1;
    }
    w.write_all(b"]").unwrap();
    w.flush().unwrap();
    n
}

/// A 24 MiB ChatGPT export imports as a job with the server's peak RSS
/// rising by less than [`BOUND`]: the file is streamed to disk and read one
/// conversation at a time, never held whole. (`benches/import.rs` measures
/// the same with 200 MB.)
#[tokio::test]
async fn a_large_export_imports_with_bounded_memory() {
    const BOUND: u64 = 160 * 1024 * 1024;
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conversations.json");
    let n = write_big_chatgpt(&path, 24 * 1024 * 1024);
    let size = std::fs::metadata(&path).unwrap().len();

    let before = {
        reset_peak_rss();
        peak_rss()
    };
    let file = tokio::fs::File::open(&path).await.unwrap();
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
    let r = s
        .http
        .post(s.url("/api/imports?name=big.json"))
        .header("cookie", format!("confab_session={}", admin.cookie))
        .header("x-csrf-token", &admin.csrf)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let r = common::Resp::from(r).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let jid = r.body["id"].as_str().unwrap().to_string();
    let mut seen_partial = false;
    let job = loop {
        let j = s
            .get(&format!("/api/imports/{jid}"), Auth::Session(&admin))
            .await;
        if j.body["status"] != "running" {
            break j.body;
        }
        let p = j.body["progress"].as_f64().unwrap();
        seen_partial |= p > 0.0 && p < 1.0;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let peak = peak_rss();
    assert_eq!(job["status"], "done", "{}", job["error"]);
    assert_eq!(job["imported"].as_u64().unwrap() as usize, n);
    assert!(seen_partial, "progress between 0 and 1 was reported");
    let grew = peak.saturating_sub(before);
    eprintln!(
        "imported {n} conversations ({} MiB): peak RSS {} MiB → {} MiB (+{} MiB)",
        size >> 20,
        before >> 20,
        peak >> 20,
        grew >> 20
    );
    assert!(grew < BOUND, "peak RSS grew by {} MiB", grew >> 20);
}

/// A job cut off by a server stop is listed `interrupted` after the restart
/// with what it had imported (the job is kept in the store, not in the
/// process); importing the same file again finishes it, adding only what
/// is missing.
#[tokio::test]
async fn an_import_cut_off_by_a_restart_is_interrupted_and_running_it_again_finishes_it() {
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conversations.json");
    let n = write_big_chatgpt(&path, 12 * 1024 * 1024);
    let body = std::fs::read(&path).unwrap();
    let r = upload(
        &s,
        &admin,
        "/api/imports?name=big.json",
        "application/json",
        body.clone(),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let jid = r.body["id"].as_str().unwrap().to_string();
    // Until a batch is stored, while the job still runs.
    let mut polls = 0;
    loop {
        let j = s
            .get(&format!("/api/imports/{jid}"), Auth::Session(&admin))
            .await;
        assert_eq!(j.body["status"], "running", "stopped too late: {}", j.text);
        if j.body["imported"].as_u64().unwrap() > 0 {
            break;
        }
        polls += 1;
        assert!(polls < 6000, "no batch was stored");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let s = TestServer::start_in(s.stop().await, |_| {}).await;
    let j = s
        .get(&format!("/api/imports/{jid}"), Auth::Session(&admin))
        .await;
    assert_eq!(j.status, 200, "{}", j.text);
    assert_eq!(j.body["status"], "interrupted", "{}", j.text);
    assert_eq!(j.body["file_name"], "big.json");
    let first = j.body["imported"].as_u64().unwrap();
    assert!(first > 0 && (first as usize) < n, "{}", j.text);
    let why = j.body["error"].as_str().unwrap();
    assert!(
        why.contains("importing the same file again adds the rest"),
        "{why}"
    );
    assert!(!why.contains("panic") && !why.contains("abort"), "{why}");
    let list = s.get("/api/imports", Auth::Session(&admin)).await;
    assert_eq!(list.body["items"][0]["id"], jid.as_str());
    assert_eq!(list.body["items"][0]["status"], "interrupted");
    // Another user does not see it.
    let bob = s.user(&admin, "bob").await;
    s.get(&format!("/api/imports/{jid}"), Auth::Session(&bob))
        .await
        .assert_error(404, "NOT_FOUND");

    // The same file again: the rest is added, nothing twice.
    let again = import_job(&s, &admin, "big.json", "application/json", body).await;
    assert_eq!(again["status"], "done", "{}", again["error"]);
    let (added, skipped) = (
        again["imported"].as_u64().unwrap(),
        again["skipped"].as_u64().unwrap(),
    );
    // The batch under way at the stop may have been stored after the job
    // last said so: at least what it said is skipped.
    assert!(skipped >= first, "{skipped} < {first}");
    assert_eq!((added + skipped) as usize, n);
    let report = &again["report"];
    assert_eq!(report["skipped"].as_array().unwrap().len() as u64, skipped);
    assert!(
        report["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["reason"] == "already imported")
    );
    let list = s.get("/api/imports", Auth::Session(&admin)).await;
    let statuses: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["done", "interrupted"]);
}
