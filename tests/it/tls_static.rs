//! HTTPS with certificate files: the handshake, ALPN h2 and http/1.1, live
//! reload when the files change and on SIGHUP (open connections keep
//! going), a broken file keeping the old certificate, HSTS only for a
//! CA-issued certificate, and the low-port error.

use crate::common;
use crate::pebble;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use confab::app::AppState;
use confab::config::Config;
use confab::store::redb::RedbStore;
use pebble::{H1Conn, TestCa, handshake, https_builder, wait_for};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const NAME: &str = "localhost";

struct Files {
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    fn new(dir: &Path) -> Files {
        Files {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }

    /// Writes a new pair (the key first, as a careful tool would not, to
    /// show a half-written update does not take the server down).
    fn write(&self, pair: &(String, String)) {
        std::fs::write(&self.key, &pair.1).unwrap();
        std::fs::write(&self.cert, &pair.0).unwrap();
    }
}

fn serial_of(pem: &str) -> String {
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes()).unwrap();
    confab::tls::certs::describe(&der, confab::tls::CertSource::Files)
        .unwrap()
        .serial
}

struct Server {
    state: AppState,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(data: &Path, files: &Files, f: impl FnOnce(&mut Config)) -> Server {
    let mut cfg = common::test_config(data);
    cfg.tls.cert = Some(files.cert.clone());
    cfg.tls.key = Some(files.key.clone());
    cfg.tls.reload_check_secs = 1;
    f(&mut cfg);
    cfg.validate().unwrap();
    let app = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = app.local_addr().unwrap();
    let state = AppState::new(cfg, RedbStore::open_shared(data).unwrap(), addr)
        .await
        .unwrap();
    let (tx, rx) = oneshot::channel();
    let listeners = confab::tls::Listeners {
        app,
        http: None,
        https: true,
    };
    let handle = tokio::spawn(confab::app::serve_listeners(
        listeners,
        state.clone(),
        async move {
            let _ = rx.await;
        },
    ));
    Server {
        state,
        addr,
        stop: Some(tx),
        handle,
    }
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("https://{NAME}:{}{path}", self.addr.port())
    }

    /// The serial served to a client trusting `roots`, if it accepts it.
    async fn serial(&self, roots: &str) -> Option<String> {
        handshake(self.addr, NAME, Some(roots), &[b"http/1.1"])
            .await
            .ok()
            .map(|h| h.serial())
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.handle.await.unwrap().unwrap();
    }
}

fn client(ca: &TestCa) -> reqwest::ClientBuilder {
    https_builder(&ca.cert_pem).resolve(NAME, SocketAddr::from(([127, 0, 0, 1], 0)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_alpn_and_live_reload_without_dropping_connections() {
    let ca = TestCa::new("confab static test CA");
    let tmp = tempfile::tempdir().unwrap();
    let files = Files::new(tmp.path());
    let a = ca.leaf(&[NAME, "127.0.0.1"]);
    files.write(&a);
    let data = tempfile::tempdir().unwrap();
    let s = start(data.path(), &files, |_| {}).await;

    // ALPN: h2 by default, http/1.1 when that is all the client speaks.
    let h2 = client(&ca).build().unwrap();
    let r = h2.get(s.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    let h1 = client(&ca).http1_only().build().unwrap();
    let r = h1.get(s.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    for (offer, want) in [
        (&[&b"h2"[..], b"http/1.1"][..], &b"h2"[..]),
        (&[&b"http/1.1"[..]][..], &b"http/1.1"[..]),
    ] {
        let hs = handshake(s.addr, NAME, Some(&ca.cert_pem), offer)
            .await
            .unwrap();
        assert_eq!(hs.alpn.as_deref(), Some(want));
    }
    // TLS 1.2 clients are served too.
    let tls12 = client(&ca)
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    assert_eq!(
        tls12.get(s.url("/health")).send().await.unwrap().status(),
        200
    );
    // Cookies are Secure and links are https without a public_url.
    assert!(s.state.cfg.secure_cookies());
    assert!(
        s.state.public_base.starts_with("https://"),
        "{}",
        s.state.public_base
    );

    // A connection opened now...
    let mut old = H1Conn::open(s.addr, NAME, &ca.cert_pem).await;
    assert_eq!(old.serial, serial_of(&a.0));
    assert_eq!(old.get(NAME, "/health").await, 200);

    // ...outlives a change of the files: new handshakes get the new one.
    let b = ca.leaf(&[NAME]);
    files.write(&b);
    let want = serial_of(&b.0);
    wait_for(10, "the reloaded certificate", || async {
        (s.serial(&ca.cert_pem).await? == want).then_some(())
    })
    .await;
    assert_eq!(
        old.get(NAME, "/health").await,
        200,
        "the old connection still works"
    );
    assert_eq!(old.serial, serial_of(&a.0));

    // A broken file keeps the current certificate and says why.
    std::fs::write(&files.cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    let err = wait_for(10, "the reload error", || async {
        s.state.tls.as_ref().unwrap().status().last_error
    })
    .await;
    assert!(err.message.contains("tls.cert"), "{err:?}");
    assert_eq!(s.serial(&ca.cert_pem).await.unwrap(), want);
    assert_eq!(old.get(NAME, "/health").await, 200);

    // Fixed: served again, and the error is gone.
    let c = ca.leaf(&[NAME]);
    files.write(&c);
    let want = serial_of(&c.0);
    wait_for(10, "the repaired certificate", || async {
        (s.serial(&ca.cert_pem).await? == want).then_some(())
    })
    .await;
    assert!(s.state.tls.as_ref().unwrap().status().last_error.is_none());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_reload_reloads_the_files_and_self_signed_gets_no_hsts() {
    let tmp = tempfile::tempdir().unwrap();
    let files = Files::new(tmp.path());
    // Self-signed: served, but no HSTS (a browser could never get past it).
    let own = rcgen::generate_simple_self_signed(vec![NAME.to_string()]).unwrap();
    files.write(&(own.cert.pem(), own.signing_key.serialize_pem()));
    let data = tempfile::tempdir().unwrap();
    // Polling off: only a configuration reload (SIGHUP) reloads.
    let s = start(data.path(), &files, |c| c.tls.reload_check_secs = 0).await;
    let loose = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .resolve(NAME, SocketAddr::from(([127, 0, 0, 1], 0)))
        .build()
        .unwrap();
    let r = loose.get(s.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("strict-transport-security").is_none());

    let ca = TestCa::new("confab static test CA");
    let next = ca.leaf(&[NAME]);
    files.write(&next);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let hs = handshake(s.addr, NAME, None, &[b"http/1.1"]).await.unwrap();
    assert_ne!(hs.serial(), serial_of(&next.0), "no polling");
    let cfg = (*s.state.live.get()).clone();
    s.state.live.publish(cfg);
    let want = serial_of(&next.0);
    wait_for(10, "the certificate after the reload", || async {
        (s.serial(&ca.cert_pem).await? == want).then_some(())
    })
    .await;
    let r = client(&ca)
        .build()
        .unwrap()
        .get(s.url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    s.stop().await;
}

/// The binary: `--tls-cert/--tls-key`, SIGHUP, and `confab healthcheck`.
#[test]
fn sighup_reloads_the_files_in_the_real_binary() {
    let ca = TestCa::new("confab static test CA");
    let tmp = tempfile::tempdir().unwrap();
    let files = Files::new(tmp.path());
    files.write(&ca.leaf(&[NAME]));
    std::fs::write(tmp.path().join("c.toml"), "[tls]\nreload_check_secs = 0\n").unwrap();
    let data = tmp.path().join("data");
    let mut child = confab_cmd()
        .arg("--data-dir")
        .arg(&data)
        .arg("--config")
        .arg(tmp.path().join("c.toml"))
        .args(["serve", "--https-listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&files.cert)
        .arg("--tls-key")
        .arg(&files.key)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut url = None;
    let mut lines = Vec::new();
    while url.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no listening line: {lines:?}"));
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
            && v["fields"]["message"] == "listening"
        {
            url = v["fields"]["url"].as_str().map(str::to_string);
        }
        lines.push(line);
    }
    let url = url.unwrap();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let addr: SocketAddr = url.trim_start_matches("https://").parse().unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    // Serving (so the SIGHUP handler is installed, too).
    rt.block_on(wait_for(10, "the first handshake", || async {
        handshake(addr, NAME, Some(&ca.cert_pem), &[b"http/1.1"])
            .await
            .ok()
    }));
    let next = ca.leaf(&[NAME]);
    files.write(&next);
    Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    let want = serial_of(&next.0);
    let reloaded = rt.block_on(async {
        for _ in 0..100 {
            if let Ok(hs) = handshake(addr, NAME, Some(&ca.cert_pem), &[b"http/1.1"]).await
                && hs.serial() == want
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    });
    if !reloaded {
        let mut seen = lines.join("\n");
        while let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push('\n');
            seen.push_str(&l);
        }
        panic!(
            "no new certificate after SIGHUP (exit: {:?}); log:\n{seen}",
            child.try_wait()
        );
    }
    let mut seen = String::new();
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) {
        seen.push_str(&l);
    }
    assert!(seen.contains("reloaded the TLS certificate"), "{seen}");

    // `confab healthcheck` finds the https listener from the same settings.
    let out = confab_cmd()
        .arg("--config")
        .arg(tmp.path().join("c.toml"))
        .args(["healthcheck", "--url", &url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = child.kill();
    let _ = child.wait();
}

fn confab_cmd() -> Command {
    let mut c = common::proc::confab();
    c.env("CONFAB_DETECT_LOCAL_PROVIDERS", "false");
    c
}

/// Without CAP_NET_BIND_SERVICE a low port fails with a sentence naming
/// the capability and the systemd unit. As root, the binary is run as
/// `nobody` (with no capabilities) to see what an ordinary user sees.
#[test]
fn low_port_without_the_capability_names_cap_net_bind_service() {
    let start: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024);
    let msg = confab::tls::bind_error(
        "0.0.0.0:443".parse().unwrap(),
        "tls.https_listen (--https-listen)",
        &std::io::Error::from(std::io::ErrorKind::PermissionDenied),
    );
    assert!(
        msg.contains("CAP_NET_BIND_SERVICE") && msg.contains("systemd"),
        "{msg}"
    );
    assert!(msg.contains("--https-listen"), "{msg}");
    assert!(
        start > 1,
        "this kernel lets anyone bind any port (ip_unprivileged_port_start={start}); the message is checked above"
    );
    let port = (start - 1).min(443).to_string();
    let tmp = tempfile::tempdir().unwrap();
    let ca = TestCa::new("confab static test CA");
    let files = Files::new(tmp.path());
    files.write(&ca.leaf(&[NAME]));
    use std::os::unix::fs::PermissionsExt;
    for p in [tmp.path(), &files.cert, &files.key] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let data = tmp.path().join("data");
    let out = unprivileged_confab()
        .arg("--data-dir")
        .arg(&data)
        .args([
            "serve",
            "--https-listen",
            &format!("127.0.0.1:{port}"),
            "--tls-cert",
        ])
        .arg(&files.cert)
        .arg("--tls-key")
        .arg(&files.key)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("CAP_NET_BIND_SERVICE") && err.contains("confab.service"),
        "{err}"
    );
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");

    // With --domain and no addresses, the defaults are port 443 for HTTPS
    // and port 80 for the plain-HTTP listener (bound before anything talks
    // to a CA, so the directory is never contacted).
    if start > 443 {
        let acme = |extra: &[&str]| {
            let out = unprivileged_confab()
                .arg("--data-dir")
                .arg(&data)
                .args([
                    "serve",
                    "--domain",
                    "chat.confab.test",
                    "--acme-directory",
                    "https://127.0.0.1:9/dir",
                ])
                .args(extra)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            assert_eq!(out.status.code(), Some(2), "{err}");
            assert!(err.contains("CAP_NET_BIND_SERVICE"), "{err}");
            err
        };
        let err = acme(&[]);
        assert!(
            err.contains(":443 (tls.https_listen (--https-listen))"),
            "{err}"
        );
        let err = acme(&["--https-listen", "127.0.0.1:0"]);
        assert!(
            err.contains(":80 (tls.http_listen (--http-listen))"),
            "{err}"
        );
    }
}

/// The binary as a user without CAP_NET_BIND_SERVICE: itself when not
/// root, else run as `nobody` with every capability dropped.
fn unprivileged_confab() -> Command {
    let mut cmd = if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            common::proc::BIN,
        ]);
        common::proc::without_confab_env(&mut c);
        c
    } else {
        common::proc::confab()
    };
    cmd.env("CONFAB_DETECT_LOCAL_PROVIDERS", "false");
    cmd
}

/// Whether this process runs as root (from /proc, no unsafe code).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// TLS is rustls with the ring provider, nothing else: no OpenSSL or
/// native-tls crate (nor aws-lc, the other rustls provider) in the lock file
/// (every platform, dev-dependencies included), and none in what
/// `cargo tree -e normal` says the binary is built from.
#[test]
fn no_openssl_anywhere_in_the_dependencies() {
    const BANNED: [&str; 8] = [
        "openssl",
        "openssl-sys",
        "openssl-src",
        "native-tls",
        "tokio-native-tls",
        "hyper-tls",
        "aws-lc-rs",
        "aws-lc-sys",
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap();
    let locked: Vec<&str> = lock
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .collect();
    assert!(locked.contains(&"rustls") && locked.contains(&"ring"));
    for b in BANNED {
        assert!(!locked.contains(&b), "{b} is in Cargo.lock");
    }

    let out = Command::new(env!("CARGO"))
        .current_dir(root)
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let crates: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for want in ["confab", "rustls", "tokio-rustls", "ring", "instant-acme"] {
        assert!(crates.contains(want), "{want} missing from:\n{text}");
    }
    for b in BANNED {
        assert!(
            !crates.contains(b),
            "{b} in `cargo tree -e normal`:\n{text}"
        );
    }
}
