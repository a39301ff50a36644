//! HTTPS, terminated by confab itself: the rustls configuration (ring,
//! TLS 1.2 and 1.3, ALPN h2 and http/1.1), the certificate resolver
//! ([`resolver`]), certificate files reloaded live ([`files`]), automatic
//! certificates from an ACME CA ([`acme`]), the plain-HTTP listener that
//! answers HTTP-01 and redirects to https ([`redirect`]) and the TLS accept
//! loop ([`listener`]).
//!
//! The rest of confab sees [`bind_listeners`] (`cli.rs`), [`Tls`] in the
//! server state (status for `/health/deep`, `GET /api/admin/tls` and the
//! HSTS decision) and [`Tls::run`], the certificate upkeep that
//! `app::serve_listeners` starts beside the server.

pub mod acme;
mod bind;
pub mod certs;
mod files;
mod listener;
pub mod redirect;
mod resolver;
mod status;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use bind::{Listeners, bind_error, bind_listeners, is_local_https, local_base};
pub use certs::{CertInfo, CertSource};
pub use listener::TlsListener;
pub use status::{TlsHealth, TlsProblem, TlsStatus};

use crate::config::{Config, TlsMode};
use crate::store::SharedStore;
use crate::store::acme::AcmeCertRecord;
use crate::store::cluster::ClusterStore;

enum Mode {
    Files {
        cert: PathBuf,
        key: PathBuf,
        every: Duration,
    },
    Acme(acme::AcmeSettings),
}

struct State {
    cert: CertInfo,
    acme_cert: Option<AcmeCertRecord>,
    issuing: bool,
    challenge: Option<String>,
    renew_at: Option<i64>,
    last_renewal_at: Option<i64>,
    failures: u32,
    last_error: Option<TlsProblem>,
}

/// The TLS side of a running server: what is served and how it is kept fresh.
pub struct Tls {
    mode: Mode,
    resolver: Arc<resolver::Resolver>,
    config: Arc<rustls::ServerConfig>,
    state: Mutex<State>,
    /// HTTP-01: token → key authorization.
    http01: Mutex<HashMap<String, String>>,
    /// Several instances on one database: the renewal lock, the stored
    /// certificate every instance serves, and HTTP-01 answers any instance
    /// can give (the CA's request may reach any of them).
    shared: Option<Arc<dyn ClusterStore>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("mode", &self.mode()).finish()
    }
}

impl Tls {
    /// Loads what to serve: the certificate files, or the stored ACME
    /// certificate for the configured domains (a self-signed stand-in when
    /// there is none yet). `None` when TLS is off. Touches no network.
    pub async fn from_config(
        cfg: &Config,
        store: &SharedStore,
    ) -> anyhow::Result<Option<Arc<Tls>>> {
        match cfg.tls.mode() {
            TlsMode::Off => Ok(None),
            TlsMode::Files => {
                let (cert, key) = (
                    cfg.tls.cert.clone().expect("validated"),
                    cfg.tls.key.clone().expect("validated"),
                );
                let loaded = files::load(&cert, &key).map_err(|e| anyhow::anyhow!(e))?;
                tracing::info!(
                    names = ?loaded.info.names,
                    issuer = %loaded.info.issuer,
                    not_after = %loaded.info.not_after,
                    days_left = loaded.info.days_left,
                    "serving HTTPS with the certificate from {}",
                    cert.display()
                );
                warn_if_expiring(&loaded.info);
                let every = Duration::from_secs(cfg.tls.reload_check_secs);
                Ok(Some(Tls::build(
                    Mode::Files { cert, key, every },
                    loaded,
                    None,
                    None,
                )?))
            }
            TlsMode::Acme => {
                let s = acme::AcmeSettings::from_config(cfg);
                let stored = store.get_acme_cert(&s.directory, &s.domains).await?;
                let usable = stored.and_then(|rec| {
                    match certs::from_pem(
                        rec.chain_pem.as_bytes(),
                        rec.key_pem.as_bytes(),
                        CertSource::Acme,
                        "stored certificate",
                        "stored key",
                    ) {
                        Ok(l) => Some((rec, l)),
                        Err(e) => {
                            tracing::error!(error = %e, "the stored certificate cannot be used; requesting a new one");
                            None
                        }
                    }
                });
                let (loaded, rec) = match usable {
                    Some((rec, loaded)) => {
                        tracing::info!(
                            domains = ?s.domains,
                            not_after = %loaded.info.not_after,
                            days_left = loaded.info.days_left,
                            "using the stored certificate"
                        );
                        if loaded.info.days_left < 0 {
                            tracing::error!(domains = ?s.domains, "the stored certificate has expired; renewing now");
                        }
                        (loaded, Some(rec))
                    }
                    None => {
                        let loaded = certs::self_signed(&s.domains).map_err(|e| {
                            anyhow::anyhow!("cannot generate a self-signed certificate: {e}")
                        })?;
                        tracing::warn!(
                            domains = ?s.domains,
                            "no certificate for these domains yet: serving a self-signed certificate \
                             until the first one is issued (browsers warn until then)"
                        );
                        (loaded, None)
                    }
                };
                Ok(Some(Tls::build(
                    Mode::Acme(s),
                    loaded,
                    rec,
                    store.cluster(),
                )?))
            }
        }
    }

    fn build(
        mode: Mode,
        loaded: certs::Loaded,
        acme_cert: Option<AcmeCertRecord>,
        shared: Option<Arc<dyn ClusterStore>>,
    ) -> anyhow::Result<Arc<Tls>> {
        let resolver = Arc::new(resolver::Resolver::new(loaded.key));
        let mut config = rustls::ServerConfig::builder_with_provider(certs::provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        if matches!(mode, Mode::Acme(_)) {
            config.alpn_protocols.push(resolver::ACME_TLS_ALPN.to_vec());
        }
        let now = crate::clock::now();
        let challenge = acme_cert.as_ref().and_then(|c| c.challenge.clone());
        let last_renewal_at = acme_cert
            .as_ref()
            .map(|c| c.issued_at)
            .or_else(|| matches!(mode, Mode::Files { .. }).then_some(now));
        Ok(Arc::new(Tls {
            mode,
            resolver,
            config: Arc::new(config),
            state: Mutex::new(State {
                cert: loaded.info,
                acme_cert,
                issuing: false,
                challenge,
                renew_at: None,
                last_renewal_at,
                failures: 0,
                last_error: None,
            }),
            http01: Mutex::new(HashMap::new()),
            shared,
        }))
    }

    pub fn mode(&self) -> TlsMode {
        match self.mode {
            Mode::Files { .. } => TlsMode::Files,
            Mode::Acme(_) => TlsMode::Acme,
        }
    }

    /// The rustls configuration; certificates swapped in later are served
    /// from the next handshake on.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.config.clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("tls state lock")
    }

    /// True while a CA-issued certificate is served: only then do https
    /// responses carry HSTS (a browser told to insist on https must be able
    /// to get it).
    pub fn hsts(&self) -> bool {
        let s = self.state();
        s.cert.trusted && s.cert.not_after_ts > crate::clock::now()
    }

    /// The certificate served now.
    pub fn certificate(&self) -> CertInfo {
        self.state().cert.refreshed(crate::clock::now())
    }

    pub fn status(&self) -> TlsStatus {
        let s = self.state();
        let (domains, directory) = match &self.mode {
            Mode::Acme(a) => (a.domains.clone(), Some(a.directory.clone())),
            Mode::Files { .. } => (Vec::new(), None),
        };
        TlsStatus {
            mode: self.mode(),
            domains,
            acme_directory: directory,
            certificate: Some(s.cert.refreshed(crate::clock::now())),
            issuing: s.issuing,
            challenge: s.challenge.clone(),
            renew_at: s.renew_at.map(crate::clock::rfc3339),
            last_renewal_at: s.last_renewal_at.map(crate::clock::rfc3339),
            consecutive_failures: s.failures,
            last_error: s.last_error.clone(),
        }
    }

    pub fn health(&self) -> TlsHealth {
        let s = self.state();
        let cert = s.cert.refreshed(crate::clock::now());
        TlsHealth {
            mode: self.mode(),
            source: Some(cert.source),
            not_after: Some(cert.not_after),
            days_left: Some(cert.days_left),
            issuing: s.issuing,
            last_error: s.last_error.as_ref().map(|p| match &p.hint {
                Some(h) => format!("{} ({h})", p.message),
                None => p.message.clone(),
            }),
        }
    }

    /// Serves `loaded` from the next handshake on and records it.
    fn install(&self, loaded: certs::Loaded, acme: Option<AcmeCertRecord>) {
        self.resolver.swap(loaded.key);
        let mut s = self.state();
        s.cert = loaded.info;
        if let Some(rec) = acme {
            s.challenge = rec.challenge.clone();
            s.acme_cert = Some(rec);
        }
        s.last_renewal_at = Some(crate::clock::now());
        s.failures = 0;
        s.last_error = None;
    }

    fn record_error(&self, message: String, hint: Option<String>, retry_at: Option<i64>) {
        let mut s = self.state();
        s.failures += 1;
        s.last_error = Some(TlsProblem {
            at: crate::clock::rfc3339(crate::clock::now()),
            message,
            hint,
            retry_at: retry_at.map(crate::clock::rfc3339),
        });
    }

    fn acme_cert(&self) -> Option<AcmeCertRecord> {
        self.state().acme_cert.clone()
    }

    fn set_issuing(&self, on: bool) {
        self.state().issuing = on;
    }

    fn set_renew_at(&self, at: Option<i64>) {
        self.state().renew_at = at;
    }

    /// The HTTP-01 answer for `token`, while an order (of this instance or,
    /// with several, of any) waits for it.
    pub async fn http01_answer(&self, token: &str) -> Option<String> {
        let local = self.http01.lock().expect("http01 lock").get(token).cloned();
        if local.is_some() {
            return local;
        }
        let shared = self.shared.as_ref()?;
        match shared.get_challenge(token).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the HTTP-01 answers of the other instances");
                None
            }
        }
    }

    /// Keeps the answer for `token` until the order ends (and in the
    /// database, for the other instances, before the CA is told to look).
    async fn set_http01(&self, token: String, answer: String) -> Result<(), String> {
        if let Some(shared) = &self.shared {
            shared
                .put_challenge(&token, &answer, CHALLENGE_TTL)
                .await
                .map_err(|e| {
                    format!("cannot share the HTTP-01 answer with the other instances: {e}")
                })?;
        }
        self.http01
            .lock()
            .expect("http01 lock")
            .insert(token, answer);
        Ok(())
    }

    fn clear_challenges(&self) {
        self.http01.lock().expect("http01 lock").clear();
        self.resolver.clear_alpn_challenges();
    }

    /// Where the plain-HTTP listener sends a request that asked for `host`:
    /// one of our domains (the first when it asked for something else) in
    /// ACME mode; the host it asked for with certificate files.
    fn redirect_host(&self, host: Option<&str>) -> Option<String> {
        let host = host.map(str::to_ascii_lowercase);
        match &self.mode {
            Mode::Acme(a) => Some(
                host.filter(|h| a.domains.contains(h))
                    .unwrap_or_else(|| a.domains[0].clone()),
            ),
            Mode::Files { .. } => host,
        }
    }

    /// Keeps the certificate fresh until `cancel`: watches the files, or
    /// obtains and renews the ACME certificate.
    pub async fn run(
        self: Arc<Self>,
        live: tokio::sync::watch::Receiver<Arc<Config>>,
        store: crate::store::WeakStore,
        cancel: CancellationToken,
    ) {
        match &self.mode {
            Mode::Files { cert, key, every } => {
                let (cert, key, every) = (cert.clone(), key.clone(), *every);
                files::watch(self.clone(), cert, key, every, live, cancel).await
            }
            Mode::Acme(s) => {
                let s = s.clone();
                tokio::join!(
                    acme::run(self.clone(), s.clone(), store.clone(), cancel.clone()),
                    acme::follow_stored(self.clone(), s.clone(), store, cancel.clone()),
                    acme_restart_notice(s, live, cancel)
                );
            }
        }
    }
}

/// How long an HTTP-01 answer stays in the database (an order takes at
/// most `acme::ATTEMPT_TIMEOUT`).
const CHALLENGE_TTL: Duration = Duration::from_secs(15 * 60);

/// A configuration reload (SIGHUP) cannot change the domains or the CA of
/// a running server; say so instead of pretending.
async fn acme_restart_notice(
    s: acme::AcmeSettings,
    mut live: tokio::sync::watch::Receiver<Arc<Config>>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = live.changed() => {
                if changed.is_err() {
                    return;
                }
                let cfg = live.borrow_and_update().clone();
                let new = acme::AcmeSettings::from_config(&cfg);
                if cfg.tls.mode() != TlsMode::Acme
                    || new.domains != s.domains
                    || new.email != s.email
                    || new.directory != s.directory
                {
                    tracing::warn!(
                        "the reloaded configuration changes the TLS domains, e-mail or CA; \
                         that takes effect after a restart"
                    );
                }
            }
        }
    }
}

pub(crate) fn warn_if_expiring(info: &CertInfo) {
    if info.days_left < 0 {
        tracing::error!(not_after = %info.not_after, "the TLS certificate has expired");
    } else if info.days_left < 14 {
        tracing::warn!(
            not_after = %info.not_after,
            days_left = info.days_left,
            "the TLS certificate expires soon; replace the files (confab reloads them by itself)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, HttpListen, Overrides, TlsFlags};

    fn load(env: &[(&str, &str)], flags: TlsFlags) -> Result<Config, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let o = Overrides {
            tls: flags,
            ..Default::default()
        };
        Config::load_from(None, &env, &o)
            .map(|(c, _)| c)
            .map_err(|e| e.0)
    }

    #[test]
    fn acme_settings_from_flags_and_env() {
        let c = load(
            &[("CONFAB_ACME_EMAIL", "ops@chat.example.net.au")],
            TlsFlags {
                domains: vec!["Chat.Example.com".into(), "www.example.com".into()],
                acme_staging: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.tls.mode(), TlsMode::Acme);
        assert_eq!(
            c.tls.acme_directory_url(),
            crate::config::tls::LETS_ENCRYPT_STAGING
        );
        assert!(c.secure_cookies());
        assert_eq!(
            c.public_base("127.0.0.1:8080".parse().unwrap()),
            "https://chat.example.com",
            "public_url follows the first domain, port 443"
        );
        assert_eq!(c.tls.http_listen(), HttpListen::Default);
        let s = acme::AcmeSettings::from_config(&c);
        assert_eq!(s.domains, vec!["chat.example.com", "www.example.com"]);
        assert!(s.http01);
        assert_eq!(local_base(&c).unwrap(), "https://127.0.0.1:443");

        let c = load(
            &[
                ("CONFAB_DOMAINS", "a.example.com,b.example.com"),
                ("CONFAB_HTTP_LISTEN", "off"),
            ],
            TlsFlags {
                https_listen: Some("127.0.0.1:8443".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.tls.domains.len(), 2);
        assert_eq!(c.tls.http_listen(), HttpListen::Off);
        assert!(!acme::AcmeSettings::from_config(&c).http01);
        assert_eq!(
            c.public_base("127.0.0.1:8443".parse().unwrap()),
            "https://a.example.com:8443"
        );
        assert_eq!(c.tls.acme_directory_url(), crate::config::tls::LETS_ENCRYPT);
    }

    #[test]
    fn usual_mistakes_are_refused_with_what_to_do() {
        let domain = |d: &str| TlsFlags {
            domains: vec![d.into()],
            ..Default::default()
        };
        for (flags, env, want) in [
            (domain("*.example.com"), vec![], "wildcard"),
            (domain("203.0.113.7"), vec![], "IP address"),
            (domain("https://chat.example.com"), vec![], "bare name"),
            (domain("localhost"), vec![], "valid DNS name"),
            (
                domain("chat.example.com"),
                vec![("CONFAB_ACME_EMAIL", "me@example.com")],
                "reserved example domain",
            ),
            (
                domain("chat.example.com"),
                vec![("CONFAB_ACME_EMAIL", "not an email")],
                "tls.acme_email",
            ),
            (
                TlsFlags {
                    acme_email: Some("me@real.dev".into()),
                    ..Default::default()
                },
                vec![],
                "--domain",
            ),
            (
                TlsFlags {
                    tls_cert: Some("/nonexistent/cert.pem".into()),
                    ..Default::default()
                },
                vec![],
                "given together",
            ),
            (
                TlsFlags {
                    tls_cert: Some("/nonexistent/cert.pem".into()),
                    tls_key: Some("/nonexistent/key.pem".into()),
                    ..Default::default()
                },
                vec![],
                "/nonexistent/cert.pem",
            ),
            (
                TlsFlags {
                    domains: vec!["a.example.com".into()],
                    tls_cert: Some("/c".into()),
                    tls_key: Some("/k".into()),
                    ..Default::default()
                },
                vec![],
                "not both",
            ),
            (
                TlsFlags {
                    domains: vec!["a.example.com".into()],
                    acme_staging: true,
                    acme_directory: Some("https://ca.example/dir".into()),
                    ..Default::default()
                },
                vec![],
                "not both",
            ),
            (
                TlsFlags {
                    domains: vec!["a.example.com".into()],
                    acme_directory: Some("http://ca.example/dir".into()),
                    ..Default::default()
                },
                vec![],
                "https://",
            ),
            (
                TlsFlags {
                    https_listen: Some("0.0.0.0:443".into()),
                    ..Default::default()
                },
                vec![],
                "TLS is off",
            ),
            (
                TlsFlags {
                    domains: vec!["a.example.com".into()],
                    http_listen: Some("port80".into()),
                    ..Default::default()
                },
                vec![],
                "tls.http_listen",
            ),
        ] {
            let e = load(&env, flags).unwrap_err();
            assert!(e.contains(want), "{want:?} not in {e:?}");
        }
    }

    #[test]
    fn bind_errors_say_what_to_do() {
        let e = |k| {
            bind_error(
                "0.0.0.0:80".parse().unwrap(),
                "tls.http_listen (--http-listen)",
                &std::io::Error::from(k),
            )
        };
        let m = e(std::io::ErrorKind::PermissionDenied);
        assert!(
            m.contains("CAP_NET_BIND_SERVICE")
                && m.contains("confab.service")
                && m.contains("setcap"),
            "{m}"
        );
        let m = e(std::io::ErrorKind::AddrInUse);
        assert!(m.contains("already in use") && m.contains("nginx"), "{m}");
    }

    #[test]
    fn local_https_detection() {
        assert!(is_local_https("https://127.0.0.1:8443"));
        assert!(is_local_https("https://[::1]:443/"));
        assert!(is_local_https("https://localhost"));
        assert!(!is_local_https("https://chat.example.com"));
        assert!(!is_local_https("http://127.0.0.1:8080"));
    }
}
