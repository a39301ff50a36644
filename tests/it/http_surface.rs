//! The cross-cutting HTTP behaviour through the real server: request ids,
//! the error shape, body limits, security headers, CORS, the asset pipeline,
//! health checks and the OpenAPI document.

use crate::common;
use crate::common_upstream;

use common::{Auth, SseReader, TestServer};
use common_upstream::FakeUpstream;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn request_id_is_accepted_or_generated_and_echoed() {
    let s = TestServer::start().await;
    let r = s.http.get(s.url("/health")).send().await.unwrap();
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(generated.len(), 36);
    let r = s
        .http
        .get(s.url("/api/nope"))
        .header("x-request-id", "client-chosen-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "client-chosen-42");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["request_id"], "client-chosen-42");
    // Hostile ids are replaced, not echoed.
    let r = s
        .http
        .get(s.url("/health"))
        .header("x-request-id", "bad id with spaces <script>")
        .send()
        .await
        .unwrap();
    assert_ne!(r.headers()["x-request-id"], "bad id with spaces <script>");
}

#[tokio::test]
async fn health_and_unknown_api_paths() {
    let s = TestServer::start().await;
    let r = s.get("/health", Auth::None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({"status": "ok", "version": confab::VERSION}));
    let r = s.get("/api/does/not/exist", Auth::None).await;
    r.assert_error(404, "NOT_FOUND");
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let r = s.post("/api/nothing-here", Auth::None, json!({})).await;
    r.assert_error(404, "NOT_FOUND");
    // Wrong method on a known API path: still the error shape.
    let r = s.delete("/api/auth/login", Auth::None).await;
    r.assert_error(405, "METHOD_NOT_ALLOWED");
    let r = s.post("/health", Auth::None, json!({})).await;
    r.assert_error(405, "METHOD_NOT_ALLOWED");
}

#[tokio::test]
async fn deep_health_checks_the_store_for_loopback() {
    let s = TestServer::start().await;
    let r = s.get("/health/deep", Auth::None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["store"]["ok"], true);
    assert_eq!(
        r.body["store"]["schema_version"],
        confab::store::SCHEMA_VERSION
    );
}

#[tokio::test]
async fn malformed_and_oversized_bodies() {
    let s = TestServer::start_with(|c| c.max_body_bytes = 4096).await;
    s.setup_admin("admin").await;
    let post_raw = |body: Vec<u8>, ct: &'static str| {
        let s = &s;
        async move {
            let r = s
                .http
                .post(s.url("/api/auth/login"))
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .unwrap();
            common::Resp::from(r).await
        }
    };
    let r = post_raw(b"{not json".to_vec(), "application/json").await;
    r.assert_error(400, "VALIDATION_FAILED");
    let r = post_raw(
        br#"{"username": 5, "password": "x"}"#.to_vec(),
        "application/json",
    )
    .await;
    r.assert_error(400, "VALIDATION_FAILED");
    assert!(
        r.body["message"].as_str().unwrap().contains("username"),
        "{}",
        r.text
    );
    let r = post_raw(br#"{"username": "a"}"#.to_vec(), "application/json").await;
    r.assert_error(400, "VALIDATION_FAILED");
    assert!(
        r.body["message"].as_str().unwrap().contains("password"),
        "{}",
        r.text
    );
    let r = post_raw(
        br#"{"username": "a", "password": "b"}"#.to_vec(),
        "text/plain",
    )
    .await;
    r.assert_error(400, "VALIDATION_FAILED");
    let r = post_raw(vec![0xff, 0xfe, 0x00], "application/json").await;
    r.assert_error(400, "VALIDATION_FAILED");

    let big = format!(
        r#"{{"username": "{}", "password": "x"}}"#,
        "a".repeat(10_000)
    );
    let r = post_raw(big.into_bytes(), "application/json").await;
    r.assert_error(413, "PAYLOAD_TOO_LARGE");
    assert!(
        r.body["message"].as_str().unwrap().contains("4096"),
        "{}",
        r.text
    );

    // A chunked body with no length that grows past the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..100).map(|_| Ok(vec![b' '; 1024])).collect();
    let r = s
        .http
        .post(s.url("/api/auth/login"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    common::Resp::from(r)
        .await
        .assert_error(413, "PAYLOAD_TOO_LARGE");

    // The server is still fine, and so is the data.
    assert_eq!(s.get("/health", Auth::None).await.status, 200);
    s.login("admin", common::PASSWORD).await;
}

#[tokio::test]
async fn garbage_on_the_socket_does_not_take_the_server_down() {
    let s = TestServer::start().await;
    let addr = s.base.trim_start_matches("http://").to_string();
    for junk in [
        &b"\x00\x01\x02GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"username\":",
    ] {
        let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
        sock.write_all(junk).await.unwrap();
        let _ = sock.shutdown().await;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), sock.read_to_end(&mut buf)).await;
        let text = String::from_utf8_lossy(&buf);
        assert!(!text.contains("panicked"), "{text}");
    }
    assert_eq!(s.get("/health", Auth::None).await.status, 200);
}

/// The server tells HTTP/1 from HTTP/2 by a peek at the first bytes (no
/// HTTP/1 method starts with `PRI`), and leaves it to hyper-util's
/// detection when only the ambiguous `P` has arrived.
#[tokio::test]
async fn http1_and_http2_are_told_apart_however_the_first_bytes_arrive() {
    let s = TestServer::start().await;
    let addr = s.base.trim_start_matches("http://").to_string();

    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2.get(format!("{}/health", s.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let h1 = reqwest::Client::builder().http1_only().build().unwrap();
    let r = h1.get(format!("{}/health", s.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_11);

    // "P" alone could start POST, PUT, PATCH or the HTTP/2 preface. The
    // pause lets the server peek at it before the rest arrives; the answer
    // must be right whichever way it was decided.
    let mut sock = TcpStream::connect(&addr).await.unwrap();
    sock.write_all(b"P").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    sock.write_all(b"UT /api/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (got, closed) = read_until_closed(&mut sock, Duration::from_secs(10)).await;
    assert!(closed.is_some(), "the server kept the connection open");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");

    let mut sock = TcpStream::connect(&addr).await.unwrap();
    sock.write_all(b"P").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The rest of the preface, then an empty SETTINGS frame.
    sock.write_all(b"RI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let mut head = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(10), sock.read_exact(&mut head))
        .await
        .expect("the server answers the preface")
        .unwrap();
    assert_eq!(
        head[3], 0x04,
        "the server's first frame is SETTINGS: {head:?}"
    );
}

#[tokio::test]
async fn security_headers_on_every_response() {
    let s = TestServer::start().await;
    for path in ["/health", "/", "/api/nope", "/app.js"] {
        let r = s.get(path, Auth::None).await;
        let csp = r.header("content-security-policy").unwrap();
        let script_src = csp
            .split(';')
            .find(|d| d.trim().starts_with("script-src"))
            .unwrap();
        assert!(!script_src.contains("unsafe-inline"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert!(r.header("referrer-policy").is_some());
        assert!(r.header("cache-control").is_some(), "{path}");
    }
    assert_eq!(
        s.get("/api/nope", Auth::None).await.header("cache-control"),
        Some("no-store")
    );
}

#[tokio::test]
async fn assets_etag_compression_and_spa_fallback() {
    let s = TestServer::start().await;
    let r = s.http.get(s.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(r.headers()["cache-control"], "no-cache");
    assert_eq!(r.headers()["vary"], "Accept-Encoding");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    assert!(etag.starts_with('"') && etag.len() > 10);
    let index = r.text().await.unwrap();
    assert!(index.contains("<title>confab</title>"));

    let r = s
        .http
        .get(s.url("/"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"], etag.as_str());

    // SPA fallback for client-side routes, not for missing files or /api.
    let r = s.http.get(s.url("/c/0199-abc")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], etag.as_str());
    let r = s.get("/missing.js", Auth::None).await;
    r.assert_error(404, "NOT_FOUND");

    // Compressed variants chosen by Accept-Encoding; raw client to see bytes.
    let raw = reqwest::Client::builder()
        .no_gzip()
        .no_brotli()
        .build()
        .unwrap();
    let plain = raw.get(s.url("/app.js")).send().await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    assert_eq!(
        plain.headers()["cache-control"],
        "public, max-age=0, must-revalidate"
    );
    let plain_body = plain.bytes().await.unwrap();
    let idx = raw
        .get(s.url("/index.html"))
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    let enc = idx
        .headers()
        .get("content-encoding")
        .map(|v| v.to_str().unwrap().to_string());
    let len = idx.bytes().await.unwrap().len();
    if let Some(enc) = enc {
        assert_eq!(enc, "br");
        assert!(len < index.len());
    }
    let gz = raw
        .get(s.url("/index.html"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    if let Some(e) = gz.headers().get("content-encoding") {
        assert_eq!(e, "gzip");
    }
    let no_br = raw
        .get(s.url("/index.html"))
        .header("accept-encoding", "br;q=0, identity")
        .send()
        .await
        .unwrap();
    assert!(no_br.headers().get("content-encoding").is_none());
    // reqwest with decompression on gets the same bytes back.
    let decoded = s
        .http
        .get(s.url("/app.js"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(decoded, plain_body);

    // HEAD works and has no body.
    let h = s.http.head(s.url("/")).send().await.unwrap();
    assert_eq!(h.status(), 200);
}

#[tokio::test]
async fn versioned_assets_are_immutable() {
    assert!(confab::assets::is_versioned("app.0123abcd.js"));
    let assets = confab::assets::Assets::get();
    assert!(!assets.is_empty());
    assert!(!assets.index().immutable);
}

#[tokio::test]
async fn cors_is_off_by_default_and_allowlisted_when_configured() {
    let s = TestServer::start().await;
    let r = s
        .http
        .get(s.url("/health"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());

    let s =
        TestServer::start_with(|c| c.cors_origins = vec!["https://app.example.com".into()]).await;
    let pre = s
        .http
        .request(reqwest::Method::OPTIONS, s.url("/api/auth/login"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type, x-csrf-token",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        pre.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(pre.headers()["access-control-allow-credentials"], "true");
    let other = s
        .http
        .get(s.url("/health"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    // The listed origin may also make unsafe requests (origin check passes).
    let token = s.setup_token();
    let r = s
        .http
        .post(s.url("/api/setup"))
        .header("origin", "https://app.example.com")
        .json(&json!({"token": token, "username": "admin", "password": common::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
}

#[tokio::test]
async fn openapi_document_describes_the_api() {
    let s = TestServer::start().await;
    let r = s.get("/api/openapi.json", Auth::None).await;
    assert_eq!(r.status, 200);
    assert!(r.body["openapi"].as_str().unwrap().starts_with("3."));
    let paths = r.body["paths"].as_object().unwrap();
    for p in [
        "/api/setup",
        "/api/auth/login",
        "/api/auth/register",
        "/api/auth/token",
        "/api/auth/refresh",
        "/api/auth/sessions/{id}",
        "/api/keys",
        "/api/admin/users/{id}",
        "/api/admin/invites",
        "/api/admin/audit",
        "/health",
    ] {
        assert!(paths.contains_key(p), "missing {p}");
    }
    assert!(r.body["components"]["schemas"]["ErrorBody"].is_object());
}

/// Reads until the server closes the connection (EOF or reset), for at most
/// `limit`; returns what was read and when it closed, `None` if it stayed open.
async fn read_until_closed(sock: &mut TcpStream, limit: Duration) -> (Vec<u8>, Option<Duration>) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, sock.read(&mut buf)).await {
            Err(_) => return (got, None),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, Some(started.elapsed())),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Like [`read_until_closed`], while writing `trickle` one piece every
/// 200 ms (a client that keeps sending, too slowly).
async fn trickle_until_closed(
    mut sock: TcpStream,
    head: Vec<u8>,
    trickle: &'static [u8],
    limit: Duration,
) -> (Vec<u8>, Option<Duration>) {
    let started = Instant::now();
    sock.write_all(&head).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            r = sock.read(&mut buf) => match r {
                Ok(0) | Err(_) => return (got, Some(started.elapsed())),
                Ok(n) => got.extend_from_slice(&buf[..n]),
            },
            _ = tick.tick() => {
                if started.elapsed() > limit {
                    return (got, None);
                }
                // A write may fail once the server has closed: the read says so.
                let _ = sock.write_all(trickle).await;
            }
        }
    }
}

/// The done-when of issue 13 item 5: a few hundred slow and idle
/// connections are all closed by the header, body and idle deadlines, while
/// an answer stream (with pauses longer than every deadline) and a
/// WebSocket opened before them keep working.
#[tokio::test]
async fn slow_and_idle_connections_are_closed_while_streams_live_on() {
    let s = TestServer::start_with(|c| {
        c.http.header_timeout_secs = 1;
        c.http.body_timeout_secs = 1;
        c.http.keep_alive_secs = 1;
        c.http.max_connections_per_ip = 5_000;
    })
    .await;
    let admin = s.setup_admin("admin").await;
    let up = FakeUpstream::start().await;
    up.register_openai(s.state(), &["m1"]);
    up.set_reply("one two three four five");
    // Each token comes after 1.5 s: longer than any of the deadlines above.
    up.set_token_delay(Duration::from_millis(1500));
    let resp = s
        .http
        .post(s.url("/api/chat/stream"))
        .header("cookie", format!("confab_session={}", admin.cookie))
        .header("x-csrf-token", &admin.csrf)
        .json(&json!({"content": "go", "model": "m1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut sse = SseReader::new(resp);
    assert_eq!(sse.next().await.unwrap().event, "meta");

    // A WebSocket, opened now and left silent while the floods run.
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    let mut req = (s.base.replace("http://", "ws://") + "/api/chat/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "cookie",
        format!("confab_session={}", admin.cookie).parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();

    let addr = s.base.trim_start_matches("http://").to_string();
    const EACH: usize = 75;
    let limit = Duration::from_secs(20);
    let mut tasks = Vec::new();
    for i in 0..EACH * 4 {
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            let mut sock = TcpStream::connect(&addr).await.unwrap();
            let kind = i % 4;
            let (got, closed) = match kind {
                // Slow headers: a head that never ends, one line at a time.
                0 => {
                    trickle_until_closed(
                        sock,
                        b"GET /health HTTP/1.1\r\nHost: x\r\n".to_vec(),
                        b"X-Slow: 1\r\n",
                        limit,
                    )
                    .await
                }
                // Slow body: the head, part of the body, then a trickle.
                1 => {
                    trickle_until_closed(
                        sock,
                        b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"username\":".to_vec(),
                        b" ",
                        limit,
                    )
                    .await
                }
                // Connected, sends nothing.
                2 => read_until_closed(&mut sock, limit).await,
                // One request, then idle on a kept-alive connection.
                _ => {
                    sock.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                        .await
                        .unwrap();
                    read_until_closed(&mut sock, limit).await
                }
            };
            (kind, got, closed)
        }));
    }
    for t in tasks {
        let (kind, got, closed) = t.await.unwrap();
        let text = String::from_utf8_lossy(&got);
        assert!(
            closed.is_some(),
            "connection kind {kind} still open: {text}"
        );
        if kind == 3 {
            assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        }
    }

    // Every flood connection is gone; the answer stream goes on to its end.
    let rest = sse.collect().await;
    assert_eq!(rest.last().unwrap().event, "done", "{rest:?}");
    assert_eq!(common::text_of(&rest), up.reply_for("m1"));

    // The WebSocket, silent all along, still answers.
    up.set_token_delay(Duration::ZERO);
    ws.send(Message::Text(
        json!({"type": "chat", "content": "hi", "model": "m1"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let mut last = serde_json::Value::Null;
    while let Some(Ok(Message::Text(t))) = ws.next().await {
        last = serde_json::from_str(&t).unwrap();
        if last["event"] == "done" || last["event"] == "error" {
            break;
        }
    }
    assert_eq!(last["event"], "done", "{last}");
}

/// Opens a connection and asks for /health; true if the server answered.
async fn served(addr: &str, keep: &mut Vec<TcpStream>) -> bool {
    let mut sock = TcpStream::connect(addr).await.unwrap();
    sock.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 12];
    let ok = matches!(
        tokio::time::timeout(Duration::from_secs(5), sock.read_exact(&mut buf)).await,
        Ok(Ok(_)) if &buf == b"HTTP/1.1 200"
    );
    keep.push(sock);
    ok
}

#[tokio::test]
async fn connections_are_capped_per_address_and_in_total() {
    // Per address: the fourth connection from 127.0.0.1 is closed at once.
    let s = TestServer::start_with(|c| c.http.max_connections_per_ip = 3).await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut open = Vec::new();
    for _ in 0..3 {
        assert!(served(&addr, &mut open).await);
    }
    let started = Instant::now();
    assert!(!served(&addr, &mut open).await, "over the per-address cap");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "closed promptly"
    );
    // A closed connection gives its place back.
    open.clear();
    let mut again = Vec::new();
    let mut ok = false;
    for _ in 0..100 {
        if served(&addr, &mut again).await {
            ok = true;
            break;
        }
        again.clear();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "a place is free again once a connection closed");
    drop(s);

    // A trusted proxy carries many clients: only the total cap applies.
    let s = TestServer::start_with(|c| {
        c.trusted_proxies = vec!["127.0.0.1".into()];
        c.http.max_connections_per_ip = 2;
        c.http.max_connections = 4;
    })
    .await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut open = Vec::new();
    for _ in 0..4 {
        assert!(served(&addr, &mut open).await);
    }
    assert!(!served(&addr, &mut open).await, "over the total cap");
}

#[tokio::test]
async fn an_over_limit_content_length_is_refused_before_the_body() {
    // The body deadline is long: the answer must not wait for it.
    let s = TestServer::start_with(|c| {
        c.max_body_bytes = 4096;
        c.http.body_timeout_secs = 60;
    })
    .await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut sock = TcpStream::connect(&addr).await.unwrap();
    sock.write_all(
        b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 999999999\r\n\r\n",
    )
    .await
    .unwrap();
    let (got, closed) = read_until_closed(&mut sock, Duration::from_secs(10)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(
        closed.is_some_and(|d| d < Duration::from_secs(5)),
        "answered and closed at once ({closed:?}): {text}"
    );
    let body: serde_json::Value =
        serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["code"], "PAYLOAD_TOO_LARGE");
    assert!(body["message"].as_str().unwrap().contains("4096"), "{body}");
    assert!(body["request_id"].as_str().is_some_and(|r| !r.is_empty()));
}

/// serde's derive maps a JSON array onto a struct by position, and skipping an
/// unknown field does not check its UTF-8: the extractor refuses both, once,
/// for every endpoint (issue 13, item 7).
#[tokio::test]
async fn request_bodies_must_be_json_objects_in_valid_utf8() {
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    let user = s.user(&admin, "bob").await;
    let raw = |method: reqwest::Method, path: &str, session: &common::Session, body: Vec<u8>| {
        let rb = s
            .http
            .request(method.clone(), s.url(path))
            .header("content-type", "application/json")
            .header("cookie", format!("confab_session={}", session.cookie))
            .header("x-csrf-token", &session.csrf)
            .body(body);
        async move { common::Resp::from(rb.send().await.unwrap()).await }
    };
    let login_raw = |body: Vec<u8>| {
        let rb = s
            .http
            .post(s.url("/api/auth/login"))
            .header("content-type", "application/json")
            .body(body);
        async move { common::Resp::from(rb.send().await.unwrap()).await }
    };

    // Login with [username, password] does not sign in.
    let r = login_raw(json!(["admin", common::PASSWORD]).to_string().into_bytes()).await;
    r.assert_error(400, "VALIDATION_FAILED");
    assert!(r.header("set-cookie").is_none());
    assert!(
        r.body["message"].as_str().unwrap().contains("object"),
        "{}",
        r.text
    );
    // ["admin"] does not make bob an admin.
    let path = format!("/api/admin/users/{}", user.user_id);
    let r = raw(
        reqwest::Method::PATCH,
        &path,
        &admin,
        b"[\"admin\"]".to_vec(),
    )
    .await;
    r.assert_error(400, "VALIDATION_FAILED");
    let me = s.get("/api/auth/me", Auth::Session(&user)).await;
    assert_eq!(me.body["user"]["role"], "user", "{}", me.text);
    // Nor any other non-object top level, on any endpoint.
    for body in ["null", "1", "\"x\"", "true", "[]", " \n [{}]"] {
        let r = login_raw(body.as_bytes().to_vec()).await;
        r.assert_error(400, "VALIDATION_FAILED");
        let r = raw(
            reqwest::Method::POST,
            "/api/conversations",
            &user,
            body.as_bytes().to_vec(),
        )
        .await;
        r.assert_error(400, "VALIDATION_FAILED");
    }

    // Invalid UTF-8 inside a field the server ignores is still refused.
    let mut body = format!(
        r#"{{"username": "admin", "password": "{}", "extra": ""#,
        common::PASSWORD
    )
    .into_bytes();
    body.extend_from_slice(&[0xff, 0xfe, b'x']);
    body.extend_from_slice(b"\"}");
    let r = login_raw(body).await;
    r.assert_error(400, "VALIDATION_FAILED");
    assert!(r.header("set-cookie").is_none());
    assert!(
        r.body["message"].as_str().unwrap().contains("UTF-8"),
        "{}",
        r.text
    );
    // An object in valid UTF-8 still works, unknown fields and all.
    let r = login_raw(
        json!({"username": "admin", "password": common::PASSWORD, "extra": "é"})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// Every `$ref` in `v`, as JSON pointers into the document.
fn refs_in(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("$ref", serde_json::Value::String(r)) => out.push(r.clone()),
                    _ => refs_in(x, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| refs_in(x, out)),
        _ => {}
    }
}

/// The served document holds together (no `$ref` to a missing component),
/// says how to authenticate, and every operation lists the statuses the
/// cross-cutting layers answer with (issue 13, item 8). tests/schemathesis.sh
/// checks the rest against the live server.
#[tokio::test]
async fn openapi_document_is_valid_and_complete() {
    let s = TestServer::start().await;
    let doc = s.get("/api/openapi.json", Auth::None).await.body;

    let mut refs = Vec::new();
    refs_in(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in &refs {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("external $ref {r}"));
        assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
    }

    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("securitySchemes");
    assert_eq!(schemes["session"]["type"], "apiKey");
    assert_eq!(schemes["session"]["in"], "cookie");
    assert_eq!(schemes["session"]["name"], "confab_session");
    assert_eq!(schemes["csrf"]["in"], "header");
    assert_eq!(schemes["csrf"]["name"], "X-CSRF-Token");
    for name in ["accessToken", "apiKey"] {
        assert_eq!(schemes[name]["type"], "http", "{name}");
        assert_eq!(schemes[name]["scheme"], "bearer", "{name}");
    }

    let public = [
        ("get", "/health"),
        ("get", "/health/deep"),
        ("get", "/api/setup"),
        ("post", "/api/setup"),
        ("get", "/api/server"),
        ("get", "/api/branding"),
        ("get", "/api/branding/logo"),
        ("post", "/api/auth/register"),
        ("post", "/api/auth/login"),
        ("post", "/api/auth/token"),
        ("post", "/api/auth/refresh"),
        ("post", "/api/auth/login/two-factor"),
        ("post", "/api/auth/password-reset"),
        ("post", "/api/auth/password-reset/request"),
        ("post", "/api/auth/email/verify"),
    ];
    let mut ops = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            ops += 1;
            let what = format!("{} {path}", method.to_uppercase());
            let responses = op["responses"].as_object().unwrap();
            let has = |code: &str| responses.contains_key(code);
            let security = op["security"]
                .as_array()
                .unwrap_or_else(|| panic!("{what}: no security"));
            let is_public = public.contains(&(method.as_str(), path.as_str()));
            if is_public {
                // Public, or a credential optional (`{}` among the choices).
                assert!(
                    security.is_empty() || security.contains(&json!({})),
                    "{what} is public"
                );
            } else {
                assert!(!security.is_empty(), "{what} needs a credential");
                assert!(has("401") && has("403"), "{what}: 401/403");
                let key_scope = security
                    .iter()
                    .find_map(|r| r.get("apiKey"))
                    .unwrap_or_else(|| panic!("{what}: API keys"));
                let needed = if path.starts_with("/api/admin") {
                    "admin"
                } else if method == "get" {
                    "read"
                } else {
                    "write"
                };
                assert!(
                    key_scope.as_array().unwrap().contains(&json!(needed)),
                    "{what} needs {needed}: {key_scope}"
                );
            }
            assert!(has("500"), "{what}: 500");
            if path.starts_with("/api/") {
                assert!(has("429"), "{what}: 429");
            }
            if method != "get" {
                assert!(has("403"), "{what}: 403 CSRF_INVALID");
            }
            if op.get("requestBody").is_some() {
                assert!(has("400") && has("413"), "{what}: 400/413");
            }
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            if params.iter().any(|p| p["in"] == "path") {
                assert!(has("404"), "{what}: 404");
            }
            if params
                .iter()
                .any(|p| p["in"] == "query" || p["in"] == "header")
            {
                assert!(has("400"), "{what}: 400");
            }
            for (code, r) in responses {
                if code.starts_with('4') || code.starts_with('5') {
                    let r = match r.get("$ref").and_then(|x| x.as_str()) {
                        Some(p) => doc.pointer(p.trim_start_matches('#')).unwrap(),
                        None => r,
                    };
                    let schema = &r["content"]["application/json"]["schema"]["$ref"];
                    if path.starts_with("/v1/") {
                        // /v1 answers in the OpenAI or Anthropic error shape.
                        assert!(
                            [
                                "#/components/schemas/OpenAiErrorBody",
                                "#/components/schemas/AnthropicErrorBody",
                                "#/components/schemas/V1ErrorBody",
                            ]
                            .contains(&schema.as_str().unwrap_or("")),
                            "{what} {code}: {schema}"
                        );
                    } else {
                        assert_eq!(schema, "#/components/schemas/ErrorBody", "{what} {code}");
                    }
                }
            }
        }
    }
    assert!(ops >= 50, "{ops} operations");
}

/// A plain GET on the WebSocket endpoint (no upgrade) answers in the error
/// shape, as its OpenAPI entry says, not axum's plain-text rejection (found
/// by the schemathesis stage).
#[tokio::test]
async fn websocket_endpoint_without_upgrade_answers_the_error_shape() {
    let s = TestServer::start().await;
    let admin = s.setup_admin("admin").await;
    let r = s.get("/api/chat/ws", Auth::Session(&admin)).await;
    r.assert_error(400, "VALIDATION_FAILED");
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    // Still a credential first.
    s.get("/api/chat/ws", Auth::None)
        .await
        .assert_error(401, "AUTH_REQUIRED");
}
