//! `[tls]` and the `serve` TLS flags: the settings, their validation and
//! the names and addresses they accept. The `tls` module serves with them.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use utoipa::ToSchema;

use super::{ConfigError, err};

pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// The TLS command-line flags of `confab serve`.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct TlsFlags {
    /// Get a certificate for this domain automatically (ACME); repeat for
    /// more names. Turns on HTTPS on port 443 with a redirect on port 80.
    #[arg(long = "domain", value_name = "NAME")]
    pub domains: Vec<String>,
    /// Contact e-mail for the ACME account (optional).
    #[arg(long, value_name = "EMAIL")]
    pub acme_email: Option<String>,
    /// ACME directory URL. Default: Let's Encrypt production.
    #[arg(long, value_name = "URL")]
    pub acme_directory: Option<String>,
    /// Use Let's Encrypt's staging CA (untrusted certificates, generous limits).
    #[arg(long)]
    pub acme_staging: bool,
    /// Also trust this CA (PEM) when talking to the ACME server, e.g. Pebble's.
    #[arg(long, value_name = "FILE")]
    pub acme_ca_root: Option<PathBuf>,
    /// Certificate chain (PEM) to serve HTTPS with; reloaded when it changes.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// HTTPS address. Default [::]:443 with --domain, else --listen.
    #[arg(long, value_name = "ADDR")]
    pub https_listen: Option<String>,
    /// Plain-HTTP address for ACME HTTP-01 and the redirect to https, or
    /// "off". Default [::]:80 with --domain, else off.
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<String>,
}

impl TlsFlags {
    /// Puts the flags that were given into the config table (`tls.*`).
    pub fn apply(&self, set: &mut dyn FnMut(&str, toml::Value)) {
        let s = |v: &str| toml::Value::String(v.to_string());
        let p = |v: &PathBuf| toml::Value::String(v.to_string_lossy().into_owned());
        if !self.domains.is_empty() {
            let list = self
                .domains
                .iter()
                .flat_map(|d| d.split(','))
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(s)
                .collect();
            set("tls.domains", toml::Value::Array(list));
        }
        if let Some(v) = &self.acme_email {
            set("tls.acme_email", s(v));
        }
        if let Some(v) = &self.acme_directory {
            set("tls.acme_directory", s(v));
        }
        if self.acme_staging {
            set("tls.acme_staging", toml::Value::Boolean(true));
        }
        if let Some(v) = &self.acme_ca_root {
            set("tls.acme_ca_root", p(v));
        }
        if let Some(v) = &self.tls_cert {
            set("tls.cert", p(v));
        }
        if let Some(v) = &self.tls_key {
            set("tls.key", p(v));
        }
        if let Some(v) = &self.https_listen {
            set("tls.https_listen", s(v));
        }
        if let Some(v) = &self.http_listen {
            set("tls.http_listen", s(v));
        }
    }
}

/// A name a public CA can issue for by HTTP-01 or TLS-ALPN-01: letters,
/// digits and hyphens in dot-separated labels, no wildcard, no IP address.
pub fn validate_domain(d: &str) -> Result<(), String> {
    let d = d.trim_end_matches('.');
    if d.starts_with("*.") {
        return Err(
            "wildcard names need the DNS-01 challenge, which confab does not do; list each name"
                .into(),
        );
    }
    if d.parse::<std::net::IpAddr>().is_ok() {
        return Err("is an IP address; certificates are issued for DNS names".into());
    }
    if d.contains("://") || d.contains('/') || d.contains(':') {
        return Err("must be a bare name like chat.example.com (no scheme, port or path)".into());
    }
    let labels: Vec<&str> = d.split('.').collect();
    let ok = !d.is_empty()
        && d.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            (1..=63).contains(&l.len())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err("is not a valid DNS name like chat.example.com".into())
    }
}

/// An address a CA accepts as the account contact.
pub fn validate_email(e: &str) -> Result<(), String> {
    let e = e.trim();
    let Some((local, domain)) = e.split_once('@') else {
        return Err("must be an e-mail address like you@your-domain.com".into());
    };
    if local.is_empty()
        || domain.contains('@')
        || e.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ',')
        || e.starts_with("mailto:")
        || validate_domain(domain).is_err()
    {
        return Err(
            "must be one e-mail address like you@your-domain.com (no mailto:, no list)".into(),
        );
    }
    let domain = domain.to_ascii_lowercase();
    if ["example.com", "example.org", "example.net"]
        .iter()
        .any(|x| domain == *x || domain.ends_with(&format!(".{x}")))
    {
        return Err(format!(
            "{domain} is a reserved example domain that CAs reject; use your real address or leave it unset"
        ));
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Plain HTTP (behind a proxy, or on a private network).
    Off,
    /// Certificate files (`tls.cert`, `tls.key`).
    Files,
    /// Automatic certificates for `tls.domains`.
    Acme,
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
    pub fn mode(&self) -> TlsMode {
        if !self.domains.is_empty() {
            TlsMode::Acme
        } else if self.cert.is_some() || self.key.is_some() {
            TlsMode::Files
        } else {
            TlsMode::Off
        }
    }

    pub fn enabled(&self) -> bool {
        self.mode() != TlsMode::Off
    }

    pub fn acme_directory_url(&self) -> String {
        match &self.acme_directory {
            Some(d) => d.trim().to_string(),
            None if self.acme_staging => LETS_ENCRYPT_STAGING.into(),
            None => LETS_ENCRYPT.into(),
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
            validate_domain(d).map_err(|m| err(format!("tls.domains (--domain) {d:?}: {m}")))?;
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
            validate_email(e)
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
                LETS_ENCRYPT
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
