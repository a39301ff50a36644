//! Provider administration: the layered registry at start-up, and the
//! changes admins make (create, update, enable/disable, delete) to the
//! stored records and the live registry together.
//!
//! Providers come from four sources, layered in this order (the first of a
//! name wins): `[[providers]]` in the config file, `OPENAI_API_KEY` /
//! `ANTHROPIC_API_KEY` in the environment, records admins stored (keys
//! sealed with [`SecretBox`]), and local servers the refresh loop detects.
//! Only admin-stored providers can be edited or deleted; the others can only
//! be disabled, in memory.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use utoipa::ToSchema;

use crate::config::{Config, validate_model_list, validate_provider_name, validate_provider_url};
use crate::providers::registry::{ProviderSummary, Registry, RegistryError, from_env};
use crate::providers::secrets::SecretBox;
use crate::providers::{ProviderConfig, ProviderKind, ProviderOptions};
use crate::store::provider_records::StoredProvider;
use crate::store::{SharedStore, StoreError};

/// How often model lists are re-fetched and local servers looked for.
pub const REFRESH_EVERY: Duration = Duration::from_secs(60);

/// Longest provider key accepted through the API.
const MAX_KEY_LEN: usize = 4096;

/// Why an admin change was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Validation(String),
    #[error("provider not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The registry at start-up: config entries, then the environment, then the
/// providers admins stored (keys decrypted). Local detection and the first
/// model-list refresh happen in the refresh loop `app::serve` starts.
///
/// Fails when a config entry's `api_key_file` cannot be read. A stored key
/// that cannot be decrypted is logged and the provider is added without it,
/// so one damaged record does not keep the server down.
pub async fn build_registry(cfg: &Config, store: &SharedStore) -> anyhow::Result<Arc<Registry>> {
    let make = crate::providers::client_factory(cfg.provider_ca_file.as_deref())?;
    let client = make();
    let options = ProviderOptions {
        idle_timeout: Duration::from_secs(cfg.provider_idle_timeout_secs),
        cross_origin_redirects: cfg.provider_cross_origin_redirects,
        shards: Some(crate::providers::shards::Shards::new(
            crate::providers::shards::DEFAULT_PER_CONNECTION,
            make,
        )),
        ..Default::default()
    };
    let registry = Arc::new(Registry::new(client, options));
    registry.set_strategy(cfg.routing.strategy);

    let mut configured = Vec::with_capacity(cfg.providers.len());
    for (i, entry) in cfg.providers.iter().enumerate() {
        configured.push(entry.to_provider_config(i)?);
    }
    registry.add_missing(configured);
    for name in registry.add_missing(from_env()) {
        tracing::info!(provider = %name, "provider configured from the environment");
    }

    let stored = store.list_providers().await?;
    let secrets = if stored.iter().any(|p| p.encrypted_key.is_some()) {
        match SecretBox::load(&cfg.data_dir) {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::error!(error = %e, "stored provider keys cannot be used");
                None
            }
        }
    } else {
        None
    };
    let mut admin = Vec::with_capacity(stored.len());
    for rec in &stored {
        if registry.config(&rec.name).is_some() {
            tracing::warn!(
                provider = %rec.name,
                "a provider stored by an admin has the same name as one from the config file or environment; that one is used"
            );
            continue;
        }
        admin.push(stored_config(rec, secrets.as_ref()));
    }
    registry.add_missing(admin);
    Ok(registry)
}

fn stored_config(rec: &StoredProvider, secrets: Option<&SecretBox>) -> ProviderConfig {
    let api_key = match (&rec.encrypted_key, secrets) {
        (None, _) => None,
        (Some(sealed), Some(b)) => match b.open(&rec.name, sealed) {
            Ok(k) => Some(k),
            Err(e) => {
                tracing::error!(provider = %rec.name, error = %e, "stored provider key unusable");
                None
            }
        },
        (Some(_), None) => None,
    };
    ProviderConfig {
        kind: rec.kind,
        name: rec.name.clone(),
        base_url: rec.base_url.clone(),
        api_key,
        models: rec.models.clone(),
        enabled: rec.enabled,
        priority: rec.priority,
        allow_user_keys: rec.allow_user_keys,
    }
}

/// Where a provider was defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderSource {
    /// A `[[providers]]` entry in the config file.
    Config,
    /// `OPENAI_API_KEY` / `ANTHROPIC_API_KEY`.
    Env,
    /// A local Ollama or LM Studio found on loopback.
    Detected,
    /// Added by an admin through this API.
    Admin,
}

fn source_of(cfg: &Config, stored: &HashSet<String>, name: &str) -> ProviderSource {
    if cfg.providers.iter().any(|p| p.name == name) {
        ProviderSource::Config
    } else if from_env().iter().any(|p| p.name == name) {
        ProviderSource::Env
    } else if stored.contains(name) {
        ProviderSource::Admin
    } else {
        ProviderSource::Detected
    }
}

/// How many models each provider currently offers.
pub fn model_counts(registry: &Registry) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for m in registry.models() {
        *counts.entry(m.provider).or_insert(0) += 1;
    }
    counts
}

/// One provider as admins see it: the live summary, where it was defined,
/// its model count and (admin-added ones) its stored record.
pub struct ProviderState {
    pub summary: ProviderSummary,
    pub source: ProviderSource,
    pub models_count: usize,
    pub stored: Option<StoredProvider>,
}

/// A provider to add.
pub struct NewProvider {
    pub kind: ProviderKind,
    pub name: String,
    pub base_url: String,
    pub api_key: Option<String>,
    pub models: Option<Vec<String>>,
    pub enabled: Option<bool>,
    /// Default 0.
    pub priority: Option<i32>,
    /// Default true.
    pub allow_user_keys: Option<bool>,
}

/// A change to a provider; `None` keeps a field.
pub struct ProviderChange {
    pub base_url: Option<String>,
    /// The empty string removes the key.
    pub api_key: Option<String>,
    /// `Some(None)` (or an empty list) offers every model again.
    pub models: Option<Option<Vec<String>>>,
    pub enabled: Option<bool>,
    pub priority: Option<i32>,
    /// Like `enabled`, any provider's: kept with an admin-added one, until
    /// restart for the others.
    pub allow_user_keys: Option<bool>,
}

fn check_priority(p: Option<i32>) -> Result<Option<i32>, AdminError> {
    match p {
        Some(v) if !crate::config::PRIORITY_RANGE.contains(&v) => {
            Err(AdminError::Validation(format!(
                "priority must be between {} and {}, got {v}",
                crate::config::PRIORITY_RANGE.start(),
                crate::config::PRIORITY_RANGE.end()
            )))
        }
        other => Ok(other),
    }
}

fn check_name(name: &str) -> Result<(), AdminError> {
    validate_provider_name(name).map_err(AdminError::Validation)
}

fn check_url(url: &str) -> Result<String, AdminError> {
    validate_provider_url(url).map_err(AdminError::Validation)?;
    Ok(url.trim().trim_end_matches('/').to_string())
}

fn check_models(models: Option<Vec<String>>) -> Result<Option<Vec<String>>, AdminError> {
    match models {
        None => Ok(None),
        Some(list) if list.is_empty() => Ok(None),
        Some(list) => {
            let list: Vec<String> = list.into_iter().map(|m| m.trim().to_string()).collect();
            validate_model_list(&list).map_err(AdminError::Validation)?;
            Ok(Some(list))
        }
    }
}

/// A key as typed: surrounding whitespace dropped; `None` for empty.
fn check_key(key: Option<String>) -> Result<Option<String>, AdminError> {
    let Some(k) = key else { return Ok(None) };
    let k = k.trim();
    if k.is_empty() {
        return Ok(None);
    }
    if k.len() > MAX_KEY_LEN || !k.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AdminError::Validation(format!(
            "api_key must be at most {MAX_KEY_LEN} printable ASCII characters without spaces"
        )));
    }
    Ok(Some(k.to_string()))
}

/// What may not be changed through the API, and where to change it instead.
fn managed_elsewhere(name: &str, source: ProviderSource, action: &str) -> AdminError {
    let place = match source {
        ProviderSource::Config => {
            "is defined in the server's config file ([[providers]]); change it there and restart"
        }
        ProviderSource::Env => {
            "comes from the server's environment (OPENAI_API_KEY / ANTHROPIC_API_KEY); change it there and restart"
        }
        ProviderSource::Detected => {
            "was found automatically on this machine (it is found again while it runs)"
        }
        ProviderSource::Admin => "was added by an admin",
    };
    AdminError::Validation(format!(
        "provider \"{name}\" cannot be {action} here: it {place}. It can only be enabled or disabled through the API, until the next restart."
    ))
}

/// The provider admin service over one server's store and registry. Admin
/// changes run one at a time (on the registry's admin lock), so the store
/// and the live registry never disagree about a name.
pub struct ProviderAdmin<'a> {
    pub store: &'a SharedStore,
    pub registry: &'a Arc<Registry>,
    /// The start-up settings: the config file's providers and the data
    /// directory (where the provider key lives).
    pub cfg: &'a Config,
}

impl ProviderAdmin<'_> {
    /// Re-reads model lists in the background after a change, so the model
    /// list reflects it within moments without the change waiting on a
    /// network.
    fn refresh_soon(&self) {
        let registry = self.registry.clone();
        tokio::spawn(async move { registry.refresh().await });
    }

    async fn stored_names(&self) -> Result<HashSet<String>, StoreError> {
        Ok(self
            .store
            .list_providers()
            .await?
            .into_iter()
            .map(|p| p.name)
            .collect())
    }

    /// Every provider with its source and stored record.
    pub async fn list(&self) -> Result<Vec<ProviderState>, AdminError> {
        let mut stored: HashMap<String, StoredProvider> = self
            .store
            .list_providers()
            .await?
            .into_iter()
            .map(|p| (p.name.clone(), p))
            .collect();
        let names: HashSet<String> = stored.keys().cloned().collect();
        let counts = model_counts(self.registry);
        Ok(self
            .registry
            .list()
            .into_iter()
            .map(|p| {
                let source = source_of(self.cfg, &names, &p.name);
                let rec = stored
                    .remove(&p.name)
                    .filter(|_| source == ProviderSource::Admin);
                ProviderState {
                    models_count: counts.get(&p.name).copied().unwrap_or(0),
                    summary: p,
                    source,
                    stored: rec,
                }
            })
            .collect())
    }

    /// One provider as it is now.
    pub async fn view_of(&self, name: &str) -> Result<ProviderState, AdminError> {
        let summary = self
            .registry
            .list()
            .into_iter()
            .find(|p| p.name == name)
            .ok_or(AdminError::NotFound)?;
        let stored = self.store.get_provider(name).await?;
        let names: HashSet<String> = stored.iter().map(|s| s.name.clone()).collect();
        let source = source_of(self.cfg, &names, name);
        let counts = model_counts(self.registry);
        Ok(ProviderState {
            models_count: counts.get(name).copied().unwrap_or(0),
            summary,
            source,
            stored: stored.filter(|_| source == ProviderSource::Admin),
        })
    }

    /// Adds a provider: the key is stored sealed; the model list is fetched
    /// in the background.
    pub async fn create(&self, req: NewProvider) -> Result<ProviderState, AdminError> {
        check_name(&req.name)?;
        let base_url = check_url(&req.base_url)?;
        let models = check_models(req.models)?;
        let key = check_key(req.api_key)?;
        let priority = check_priority(req.priority)?.unwrap_or(0);
        let name = req.name;

        let _guard = self.registry.admin_changes().await;
        if self.registry.config(&name).is_some() {
            return Err(AdminError::Conflict(format!(
                "a provider named \"{name}\" already exists"
            )));
        }
        let now = crate::clock::now();
        let config = ProviderConfig {
            kind: req.kind,
            name: name.clone(),
            base_url: base_url.clone(),
            api_key: key.clone(),
            models: models.clone(),
            enabled: req.enabled.unwrap_or(true),
            priority,
            allow_user_keys: req.allow_user_keys.unwrap_or(true),
        };
        config
            .validate()
            .map_err(|e| AdminError::Validation(e.to_string()))?;
        let data_dir = self.cfg.data_dir.clone();
        let mut rec = StoredProvider {
            name: name.clone(),
            kind: req.kind,
            base_url,
            models,
            enabled: config.enabled,
            encrypted_key: None,
            created_at: now,
            updated_at: now,
            priority,
            allow_user_keys: config.allow_user_keys,
        };
        if let Some(k) = &key {
            let sealer = SecretBox::load_or_create(&data_dir)
                .map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
            rec.encrypted_key = Some(sealer.seal(&rec.name, k));
        }
        self.store.create_provider(&rec).await?;
        if let Err(e) = self.registry.add(config) {
            // Taken meanwhile (a detected server); keep store and registry alike.
            let n = name.clone();
            let _ = self.store.delete_provider(&n).await;
            return Err(match e {
                RegistryError::DuplicateName(_) => AdminError::Conflict(e.to_string()),
                other => AdminError::Validation(other.to_string()),
            });
        }
        tracing::info!(provider = %name, "provider added by an admin");
        self.refresh_soon();
        self.view_of(&name).await
    }

    /// Changes a provider. Admin-added providers accept every field; those
    /// from the config file, the environment or detection accept only
    /// `enabled` (kept in memory until the next restart).
    pub async fn update(
        &self,
        name: &str,
        req: ProviderChange,
    ) -> Result<ProviderState, AdminError> {
        let _guard = self.registry.admin_changes().await;
        let current = self.registry.config(name).ok_or(AdminError::NotFound)?;
        let stored = self.store.get_provider(name).await?;
        let names: HashSet<String> = stored.iter().map(|s| s.name.clone()).collect();
        let source = source_of(self.cfg, &names, name);
        let settings_change = req.base_url.is_some()
            || req.api_key.is_some()
            || req.models.is_some()
            || req.priority.is_some();

        if source != ProviderSource::Admin || !settings_change {
            if settings_change {
                return Err(managed_elsewhere(name, source, "edited"));
            }
            if source == ProviderSource::Admin
                && (req.enabled.is_some() || req.allow_user_keys.is_some())
                && let Some(mut rec) = stored
            {
                rec.enabled = req.enabled.unwrap_or(rec.enabled);
                rec.allow_user_keys = req.allow_user_keys.unwrap_or(rec.allow_user_keys);
                rec.updated_at = crate::clock::now();
                self.store.put_provider(&rec).await?;
            }
            if let Some(allow) = req.allow_user_keys {
                self.registry
                    .set_allow_user_keys(name, allow)
                    .map_err(|_| AdminError::NotFound)?;
                tracing::info!(provider = %name, allow, "users' own keys for a provider changed by an admin");
            }
            if let Some(enabled) = req.enabled {
                self.registry
                    .set_enabled(name, enabled)
                    .map_err(|_| AdminError::NotFound)?;
                if enabled && !current.enabled {
                    self.refresh_soon();
                }
                tracing::info!(provider = %name, enabled, "provider enabled state changed by an admin");
            }
            return self.view_of(name).await;
        }

        let Some(mut rec) = stored else {
            return Err(AdminError::NotFound);
        };
        let base_url = req.base_url.as_deref().map(check_url).transpose()?;
        let models = req.models.map(check_models).transpose()?;
        let new_key = req.api_key.map(|k| check_key(Some(k))).transpose()?;
        if let Some(p) = check_priority(req.priority)? {
            rec.priority = p;
        }

        if let Some(u) = base_url {
            rec.base_url = u;
        }
        if let Some(m) = models {
            rec.models = m;
        }
        if let Some(e) = req.enabled {
            rec.enabled = e;
        }
        if let Some(a) = req.allow_user_keys {
            rec.allow_user_keys = a;
        }
        rec.updated_at = crate::clock::now();
        let api_key = match &new_key {
            None => current.api_key.clone(),
            Some(k) => k.clone(),
        };
        let config = ProviderConfig {
            kind: rec.kind,
            name: rec.name.clone(),
            base_url: rec.base_url.clone(),
            api_key,
            models: rec.models.clone(),
            enabled: rec.enabled,
            priority: rec.priority,
            allow_user_keys: rec.allow_user_keys,
        };
        config
            .validate()
            .map_err(|e| AdminError::Validation(e.to_string()))?;
        let data_dir = self.cfg.data_dir.clone();
        match new_key {
            None => {}
            Some(None) => rec.encrypted_key = None,
            Some(Some(k)) => {
                let sealer = SecretBox::load_or_create(&data_dir)
                    .map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
                rec.encrypted_key = Some(sealer.seal(&rec.name, &k));
            }
        }
        self.store.put_provider(&rec).await?;
        self.registry
            .upsert(config)
            .map_err(|e| AdminError::Validation(e.to_string()))?;
        tracing::info!(provider = %name, "provider changed by an admin");
        self.refresh_soon();
        self.view_of(name).await
    }

    /// Deletes an admin-added provider.
    pub async fn delete(&self, name: &str) -> Result<(), AdminError> {
        let _guard = self.registry.admin_changes().await;
        if self.registry.config(name).is_none() {
            return Err(AdminError::NotFound);
        }
        let source = source_of(self.cfg, &self.stored_names().await?, name);
        if source != ProviderSource::Admin {
            return Err(managed_elsewhere(name, source, "deleted"));
        }
        let n = name.to_string();
        match self.store.delete_provider(&n).await {
            Ok(()) | Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        self.registry.remove(name);
        tracing::info!(provider = %name, "provider deleted by an admin");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_models_are_checked() {
        assert_eq!(check_key(Some("  ".into())).unwrap(), None);
        assert_eq!(
            check_key(Some(" sk-1 ".into())).unwrap().as_deref(),
            Some("sk-1")
        );
        assert!(check_key(Some("sk 1".into())).is_err());
        assert!(check_key(Some("sk-\u{e9}".into())).is_err());
        assert_eq!(check_models(Some(vec![])).unwrap(), None);
        assert!(check_models(Some(vec!["a".into(), "a".into()])).is_err());
        assert!(check_url("ftp://x").is_err());
        assert!(check_url("http://user:pw@x/v1").is_err());
        assert_eq!(check_url("http://x:1/v1/").unwrap(), "http://x:1/v1");
        assert!(check_name("ok-name_1.2").is_ok());
        assert!(check_name("bad name").is_err());
        assert!(check_name(&"x".repeat(51)).is_err());
    }
}
