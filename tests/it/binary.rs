//! The real `confab` executable: CLI commands, a zero-config start, logs that
//! never carry secrets, healthcheck and graceful shutdown on SIGTERM.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn confab(dir: &Path) -> Command {
    let mut c = crate::common::proc::confab();
    c.current_dir(dir);
    c
}

struct Running {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    url: String,
}

impl Running {
    fn start(cwd: &Path, args: &[&str]) -> Running {
        let mut child = confab(cwd)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let l2 = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["fields"]["message"] == "listening"
                {
                    let _ = tx.send(v["fields"]["url"].as_str().unwrap().to_string());
                }
                l2.lock().unwrap().push(line);
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server logs its URL");
        Running { child, logs, url }
    }

    fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    fn term(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(t.elapsed() < Duration::from_secs(15), "server did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn default_config_is_printed_and_valid() {
    let dir = tempfile::tempdir().unwrap();
    let out = confab(dir.path()).arg("default-config").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("[auth]") && text.contains("registration"));
    std::fs::write(dir.path().join("c.toml"), &text).unwrap();
    let out = confab(dir.path())
        .args(["--config", "c.toml", "check-config"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration OK"));

    let out = confab(dir.path()).arg("version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(confab::VERSION));
}

#[test]
fn bad_config_stops_with_one_sentence_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), "registration = \"sometimes\"\n").unwrap();
    let out = confab(dir.path())
        .args(["--config", "c.toml", "serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("registration") && err.contains("invite"),
        "{err}"
    );

    let out = confab(dir.path())
        .env("CONFAB_MAX_BODY_BYTES", "huge")
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CONFAB_MAX_BODY_BYTES"));

    let out = confab(dir.path())
        .args(["--config", "missing.toml", "check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
}

#[test]
fn zero_config_serve_setup_logs_and_shutdown() {
    let cwd = tempfile::tempdir().unwrap();
    let srv = Running::start(cwd.path(), &["serve", "--listen", "127.0.0.1:0"]);

    // Data dir created under ./confab-data with mode 0700.
    use std::os::unix::fs::PermissionsExt;
    let data = cwd.path().join("confab-data");
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert!(data.join("confab.redb").exists());

    let t = Instant::now();
    let setup_line = loop {
        if let Some(l) = srv
            .logs()
            .into_iter()
            .find(|l| l.contains("first-run setup"))
        {
            break l;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "setup link logged");
        std::thread::sleep(Duration::from_millis(20));
    };
    let v: Value = serde_json::from_str(&setup_line).unwrap();
    let setup_url = v["fields"]["url"].as_str().unwrap().to_string();
    assert!(
        setup_url.starts_with(&format!("{}/setup?token=", srv.url)),
        "{setup_url}"
    );
    let token = setup_url.split("token=").nth(1).unwrap().to_string();

    let password = "Sup3r-Secret-Passw0rd";
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (cookie, csrf) = rt.block_on(async {
        let http = reqwest::Client::new();
        let r = http
            .post(format!("{}/api/setup", srv.url))
            .json(&json!({"token": token, "username": "admin", "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let r = http
            .post(format!("{}/api/auth/login", srv.url))
            .json(&json!({"username": "admin", "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
        let body: Value = r.json().await.unwrap();
        let value = cookie
            .split(';')
            .next()
            .unwrap()
            .split('=')
            .nth(1)
            .unwrap()
            .to_string();
        let key = http
            .post(format!("{}/api/keys", srv.url))
            .header("cookie", format!("confab_session={value}"))
            .header("x-csrf-token", body["csrf_token"].as_str().unwrap())
            .json(&json!({"name": "k"}))
            .send()
            .await
            .unwrap();
        assert_eq!(key.status(), 201);
        let kv: Value = key.json().await.unwrap();
        let _ = http
            .post(format!("{}/api/auth/login?password={password}", srv.url))
            .json(&json!({"username": "admin", "password": "wrong-wrong"}))
            .send()
            .await
            .unwrap();
        (
            format!("{value}|{}", kv["key"].as_str().unwrap()),
            body["csrf_token"].as_str().unwrap().to_string(),
        )
    });

    // healthcheck against the running server.
    let out = confab(cwd.path())
        .args(["healthcheck", "--url", &srv.url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A second server on the same data dir refuses with a clear message.
    let out = confab(cwd.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another confab is using"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    std::thread::sleep(Duration::from_millis(200));
    let logs = srv.logs();
    let requests: Vec<Value> = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "request")
        .collect();
    assert!(requests.len() >= 4, "{logs:?}");
    for r in &requests {
        let f = &r["fields"];
        assert!(f["method"].is_string() && f["path"].is_string());
        assert!(f["status"].is_number() && f["duration_ms"].is_number());
        assert!(f["request_id"].as_str().unwrap().len() >= 8);
    }
    // Query strings are not logged (they may carry secrets).
    assert!(
        requests
            .iter()
            .any(|r| r["fields"]["path"] == "/api/auth/login")
    );
    let all = logs.join("\n");
    for secret in [
        password,
        &csrf,
        cookie.split('|').next().unwrap(),
        cookie.split('|').nth(1).unwrap(),
    ] {
        assert!(!all.contains(secret), "a secret reached the log");
    }

    let status = srv.term();
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    let out = confab(cwd.path())
        .args(["healthcheck", "--url", &format!("http://{}", "127.0.0.1:9")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn cli_user_and_invite_management() {
    let cwd = tempfile::tempdir().unwrap();
    let run = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = confab(cwd.path())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, _, err) = run(
        &["user", "add", "root", "--password-stdin"],
        "first-password\n",
    );
    assert_eq!(code, Some(2), "the first account must be an admin");
    assert!(err.contains("--admin"), "{err}");
    let (code, out, err) = run(
        &["user", "add", "root", "--admin", "--password-stdin"],
        "first-password\n",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("created admin root"));
    let (code, _, err) = run(
        &["user", "add", "ROOT", "--password-stdin"],
        "first-password\n",
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("already taken"), "{err}");
    let (code, _, err) = run(&["user", "add", "shorty", "--password-stdin"], "short\n");
    assert_eq!(code, Some(2));
    assert!(err.contains("password"), "{err}");
    run(
        &["user", "add", "bob", "--password-stdin"],
        "bob-password\n",
    );
    let (_, out, _) = run(&["user", "list"], "");
    assert!(out.contains("root") && out.contains("bob") && out.contains("admin"));
    let (code, _, _) = run(&["user", "disable", "bob"], "");
    assert_eq!(code, Some(0));
    let (_, out, _) = run(&["user", "list"], "");
    assert!(
        out.lines()
            .any(|l| l.contains("bob") && l.contains("disabled"))
    );
    run(&["user", "enable", "bob"], "");
    run(&["user", "set-role", "bob", "admin"], "");
    let (code, _, err) = run(&["user", "set-role", "root", "user"], "");
    assert_eq!(
        code,
        Some(0),
        "bob is an admin now, so root may step down: {err}"
    );
    let (code, _, err) = run(&["user", "set-role", "bob", "user"], "");
    assert_eq!(code, Some(2), "the last admin cannot step down");
    assert!(err.contains("administrator"), "{err}");
    let (code, _, _) = run(
        &["user", "passwd", "bob", "--password-stdin"],
        "new-bob-password\n",
    );
    assert_eq!(code, Some(0));
    let (code, _, err) = run(
        &["user", "passwd", "nobody", "--password-stdin"],
        "new-bob-password\n",
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("nobody"));

    let (code, url, _) = run(&["invite", "create", "--uses", "2"], "");
    assert_eq!(code, Some(0));
    assert!(url.contains("/register?invite="));
    let code_str = url.trim().split("invite=").nth(1).unwrap().to_string();
    let (_, list, _) = run(&["invite", "list"], "");
    assert!(list.contains(&code_str));
    let (code, _, _) = run(&["invite", "revoke", &code_str], "");
    assert_eq!(code, Some(0));
    let (code, _, _) = run(&["invite", "revoke", &code_str], "");
    assert_eq!(code, Some(2));

    // The server accepts what the CLI wrote, and has no setup link.
    let srv = Running::start(cwd.path(), &["serve", "--listen", "127.0.0.1:0"]);
    assert!(!srv.logs().iter().any(|l| l.contains("first-run setup")));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{}/api/auth/login", srv.url))
            .json(&json!({"username": "bob", "password": "new-bob-password"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    });
}
