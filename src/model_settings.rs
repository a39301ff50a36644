//! Admin → Models: what admins set per model (hidden from the chat's picker,
//! display name, description, price), the server-wide default model, the
//! model list as the picker and the admin page see it, and the "Test"
//! buttons (a tiny real request to a provider or a model).
//!
//! Settings are few and read on every model list and every charged answer,
//! so they are kept in memory ([`ModelSettings`]), loaded at start-up and
//! replaced on each change after the store has it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
use utoipa::ToSchema;

use crate::limits::usage::Prices;
use crate::providers::capabilities::{Capabilities, capabilities};
use crate::providers::registry::{ProviderConfig, Registry};
use crate::providers::routing::CatalogModel;
use crate::providers::{
    ChatEvent, ChatMessage, ChatRequest, EmbeddingRequest, Provider, ProviderError,
};
use crate::store::model_settings::{ModelPrice, ModelSetting};
use crate::store::{SharedStore, StoreError};

/// How long a "Test" waits for its answer.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest display name and description.
pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_DESCRIPTION_CHARS: usize = 500;
/// Highest price per million tokens accepted (a typo guard).
pub const MAX_PRICE: f64 = 100_000.0;

#[derive(Debug, thiserror::Error)]
pub enum ModelSettingsError {
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

type Result<T> = std::result::Result<T, ModelSettingsError>;

/// The settings in memory.
#[derive(Debug, Default)]
pub struct ModelSettings {
    by_model: RwLock<HashMap<String, ModelSetting>>,
    default_model: RwLock<Option<String>>,
}

impl ModelSettings {
    /// Loads every setting and hands the prices to `prices`.
    pub async fn load(store: &SharedStore, prices: &Prices) -> Result<Arc<ModelSettings>> {
        let s = Arc::new(ModelSettings::default());
        let list = store.list_model_settings().await?;
        *s.default_model.write().expect("lock not poisoned") = store.default_model().await?;
        s.replace(list, prices);
        Ok(s)
    }

    fn replace(&self, list: Vec<ModelSetting>, prices: &Prices) {
        prices.set_overrides(list.iter().filter_map(|s| {
            s.price
                .map(|p| (s.model.clone(), p.input_per_million, p.output_per_million))
        }));
        *self.by_model.write().expect("lock not poisoned") =
            list.into_iter().map(|s| (s.model.clone(), s)).collect();
    }

    pub fn get(&self, model: &str) -> Option<ModelSetting> {
        self.by_model
            .read()
            .expect("lock not poisoned")
            .get(model)
            .cloned()
    }

    /// The default model admins chose, if any.
    pub fn default_model(&self) -> Option<String> {
        self.default_model
            .read()
            .expect("lock not poisoned")
            .clone()
    }
}

/// A change to one model's settings; `None` keeps a field, `Some(None)`
/// clears it.
#[derive(Debug, Default)]
pub struct SettingChange {
    pub hidden: Option<bool>,
    pub display_name: Option<Option<String>>,
    pub description: Option<Option<String>>,
    pub price: Option<Option<ModelPrice>>,
    /// Whether the model reads images; `Some(None)` goes back to the table.
    pub vision: Option<Option<bool>>,
}

fn clean_text(v: Option<String>, field: &str, max: usize) -> Result<Option<String>> {
    let Some(v) = v else { return Ok(None) };
    let v = v.trim().to_string();
    if v.is_empty() {
        return Ok(None);
    }
    if v.chars().count() > max || v.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ModelSettingsError::Validation(format!(
            "{field} must be at most {max} characters without control characters"
        )));
    }
    Ok(Some(v))
}

fn check_price(p: ModelPrice) -> Result<ModelPrice> {
    for (name, v) in [
        ("input_per_million", p.input_per_million),
        ("output_per_million", p.output_per_million),
    ] {
        if !v.is_finite() || !(0.0..=MAX_PRICE).contains(&v) {
            return Err(ModelSettingsError::Validation(format!(
                "price.{name} must be a number from 0 to {MAX_PRICE}"
            )));
        }
    }
    Ok(p)
}

/// One model of one provider as the admin page shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AdminModel {
    pub id: String,
    pub provider: String,
    /// The name the provider gives it.
    pub provider_display_name: String,
    /// The admin's display name, else the provider's.
    pub display_name: String,
    pub description: Option<String>,
    pub hidden: bool,
    /// This is the server-wide default model.
    pub default: bool,
    pub capabilities: Capabilities,
    /// Offered in the chat's picker: a chat model, not hidden.
    pub in_picker: bool,
    /// Every provider serving it.
    pub providers: Vec<String>,
    pub reachable: bool,
    pub cooling_down: bool,
    /// The admin-set price; null uses the `[[prices]]` table.
    #[schema(value_type = Option<Object>)]
    pub price_override: Option<ModelPrice>,
    /// The price charged now (override, else table), per million tokens;
    /// null when the model is unpriced.
    #[schema(value_type = Option<Object>)]
    pub price: Option<ModelPrice>,
}

/// Whether `model` (as served by `provider`) reads images: the admin's
/// setting, else the table of known models (see `providers::capabilities`).
pub fn reads_images(
    settings: &ModelSettings,
    registry: &Registry,
    model: &str,
    provider: &str,
) -> bool {
    if let Some(v) = settings.get(model).and_then(|s| s.vision) {
        return v;
    }
    let kind = registry
        .config(provider)
        .map_or(crate::providers::ProviderKind::Openai, |p| p.kind);
    let info = registry
        .models()
        .into_iter()
        .find(|m| m.id == model && m.provider == provider);
    match info {
        Some(m) => capabilities(&m.id, kind, m.kind, m.context_window, m.max_output_tokens).vision,
        None => {
            capabilities(
                model,
                kind,
                crate::providers::model_kind_from_id(model),
                None,
                None,
            )
            .vision
        }
    }
}

/// The model service over one server's store, registry, prices and settings.
pub struct ModelAdmin<'a> {
    pub store: &'a SharedStore,
    pub registry: &'a Registry,
    pub prices: &'a Prices,
    pub settings: &'a ModelSettings,
}

impl ModelAdmin<'_> {
    /// Whether `model` (as served by `provider`) reads images.
    pub fn vision(&self, model: &str, provider: &str) -> bool {
        reads_images(self.settings, self.registry, model, provider)
    }

    /// The capabilities of one catalog entry.
    fn caps_of(&self, c: &CatalogModel) -> Capabilities {
        let kind = self
            .registry
            .config(&c.model.provider)
            .map_or(crate::providers::ProviderKind::Openai, |p| p.kind);
        capabilities(
            &c.model.id,
            kind,
            c.model.kind,
            c.model.context_window,
            c.model.max_output_tokens,
        )
    }

    /// The catalog with capabilities and settings; for the picker, only
    /// chat models that are not hidden.
    pub fn catalog(
        &self,
        picker_only: bool,
    ) -> Vec<(CatalogModel, Capabilities, Option<ModelSetting>)> {
        self.registry
            .catalog()
            .into_iter()
            .map(|c| {
                let mut caps = self.caps_of(&c);
                let s = self.settings.get(&c.model.id);
                if let Some(v) = s.as_ref().and_then(|s| s.vision) {
                    caps.vision = v;
                }
                (c, caps, s)
            })
            .filter(|(_, caps, s)| {
                !picker_only || (caps.chat() && !s.as_ref().is_some_and(|s| s.hidden))
            })
            .collect()
    }

    /// Every model of every enabled provider, for admins.
    pub fn list(&self) -> Vec<AdminModel> {
        let default = self.settings.default_model();
        self.catalog(false)
            .into_iter()
            .map(|(c, caps, s)| {
                let s = s.unwrap_or_else(|| ModelSetting::unset(&c.model.id));
                let price = self
                    .prices
                    .effective(&c.model.provider, &c.model.id)
                    .map(|p| ModelPrice {
                        input_per_million: p.input_per_million,
                        output_per_million: p.output_per_million,
                    });
                AdminModel {
                    default: default.as_deref() == Some(c.model.id.as_str()),
                    in_picker: caps.chat() && !s.hidden,
                    display_name: s
                        .display_name
                        .clone()
                        .unwrap_or_else(|| c.model.display_name.clone()),
                    provider_display_name: c.model.display_name,
                    id: c.model.id,
                    provider: c.model.provider,
                    description: s.description,
                    hidden: s.hidden,
                    capabilities: caps,
                    providers: c.providers,
                    reachable: c.reachable,
                    cooling_down: c.cooling_down,
                    price_override: s.price,
                    price,
                }
            })
            .collect()
    }

    fn known(&self, model: &str) -> Result<()> {
        if self.registry.models().iter().any(|m| m.id == model) {
            Ok(())
        } else {
            Err(ModelSettingsError::NotFound(format!(
                "no provider offers a model \"{model}\""
            )))
        }
    }

    /// Changes one model's settings; the model must be offered now.
    pub async fn update(&self, model: &str, change: SettingChange) -> Result<ModelSetting> {
        self.known(model)?;
        let mut s = self
            .settings
            .get(model)
            .unwrap_or_else(|| ModelSetting::unset(model));
        if let Some(h) = change.hidden {
            s.hidden = h;
        }
        if let Some(n) = change.display_name {
            s.display_name = clean_text(n, "display_name", MAX_NAME_CHARS)?;
        }
        if let Some(d) = change.description {
            s.description = clean_text(d, "description", MAX_DESCRIPTION_CHARS)?;
        }
        if let Some(p) = change.price {
            s.price = p.map(check_price).transpose()?;
        }
        if let Some(v) = change.vision {
            s.vision = v;
        }
        s.updated_at = crate::clock::now();
        self.store.put_model_setting(&s).await?;
        let mut list: Vec<ModelSetting> = self
            .settings
            .by_model
            .read()
            .expect("lock not poisoned")
            .values()
            .filter(|x| x.model != s.model)
            .cloned()
            .collect();
        if !s.is_default() {
            list.push(s.clone());
        }
        self.settings.replace(list, self.prices);
        tracing::info!(model = %model, "model settings changed by an admin");
        Ok(s)
    }

    /// Sets (or with None removes) the server-wide default model. It must
    /// be a chat model offered now.
    pub async fn set_default(&self, model: Option<String>) -> Result<()> {
        let model = model
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty());
        if let Some(m) = &model {
            let ok = self
                .catalog(false)
                .iter()
                .any(|(c, caps, _)| &c.model.id == m && caps.chat());
            if !ok {
                return Err(ModelSettingsError::Validation(format!(
                    "\"{m}\" is not a chat model any provider offers now"
                )));
            }
        }
        self.store.set_default_model(model.as_deref()).await?;
        *self
            .settings
            .default_model
            .write()
            .expect("lock not poisoned") = model;
        Ok(())
    }

    /// Asks a registered provider for its model list.
    pub async fn test_provider(&self, name: &str) -> Result<TestResult> {
        let p = self
            .registry
            .get(name)
            .ok_or_else(|| ModelSettingsError::NotFound("provider not found".into()))?;
        Ok(test_models_list(name, p).await)
    }

    /// A one-token answer from `model` (an embedding of one word for an
    /// embedding model), from `provider` or else the first provider
    /// serving it.
    pub async fn test_model(&self, model: &str, provider: Option<&str>) -> Result<TestResult> {
        let entry = self
            .catalog(false)
            .into_iter()
            .find(|(c, _, _)| c.model.id == model && provider.is_none_or(|p| p == c.model.provider))
            .ok_or_else(|| {
                ModelSettingsError::NotFound(match provider {
                    Some(p) => format!("provider \"{p}\" does not offer a model \"{model}\""),
                    None => format!("no provider offers a model \"{model}\""),
                })
            })?;
        let (c, caps, _) = entry;
        let name = c.model.provider.clone();
        let p = self
            .registry
            .resolve_model_in(&name, model)
            .ok_or_else(|| ModelSettingsError::NotFound("provider not found".into()))?;
        let started = Instant::now();
        use crate::providers::capabilities::ModelUse;
        let outcome = match caps.model_use {
            ModelUse::Chat => tokio::time::timeout(TEST_TIMEOUT, one_token(p, model)).await,
            ModelUse::Embedding => {
                let req = EmbeddingRequest {
                    model: model.to_string(),
                    input: vec!["test".to_string()],
                    ..Default::default()
                };
                tokio::time::timeout(TEST_TIMEOUT, async move {
                    p.embed(req).await.map(|e| {
                        let dims = e.vectors.first().map_or(0, Vec::len);
                        format!("returned an embedding of {dims} dimensions")
                    })
                })
                .await
            }
            ModelUse::Image | ModelUse::Other => {
                return Err(ModelSettingsError::Validation(format!(
                    "\"{model}\" is not a chat or embedding model; only those can be tested here"
                )));
            }
        };
        let ms = started.elapsed().as_millis() as u64;
        Ok(match outcome {
            Ok(Ok(what)) => {
                TestResult::ok(format!("\"{model}\" on \"{name}\" {what} in {ms} ms."), ms)
            }
            Ok(Err(e)) => TestResult::failed(
                format!("\"{model}\" on \"{name}\" failed: {e}"),
                e.code(),
                ms,
            ),
            Err(_) => TestResult::timed_out(&format!("\"{model}\" on \"{name}\""), ms),
        })
    }

    /// Tests a provider that is not saved yet.
    pub async fn test_unsaved(&self, config: &ProviderConfig) -> TestResult {
        let p = self.registry.build_unregistered(config);
        test_models_list(&config.name, p).await
    }
}

/// Starts an answer of at most one token and reads it to its end.
async fn one_token(
    p: Arc<dyn Provider>,
    model: &str,
) -> std::result::Result<String, ProviderError> {
    let mut req = ChatRequest::new(model, vec![ChatMessage::user("Say OK.")]);
    req.max_tokens = Some(1);
    let mut stream = p.stream(req).await?;
    while let Some(ev) = stream.next().await {
        if let ChatEvent::Done { .. } = ev? {
            break;
        }
    }
    Ok("answered".to_string())
}

async fn test_models_list(name: &str, p: Arc<dyn Provider>) -> TestResult {
    let started = Instant::now();
    let r = tokio::time::timeout(TEST_TIMEOUT, p.models()).await;
    let ms = started.elapsed().as_millis() as u64;
    match r {
        Ok(Ok(list)) => TestResult::ok(
            format!(
                "Connected to \"{name}\": it lists {} model{} ({ms} ms).",
                list.len(),
                if list.len() == 1 { "" } else { "s" }
            ),
            ms,
        ),
        Ok(Err(e)) => TestResult::failed(format!("Could not use \"{name}\": {e}"), e.code(), ms),
        Err(_) => TestResult::timed_out(&format!("\"{name}\""), ms),
    }
}

/// What a "Test" found, in one sentence.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TestResult {
    pub ok: bool,
    /// A sentence to show as it is.
    pub message: String,
    /// The error's stable code (PROVIDER_UNREACHABLE, PROVIDER_TIMEOUT,
    /// PROVIDER_ERROR, RATE_LIMITED, MODEL_NOT_FOUND, …) when it failed.
    pub code: Option<String>,
    pub latency_ms: u64,
}

impl TestResult {
    fn ok(message: String, latency_ms: u64) -> Self {
        TestResult {
            ok: true,
            message,
            code: None,
            latency_ms,
        }
    }
    fn failed(message: String, code: &str, latency_ms: u64) -> Self {
        TestResult {
            ok: false,
            message,
            code: Some(code.to_string()),
            latency_ms,
        }
    }
    fn timed_out(what: &str, latency_ms: u64) -> Self {
        TestResult::failed(
            format!("{what} did not answer within {} s.", TEST_TIMEOUT.as_secs()),
            "PROVIDER_TIMEOUT",
            latency_ms,
        )
    }
}
