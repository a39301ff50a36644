//! Share links (`shares.rs` holds the rules).
//!
//! - `POST /api/conversations/{id}/shares`: a link to the thread shown now.
//! - `GET /api/shares`, `DELETE /api/shares/{id}`: the caller's links; revoke.
//! - `GET /api/shared/{token}`: the snapshot, for anyone with the token (or
//!   any signed-in user of the server, for a link limited to them).
//! - `GET /api/shared/{token}/files/{n}`: a file of the snapshot.
//! - `POST /api/shared/{token}/continue`: copy it into the caller's account.
//! - `GET /s/{token}`: the shared page, a small page of its own that loads
//!   nothing of the app's private data.

use axum::Router;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::Json;
use super::conversations::ConversationView;
use crate::auth::CurrentUser;
use crate::clock::rfc3339;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::store::chat::MessageRole;
use crate::store::shares::Share;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/conversations/{id}/shares", post(create))
        .route("/shares", get(list))
        .route("/shares/{id}", delete(revoke))
        .route("/shared/{token}", get(shared))
        .route("/shared/{token}/continue", post(continue_chat))
        .route("/shared/{token}/files/{n}", get(shared_file))
}

/// The signed-in user, if any (a bad or expired session counts as none).
pub struct MaybeUser(pub Option<CurrentUser>);

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        Ok(MaybeUser(
            CurrentUser::from_request_parts(parts, state).await.ok(),
        ))
    }
}

#[derive(Deserialize, ToSchema)]
pub struct NewShare {
    /// Only signed-in users of this server may open the link.
    #[serde(default)]
    pub signed_in_only: bool,
}

/// A link as its owner sees it.
#[derive(Serialize, ToSchema)]
pub struct ShareView {
    pub id: String,
    /// The secret part of the URL.
    pub token: String,
    /// The page to send people (`{public base}/s/{token}`).
    pub url: String,
    pub conversation_id: String,
    pub title: String,
    pub signed_in_only: bool,
    pub created_at: String,
}

fn view(state: &AppState, s: &Share) -> ShareView {
    ShareView {
        id: s.id.to_string(),
        token: s.token.clone(),
        url: format!("{}/s/{}", state.public_base, s.token),
        conversation_id: s.conversation_id.to_string(),
        title: s.title.clone(),
        signed_in_only: s.signed_in_only,
        created_at: rfc3339(s.created_at),
    }
}

/// Shares the thread the conversation shows now: later changes to the
/// conversation do not show through the link.
#[utoipa::path(post, path = "/api/conversations/{id}/shares", tag = "shares", request_body = NewShare,
    operation_id = "create_share",
    responses(
        (status = 201, body = ShareView),
        (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Json(b): Json<NewShare>,
) -> AppResult<(StatusCode, Json<ShareView>)> {
    let cid = Uuid::parse_str(&id).map_err(|_| AppError::ConversationNotFound)?;
    let s = crate::shares::create(&state.store, user.id(), cid, b.signed_in_only).await?;
    Ok((StatusCode::CREATED, Json(view(&state, &s))))
}

#[derive(Serialize, ToSchema)]
pub struct ShareList {
    pub items: Vec<ShareView>,
}

/// The caller's links, newest first.
#[utoipa::path(get, path = "/api/shares", tag = "shares", operation_id = "list_shares",
    responses((status = 200, body = ShareList)))]
pub async fn list(State(state): State<AppState>, user: CurrentUser) -> AppResult<Json<ShareList>> {
    let items = crate::shares::list(&state.store, user.id()).await?;
    Ok(Json(ShareList {
        items: items.iter().map(|s| view(&state, s)).collect(),
    }))
}

/// Revokes a link: its URL answers 404 from now on.
#[utoipa::path(delete, path = "/api/shares/{id}", tag = "shares", operation_id = "revoke_share",
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let id = Uuid::parse_str(&id)
        .map_err(|_| AppError::NotFound("no such shared conversation".into()))?;
    crate::shares::revoke(&state.store, user.id(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct SharedMessageView {
    pub role: MessageRole,
    pub content: String,
    pub model: Option<String>,
    pub created_at: String,
    /// The message's files (images and documents), reached through the
    /// link only.
    pub attachments: Vec<SharedFileView>,
}

/// A file of a shared message: no id of the owner's file, only its place
/// in the snapshot.
#[derive(Serialize, ToSchema)]
pub struct SharedFileView {
    pub name: String,
    pub mime: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// `/api/shared/{token}/files/{n}` (add `?inline=1` to show an image);
    /// None when the file did not come along (an import's placeholder).
    pub url: Option<String>,
}

/// What a viewer of a link sees: no ids of the owner's conversation or
/// messages, no owner.
#[derive(Serialize, ToSchema)]
pub struct SharedView {
    pub title: String,
    pub model: Option<String>,
    pub signed_in_only: bool,
    pub created_at: String,
    pub messages: Vec<SharedMessageView>,
    /// Whether the viewer is signed in (and so may continue the chat).
    pub signed_in: bool,
}

/// A shared conversation. 404 NOT_FOUND for an unknown or revoked token;
/// 401 AUTH_REQUIRED for a link limited to signed-in users.
#[utoipa::path(get, path = "/api/shared/{token}", tag = "shares", operation_id = "get_shared",
    responses(
        (status = 200, body = SharedView),
        (status = 401, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
    ))]
pub async fn shared(
    State(state): State<AppState>,
    MaybeUser(viewer): MaybeUser,
    Path(token): Path<String>,
) -> AppResult<Response> {
    let s = crate::shares::open(&state.store, &token, viewer.as_ref().map(|u| u.id())).await?;
    let body = SharedView {
        title: s.title,
        model: s.model,
        signed_in_only: s.signed_in_only,
        created_at: rfc3339(s.created_at),
        messages: {
            let mut n = 0usize;
            s.messages
                .into_iter()
                .map(|m| SharedMessageView {
                    role: m.role,
                    content: m.content,
                    model: m.model,
                    created_at: rfc3339(m.created_at),
                    attachments: m
                        .attachments
                        .into_iter()
                        .map(|a| {
                            let url = (!a.id.is_nil())
                                .then(|| format!("/api/shared/{}/files/{n}", s.token));
                            n += 1;
                            SharedFileView {
                                name: a.name,
                                mime: a.mime,
                                size: a.size,
                                width: a.width,
                                height: a.height,
                                url,
                            }
                        })
                        .collect(),
                })
                .collect()
        },
        signed_in: viewer.is_some(),
    };
    let mut resp = Json(body).into_response();
    resp.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Ok(resp)
}

/// Copies a shared conversation into the caller's account: a new
/// conversation of their own with the shared thread, to continue.
#[utoipa::path(post, path = "/api/shared/{token}/continue", tag = "shares", operation_id = "continue_shared",
    responses(
        (status = 201, body = ConversationView),
        (status = 401, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
    ))]
pub async fn continue_chat(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(token): Path<String>,
) -> AppResult<(StatusCode, Json<ConversationView>)> {
    let cfg = state.settings();
    let c = crate::shares::continue_in(&state.store, &state.files, &cfg.files, &token, &user.user)
        .await?;
    Ok((StatusCode::CREATED, Json((&c).into())))
}

/// A file of a shared conversation: the `n`th of its snapshot (in the
/// order of the messages), with the same headers as `/api/files/{id}/content`
/// (`nosniff`, a download unless an image is asked for `?inline=1`, a
/// sandboxing CSP). 404 NOT_FOUND for a number past the snapshot's files,
/// an unknown or revoked token, or a file its owner deleted since.
#[utoipa::path(get, path = "/api/shared/{token}/files/{n}", tag = "shares", operation_id = "get_shared_file",
    params(("token" = String, Path, description = "The link's token"),
        ("n" = usize, Path, description = "The file's place in the snapshot, from 0"),
        super::files::ContentQuery),
    responses(
        (status = 200, description = "The file's bytes", content((String = "*/*"))),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
    ))]
pub async fn shared_file(
    State(state): State<AppState>,
    MaybeUser(viewer): MaybeUser,
    Path((token, n)): Path<(String, String)>,
    super::Query(q): super::Query<super::files::ContentQuery>,
) -> AppResult<Response> {
    let n: usize = n
        .parse()
        .map_err(|_| AppError::NotFound("no such file".into()))?;
    let (u, stream, len) = crate::shares::file(
        &state.store,
        &state.files,
        &token,
        viewer.as_ref().map(|v| v.id()),
        n,
    )
    .await?;
    let inline = q.inline == Some(1) && crate::files::is_image_mime(&u.mime);
    let mut resp = axum::body::Body::from_stream(stream).into_response();
    super::files::file_headers(resp.headers_mut(), &u.mime, Some(&u.name), inline);
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Ok(resp)
}

/// The shared page: its own small HTML document (`share.html`), never the
/// app shell, with no referrer sent from it (its URL is the secret).
pub async fn page(State(state): State<AppState>, req: axum::extract::Request) -> Response {
    let mut resp = match state.assets.file("share.html") {
        Some(_) => {
            let uri: axum::http::Uri = "/share.html".parse().expect("literal uri");
            let (mut parts, body) = req.into_parts();
            parts.uri = uri;
            super::assets::serve_asset(
                State(state.clone()),
                axum::extract::Request::from_parts(parts, body),
            )
            .await
        }
        None => AppError::NotFound("not found".into()).into_response(),
    };
    resp.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}
