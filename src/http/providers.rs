//! Models and providers: the merged model list and provider health for every
//! signed-in user, and provider management for admins.
//!
//! Providers come from four sources, layered in this order (the first of a
//! name wins): `[[providers]]` in the config file, `OPENAI_API_KEY` /
//! `ANTHROPIC_API_KEY` in the environment, records admins stored through
//! `/api/admin/providers` (keys sealed with `providers::secrets`), and local
//! servers the refresh loop detects. Only admin-stored providers can be
//! edited or deleted here; the others can only be disabled, in memory.
//!
//! Base URLs are admin-only (no SSRF or topology leak through user routes),
//! and no answer ever carries a provider key.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::auth::audit;
use super::{Json, created};
use crate::auth::{Admin, ClientInfo, CurrentUser};
use crate::clock;
use crate::clock::rfc3339;
use crate::config::{Config, validate_model_list, validate_provider_name, validate_provider_url};
use crate::error::{AppError, AppResult};
use crate::providers::registry::{ProviderSummary, Registry, RegistryError, from_env};
use crate::providers::secrets::SecretBox;
use crate::providers::{ProviderConfig, ProviderKind, ProviderOptions, default_client};
use crate::state::AppState;
use crate::store::provider_records::StoredProvider;
use crate::store::{Store, StoreError};

/// How often model lists are re-fetched and local servers looked for.
pub const REFRESH_EVERY: Duration = Duration::from_secs(60);

/// Longest provider key accepted through the API.
const MAX_KEY_LEN: usize = 4096;

/// Admin changes to providers run one at a time, so the store and the live
/// registry never disagree about a name.
static ADMIN_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/models", get(list_models))
        .route("/providers", get(list_providers))
        .route("/admin/providers", get(admin_list).post(admin_create))
        .route(
            "/admin/providers/{name}",
            axum::routing::patch(admin_update).delete(admin_delete),
        )
}

// ---- start-up ---------------------------------------------------------------

/// The registry at start-up: config entries, then the environment, then the
/// providers admins stored (keys decrypted). Local detection and the first
/// model-list refresh happen in the refresh loop `app::serve` starts.
///
/// Fails when a config entry's `api_key_file` cannot be read. A stored key
/// that cannot be decrypted is logged and the provider is added without it,
/// so one damaged record does not keep the server down.
pub fn build_registry(cfg: &Config, store: &Store) -> anyhow::Result<Arc<Registry>> {
    let options = ProviderOptions {
        idle_timeout: Duration::from_secs(cfg.provider_idle_timeout_secs),
        cross_origin_redirects: cfg.provider_cross_origin_redirects,
        ..Default::default()
    };
    let registry = Arc::new(Registry::new(default_client(), options));

    let mut configured = Vec::with_capacity(cfg.providers.len());
    for (i, entry) in cfg.providers.iter().enumerate() {
        configured.push(entry.to_provider_config(i)?);
    }
    registry.add_missing(configured);
    for name in registry.add_missing(from_env()) {
        tracing::info!(provider = %name, "provider configured from the environment");
    }

    let stored = store.list_providers()?;
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
    }
}

/// Re-reads model lists in the background after a change, so `/api/models`
/// reflects it within moments without the admin request waiting on a network.
fn refresh_soon(state: &AppState) {
    let registry = state.providers.clone();
    tokio::spawn(async move { registry.refresh().await });
}

// ---- shared views -----------------------------------------------------------

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

fn stored_names(state: &AppState) -> AppResult<HashSet<String>> {
    Ok(state
        .store
        .list_providers()?
        .into_iter()
        .map(|p| p.name)
        .collect())
}

/// How many models each provider currently offers.
fn model_counts(registry: &Registry) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for m in registry.models() {
        *counts.entry(m.provider).or_insert(0) += 1;
    }
    counts
}

#[derive(Serialize, ToSchema)]
pub struct ModelView {
    /// The id to send as `model`.
    pub id: String,
    /// The name of the provider serving it.
    pub provider: String,
    pub display_name: String,
    /// Tokens, when the provider says.
    pub context_window: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct ModelList {
    pub items: Vec<ModelView>,
    /// The configured `default_model`, or else the first model listed.
    pub default_model: Option<String>,
    /// Whether requests may carry the user's own key in `X-Provider-Key`.
    pub allow_user_keys: bool,
    /// Always null: the whole list is one page.
    pub next_cursor: Option<String>,
}

/// Every model of every enabled provider, from the cached lists (refreshed
/// every minute and after each admin change); never waits on a provider.
#[utoipa::path(get, path = "/api/models", tag = "providers",
    responses((status = 200, body = ModelList), (status = 401, body = crate::error::ErrorBody)))]
pub async fn list_models(
    State(state): State<AppState>,
    _user: CurrentUser,
) -> AppResult<Json<ModelList>> {
    let items: Vec<ModelView> = state
        .providers
        .models()
        .into_iter()
        .map(|m| ModelView {
            id: m.id,
            provider: m.provider,
            display_name: m.display_name,
            context_window: m.context_window,
        })
        .collect();
    let default_model = state
        .settings()
        .default_model
        .clone()
        .or_else(|| items.first().map(|m| m.id.clone()));
    Ok(Json(ModelList {
        items,
        default_model,
        allow_user_keys: state.settings().allow_user_keys,
        next_cursor: None,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct ProviderView {
    pub name: String,
    /// openai | anthropic | ollama
    #[schema(value_type = String, example = "openai")]
    pub kind: ProviderKind,
    /// Whether the provider answered at the last check (false until checked).
    pub reachable: bool,
    /// Why the last check or request failed; null after a success.
    pub last_error: Option<String>,
    /// Models currently offered.
    pub models_count: usize,
    pub enabled: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ProviderList {
    pub items: Vec<ProviderView>,
    pub next_cursor: Option<String>,
}

/// Providers and their health, for any signed-in user. No base URLs.
#[utoipa::path(get, path = "/api/providers", tag = "providers",
    responses((status = 200, body = ProviderList), (status = 401, body = crate::error::ErrorBody)))]
pub async fn list_providers(
    State(state): State<AppState>,
    _user: CurrentUser,
) -> AppResult<Json<ProviderList>> {
    let counts = model_counts(&state.providers);
    let items = state
        .providers
        .list()
        .into_iter()
        .map(|p| ProviderView {
            models_count: counts.get(&p.name).copied().unwrap_or(0),
            name: p.name,
            kind: p.kind,
            reachable: p.status.reachable,
            last_error: p.status.last_error,
            enabled: p.enabled,
        })
        .collect();
    Ok(Json(ProviderList {
        items,
        next_cursor: None,
    }))
}

// ---- admin ------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct StatusView {
    pub reachable: bool,
    pub last_error: Option<String>,
    /// PROVIDER_UNREACHABLE, PROVIDER_TIMEOUT, PROVIDER_ERROR, RATE_LIMITED, MODEL_NOT_FOUND.
    pub last_error_code: Option<String>,
    /// RFC 3339; null until the first check.
    pub checked_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AdminProviderView {
    pub name: String,
    #[schema(value_type = String, example = "openai")]
    pub kind: ProviderKind,
    pub base_url: String,
    pub enabled: bool,
    /// Whether a key is configured. The key itself is never returned.
    pub has_api_key: bool,
    /// The allowlist; null offers every model the provider lists.
    pub models: Option<Vec<String>>,
    pub models_count: usize,
    /// config | env | detected | admin. Only `admin` providers can be edited
    /// or deleted here; the others only enabled or disabled (until restart).
    pub source: ProviderSource,
    pub status: StatusView,
    /// For admin-added providers.
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AdminProviderList {
    pub items: Vec<AdminProviderView>,
    pub next_cursor: Option<String>,
}

fn admin_view(
    p: ProviderSummary,
    source: ProviderSource,
    counts: &HashMap<String, usize>,
    stored: Option<&StoredProvider>,
) -> AdminProviderView {
    let checked_at = p.status.checked_at.map(|t| rfc3339(t.unix_timestamp()));
    AdminProviderView {
        models_count: counts.get(&p.name).copied().unwrap_or(0),
        name: p.name,
        kind: p.kind,
        base_url: p.base_url,
        enabled: p.enabled,
        has_api_key: p.has_api_key,
        models: p.models,
        source,
        status: StatusView {
            reachable: p.status.reachable,
            last_error: p.status.last_error,
            last_error_code: p.status.last_error_code.map(str::to_string),
            checked_at,
        },
        created_at: stored.map(|s| rfc3339(s.created_at)),
        updated_at: stored.map(|s| rfc3339(s.updated_at)),
    }
}

/// The admin view of one provider as it is now.
fn view_of(state: &AppState, name: &str) -> AppResult<AdminProviderView> {
    let summary = state
        .providers
        .list()
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| AppError::not_found("provider"))?;
    let stored = state.store.get_provider(name)?;
    let names: HashSet<String> = stored.iter().map(|s| s.name.clone()).collect();
    let source = source_of(&state.cfg, &names, name);
    let counts = model_counts(&state.providers);
    Ok(admin_view(
        summary,
        source,
        &counts,
        stored.as_ref().filter(|_| source == ProviderSource::Admin),
    ))
}

/// Every provider with its base URL, source and status (admins only).
#[utoipa::path(get, path = "/api/admin/providers", tag = "providers",
    responses((status = 200, body = AdminProviderList), (status = 403, body = crate::error::ErrorBody)))]
pub async fn admin_list(
    State(state): State<AppState>,
    _admin: Admin,
) -> AppResult<Json<AdminProviderList>> {
    let stored: HashMap<String, StoredProvider> = state
        .store
        .list_providers()?
        .into_iter()
        .map(|p| (p.name.clone(), p))
        .collect();
    let names: HashSet<String> = stored.keys().cloned().collect();
    let counts = model_counts(&state.providers);
    let items = state
        .providers
        .list()
        .into_iter()
        .map(|p| {
            let source = source_of(&state.cfg, &names, &p.name);
            let rec = stored
                .get(&p.name)
                .filter(|_| source == ProviderSource::Admin);
            admin_view(p, source, &counts, rec)
        })
        .collect();
    Ok(Json(AdminProviderList {
        items,
        next_cursor: None,
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct CreateProvider {
    /// openai | anthropic | ollama
    #[schema(value_type = String, example = "openai")]
    pub kind: ProviderKind,
    /// Unique; 1-50 of letters, digits, '_', '.', '-'.
    pub name: String,
    /// openai: up to and including /v1; anthropic: without /v1; ollama: the server root.
    pub base_url: String,
    /// Stored encrypted; never returned.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Allowlist; omitted or null offers every model the provider lists.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
pub struct UpdateProvider {
    #[serde(default)]
    pub base_url: Option<String>,
    /// A new key; the empty string removes the key. Omitted or null keeps it.
    #[serde(default)]
    pub api_key: Option<String>,
    /// A new allowlist; null or [] offers every model again. Omitted keeps it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    pub models: Option<Option<Vec<String>>>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// Tells an explicit `null` (Some(None)) from an absent field (None).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Some(Option::<T>::deserialize(d)?))
}

fn check_name(name: &str) -> AppResult<()> {
    validate_provider_name(name).map_err(AppError::Validation)
}

fn check_url(url: &str) -> AppResult<String> {
    validate_provider_url(url).map_err(AppError::Validation)?;
    Ok(url.trim().trim_end_matches('/').to_string())
}

fn check_models(models: Option<Vec<String>>) -> AppResult<Option<Vec<String>>> {
    match models {
        None => Ok(None),
        Some(list) if list.is_empty() => Ok(None),
        Some(list) => {
            let list: Vec<String> = list.into_iter().map(|m| m.trim().to_string()).collect();
            validate_model_list(&list).map_err(AppError::Validation)?;
            Ok(Some(list))
        }
    }
}

/// A key as typed: surrounding whitespace dropped; `None` for empty.
fn check_key(key: Option<String>) -> AppResult<Option<String>> {
    let Some(k) = key else { return Ok(None) };
    let k = k.trim();
    if k.is_empty() {
        return Ok(None);
    }
    if k.len() > MAX_KEY_LEN || !k.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AppError::validation(format!(
            "api_key must be at most {MAX_KEY_LEN} printable ASCII characters without spaces"
        )));
    }
    Ok(Some(k.to_string()))
}

fn outcome_of<T>(r: &AppResult<T>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

/// What may not be changed through the API, and where to change it instead.
fn managed_elsewhere(name: &str, source: ProviderSource, action: &str) -> AppError {
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
    AppError::Validation(format!(
        "provider \"{name}\" cannot be {action} here: it {place}. It can only be enabled or disabled through the API, until the next restart."
    ))
}

/// Adds a provider (admins only). The key is stored encrypted and is never
/// returned; the model list is fetched in the background.
#[utoipa::path(post, path = "/api/admin/providers", tag = "providers", request_body = CreateProvider,
    responses((status = 201, body = AdminProviderView), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn admin_create(
    State(state): State<AppState>,
    client: ClientInfo,
    Admin(admin): Admin,
    Json(req): Json<CreateProvider>,
) -> AppResult<Response> {
    let target = format!(
        "{} kind={}",
        req.name.chars().take(64).collect::<String>(),
        req.kind
    );
    let res = create(&state, req).await;
    audit(
        &state,
        &client,
        Some(&admin.user),
        None,
        "admin.provider.create",
        Some(target),
        outcome_of(&res),
    )
    .await;
    res.map(created)
}

async fn create(state: &AppState, req: CreateProvider) -> AppResult<AdminProviderView> {
    check_name(&req.name)?;
    let base_url = check_url(&req.base_url)?;
    let models = check_models(req.models)?;
    let key = check_key(req.api_key)?;
    let name = req.name;

    let _guard = ADMIN_LOCK.lock().await;
    if state.providers.config(&name).is_some() {
        return Err(AppError::Conflict(format!(
            "a provider named \"{name}\" already exists"
        )));
    }
    let now = clock::now();
    let config = ProviderConfig {
        kind: req.kind,
        name: name.clone(),
        base_url: base_url.clone(),
        api_key: key.clone(),
        models: models.clone(),
        enabled: req.enabled.unwrap_or(true),
    };
    config
        .validate()
        .map_err(|e| AppError::Validation(e.to_string()))?;
    let data_dir = state.cfg.data_dir.clone();
    let mut rec = StoredProvider {
        name: name.clone(),
        kind: req.kind,
        base_url,
        models,
        enabled: config.enabled,
        encrypted_key: None,
        created_at: now,
        updated_at: now,
    };
    state
        .store
        .blocking(move |s| {
            if let Some(k) = &key {
                let sealer = SecretBox::load_or_create(&data_dir).map_err(std::io::Error::other)?;
                rec.encrypted_key = Some(sealer.seal(&rec.name, k));
            }
            s.create_provider(&rec)
        })
        .await?;
    if let Err(e) = state.providers.add(config) {
        // Taken meanwhile (a detected server); keep store and registry alike.
        let n = name.clone();
        let _ = state.store.blocking(move |s| s.delete_provider(&n)).await;
        return Err(match e {
            RegistryError::DuplicateName(_) => AppError::Conflict(e.to_string()),
            other => AppError::Validation(other.to_string()),
        });
    }
    tracing::info!(provider = %name, "provider added by an admin");
    refresh_soon(state);
    view_of(state, &name)
}

/// Changes a provider (admins only). Admin-added providers accept every
/// field; those from the config file, the environment or detection accept
/// only `enabled` (kept in memory until the next restart).
#[utoipa::path(patch, path = "/api/admin/providers/{name}", tag = "providers", request_body = UpdateProvider,
    params(("name" = String, Path, description = "Provider name")),
    responses((status = 200, body = AdminProviderView), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn admin_update(
    State(state): State<AppState>,
    client: ClientInfo,
    Admin(admin): Admin,
    Path(name): Path<String>,
    Json(req): Json<UpdateProvider>,
) -> AppResult<Json<AdminProviderView>> {
    let mut fields = Vec::new();
    if req.base_url.is_some() {
        fields.push("base_url");
    }
    if req.api_key.is_some() {
        fields.push("api_key");
    }
    if req.models.is_some() {
        fields.push("models");
    }
    if let Some(e) = req.enabled {
        fields.push(if e { "enabled=true" } else { "enabled=false" });
    }
    let target = format!(
        "{} fields={}",
        name.chars().take(64).collect::<String>(),
        fields.join(",")
    );
    let res = update(&state, &name, req).await;
    audit(
        &state,
        &client,
        Some(&admin.user),
        None,
        "admin.provider.update",
        Some(target),
        outcome_of(&res),
    )
    .await;
    res.map(Json)
}

async fn update(state: &AppState, name: &str, req: UpdateProvider) -> AppResult<AdminProviderView> {
    let _guard = ADMIN_LOCK.lock().await;
    let current = state
        .providers
        .config(name)
        .ok_or_else(|| AppError::not_found("provider"))?;
    let stored = state.store.get_provider(name)?;
    let names: HashSet<String> = stored.iter().map(|s| s.name.clone()).collect();
    let source = source_of(&state.cfg, &names, name);
    let settings_change = req.base_url.is_some() || req.api_key.is_some() || req.models.is_some();

    if source != ProviderSource::Admin || !settings_change {
        if settings_change {
            return Err(managed_elsewhere(name, source, "edited"));
        }
        if let Some(enabled) = req.enabled {
            if source == ProviderSource::Admin
                && let Some(mut rec) = stored
            {
                rec.enabled = enabled;
                rec.updated_at = clock::now();
                state.store.blocking(move |s| s.put_provider(&rec)).await?;
            }
            state
                .providers
                .set_enabled(name, enabled)
                .map_err(|_| AppError::not_found("provider"))?;
            if enabled && !current.enabled {
                refresh_soon(state);
            }
            tracing::info!(provider = %name, enabled, "provider enabled state changed by an admin");
        }
        return view_of(state, name);
    }

    let Some(mut rec) = stored else {
        return Err(AppError::not_found("provider"));
    };
    let base_url = req.base_url.as_deref().map(check_url).transpose()?;
    let models = req.models.map(check_models).transpose()?;
    let new_key = req.api_key.map(|k| check_key(Some(k))).transpose()?;

    if let Some(u) = base_url {
        rec.base_url = u;
    }
    if let Some(m) = models {
        rec.models = m;
    }
    if let Some(e) = req.enabled {
        rec.enabled = e;
    }
    rec.updated_at = clock::now();
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
    };
    config
        .validate()
        .map_err(|e| AppError::Validation(e.to_string()))?;
    let data_dir = state.cfg.data_dir.clone();
    state
        .store
        .blocking(move |s| {
            match new_key {
                None => {}
                Some(None) => rec.encrypted_key = None,
                Some(Some(k)) => {
                    let sealer =
                        SecretBox::load_or_create(&data_dir).map_err(std::io::Error::other)?;
                    rec.encrypted_key = Some(sealer.seal(&rec.name, &k));
                }
            }
            s.put_provider(&rec)
        })
        .await?;
    state
        .providers
        .upsert(config)
        .map_err(|e| AppError::Validation(e.to_string()))?;
    tracing::info!(provider = %name, "provider changed by an admin");
    refresh_soon(state);
    view_of(state, name)
}

/// Deletes an admin-added provider (admins only). Conversations that used
/// it keep their messages; new answers need another provider.
#[utoipa::path(delete, path = "/api/admin/providers/{name}", tag = "providers",
    params(("name" = String, Path, description = "Provider name")),
    responses((status = 204), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn admin_delete(
    State(state): State<AppState>,
    client: ClientInfo,
    Admin(admin): Admin,
    Path(name): Path<String>,
) -> AppResult<StatusCode> {
    let target = name.chars().take(64).collect::<String>();
    let res = delete(&state, &name).await;
    audit(
        &state,
        &client,
        Some(&admin.user),
        None,
        "admin.provider.delete",
        Some(target),
        outcome_of(&res),
    )
    .await;
    res.map(|()| StatusCode::NO_CONTENT)
}

async fn delete(state: &AppState, name: &str) -> AppResult<()> {
    let _guard = ADMIN_LOCK.lock().await;
    if state.providers.config(name).is_none() {
        return Err(AppError::not_found("provider"));
    }
    let source = source_of(&state.cfg, &stored_names(state)?, name);
    if source != ProviderSource::Admin {
        return Err(managed_elsewhere(name, source, "deleted"));
    }
    let n = name.to_string();
    match state.store.blocking(move |s| s.delete_provider(&n)).await {
        Ok(()) | Err(StoreError::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    state.providers.remove(name);
    tracing::info!(provider = %name, "provider deleted by an admin");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_tells_null_from_absent() {
        let u: UpdateProvider = serde_json::from_str("{}").unwrap();
        assert!(u.models.is_none());
        let u: UpdateProvider = serde_json::from_str(r#"{"models": null}"#).unwrap();
        assert_eq!(u.models, Some(None));
        let u: UpdateProvider = serde_json::from_str(r#"{"models": ["a"]}"#).unwrap();
        assert_eq!(u.models, Some(Some(vec!["a".to_string()])));
    }

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
