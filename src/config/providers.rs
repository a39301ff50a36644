//! `[[providers]]` entries and the checks on provider names, URLs and
//! model lists (shared with the admin API).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use super::{ConfigError, Secret, err};
use crate::providers::{ProviderConfig, ProviderKind};

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
    /// Among providers serving the same model, higher is tried first
    /// (ties in file order); -1000 to 1000, default 0.
    #[serde(default)]
    pub priority: i32,
    /// Users may bring their own key to this provider when the server's
    /// `allow_user_keys` is on; default true.
    #[serde(default = "default_true")]
    pub allow_user_keys: bool,
}

/// `[routing]`: how a model served by several providers is routed.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// `priority` (default) or `least_busy`.
    pub strategy: crate::providers::Strategy,
}

/// The bounds of `[[providers]] priority`.
pub const PRIORITY_RANGE: std::ops::RangeInclusive<i32> = -1000..=1000;

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
            priority: 0,
            allow_user_keys: true,
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
            priority: e.priority,
            allow_user_keys: e.allow_user_keys,
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
