//! Documents answered with sources, through the real store and index of a
//! running server: real PDF and DOCX files made here, hostile files, and
//! retrieval that must find a fact on page 3 of 40.

use async_trait::async_trait;
use confab::error::{AppError, AppResult};
use confab::knowledge::extract::samples;
use confab::knowledge::{FileMeta, FileSource, Knowledge};
use confab::store::knowledge::DocumentStatus;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

use crate::common::TestServer;

/// Files kept in memory, standing in for uploads.
#[derive(Default)]
pub struct MemFiles {
    files: Mutex<HashMap<Uuid, (FileMeta, Vec<u8>)>>,
}

impl MemFiles {
    pub fn add(&self, owner: Uuid, name: &str, mime: &str, bytes: Vec<u8>) -> FileMeta {
        let meta = FileMeta {
            id: Uuid::now_v7(),
            owner,
            name: name.into(),
            mime: mime.into(),
        };
        self.files
            .lock()
            .unwrap()
            .insert(meta.id, (meta.clone(), bytes));
        meta
    }
}

#[async_trait]
impl FileSource for MemFiles {
    async fn meta(&self, owner: Uuid, id: Uuid) -> AppResult<FileMeta> {
        Ok(self.read(owner, id).await?.0)
    }
    async fn read(&self, owner: Uuid, id: Uuid) -> AppResult<(FileMeta, Vec<u8>)> {
        match self.files.lock().unwrap().get(&id) {
            Some((m, b)) if m.owner == owner => Ok((m.clone(), b.clone())),
            _ => Err(AppError::not_found("file")),
        }
    }
}

fn knowledge(s: &TestServer, files: Arc<MemFiles>) -> Arc<Knowledge> {
    let st = s.state();
    Knowledge::new(
        st.store.clone(),
        st.search.clone(),
        st.providers.clone(),
        files,
        None,
    )
}

/// Forty pages of plausible filler; page 3 alone holds the fact.
pub fn forty_pages() -> Vec<String> {
    let topics = [
        "quarterly revenue grew in the northern region",
        "the warehouse inventory was counted twice",
        "customer support answered most tickets within a day",
        "the marketing budget moved to online channels",
        "hiring slowed in the second half",
    ];
    (1..=40)
        .map(|p| {
            let mut lines = vec![format!("Annual report, page {p}")];
            for i in 0..25 {
                lines.push(format!(
                    "Section {p}.{i}: {} and the team reviewed item {}.",
                    topics[(p + i) % topics.len()],
                    p * 100 + i
                ));
            }
            if p == 3 {
                lines.insert(
                    10,
                    "The launch code of project Bluebird is 7391, kept by the night shift.".into(),
                );
            }
            lines.join("\n")
        })
        .collect()
}

/// Peak resident memory of this process, in MB (Linux).
fn peak_rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .unwrap_or(0)
        / 1024
}

#[tokio::test]
async fn a_fact_on_page_3_of_40_is_retrieved_with_its_page() {
    let s = TestServer::start().await;
    let files = Arc::new(MemFiles::default());
    let k = knowledge(&s, files.clone());
    let owner = Uuid::now_v7();
    let pdf = samples::pdf(&forty_pages());
    let f = files.add(owner, "annual-report.pdf", "application/pdf", pdf);
    let d = k.ensure(owner, f.id).await.unwrap();
    assert_eq!(d.status, DocumentStatus::Ready, "{:?}", d.error);
    assert_eq!(d.pages, Some(40));
    assert!(d.chunks >= 20, "{}", d.chunks);
    // Too big to send whole in 2,000 tokens: the best chunks go.
    assert!(d.tokens > 2000, "{}", d.tokens);
    let r = k
        .for_turn(
            owner,
            "What is the launch code of project Bluebird?",
            &[f.id],
            &[],
            2000,
        )
        .await
        .unwrap();
    let ctx = r.context.expect("passages");
    assert!(ctx.contains("7391"), "{ctx}");
    assert!(ctx.contains("annual-report.pdf (page 3"), "{ctx}");
    let hit = r
        .sources
        .iter()
        .find(|src| src.snippet.contains("7391"))
        .expect("a source holds the fact");
    assert_eq!(hit.span.page_start, Some(3));
    assert_eq!(hit.name, "annual-report.pdf");
    assert!(!hit.whole);
    assert!(r.sources.len() < d.chunks as usize);
    // Another user asking about the same file finds nothing of it.
    let err = k
        .for_turn(Uuid::now_v7(), "launch code", &[f.id], &[], 2000)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "NOT_FOUND");
    // A small budget that fits everything sends the document whole.
    let whole = k
        .for_turn(owner, "launch code", &[f.id], &[], 1_000_000)
        .await
        .unwrap();
    assert_eq!(whole.sources.len(), 1);
    assert!(whole.sources[0].whole);
    assert_eq!(whole.sources[0].span.page_start, Some(1));
    assert_eq!(whole.sources[0].span.page_end, Some(40));
    let text = whole.context.unwrap();
    assert!(text.contains("Annual report, page 40"));
    // Overlaps are dropped when chunks are joined again.
    assert_eq!(text.matches("Annual report, page 20\n").count(), 1);
}

#[tokio::test]
async fn docx_html_csv_and_code_are_read_with_locations() {
    let s = TestServer::start().await;
    let files = Arc::new(MemFiles::default());
    let k = knowledge(&s, files.clone());
    let owner = Uuid::now_v7();
    let docx = samples::docx(&[
        (Some("Title"), "Travel policy"),
        (Some("Heading1"), "Hotels"),
        (None, "Employees may book hotels up to 180 euros per night."),
    ]);
    let f = files.add(
        owner,
        "policy.docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        docx,
    );
    let r = k
        .for_turn(owner, "hotel limit per night", &[f.id], &[], 10_000)
        .await
        .unwrap();
    assert!(r.context.unwrap().contains("180 euros"));
    assert_eq!(r.sources[0].span.paragraph_start, Some(1));
    assert_eq!(r.sources[0].span.paragraph_end, Some(3));
    let code = files.add(
        owner,
        "main.rs",
        "text/plain",
        b"fn main() {\n    let answer = 42;\n    println!(\"{answer}\");\n}\n".to_vec(),
    );
    let html = files.add(
        owner,
        "page.html",
        "text/html",
        b"<html><script>secret()</script><body><h1>Menu</h1><p>Soup of the day: lentil.</p></body></html>"
            .to_vec(),
    );
    let csv = files.add(
        owner,
        "prices.csv",
        "text/csv",
        b"item,price\ntea,3\n".to_vec(),
    );
    let r = k
        .for_turn(
            owner,
            "what is in it",
            &[code.id, html.id, csv.id],
            &[],
            10_000,
        )
        .await
        .unwrap();
    let ctx = r.context.unwrap();
    assert!(ctx.contains("let answer = 42;"));
    assert!(ctx.contains("Soup of the day: lentil."));
    assert!(!ctx.contains("secret()"));
    assert!(ctx.contains("item: tea; price: 3"));
    assert_eq!(r.sources[0].span.line_start, Some(1));
    assert_eq!(r.sources[0].span.line_end, Some(4));
    assert_eq!(r.sources[1].span.heading.as_deref(), Some("Menu"));
}

#[tokio::test]
async fn hostile_files_fail_clearly_and_memory_stays_bounded() {
    let s = TestServer::start().await;
    let files = Arc::new(MemFiles::default());
    let k = knowledge(&s, files.clone());
    let owner = Uuid::now_v7();
    let before = peak_rss_mb();

    // A PDF whose one content stream inflates to 2 GB (about 2 MB on disk).
    let bomb = {
        use std::io::Write;
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..2048 {
            e.write_all(&zeros).unwrap();
        }
        let z = e.finish().unwrap();
        let mut pdf = format!(
            "%PDF-1.5\n1 0 obj\n<< /Length {} /Filter /FlateDecode >>\nstream\n",
            z.len()
        )
        .into_bytes();
        pdf.extend(z);
        pdf.extend(b"\nendstream\nendobj\n%%EOF\n");
        pdf
    };
    // A DOCX whose text part inflates to 1 GB.
    let zip_bomb = {
        use std::io::Write;
        let mut out = std::io::Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut out);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(true);
        zip.start_file("word/document.xml", opts).unwrap();
        let spaces = vec![b' '; 1 << 20];
        for _ in 0..1024 {
            zip.write_all(&spaces).unwrap();
        }
        zip.finish().unwrap();
        out.into_inner()
    };
    // Thousands of pages: read up to the page limit.
    let many: Vec<String> = (1..=2500).map(|i| format!("page {i}")).collect();
    let pdf = samples::pdf(&forty_pages());
    let truncated = pdf[..pdf.len() / 2].to_vec();
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        ("bomb.pdf", "application/pdf", bomb, "expand to more than"),
        (
            "bomb.docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            zip_bomb,
            "expands to more than",
        ),
        ("empty.txt", "text/plain", Vec::new(), "the file is empty"),
    ];
    for (name, mime, bytes, why) in cases {
        let f = files.add(owner, name, mime, bytes);
        let d = k.ensure(owner, f.id).await.unwrap();
        assert_eq!(d.status, DocumentStatus::Failed, "{name}");
        let e = d.error.clone().unwrap();
        assert!(e.contains(why), "{name}: {e}");
        // A turn with it attached is refused before any provider call.
        let err = k
            .for_turn(owner, "what does it say", &[f.id], &[], 2000)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "DOCUMENT_UNREADABLE", "{name}");
        assert!(err.to_string().contains(name), "{err}");
    }
    // Half a PDF: lopdf may rebuild what it can find; either some pages
    // are read, or a sentence says why none were.
    let f = files.add(owner, "cut.pdf", "application/pdf", truncated);
    let d = k.ensure(owner, f.id).await.unwrap();
    match d.status {
        DocumentStatus::Ready => assert!(d.chunks > 0),
        DocumentStatus::Failed => {
            let e = d.error.unwrap();
            assert!(e.contains("PDF") || e.contains("no text"), "{e}")
        }
    }
    let f = files.add(owner, "many.pdf", "application/pdf", samples::pdf(&many));
    let d = k.ensure(owner, f.id).await.unwrap();
    assert_eq!(d.status, DocumentStatus::Ready);
    assert_eq!(d.pages, Some(2500));
    assert!(d.truncated.unwrap().contains("first 2000 of 2500 pages"));

    // The bombs were refused by counting, not by inflating them: the
    // process never held anything near their size.
    let grew = peak_rss_mb().saturating_sub(before);
    assert!(grew < 400, "peak resident memory grew by {grew} MB");
    // The server is still up.
    let health = s.get("/health", crate::common::Auth::None).await;
    assert_eq!(health.status, 200);
}

/// Waits until the server has read a file (it reads in the background once
/// the file joins a collection).
pub async fn until_read(
    s: &TestServer,
    who: &crate::common::Session,
    file_id: &str,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let r = s
            .get(
                &format!("/api/documents/{file_id}"),
                crate::common::Auth::Session(who),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        if r.body["status"] != "pending" {
            return r.body;
        }
        assert!(std::time::Instant::now() < deadline, "never read");
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_collection_attached_to_a_chat_answers_from_page_3_with_sources() {
    use crate::common::{Auth, SseReader};
    use serde_json::json;
    let (s, up, admin) = crate::common::chat_server(&["gpt-test"], |_| {}).await;
    let pdf = samples::pdf(&forty_pages());
    let fid = crate::files::uploaded(&s, &admin, "annual-report.pdf", &pdf).await;
    let r = s
        .post(
            "/api/collections",
            Auth::Session(&admin),
            json!({"name": "Reports", "file_ids": [fid]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let cid = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["documents"][0]["file_id"], fid.as_str());
    let doc = until_read(&s, &admin, &fid).await;
    assert_eq!(doc["status"], "ready", "{doc}");
    assert_eq!(doc["pages"], 40);
    // A conversation with the collection attached.
    let r = s
        .post("/api/conversations", Auth::Session(&admin), json!({}))
        .await;
    let conv = r.body["id"].as_str().unwrap().to_string();
    let r = s
        .patch(
            &format!("/api/conversations/{conv}"),
            Auth::Session(&admin),
            json!({"collections": [cid]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["collections"], json!([cid]));
    let resp = s
        .http
        .post(s.url("/api/chat/stream"))
        .header("cookie", format!("confab_session={}", admin.cookie))
        .header("x-csrf-token", &admin.csrf)
        .json(&json!({
            "conversation_id": conv,
            "content": "What is the launch code of project Bluebird?",
            "model": "gpt-test"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let events = SseReader::new(resp).collect().await;
    let meta = &events[0];
    assert_eq!(meta.event, "meta");
    let page3 =
        |sources: &serde_json::Value| {
            sources.as_array().unwrap().iter().any(|src| {
                src["page_start"] == 3 && src["snippet"].as_str().unwrap().contains("7391")
            })
        };
    assert!(page3(&meta.data["sources"]), "{}", meta.data);
    let done = events.last().unwrap();
    assert_eq!(done.event, "done", "{:?}", done.data);
    assert_eq!(done.data["sources"], meta.data["sources"]);
    // The upstream got page 3's text, not the whole report (the answer's
    // request is the first; the title's comes after).
    let req = up.chat_requests().into_iter().next().unwrap();
    let sent = req.body.to_string();
    assert!(sent.contains("7391"), "{sent}");
    assert!(sent.contains("annual-report.pdf (page 3"), "{sent}");
    assert!(
        !sent.contains("Annual report, page 39"),
        "the whole document was sent"
    );
    // The stored answer keeps its sources.
    let r = s
        .get(&format!("/api/conversations/{conv}"), Auth::Session(&admin))
        .await;
    let answer = r.body["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(answer["role"], "assistant");
    assert!(page3(&answer["sources"]), "{answer}");

    // Another user sees none of it.
    let bob = s.user(&admin, "bob").await;
    for path in [
        format!("/api/collections/{cid}"),
        format!("/api/documents/{fid}"),
    ] {
        s.get(&path, Auth::Session(&bob))
            .await
            .assert_error(404, "NOT_FOUND");
    }
    let r = s
        .post("/api/conversations", Auth::Session(&bob), json!({}))
        .await;
    let bobs = r.body["id"].as_str().unwrap().to_string();
    s.patch(
        &format!("/api/conversations/{bobs}"),
        Auth::Session(&bob),
        json!({"collections": [cid]}),
    )
    .await
    .assert_error(404, "NOT_FOUND");
    s.patch(
        &format!("/api/collections/{cid}"),
        Auth::Session(&bob),
        json!({"name": "mine"}),
    )
    .await
    .assert_error(404, "NOT_FOUND");
    let r = s
        .post(
            "/api/collections",
            Auth::Session(&bob),
            json!({"name": "x", "file_ids": [fid]}),
        )
        .await;
    r.assert_error(404, "NOT_FOUND");
    s.delete(&format!("/api/collections/{cid}"), Auth::Session(&bob))
        .await
        .assert_error(404, "NOT_FOUND");

    // Deleting the file takes it out of the collection and the index.
    let r = s
        .delete(&format!("/api/files/{fid}"), Auth::Session(&admin))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = s
        .get(&format!("/api/collections/{cid}"), Auth::Session(&admin))
        .await;
    assert_eq!(r.body["documents"], json!([]));
    s.get(&format!("/api/documents/{fid}"), Auth::Session(&admin))
        .await
        .assert_error(404, "NOT_FOUND");
    let st = s.state();
    st.search.drain(&st.store).await.unwrap();
    assert_eq!(st.search.knowledge.num_docs(), 0);
    // Collections: list, rename, delete.
    let r = s
        .patch(
            &format!("/api/collections/{cid}"),
            Auth::Session(&admin),
            json!({"name": "Old reports"}),
        )
        .await;
    assert_eq!(r.body["name"], "Old reports");
    let r = s.get("/api/collections", Auth::Session(&admin)).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    let r = s
        .delete(&format!("/api/collections/{cid}"), Auth::Session(&admin))
        .await;
    assert_eq!(r.status, 204);
    s.post(
        "/api/collections",
        Auth::Session(&admin),
        json!({"name": " "}),
    )
    .await
    .assert_error(400, "VALIDATION_FAILED");
}

#[tokio::test]
async fn with_an_embedding_model_chunks_get_vectors_and_retrieval_is_hybrid() {
    use crate::common::Auth;
    use serde_json::json;
    let (s, up, admin) = crate::common::chat_server(&["gpt-test", "text-embedding-3-small"], |c| {
        c.embedding_model = Some("text-embedding-3-small".into());
    })
    .await;
    let fid = crate::files::uploaded(
        &s,
        &admin,
        "annual-report.pdf",
        &samples::pdf(&forty_pages()),
    )
    .await;
    let r = s
        .post(
            "/api/collections",
            Auth::Session(&admin),
            json!({"name": "R", "file_ids": [fid]}),
        )
        .await;
    let cid = r.body["id"].as_str().unwrap().to_string();
    let doc = until_read(&s, &admin, &fid).await;
    assert_eq!(doc["status"], "ready");
    let owner = Uuid::parse_str(&admin.user_id).unwrap();
    let f = Uuid::parse_str(&fid).unwrap();
    let st = s.state();
    // The vectors are stored as soon as the document is read... or a
    // moment later: reading and embedding are one background task.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let v = loop {
        if let Some(v) = st.store.get_vectors(owner, f).await.unwrap() {
            break v;
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };
    assert_eq!(v.scales.len() as u64, doc["chunks"].as_u64().unwrap());
    assert_eq!(v.data.len(), v.scales.len() * v.dims as usize);
    assert!(!up.embedding_requests().is_empty());
    let r = st
        .knowledge
        .for_turn(
            owner,
            "What is the launch code of project Bluebird?",
            &[],
            &[Uuid::parse_str(&cid).unwrap()],
            2000,
        )
        .await
        .unwrap();
    assert!(
        r.sources
            .iter()
            .any(|src| src.span.page_start == Some(3) && src.snippet.contains("7391"))
    );
    // The question was embedded too.
    let last = up.embedding_requests().pop().unwrap();
    assert!(
        last.body.to_string().contains("launch code"),
        "{}",
        last.body
    );
}
