//! The `CONFAB_*` environment variables and how their text becomes a
//! setting.

use super::{ConfigError, err};

#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Str,
    Int,
    Bool,
    List,
}

/// Every environment variable confab reads, with the setting it sets.
/// Secrets are also accepted as `<NAME>_FILE` holding the value.
pub(super) const ENV_VARS: &[(&str, &str, Kind, bool)] = &[
    ("CONFAB_DATA_DIR", "data_dir", Kind::Str, false),
    ("CONFAB_STORE", "store", Kind::Str, true),
    (
        "CONFAB_STORE_POOL_SIZE",
        "store_pool_size",
        Kind::Int,
        false,
    ),
    (
        "CONFAB_STORE_CACHE_MIB",
        "store_cache_mib",
        Kind::Int,
        false,
    ),
    ("CONFAB_LISTEN", "listen", Kind::Str, false),
    ("CONFAB_PUBLIC_URL", "public_url", Kind::Str, false),
    ("CONFAB_LOG_FORMAT", "log_format", Kind::Str, false),
    ("CONFAB_LOG_LEVEL", "log_level", Kind::Str, false),
    ("CONFAB_MAX_BODY_BYTES", "max_body_bytes", Kind::Int, false),
    (
        "CONFAB_MAX_IMPORT_BYTES",
        "max_import_bytes",
        Kind::Int,
        false,
    ),
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
        "CONFAB_EMBEDDING_MODEL",
        "embedding_model",
        Kind::Str,
        false,
    ),
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
        "CONFAB_PROVIDER_CA_FILE",
        "provider_ca_file",
        Kind::Str,
        false,
    ),
    (
        "CONFAB_SHUTDOWN_GRACE_SECS",
        "shutdown_grace_secs",
        Kind::Int,
        false,
    ),
    (
        "CONFAB_CLUSTER_LEASE_SECS",
        "cluster_lease_secs",
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
        "CONFAB_AUTH_LOCAL_PASSWORDS",
        "auth.local_passwords",
        Kind::Bool,
        false,
    ),
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
        "CONFAB_ROUTING_STRATEGY",
        "routing.strategy",
        Kind::Str,
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
    (
        "CONFAB_FILES_MAX_FILE_BYTES",
        "files.max_file_bytes",
        Kind::Int,
        false,
    ),
    (
        "CONFAB_FILES_QUOTA_BYTES_PER_USER",
        "files.quota_bytes_per_user",
        Kind::Int,
        false,
    ),
    ("CONFAB_SMTP_HOST", "smtp.host", Kind::Str, false),
    ("CONFAB_SMTP_PORT", "smtp.port", Kind::Int, false),
    ("CONFAB_SMTP_SECURITY", "smtp.security", Kind::Str, false),
    ("CONFAB_SMTP_USERNAME", "smtp.username", Kind::Str, false),
    ("CONFAB_SMTP_PASSWORD", "smtp.password", Kind::Str, true),
    ("CONFAB_SMTP_FROM", "smtp.from", Kind::Str, false),
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
pub(super) const ENV_OTHER: &[&str] = &["CONFAB_CONFIG", "CONFAB_LOG", "CONFAB_API_KEY"];

pub(super) fn env_value(name: &str, raw: &str, kind: Kind) -> Result<toml::Value, ConfigError> {
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
