//! Presets, the prompt library (`/` commands) and the caller's own settings
//! (custom instructions). The rules live in `crate::presets`.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Json, created, parse_id};
use crate::auth::CurrentUser;
use crate::clock::rfc3339;
use crate::error::AppResult;
use crate::presets::{PresetInput, Presets, PromptInput};
use crate::state::AppState;
use crate::store::presets::{Preset, PresetParams, SavedPrompt, UserSettings};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/presets", get(list_presets).post(create_preset))
        .route(
            "/presets/{id}",
            get(read_preset).put(update_preset).delete(delete_preset),
        )
        .route("/prompts", get(list_prompts).post(create_prompt))
        .route(
            "/prompts/{id}",
            get(read_prompt).put(update_prompt).delete(delete_prompt),
        )
        .route("/settings", get(read_settings).put(update_settings))
}

fn service(state: &AppState) -> Presets {
    Presets {
        store: state.store.clone(),
    }
}

/// A preset: created, or replaced whole by `PUT`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PresetBody {
    /// 1 to 80 characters.
    #[schema(min_length = 1, max_length = 80)]
    pub name: String,
    /// Up to 500 characters.
    #[serde(default)]
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// The model a chat started with this preset uses; omitted or blank:
    /// the server's default model.
    #[serde(default)]
    pub model: Option<String>,
    /// Up to 20 000 characters.
    #[serde(default)]
    #[schema(max_length = 20000)]
    pub system_prompt: Option<String>,
    /// 0 to 2.
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f32>,
    /// 1 to 1 000 000.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000000)]
    pub max_tokens: Option<u32>,
    /// 0 to 1.
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub top_p: Option<f32>,
    /// Shared with every user of the server (admins only). Default false.
    #[serde(default)]
    pub shared: bool,
}

impl From<PresetBody> for PresetInput {
    fn from(b: PresetBody) -> Self {
        PresetInput {
            name: b.name,
            description: b.description,
            model: b.model,
            system_prompt: b.system_prompt,
            params: PresetParams {
                temperature: b.temperature,
                max_tokens: b.max_tokens,
                top_p: b.top_p,
            },
            shared: b.shared,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct PresetView {
    pub id: String,
    pub name: String,
    pub description: String,
    pub model: Option<String>,
    pub system_prompt: Option<String>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    pub top_p: Option<f32>,
    /// Shared with everyone by an admin.
    pub shared: bool,
    /// Whether the caller may change or delete it.
    pub editable: bool,
    pub created_at: String,
    pub updated_at: String,
}

fn preset_view(user: &CurrentUser, p: Preset) -> PresetView {
    PresetView {
        id: p.id.to_string(),
        shared: p.owner.is_none(),
        editable: p.owner.map_or(user.is_admin(), |o| o == user.id()),
        name: p.name,
        description: p.description,
        model: p.model,
        system_prompt: p.system_prompt,
        temperature: p.params.temperature,
        max_tokens: p.params.max_tokens,
        top_p: p.params.top_p,
        created_at: rfc3339(p.created_at),
        updated_at: rfc3339(p.updated_at),
    }
}

#[derive(Serialize, ToSchema)]
pub struct PresetList {
    /// The caller's own presets and the shared ones, by name.
    pub items: Vec<PresetView>,
}

#[utoipa::path(get, path = "/api/presets", tag = "presets", responses((status = 200, body = PresetList)))]
pub async fn list_presets(
    State(state): State<AppState>,
    user: CurrentUser,
) -> AppResult<Json<PresetList>> {
    let items = service(&state)
        .list_presets(&user)
        .await?
        .into_iter()
        .map(|p| preset_view(&user, p))
        .collect();
    Ok(Json(PresetList { items }))
}

#[utoipa::path(post, path = "/api/presets", tag = "presets", request_body = PresetBody,
    responses((status = 201, body = PresetView),
    (status = 403, description = "`FORBIDDEN`: `shared` by a user who is not an admin", body = crate::error::ErrorBody)))]
pub async fn create_preset(
    State(state): State<AppState>,
    user: CurrentUser,
    Json(body): Json<PresetBody>,
) -> AppResult<Response> {
    let p = service(&state).create_preset(&user, body.into()).await?;
    Ok(created(preset_view(&user, p)))
}

#[utoipa::path(get, path = "/api/presets/{id}", tag = "presets",
    responses((status = 200, body = PresetView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn read_preset(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> AppResult<Json<PresetView>> {
    let id = parse_id(&id, "preset")?;
    let p = service(&state).get_preset(&user, id).await?;
    Ok(Json(preset_view(&user, p)))
}

#[utoipa::path(put, path = "/api/presets/{id}", tag = "presets", request_body = PresetBody,
    responses((status = 200, body = PresetView), (status = 404, body = crate::error::ErrorBody),
    (status = 403, description = "`FORBIDDEN`: a shared preset, or sharing, by a user who is not an admin", body = crate::error::ErrorBody)))]
pub async fn update_preset(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Json(body): Json<PresetBody>,
) -> AppResult<Json<PresetView>> {
    let id = parse_id(&id, "preset")?;
    let p = service(&state)
        .update_preset(&user, id, body.into())
        .await?;
    Ok(Json(preset_view(&user, p)))
}

#[utoipa::path(delete, path = "/api/presets/{id}", tag = "presets",
    responses((status = 204), (status = 404, body = crate::error::ErrorBody),
    (status = 403, description = "`FORBIDDEN`: a shared preset, by a user who is not an admin", body = crate::error::ErrorBody)))]
pub async fn delete_preset(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let id = parse_id(&id, "preset")?;
    service(&state).delete_preset(&user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A saved prompt: created, or replaced whole by `PUT`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptBody {
    /// 1 to 80 characters.
    #[schema(min_length = 1, max_length = 80)]
    pub title: String,
    /// The `/command` that inserts it: 1 to 32 of `a-z 0-9 - _` (a leading
    /// `/` is dropped, letters are lowercased). Unique among the caller's
    /// prompts (and among the shared ones).
    #[schema(pattern = "^/?[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")]
    pub command: String,
    /// 1 to 20 000 characters.
    #[schema(min_length = 1, max_length = 20000)]
    pub text: String,
    /// Shared with every user of the server (admins only). Default false.
    #[serde(default)]
    pub shared: bool,
}

impl From<PromptBody> for PromptInput {
    fn from(b: PromptBody) -> Self {
        PromptInput {
            title: b.title,
            command: b.command,
            text: b.text,
            shared: b.shared,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct PromptView {
    pub id: String,
    pub title: String,
    /// Without the slash.
    pub command: String,
    pub text: String,
    pub shared: bool,
    pub editable: bool,
    pub created_at: String,
    pub updated_at: String,
}

fn prompt_view(user: &CurrentUser, p: SavedPrompt) -> PromptView {
    PromptView {
        id: p.id.to_string(),
        shared: p.owner.is_none(),
        editable: p.owner.map_or(user.is_admin(), |o| o == user.id()),
        title: p.title,
        command: p.command,
        text: p.text,
        created_at: rfc3339(p.created_at),
        updated_at: rfc3339(p.updated_at),
    }
}

#[derive(Serialize, ToSchema)]
pub struct PromptList {
    /// The caller's own prompts and the shared ones, by command (the
    /// caller's first when a shared one has the same command).
    pub items: Vec<PromptView>,
}

#[utoipa::path(get, path = "/api/prompts", tag = "presets", responses((status = 200, body = PromptList)))]
pub async fn list_prompts(
    State(state): State<AppState>,
    user: CurrentUser,
) -> AppResult<Json<PromptList>> {
    let items = service(&state)
        .list_prompts(&user)
        .await?
        .into_iter()
        .map(|p| prompt_view(&user, p))
        .collect();
    Ok(Json(PromptList { items }))
}

#[utoipa::path(post, path = "/api/prompts", tag = "presets", request_body = PromptBody,
    responses((status = 201, body = PromptView),
    (status = 403, description = "`FORBIDDEN`: `shared` by a user who is not an admin", body = crate::error::ErrorBody),
    (status = 409, description = "`CONFLICT`: the command is taken", body = crate::error::ErrorBody)))]
pub async fn create_prompt(
    State(state): State<AppState>,
    user: CurrentUser,
    Json(body): Json<PromptBody>,
) -> AppResult<Response> {
    let p = service(&state).create_prompt(&user, body.into()).await?;
    Ok(created(prompt_view(&user, p)))
}

#[utoipa::path(get, path = "/api/prompts/{id}", tag = "presets",
    responses((status = 200, body = PromptView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn read_prompt(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> AppResult<Json<PromptView>> {
    let id = parse_id(&id, "prompt")?;
    let p = service(&state).get_prompt(&user, id).await?;
    Ok(Json(prompt_view(&user, p)))
}

#[utoipa::path(put, path = "/api/prompts/{id}", tag = "presets", request_body = PromptBody,
    responses((status = 200, body = PromptView), (status = 404, body = crate::error::ErrorBody),
    (status = 403, description = "`FORBIDDEN`: a shared prompt, or sharing, by a user who is not an admin", body = crate::error::ErrorBody),
    (status = 409, description = "`CONFLICT`: the command is taken", body = crate::error::ErrorBody)))]
pub async fn update_prompt(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Json(body): Json<PromptBody>,
) -> AppResult<Json<PromptView>> {
    let id = parse_id(&id, "prompt")?;
    let p = service(&state)
        .update_prompt(&user, id, body.into())
        .await?;
    Ok(Json(prompt_view(&user, p)))
}

#[utoipa::path(delete, path = "/api/prompts/{id}", tag = "presets",
    responses((status = 204), (status = 404, body = crate::error::ErrorBody),
    (status = 403, description = "`FORBIDDEN`: a shared prompt, by a user who is not an admin", body = crate::error::ErrorBody)))]
pub async fn delete_prompt(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let id = parse_id(&id, "prompt")?;
    service(&state).delete_prompt(&user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct SettingsView {
    /// Added to the system prompt of every chat of the caller, after the
    /// conversation's own (a preset's) system prompt.
    pub custom_instructions: Option<String>,
}

fn settings_view(s: UserSettings) -> SettingsView {
    SettingsView {
        custom_instructions: s.custom_instructions,
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    /// Up to 4 000 characters; null or blank clears them.
    #[serde(default)]
    #[schema(max_length = 4000)]
    pub custom_instructions: Option<String>,
}

#[utoipa::path(get, path = "/api/settings", tag = "presets", responses((status = 200, body = SettingsView)))]
pub async fn read_settings(
    State(state): State<AppState>,
    user: CurrentUser,
) -> AppResult<Json<SettingsView>> {
    Ok(Json(settings_view(service(&state).settings(&user).await?)))
}

#[utoipa::path(put, path = "/api/settings", tag = "presets", request_body = SettingsBody,
    responses((status = 200, body = SettingsView)))]
pub async fn update_settings(
    State(state): State<AppState>,
    user: CurrentUser,
    Json(body): Json<SettingsBody>,
) -> AppResult<Json<SettingsView>> {
    let s = service(&state)
        .set_instructions(&user, body.custom_instructions)
        .await?;
    Ok(Json(settings_view(s)))
}
