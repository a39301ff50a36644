//! TLS test helpers: a throwaway CA (rcgen), TLS clients that trust only a
//! given root, and the Pebble ACME test server with pebble-challtestsrv as
//! its DNS (see README.md in this directory).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

/// The name certificates are issued for; challtestsrv resolves it (and any
/// other name) to 127.0.0.1.
pub const DOMAIN: &str = "chat.confab.test";

/// A CA and a way to issue leaf certificates from it.
pub struct TestCa {
    pub cert_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, name.to_string());
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = p.self_signed(&key).unwrap();
        TestCa {
            cert_pem: cert.pem(),
            issuer: rcgen::Issuer::new(p, key),
        }
    }

    /// (certificate PEM, key PEM) for `names` (DNS names or IPs).
    pub fn leaf(&self, names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, names[0].to_string());
        p.use_authority_key_identifier_extension = true;
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub fn der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).unwrap()
    }
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An HTTPS client that trusts only `root` and sends `DOMAIN` (and
/// `localhost`) to 127.0.0.1.
pub fn https_client(root_pem: &str) -> reqwest::Client {
    https_builder(root_pem).build().unwrap()
}

pub fn https_builder(root_pem: &str) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(root_pem.as_bytes()).unwrap())
        .resolve(DOMAIN, SocketAddr::from(([127, 0, 0, 1], 0)))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
}

/// What a TLS handshake with the server showed.
pub struct Handshake {
    pub chain: Vec<CertificateDer<'static>>,
    pub alpn: Option<Vec<u8>>,
    pub stream: tokio_rustls::client::TlsStream<TcpStream>,
}

impl Handshake {
    pub fn serial(&self) -> String {
        confab::tls::certs::describe(&self.chain[0], confab::tls::CertSource::Acme)
            .unwrap()
            .serial
    }
    pub fn info(&self) -> confab::tls::CertInfo {
        confab::tls::certs::describe(&self.chain[0], confab::tls::CertSource::Acme).unwrap()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Handshakes with `addr` as `name`, trusting only `roots` (PEM); `None`
/// roots accepts any certificate (to look at a self-signed one).
pub async fn handshake(
    addr: SocketAddr,
    name: &str,
    roots: Option<&str>,
    alpn: &[&[u8]],
) -> Result<Handshake, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let mut cfg = match roots {
        Some(pem) => {
            let mut store = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                store.add(c.unwrap()).unwrap();
            }
            builder.with_root_certificates(store).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
            .with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let server = ServerName::try_from(name.to_string()).unwrap();
    let stream = connector
        .connect(server, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (_, conn) = stream.get_ref();
    Ok(Handshake {
        chain: conn
            .peer_certificates()
            .unwrap()
            .iter()
            .map(|c| c.clone().into_owned())
            .collect(),
        alpn: conn.alpn_protocol().map(|p| p.to_vec()),
        stream,
    })
}

#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// GET `path` over an HTTP/1.1 connection that stays open, so a test can
/// use the same connection before and after a certificate change.
pub struct H1Conn {
    send: hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    pub serial: String,
}

impl H1Conn {
    pub async fn open(addr: SocketAddr, name: &str, roots: &str) -> H1Conn {
        let hs = handshake(addr, name, Some(roots), &[b"http/1.1"])
            .await
            .unwrap();
        let serial = hs.serial();
        let io = hyper_util::rt::TokioIo::new(hs.stream);
        let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        H1Conn { send, serial }
    }

    pub async fn get(&mut self, host: &str, path: &str) -> u16 {
        self.send.ready().await.unwrap();
        let req = hyper::Request::get(path)
            .header("host", host)
            .body(http_body_util::Empty::new())
            .unwrap();
        let resp = self.send.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap();
        status
    }
}

/// Waits until `f` returns Some, or panics with `what` after `secs`.
pub async fn wait_for<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub struct PebbleOpts {
    /// Where Pebble validates HTTP-01 (confab's plain-HTTP port).
    pub http01_port: u16,
    /// Where Pebble validates TLS-ALPN-01 (confab's HTTPS port).
    pub tlsalpn01_port: u16,
    /// PEBBLE_VA_NOSLEEP=1: no random 0–15 s wait before validating.
    pub nosleep: bool,
    pub validity_secs: u64,
}

impl PebbleOpts {
    pub fn new(http01_port: u16, tlsalpn01_port: u16) -> PebbleOpts {
        PebbleOpts {
            http01_port,
            tlsalpn01_port,
            nosleep: true,
            validity_secs: 90 * 86_400,
        }
    }
}

/// Pebble and challtestsrv, stopped on drop.
pub struct Pebble {
    pub dir: tempfile::TempDir,
    /// The ACME directory URL.
    pub directory: String,
    /// The management API (roots, intermediates).
    pub mgmt: String,
    /// The CA of Pebble's own HTTPS certificate (for `--acme-ca-root`).
    pub ca_root: PathBuf,
    ca_pem: String,
    procs: Vec<Child>,
    log: Arc<Mutex<String>>,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

fn capture(child: &mut Child, log: &Arc<Mutex<String>>) {
    for out in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
    }
}

fn pebble_bin(name: &str) -> String {
    for p in [format!("/usr/bin/{name}"), format!("/usr/local/bin/{name}")] {
        if Path::new(&p).exists() {
            return p;
        }
    }
    panic!("{name} is not installed: `apt-get install pebble` (tests/run.sh does this)");
}

impl Pebble {
    pub async fn start(o: PebbleOpts) -> Pebble {
        let mut last = String::new();
        // Ports are picked free and released; on the rare collision, again.
        for _ in 0..5 {
            match Self::try_start(&o).await {
                Ok(p) => return p,
                Err(e) => last = e,
            }
        }
        panic!("Pebble did not start: {last}");
    }

    async fn try_start(o: &PebbleOpts) -> Result<Pebble, String> {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("confab test CA for Pebble");
        let (cert, key) = ca.leaf(&["localhost", "127.0.0.1"]);
        let w = |n: &str, t: &str| {
            let p = dir.path().join(n);
            std::fs::write(&p, t).unwrap();
            p
        };
        let ca_root = w("ca.pem", &ca.cert_pem);
        let cert_path = w("cert.pem", &cert);
        let key_path = w("key.pem", &key);
        let (acme, mgmt, dns, chall_mgmt) = (free_port(), free_port(), free_port(), free_port());
        let template = include_str!("pebble-config.json");
        let config = template
            .replace("@ACME_PORT@", &acme.to_string())
            .replace("@MGMT_PORT@", &mgmt.to_string())
            .replace("@CERT@", cert_path.to_str().unwrap())
            .replace("@KEY@", key_path.to_str().unwrap())
            .replace("@HTTP01_PORT@", &o.http01_port.to_string())
            .replace("@TLSALPN01_PORT@", &o.tlsalpn01_port.to_string())
            .replace("@VALIDITY_SECS@", &o.validity_secs.to_string());
        let config_path = w("pebble-config.json", &config);
        let log = Arc::new(Mutex::new(String::new()));

        let mut chall = Command::new(pebble_bin("pebble-challtestsrv"))
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-management", &format!("127.0.0.1:{chall_mgmt}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        capture(&mut chall, &log);
        let mut cmd = Command::new(pebble_bin("pebble"));
        cmd.arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns}"), "-strict=false"])
            .current_dir(dir.path())
            .env_remove("PEBBLE_WFE_NONCEREJECT")
            .env_remove("PEBBLE_VA_ALWAYS_VALID")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if o.nosleep {
            cmd.env("PEBBLE_VA_NOSLEEP", "1");
        } else {
            cmd.env_remove("PEBBLE_VA_NOSLEEP");
        }
        let mut pebble = cmd.spawn().unwrap();
        capture(&mut pebble, &log);
        let mut p = Pebble {
            directory: format!("https://127.0.0.1:{acme}/dir"),
            mgmt: format!("https://127.0.0.1:{mgmt}"),
            ca_root,
            ca_pem: ca.cert_pem.clone(),
            dir,
            procs: vec![chall, pebble],
            log,
        };
        let client = p.client();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for c in &mut p.procs {
                if let Ok(Some(st)) = c.try_wait() {
                    return Err(format!("exited with {st}: {}", p.log()));
                }
            }
            if client
                .get(&p.directory)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
                && std::net::TcpStream::connect(("127.0.0.1", dns)).is_ok()
            {
                return Ok(p);
            }
            if Instant::now() > deadline {
                return Err(format!("not ready after 20 s: {}", p.log()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A client for Pebble's own HTTPS endpoints.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Orders created so far.
    pub fn orders(&self) -> usize {
        self.log().matches("Added order").count()
    }

    /// ACME accounts created so far.
    pub fn accounts(&self) -> usize {
        self.log().matches("accounts in memory").count()
    }

    /// Certificates issued so far.
    pub fn issued(&self) -> usize {
        self.log().matches("Issued certificate serial").count()
    }

    /// The root that signs what Pebble issues (new every run).
    pub async fn root_pem(&self) -> String {
        self.mgmt_get("/roots/0").await
    }

    pub async fn intermediate_pem(&self) -> String {
        self.mgmt_get("/intermediates/0").await
    }

    async fn mgmt_get(&self, path: &str) -> String {
        let r = self
            .client()
            .get(format!("{}{path}", self.mgmt))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.text().await.unwrap()
    }
}
