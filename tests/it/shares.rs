//! Share links through the real server: a snapshot of the shown branch at
//! an unguessable URL, anonymous or signed-in-only access, revocation,
//! "continue this chat", and that a token reaches nothing else of the
//! owner's (IDOR). Also deleting every chat.

use crate::common;

use common::{Auth, Session, TestServer};
use serde_json::{Value, json};

/// A conversation with a regenerated answer, imported (no provider needed):
/// the shown branch is q → a2.
async fn conversation(s: &TestServer, who: &Session, title: &str) -> String {
    let doc = json!({"format": "confab.conversation.v1", "conversation": {"title": title, "current_leaf": "a2", "model": "m1"},
    "messages": [
        {"id": "q", "role": "user", "content": "secret question"},
        {"id": "a1", "parent_id": "q", "role": "assistant", "content": "first answer, not shown"},
        {"id": "a2", "parent_id": "q", "role": "assistant", "content": "second answer", "model": "m1"}
    ]});
    let r = s.post("/api/import", Auth::Session(who), doc).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["imported"][0]["id"].as_str().unwrap().to_string()
}

async fn share(s: &TestServer, who: &Session, cid: &str, signed_in_only: bool) -> Value {
    let r = s
        .post(
            &format!("/api/conversations/{cid}/shares"),
            Auth::Session(who),
            json!({"signed_in_only": signed_in_only}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body
}

#[tokio::test]
async fn share_links_show_the_snapshot_to_the_token_only_until_revoked() {
    let s = TestServer::start().await;
    let admin = s.setup_admin("alice").await;
    let bob = s.user(&admin, "bob").await;
    let cid = conversation(&s, &admin, "Shared one").await;
    let other = conversation(&s, &admin, "Private one").await;

    let sh = share(&s, &admin, &cid, false).await;
    let token = sh["token"].as_str().unwrap();
    // 256 bits, base64url.
    assert_eq!(token.len(), 43);
    assert!(
        sh["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/s/{token}"))
    );
    assert_eq!(sh["conversation_id"], cid.as_str());

    // Anyone with the token reads the shown branch, and nothing that names
    // the owner, the conversation or its messages.
    let r = s.get(&format!("/api/shared/{token}"), Auth::None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["title"], "Shared one");
    assert_eq!(r.body["signed_in"], false);
    let contents: Vec<&str> = r.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["secret question", "second answer"]);
    assert!(!r.text.contains(&cid), "{}", r.text);
    assert!(!r.text.contains(&admin.user_id), "{}", r.text);
    assert!(!r.text.contains("alice"), "{}", r.text);
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));

    // Later changes to the conversation do not show through the link.
    s.patch(
        &format!("/api/conversations/{cid}"),
        Auth::Session(&admin),
        json!({"title": "Renamed"}),
    )
    .await;
    let r = s.get(&format!("/api/shared/{token}"), Auth::None).await;
    assert_eq!(r.body["title"], "Shared one");

    // The token opens nothing else: not the conversation, its messages,
    // its export, nor the owner's other conversation.
    for path in [
        format!("/api/conversations/{cid}"),
        format!("/api/conversations/{cid}/tree"),
        format!("/api/conversations/{cid}/export"),
        format!("/api/conversations/{other}"),
        "/api/conversations".to_string(),
        "/api/shares".to_string(),
    ] {
        let r = s
            .http
            .get(s.url(&path))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let r = s.get(&path, Auth::None).await;
        r.assert_error(401, "AUTH_REQUIRED");
    }
    // Bob, signed in, can read the link but not the conversation behind it.
    s.get(&format!("/api/conversations/{cid}"), Auth::Session(&bob))
        .await
        .assert_error(404, "CONVERSATION_NOT_FOUND");
    // Guessed or altered tokens are 404, like revoked ones.
    let mut altered = token.to_string();
    altered.replace_range(0..1, if token.starts_with('A') { "B" } else { "A" });
    for t in [altered.as_str(), "x", &cid, sh["id"].as_str().unwrap()] {
        s.get(&format!("/api/shared/{t}"), Auth::None)
            .await
            .assert_error(404, "NOT_FOUND");
    }
    // Bob cannot share, list or revoke alice's.
    s.post(
        &format!("/api/conversations/{cid}/shares"),
        Auth::Session(&bob),
        json!({}),
    )
    .await
    .assert_error(404, "CONVERSATION_NOT_FOUND");
    let theirs = s.get("/api/shares", Auth::Session(&bob)).await;
    assert_eq!(theirs.body["items"], json!([]));
    s.delete(
        &format!("/api/shares/{}", sh["id"].as_str().unwrap()),
        Auth::Session(&bob),
    )
    .await
    .assert_error(404, "NOT_FOUND");

    // The shared page is a page of its own, not the app shell.
    let page = s
        .http
        .get(s.url(&format!("/s/{token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let body = page.text().await.unwrap();
    assert!(body.contains("/js/share-page.js"), "{body}");
    assert!(!body.contains("/app.js"), "{body}");

    // Listed in the owner's settings.
    let mine = s.get("/api/shares", Auth::Session(&admin)).await;
    assert_eq!(mine.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(mine.body["items"][0]["token"], token);

    // Continue this chat: a copy in bob's account, the owner's untouched.
    let c = s
        .post(
            &format!("/api/shared/{token}/continue"),
            Auth::Session(&bob),
            json!({}),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.text);
    let copy = c.body["id"].as_str().unwrap();
    assert_ne!(copy, cid);
    let t = s
        .get(
            &format!("/api/conversations/{copy}/tree"),
            Auth::Session(&bob),
        )
        .await;
    let items = t.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[1]["parent_id"], items[0]["id"]);
    assert_eq!(t.body["current_leaf"], items[1]["id"]);
    let bobs = s.get("/api/conversations", Auth::Session(&bob)).await;
    assert_eq!(bobs.body["items"].as_array().unwrap().len(), 1);
    // Continuing needs an account.
    s.post(
        &format!("/api/shared/{token}/continue"),
        Auth::None,
        json!({}),
    )
    .await
    .assert_error(401, "AUTH_REQUIRED");

    // Revoked: the link stops at once.
    let r = s
        .delete(
            &format!("/api/shares/{}", sh["id"].as_str().unwrap()),
            Auth::Session(&admin),
        )
        .await;
    assert_eq!(r.status, 204);
    s.get(&format!("/api/shared/{token}"), Auth::None)
        .await
        .assert_error(404, "NOT_FOUND");
    s.post(
        &format!("/api/shared/{token}/continue"),
        Auth::Session(&bob),
        json!({}),
    )
    .await
    .assert_error(404, "NOT_FOUND");
    let mine = s.get("/api/shares", Auth::Session(&admin)).await;
    assert_eq!(mine.body["items"], json!([]));
}

#[tokio::test]
async fn signed_in_only_links_and_deleting_every_chat() {
    let s = TestServer::start().await;
    let admin = s.setup_admin("alice").await;
    let bob = s.user(&admin, "bob").await;
    let cid = conversation(&s, &admin, "Members").await;
    let sh = share(&s, &admin, &cid, true).await;
    let token = sh["token"].as_str().unwrap();
    s.get(&format!("/api/shared/{token}"), Auth::None)
        .await
        .assert_error(401, "AUTH_REQUIRED");
    let r = s
        .get(&format!("/api/shared/{token}"), Auth::Session(&bob))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["signed_in"], true);
    assert_eq!(r.body["signed_in_only"], true);

    // Deleting a conversation revokes its links.
    let two = conversation(&s, &admin, "Two").await;
    let sh2 = share(&s, &admin, &two, false).await;
    s.delete(&format!("/api/conversations/{two}"), Auth::Session(&admin))
        .await;
    s.get(
        &format!("/api/shared/{}", sh2["token"].as_str().unwrap()),
        Auth::None,
    )
    .await
    .assert_error(404, "NOT_FOUND");

    // Delete all: needs the confirmation, deletes only the caller's.
    conversation(&s, &admin, "Three").await;
    conversation(&s, &bob, "Bob's").await;
    s.delete("/api/conversations", Auth::Session(&admin))
        .await
        .assert_error(400, "VALIDATION_FAILED");
    let r = s
        .delete("/api/conversations?confirm=all", Auth::Session(&admin))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["deleted"], 2);
    let left = s.get("/api/conversations", Auth::Session(&admin)).await;
    assert_eq!(left.body["items"], json!([]));
    let bobs = s.get("/api/conversations", Auth::Session(&bob)).await;
    assert_eq!(bobs.body["items"].as_array().unwrap().len(), 1);
    // Their links went too.
    s.get(&format!("/api/shared/{token}"), Auth::Session(&bob))
        .await
        .assert_error(404, "NOT_FOUND");

    // The endpoints are in the OpenAPI document.
    let doc = s.get("/api/openapi.json", Auth::None).await;
    for p in [
        "/api/conversations/{id}/shares",
        "/api/shares",
        "/api/shares/{id}",
        "/api/shared/{token}",
        "/api/shared/{token}/continue",
        "/api/imports",
        "/api/imports/{id}",
    ] {
        assert!(doc.body["paths"].get(p).is_some(), "{p}");
    }
}

/// A shared conversation's files: listed on the snapshot without the
/// owner's file ids, served through the token only (by their place in the
/// snapshot, with the headers of `/api/files`), never another file of the
/// owner's; "continue this chat" copies them into the viewer's own files,
/// or copies nothing when they do not fit the viewer's quota.
#[tokio::test]
async fn shared_files_are_served_through_the_token_and_copied_on_continue() {
    use crate::files::{png, uploaded};
    let (s, _up, admin) =
        common::chat_server(&["gpt-4o"], |c| c.files.quota_bytes_per_user = 1_000_000).await;
    let image = png(40, 30);
    let a = uploaded(&s, &admin, "cat.png", &image).await;
    let notes = b"# Notes\n\nThe quokka count is 417.\n".to_vec();
    let d = uploaded(&s, &admin, "notes.md", &notes).await;
    let private = uploaded(&s, &admin, "private.md", b"# Not shared\n").await;
    let r = common::chat(
        &s,
        &admin,
        json!({"content": "look at these", "model": "gpt-4o", "attachments": [a, d]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let convs = s.get("/api/conversations", Auth::Session(&admin)).await;
    let cid = convs.body["items"][0]["id"].as_str().unwrap().to_string();
    let sh = share(&s, &admin, &cid, false).await;
    let token = sh["token"].as_str().unwrap().to_string();

    let r = s.get(&format!("/api/shared/{token}"), Auth::None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let files = r.body["messages"][0]["attachments"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{}", r.text);
    assert_eq!(files[0]["name"], "cat.png");
    assert_eq!(files[0]["mime"], "image/png");
    assert_eq!(
        (files[0]["width"].as_u64(), files[0]["height"].as_u64()),
        (Some(40), Some(30))
    );
    assert_eq!(files[1]["name"], "notes.md");
    for id in [&a, &d, &private] {
        assert!(!r.text.contains(id.as_str()), "{}", r.text);
    }
    let (img_url, doc_url) = (
        files[0]["url"].as_str().unwrap().to_string(),
        files[1]["url"].as_str().unwrap().to_string(),
    );
    assert_eq!(img_url, format!("/api/shared/{token}/files/0"));

    // Anonymous, through the token: the bytes with the safe headers.
    let get = |path: String| {
        let http = s.http.clone();
        let url = s.url(&path);
        async move { http.get(url).send().await.unwrap() }
    };
    let r = get(format!("{img_url}?inline=1")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("inline")
    );
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
    assert_eq!(r.headers()["referrer-policy"], "no-referrer");
    assert_eq!(r.bytes().await.unwrap().as_ref(), image.as_slice());
    // Anything but an image is a download, even when asked inline.
    let r = get(format!("{doc_url}?inline=1")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), notes.as_slice());

    // IDOR: past the snapshot's files, ids of the owner's files, another
    // token, or nonsense: all 404, and nothing of the private file.
    for path in [
        format!("/api/shared/{token}/files/2"),
        format!("/api/shared/{token}/files/{private}"),
        format!("/api/shared/{token}/files/{a}"),
        format!("/api/shared/{token}/files/-1"),
        format!("/api/shared/{}/files/0", "A".repeat(43)),
        format!("/api/files/{private}/content"),
        format!("/api/files/{a}/content"),
    ] {
        let r = get(path.clone()).await;
        assert!(
            r.status() == 404 || r.status() == 401,
            "{path}: {}",
            r.status()
        );
        let body = r.text().await.unwrap();
        assert!(!body.contains("Not shared"), "{path}: {body}");
    }

    // A viewer whose storage is nearly full copies nothing, and is told.
    let bob = s.user(&admin, "bob").await;
    let r = s
        .patch(
            &format!("/api/admin/users/{}", bob.user_id),
            Auth::Session(&admin),
            json!({"quota": {"storage_bytes": 100}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = s
        .post(
            &format!("/api/shared/{token}/continue"),
            Auth::Session(&bob),
            json!({}),
        )
        .await;
    r.assert_error(413, "STORAGE_QUOTA_EXCEEDED");
    let mine = s.get("/api/files", Auth::Session(&bob)).await;
    assert_eq!(
        mine.body["items"].as_array().unwrap().len(),
        0,
        "{}",
        mine.text
    );
    let convs = s.get("/api/conversations", Auth::Session(&bob)).await;
    assert!(convs.body["items"].as_array().unwrap().is_empty());

    // With room: the chat and its files become the viewer's own.
    let r = s
        .patch(
            &format!("/api/admin/users/{}", bob.user_id),
            Auth::Session(&admin),
            json!({"quota": {"storage_bytes": 1_000_000}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = s
        .post(
            &format!("/api/shared/{token}/continue"),
            Auth::Session(&bob),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let bcid = r.body["id"].as_str().unwrap().to_string();
    let msgs = s
        .get(
            &format!("/api/conversations/{bcid}/messages"),
            Auth::Session(&bob),
        )
        .await;
    let first = &msgs.body["messages"][0];
    let att = first["attachments"].as_array().unwrap();
    assert_eq!(att.len(), 2, "{}", msgs.text);
    let copy = att[0]["id"].as_str().unwrap();
    assert_ne!(copy, a.as_str());
    let r = crate::files::raw_get(&s, &bob, &format!("/api/files/{copy}/content")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), image.as_slice());
    let mine = s.get("/api/files", Auth::Session(&bob)).await;
    assert_eq!(
        mine.body["items"].as_array().unwrap().len(),
        2,
        "{}",
        mine.text
    );
    // The owner's files are still theirs alone.
    let r = crate::files::raw_get(&s, &bob, &format!("/api/files/{a}/content")).await;
    assert_eq!(r.status(), 404, "the owner's file is not the viewer's");

    // Revoked: the files go with the link.
    let r = s
        .delete(
            &format!("/api/shares/{}", sh["id"].as_str().unwrap()),
            Auth::Session(&admin),
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(get(img_url).await.status(), 404);
}
