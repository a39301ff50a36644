//! Uploaded files: upload (multipart), list, read, download, thumbnail,
//! delete. The rules (limits, quota, types, blobs) live in `crate::files`.
//!
//! Downloads are `Content-Disposition: attachment` with the detected type
//! and `nosniff`; only images (png, jpeg, gif, webp) may be asked for
//! `inline`, and every file answer carries `Content-Security-Policy:
//! sandbox`, so a file is never run as a page of this origin.

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Json, Query, parse_id};
use crate::auth::{ClientInfo, CurrentUser};
use crate::clock::rfc3339;
use crate::error::{AppError, AppResult};
use crate::files::{FileKind, NewFile, is_image_mime};
use crate::state::AppState;
use crate::store::uploads::Upload;

/// Multipart framing allowed on top of `max_file_bytes` before a request's
/// `Content-Length` alone refuses it.
pub const MULTIPART_SLACK: u64 = 64 * 1024;

/// The policy of every file answer: nothing in it runs, nothing loads.
pub const FILE_CSP: &str = "sandbox; default-src 'none'; img-src 'self'; style-src 'unsafe-inline'";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/files",
            get(list)
                .post(upload)
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/files/{id}", get(read).delete(remove))
        .route("/files/{id}/content", get(content))
        .route("/files/{id}/thumbnail", get(thumbnail))
}

/// One uploaded file.
#[derive(Serialize, ToSchema)]
pub struct FileView {
    pub id: String,
    /// The display name (made safe: no path, no control characters).
    pub name: String,
    /// The type detected from the content.
    pub mime: String,
    /// image | pdf | docx | text
    pub kind: String,
    pub size: u64,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    /// Pixels, for images.
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub created_at: String,
}

/// The kind of a stored type.
pub fn kind_of(mime: &str) -> FileKind {
    if is_image_mime(mime) {
        FileKind::Image
    } else if mime == "application/pdf" {
        FileKind::Pdf
    } else if mime == crate::files::detect::DOCX_MIME {
        FileKind::Docx
    } else {
        FileKind::Text
    }
}

impl From<&Upload> for FileView {
    fn from(u: &Upload) -> Self {
        FileView {
            id: u.id.to_string(),
            name: u.name.clone(),
            mime: u.mime.clone(),
            kind: match kind_of(&u.mime) {
                FileKind::Image => "image",
                FileKind::Pdf => "pdf",
                FileKind::Docx => "docx",
                FileKind::Text => "text",
            }
            .into(),
            size: u.size,
            sha256: u.sha256.clone(),
            width: u.width,
            height: u.height,
            created_at: rfc3339(u.created_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct FileList {
    /// Newest first.
    pub items: Vec<FileView>,
    pub next_cursor: Option<String>,
    /// Bytes the caller's files take.
    pub used_bytes: u64,
    /// The caller's storage quota in bytes; null = unlimited.
    pub quota_bytes: Option<u64>,
    /// The largest file accepted, in bytes.
    pub max_file_bytes: u64,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FileListQuery {
    /// 1 to 200 (default 50).
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The caller's files, newest first, with the storage they use and their
/// quota.
#[utoipa::path(get, path = "/api/files", operation_id = "list_files", tag = "files", params(FileListQuery),
    responses((status = 200, body = FileList)))]
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(q): Query<FileListQuery>,
) -> AppResult<Json<FileList>> {
    let limit = match q.limit {
        None => 50,
        Some(n) if (1..=200).contains(&n) => n,
        Some(_) => return Err(AppError::validation("limit must be between 1 and 200")),
    };
    let before = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => Some(
            uuid::Uuid::parse_str(c).map_err(|_| AppError::validation("cursor is not valid"))?,
        ),
        None => None,
    };
    let cfg = state.settings();
    let mut items = state.files.list(user.id(), before, limit + 1).await?;
    let more = items.len() > limit;
    items.truncate(limit);
    let storage = state.files.storage(&cfg.files, &user.user).await?;
    Ok(Json(FileList {
        next_cursor: more
            .then(|| items.last().map(|u| u.id.to_string()))
            .flatten(),
        items: items.iter().map(FileView::from).collect(),
        used_bytes: storage.used,
        quota_bytes: storage.quota,
        max_file_bytes: cfg.files.max_file_bytes,
    }))
}

/// The upload form: one field `file`.
#[derive(ToSchema)]
#[allow(dead_code)] // documentation only: the handler reads the multipart stream
pub struct UploadForm {
    /// The file; its name is kept (made safe) for display.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// Uploads one file (`multipart/form-data`, field `file`). The type is
/// detected from the content: images (PNG, JPEG, GIF, WebP), PDF, DOCX and
/// UTF-8 text (plain, Markdown, CSV, HTML, source code; the name's
/// extension tells these apart). A body over the size limit is refused as
/// soon as its `Content-Length`, or the bytes received so far, say so.
#[utoipa::path(post, path = "/api/files", operation_id = "upload_file", tag = "files",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, body = FileView),
    (status = 400, description = "`VALIDATION_FAILED`: not a multipart body with one `file` field; `FILE_EMPTY`: 0 bytes", body = crate::error::ErrorBody),
    (status = 413, description = "`PAYLOAD_TOO_LARGE`: over `[files] max_file_bytes` (the message names the limit); `STORAGE_QUOTA_EXCEEDED`: over the caller's storage quota", body = crate::error::ErrorBody),
    (status = 415, description = "`UNSUPPORTED_FILE_TYPE`: not a type confab keeps", body = crate::error::ErrorBody),
    (status = 422, description = "`FILE_UNREADABLE`: an image whose header cannot be read or that has too many pixels", body = crate::error::ErrorBody)))]
pub async fn upload(
    State(state): State<AppState>,
    user: CurrentUser,
    client: ClientInfo,
    req: Request,
) -> AppResult<Response> {
    let cfg = state.settings();
    let declared = declared_length(req.headers());
    if declared.is_some_and(|n| n > cfg.files.max_file_bytes + MULTIPART_SLACK) {
        return Err(crate::files::FilesError::TooLarge(cfg.files.max_file_bytes).into());
    }
    let mut form = axum::extract::Multipart::from_request(req, &state)
        .await
        .map_err(|e| {
            AppError::Validation(format!(
                "the body must be multipart/form-data with a field \"file\": {}",
                e.body_text()
            ))
        })?;
    let field = file_field(&mut form).await?;
    let name = field.file_name().map(str::to_string);
    let body = field
        .map_err(|e| std::io::Error::other(e.body_text()))
        .boxed();
    let file = NewFile {
        name,
        declared_size: None,
        body,
    };
    let u = state
        .files
        .upload(&cfg.files, &user.user, file)
        .await
        .map_err(AppError::from);
    let outcome = u.as_ref().map_or_else(|e| e.code(), |_| "ok");
    let target = u.as_ref().ok().map(|u| u.id.to_string());
    super::auth::audit(
        &state,
        &client,
        Some(&user.user),
        None,
        "file.upload",
        target,
        outcome,
    )
    .await;
    let u = u?;
    Ok(super::created(FileView::from(&u)))
}

/// The form's first field, which must be `file`.
async fn file_field(
    form: &mut axum::extract::Multipart,
) -> AppResult<axum::extract::multipart::Field<'_>> {
    match form.next_field().await.map_err(multipart_error)? {
        None => Err(AppError::validation("the form has no field \"file\"")),
        Some(f) if f.name() == Some("file") => Ok(f),
        Some(f) => Err(AppError::Validation(format!(
            "unknown form field {:?}: send the file in the field \"file\"",
            f.name().unwrap_or("")
        ))),
    }
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> AppError {
    AppError::Validation(format!(
        "the multipart body is not valid: {}",
        e.body_text()
    ))
}

fn declared_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// One of the caller's files.
#[utoipa::path(get, path = "/api/files/{id}", operation_id = "read_file", tag = "files",
    params(("id" = String, Path, description = "File id")),
    responses((status = 200, body = FileView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn read(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> AppResult<Json<FileView>> {
    let id = parse_id(&id, "file")?;
    let u = state.files.get(user.id(), id).await?;
    Ok(Json(FileView::from(&u)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ContentQuery {
    /// `1`: show an image in the browser (png, jpeg, gif and webp only;
    /// anything else is always a download).
    pub inline: Option<u8>,
}

/// The content: a download (`Content-Disposition: attachment`, RFC 6266
/// file name) with the detected type, `nosniff` and a sandboxing CSP;
/// images may be asked for `inline` (`?inline=1`).
#[utoipa::path(get, path = "/api/files/{id}/content", operation_id = "file_content", tag = "files",
    params(("id" = String, Path, description = "File id"), ContentQuery),
    responses((status = 200, description = "The file's bytes, with the type detected from its content at upload (an image type, `application/pdf`, the DOCX type, or a `text/…` type)", content((String = "*/*"))),
    (status = 404, body = crate::error::ErrorBody)))]
pub async fn content(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Query(q): Query<ContentQuery>,
) -> AppResult<Response> {
    let id = parse_id(&id, "file")?;
    let (u, stream, len) = state.files.content(user.id(), id).await?;
    let inline = q.inline == Some(1) && is_image_mime(&u.mime);
    let mut resp = Body::from_stream(stream).into_response();
    file_headers(resp.headers_mut(), &u.mime, Some(&u.name), inline);
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Ok(resp)
}

/// A small preview of an image (PNG or JPEG, at most 256 pixels a side),
/// made at the first request and kept. 404 for files that are not images.
#[utoipa::path(get, path = "/api/files/{id}/thumbnail", operation_id = "file_thumbnail", tag = "files",
    params(("id" = String, Path, description = "File id")),
    responses((status = 200, description = "The thumbnail: PNG for images with transparency, JPEG otherwise", content((String = "image/png"), (String = "image/jpeg"))),
    (status = 404, body = crate::error::ErrorBody),
    (status = 422, description = "`FILE_UNREADABLE`: the image cannot be decoded", body = crate::error::ErrorBody)))]
pub async fn thumbnail(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let id = parse_id(&id, "file")?;
    let (mime, bytes) = state.files.thumbnail(user.id(), id).await?;
    let mut resp = Body::from(bytes).into_response();
    file_headers(resp.headers_mut(), &mime, None, true);
    Ok(resp)
}

/// Deletes one of the caller's files (its content goes when no other file
/// has the same bytes).
#[utoipa::path(delete, path = "/api/files/{id}", operation_id = "delete_file", tag = "files",
    params(("id" = String, Path, description = "File id")),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    user: CurrentUser,
    client: ClientInfo,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let id = parse_id(&id, "file")?;
    let u = state.files.delete(user.id(), id).await?;
    super::auth::audit(
        &state,
        &client,
        Some(&user.user),
        None,
        "file.delete",
        Some(u.id.to_string()),
        "ok",
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Type, disposition, caching and the sandboxing policy of a file answer.
pub(super) fn file_headers(h: &mut HeaderMap, mime: &str, name: Option<&str>, inline: bool) {
    let ct = if mime.starts_with("text/") {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    };
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&ct).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    let disposition = if inline { "inline" } else { "attachment" };
    let value = match name {
        Some(n) => {
            let ascii = crate::transfer::filename::ascii_file_stem(n, "file");
            let utf8 = crate::transfer::filename::utf8_file_stem(n, "file");
            format!(
                "{disposition}; filename=\"{ascii}\"; filename*=UTF-8''{}",
                crate::transfer::filename::percent_encode(&utf8)
            )
        }
        None => disposition.to_string(),
    };
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("attachment")),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(FILE_CSP),
    );
    // A file's bytes never change under its id.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=86400"),
    );
}
