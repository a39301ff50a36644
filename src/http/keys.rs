//! Personal API keys (`cfk_…`), usable as `Authorization: Bearer`.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{actor, audit, users};
use super::{Json, created, parse_id};
use crate::auth::grant::Grant;
use crate::auth::{ClientInfo, CurrentUser};
use crate::clock::rfc3339;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::store::{ApiKey, StoreError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/keys", get(list_keys).post(create_key))
        .route("/keys/{id}", delete(delete_key))
}

#[derive(Deserialize, ToSchema)]
pub struct CreateKey {
    pub name: String,
    /// Subset of read, write, admin, and of the scopes of the API key making
    /// the request. Default: read and write (those of them the key has).
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// RFC 3339, not later than the expiry of the API key making the request.
    /// Omitted: never expires, or, when created with an expiring API key,
    /// expires with that key.
    #[serde(default)]
    pub expires_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct KeyView {
    pub id: String,
    pub name: String,
    /// The first characters, to tell keys apart.
    pub prefix: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    pub id: String,
    pub name: String,
    /// The key itself. Shown only in this answer; only its hash is stored.
    pub key: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<String>,
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct KeyList {
    pub items: Vec<KeyView>,
    pub next_cursor: Option<String>,
}

fn view(k: ApiKey) -> KeyView {
    KeyView {
        id: k.id.to_string(),
        name: k.name,
        prefix: k.prefix,
        scopes: k.scopes,
        expires_at: k.expires_at.map(rfc3339),
        last_used_at: k.last_used_at.map(rfc3339),
        created_at: rfc3339(k.created_at),
    }
}

#[utoipa::path(post, path = "/api/keys", tag = "keys", request_body = CreateKey,
    responses((status = 201, body = CreatedKey), (status = 400, body = crate::error::ErrorBody),
    (status = 403, description = "FORBIDDEN: more scopes or a later expiry than the API key making the request", body = crate::error::ErrorBody)))]
pub async fn create_key(
    State(state): State<AppState>,
    client: ClientInfo,
    user: CurrentUser,
    Json(req): Json<CreateKey>,
) -> AppResult<Response> {
    // Checked first: a bad name is refused before the scopes are.
    crate::users::keys::check_name(&req.name)?;
    let now = crate::clock::now();
    let expires_at = match req.expires_at.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map_err(|_| {
                    AppError::validation(
                        "expires_at must be an RFC 3339 time like 2030-01-01T00:00:00Z",
                    )
                })?
                .unix_timestamp(),
        ),
    };
    let (scopes, expires_at) =
        Grant::of(&user).new_key(user.user.role, req.scopes, expires_at, now)?;
    let (record, key) = users(&state)
        .create_api_key(
            &actor(&client, Some(&user.user)),
            user.id(),
            &req.name,
            scopes,
            expires_at,
            now,
        )
        .await?;
    Ok(created(CreatedKey {
        id: record.id.to_string(),
        name: record.name,
        key,
        scopes: record.scopes,
        expires_at: record.expires_at.map(rfc3339),
        created_at: rfc3339(now),
    }))
}

#[utoipa::path(get, path = "/api/keys", tag = "keys", responses((status = 200, body = KeyList)))]
pub async fn list_keys(
    State(state): State<AppState>,
    user: CurrentUser,
) -> AppResult<Json<KeyList>> {
    let mut items: Vec<KeyView> = state
        .store
        .list_api_keys(user.id())
        .await?
        .into_iter()
        .map(view)
        .collect();
    items.reverse();
    Ok(Json(KeyList {
        items,
        next_cursor: None,
    }))
}

#[utoipa::path(delete, path = "/api/keys/{id}", tag = "keys",
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete_key(
    State(state): State<AppState>,
    client: ClientInfo,
    user: CurrentUser,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let kid = parse_id(&id, "API key")?;
    let uid = user.id();
    let res = state.store.delete_api_key(uid, kid).await;
    let outcome = match &res {
        Ok(_) => "ok",
        Err(StoreError::NotFound) => "NOT_FOUND",
        Err(_) => "INTERNAL",
    };
    audit(
        &state,
        &client,
        Some(&user.user),
        None,
        "key.delete",
        Some(id),
        outcome,
    )
    .await;
    match res {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        Err(StoreError::NotFound) => Err(AppError::not_found("API key")),
        Err(e) => Err(e.into()),
    }
}
