//! The real `confab` binary as a child process: the one way every test
//! launches it ([`confab`], [`confab_at`]), and a started server for the
//! crash tests.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_confab");

/// `confab` with no `CONFAB_*` variable leaking in from the test's
/// environment, and stdin closed (a test that feeds it sets its own).
pub fn confab() -> Command {
    confab_at(Path::new(BIN))
}

/// [`confab`] for another build of the binary (the static one).
pub fn confab_at(bin: &Path) -> Command {
    let mut c = Command::new(bin);
    without_confab_env(&mut c);
    c.stdin(Stdio::null());
    c
}

/// Removes `CONFAB_*` (nextest puts build.rs's `CONFAB_GIT_COMMIT` & co. in
/// the test's environment: a nested cargo build would see them as changed
/// and rebuild), `NOTIFY_SOCKET` and `WATCHDOG_*` from a command's
/// environment.
pub fn without_confab_env(c: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars() {
        if k.starts_with("CONFAB_") || k == "NOTIFY_SOCKET" || k.starts_with("WATCHDOG_") {
            c.env_remove(k);
        }
    }
    c
}

pub struct Server {
    pub child: Child,
    pub url: String,
    /// The first-run setup link, when the server printed one.
    pub setup: Option<String>,
}

/// Starts `confab serve` on 127.0.0.1:0 with this data dir and config file
/// and waits until it listens.
pub fn start(data: &Path, config: &Path) -> Server {
    let mut child = confab()
        .arg("--data-dir")
        .arg(data)
        .arg("--config")
        .arg(config)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let msg = v["fields"]["message"].as_str().unwrap_or("").to_string();
                if msg == "listening" || msg == "first-run setup" {
                    let _ = tx.send((msg, v["fields"]["url"].as_str().unwrap().to_string()));
                }
            }
        }
    });
    let (m, url) = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(m, "listening");
    let setup = rx
        .recv_timeout(Duration::from_millis(500))
        .ok()
        .map(|(_, u)| u);
    Server { child, url, setup }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config file with one OpenAI-compatible provider at `base` offering
/// `fake-model`, local detection off and loose sign-in throttling.
pub fn fake_provider_config(path: &Path, base: &str) {
    std::fs::write(
        path,
        format!(
            "detect_local_providers = false\n[auth]\nlogin_per_ip_per_minute = 10000\nlogin_burst = 10000\n\n[[providers]]\nkind = \"openai\"\nname = \"fake\"\nbase_url = \"{base}\"\napi_key = \"sk-test\"\nmodels = [\"fake-model\"]\n"
        ),
    )
    .unwrap();
}
