//! Automatic certificates against a real ACME CA: Let's Encrypt's Pebble
//! test server (with its random validation delays and 5 % bad-nonce
//! rejection), pebble-challtestsrv as the DNS, and confab listening on the
//! ports Pebble validates.

use crate::common;
use crate::common_upstream;
use crate::pebble;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use confab::app::AppState;
use confab::config::{Config, ProviderEntry};
use confab::providers::ProviderKind;
use confab::store::redb::RedbStore;
use pebble::{DOMAIN, Pebble, PebbleOpts, free_port, handshake, https_client, wait_for};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// confab in this process, with the https and plain-http listeners bound
/// before Pebble learns their ports.
struct Server {
    state: AppState,
    https: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("https://{DOMAIN}:{}{path}", self.https.port())
    }

    fn status(&self) -> confab::tls::TlsStatus {
        self.state.tls.as_ref().unwrap().status()
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.handle.await.unwrap().unwrap();
    }
}

async fn start(
    data: &Path,
    pebble: &Pebble,
    https: TcpListener,
    http: Option<TcpListener>,
    f: impl FnOnce(&mut Config),
) -> Server {
    let mut cfg = common::test_config(data);
    let addr = https.local_addr().unwrap();
    cfg.tls.domains = vec![DOMAIN.into()];
    cfg.tls.acme_email = Some("ops@confab.test".into());
    cfg.tls.acme_directory = Some(pebble.directory.clone());
    cfg.tls.acme_ca_root = Some(pebble.ca_root.clone());
    cfg.tls.https_listen = Some(addr);
    cfg.tls.http_listen = Some(match &http {
        Some(h) => h.local_addr().unwrap().to_string(),
        None => "off".into(),
    });
    f(&mut cfg);
    cfg.validate().unwrap();
    let store = RedbStore::open_shared(data).unwrap();
    let state = AppState::new(cfg, store, addr).await.unwrap();
    let (tx, rx) = oneshot::channel();
    let listeners = confab::tls::Listeners {
        app: https,
        http,
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
        https: addr,
        stop: Some(tx),
        handle,
    }
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// Waits until the served certificate is one the CA issued.
async fn issued(s: &Server, secs: u64) -> confab::tls::CertInfo {
    wait_for(secs, "a certificate from the CA", || async {
        let st = s.status();
        let c = st.certificate.unwrap();
        (c.source == confab::tls::CertSource::Acme).then_some(c)
    })
    .await
}

async fn setup_admin(client: &reqwest::Client, s: &Server) -> common::Session {
    let url = s.state.setup_url().unwrap();
    assert!(
        url.starts_with(&format!("https://{DOMAIN}:{}/setup", s.https.port())),
        "public URL follows the domain: {url}"
    );
    let token = url.split("token=").nth(1).unwrap();
    let r = client
        .post(s.url("/api/setup"))
        .json(&json!({"token": token, "username": "admin", "password": common::PASSWORD}))
        .send()
        .await
        .unwrap();
    let resp = common::Resp::from(r).await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    assert!(
        resp.header("set-cookie").unwrap().contains("Secure"),
        "cookies are Secure over https"
    );
    common::Session::from_resp(&resp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_fails_so_tls_alpn01_gets_the_certificate() {
    let (https, http) = (bind().await, bind().await);
    // Pebble validates HTTP-01 on a port nobody listens on: "connection
    // refused", as with a firewall; TLS-ALPN-01 on confab's https port.
    let pebble = Pebble::start(PebbleOpts::new(
        free_port(),
        https.local_addr().unwrap().port(),
    ))
    .await;
    let data = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let s = start(data.path(), &pebble, https, Some(http), |_| {}).await;
    let cert = issued(&s, 60).await;
    eprintln!(
        "issued by tls-alpn-01 after http-01 failed in {:?}",
        started.elapsed()
    );
    let st = s.status();
    assert_eq!(st.challenge.as_deref(), Some("tls-alpn-01"), "{st:?}");
    assert!(
        st.last_error.is_none() && st.consecutive_failures == 0,
        "{st:?}"
    );
    assert!(
        cert.trusted && cert.names == vec![DOMAIN.to_string()],
        "{cert:?}"
    );
    assert_eq!(
        pebble.orders(),
        2,
        "one order per method:\n{}",
        pebble.log()
    );

    // A client that trusts only Pebble's root: handshake, 200, HSTS.
    let root = pebble.root_pem().await;
    let client = https_client(&root);
    let r = client.get(s.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");

    // The admin status page.
    let admin = setup_admin(&client, &s).await;
    let r = client
        .get(s.url("/api/admin/tls"))
        .header("cookie", format!("confab_session={}", admin.cookie))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["mode"], "acme");
    assert_eq!(v["domains"], json!([DOMAIN]));
    assert_eq!(v["challenge"], "tls-alpn-01");
    assert_eq!(v["certificate"]["source"], "acme");
    assert!(v["certificate"]["days_left"].as_i64().unwrap() >= 89, "{v}");
    assert!(v["renew_at"].is_string(), "{v}");
    let r = client.get(s.url("/api/admin/tls")).send().await.unwrap();
    assert_eq!(r.status(), 401, "admins only");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_explained_and_the_self_signed_stand_in_stays() {
    let (https, http) = (bind().await, bind().await);
    // Both validation ports lead nowhere.
    let pebble = Pebble::start(PebbleOpts::new(free_port(), free_port())).await;
    let data = tempfile::tempdir().unwrap();
    let s = start(data.path(), &pebble, https, Some(http), |_| {}).await;
    let err = wait_for(60, "the failure in the status", || async {
        s.status().last_error
    })
    .await;
    let st = s.status();
    assert!(
        err.message.contains("http-01") && err.message.contains("tls-alpn-01"),
        "{err:?}"
    );
    let hint = err.hint.clone().unwrap();
    assert!(
        hint.contains("port 80") && hint.contains("port 443") && hint.contains("firewall"),
        "{hint}"
    );
    assert!(err.retry_at.is_some(), "{err:?}");
    assert_eq!(st.consecutive_failures, 1);
    let cert = st.certificate.unwrap();
    assert_eq!(cert.source, confab::tls::CertSource::SelfSigned);
    assert!(!cert.trusted);

    // Served meanwhile: the self-signed certificate, without HSTS.
    let hs = handshake(s.https, DOMAIN, None, &[b"h2"]).await.unwrap();
    assert!(
        hs.info().issuer.contains("confab self-signed"),
        "{}",
        hs.info().issuer
    );
    let loose = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .resolve(DOMAIN, SocketAddr::from(([127, 0, 0, 1], 0)))
        .build()
        .unwrap();
    let r = loose.get(s.url("/health/deep")).send().await.unwrap();
    assert!(r.headers().get("strict-transport-security").is_none());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["tls"]["source"], "self_signed", "{v}");
    assert!(
        v["tls"]["last_error"]
            .as_str()
            .unwrap()
            .contains("firewall"),
        "{v}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn renewal_swaps_the_certificate_under_an_open_sse_stream() {
    let (https, http) = (bind().await, bind().await);
    let (http_port, https_port) = (
        http.local_addr().unwrap().port(),
        https.local_addr().unwrap().port(),
    );
    // 20-second certificates: renewal is due when a third (≈7 s) is left.
    let mut opts = PebbleOpts::new(http_port, https_port);
    opts.validity_secs = 20;
    let pebble = Pebble::start(opts).await;
    let up = common_upstream::FakeUpstream::start().await;
    let words: Vec<String> = (0..36).map(|i| format!("w{i}")).collect();
    up.set_reply(&words.join(" "));
    up.set_token_delay(Duration::from_millis(500));
    let data = tempfile::tempdir().unwrap();
    let s = start(data.path(), &pebble, https, Some(http), |cfg| {
        let mut p = ProviderEntry::new(ProviderKind::Openai, "fake", up.openai_base());
        p.api_key = Some(confab::config::Secret("sk-test".into()));
        p.models = Some(vec!["fake-model".into()]);
        cfg.providers.push(p);
    })
    .await;
    let first = issued(&s, 60).await;
    let root = pebble.root_pem().await;
    let client = https_client(&root);
    let admin = setup_admin(&client, &s).await;

    // A long answer (36 tokens, 0.5 s apart) streams over one connection...
    let resp = client
        .post(s.url("/api/chat/stream"))
        .header("cookie", format!("confab_session={}", admin.cookie))
        .header("x-csrf-token", &admin.csrf)
        .json(&json!({"content": "count for me", "model": "fake-model"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut sse = common::SseReader::new(resp);
    let meta = sse.next().await.unwrap();
    assert_eq!(meta.event, "meta", "{meta:?}");
    let mut events = vec![meta];

    // ...while the certificate is renewed and swapped in.
    let reader = tokio::spawn(async move {
        while let Some(e) = sse.next().await {
            events.push(e);
        }
        events
    });
    let renewed = wait_for(30, "the renewed certificate", || async {
        let c = s.status().certificate.unwrap();
        (c.serial != first.serial).then_some(c)
    })
    .await;
    assert!(renewed.trusted);
    let hs = handshake(s.https, DOMAIN, Some(&root), &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(
        hs.serial(),
        renewed.serial,
        "new handshakes get the new certificate"
    );
    assert!(!reader.is_finished(), "the stream outlived the swap");

    let events = reader.await.unwrap();
    let last = events.last().unwrap();
    assert_eq!(last.event, "done", "the stream ended normally: {last:?}");
    assert_eq!(
        common::text_of(&events).split_whitespace().count(),
        words.len()
    );
    assert!(pebble.issued() >= 2, "{}", pebble.log());
    s.stop().await;
}

/// The real binary, its JSON log collected.
struct Confab {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Confab {
    fn start(data: &Path, args: &[String]) -> Result<Confab, String> {
        let mut child = common::proc::confab()
            .env("CONFAB_DETECT_LOCAL_PROVIDERS", "false")
            .arg("--data-dir")
            .arg(data)
            .arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let (l2, stderr) = (log.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("\"listening\"") {
                    let _ = tx.send(());
                }
                l2.lock().unwrap().push(line);
            }
        });
        let started = Instant::now();
        loop {
            if rx.recv_timeout(Duration::from_millis(100)).is_ok() {
                return Ok(Confab { child, log });
            }
            if let Ok(Some(st)) = child.try_wait() {
                return Err(format!("exited with {st}: {:?}", log.lock().unwrap()));
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "confab did not start"
            );
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn term(mut self) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let t = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(t.elapsed() < Duration::from_secs(20), "confab did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Confab {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pebble as it comes (random validation delays, 5 % bad nonces), confab
/// started from the command line: HTTP-01 issuance, the redirect, a client
/// that trusts only Pebble's root, and a restart that reuses the stored
/// certificate without a new order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_issuance_with_pebble_defaults_and_restart_reuses_the_certificate() {
    let data = tempfile::tempdir().unwrap();
    let mut attempt = 0;
    let (pebble, srv, args, https_port, http_port) = loop {
        attempt += 1;
        let (https_port, http_port) = (free_port(), free_port());
        let mut opts = PebbleOpts::new(http_port, https_port);
        opts.nosleep = false;
        let pebble = Pebble::start(opts).await;
        let args: Vec<String> = [
            "--domain",
            DOMAIN,
            "--acme-email",
            "ops@confab.test",
            "--acme-directory",
            &pebble.directory,
            "--acme-ca-root",
            pebble.ca_root.to_str().unwrap(),
            "--https-listen",
            &format!("127.0.0.1:{https_port}"),
            "--http-listen",
            &format!("127.0.0.1:{http_port}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        match Confab::start(data.path(), &args) {
            Ok(c) => break (pebble, c, args, https_port, http_port),
            Err(e) if attempt < 3 && e.contains("already in use") => continue,
            Err(e) => panic!("{e}"),
        }
    };
    let started = Instant::now();
    let https = SocketAddr::from(([127, 0, 0, 1], https_port));
    let log = srv.log();
    assert!(
        log.contains("serving a self-signed certificate until the first one is issued"),
        "{log}"
    );
    // While the CA validates, the self-signed stand-in is served.
    let hs = handshake(https, DOMAIN, None, &[b"http/1.1"])
        .await
        .unwrap();
    assert!(
        hs.info().issuer.contains("confab self-signed") || pebble.issued() > 0,
        "{:?}",
        hs.info()
    );

    let root = pebble.root_pem().await;
    let client = https_client(&root);
    let url = |p: &str| format!("https://{DOMAIN}:{https_port}{p}");
    wait_for(90, "a trusted https answer", || async {
        match client.get(url("/health")).send().await {
            Ok(r) if r.status() == 200 => Some(()),
            _ => None,
        }
    })
    .await;
    eprintln!(
        "issued by http-01 in {:?} (random validation delay on)",
        started.elapsed()
    );
    let orders = pebble.orders();
    assert!(orders >= 1);
    wait_for(10, "the issuance log line", || async {
        srv.log().contains("certificate issued").then_some(())
    })
    .await;
    assert!(
        srv.log().contains("\"challenge\":\"http-01\""),
        "{}",
        srv.log()
    );

    // The chain: leaf, then Pebble's intermediate; verified up to the root.
    let hs = handshake(https, DOMAIN, Some(&root), &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(hs.alpn.as_deref(), Some(&b"h2"[..]));
    let inter = pebble.intermediate_pem().await;
    let inter = CertificateDer::from_pem_slice(inter.as_bytes()).unwrap();
    assert_eq!(
        hs.chain.get(1),
        Some(&inter),
        "the chain carries the intermediate"
    );
    let serial = hs.serial();

    let r = client.get(url("/health/deep")).send().await.unwrap();
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["tls"]["source"], "acme", "{v}");
    assert!(v["tls"]["days_left"].as_i64().unwrap() >= 89, "{v}");
    assert!(v["tls"]["last_error"].is_null(), "{v}");

    // Plain HTTP redirects to the same path over https; HTTP-01 tokens
    // that are not pending are 404.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .resolve(DOMAIN, SocketAddr::from(([127, 0, 0, 1], 0)))
        .build()
        .unwrap();
    let base = format!("http://{DOMAIN}:{http_port}");
    let r = plain
        .get(format!("{base}/c/some-chat?x=1&y=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(
        r.headers()["location"],
        format!("https://{DOMAIN}:{https_port}/c/some-chat?x=1&y=2").as_str()
    );
    let r = plain.post(format!("{base}/api/x")).send().await.unwrap();
    assert_eq!(r.status(), 308);
    let r = plain
        .get(format!("{base}/.well-known/acme-challenge/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Restart: the stored certificate, no new order.
    srv.term();
    let srv = Confab::start(data.path(), &args).unwrap();
    let hs = handshake(https, DOMAIN, Some(&root), &[b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(
        hs.serial(),
        serial,
        "the stored certificate is served again"
    );
    let r = client.get(url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = srv.log();
    assert!(log.contains("using the stored certificate"), "{log}");
    assert!(!log.contains("self-signed"), "{log}");
    assert!(!log.contains("requesting a certificate"), "{log}");
    assert_eq!(pebble.orders(), orders, "no new order:\n{}", pebble.log());
    assert_eq!(
        pebble.accounts(),
        1,
        "the stored ACME account is reused:\n{}",
        pebble.log()
    );
    srv.term();
}
