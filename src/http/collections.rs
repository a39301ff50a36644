//! Knowledge collections (named sets of the caller's documents, attached to
//! conversations) and what was read of an uploaded document. The rules
//! live in `crate::knowledge`.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Json, created, parse_id};
use crate::auth::CurrentUser;
use crate::clock::rfc3339;
use crate::error::{AppError, AppResult};
use crate::knowledge::service::DocInfo;
use crate::state::AppState;
use crate::store::knowledge::{Collection, CollectionPatch};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/collections", get(list).post(create))
        .route("/collections/{id}", get(read).patch(update).delete(remove))
        .route("/documents/{file_id}", get(document))
}

/// What confab read of an uploaded file.
#[derive(Serialize, ToSchema)]
pub struct DocumentView {
    pub file_id: String,
    pub name: String,
    /// `ready`, `failed` (see `error`) or `pending` (not read yet).
    pub status: String,
    /// pdf | docx | html | markdown | csv | code | text (once read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pages: Option<u32>,
    pub chunks: u32,
    /// Estimated tokens of the whole text.
    pub tokens: u64,
    /// Why only part of the text was read (a limit was reached).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<String>,
}

impl From<DocInfo> for DocumentView {
    fn from(d: DocInfo) -> Self {
        DocumentView {
            file_id: d.file_id.to_string(),
            name: d.name,
            status: d.status.to_string(),
            kind: d.kind,
            error: d.error,
            pages: d.pages,
            chunks: d.chunks,
            tokens: d.tokens,
            truncated: d.truncated,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CollectionView {
    pub id: String,
    pub name: String,
    pub description: String,
    /// The collection's files in the order they were added, with what was
    /// read of each.
    pub documents: Vec<DocumentView>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct CollectionList {
    pub items: Vec<CollectionView>,
}

async fn view(state: &AppState, user: &CurrentUser, c: Collection) -> AppResult<CollectionView> {
    let docs = state.knowledge.describe(user.id(), &c).await?;
    Ok(CollectionView {
        id: c.id.to_string(),
        name: c.name,
        description: c.description,
        documents: docs.into_iter().map(Into::into).collect(),
        created_at: rfc3339(c.created_at),
        updated_at: rfc3339(c.updated_at),
    })
}

fn file_ids(raw: &[String]) -> AppResult<Vec<Uuid>> {
    raw.iter().map(|f| parse_id(f, "file")).collect()
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCollection {
    /// 1 to 100 characters.
    pub name: String,
    /// Up to 2000 characters.
    #[serde(default)]
    pub description: String,
    /// Uploaded files (documents, not images) to start with.
    #[serde(default)]
    pub file_ids: Vec<String>,
}

/// Each field given changes the collection; `add` and `remove` take file ids.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCollection {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[utoipa::path(get, path = "/api/collections", operation_id = "list_collections", tag = "knowledge",
    responses((status = 200, body = CollectionList)))]
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
) -> AppResult<Json<CollectionList>> {
    let mut items = Vec::new();
    for c in state.knowledge.list_collections(user.id()).await? {
        items.push(view(&state, &user, c).await?);
    }
    Ok(Json(CollectionList { items }))
}

#[utoipa::path(post, path = "/api/collections", operation_id = "create_collection", tag = "knowledge", request_body = CreateCollection,
    responses((status = 201, body = CollectionView), (status = 404, description = "a file is not the caller's", body = crate::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    Json(req): Json<CreateCollection>,
) -> AppResult<Response> {
    let files = file_ids(&req.file_ids)?;
    let c = state
        .knowledge
        .create_collection(user.id(), &req.name, &req.description, &files)
        .await?;
    Ok(created(view(&state, &user, c).await?))
}

#[utoipa::path(get, path = "/api/collections/{id}", operation_id = "read_collection", tag = "knowledge",
    responses((status = 200, body = CollectionView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn read(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> AppResult<Json<CollectionView>> {
    let id = parse_id(&id, "collection")?;
    let c = state.knowledge.get_collection(user.id(), id).await?;
    Ok(Json(view(&state, &user, c).await?))
}

#[utoipa::path(patch, path = "/api/collections/{id}", operation_id = "update_collection", tag = "knowledge", request_body = UpdateCollection,
    responses((status = 200, body = CollectionView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Json(req): Json<UpdateCollection>,
) -> AppResult<Json<CollectionView>> {
    let id = parse_id(&id, "collection")?;
    let patch = CollectionPatch {
        name: req.name,
        description: req.description,
        add: file_ids(&req.add)?,
        // A malformed id to remove is simply not in the collection.
        remove: req
            .remove
            .iter()
            .filter_map(|f| Uuid::parse_str(f).ok())
            .collect(),
    };
    let c = state
        .knowledge
        .update_collection(user.id(), id, patch)
        .await?;
    Ok(Json(view(&state, &user, c).await?))
}

#[utoipa::path(delete, path = "/api/collections/{id}", operation_id = "delete_collection", tag = "knowledge",
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let id = parse_id(&id, "collection")?;
    state.knowledge.delete_collection(user.id(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/documents/{file_id}", operation_id = "read_document", tag = "knowledge",
    responses((status = 200, body = DocumentView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn document(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(file_id): Path<String>,
) -> AppResult<Json<DocumentView>> {
    let f = parse_id(&file_id, "file")?;
    let d = state
        .knowledge
        .document(user.id(), f)
        .await
        .map_err(|e| match e {
            AppError::NotFound(_) => AppError::not_found("file"),
            o => o,
        })?;
    Ok(Json(d.into()))
}
