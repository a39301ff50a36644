//! Configuration: defaults → TOML file → `CONFAB_*` environment → flags.
//!
//! Everything is merged into one TOML table, deserialized once and validated
//! once at start-up; a bad value stops start-up with one sentence naming the
//! setting and what is allowed.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

mod auth;
mod env;
mod files;
mod http;
mod limits;
mod load;
mod providers;
pub mod smtp;
mod sso;
pub mod store;
pub mod tls;
mod validate;

pub use auth::AuthConfig;
pub use files::FilesConfig;
pub use http::HttpConfig;
pub use limits::{LimitsConfig, Price, QuotaConfig};
pub use load::{Overrides, config_path};
pub use providers::{
    MAX_PROVIDER_URL_LEN, PRIORITY_RANGE, ProviderEntry, RoutingConfig, validate_model_list,
    validate_provider_name, validate_provider_url,
};
pub use smtp::{SmtpConfig, SmtpSecurity};
pub use sso::{LdapConfig, OidcEntry};
pub use store::{PgRoots, PgSettings, PgSslMode, StoreChoice, StoreUrl};
pub use tls::{HttpListen, TlsConfig, TlsFlags, TlsMode};

/// The commented example configuration, printed by `confab default-config`
/// and installed by the packages.
pub const DEFAULT_CONFIG: &str = include_str!("../../packaging/confab.toml");

/// Where the config file is looked for when `--config` is not given.
pub const SYSTEM_CONFIG_PATH: &str = "/etc/confab/confab.toml";

/// A secret string: never printed by `Debug` or `Display`.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}
impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Auto,
    Pretty,
    Json,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationMode {
    Open,
    Invite,
    Closed,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the data lives (redb file, keys, search index).
    pub data_dir: PathBuf,
    /// Where records are kept: unset, the redb file in `data_dir`; a
    /// `postgres://` URL, that PostgreSQL database (see `config::store`).
    pub store: Option<StoreUrl>,
    /// Connections to PostgreSQL this process keeps at most.
    pub store_pool_size: usize,
    /// MiB of memory the redb store keeps as its page cache (read cache and
    /// write buffer together; unused with PostgreSQL).
    pub store_cache_mib: usize,
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// The URL users reach the server at; drives cookie `Secure`, the
    /// accepted `Origin` and the links the server prints.
    pub public_url: Option<String>,
    pub log_format: LogFormat,
    pub log_level: String,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// Largest file `POST /api/import` and `/api/imports` accept (it is
    /// streamed to a temporary file in the data directory, never held in
    /// memory).
    pub max_import_bytes: u64,
    pub registration: RegistrationMode,
    /// Origins allowed to call the API from a front end hosted elsewhere.
    pub cors_origins: Vec<String>,
    /// Whether a request may carry the user's own provider key in
    /// `X-Provider-Key` (used for that request only, never stored).
    pub allow_user_keys: bool,
    /// The model new conversations use when the client names none.
    pub default_model: Option<String>,
    /// An embedding model one of the providers offers: with it, document
    /// chunks get vectors and retrieval is hybrid (BM25 and cosine, fused
    /// by reciprocal rank); without it, BM25 alone.
    pub embedding_model: Option<String>,
    /// Longest silence (seconds) allowed from a provider before an answer
    /// fails with PROVIDER_TIMEOUT.
    pub provider_idle_timeout_secs: u64,
    /// Look for Ollama (127.0.0.1:11434) and LM Studio (127.0.0.1:1234) at
    /// start-up and periodically.
    pub detect_local_providers: bool,
    /// Follow a provider's redirect to another host (never with the API
    /// key). Off: such a redirect fails the request.
    pub provider_cross_origin_redirects: bool,
    /// A PEM file of CA certificates trusted for provider calls besides the
    /// built-in web roots: a model server behind an internal CA.
    pub provider_ca_file: Option<PathBuf>,
    /// On SIGTERM, how long running answers may finish before they are
    /// stopped and stored as interrupted.
    pub shutdown_grace_secs: u64,
    /// With several instances on one database: how long an instance's
    /// lease holds without renewal (renewed every 2 s). When it runs out
    /// the others end that instance's running answers as interrupted.
    pub cluster_lease_secs: u64,
    pub auth: AuthConfig,
    /// `[[providers]]` entries.
    pub providers: Vec<ProviderEntry>,
    /// `[routing]`: priority or least-busy choice among a model's providers.
    pub routing: RoutingConfig,
    /// Reverse proxies (IPs or CIDRs) whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    /// A bearer token that lets a scraper read `/metrics`.
    pub metrics_token: Option<Secret>,
    /// A second listener serving only `/metrics`.
    pub metrics_listen: Option<SocketAddr>,
    /// `[limits]`: request rate limits and concurrent answers.
    pub limits: LimitsConfig,
    /// `[quota]`: the server's default daily quota.
    pub quota: QuotaConfig,
    /// `[[prices]]`: cost per million tokens, per model.
    pub prices: Vec<Price>,
    /// `[tls]`: HTTPS with certificate files or automatic ACME certificates.
    pub tls: TlsConfig,
    /// `[http]`: connection timeouts and caps.
    pub http: HttpConfig,
    /// `[files]`: uploaded files: size limit and storage quota.
    pub files: FilesConfig,
    /// `[[oidc]]`: OpenID Connect providers people may sign in with.
    pub oidc: Vec<OidcEntry>,
    /// `[ldap]`: a directory the sign-in form checks passwords against.
    pub ldap: Option<LdapConfig>,
    /// `[smtp]`: where password-reset and verification mail is sent from.
    pub smtp: Option<SmtpConfig>,
}

#[derive(Debug)]
pub struct ConfigError(pub String);
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for ConfigError {}

pub(crate) fn err(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./confab-data"),
            store: None,
            store_pool_size: store::DEFAULT_POOL_SIZE,
            store_cache_mib: store::DEFAULT_CACHE_MIB,
            listen: "127.0.0.1:8080".parse().expect("literal address"),
            public_url: None,
            log_format: LogFormat::Auto,
            log_level: "info".into(),
            max_body_bytes: 1024 * 1024,
            max_import_bytes: 2 * 1024 * 1024 * 1024,
            registration: RegistrationMode::Invite,
            cors_origins: Vec::new(),
            allow_user_keys: false,
            default_model: None,
            embedding_model: None,
            provider_idle_timeout_secs: 60,
            detect_local_providers: true,
            provider_cross_origin_redirects: false,
            provider_ca_file: None,
            shutdown_grace_secs: 20,
            cluster_lease_secs: 10,
            auth: AuthConfig::default(),
            providers: Vec::new(),
            routing: RoutingConfig::default(),
            trusted_proxies: Vec::new(),
            metrics_token: None,
            metrics_listen: None,
            limits: LimitsConfig::default(),
            quota: QuotaConfig::default(),
            prices: Vec::new(),
            tls: TlsConfig::default(),
            http: HttpConfig::default(),
            files: FilesConfig::default(),
            oidc: Vec::new(),
            ldap: None,
            smtp: None,
        }
    }
}

impl Config {
    /// The base URL users reach the server at (`bound`: the app listener).
    /// Without `public_url`: `https://<first domain>` with ACME, else the
    /// bound address (https with certificate files).
    pub fn public_base(&self, bound: SocketAddr) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None if !self.tls.domains.is_empty() => {
                let port = match self.tls.https_listen.map(|a| a.port()) {
                    Some(0) => bound.port(),
                    Some(p) => p,
                    None => 443,
                };
                let host = self.tls.domains[0]
                    .trim_end_matches('.')
                    .to_ascii_lowercase();
                if port == 443 {
                    format!("https://{host}")
                } else {
                    format!("https://{host}:{port}")
                }
            }
            None => {
                let host = if bound.ip().is_unspecified() {
                    "127.0.0.1".to_string()
                } else if bound.is_ipv6() {
                    format!("[{}]", bound.ip())
                } else {
                    bound.ip().to_string()
                };
                let scheme = if self.tls.enabled() { "https" } else { "http" };
                format!("{scheme}://{host}:{}", bound.port())
            }
        }
    }

    /// The store this configuration chose (checked by `validate`).
    pub fn store_choice(&self) -> Result<StoreChoice, ConfigError> {
        store::parse_store(self.store.as_ref(), self.store_pool_size)
    }

    /// Under TLS, or behind a proxy that terminates it (public_url https).
    pub fn secure_cookies(&self) -> bool {
        self.tls.enabled()
            || self
                .public_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://"))
    }
}

/// A `trusted_proxies` entry: parses `10.0.0.0/8`, `::1` or `192.0.2.7` into a network.
pub fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Some(net.trunc());
    }
    s.parse::<IpAddr>().ok().map(IpNet::from)
}

/// `scheme://host[:port]` of an absolute http(s) URL, lowercased.
pub fn parse_origin(url: &str) -> Option<String> {
    let url = url.trim();
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let host = rest.split(['/', '?', '#']).next()?;
    if host.is_empty() || host.contains('@') || host.contains(char::is_whitespace) {
        return None;
    }
    Some(format!("{scheme}://{}", host.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests;
