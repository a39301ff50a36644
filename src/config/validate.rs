//! Validation of a loaded [`Config`]: one sentence per bad value, naming
//! the setting and what is allowed.

use super::{
    Config, ConfigError, err, parse_origin, validate_model_list, validate_provider_name,
    validate_provider_url,
};

impl Config {
    /// Checks that serde cannot express. Each message names the setting and
    /// what is allowed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.store_choice()?;
        if !(super::store::MIN_CACHE_MIB..=super::store::MAX_CACHE_MIB)
            .contains(&self.store_cache_mib)
        {
            return Err(super::err(format!(
                "store_cache_mib must be between {} and {} (MiB), got {}",
                super::store::MIN_CACHE_MIB,
                super::store::MAX_CACHE_MIB,
                self.store_cache_mib
            )));
        }
        self.tls.validate()?;
        self.http.validate()?;
        self.files.validate()?;
        super::sso::validate_sso(&self.oidc, self.ldap.as_ref())?;
        if let Some(s) = &self.smtp {
            s.validate()?;
        }
        if self.shutdown_grace_secs > 3600 {
            return Err(err(format!(
                "shutdown_grace_secs must be between 0 and 3600, got {}",
                self.shutdown_grace_secs
            )));
        }
        if !(4..=300).contains(&self.cluster_lease_secs) {
            return Err(err(format!(
                "cluster_lease_secs must be between 4 and 300, got {}",
                self.cluster_lease_secs
            )));
        }
        if self.max_body_bytes < 1024 || self.max_body_bytes > 1024 * 1024 * 1024 {
            return Err(err(format!(
                "max_body_bytes must be between 1024 and 1073741824, got {}",
                self.max_body_bytes
            )));
        }
        if self.max_import_bytes < 1024 {
            return Err(err(format!(
                "max_import_bytes must be at least 1024, got {}",
                self.max_import_bytes
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
            (
                "two_factor_failures_per_hour",
                a.two_factor_failures_per_hour,
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
        if let Some(m) = &self.embedding_model
            && (m.trim().is_empty() || m.len() > 200)
        {
            return Err(err(
                "embedding_model must be a model id of 1 to 200 characters (or leave it unset)",
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
            if !super::PRIORITY_RANGE.contains(&p.priority) {
                return Err(err(format!(
                    "providers[{i}].priority (provider \"{}\") must be between {} and {}, got {}",
                    p.name,
                    super::PRIORITY_RANGE.start(),
                    super::PRIORITY_RANGE.end(),
                    p.priority
                )));
            }
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
            super::parse_net(p).ok_or_else(|| {
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
}
