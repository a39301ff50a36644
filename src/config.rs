//! Configuration: defaults → TOML file → `CONFAB_*` environment → flags.
//!
//! Everything is merged into one TOML table, deserialized once and validated
//! once at start-up; a bad value stops start-up with one sentence naming the
//! setting and what is allowed.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::providers::{ProviderConfig, ProviderKind};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The commented example configuration, printed by `confab default-config`
/// and installed by the packages.
pub const DEFAULT_CONFIG: &str = include_str!("../packaging/confab.toml");

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
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// The URL users reach the server at; drives cookie `Secure`, the
    /// accepted `Origin` and the links the server prints.
    pub public_url: Option<String>,
    pub log_format: LogFormat,
    pub log_level: String,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    pub registration: RegistrationMode,
    /// Origins allowed to call the API from a front end hosted elsewhere.
    pub cors_origins: Vec<String>,
    /// Whether a request may carry the user's own provider key in
    /// `X-Provider-Key` (used for that request only, never stored).
    pub allow_user_keys: bool,
    /// The model new conversations use when the client names none.
    pub default_model: Option<String>,
    /// Longest silence (seconds) allowed from a provider before an answer
    /// fails with PROVIDER_TIMEOUT.
    pub provider_idle_timeout_secs: u64,
    /// Look for Ollama (127.0.0.1:11434) and LM Studio (127.0.0.1:1234) at
    /// start-up and periodically.
    pub detect_local_providers: bool,
    /// Follow a provider's redirect to another host (never with the API
    /// key). Off: such a redirect fails the request.
    pub provider_cross_origin_redirects: bool,
    /// On SIGTERM, how long running answers may finish before they are
    /// stopped and stored as interrupted.
    pub shutdown_grace_secs: u64,
    pub auth: AuthConfig,
    /// `[[providers]]` entries.
    pub providers: Vec<ProviderEntry>,
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
}

/// `[http]`: how long a client may take to send a request, how long an
/// unused connection stays open, and how many connections may be open.
/// Responses are never timed: answers stream for as long as they run, and
/// open answer streams (SSE) and WebSockets are not idle connections.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// A new connection must deliver its first complete request head within
    /// this time (covers slow headers and connections that send nothing).
    pub header_timeout_secs: u64,
    /// Longest silence between two chunks of a request body.
    pub body_timeout_secs: u64,
    /// After the first `body_timeout_secs`, a request body must keep
    /// arriving at this average rate (bytes per second); 0 = no minimum.
    pub body_min_bytes_per_sec: u64,
    /// A connection with no request in progress is closed after this long.
    pub keep_alive_secs: u64,
    /// HTTPS: time allowed for the TLS handshake.
    pub tls_handshake_timeout_secs: u64,
    /// Connections open at once; more are closed as soon as accepted.
    pub max_connections: usize,
    /// Connections open at once from one client address (addresses in
    /// `trusted_proxies` count only towards `max_connections`).
    pub max_connections_per_ip: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            body_min_bytes_per_sec: 1024,
            keep_alive_secs: 60,
            tls_handshake_timeout_secs: 10,
            max_connections: 10_000,
            max_connections_per_ip: 256,
        }
    }
}

impl HttpConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (name, v, max) in [
            ("header_timeout_secs", self.header_timeout_secs, 300),
            ("body_timeout_secs", self.body_timeout_secs, 3600),
            ("keep_alive_secs", self.keep_alive_secs, 3600),
            (
                "tls_handshake_timeout_secs",
                self.tls_handshake_timeout_secs,
                300,
            ),
        ] {
            if v == 0 || v > max {
                return Err(err(format!(
                    "http.{name} must be between 1 and {max} seconds, got {v}"
                )));
            }
        }
        if self.body_min_bytes_per_sec > 1 << 30 {
            return Err(err(format!(
                "http.body_min_bytes_per_sec must be between 0 (no minimum) and 1073741824, got {}",
                self.body_min_bytes_per_sec
            )));
        }
        if self.max_connections == 0 || self.max_connections > 1_000_000 {
            return Err(err(format!(
                "http.max_connections must be between 1 and 1000000, got {}",
                self.max_connections
            )));
        }
        if self.max_connections_per_ip == 0 || self.max_connections_per_ip > self.max_connections {
            return Err(err(format!(
                "http.max_connections_per_ip must be between 1 and http.max_connections ({}), got {}",
                self.max_connections, self.max_connections_per_ip
            )));
        }
        Ok(())
    }
}

/// `[limits]`: keyed rate limits (GCRA: a bucket of `*_burst` requests that
/// refills at `*_per_minute`) and the cap on answers running at once.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// False turns the request rate limits off (quotas still apply).
    pub enabled: bool,
    /// Unauthenticated API requests per client IP.
    pub anon_per_minute: u32,
    pub anon_burst: u32,
    /// API requests per signed-in user.
    pub api_per_minute: u32,
    pub api_burst: u32,
    /// New answers (chat requests) per user.
    pub chat_per_minute: u32,
    pub chat_burst: u32,
    /// Answers one user may have running at once.
    pub max_concurrent_generations: u32,
    /// Keys a limiter tracks before stale ones are pruned early.
    pub max_tracked_keys: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            enabled: true,
            anon_per_minute: 120,
            anon_burst: 60,
            api_per_minute: 1200,
            api_burst: 300,
            chat_per_minute: 30,
            chat_burst: 10,
            max_concurrent_generations: 4,
            max_tracked_keys: 100_000,
        }
    }
}

/// `[quota]`: daily limits per user (UTC days); unset = unlimited. Admins
/// override them per user.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaConfig {
    pub messages_per_day: Option<u64>,
    /// Input + output tokens.
    pub tokens_per_day: Option<u64>,
}

/// One `[[prices]]` entry: what a million tokens of `model` cost.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Only for this provider name; unset = any provider.
    #[serde(default)]
    pub provider: Option<String>,
    /// The model id; a trailing `*` matches every id with that prefix.
    pub model: String,
    pub input_per_million: f64,
    pub output_per_million: f64,
}

/// One `[[providers]]` entry. After [`Config::load_from`], a key given as
/// `api_key_file` has been read into `api_key`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderEntry {
    pub kind: ProviderKind,
    pub name: String,
    pub base_url: String,
    #[serde(default)]
    pub api_key: Option<Secret>,
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// Allowlist: when set, only these models are offered.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_true() -> bool {
    true
}

impl ProviderEntry {
    pub fn new(kind: ProviderKind, name: impl Into<String>, base_url: impl Into<String>) -> Self {
        ProviderEntry {
            kind,
            name: name.into(),
            base_url: base_url.into(),
            api_key: None,
            api_key_file: None,
            models: None,
            enabled: true,
        }
    }

    /// Reads `api_key_file` into `api_key` (unless a key is already there).
    /// The error names the setting and the file.
    pub fn load_key_file(&mut self, index: usize) -> Result<(), ConfigError> {
        let Some(path) = &self.api_key_file else {
            return Ok(());
        };
        if self.api_key.is_some() {
            return Ok(());
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            err(format!(
                "cannot read providers[{index}].api_key_file {} (provider \"{}\"): {e}",
                path.display(),
                self.name
            ))
        })?;
        let key = text.trim();
        if key.is_empty() {
            return Err(err(format!(
                "providers[{index}].api_key_file {} (provider \"{}\") is empty",
                path.display(),
                self.name
            )));
        }
        self.api_key = Some(Secret(key.to_string()));
        Ok(())
    }

    /// The registry's view of this entry, reading `api_key_file` if that
    /// has not happened yet.
    pub fn to_provider_config(&self, index: usize) -> Result<ProviderConfig, ConfigError> {
        let mut e = self.clone();
        e.load_key_file(index)?;
        Ok(ProviderConfig {
            kind: e.kind,
            name: e.name,
            base_url: e.base_url.trim_end_matches('/').to_string(),
            api_key: e
                .api_key
                .map(|s| s.0.trim().to_string())
                .filter(|k| !k.is_empty()),
            models: e.models,
            enabled: e.enabled,
        })
    }
}

/// Provider names: 1 to 50 of `A-Z a-z 0-9 _ . -` (they appear in URLs,
/// logs and the model picker).
pub fn validate_provider_name(name: &str) -> Result<(), String> {
    let ok = (1..=50).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "provider name {name:?} must be 1 to 50 characters of letters, digits, '_', '.' and '-'"
        ))
    }
}

/// Longest accepted provider `base_url`: real ones are well under 200
/// characters; the cap keeps stored records, logs and admin screens sane.
pub const MAX_PROVIDER_URL_LEN: usize = 2048;

/// A provider base URL: absolute http(s) with a host, at most
/// [`MAX_PROVIDER_URL_LEN`] characters, no user:password, query or fragment.
pub fn validate_provider_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_PROVIDER_URL_LEN {
        return Err(format!(
            "base_url must be at most {MAX_PROVIDER_URL_LEN} characters, got {}",
            url.len()
        ));
    }
    let bad = || {
        format!(
            "base_url must be an absolute http:// or https:// URL like http://127.0.0.1:8000/v1, got {url:?}"
        )
    };
    let parsed = reqwest::Url::parse(url.trim()).map_err(|_| bad())?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(
            "base_url must not contain a user name or password; give the key as api_key".into(),
        );
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err("base_url must not contain a query (?…) or fragment (#…)".into());
    }
    Ok(())
}

/// An allowlist: 1 to 1000 distinct model ids of 1 to 200 characters.
pub fn validate_model_list(models: &[String]) -> Result<(), String> {
    if models.is_empty() || models.len() > 1000 {
        return Err("models must list between 1 and 1000 model ids".into());
    }
    for (i, m) in models.iter().enumerate() {
        if m.trim().is_empty() || m.len() > 200 || m.chars().any(char::is_control) {
            return Err(format!(
                "models[{i}] must be a model id of 1 to 200 printable characters"
            ));
        }
        if models[..i].contains(m) {
            return Err(format!("models lists {m:?} twice"));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub session_idle_hours: u64,
    pub session_absolute_hours: u64,
    pub access_token_minutes: u64,
    pub refresh_token_days: u64,
    /// Failed login/token/register/refresh/setup attempts per client IP:
    /// a burst of `login_burst`, refilling at this rate. Successes are free.
    pub login_per_ip_per_minute: u32,
    pub login_burst: u32,
    /// Failed sign-ins per account per hour from sources that are not a
    /// known device of the account (all of them together), before such
    /// sources are refused; known devices keep signing in.
    pub login_failures_per_account_per_hour: u32,
    /// Failed sign-ins per account per hour from one client address.
    pub login_failures_per_source_per_hour: u32,
    /// Failed sign-ins per hour from one known device (a device cookie),
    /// and wrong current passwords per user per hour on password change.
    pub login_failures_per_device_per_hour: u32,
    /// The first delay of the answer to a failed sign-in from an unknown
    /// source, once that address has failed 3 times on the account; it
    /// doubles with each further failure (at most 30 s). 0 turns it off.
    pub login_failure_delay_ms: u64,
    /// How long a device cookie keeps a browser a known device.
    pub device_cookie_days: u64,
    /// Overrides the generated JWT signing key (useful when several
    /// instances must accept each other's tokens).
    pub jwt_secret: Option<Secret>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            session_idle_hours: 24 * 7,
            session_absolute_hours: 24 * 30,
            access_token_minutes: 15,
            refresh_token_days: 30,
            login_per_ip_per_minute: 10,
            login_burst: 5,
            login_failures_per_account_per_hour: 100,
            login_failures_per_source_per_hour: 10,
            login_failures_per_device_per_hour: 10,
            login_failure_delay_ms: 500,
            device_cookie_days: 365,
            jwt_secret: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./confab-data"),
            listen: "127.0.0.1:8080".parse().expect("literal address"),
            public_url: None,
            log_format: LogFormat::Auto,
            log_level: "info".into(),
            max_body_bytes: 1024 * 1024,
            registration: RegistrationMode::Invite,
            cors_origins: Vec::new(),
            allow_user_keys: false,
            default_model: None,
            provider_idle_timeout_secs: 60,
            detect_local_providers: true,
            provider_cross_origin_redirects: false,
            shutdown_grace_secs: 20,
            auth: AuthConfig::default(),
            providers: Vec::new(),
            trusted_proxies: Vec::new(),
            metrics_token: None,
            metrics_listen: None,
            limits: LimitsConfig::default(),
            quota: QuotaConfig::default(),
            prices: Vec::new(),
            tls: TlsConfig::default(),
            http: HttpConfig::default(),
        }
    }
}

/// `[tls]`: certificate files (`cert` + `key`), or automatic certificates
/// for `domains` from an ACME CA, or neither (plain HTTP on `listen`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// Seconds between checks of `cert`/`key` for changes; 0 = only on SIGHUP.
    pub reload_check_secs: u64,
    /// Names to get a certificate for automatically.
    pub domains: Vec<String>,
    pub acme_email: Option<String>,
    /// Default: Let's Encrypt production (staging with `acme_staging`).
    pub acme_directory: Option<String>,
    pub acme_staging: bool,
    /// An extra CA (PEM) to trust for the ACME server (tests, private CAs).
    pub acme_ca_root: Option<PathBuf>,
    /// HTTPS address; default `[::]:443` for ACME, `listen` for files.
    pub https_listen: Option<SocketAddr>,
    /// Plain-HTTP address (HTTP-01 and the redirect), or "off"; default
    /// `[::]:80` for ACME, off for files.
    pub http_listen: Option<String>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: None,
            key: None,
            reload_check_secs: 10,
            domains: Vec::new(),
            acme_email: None,
            acme_directory: None,
            acme_staging: false,
            acme_ca_root: None,
            https_listen: None,
            http_listen: None,
        }
    }
}

/// `tls.http_listen`, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpListen {
    /// Not set: the mode's default.
    Default,
    Off,
    At(SocketAddr),
}

impl TlsConfig {
    pub fn mode(&self) -> crate::tls::TlsMode {
        if !self.domains.is_empty() {
            crate::tls::TlsMode::Acme
        } else if self.cert.is_some() || self.key.is_some() {
            crate::tls::TlsMode::Files
        } else {
            crate::tls::TlsMode::Off
        }
    }

    pub fn enabled(&self) -> bool {
        self.mode() != crate::tls::TlsMode::Off
    }

    pub fn acme_directory_url(&self) -> String {
        match &self.acme_directory {
            Some(d) => d.trim().to_string(),
            None if self.acme_staging => crate::tls::acme::LETS_ENCRYPT_STAGING.into(),
            None => crate::tls::acme::LETS_ENCRYPT.into(),
        }
    }

    pub fn http_listen(&self) -> HttpListen {
        match self.http_listen.as_deref().map(str::trim) {
            None => HttpListen::Default,
            Some("off") | Some("") => HttpListen::Off,
            Some(a) => a.parse().map(HttpListen::At).unwrap_or(HttpListen::Off),
        }
    }

    /// Each message names the setting, its flag and what to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cert.is_some() != self.key.is_some() {
            return Err(err(
                "tls.cert and tls.key (--tls-cert, --tls-key) must be given together: the certificate chain and its private key",
            ));
        }
        if self.cert.is_some() && !self.domains.is_empty() {
            return Err(err(
                "choose either certificate files (tls.cert/tls.key, --tls-cert/--tls-key) or automatic certificates (tls.domains, --domain), not both",
            ));
        }
        for (i, d) in self.domains.iter().enumerate() {
            crate::tls::validate_domain(d)
                .map_err(|m| err(format!("tls.domains (--domain) {d:?}: {m}")))?;
            let norm = d.trim_end_matches('.').to_ascii_lowercase();
            if self.domains[..i]
                .iter()
                .any(|o| o.trim_end_matches('.').eq_ignore_ascii_case(&norm))
            {
                return Err(err(format!("tls.domains (--domain) lists {d:?} twice")));
            }
        }
        if self.domains.len() > 100 {
            return Err(err("tls.domains (--domain) may list at most 100 names"));
        }
        let acme_set = self.acme_email.is_some()
            || self.acme_directory.is_some()
            || self.acme_staging
            || self.acme_ca_root.is_some();
        if acme_set && self.domains.is_empty() {
            return Err(err(
                "ACME settings (acme_email, acme_directory, acme_staging, acme_ca_root) are set but tls.domains is empty: add the name to get a certificate for with --domain chat.example.com",
            ));
        }
        if let Some(e) = &self.acme_email {
            crate::tls::validate_email(e)
                .map_err(|m| err(format!("tls.acme_email (--acme-email) {e:?}: {m}")))?;
        }
        if self.acme_staging && self.acme_directory.is_some() {
            return Err(err(
                "set either tls.acme_staging (--acme-staging) or tls.acme_directory (--acme-directory), not both",
            ));
        }
        if let Some(d) = &self.acme_directory
            && !d.trim().starts_with("https://")
        {
            return Err(err(format!(
                "tls.acme_directory (--acme-directory) must be an https:// ACME directory URL like {}, got {d:?}",
                crate::tls::acme::LETS_ENCRYPT
            )));
        }
        if let Some(p) = &self.acme_ca_root
            && !p.is_file()
        {
            return Err(err(format!(
                "tls.acme_ca_root (--acme-ca-root) {} is not a readable file",
                p.display()
            )));
        }
        for (name, p) in [
            ("tls.cert (--tls-cert)", &self.cert),
            ("tls.key (--tls-key)", &self.key),
        ] {
            if let Some(p) = p
                && !p.is_file()
            {
                return Err(err(format!(
                    "{name} {} does not exist or is not a file",
                    p.display()
                )));
            }
        }
        if let Some(h) = &self.http_listen {
            let h = h.trim();
            if !h.is_empty() && h != "off" && h.parse::<SocketAddr>().is_err() {
                return Err(err(format!(
                    "tls.http_listen (--http-listen) must be an address like 0.0.0.0:80 or \"off\", got {h:?}"
                )));
            }
        }
        if !self.enabled() && (self.https_listen.is_some() || self.http_listen.is_some()) {
            return Err(err(
                "tls.https_listen/tls.http_listen (--https-listen/--http-listen) are set but TLS is off: add --domain NAME for automatic certificates or --tls-cert/--tls-key",
            ));
        }
        if self.reload_check_secs > 86_400 {
            return Err(err(
                "tls.reload_check_secs must be between 0 (only on SIGHUP) and 86400",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Str,
    Int,
    Bool,
    List,
}

/// Every environment variable confab reads, with the setting it sets.
/// Secrets are also accepted as `<NAME>_FILE` holding the value.
const ENV_VARS: &[(&str, &str, Kind, bool)] = &[
    ("CONFAB_DATA_DIR", "data_dir", Kind::Str, false),
    ("CONFAB_LISTEN", "listen", Kind::Str, false),
    ("CONFAB_PUBLIC_URL", "public_url", Kind::Str, false),
    ("CONFAB_LOG_FORMAT", "log_format", Kind::Str, false),
    ("CONFAB_LOG_LEVEL", "log_level", Kind::Str, false),
    ("CONFAB_MAX_BODY_BYTES", "max_body_bytes", Kind::Int, false),
    ("CONFAB_REGISTRATION", "registration", Kind::Str, false),
    ("CONFAB_CORS_ORIGINS", "cors_origins", Kind::List, false),
    (
        "CONFAB_ALLOW_USER_KEYS",
        "allow_user_keys",
        Kind::Bool,
        false,
    ),
    ("CONFAB_DEFAULT_MODEL", "default_model", Kind::Str, false),
    (
        "CONFAB_PROVIDER_IDLE_TIMEOUT_SECS",
        "provider_idle_timeout_secs",
        Kind::Int,
        false,
    ),
    (
        "CONFAB_DETECT_LOCAL_PROVIDERS",
        "detect_local_providers",
        Kind::Bool,
        false,
    ),
    (
        "CONFAB_SHUTDOWN_GRACE_SECS",
        "shutdown_grace_secs",
        Kind::Int,
        false,
    ),
    (
        "CONFAB_SESSION_IDLE_HOURS",
        "auth.session_idle_hours",
        Kind::Int,
        false,
    ),
    (
        "CONFAB_SESSION_ABSOLUTE_HOURS",
        "auth.session_absolute_hours",
        Kind::Int,
        false,
    ),
    (
        "CONFAB_LOGIN_PER_IP_PER_MINUTE",
        "auth.login_per_ip_per_minute",
        Kind::Int,
        false,
    ),
    ("CONFAB_LOGIN_BURST", "auth.login_burst", Kind::Int, false),
    ("CONFAB_JWT_SECRET", "auth.jwt_secret", Kind::Str, true),
    (
        "CONFAB_TRUSTED_PROXIES",
        "trusted_proxies",
        Kind::List,
        false,
    ),
    ("CONFAB_METRICS_TOKEN", "metrics_token", Kind::Str, true),
    ("CONFAB_METRICS_LISTEN", "metrics_listen", Kind::Str, false),
    ("CONFAB_RATE_LIMITS", "limits.enabled", Kind::Bool, false),
    (
        "CONFAB_LIMITS_API_PER_MINUTE",
        "limits.api_per_minute",
        Kind::Int,
        false,
    ),
    (
        "CONFAB_LIMITS_CHAT_PER_MINUTE",
        "limits.chat_per_minute",
        Kind::Int,
        false,
    ),
    (
        "CONFAB_LIMITS_MAX_CONCURRENT_GENERATIONS",
        "limits.max_concurrent_generations",
        Kind::Int,
        false,
    ),
    (
        "CONFAB_QUOTA_MESSAGES_PER_DAY",
        "quota.messages_per_day",
        Kind::Int,
        false,
    ),
    (
        "CONFAB_QUOTA_TOKENS_PER_DAY",
        "quota.tokens_per_day",
        Kind::Int,
        false,
    ),
    (
        "CONFAB_HTTP_MAX_CONNECTIONS",
        "http.max_connections",
        Kind::Int,
        false,
    ),
    (
        "CONFAB_HTTP_MAX_CONNECTIONS_PER_IP",
        "http.max_connections_per_ip",
        Kind::Int,
        false,
    ),
    ("CONFAB_TLS_CERT", "tls.cert", Kind::Str, false),
    ("CONFAB_TLS_KEY", "tls.key", Kind::Str, false),
    ("CONFAB_DOMAIN", "tls.domains", Kind::List, false),
    ("CONFAB_DOMAINS", "tls.domains", Kind::List, false),
    ("CONFAB_ACME_EMAIL", "tls.acme_email", Kind::Str, false),
    (
        "CONFAB_ACME_DIRECTORY",
        "tls.acme_directory",
        Kind::Str,
        false,
    ),
    ("CONFAB_ACME_STAGING", "tls.acme_staging", Kind::Bool, false),
    ("CONFAB_ACME_CA_ROOT", "tls.acme_ca_root", Kind::Str, false),
    ("CONFAB_HTTPS_LISTEN", "tls.https_listen", Kind::Str, false),
    ("CONFAB_HTTP_LISTEN", "tls.http_listen", Kind::Str, false),
];

/// Variables that are not settings but are read elsewhere.
const ENV_OTHER: &[&str] = &["CONFAB_CONFIG", "CONFAB_LOG", "CONFAB_API_KEY"];

/// Flags given on the command line; `None` means "not given".
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub public_url: Option<String>,
    pub log_format: Option<String>,
    pub registration: Option<String>,
    pub metrics_listen: Option<String>,
    /// `serve --domain/--tls-cert/...`.
    pub tls: crate::tls::TlsFlags,
}

#[derive(Debug)]
pub struct ConfigError(pub String);
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for ConfigError {}

fn err(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

fn set_path(table: &mut toml::Table, path: &str, value: toml::Value) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().expect("non-empty path");
    let mut t = table;
    for p in parts {
        t = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .expect("config sections are tables");
    }
    t.insert(last.to_string(), value);
}

fn env_value(name: &str, raw: &str, kind: Kind) -> Result<toml::Value, ConfigError> {
    Ok(match kind {
        Kind::Str => toml::Value::String(raw.to_string()),
        Kind::Int => toml::Value::Integer(raw.trim().parse().map_err(|_| {
            err(format!(
                "environment variable {name} must be a whole number, got {raw:?}"
            ))
        })?),
        Kind::Bool => toml::Value::Boolean(match raw.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => {
                return Err(err(format!(
                    "environment variable {name} must be true or false, got {raw:?}"
                )));
            }
        }),
        Kind::List => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        ),
    })
}

/// Which file to read: the explicit one (must exist) or the system one when present.
pub fn config_path(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Ok(p) = std::env::var("CONFAB_CONFIG")
        && !p.is_empty()
    {
        return Some(PathBuf::from(p));
    }
    let sys = Path::new(SYSTEM_CONFIG_PATH);
    sys.exists().then(|| sys.to_path_buf())
}

impl Config {
    /// Load with all layers from the real process environment.
    pub fn load(
        explicit: Option<&Path>,
        flags: &Overrides,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(config_path(explicit).as_deref(), &env, flags)
    }

    /// Load from a given file, environment and flags. Returns the config and
    /// warnings (unknown `CONFAB_*` variables) to log once logging is up.
    pub fn load_from(
        file: Option<&Path>,
        env: &[(String, String)],
        flags: &Overrides,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| err(format!("cannot read config file {}: {e}", path.display())))?;
                toml::from_str::<toml::Table>(&text).map_err(|e| {
                    err(format!(
                        "config file {} is not valid TOML: {}",
                        path.display(),
                        e.message()
                    ))
                })?
            }
            None => toml::Table::new(),
        };

        let mut warnings = Vec::new();
        for (name, raw) in env {
            if !name.starts_with("CONFAB_") {
                continue;
            }
            let (lookup, from_file) = match name.strip_suffix("_FILE") {
                Some(base) if ENV_VARS.iter().any(|v| v.0 == base && v.3) => (base, true),
                _ => (name.as_str(), false),
            };
            let Some(&(_, path, kind, _)) = ENV_VARS.iter().find(|v| v.0 == lookup) else {
                if !ENV_OTHER.contains(&name.as_str()) {
                    warnings.push(format!("ignoring unknown environment variable {name}"));
                }
                continue;
            };
            let value = if from_file {
                std::fs::read_to_string(raw)
                    .map_err(|e| err(format!("cannot read {name} file {raw}: {e}")))?
                    .trim_end_matches(['\n', '\r'])
                    .to_string()
            } else {
                raw.clone()
            };
            set_path(&mut table, path, env_value(name, &value, kind)?);
        }

        let s = |v: &String| toml::Value::String(v.clone());
        if let Some(v) = &flags.data_dir {
            set_path(
                &mut table,
                "data_dir",
                toml::Value::String(v.to_string_lossy().into_owned()),
            );
        }
        if let Some(v) = &flags.listen {
            set_path(&mut table, "listen", s(v));
        }
        if let Some(v) = &flags.public_url {
            set_path(&mut table, "public_url", s(v));
        }
        if let Some(v) = &flags.log_format {
            set_path(&mut table, "log_format", s(v));
        }
        if let Some(v) = &flags.registration {
            set_path(&mut table, "registration", s(v));
        }
        if let Some(v) = &flags.metrics_listen {
            set_path(&mut table, "metrics_listen", s(v));
        }
        flags
            .tls
            .apply(&mut |path, v| set_path(&mut table, path, v));

        let cfg: Config = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(
            |e: serde_path_to_error::Error<toml::de::Error>| {
                let setting = e.path().to_string();
                let inner = e.into_inner();
                let msg = inner.message().trim().to_string();
                if let Some(rest) = msg.strip_prefix("unknown field ") {
                    err(format!("unknown setting {rest}"))
                } else if setting == "listen" {
                    err(format!(
                        "invalid value for setting `listen`: {msg}; expected an address like 127.0.0.1:8080 or 0.0.0.0:8080"
                    ))
                } else if setting == "." || setting.is_empty() {
                    err(format!("invalid configuration: {msg}"))
                } else {
                    err(format!("invalid value for setting `{setting}`: {msg}"))
                }
            },
        )?;
        let mut cfg = cfg;
        for (i, p) in cfg.providers.iter_mut().enumerate() {
            if p.api_key.is_some() && p.api_key_file.is_some() {
                return Err(err(format!(
                    "providers[{i}] (provider \"{}\") sets both api_key and api_key_file; keep one",
                    p.name
                )));
            }
            p.load_key_file(i)?;
        }
        cfg.validate()?;
        Ok((cfg, warnings))
    }

    /// Checks that serde cannot express. Each message names the setting and
    /// what is allowed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.tls.validate()?;
        self.http.validate()?;
        if self.shutdown_grace_secs > 3600 {
            return Err(err(format!(
                "shutdown_grace_secs must be between 0 and 3600, got {}",
                self.shutdown_grace_secs
            )));
        }
        if self.max_body_bytes < 1024 || self.max_body_bytes > 1024 * 1024 * 1024 {
            return Err(err(format!(
                "max_body_bytes must be between 1024 and 1073741824, got {}",
                self.max_body_bytes
            )));
        }
        if let Some(url) = &self.public_url {
            parse_origin(url).ok_or_else(|| {
                err(format!(
                    "public_url must be an absolute http:// or https:// URL like https://chat.example.com, got {url:?}"
                ))
            })?;
        }
        for o in &self.cors_origins {
            if o == "*" {
                return Err(err(
                    "cors_origins may not contain \"*\": list each allowed origin, like https://app.example.com",
                ));
            }
            match parse_origin(o) {
                Some(origin) if origin == o.trim_end_matches('/') => {}
                _ => {
                    return Err(err(format!(
                        "cors_origins entries must be origins like https://app.example.com (scheme, host and optional port, no path), got {o:?}"
                    )));
                }
            }
        }
        tracing_subscriber::EnvFilter::try_new(&self.log_level).map_err(|_| {
            err(format!(
                "log_level must be one of error, warn, info, debug, trace (or a tracing filter like confab=debug), got {:?}",
                self.log_level
            ))
        })?;
        let a = &self.auth;
        if a.session_idle_hours == 0 || a.session_absolute_hours == 0 {
            return Err(err(
                "auth.session_idle_hours and auth.session_absolute_hours must be at least 1",
            ));
        }
        if a.session_idle_hours > a.session_absolute_hours {
            return Err(err(format!(
                "auth.session_idle_hours ({}) must not exceed auth.session_absolute_hours ({})",
                a.session_idle_hours, a.session_absolute_hours
            )));
        }
        if a.access_token_minutes == 0 || a.access_token_minutes > 24 * 60 {
            return Err(err("auth.access_token_minutes must be between 1 and 1440"));
        }
        if a.refresh_token_days == 0 || a.refresh_token_days > 365 {
            return Err(err("auth.refresh_token_days must be between 1 and 365"));
        }
        if a.login_per_ip_per_minute == 0 || a.login_burst == 0 {
            return Err(err(
                "auth.login_per_ip_per_minute and auth.login_burst must be at least 1",
            ));
        }
        for (name, n) in [
            (
                "login_failures_per_account_per_hour",
                a.login_failures_per_account_per_hour,
            ),
            (
                "login_failures_per_source_per_hour",
                a.login_failures_per_source_per_hour,
            ),
            (
                "login_failures_per_device_per_hour",
                a.login_failures_per_device_per_hour,
            ),
        ] {
            if n == 0 {
                return Err(err(format!("auth.{name} must be at least 1")));
            }
        }
        if a.login_failure_delay_ms > 30_000 {
            return Err(err("auth.login_failure_delay_ms must be at most 30000"));
        }
        if a.device_cookie_days == 0 || a.device_cookie_days > 3650 {
            return Err(err("auth.device_cookie_days must be between 1 and 3650"));
        }
        if let Some(s) = &a.jwt_secret
            && s.expose().len() < 32
        {
            return Err(err(
                "auth.jwt_secret must be at least 32 characters (or leave it unset to use a generated key)",
            ));
        }
        if self.provider_idle_timeout_secs == 0 || self.provider_idle_timeout_secs > 3600 {
            return Err(err(format!(
                "provider_idle_timeout_secs must be between 1 and 3600, got {}",
                self.provider_idle_timeout_secs
            )));
        }
        if let Some(m) = &self.default_model
            && (m.trim().is_empty() || m.len() > 200)
        {
            return Err(err(
                "default_model must be a model id of 1 to 200 characters (or leave it unset)",
            ));
        }
        self.validate_governance()?;
        for (i, p) in self.providers.iter().enumerate() {
            validate_provider_name(&p.name)
                .map_err(|m| err(format!("providers[{i}].name: {m}")))?;
            if self.providers[..i].iter().any(|q| q.name == p.name) {
                return Err(err(format!(
                    "providers[{i}].name: the name \"{}\" is used by more than one [[providers]] entry; names must be unique",
                    p.name
                )));
            }
            validate_provider_url(&p.base_url)
                .map_err(|m| err(format!("providers[{i}].{m} (provider \"{}\")", p.name)))?;
            if let Some(models) = &p.models {
                validate_model_list(models)
                    .map_err(|m| err(format!("providers[{i}].{m} (provider \"{}\")", p.name)))?;
            }
            if let Some(k) = &p.api_key
                && (k.expose().trim().is_empty() || k.expose().chars().any(char::is_control))
            {
                return Err(err(format!(
                    "providers[{i}].api_key (provider \"{}\") must be a non-empty key without control characters",
                    p.name
                )));
            }
        }
        Ok(())
    }

    /// `[limits]`, `[quota]`, `[[prices]]`, `trusted_proxies` and the
    /// metrics settings.
    fn validate_governance(&self) -> Result<(), ConfigError> {
        for (i, p) in self.trusted_proxies.iter().enumerate() {
            crate::limits::ip::parse_net(p).ok_or_else(|| {
                err(format!(
                    "trusted_proxies[{i}] must be an IP address or CIDR like 10.0.0.0/8 or ::1, got {p:?}"
                ))
            })?;
        }
        if let Some(t) = &self.metrics_token
            && (t.expose().len() < 16 || t.expose().chars().any(|c| c.is_whitespace()))
        {
            return Err(err(
                "metrics_token must be at least 16 characters without spaces (or leave it unset)",
            ));
        }
        let l = &self.limits;
        for (name, v) in [
            ("anon_per_minute", l.anon_per_minute),
            ("anon_burst", l.anon_burst),
            ("api_per_minute", l.api_per_minute),
            ("api_burst", l.api_burst),
            ("chat_per_minute", l.chat_per_minute),
            ("chat_burst", l.chat_burst),
            ("max_concurrent_generations", l.max_concurrent_generations),
        ] {
            if v == 0 {
                return Err(err(format!(
                    "limits.{name} must be at least 1 (set limits.enabled = false to turn rate limits off)"
                )));
            }
        }
        if l.max_tracked_keys < 1000 {
            return Err(err(format!(
                "limits.max_tracked_keys must be at least 1000, got {}",
                l.max_tracked_keys
            )));
        }
        for (i, p) in self.prices.iter().enumerate() {
            if p.model.trim().is_empty() || p.model.len() > 200 {
                return Err(err(format!(
                    "prices[{i}].model must be a model id of 1 to 200 characters (a trailing * matches a prefix)"
                )));
            }
            for (name, v) in [
                ("input_per_million", p.input_per_million),
                ("output_per_million", p.output_per_million),
            ] {
                if !v.is_finite() || !(0.0..=1_000_000.0).contains(&v) {
                    return Err(err(format!(
                        "prices[{i}].{name} (model {:?}) must be a number between 0 and 1000000, got {v}",
                        p.model
                    )));
                }
            }
            if self.prices[..i]
                .iter()
                .any(|q| q.model == p.model && q.provider == p.provider)
            {
                return Err(err(format!(
                    "prices[{i}]: model {:?} is priced twice; keep one entry",
                    p.model
                )));
            }
        }
        Ok(())
    }

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

    /// Under TLS, or behind a proxy that terminates it (public_url https).
    pub fn secure_cookies(&self) -> bool {
        self.tls.enabled()
            || self
                .public_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://"))
    }
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
mod tests {
    use super::*;

    fn load(file: Option<&str>, env: &[(&str, &str)], flags: Overrides) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        if let Some(text) = file {
            std::fs::write(&path, text).unwrap();
        }
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        Config::load_from(file.map(|_| path.as_path()), &env, &flags)
            .map(|(c, _)| c)
            .map_err(|e| e.0)
    }

    #[test]
    fn defaults_parse_and_example_is_valid() {
        let c = load(None, &[], Overrides::default()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.registration, RegistrationMode::Invite);
        assert_eq!(c.max_body_bytes, 1 << 20);
        // The shipped example must load as-is.
        load(Some(DEFAULT_CONFIG), &[], Overrides::default()).unwrap();
    }

    #[test]
    fn layers_apply_in_order() {
        let file = "listen = \"127.0.0.1:9000\"\nregistration = \"open\"\nlog_level = \"warn\"\n";
        let c = load(
            Some(file),
            &[
                ("CONFAB_LISTEN", "127.0.0.1:9001"),
                ("CONFAB_LOG_LEVEL", "debug"),
            ],
            Overrides {
                listen: Some("127.0.0.1:9002".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9002, "flag beats env");
        assert_eq!(c.log_level, "debug", "env beats file");
        assert_eq!(c.registration, RegistrationMode::Open, "file beats default");
    }

    #[test]
    fn secret_from_file_and_hidden_in_debug() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret");
        std::fs::write(&p, "0123456789abcdef0123456789abcdef\n").unwrap();
        let c = load(
            None,
            &[("CONFAB_JWT_SECRET_FILE", p.to_str().unwrap())],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            c.auth.jwt_secret.as_ref().unwrap().expose(),
            "0123456789abcdef0123456789abcdef"
        );
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn bad_values_name_the_setting() {
        let e = load(
            Some("registration = \"sometimes\""),
            &[],
            Overrides::default(),
        )
        .unwrap_err();
        assert!(e.contains("registration") || e.contains("sometimes"), "{e}");
        assert!(e.contains("open"), "{e}");
        let e = load(Some("max_body_bytes = 10"), &[], Overrides::default()).unwrap_err();
        assert!(e.contains("max_body_bytes"), "{e}");
        let e = load(Some("cors_origins = [\"*\"]"), &[], Overrides::default()).unwrap_err();
        assert!(e.contains("cors_origins"), "{e}");
        let e = load(Some("listen = \"nowhere\""), &[], Overrides::default()).unwrap_err();
        assert!(e.contains("listen") || e.contains("address"), "{e}");
        let e = load(Some("bogus = 1"), &[], Overrides::default()).unwrap_err();
        assert!(e.contains("bogus"), "{e}");
        let e = load(
            None,
            &[("CONFAB_MAX_BODY_BYTES", "lots")],
            Overrides::default(),
        )
        .unwrap_err();
        assert!(e.contains("CONFAB_MAX_BODY_BYTES"), "{e}");
    }

    #[test]
    fn provider_settings_and_entries() {
        let c = load(None, &[], Overrides::default()).unwrap();
        assert!(!c.allow_user_keys);
        assert!(c.detect_local_providers);
        assert_eq!(c.provider_idle_timeout_secs, 60);
        assert!(c.default_model.is_none() && c.providers.is_empty());

        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("vllm.key");
        std::fs::write(&key, "sk-from-file-123\n").unwrap();
        let file = format!(
            "default_model = \"qwen2.5-7b\"\nallow_user_keys = true\n\
             [[providers]]\nkind = \"openai\"\nname = \"local-vllm\"\n\
             base_url = \"http://127.0.0.1:8000/v1\"\napi_key_file = {:?}\nmodels = [\"qwen2.5-7b\"]\n\
             [[providers]]\nkind = \"ollama\"\nname = \"box\"\nbase_url = \"http://10.0.0.2:11434/\"\nenabled = false\n",
            key.to_str().unwrap()
        );
        let c = load(
            Some(&file),
            &[
                ("CONFAB_DETECT_LOCAL_PROVIDERS", "false"),
                ("CONFAB_PROVIDER_IDLE_TIMEOUT_SECS", "5"),
            ],
            Overrides::default(),
        )
        .unwrap();
        assert!(c.allow_user_keys && !c.detect_local_providers);
        assert_eq!(c.provider_idle_timeout_secs, 5);
        assert_eq!(c.default_model.as_deref(), Some("qwen2.5-7b"));
        assert_eq!(c.providers.len(), 2);
        let p = c.providers[0].to_provider_config(0).unwrap();
        assert_eq!(p.api_key.as_deref(), Some("sk-from-file-123"));
        assert_eq!(p.models.as_deref(), Some(&["qwen2.5-7b".to_string()][..]));
        assert!(!format!("{c:?}").contains("sk-from-file"));
        let o = c.providers[1].to_provider_config(1).unwrap();
        assert_eq!(o.base_url, "http://10.0.0.2:11434");
        assert!(!o.enabled && o.api_key.is_none());

        let e = load(
            None,
            &[("CONFAB_ALLOW_USER_KEYS", "maybe")],
            Overrides::default(),
        )
        .unwrap_err();
        assert!(e.contains("CONFAB_ALLOW_USER_KEYS"), "{e}");
        let c = load(
            None,
            &[
                ("CONFAB_ALLOW_USER_KEYS", "yes"),
                ("CONFAB_DEFAULT_MODEL", "m"),
            ],
            Overrides::default(),
        )
        .unwrap();
        assert!(c.allow_user_keys);
        assert_eq!(c.default_model.as_deref(), Some("m"));
    }

    #[test]
    fn bad_provider_entries_name_the_setting() {
        let entry = |body: &str| format!("[[providers]]\n{body}\n");
        let e = load(
            Some(&entry(
                "kind = \"openai\"\nname = \"x\"\nbase_url = \"http://h/v1\"\napi_key_file = \"/nonexistent/confab/key\"",
            )),
            &[],
            Overrides::default(),
        )
        .unwrap_err();
        assert!(e.contains("api_key_file"), "{e}");
        assert!(e.contains("/nonexistent/confab/key"), "{e}");
        let e = load(
            Some(&entry(
                "kind = \"gemini\"\nname = \"x\"\nbase_url = \"http://h/v1\"",
            )),
            &[],
            Overrides::default(),
        )
        .unwrap_err();
        assert!(e.contains("kind") && e.contains("openai"), "{e}");
        let e = load(
            Some(&entry(
                "kind = \"openai\"\nname = \"x\"\nbase_url = \"127.0.0.1:8000\"",
            )),
            &[],
            Overrides::default(),
        )
        .unwrap_err();
        assert!(e.contains("providers[0].base_url"), "{e}");
        let two = format!(
            "{}{}",
            entry("kind = \"openai\"\nname = \"x\"\nbase_url = \"http://h/v1\""),
            entry("kind = \"ollama\"\nname = \"x\"\nbase_url = \"http://h\"")
        );
        let e = load(Some(&two), &[], Overrides::default()).unwrap_err();
        assert!(
            e.contains("providers[1].name") && e.contains("unique"),
            "{e}"
        );
        let e = load(
            Some(&entry(
                "kind = \"openai\"\nname = \"has space\"\nbase_url = \"http://h/v1\"",
            )),
            &[],
            Overrides::default(),
        )
        .unwrap_err();
        assert!(e.contains("providers[0].name"), "{e}");
        let e = load(
            Some(&entry(
                "kind = \"openai\"\nname = \"x\"\nbase_url = \"http://h/v1\"\napi_key = \"k\"\napi_key_file = \"/k\"",
            )),
            &[],
            Overrides::default(),
        )
        .unwrap_err();
        assert!(e.contains("api_key_file") && e.contains("both"), "{e}");
        let e = load(
            Some("provider_idle_timeout_secs = 0"),
            &[],
            Overrides::default(),
        )
        .unwrap_err();
        assert!(e.contains("provider_idle_timeout_secs"), "{e}");
    }

    #[test]
    fn governance_settings_and_errors() {
        let c = load(None, &[], Overrides::default()).unwrap();
        assert!(c.limits.enabled && c.trusted_proxies.is_empty());
        assert_eq!(c.quota.messages_per_day, None);
        let file = "trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n\
             [limits]\napi_per_minute = 60\n[quota]\nmessages_per_day = 5\n\
             [[prices]]\nmodel = \"gpt-4o*\"\ninput_per_million = 2.5\noutput_per_million = 10\n";
        let c = load(
            Some(file),
            &[
                ("CONFAB_QUOTA_TOKENS_PER_DAY", "1000"),
                ("CONFAB_METRICS_TOKEN", "0123456789abcdef-token"),
                ("CONFAB_TRUSTED_PROXIES", "127.0.0.1, 192.168.0.0/16"),
            ],
            Overrides {
                metrics_listen: Some("127.0.0.1:9100".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.limits.api_per_minute, 60);
        assert_eq!(c.quota.messages_per_day, Some(5));
        assert_eq!(c.quota.tokens_per_day, Some(1000));
        assert_eq!(c.trusted_proxies.len(), 2, "env replaces the file's list");
        assert_eq!(c.prices[0].output_per_million, 10.0);
        assert_eq!(c.metrics_listen.unwrap().port(), 9100);
        assert!(!format!("{c:?}").contains("0123456789abcdef-token"));
        for (text, setting) in [
            ("trusted_proxies = [\"10.0.0/8x\"]", "trusted_proxies[0]"),
            ("metrics_token = \"short\"", "metrics_token"),
            ("[limits]\nchat_burst = 0", "limits.chat_burst"),
            ("[limits]\nmax_tracked_keys = 5", "limits.max_tracked_keys"),
            ("[quota]\nmessages_per_day = -1", "quota.messages_per_day"),
            (
                "[[prices]]\nmodel = \"m\"\ninput_per_million = -1\noutput_per_million = 1",
                "prices[0].input_per_million",
            ),
            ("[limits]\nbogus = 1", "bogus"),
        ] {
            let e = load(Some(text), &[], Overrides::default()).unwrap_err();
            assert!(e.contains(setting), "{text}: {e}");
        }
    }

    #[test]
    fn http_settings_and_errors() {
        let c = load(None, &[], Overrides::default()).unwrap();
        assert_eq!(c.http.header_timeout_secs, 10);
        assert_eq!(c.http.keep_alive_secs, 60);
        assert!(!c.provider_cross_origin_redirects);
        let c = load(
            Some("provider_cross_origin_redirects = true\n[http]\nbody_timeout_secs = 5\n"),
            &[("CONFAB_HTTP_MAX_CONNECTIONS_PER_IP", "8")],
            Overrides::default(),
        )
        .unwrap();
        assert!(c.provider_cross_origin_redirects);
        assert_eq!(c.http.body_timeout_secs, 5);
        assert_eq!(c.http.max_connections_per_ip, 8);
        for (text, setting) in [
            (
                "[http]\nheader_timeout_secs = 0",
                "http.header_timeout_secs",
            ),
            ("[http]\nkeep_alive_secs = 99999", "http.keep_alive_secs"),
            ("[http]\nmax_connections = 0", "http.max_connections"),
            (
                "[http]\nmax_connections = 10\nmax_connections_per_ip = 11",
                "http.max_connections_per_ip",
            ),
            ("[http]\nbogus = 1", "bogus"),
        ] {
            let e = load(Some(text), &[], Overrides::default()).unwrap_err();
            assert!(e.contains(setting), "{text}: {e}");
        }
    }

    #[test]
    fn unknown_env_is_warned() {
        let (_, w) = Config::load_from(
            None,
            &[("CONFAB_LISTN".into(), "x".into())],
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("CONFAB_LISTN"));
    }
}
