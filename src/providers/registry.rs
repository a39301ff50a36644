//! The set of named providers the server talks to: built from config entries,
//! the environment (`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`) and local servers
//! found on loopback (Ollama, LM Studio); changed at runtime by admins. It
//! caches each provider's model list and reachability so `/api/models` and
//! `/api/providers` never wait on an upstream.

use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{
    AnthropicProvider, ModelInfo, ModelKind, OllamaProvider, OpenAiProvider, Provider,
    ProviderError, ProviderKind, ProviderOptions,
};

pub const OPENAI_DEFAULT_BASE: &str = "https://api.openai.com/v1";
pub const ANTHROPIC_DEFAULT_BASE: &str = "https://api.anthropic.com";
pub const OLLAMA_LOCAL_BASE: &str = "http://127.0.0.1:11434";
pub const LMSTUDIO_LOCAL_BASE: &str = "http://127.0.0.1:1234/v1";

/// One provider entry, as in `[[providers]]` of the config file.
///
/// `api_key` is never serialized: whatever writes a config somewhere (an API
/// answer, the store) must handle the key on purpose — the store encrypts it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    pub name: String,
    pub base_url: String,
    #[serde(default, skip_serializing)]
    pub api_key: Option<String>,
    /// Allowlist: when set, only these models are offered and routed.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Order among the providers serving the same model: higher first
    /// (ties in registration order). Both routing strategies use it.
    #[serde(default)]
    pub priority: i32,
    /// Users may send their own key to this provider (with the server's
    /// `allow_user_keys` on). Default true: a user's key replaces the
    /// server's for that user's requests only; an admin turns it off for a
    /// provider where a user's key makes no sense (a local model server,
    /// a company endpoint).
    #[serde(default = "enabled_by_default")]
    pub allow_user_keys: bool,
}

fn enabled_by_default() -> bool {
    true
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("models", &self.models)
            .field("enabled", &self.enabled)
            .field("priority", &self.priority)
            .field("allow_user_keys", &self.allow_user_keys)
            .finish()
    }
}

impl ProviderConfig {
    pub fn new(kind: ProviderKind, name: impl Into<String>, base_url: impl Into<String>) -> Self {
        ProviderConfig {
            kind,
            name: name.into(),
            base_url: base_url.into(),
            api_key: None,
            models: None,
            enabled: true,
            priority: 0,
            allow_user_keys: true,
        }
    }

    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    pub fn with_models(mut self, models: Vec<String>) -> Self {
        self.models = Some(models);
        self
    }

    /// Checks what can be checked without a network: a usable name and an
    /// absolute http(s) base URL.
    pub fn validate(&self) -> Result<(), RegistryError> {
        let name = self.name.trim();
        if name.is_empty() || name.len() > 64 || name != self.name {
            return Err(RegistryError::Invalid(format!(
                "provider name \"{}\" must be 1 to 64 characters without surrounding spaces",
                self.name
            )));
        }
        let url = reqwest::Url::parse(&self.base_url).map_err(|e| {
            RegistryError::Invalid(format!(
                "provider \"{}\": base_url is not a valid URL ({e})",
                self.name
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(RegistryError::Invalid(format!(
                "provider \"{}\": base_url must be an http:// or https:// URL",
                self.name
            )));
        }
        Ok(())
    }

    pub(super) fn allows(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|list| list.iter().any(|m| m == model))
    }
}

/// Builds the provider a config describes.
pub fn build_provider(
    config: &ProviderConfig,
    client: reqwest::Client,
    options: ProviderOptions,
) -> Arc<dyn Provider> {
    let key = config.api_key.clone();
    match config.kind {
        ProviderKind::Openai => Arc::new(
            OpenAiProvider::new(&config.name, &config.base_url, key, client).with_options(options),
        ),
        ProviderKind::Anthropic => Arc::new(
            AnthropicProvider::new(&config.name, &config.base_url, key, client)
                .with_options(options),
        ),
        ProviderKind::Ollama => Arc::new(
            OllamaProvider::new(&config.name, &config.base_url, key, client).with_options(options),
        ),
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProviderStatus {
    pub reachable: bool,
    /// Human message of the last failure; cleared by the next success.
    pub last_error: Option<String>,
    /// Stable code of the last failure (`PROVIDER_UNREACHABLE`, …).
    pub last_error_code: Option<&'static str>,
    /// `None` until the first check.
    #[serde(with = "time::serde::rfc3339::option")]
    pub checked_at: Option<OffsetDateTime>,
    /// Skipped by routing after repeated failures (unless it is a model's
    /// only provider) until `cooling_until`; a success ends it.
    pub cooling_down: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub cooling_until: Option<OffsetDateTime>,
    /// Failed requests in a row (0 after a success).
    pub consecutive_failures: u32,
    /// Answers streaming from this provider now.
    pub in_flight: usize,
}

/// One provider as listed for `/api/providers` and the admin screens. Holds
/// no key; `base_url` is for admins only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderSummary {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    pub enabled: bool,
    pub has_api_key: bool,
    pub models: Option<Vec<String>>,
    pub priority: i32,
    pub allow_user_keys: bool,
    pub status: ProviderStatus,
}

/// One entry of the merged model list (`/api/models`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistryModel {
    pub id: String,
    pub provider: String,
    pub display_name: String,
    pub context_window: Option<u32>,
    /// Longest answer in tokens, when the provider's table knows it.
    pub max_output_tokens: Option<u32>,
    /// Chat or embeddings.
    pub kind: ModelKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("a provider named \"{0}\" already exists")]
    DuplicateName(String),
    #[error("no provider named \"{0}\"")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
}

pub(super) struct Entry {
    pub(super) config: ProviderConfig,
    pub(super) provider: Arc<dyn Provider>,
    pub(super) status: ProviderStatus,
    pub(super) models: Vec<ModelInfo>,
    /// Routing's view of this provider's health and load.
    pub(super) health: super::routing::Health,
}

/// Named providers in insertion order; the first provider offering a model
/// wins when a model id is resolved. Cheap to share as `Arc<Registry>`.
pub struct Registry {
    client: reqwest::Client,
    options: ProviderOptions,
    entries: RwLock<Vec<Entry>>,
    /// How a model served by several providers picks one.
    strategy: RwLock<super::routing::Strategy>,
    /// Held by `provider_admin` while it changes the stored records and
    /// this registry together.
    admin: tokio::sync::Mutex<()>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.read().iter().map(|e| e.config.name.clone()).collect();
        f.debug_struct("Registry")
            .field("providers", &names)
            .finish()
    }
}

impl Registry {
    /// `options` apply to every provider this registry builds.
    pub fn new(client: reqwest::Client, options: ProviderOptions) -> Self {
        Registry {
            client,
            options,
            entries: RwLock::new(Vec::new()),
            strategy: RwLock::new(super::routing::Strategy::default()),
            admin: tokio::sync::Mutex::const_new(()),
        }
    }

    // No lock is ever held across an await, so a poisoned lock can only come
    // from a panic inside these short sections; the data is still consistent.
    pub(super) fn read(&self) -> RwLockReadGuard<'_, Vec<Entry>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn strategy(&self) -> super::routing::Strategy {
        *self.strategy.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_strategy(&self, strategy: super::routing::Strategy) {
        *self.strategy.write().unwrap_or_else(|e| e.into_inner()) = strategy;
    }

    pub(super) fn write(&self) -> RwLockWriteGuard<'_, Vec<Entry>> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// A provider built from `config` as this registry would build it, but
    /// not added (testing a provider before it is saved).
    pub fn build_unregistered(&self, config: &ProviderConfig) -> Arc<dyn Provider> {
        build_provider(config, self.client.clone(), self.options.clone())
    }

    /// Admin changes run one at a time, so the store and this registry
    /// never disagree about a name.
    pub(crate) async fn admin_changes(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.admin.lock().await
    }

    /// Adds a provider built from `config`. Its models are unknown until the
    /// next [`refresh`](Self::refresh).
    pub fn add(&self, config: ProviderConfig) -> Result<(), RegistryError> {
        config.validate()?;
        let provider = build_provider(&config, self.client.clone(), self.options.clone());
        self.add_with(config, provider)
    }

    /// Adds a provider built elsewhere (a custom implementation, a test double).
    pub fn add_with(
        &self,
        config: ProviderConfig,
        provider: Arc<dyn Provider>,
    ) -> Result<(), RegistryError> {
        let mut entries = self.write();
        if entries.iter().any(|e| e.config.name == config.name) {
            return Err(RegistryError::DuplicateName(config.name));
        }
        entries.push(Entry {
            config,
            provider,
            status: ProviderStatus::default(),
            models: Vec::new(),
            health: Default::default(),
        });
        Ok(())
    }

    /// Adds each config whose name is not taken yet; returns the names added.
    /// For layering: explicit config first, then environment, then detected.
    pub fn add_missing(&self, configs: Vec<ProviderConfig>) -> Vec<String> {
        let mut added = Vec::new();
        for c in configs {
            let name = c.name.clone();
            match self.add(c) {
                Ok(()) => added.push(name),
                Err(RegistryError::DuplicateName(_)) => {}
                Err(e) => tracing::warn!(provider = %name, error = %e, "provider skipped"),
            }
        }
        added
    }

    /// Replaces the provider of the same name (keeping its position) or adds
    /// it. The cached status and models are reset.
    pub fn upsert(&self, config: ProviderConfig) -> Result<(), RegistryError> {
        config.validate()?;
        let provider = build_provider(&config, self.client.clone(), self.options.clone());
        let mut entries = self.write();
        let entry = Entry {
            config,
            provider,
            status: ProviderStatus::default(),
            models: Vec::new(),
            health: Default::default(),
        };
        match entries
            .iter_mut()
            .find(|e| e.config.name == entry.config.name)
        {
            Some(slot) => *slot = entry,
            None => entries.push(entry),
        }
        Ok(())
    }

    pub fn remove(&self, name: &str) -> bool {
        let mut entries = self.write();
        let before = entries.len();
        entries.retain(|e| e.config.name != name);
        entries.len() != before
    }

    pub fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), RegistryError> {
        let mut entries = self.write();
        let entry = entries
            .iter_mut()
            .find(|e| e.config.name == name)
            .ok_or_else(|| RegistryError::NotFound(name.to_string()))?;
        entry.config.enabled = enabled;
        Ok(())
    }

    /// Lets users send their own keys to this provider, or stops it.
    pub fn set_allow_user_keys(&self, name: &str, allow: bool) -> Result<(), RegistryError> {
        let mut entries = self.write();
        let entry = entries
            .iter_mut()
            .find(|e| e.config.name == name)
            .ok_or_else(|| RegistryError::NotFound(name.to_string()))?;
        entry.config.allow_user_keys = allow;
        Ok(())
    }

    pub fn list(&self) -> Vec<ProviderSummary> {
        self.read()
            .iter()
            .map(|e| ProviderSummary {
                name: e.config.name.clone(),
                kind: e.config.kind,
                base_url: e.config.base_url.clone(),
                enabled: e.config.enabled,
                has_api_key: e.config.api_key.is_some(),
                models: e.config.models.clone(),
                priority: e.config.priority,
                allow_user_keys: e.config.allow_user_keys,
                status: e.health.shown(&e.status),
            })
            .collect()
    }

    /// The provider of that name, if it exists and is enabled.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Provider>> {
        self.read()
            .iter()
            .find(|e| e.config.name == name && e.config.enabled)
            .map(|e| e.provider.clone())
    }

    /// The config of that name, enabled or not (key included: admin use only).
    pub fn config(&self, name: &str) -> Option<ProviderConfig> {
        self.read()
            .iter()
            .find(|e| e.config.name == name)
            .map(|e| e.config.clone())
    }

    pub fn status(&self, name: &str) -> Option<ProviderStatus> {
        self.read()
            .iter()
            .find(|e| e.config.name == name)
            .map(|e| e.health.shown(&e.status))
    }

    /// The provider to try first for `model_id` (see [`super::routing`]:
    /// aliases, `<provider>/<model>` pins, priority or least-busy order,
    /// cooling providers last). It offers the model in its allowlist or,
    /// without one, in its last fetched model list.
    pub fn resolve_model(&self, model_id: &str) -> Option<(String, Arc<dyn Provider>)> {
        self.candidates(model_id, false)
            .into_iter()
            .next()
            .map(|c| (c.provider_name, c.provider))
    }

    /// `model_id` on a named provider (a conversation remembers both). Only
    /// the allowlist is checked, so a model the provider did not list (or a
    /// provider that was unreachable at the last refresh) still routes.
    pub fn resolve_model_in(&self, provider: &str, model_id: &str) -> Option<Arc<dyn Provider>> {
        self.read()
            .iter()
            .find(|e| e.config.name == provider && e.config.enabled && e.config.allows(model_id))
            .map(|e| e.provider.clone())
    }

    /// Every model of every enabled provider. With an allowlist, exactly the
    /// allowed models (named from the fetched list when it has them, so they
    /// stay selectable while the provider is briefly down).
    pub fn models(&self) -> Vec<RegistryModel> {
        let entries = self.read();
        let mut out = Vec::new();
        for e in entries.iter().filter(|e| e.config.enabled) {
            let entry_model = |m: &ModelInfo| RegistryModel {
                id: m.id.clone(),
                provider: e.config.name.clone(),
                display_name: m.display_name.clone(),
                context_window: m.context_window,
                max_output_tokens: m.max_output_tokens,
                kind: m.kind,
            };
            match &e.config.models {
                Some(allow) => {
                    for id in allow {
                        match e.models.iter().find(|m| &m.id == id) {
                            Some(m) => out.push(entry_model(m)),
                            None => out.push(RegistryModel {
                                id: id.clone(),
                                provider: e.config.name.clone(),
                                display_name: id.clone(),
                                context_window: None,
                                max_output_tokens: None,
                                kind: super::model_kind_from_id(id),
                            }),
                        }
                    }
                }
                None => out.extend(e.models.iter().map(entry_model)),
            }
        }
        out
    }

    /// Records the outcome of a real request, so a provider that starts
    /// failing shows it before the next periodic refresh. Only the
    /// provider's own faults (see [`super::routing::counts_against`]) move
    /// it towards a cooldown; a success ends one.
    pub fn report(&self, name: &str, outcome: Result<(), &ProviderError>) {
        self.report_as(name, outcome, false);
    }

    /// [`report`](Self::report) for a request made with a user's own key,
    /// whose rate limit is the user's, not the provider's.
    pub(super) fn report_as(&self, name: &str, outcome: Result<(), &ProviderError>, own_key: bool) {
        let mut entries = self.write();
        if let Some(e) = entries.iter_mut().find(|e| e.config.name == name) {
            set_status(&mut e.status, outcome);
            let now = std::time::Instant::now();
            match outcome {
                Ok(()) => e.health.record(true, now),
                Err(err) if super::routing::counts_against(err, own_key) => {
                    e.health.record(false, now)
                }
                Err(_) => {}
            }
        }
    }

    /// Re-queries the model list of every enabled provider, concurrently, and
    /// records reachability. The lock is not held while waiting.
    pub async fn refresh(&self) {
        let targets: Vec<(String, Arc<dyn Provider>)> = self
            .read()
            .iter()
            .filter(|e| e.config.enabled)
            .map(|e| (e.config.name.clone(), e.provider.clone()))
            .collect();
        let results = futures::future::join_all(targets.into_iter().map(|(name, p)| async move {
            let r = p.models().await;
            (name, p, r)
        }))
        .await;
        let mut entries = self.write();
        for (name, provider, result) in results {
            // The entry may have been replaced or removed meanwhile; a stale
            // answer must not overwrite the new provider's state.
            let Some(e) = entries
                .iter_mut()
                .find(|e| e.config.name == name && Arc::ptr_eq(&e.provider, &provider))
            else {
                continue;
            };
            match result {
                Ok(models) => {
                    e.models = models;
                    set_status(&mut e.status, Ok(()));
                }
                Err(err) => {
                    tracing::warn!(provider = %name, code = err.code(), "model list refresh failed");
                    set_status(&mut e.status, Err(&err));
                }
            }
        }
    }

    /// Refreshes at once and then every `every`, until the registry is dropped
    /// elsewhere. With `probe`, local servers started after confab are picked
    /// up too (one that goes away stays listed, as unreachable).
    pub fn spawn_refresh_loop(
        self: &Arc<Self>,
        every: Duration,
        probe: Option<LocalProbe>,
    ) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(registry) = weak.upgrade() else {
                    return;
                };
                if let Some(probe) = &probe {
                    let found = detect_local_with(registry.client(), probe).await;
                    for name in registry.add_missing(found) {
                        tracing::info!(provider = %name, "local provider detected");
                    }
                }
                registry.refresh().await;
            }
        })
    }
}

fn set_status(status: &mut ProviderStatus, outcome: Result<(), &ProviderError>) {
    status.checked_at = Some(OffsetDateTime::now_utc());
    match outcome {
        Ok(()) => {
            status.reachable = true;
            status.last_error = None;
            status.last_error_code = None;
        }
        Err(err) => {
            // Any HTTP answer, even an error, proves the server is there.
            status.reachable = !matches!(
                err,
                ProviderError::Unreachable(_) | ProviderError::Timeout(_)
            );
            status.last_error = Some(err.to_string());
            status.last_error_code = Some(err.code());
        }
    }
}

/// Providers implied by `OPENAI_API_KEY` and `ANTHROPIC_API_KEY`.
pub fn from_env() -> Vec<ProviderConfig> {
    from_env_with(|k| std::env::var(k).ok())
}

/// [`from_env`] with the variables read through `lookup`, so callers and
/// tests need not touch the process environment.
pub fn from_env_with(lookup: impl Fn(&str) -> Option<String>) -> Vec<ProviderConfig> {
    let key = |name: &str| {
        lookup(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let mut out = Vec::new();
    if let Some(k) = key("OPENAI_API_KEY") {
        out.push(
            ProviderConfig::new(ProviderKind::Openai, "openai", OPENAI_DEFAULT_BASE)
                .with_api_key(k),
        );
    }
    if let Some(k) = key("ANTHROPIC_API_KEY") {
        out.push(
            ProviderConfig::new(ProviderKind::Anthropic, "anthropic", ANTHROPIC_DEFAULT_BASE)
                .with_api_key(k),
        );
    }
    out
}

/// Where [`detect_local_with`] looks. The defaults are the ports Ollama and
/// LM Studio listen on out of the box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalProbe {
    /// Ollama server root; probed at `/api/tags`.
    pub ollama_base: String,
    /// LM Studio's OpenAI base including `/v1`; probed at `/models`.
    pub lmstudio_base: String,
    /// Bound on each probe; loopback answers in microseconds or not at all.
    pub timeout: Duration,
}

impl Default for LocalProbe {
    fn default() -> Self {
        LocalProbe {
            ollama_base: OLLAMA_LOCAL_BASE.into(),
            lmstudio_base: LMSTUDIO_LOCAL_BASE.into(),
            timeout: Duration::from_millis(800),
        }
    }
}

/// Local providers answering on their default loopback ports.
pub async fn detect_local(client: &reqwest::Client) -> Vec<ProviderConfig> {
    detect_local_with(client, &LocalProbe::default()).await
}

/// Local providers answering at `probe`'s addresses, named "ollama" and
/// "lmstudio".
pub async fn detect_local_with(
    client: &reqwest::Client,
    probe: &LocalProbe,
) -> Vec<ProviderConfig> {
    let ollama_base = probe.ollama_base.trim_end_matches('/');
    let lmstudio_base = probe.lmstudio_base.trim_end_matches('/');
    let (ollama, lmstudio) = tokio::join!(
        probe_json(
            client,
            format!("{ollama_base}/api/tags"),
            "models",
            probe.timeout
        ),
        probe_json(
            client,
            format!("{lmstudio_base}/models"),
            "data",
            probe.timeout
        ),
    );
    let mut out = Vec::new();
    if ollama {
        out.push(ProviderConfig::new(
            ProviderKind::Ollama,
            "ollama",
            ollama_base,
        ));
    }
    if lmstudio {
        out.push(ProviderConfig::new(
            ProviderKind::Openai,
            "lmstudio",
            lmstudio_base,
        ));
    }
    out
}

/// True when `url` answers 200 with a JSON object holding `field`, which
/// tells the wanted server apart from whatever else may own the port.
async fn probe_json(client: &reqwest::Client, url: String, field: &str, limit: Duration) -> bool {
    let attempt = async {
        let resp = client.get(&url).send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let v: serde_json::Value = resp.json().await.ok()?;
        v.get(field).map(|_| ())
    };
    matches!(tokio::time::timeout(limit, attempt).await, Ok(Some(())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_serialize_hide_the_key() {
        let c = ProviderConfig::new(ProviderKind::Openai, "x", "http://h/v1")
            .with_api_key("sk-secret-1");
        assert!(!format!("{c:?}").contains("sk-secret"));
        assert!(!serde_json::to_string(&c).unwrap().contains("sk-secret"));
    }

    #[test]
    fn config_parses_from_toml_shape() {
        let c: ProviderConfig = serde_json::from_value(serde_json::json!({
            "kind": "openai", "name": "local-vllm", "base_url": "http://127.0.0.1:8000/v1",
            "api_key": "k", "models": ["qwen2.5-7b"]
        }))
        .unwrap();
        assert!(c.enabled);
        assert_eq!(c.models.as_deref(), Some(&["qwen2.5-7b".to_string()][..]));
        assert_eq!(c.api_key.as_deref(), Some("k"));
    }

    #[test]
    fn validation() {
        let ok = ProviderConfig::new(ProviderKind::Ollama, "o", "http://127.0.0.1:11434");
        assert!(ok.validate().is_ok());
        let bad = ProviderConfig::new(ProviderKind::Ollama, "o", "127.0.0.1:11434");
        assert!(bad.validate().is_err());
        let bad = ProviderConfig::new(ProviderKind::Ollama, " ", "http://x");
        assert!(bad.validate().is_err());
        let bad = ProviderConfig::new(ProviderKind::Ollama, "o", "file:///etc/passwd");
        assert!(bad.validate().is_err());
    }

    #[test]
    fn env_providers() {
        let got = from_env_with(|k| match k {
            "OPENAI_API_KEY" => Some("sk-1".into()),
            "ANTHROPIC_API_KEY" => Some("  ".into()),
            _ => None,
        });
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, "openai");
        assert_eq!(got[0].base_url, OPENAI_DEFAULT_BASE);
        assert_eq!(got[0].api_key.as_deref(), Some("sk-1"));
    }
}
