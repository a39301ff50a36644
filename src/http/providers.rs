//! Models and providers: the merged model list and provider health for every
//! signed-in user, and provider management for admins (the rules live in
//! `provider_admin`).
//!
//! Base URLs are admin-only (no SSRF or topology leak through user routes),
//! and no answer ever carries a provider key.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::auth::audit;
use super::{Json, Query, created};
use crate::auth::{Admin, ClientInfo, CurrentUser};
use crate::clock::rfc3339;
use crate::error::{AppError, AppResult};
use crate::provider_admin::{
    AdminError, NewProvider, ProviderAdmin, ProviderChange, ProviderSource, ProviderState,
    model_counts,
};
use crate::providers::capabilities::ModelUse;
use crate::providers::{ModelKind, ProviderKind};
use crate::state::AppState;
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

// ---- shared views -----------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct ModelView {
    /// The id to send as `model`.
    pub id: String,
    /// The name of the provider serving it.
    pub provider: String,
    pub display_name: String,
    /// What an admin wrote about it (Admin → Models); null when nothing.
    pub description: Option<String>,
    /// Tokens, when the provider says or the capability table knows.
    pub context_window: Option<u32>,
    /// Longest answer in tokens, when known.
    pub max_output_tokens: Option<u32>,
    /// chat | embedding: embedding models cannot chat.
    #[schema(value_type = String, example = "chat")]
    pub kind: ModelKind,
    /// chat | embedding | image | other: only `chat` models can chat
    /// (`kind` says chat for image and audio models too).
    #[serde(rename = "use")]
    pub model_use: ModelUse,
    /// Accepts images in messages.
    pub vision: bool,
    /// Can call tools.
    pub tools: bool,
    /// An admin hid it from the picker (only admins see hidden models).
    pub hidden: bool,
    /// Every provider serving this model (aliases such as an implicit
    /// `:latest` included), by name; more than one means failover.
    pub providers: Vec<String>,
    /// The name to show: `display_name`, with the provider's name added
    /// when another provider lists the same model.
    pub label: String,
    /// False while its provider is known to be down or cooling down.
    pub reachable: bool,
    /// Its provider failed repeatedly and is skipped for a while.
    pub cooling_down: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ModelList {
    pub items: Vec<ModelView>,
    /// The default model an admin chose, else the configured
    /// `default_model`, else the first reachable chat model listed.
    pub default_model: Option<String>,
    /// Whether requests may carry the user's own key in `X-Provider-Key`.
    pub allow_user_keys: bool,
    /// Always null: the whole list is one page.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ModelsQuery {
    /// `chat`: only what the chat's model picker offers (chat models that
    /// are not hidden; no embedding, image or audio models).
    #[serde(default, rename = "use")]
    pub model_use: Option<String>,
}

/// Every model of every enabled provider, from the cached lists (refreshed
/// every minute and after each admin change); never waits on a provider.
/// Models an admin hid are left out for non-admins; `?use=chat` lists only
/// the chat models the picker offers.
#[utoipa::path(get, path = "/api/models", tag = "providers", params(ModelsQuery),
    responses((status = 200, body = ModelList), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody)))]
pub async fn list_models(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(q): Query<ModelsQuery>,
) -> AppResult<Json<ModelList>> {
    let picker = match q.model_use.as_deref() {
        None => false,
        Some("chat") => true,
        Some(other) => {
            return Err(AppError::Validation(format!(
                "use must be \"chat\" (or left out), got \"{}\"",
                other.chars().take(40).collect::<String>()
            )));
        }
    };
    let admin = user.is_admin();
    let mut catalog = super::models::service(&state).catalog(picker);
    crate::groups::ModelAccess::load(&state.store, &user.user)
        .await?
        .retain(&mut catalog, |(c, _, _)| (&c.model.id, &c.model.provider));
    let items: Vec<ModelView> = catalog
        .into_iter()
        .filter(|(_, _, s)| admin || !s.as_ref().is_some_and(|s| s.hidden))
        .map(|(c, caps, setting)| ModelView::new(c, caps, setting))
        .collect();
    let default_model = state
        .settings()
        .default_model
        .clone()
        .or_else(|| first_answering_chat_model(&items));
    Ok(Json(ModelList {
        items,
        default_model,
        allow_user_keys: state.settings().allow_user_keys,
        next_cursor: None,
    }))
}

impl ModelView {
    /// A catalogue entry with its capabilities and the admin's settings.
    fn new(
        c: crate::providers::routing::CatalogModel,
        caps: crate::providers::capabilities::Capabilities,
        setting: Option<crate::store::model_settings::ModelSetting>,
    ) -> ModelView {
        let m = c.model;
        let setting =
            setting.unwrap_or_else(|| crate::store::model_settings::ModelSetting::unset(&m.id));
        let display_name = setting.display_name.unwrap_or(m.display_name);
        let label = if c.duplicate {
            format!("{display_name} ({})", m.provider)
        } else {
            display_name.clone()
        };
        ModelView {
            id: m.id,
            provider: m.provider,
            display_name,
            description: setting.description,
            context_window: caps.context_window,
            max_output_tokens: caps.max_output_tokens,
            kind: m.kind,
            vision: caps.vision,
            tools: caps.tools,
            model_use: caps.model_use,
            hidden: setting.hidden,
            providers: c.providers,
            label,
            reachable: c.reachable,
            cooling_down: c.cooling_down,
        }
    }
}

/// With no default set: the first chat model that can answer now, else the
/// first chat model, else the first model.
fn first_answering_chat_model(items: &[ModelView]) -> Option<String> {
    let chat = |m: &&ModelView| m.model_use == ModelUse::Chat;
    items
        .iter()
        .find(|m| chat(m) && m.reachable)
        .or_else(|| items.iter().find(chat))
        .or(items.first())
        .map(|m| m.id.clone())
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
    /// Skipped by routing after repeated failures, until `cooling_until`.
    pub cooling_down: bool,
    /// RFC 3339; null when not cooling down.
    pub cooling_until: Option<String>,
    /// Order among providers of the same model: higher first.
    pub priority: i32,
    /// Whether a user's own key may be sent to it (the server's
    /// `allow_user_keys` and this provider's switch are both on).
    pub user_keys: bool,
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
    let allow_keys = state.settings().allow_user_keys;
    let items = state
        .providers
        .list()
        .into_iter()
        .map(|p| ProviderView {
            models_count: counts.get(&p.name).copied().unwrap_or(0),
            name: p.name,
            kind: p.kind,
            reachable: p.status.reachable,
            cooling_down: p.status.cooling_down,
            cooling_until: p.status.cooling_until.map(|t| rfc3339(t.unix_timestamp())),
            priority: p.priority,
            last_error: p.status.last_error,
            enabled: p.enabled,
            user_keys: allow_keys && p.allow_user_keys,
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
    /// Skipped by routing after repeated failures, until `cooling_until`.
    pub cooling_down: bool,
    /// RFC 3339; null when not cooling down.
    pub cooling_until: Option<String>,
    /// Failed requests in a row.
    pub consecutive_failures: u32,
    /// Answers streaming from it now.
    pub in_flight: usize,
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
    /// Order among providers of the same model: higher first.
    pub priority: i32,
    /// Users may bring their own key to it.
    pub allow_user_keys: bool,
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

fn admin_view(p: ProviderState) -> AdminProviderView {
    let s = p.summary;
    let checked_at = s.status.checked_at.map(|t| rfc3339(t.unix_timestamp()));
    AdminProviderView {
        models_count: p.models_count,
        name: s.name,
        kind: s.kind,
        base_url: s.base_url,
        enabled: s.enabled,
        has_api_key: s.has_api_key,
        models: s.models,
        priority: s.priority,
        allow_user_keys: s.allow_user_keys,
        source: p.source,
        status: StatusView {
            reachable: s.status.reachable,
            last_error: s.status.last_error,
            last_error_code: s.status.last_error_code.map(str::to_string),
            checked_at,
            cooling_down: s.status.cooling_down,
            cooling_until: s.status.cooling_until.map(|t| rfc3339(t.unix_timestamp())),
            consecutive_failures: s.status.consecutive_failures,
            in_flight: s.status.in_flight,
        },
        created_at: p.stored.as_ref().map(|r| rfc3339(r.created_at)),
        updated_at: p.stored.as_ref().map(|r| rfc3339(r.updated_at)),
    }
}

/// The provider admin service over this server's store and registry.
fn service(state: &AppState) -> ProviderAdmin<'_> {
    ProviderAdmin {
        store: &state.store,
        registry: &state.providers,
        cfg: &state.cfg,
    }
}

impl From<AdminError> for AppError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Validation(m) => AppError::Validation(m),
            AdminError::NotFound => AppError::not_found("provider"),
            AdminError::Conflict(m) => AppError::Conflict(m),
            AdminError::Store(e) => e.into(),
        }
    }
}

/// Every provider with its base URL, source and status (admins only).
#[utoipa::path(get, path = "/api/admin/providers", tag = "providers",
    responses((status = 200, body = AdminProviderList), (status = 403, body = crate::error::ErrorBody)))]
pub async fn admin_list(
    State(state): State<AppState>,
    _admin: Admin,
) -> AppResult<Json<AdminProviderList>> {
    let items = service(&state)
        .list()
        .await?
        .into_iter()
        .map(admin_view)
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
    /// Among providers of the same model, higher is tried first; -1000 to
    /// 1000, default 0.
    #[serde(default)]
    pub priority: Option<i32>,
    /// Ask the provider for its model list first and save only when it
    /// answers; a failure answers 422 PROVIDER_TEST_FAILED with the reason
    /// (send again without `test` to save anyway). Default false.
    #[serde(default)]
    pub test: Option<bool>,
    /// Users may send their own key to it (when the server allows users'
    /// keys at all). Default true.
    #[serde(default)]
    pub allow_user_keys: Option<bool>,
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
    /// -1000 to 1000 (admin-added providers only). Omitted keeps it.
    #[serde(default)]
    pub priority: Option<i32>,
    /// Users may send their own key to it; any provider (kept for
    /// admin-added ones, until restart for the others). Omitted keeps it.
    #[serde(default)]
    pub allow_user_keys: Option<bool>,
}

/// Tells an explicit `null` (Some(None)) from an absent field (None).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Some(Option::<T>::deserialize(d)?))
}

fn outcome_of<T>(r: &AppResult<T>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
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
    // A refused test is audited; a malformed request (400) is not, as
    // with every validation error.
    if req.test == Some(true)
        && let Err(e) = test_unsaved(&state, &req).await
    {
        if !matches!(e, AppError::ProviderTestFailed(_)) {
            return Err(e);
        }
        audit(
            &state,
            &client,
            Some(&admin.user),
            None,
            "admin.provider.create",
            Some(target),
            e.code(),
        )
        .await;
        return Err(e);
    }
    let new = NewProvider {
        kind: req.kind,
        name: req.name,
        base_url: req.base_url,
        api_key: req.api_key,
        models: req.models,
        enabled: req.enabled,
        priority: req.priority,
        allow_user_keys: req.allow_user_keys,
    };
    let res = service(&state)
        .create(new)
        .await
        .map(admin_view)
        .map_err(AppError::from);
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

/// "Test before saving": the provider as it would be saved answers a tiny
/// real request. A malformed one is a 400 and never a network call (the
/// same checks as saving).
async fn test_unsaved(state: &AppState, req: &CreateProvider) -> AppResult<()> {
    let probe = crate::providers::registry::ProviderConfig {
        kind: req.kind,
        name: req.name.clone(),
        base_url: req.base_url.trim().trim_end_matches('/').to_string(),
        api_key: req
            .api_key
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_string),
        models: None,
        enabled: true,
        priority: 0,
        allow_user_keys: req.allow_user_keys.unwrap_or(true),
    };
    crate::config::validate_provider_url(&req.base_url).map_err(AppError::Validation)?;
    probe
        .validate()
        .map_err(|e| AppError::Validation(e.to_string()))?;
    let r = super::models::service(state).test_unsaved(&probe).await;
    if r.ok {
        Ok(())
    } else {
        Err(AppError::ProviderTestFailed(r.message))
    }
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
    if req.priority.is_some() {
        fields.push("priority");
    }
    let target = format!(
        "{} fields={}",
        name.chars().take(64).collect::<String>(),
        fields.join(",")
    );
    let change = ProviderChange {
        base_url: req.base_url,
        api_key: req.api_key,
        models: req.models,
        enabled: req.enabled,
        priority: req.priority,
        allow_user_keys: req.allow_user_keys,
    };
    let res = service(&state)
        .update(&name, change)
        .await
        .map(admin_view)
        .map_err(AppError::from);
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
    let res = service(&state).delete(&name).await.map_err(AppError::from);
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
}
