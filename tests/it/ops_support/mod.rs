//! Helpers for the operations tests (tests/it/ops_*.rs): the real `confab`
//! binary as a child process with its logs captured, and a small HTTP
//! client for the few API calls these tests make.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use crate::common::PASSWORD;
pub use crate::common::proc::{BIN, confab, confab_at, without_confab_env};

/// Runs a command to completion; panics with its output when the exit
/// status is not `want`.
pub fn run(cmd: &mut Command, want: i32) -> (String, String) {
    let out = cmd.output().unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert_eq!(
        out.status.code(),
        Some(want),
        "{cmd:?}\nstdout: {o}\nstderr: {e}"
    );
    (o, e)
}

/// Runs `cmd user add NAME --admin --password-stdin` with [`PASSWORD`] on
/// stdin and asserts it succeeds (`cmd`: the binary with its data or config
/// options, and whatever user it runs as).
pub fn add_admin(mut cmd: Command, name: &str) {
    use std::io::Write;
    cmd.args(["user", "add", name, "--admin", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// A config with one OpenAI-compatible provider at `base` offering
/// `fake-model`, local detection off, loose sign-in throttling, request
/// rate limits off (not what these tests are about) and `extra` (top-level
/// settings) added.
pub fn write_config(path: &Path, base: &str, extra: &str) {
    std::fs::write(
        path,
        format!(
            "detect_local_providers = false\nlog_format = \"json\"\nprovider_idle_timeout_secs = 30\n{extra}\n[auth]\nlogin_per_ip_per_minute = 10000\nlogin_burst = 10000\n\n[limits]\nenabled = false\n\n[[providers]]\nkind = \"openai\"\nname = \"fake\"\nbase_url = \"{base}\"\napi_key = \"sk-test\"\nmodels = [\"fake-model\"]\n"
        ),
    )
    .unwrap();
}

pub struct Server {
    pub child: Child,
    pub url: String,
    pub setup: Option<String>,
    pub logs: Arc<Mutex<Vec<Value>>>,
}

/// Starts `confab serve --listen 127.0.0.1:0` and waits until it listens.
pub fn start(data: &Path, config: &Path) -> Server {
    start_with(confab(), data, config)
}

pub fn start_with(mut cmd: Command, data: &Path, config: &Path) -> Server {
    let mut child = cmd
        .arg("--data-dir")
        .arg(data)
        .arg("--config")
        .arg(config)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let l2 = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                eprintln!("confab: {line}");
                continue;
            };
            let msg = v["fields"]["message"].as_str().unwrap_or("").to_string();
            if msg == "listening" || msg == "first-run setup" {
                let _ = tx.send((msg, v["fields"]["url"].as_str().unwrap_or("").to_string()));
            }
            l2.lock().unwrap().push(v);
        }
    });
    let (m, url) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server logs `listening`");
    assert_eq!(m, "listening");
    let setup = rx
        .recv_timeout(Duration::from_millis(300))
        .ok()
        .map(|(_, u)| u);
    Server {
        child,
        url,
        setup,
        logs,
    }
}

impl Server {
    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Waits for the process to exit (at most `limit`).
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                t.elapsed() < limit,
                "the server did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Log lines whose message is `msg`.
    pub fn logged(&self, msg: &str) -> Vec<Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["fields"]["message"] == msg)
            .cloned()
            .collect()
    }

    /// Waits until a line with this message is logged.
    pub async fn wait_log(&self, msg: &str, limit: Duration) -> Value {
        let t = Instant::now();
        loop {
            if let Some(v) = self.logged(msg).pop() {
                return v;
            }
            assert!(t.elapsed() < limit, "no log line {msg:?} within {limit:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A signed-in browser-style client (cookie + CSRF) of a running server.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub cookie: String,
    pub csrf: String,
    pub http: reqwest::Client,
}

impl Client {
    fn from_parts(base: &str, h: &reqwest::header::HeaderMap, body: &Value) -> Client {
        let cookie = h
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with("confab_session="))
            .expect("session cookie")
            .split(';')
            .next()
            .unwrap()
            .to_string();
        Client {
            base: base.to_string(),
            cookie,
            csrf: body["csrf_token"].as_str().unwrap().to_string(),
            http: reqwest::Client::new(),
        }
    }

    /// Completes first-run setup with the server's setup link.
    pub async fn setup(srv: &Server, username: &str) -> Client {
        let token = srv
            .setup
            .as_deref()
            .expect("setup link")
            .split("token=")
            .nth(1)
            .unwrap()
            .to_string();
        let r = reqwest::Client::new()
            .post(format!("{}/api/setup", srv.url))
            .json(&json!({"token": token, "username": username, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let h = r.headers().clone();
        Client::from_parts(&srv.url, &h, &r.json::<Value>().await.unwrap())
    }

    /// Signs in; Err(status) when refused (0 when unreachable).
    pub async fn login(base: &str, username: &str, password: &str) -> Result<Client, u16> {
        let r = reqwest::Client::new()
            .post(format!("{base}/api/auth/login"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .map_err(|_| 0u16)?;
        if r.status() != 200 {
            return Err(r.status().as_u16());
        }
        let h = r.headers().clone();
        Ok(Client::from_parts(
            base,
            &h,
            &r.json::<Value>().await.unwrap(),
        ))
    }

    /// The same session against another server (after a restore).
    pub fn at(&self, base: &str) -> Client {
        Client {
            base: base.to_string(),
            ..self.clone()
        }
    }

    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut rb = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header("cookie", &self.cookie);
        if method != reqwest::Method::GET {
            rb = rb.header("x-csrf-token", &self.csrf);
        }
        rb
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.req(reqwest::Method::GET, path).send().await.unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .req(reqwest::Method::POST, path)
            .json(&body)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    /// An API key with these scopes.
    pub async fn api_key(&self, scopes: &[&str]) -> String {
        let (s, v) = self
            .post("/api/keys", json!({"name": "ops-test", "scopes": scopes}))
            .await;
        assert_eq!(s, 201, "{v}");
        v["key"].as_str().unwrap().to_string()
    }

    /// Sends a message (new conversation unless `conversation_id`) and reads
    /// the whole answer. Returns (conversation_id, answer text, finished):
    /// finished is false for an answer that was stopped.
    pub async fn chat(
        &self,
        conversation_id: Option<&str>,
        content: &str,
        model: &str,
    ) -> Result<(String, String, bool), String> {
        let mut body = json!({"content": content, "model": model});
        if let Some(c) = conversation_id {
            body["conversation_id"] = json!(c);
        }
        let mut resp = self
            .req(reqwest::Method::POST, "/api/chat/stream")
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if resp.status() != 200 {
            return Err(format!("HTTP {}", resp.status()));
        }
        let (mut buf, mut conv, mut text, mut done) =
            (String::new(), String::new(), String::new(), false);
        while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(pos) = buf.find("\n\n") {
                let block: String = buf.drain(..pos + 2).collect();
                let event = block
                    .lines()
                    .find_map(|l| l.strip_prefix("event: "))
                    .unwrap_or("");
                let data = block
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .unwrap_or("null");
                let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
                match event {
                    "meta" => conv = v["conversation_id"].as_str().unwrap_or("").to_string(),
                    "delta" => text.push_str(v["text"].as_str().unwrap_or("")),
                    // A stopped answer (e.g. at shutdown) ends with `done` too.
                    "done" => done = v["finish_reason"] != "stopped",
                    "error" => return Err(format!("stream error {v}")),
                    _ => {}
                }
            }
        }
        Ok((conv, text, done))
    }

    /// Message ids found for a query (waits for the index when `wait`).
    pub async fn search(&self, q: &str) -> (Vec<String>, bool) {
        let (s, v) = self.get(&format!("/api/search?q={q}&limit=50")).await;
        assert_eq!(s, 200, "{v}");
        let ids = v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|h| h["message_id"].as_str().map(str::to_string))
            .collect();
        (ids, v["partial"].as_bool().unwrap_or(false))
    }
}

/// A fresh temporary directory under target/ (so binaries can be executed
/// from it even where /tmp is mounted noexec).
pub fn tempdir() -> tempfile::TempDir {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&base).unwrap();
    tempfile::tempdir_in(base).unwrap()
}

/// The static binary the release script makes, built with the cheaper
/// `static-test` profile (`scripts/build-release.sh --profile static-test`)
/// into `<target>/static`, a target directory of its own so the
/// `+crt-static` RUSTFLAGS never invalidate the normal build cache.
/// tests/run.sh builds it before the tests, so here it is only a freshness
/// check; run alone, the first test to get here builds it (minutes).
pub fn static_binary() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("CARGO_TARGET_TMPDIR is <target>/tmp");
        let out = without_confab_env(&mut Command::new("bash"))
            .arg(root.join("scripts/build-release.sh"))
            .args(["--profile", "static-test"])
            .env("CARGO_TARGET_DIR", target.join("static"))
            .current_dir(root)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .expect("runs scripts/build-release.sh");
        assert!(
            out.status.success(),
            "scripts/build-release.sh --profile static-test failed: {:?}",
            out.status
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let bin = PathBuf::from(stdout.lines().last().expect("the binary's path").trim());
        assert!(bin.is_file(), "no binary at {}", bin.display());
        bin
    })
    .clone()
}
