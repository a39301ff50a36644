//! Test harness: the real server on 127.0.0.1:0 with a real redb file in a
//! temp dir, and a small HTTP client that keeps cookie and CSRF explicit.
#![allow(dead_code)]

pub mod oidc;
pub mod pg;
pub mod proc;

use crate::common_upstream::FakeUpstream;
use confab::app::{AppState, serve};
use confab::config::Config;
use confab::store::redb::RedbStore;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::PathBuf;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const PASSWORD: &str = "correct-horse-battery";

pub struct TestServer {
    pub base: String,
    pub state: Option<AppState>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<std::io::Result<()>>>,
    pub http: reqwest::Client,
    /// Last, so it is removed after everything that uses it is dropped.
    pub dir: tempfile::TempDir,
}

/// A test config: a temp data dir and throttles loose enough for many
/// logins from 127.0.0.1 (the throttle tests tighten them).
pub fn test_config(dir: &std::path::Path) -> Config {
    let mut cfg = Config {
        data_dir: dir.to_path_buf(),
        ..Default::default()
    };
    cfg.auth.login_per_ip_per_minute = 100_000;
    cfg.auth.login_burst = 100_000;
    // Failed sign-ins answer at once (the delay test turns it back on).
    cfg.auth.login_failure_delay_ms = 0;
    // Rate limits out of the way (tests/it/limits.rs tightens them).
    for (rate, burst) in [
        (&mut cfg.limits.anon_per_minute, &mut cfg.limits.anon_burst),
        (&mut cfg.limits.api_per_minute, &mut cfg.limits.api_burst),
        (&mut cfg.limits.chat_per_minute, &mut cfg.limits.chat_burst),
    ] {
        (*rate, *burst) = (1_000_000, 1_000_000);
    }
    cfg.limits.max_concurrent_generations = 10_000;
    cfg.detect_local_providers = false;
    cfg
}

/// The setup most tests share: a fake upstream, a server (its config
/// adjusted by `f`) with an OpenAI-compatible provider on that upstream
/// offering `models`, and the first admin signed in.
pub async fn chat_server(
    models: &[&str],
    f: impl FnOnce(&mut Config),
) -> (TestServer, FakeUpstream, Session) {
    let up = FakeUpstream::start().await;
    let s = TestServer::start_with(f).await;
    let admin = s.setup_admin("admin").await;
    up.register_openai(s.state(), models);
    (s, up, admin)
}

/// `POST /api/chat/message` as `who`.
pub async fn chat(s: &TestServer, who: &Session, body: Value) -> Resp {
    s.post("/api/chat/message", Auth::Session(who), body).await
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(f: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, f).await
    }

    pub async fn start_in(dir: tempfile::TempDir, f: impl FnOnce(&mut Config)) -> TestServer {
        let mut cfg = test_config(dir.path());
        f(&mut cfg);
        cfg.validate().expect("test config is valid");
        // A previous server in this process may still be letting go of the
        // data dir (background tasks finishing); wait for it briefly.
        if cfg.store.is_some() {
            let store = confab::store::open(&cfg).await.expect("open the store");
            return Self::serve_with(dir, cfg, store).await;
        }
        let mut tries = 0;
        let store = loop {
            match RedbStore::open_shared(&cfg.data_dir) {
                Ok(s) => break s,
                Err(confab::store::StoreError::Locked(_)) if tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot open the store: {e}"),
            }
        };
        Self::serve_with(dir, cfg, store).await
    }

    async fn serve_with(
        dir: tempfile::TempDir,
        cfg: Config,
        store: confab::store::SharedStore,
    ) -> TestServer {
        let listener = confab::server::listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = AppState::new(cfg, store, addr).await.unwrap();
        let (tx, rx) = oneshot::channel();
        let handle = tokio::spawn(serve(listener, state.clone(), async move {
            let _ = rx.await;
        }));
        TestServer {
            base: format!("http://{addr}"),
            dir,
            state: Some(state),
            stop: Some(tx),
            handle: Some(handle),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    /// Stops the server and releases the data dir (the redb lock), keeping
    /// the directory for a restart.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
        let state = self.state.take().unwrap();
        // Background touches may briefly hold a store clone.
        for _ in 0..100 {
            if std::sync::Arc::strong_count(&state.0) == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        drop(state);
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    pub fn state(&self) -> &AppState {
        self.state.as_ref().unwrap()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn setup_token(&self) -> String {
        let url = self.state().setup_url().expect("setup pending");
        url.split("token=").nth(1).unwrap().to_string()
    }

    pub async fn req(
        &self,
        method: Method,
        path: &str,
        auth: Auth<'_>,
        body: Option<Value>,
    ) -> Resp {
        let mut rb = self.http.request(method.clone(), self.url(path));
        match auth {
            Auth::None => {}
            Auth::Session(s) => {
                rb = rb.header("cookie", format!("confab_session={}", s.cookie));
                if method != Method::GET {
                    rb = rb.header("x-csrf-token", &s.csrf);
                }
            }
            Auth::CookieOnly(s) => {
                rb = rb.header("cookie", format!("confab_session={}", s.cookie));
            }
            Auth::Bearer(t) => rb = rb.bearer_auth(t),
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        Resp::from(rb.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str, auth: Auth<'_>) -> Resp {
        self.req(Method::GET, path, auth, None).await
    }
    pub async fn post(&self, path: &str, auth: Auth<'_>, body: Value) -> Resp {
        self.req(Method::POST, path, auth, Some(body)).await
    }
    pub async fn patch(&self, path: &str, auth: Auth<'_>, body: Value) -> Resp {
        self.req(Method::PATCH, path, auth, Some(body)).await
    }
    pub async fn delete(&self, path: &str, auth: Auth<'_>) -> Resp {
        self.req(Method::DELETE, path, auth, None).await
    }

    /// Completes setup: the first admin, signed in.
    pub async fn setup_admin(&self, username: &str) -> Session {
        let r = self
            .post(
                "/api/setup",
                Auth::None,
                json!({"token": self.setup_token(), "username": username, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        Session::from_resp(&r)
    }

    pub async fn login(&self, username: &str, password: &str) -> Session {
        let r = self
            .post(
                "/api/auth/login",
                Auth::None,
                json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        Session::from_resp(&r)
    }

    /// Creates a user through the admin API and signs them in.
    pub async fn user(&self, admin: &Session, username: &str) -> Session {
        let r = self
            .post(
                "/api/admin/users",
                Auth::Session(admin),
                json!({"username": username, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        self.login(username, PASSWORD).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        // Release the index before the temp dir goes: an indexer commit racing
        // its removal would leave an empty `<tmp>/index` behind.
        if let Some(state) = &self.state {
            state.search.shutdown();
        }
    }
}

#[derive(Clone, Copy)]
pub enum Auth<'a> {
    None,
    /// Cookie plus CSRF header on unsafe methods.
    Session(&'a Session),
    /// Cookie without the CSRF header.
    CookieOnly(&'a Session),
    Bearer(&'a str),
}

#[derive(Clone, Debug)]
pub struct Session {
    pub cookie: String,
    pub csrf: String,
    pub user_id: String,
    pub set_cookie: String,
}

impl Session {
    pub fn from_resp(r: &Resp) -> Session {
        let set_cookie = r.header("set-cookie").expect("set-cookie").to_string();
        let cookie = set_cookie
            .split(';')
            .next()
            .unwrap()
            .strip_prefix("confab_session=")
            .unwrap()
            .to_string();
        Session {
            cookie,
            csrf: r.body["csrf_token"].as_str().unwrap().to_string(),
            user_id: r.body["user"]["id"].as_str().unwrap().to_string(),
            set_cookie,
        }
    }
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    pub async fn from(r: reqwest::Response) -> Resp {
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    }

    /// Asserts an error response: status, code, and the error shape with the
    /// request id echoed in the header.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert_eq!(self.body["code"], code, "body: {}", self.text);
        assert!(
            self.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}",
            self.text
        );
        let rid = self.body["request_id"].as_str().expect("request_id");
        assert_eq!(Some(rid), self.header("x-request-id"));
        let obj = self.body.as_object().unwrap();
        assert_eq!(
            obj.len(),
            3,
            "exactly code, message, request_id: {}",
            self.text
        );
    }
}

/// One server-sent event as received.
#[derive(Debug, Clone)]
pub struct Sse {
    pub id: Option<u64>,
    pub event: String,
    pub data: Value,
}

/// Reads server-sent events from a streaming response, one at a time.
pub struct SseReader {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl SseReader {
    pub fn new(resp: reqwest::Response) -> SseReader {
        SseReader {
            resp,
            buf: Vec::new(),
        }
    }

    /// The next event (comments skipped), or None at the end of the stream.
    pub async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..pos + 2).collect();
                let text = String::from_utf8(block).expect("SSE is UTF-8");
                let mut ev = Sse {
                    id: None,
                    event: "message".into(),
                    data: Value::Null,
                };
                let mut data = String::new();
                let mut any = false;
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        ev.id = v.trim().parse().ok();
                        any = true;
                    } else if let Some(v) = line.strip_prefix("event:") {
                        ev.event = v.trim().to_string();
                        any = true;
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                        any = true;
                    }
                }
                if !any {
                    continue; // a comment / keep-alive
                }
                ev.data = serde_json::from_str(&data).unwrap_or(Value::String(data));
                return Some(ev);
            }
            match self.resp.chunk().await {
                Ok(Some(c)) => self.buf.extend_from_slice(&c),
                _ => return None,
            }
        }
    }

    /// Every remaining event.
    pub async fn collect(mut self) -> Vec<Sse> {
        let mut out = Vec::new();
        while let Some(e) = self.next().await {
            out.push(e);
        }
        out
    }
}

/// The text of the `delta` events, concatenated.
pub fn text_of(events: &[Sse]) -> String {
    events
        .iter()
        .filter(|e| e.event == "delta")
        .map(|e| e.data["text"].as_str().unwrap())
        .collect()
}
