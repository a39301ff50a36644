//! Admin → Models (admins only): every model of every provider with its
//! capabilities and settings, per-model settings, the server-wide default
//! model, and the "Test" buttons for models and providers. The rules live in
//! `model_settings`.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, patch, post, put};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::Json;
use super::auth::audit;
use crate::auth::{Admin, ClientInfo};
use crate::error::{AppError, AppResult};
use crate::model_settings::{
    AdminModel, ModelAdmin, ModelSettingsError, SettingChange, TestResult,
};
use crate::state::AppState;
use crate::store::model_settings::ModelPrice;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/models", get(list))
        .route("/admin/models/{id}", patch(update))
        .route("/admin/models/{id}/test", post(test_model))
        .route("/admin/default-model", put(set_default))
        .route("/admin/providers/{name}/test", post(test_provider))
}

/// The model service over this server's state.
pub fn service(state: &AppState) -> ModelAdmin<'_> {
    ModelAdmin {
        store: &state.store,
        registry: &state.providers,
        prices: &state.limits.prices,
        settings: &state.models,
    }
}

impl From<ModelSettingsError> for AppError {
    fn from(e: ModelSettingsError) -> Self {
        match e {
            ModelSettingsError::Validation(m) => AppError::Validation(m),
            ModelSettingsError::NotFound(m) => AppError::NotFound(m),
            ModelSettingsError::Store(e) => e.into(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AdminModelList {
    /// One entry per model and provider serving it.
    pub items: Vec<AdminModel>,
    /// The default an admin chose; null when none (the config file's
    /// `default_model`, else the first model, applies).
    pub default_model: Option<String>,
    /// Always null: the whole list is one page.
    pub next_cursor: Option<String>,
}

/// Every model of every enabled provider, with capabilities and settings
/// (admins only).
#[utoipa::path(get, path = "/api/admin/models", tag = "providers", operation_id = "admin_list_models",
    responses((status = 200, body = AdminModelList), (status = 403, body = crate::error::ErrorBody)))]
pub async fn list(State(state): State<AppState>, _admin: Admin) -> AppResult<Json<AdminModelList>> {
    Ok(Json(AdminModelList {
        items: service(&state).list(),
        default_model: state.models.default_model(),
        next_cursor: None,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceBody {
    pub input_per_million: f64,
    pub output_per_million: f64,
}

/// Each field present replaces the stored one; null or "" clears it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateModel {
    /// Leave it out of the chat's model picker (API calls still reach it).
    #[serde(default)]
    pub hidden: Option<bool>,
    /// Up to 100 characters.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub display_name: Option<Option<String>>,
    /// Up to 500 characters.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// Per million tokens, 0 to 100000; replaces the `[[prices]]` table's
    /// price for this model on every provider. null clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<PriceBody>)]
    pub price: Option<Option<PriceBody>>,
    /// true or false: whether the model reads images (attachments are
    /// refused before the call when it does not); null: back to confab's
    /// table of known models.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<bool>)]
    pub vision: Option<Option<bool>>,
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

fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Changes one model's settings (admins only). The model must be offered
/// by a provider now; ids with `/` are sent percent-encoded (`%2F`).
#[utoipa::path(patch, path = "/api/admin/models/{id}", tag = "providers", operation_id = "admin_update_model", request_body = UpdateModel,
    params(("id" = String, Path, description = "Model id, percent-encoded")),
    responses((status = 200, body = AdminModelList), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    client: ClientInfo,
    Admin(admin): Admin,
    Path(id): Path<String>,
    Json(req): Json<UpdateModel>,
) -> AppResult<Json<AdminModelList>> {
    let change = SettingChange {
        hidden: req.hidden,
        display_name: req.display_name,
        description: req.description,
        price: req.price.map(|p| {
            p.map(|p| ModelPrice {
                input_per_million: p.input_per_million,
                output_per_million: p.output_per_million,
            })
        }),
        vision: req.vision,
    };
    let svc = service(&state);
    let res = svc.update(&id, change).await.map_err(AppError::from);
    audit(
        &state,
        &client,
        Some(&admin.user),
        None,
        "admin.model.update",
        Some(short(&id)),
        outcome_of(&res),
    )
    .await;
    res?;
    // The model's rows (one per provider serving it), as the list shows them.
    let items = svc.list().into_iter().filter(|m| m.id == id).collect();
    Ok(Json(AdminModelList {
        items,
        default_model: state.models.default_model(),
        next_cursor: None,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefaultModelBody {
    /// A chat model offered now; null falls back to the config file's
    /// `default_model`.
    pub model: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DefaultModelView {
    pub default_model: Option<String>,
}

/// Sets the server-wide default model (admins only): new chats start with
/// it unless the user picked another.
#[utoipa::path(put, path = "/api/admin/default-model", tag = "providers", operation_id = "admin_set_default_model", request_body = DefaultModelBody,
    responses((status = 200, body = DefaultModelView), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)))]
pub async fn set_default(
    State(state): State<AppState>,
    client: ClientInfo,
    Admin(admin): Admin,
    Json(req): Json<DefaultModelBody>,
) -> AppResult<Json<DefaultModelView>> {
    let target = req.model.as_deref().map(short);
    let res = service(&state)
        .set_default(req.model)
        .await
        .map_err(AppError::from);
    audit(
        &state,
        &client,
        Some(&admin.user),
        None,
        "admin.model.default",
        target,
        outcome_of(&res),
    )
    .await;
    res?;
    Ok(Json(DefaultModelView {
        default_model: state.models.default_model(),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestModelBody {
    /// The provider to ask; omitted asks the first one serving the model.
    #[serde(default)]
    pub provider: Option<String>,
}

/// A tiny real request to a model (admins only): a one-token answer for
/// a chat model, an embedding of one word for an embedding model. A failed
/// test is still a 200 with `ok: false` and a sentence saying why.
#[utoipa::path(post, path = "/api/admin/models/{id}/test", tag = "providers", operation_id = "admin_test_model", request_body = TestModelBody,
    params(("id" = String, Path, description = "Model id, percent-encoded")),
    responses((status = 200, body = TestResult), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn test_model(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
    Json(body): Json<TestModelBody>,
) -> AppResult<Json<TestResult>> {
    let r = service(&state)
        .test_model(&id, body.provider.as_deref())
        .await?;
    Ok(Json(r))
}

/// A tiny real request to a provider (admins only): its model list. A
/// failed test is still a 200 with `ok: false` and a sentence saying why.
#[utoipa::path(post, path = "/api/admin/providers/{name}/test", tag = "providers", operation_id = "admin_test_provider",
    params(("name" = String, Path, description = "Provider name")),
    responses((status = 200, body = TestResult), (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
pub async fn test_provider(
    State(state): State<AppState>,
    _admin: Admin,
    Path(name): Path<String>,
) -> AppResult<Json<TestResult>> {
    Ok(Json(service(&state).test_provider(&name).await?))
}
