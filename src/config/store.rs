//! `store`: where confab keeps its records. Unset, the embedded redb file in
//! `data_dir`; a `postgres://` URL, a PostgreSQL database. This module parses
//! and checks the URL (the store opens it); it never prints the password.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::{ConfigError, err};

/// The `store` setting as written: a PostgreSQL URL. `Debug` shows it with
/// the password replaced by `***`.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(transparent)]
pub struct StoreUrl(pub String);

impl StoreUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact(&self.0))
    }
}

/// Largest connection pool a `store_pool_size` may ask for.
pub const MAX_POOL_SIZE: usize = 1000;
/// Connections per confab process when `store_pool_size` is not set.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// The redb store's page cache when `store_cache_mib` is not set (see
/// `store::redb::DEFAULT_CACHE_BYTES`, the same figure).
pub const DEFAULT_CACHE_MIB: usize = 64;
/// Bounds of `store_cache_mib`.
pub const MIN_CACHE_MIB: usize = 4;
pub const MAX_CACHE_MIB: usize = 65536;

/// Which store a configuration chose.
#[derive(Debug, Clone)]
pub enum StoreChoice {
    /// `<data_dir>/confab.redb`.
    Redb,
    Postgres(PgSettings),
}

/// How to verify the server's certificate (`sslmode`), as libpq does:
/// `prefer` and `require` encrypt without checking the certificate unless a
/// root certificate is given (then as `verify-ca`); `verify-ca` checks the
/// chain; `verify-full` the chain and the host name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgSslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl PgSslMode {
    fn parse(s: &str) -> Option<PgSslMode> {
        Some(match s {
            "disable" => PgSslMode::Disable,
            "prefer" => PgSslMode::Prefer,
            "require" => PgSslMode::Require,
            "verify-ca" => PgSslMode::VerifyCa,
            "verify-full" => PgSslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// Where the root certificates for `verify-ca` / `verify-full` come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgRoots {
    /// The system's trust store and the webpki (Mozilla) roots built in.
    System,
    /// `sslrootcert=FILE`: the PEM certificates in that file only.
    File(PathBuf),
}

/// A parsed `store = "postgres://…"`.
#[derive(Clone)]
pub struct PgSettings {
    /// The URL without the TLS parameters confab handles itself (`sslmode`,
    /// `sslrootcert`), for the PostgreSQL client; holds the password.
    pub client_url: String,
    pub ssl: PgSslMode,
    pub roots: PgRoots,
    /// `sslrootcert` was given (`prefer`/`require` then verify the chain).
    pub roots_given: bool,
    pub pool_size: usize,
}

impl fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgSettings")
            .field("url", &redact(&self.client_url))
            .field("ssl", &self.ssl)
            .field("roots", &self.roots)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl PgSettings {
    /// The client's configuration (hosts, user, password, database,
    /// `target_session_attrs`, …); TLS is set up by the store from `ssl`.
    pub fn client_config(&self) -> Result<tokio_postgres::Config, ConfigError> {
        let mut c = tokio_postgres::Config::from_str(&self.client_url).map_err(|e| {
            err(format!(
                "store: the PostgreSQL URL is not valid ({e}); write it like postgres://USER:PASSWORD@HOST:5432/DATABASE?sslmode=verify-full"
            ))
        })?;
        if c.get_hosts().is_empty() {
            return Err(err(
                "store: the PostgreSQL URL names no host; write it like postgres://USER:PASSWORD@HOST:5432/DATABASE",
            ));
        }
        if c.get_dbname().is_none() {
            return Err(err(
                "store: the PostgreSQL URL names no database; add it after the host, like postgres://USER@HOST/confab",
            ));
        }
        c.ssl_mode(match self.ssl {
            PgSslMode::Disable => tokio_postgres::config::SslMode::Disable,
            PgSslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        if c.get_application_name().is_none() {
            c.application_name("confab");
        }
        if c.get_connect_timeout().is_none() {
            c.connect_timeout(std::time::Duration::from_secs(10));
        }
        Ok(c)
    }

    /// "PostgreSQL database confab on db1:5432, db2:5433" (no credentials).
    pub fn describe(&self) -> String {
        match tokio_postgres::Config::from_str(&self.client_url) {
            Ok(c) => {
                let ports = c.get_ports();
                let hosts: Vec<String> = c
                    .get_hosts()
                    .iter()
                    .enumerate()
                    .map(|(i, h)| {
                        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                        match h {
                            tokio_postgres::config::Host::Tcp(n) => format!("{n}:{port}"),
                            tokio_postgres::config::Host::Unix(p) => {
                                format!("{} (socket, port {port})", p.display())
                            }
                        }
                    })
                    .collect();
                format!(
                    "PostgreSQL database {} on {}",
                    c.get_dbname().unwrap_or("?"),
                    hosts.join(", ")
                )
            }
            Err(_) => "PostgreSQL database (unparsable URL)".into(),
        }
    }
}

/// Parses the `store` setting (None or blank: redb).
pub fn parse_store(url: Option<&StoreUrl>, pool_size: usize) -> Result<StoreChoice, ConfigError> {
    let Some(url) = url.map(|u| u.0.trim()).filter(|u| !u.is_empty()) else {
        return Ok(StoreChoice::Redb);
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(err(format!(
            "store must be a PostgreSQL URL like postgres://confab:PASSWORD@db.example.com/confab (or left unset to keep the embedded database in data_dir), got {:?}",
            redact(url)
        )));
    }
    if pool_size == 0 || pool_size > MAX_POOL_SIZE {
        return Err(err(format!(
            "store_pool_size must be between 1 and {MAX_POOL_SIZE}, got {pool_size}"
        )));
    }
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut ssl = PgSslMode::Prefer;
    let mut root: Option<String> = None;
    let mut kept: Vec<&str> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "sslmode" => {
                ssl = PgSslMode::parse(&percent_decode(v)).ok_or_else(|| {
                    err(format!(
                        "store: sslmode must be one of disable, prefer, require, verify-ca, verify-full, got {:?}",
                        percent_decode(v)
                    ))
                })?;
            }
            "sslrootcert" => root = Some(percent_decode(v)),
            "sslcert" | "sslkey" | "sslpassword" | "sslcrl" => {
                return Err(err(format!(
                    "store: {k} (client certificates) is not supported; authenticate with a password (in the URL, or the whole URL in CONFAB_STORE_FILE)"
                )));
            }
            _ => kept.push(pair),
        }
    }
    let roots = match root.as_deref() {
        None | Some("system") => PgRoots::System,
        Some(path) => {
            let p = PathBuf::from(path);
            let pem = std::fs::read(&p).map_err(|e| {
                err(format!(
                    "store: cannot read sslrootcert {}: {e}; give the path of a PEM file with the CA certificate that signed the server's",
                    p.display()
                ))
            })?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                return Err(err(format!(
                    "store: sslrootcert {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                    p.display()
                )));
            }
            PgRoots::File(p)
        }
    };
    let client_url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let settings = PgSettings {
        client_url,
        ssl,
        roots_given: root.as_deref().is_some_and(|r| r != "system"),
        roots,
        pool_size,
    };
    settings.client_config()?;
    Ok(StoreChoice::Postgres(settings))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The URL with its password (in the user part or as `password=`) replaced
/// by `***`.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some(x) => x,
        None => return "***".into(),
    };
    let (authority_end, _) = rest
        .char_indices()
        .find(|(_, c)| *c == '/' || *c == '?')
        .unwrap_or((rest.len(), ' '));
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((user, hosts)) => match user.split_once(':') {
            Some((name, _)) => format!("{name}:***@{hosts}"),
            None => format!("{user}@{hosts}"),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let q: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => p.to_string(),
                })
                .collect();
            format!("{path}?{}", q.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(url: &str) -> PgSettings {
        match parse_store(Some(&StoreUrl(url.into())), 8).unwrap() {
            StoreChoice::Postgres(p) => p,
            StoreChoice::Redb => panic!("not postgres"),
        }
    }

    #[test]
    fn unset_or_blank_is_redb() {
        assert!(matches!(parse_store(None, 8).unwrap(), StoreChoice::Redb));
        let blank = StoreUrl("  ".into());
        assert!(matches!(
            parse_store(Some(&blank), 8).unwrap(),
            StoreChoice::Redb
        ));
    }

    #[test]
    fn multi_host_with_read_write_sessions() {
        let p = pg(
            "postgres://confab:s3cret@db1.example:5432,db2.example:5433/chat?target_session_attrs=read-write&sslmode=verify-full",
        );
        assert_eq!(p.ssl, PgSslMode::VerifyFull);
        assert_eq!(p.roots, PgRoots::System);
        let c = p.client_config().unwrap();
        let hosts: Vec<String> = c
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(n) => n.clone(),
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .collect();
        assert_eq!(hosts, ["db1.example", "db2.example"]);
        assert_eq!(c.get_ports(), [5432, 5433]);
        assert_eq!(
            c.get_target_session_attrs(),
            tokio_postgres::config::TargetSessionAttrs::ReadWrite
        );
        assert_eq!(c.get_dbname(), Some("chat"));
        assert_eq!(c.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(
            c.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require,
            "verify-full needs TLS"
        );
        assert_eq!(
            p.describe(),
            "PostgreSQL database chat on db1.example:5432, db2.example:5433"
        );
        assert!(!format!("{p:?}").contains("s3cret"));
    }

    #[test]
    fn ssl_modes_and_root_certificates() {
        assert_eq!(pg("postgres://u@h/d").ssl, PgSslMode::Prefer);
        assert_eq!(
            pg("postgres://u@h/d?sslmode=disable")
                .client_config()
                .unwrap()
                .get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable
        );
        assert_eq!(
            pg("postgres://u@h/d?sslmode=require").ssl,
            PgSslMode::Require
        );
        assert_eq!(
            pg("postgres://u@h/d?sslmode=verify-ca").ssl,
            PgSslMode::VerifyCa
        );
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let p = pg(&format!(
            "postgresql://u@h/d?sslmode=verify-full&sslrootcert={}",
            ca.display()
        ));
        assert_eq!(p.roots, PgRoots::File(ca.clone()));
        assert!(p.roots_given);
        assert!(!p.client_url.contains("sslrootcert"));
        for (url, says) in [
            ("mysql://u@h/d", "PostgreSQL URL"),
            ("postgres://u@h/d?sslmode=allow", "sslmode must be one of"),
            (
                "postgres://u@h/d?sslrootcert=/nonexistent/ca.pem",
                "cannot read sslrootcert",
            ),
            ("postgres://u@h/d?sslcert=/x", "not supported"),
            ("postgres://u:pw@h", "names no database"),
        ] {
            let e = parse_store(Some(&StoreUrl(url.into())), 8).unwrap_err().0;
            assert!(e.contains(says), "{url}: {e}");
            assert!(!e.contains(":pw@"), "{e}");
        }
        let e = parse_store(Some(&StoreUrl("postgres://u@h/d".into())), 0)
            .unwrap_err()
            .0;
        assert!(e.contains("store_pool_size"), "{e}");
    }

    #[test]
    fn passwords_never_print() {
        for (url, want) in [
            (
                "postgres://confab:p%40ss@db:5432/confab?sslmode=require",
                "postgres://confab:***@db:5432/confab?sslmode=require",
            ),
            (
                "postgres://db/confab?user=confab&password=hunter2",
                "postgres://db/confab?user=confab&password=***",
            ),
            ("postgres://confab@db/confab", "postgres://confab@db/confab"),
        ] {
            assert_eq!(redact(url), want);
            assert_eq!(format!("{:?}", StoreUrl(url.into())), format!("{want:?}"));
        }
    }
}
