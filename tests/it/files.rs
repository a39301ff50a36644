//! `/api/files`: upload (multipart), list, read, download, thumbnails,
//! delete; and what hostile files get: empty, path-like names, polyglots,
//! oversized bodies (refused before they are read whole), image bombs,
//! other users' ids, full quotas, unknown types.

use crate::common::{Auth, Resp, Session, TestServer};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// A PNG of `w`×`h` pixels (a gradient, so it does not compress to nothing).
pub fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// A JPEG of `w`×`h` pixels.
pub fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 200) as u8, 80, (y % 200) as u8])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(
            &mut std::io::Cursor::new(&mut out),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    out
}

const BOUNDARY: &str = "confab-test-boundary-7MA4YWxkTrZu0gW";

/// A `multipart/form-data` body with one field.
pub fn form(field: &str, name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

pub fn form_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

fn with_session(rb: reqwest::RequestBuilder, who: &Session) -> reqwest::RequestBuilder {
    rb.header("cookie", format!("confab_session={}", who.cookie))
        .header("x-csrf-token", &who.csrf)
}

/// `POST /api/files` with one file.
pub async fn upload(s: &TestServer, who: &Session, name: &str, bytes: &[u8]) -> Resp {
    let rb = s
        .http
        .post(s.url("/api/files"))
        .header("content-type", form_type())
        .body(form("file", name, bytes));
    Resp::from(with_session(rb, who).send().await.unwrap()).await
}

/// Uploads and returns the file's id.
pub async fn uploaded(s: &TestServer, who: &Session, name: &str, bytes: &[u8]) -> String {
    let r = upload(s, who, name, bytes).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body["id"].as_str().unwrap().to_string()
}

/// A GET with `who`'s session, as the raw response (headers and bytes).
pub async fn raw_get(s: &TestServer, who: &Session, path: &str) -> reqwest::Response {
    s.http
        .get(s.url(path))
        .header("cookie", format!("confab_session={}", who.cookie))
        .send()
        .await
        .unwrap()
}

/// Every file under `dir`, relative.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(
                    e.path()
                        .strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .to_string(),
                );
            }
        }
    }
    out.sort();
    out
}

fn blob_files(dir: &Path) -> Vec<String> {
    files_under(&dir.join("blobs"))
        .into_iter()
        .filter(|f| !f.starts_with(".staging"))
        .collect()
}

#[tokio::test]
async fn upload_list_read_download_thumbnail_delete() {
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    let bytes = png(640, 480);
    let r = upload(&s, &admin, "holiday photo.png", &bytes).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let f = r.body.clone();
    assert_eq!(f["name"], "holiday photo.png");
    assert_eq!(f["mime"], "image/png");
    assert_eq!(f["kind"], "image");
    assert_eq!(f["size"], bytes.len() as u64);
    assert_eq!(
        (f["width"].as_u64(), f["height"].as_u64()),
        (Some(640), Some(480))
    );
    let id = f["id"].as_str().unwrap();

    let jpg = jpeg(300, 200);
    let j = uploaded(&s, &admin, "b.jpg", &jpg).await;
    let list = s.get("/api/files", Auth::Session(&admin)).await;
    assert_eq!(list.status, 200);
    let ids: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![j.as_str(), id], "newest first");
    assert_eq!(list.body["used_bytes"], (bytes.len() + jpg.len()) as u64);
    assert_eq!(list.body["quota_bytes"], 1024 * 1024 * 1024u64);
    assert_eq!(list.body["max_file_bytes"], 25 * 1024 * 1024u64);
    let page = s.get("/api/files?limit=1", Auth::Session(&admin)).await;
    assert_eq!(page.body["items"].as_array().unwrap().len(), 1);
    let next = page.body["next_cursor"].as_str().unwrap();
    let page2 = s
        .get(
            &format!("/api/files?limit=1&cursor={next}"),
            Auth::Session(&admin),
        )
        .await;
    assert_eq!(page2.body["items"][0]["id"], id);
    assert_eq!(page2.body["next_cursor"], Value::Null);

    let one = s
        .get(&format!("/api/files/{id}"), Auth::Session(&admin))
        .await;
    assert_eq!(one.body, f);

    // Download: an attachment with the detected type, never sniffed.
    let d = raw_get(&s, &admin, &format!("/api/files/{id}/content")).await;
    assert_eq!(d.status(), 200);
    let h = d.headers().clone();
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("sandbox")
    );
    assert_eq!(
        h["content-disposition"],
        "attachment; filename=\"holiday photo.png\"; filename*=UTF-8''holiday%20photo.png"
    );
    assert_eq!(&d.bytes().await.unwrap()[..], &bytes[..]);
    let inline = raw_get(&s, &admin, &format!("/api/files/{id}/content?inline=1")).await;
    assert!(
        inline.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("inline;")
    );

    // A thumbnail, made once.
    let t = raw_get(&s, &admin, &format!("/api/files/{id}/thumbnail")).await;
    assert_eq!(t.status(), 200);
    assert_eq!(t.headers()["content-type"], "image/jpeg");
    let thumb = t.bytes().await.unwrap();
    let img = image::load_from_memory(&thumb).unwrap();
    assert_eq!((img.width(), img.height()), (256, 192));
    let again = raw_get(&s, &admin, &format!("/api/files/{id}/thumbnail")).await;
    assert_eq!(again.bytes().await.unwrap(), thumb);

    // Delete: the record, its content and its thumbnail go.
    assert_eq!(blob_files(&s.data_dir()).len(), 3);
    let r = s
        .delete(&format!("/api/files/{id}"), Auth::Session(&admin))
        .await;
    assert_eq!(r.status, 204);
    s.get(&format!("/api/files/{id}"), Auth::Session(&admin))
        .await
        .assert_error(404, "NOT_FOUND");
    assert_eq!(blob_files(&s.data_dir()).len(), 1, "only the JPEG is left");
    let audit = s
        .get("/api/admin/audit?action=file.", Auth::Session(&admin))
        .await;
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["file.delete", "file.upload", "file.upload"]);
}

#[tokio::test]
async fn the_same_bytes_are_stored_once_and_kept_while_referenced() {
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    let bob = s.user(&admin, "bob").await;
    let bytes = b"# Notes\n\nThe same text twice.\n";
    let a = uploaded(&s, &admin, "a.md", bytes).await;
    let b = uploaded(&s, &bob, "b.md", bytes).await;
    assert_eq!(blob_files(&s.data_dir()).len(), 1);
    s.delete(&format!("/api/files/{a}"), Auth::Session(&admin))
        .await;
    let d = raw_get(&s, &bob, &format!("/api/files/{b}/content")).await;
    assert_eq!(d.status(), 200);
    assert_eq!(d.headers()["content-type"], "text/markdown; charset=utf-8");
    assert_eq!(&d.bytes().await.unwrap()[..], &bytes[..]);
    s.delete(&format!("/api/files/{b}"), Auth::Session(&bob))
        .await;
    assert!(blob_files(&s.data_dir()).is_empty());
}

#[tokio::test]
async fn types_come_from_the_content_and_others_are_refused() {
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    let r = upload(&s, &admin, "photo.txt", &jpeg(20, 10)).await;
    assert_eq!(r.body["mime"], "image/jpeg", "{}", r.text);
    let r = upload(
        &s,
        &admin,
        "report.png",
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n",
    )
    .await;
    assert_eq!(r.body["mime"], "application/pdf", "{}", r.text);
    let r = upload(&s, &admin, "data.csv", b"a,b\n1,2\n").await;
    assert_eq!(r.body["mime"], "text/csv");
    let r = upload(&s, &admin, "main.rs", b"fn main() {}\n").await;
    assert_eq!(r.body["mime"], "text/plain");
    assert_eq!(r.body["kind"], "text");
    // An executable, an archive, binary junk.
    for (name, bytes) in [
        (
            "tool.txt",
            &b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0>\0"[..],
        ),
        ("a.zip", &b"PK\x03\x04\x14\0\0\0\x08\0"[..]),
        ("blob.md", &b"\0\x01\x02\x03\xff\xfe"[..]),
    ] {
        let r = upload(&s, &admin, name, bytes).await;
        r.assert_error(415, "UNSUPPORTED_FILE_TYPE");
    }
}

#[tokio::test]
async fn hostile_empty_files_path_names_and_polyglots() {
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    let r = upload(&s, &admin, "empty.txt", b"").await;
    r.assert_error(400, "FILE_EMPTY");
    assert!(r.body["message"].as_str().unwrap().contains("empty"));

    // A name that is a path: only its last part is kept, and no path is
    // built from it.
    let r = upload(
        &s,
        &admin,
        "../../etc/passwd",
        b"root:x:0:0:root:/root:/bin/bash\n",
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["name"], "passwd");
    let parent = s.data_dir().parent().unwrap().to_path_buf();
    assert!(!parent.join("etc").exists());
    assert!(!s.data_dir().join("etc").exists());
    for f in files_under(&s.data_dir()) {
        assert!(!f.contains("passwd"), "{f}");
    }
    let r = upload(&s, &admin, "..\\..\\x\u{202e}gnp.exe", b"hello\n").await;
    assert_eq!(r.body["name"], "xgnp.exe");

    // HTML hidden behind a PNG header: an image/png, never served as HTML.
    let mut poly = png(4, 4);
    poly.extend_from_slice(b"<html><body><script>alert(document.cookie)</script></body></html>");
    let r = upload(&s, &admin, "page.html", &poly).await;
    assert_eq!(r.body["mime"], "image/png", "{}", r.text);
    let id = r.body["id"].as_str().unwrap();
    for q in ["", "?inline=1"] {
        let d = raw_get(&s, &admin, &format!("/api/files/{id}/content{q}")).await;
        let h = d.headers();
        assert_eq!(h["content-type"], "image/png");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("sandbox")
        );
    }
    // HTML itself is a download (even asked for inline), sandboxed.
    let r = upload(
        &s,
        &admin,
        "page.html",
        b"<!DOCTYPE html><script>alert(1)</script>",
    )
    .await;
    assert_eq!(r.body["mime"], "text/html");
    let id = r.body["id"].as_str().unwrap();
    let d = raw_get(&s, &admin, &format!("/api/files/{id}/content?inline=1")).await;
    let h = d.headers();
    assert!(
        h["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment;")
    );
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
    // No thumbnail of what is not an image.
    let t = raw_get(&s, &admin, &format!("/api/files/{id}/thumbnail")).await;
    assert_eq!(t.status(), 404);
}

/// A PNG whose header claims a 100000×100000 canvas: refused from the
/// header, never decoded.
#[tokio::test]
async fn hostile_image_bombs_are_refused() {
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    let mut bomb = png(1, 1);
    bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    let r = upload(&s, &admin, "bomb.png", &bomb).await;
    r.assert_error(422, "FILE_UNREADABLE");
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("100000×100000"),
        "{}",
        r.text
    );
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[tokio::test]
async fn oversized_uploads_are_refused_before_the_body_is_read() {
    const LIMIT: u64 = 64 * 1024;
    let s = TestServer::start_with(|c| c.files.max_file_bytes = LIMIT).await;
    let admin = s.setup_admin("admin").await;
    // By Content-Length: refused at once.
    let r = upload(&s, &admin, "big.txt", &vec![b'a'; 200 * 1024]).await;
    r.assert_error(413, "PAYLOAD_TOO_LARGE");
    assert!(
        r.body["message"].as_str().unwrap().contains("64 KiB"),
        "{}",
        r.text
    );
    // Just under the limit is fine.
    let r = upload(&s, &admin, "fits.txt", &vec![b'a'; LIMIT as usize]).await;
    assert_eq!(r.status, 201, "{}", r.text);

    // No Content-Length (chunked), sent slowly: the answer comes once the
    // bytes received pass the limit, while most of the body is unsent.
    let chunk = vec![b'b'; 16 * 1024];
    let total_chunks = 64; // 1 MiB in all
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    let head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"slow.txt\"\r\n\r\n"
    );
    let body = futures::stream::once(async move { Ok::<_, std::io::Error>(head.into_bytes()) })
        .chain(futures::stream::iter(0..total_chunks).then(move |_| {
            let chunk = chunk.clone();
            let counter = counter.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, std::io::Error>(chunk)
            }
        }));
    let started = Instant::now();
    let rb = s
        .http
        .post(s.url("/api/files"))
        .header("content-type", crate::files::form_type())
        .body(reqwest::Body::wrap_stream(body));
    let resp = with_session(rb, &admin).send().await;
    let chunks_sent = sent.load(std::sync::atomic::Ordering::SeqCst);
    let elapsed = started.elapsed();
    // The server may close the connection before reading the rest: either
    // the 413 arrives, or the send fails because the server stopped reading.
    if let Ok(resp) = resp {
        let r = Resp::from(resp).await;
        r.assert_error(413, "PAYLOAD_TOO_LARGE");
    }
    assert!(
        chunks_sent < total_chunks / 2,
        "answered after {chunks_sent} of {total_chunks} chunks ({elapsed:?})"
    );
    assert!(
        elapsed < Duration::from_millis(50 * total_chunks as u64 / 2),
        "{elapsed:?}"
    );
    // Nothing of it was kept.
    let list = s.get("/api/files", Auth::Session(&admin)).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    assert!(files_under(&s.data_dir().join("blobs/.staging")).is_empty());
}

#[tokio::test]
async fn another_users_file_is_not_found_anywhere() {
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    let eve = s.user(&admin, "eve").await;
    let id = uploaded(&s, &admin, "secret.png", &png(8, 8)).await;
    for path in [
        format!("/api/files/{id}"),
        format!("/api/files/{id}/content"),
        format!("/api/files/{id}/thumbnail"),
    ] {
        s.get(&path, Auth::Session(&eve))
            .await
            .assert_error(404, "NOT_FOUND");
    }
    s.delete(&format!("/api/files/{id}"), Auth::Session(&eve))
        .await
        .assert_error(404, "NOT_FOUND");
    let list = s.get("/api/files", Auth::Session(&eve)).await;
    assert!(list.body["items"].as_array().unwrap().is_empty());
    // Not an id at all: the same 404.
    s.get("/api/files/not-an-id", Auth::Session(&eve))
        .await
        .assert_error(404, "NOT_FOUND");
    // Still there for its owner.
    assert_eq!(
        s.get(&format!("/api/files/{id}"), Auth::Session(&admin))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn the_storage_quota_is_enforced_with_admin_overrides() {
    let s = TestServer::start_with(|c| c.files.quota_bytes_per_user = 10_000).await;
    let admin = s.setup_admin("admin").await;
    let bob = s.user(&admin, "bob").await;
    let r = upload(&s, &bob, "a.txt", &vec![b'a'; 6_000]).await;
    assert_eq!(r.status, 201);
    let r = upload(&s, &bob, "b.txt", &vec![b'b'; 6_000]).await;
    r.assert_error(413, "STORAGE_QUOTA_EXCEEDED");
    assert!(
        r.body["message"].as_str().unwrap().contains("quota"),
        "{}",
        r.text
    );
    // An admin raises bob's quota.
    let r = s
        .patch(
            &format!("/api/admin/users/{}", bob.user_id),
            Auth::Session(&admin),
            json!({"quota": {"storage_bytes": 20_000}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["effective_quota"]["storage_bytes"], 20_000);
    let r = upload(&s, &bob, "b.txt", &vec![b'b'; 6_000]).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let list = s.get("/api/files", Auth::Session(&bob)).await;
    assert_eq!(list.body["used_bytes"], 12_000);
    assert_eq!(list.body["quota_bytes"], 20_000);
}

#[tokio::test]
async fn uploads_need_the_csrf_token_and_a_file_field() {
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    let r = s
        .http
        .post(s.url("/api/files"))
        .header("cookie", format!("confab_session={}", admin.cookie))
        .header("content-type", form_type())
        .body(form("file", "a.txt", b"hi"))
        .send()
        .await
        .unwrap();
    Resp::from(r).await.assert_error(403, "CSRF_INVALID");
    let rb = s
        .http
        .post(s.url("/api/files"))
        .header("content-type", form_type())
        .body(form("other", "a.txt", b"hi"));
    let r = Resp::from(with_session(rb, &admin).send().await.unwrap()).await;
    r.assert_error(400, "VALIDATION_FAILED");
    let rb = s
        .http
        .post(s.url("/api/files"))
        .header("content-type", "application/json")
        .body("{}");
    let r = Resp::from(with_session(rb, &admin).send().await.unwrap()).await;
    r.assert_error(400, "VALIDATION_FAILED");
    let r = s.get("/api/files", Auth::None).await;
    r.assert_error(401, "AUTH_REQUIRED");
}

/// A backup taken while the server runs carries the files' content; a
/// restore into another data directory brings records and bytes back
/// (and the stopped-directory backup does the same).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_keep_files() {
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    let image = png(300, 200);
    let text = b"# Notes\nkept across a restore\n".to_vec();
    let a = uploaded(&s, &admin, "kept.png", &image).await;
    let b = uploaded(&s, &admin, "notes.md", &text).await;
    let gone = uploaded(&s, &admin, "gone.txt", b"deleted before the backup\n").await;
    s.delete(&format!("/api/files/{gone}"), Auth::Session(&admin))
        .await;
    let r = raw_get(&s, &admin, "/api/admin/backup").await;
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("backup.redb");
    std::fs::write(&file, &bytes).unwrap();
    let header = confab::store::backup::read_header(&file).unwrap();
    assert_eq!(header.blobs, 2, "{header:?}");
    let old = s.stop().await;

    // Restore into a new data directory and start a server on it.
    let fresh = tempfile::tempdir().unwrap();
    confab::ops::backup::restore_command(fresh.path(), &file).unwrap();
    let s2 = TestServer::start_in(fresh, |_| {}).await;
    let admin2 = s2.login("admin", crate::common::PASSWORD).await;
    let list = s2.get("/api/files", Auth::Session(&admin2)).await;
    let names: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["notes.md", "kept.png"]);
    assert_eq!(list.body["used_bytes"], (image.len() + text.len()) as u64);
    let d = raw_get(&s2, &admin2, &format!("/api/files/{a}/content")).await;
    assert_eq!(&d.bytes().await.unwrap()[..], &image[..]);
    let d = raw_get(&s2, &admin2, &format!("/api/files/{b}/content")).await;
    assert_eq!(&d.bytes().await.unwrap()[..], &text[..]);
    let t = raw_get(&s2, &admin2, &format!("/api/files/{a}/thumbnail")).await;
    assert_eq!(t.status(), 200);
    drop(s2.stop().await);

    // A backup of the stopped directory carries them too.
    let stopped = work.path().join("stopped.redb");
    let (h, via) =
        confab::ops::backup::backup_command(old.path(), &stopped, "http://127.0.0.1:9", None)
            .await
            .unwrap();
    assert_eq!(via, confab::ops::backup::BackupVia::StoppedDataDir);
    assert_eq!(h.blobs, 2);
    let again = tempfile::tempdir().unwrap();
    confab::ops::backup::restore_command(again.path(), &stopped).unwrap();
    assert_eq!(blob_files(again.path()).len(), 2);
}

/// A full export carries the user's files (base64) and the messages'
/// references; importing it stores the files as the importer's (through
/// the upload checks) and points the messages at them.
#[tokio::test]
async fn export_and_import_carry_files() {
    use base64::Engine;
    let (s, _up, admin) = crate::common::chat_server(&["gpt-4o"], |_| {}).await;
    let image = png(120, 80);
    let id = uploaded(&s, &admin, "sketch.png", &image).await;
    let r = crate::common::chat(
        &s,
        &admin,
        json!({"content": "what is this", "model": "gpt-4o", "attachments": [id]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let export = s.get("/api/export", Auth::Session(&admin)).await;
    assert_eq!(export.status, 200);
    let files = export.body["files"].as_array().unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["id"], id.as_str());
    assert_eq!(files[0]["name"], "sketch.png");
    let content = base64::engine::general_purpose::STANDARD
        .decode(files[0]["content_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(content, image);
    let msgs = export.body["conversations"][0]["messages"]
        .as_array()
        .unwrap();
    let user = msgs.iter().find(|m| m["role"] == "user").unwrap();
    assert_eq!(user["attachments"][0]["id"], id.as_str());

    // Bob imports it: his own copy of the file, his messages point at it.
    let bob = s.user(&admin, "bob").await;
    let r = s
        .post("/api/import", Auth::Session(&bob), export.body.clone())
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["files_imported"], 1, "{}", r.text);
    assert_eq!(r.body["imported"].as_array().unwrap().len(), 1);
    let list = s.get("/api/files", Auth::Session(&bob)).await;
    let mine = list.body["items"][0]["id"].as_str().unwrap().to_string();
    assert_ne!(mine, id, "a new file");
    let d = raw_get(&s, &bob, &format!("/api/files/{mine}/content")).await;
    assert_eq!(&d.bytes().await.unwrap()[..], &image[..]);
    let cid = r.body["imported"][0]["id"].as_str().unwrap();
    let m = s
        .get(
            &format!("/api/conversations/{cid}/messages"),
            Auth::Session(&bob),
        )
        .await;
    let user = m.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "user")
        .unwrap()
        .clone();
    assert_eq!(user["attachments"][0]["id"], mine.as_str());
    // The admin's file is still not bob's.
    s.get(&format!("/api/files/{id}"), Auth::Session(&bob))
        .await
        .assert_error(404, "NOT_FOUND");
}
