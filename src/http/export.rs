//! Export and import of conversations.
//!
//! - `GET /api/conversations/{id}/export?format=json|markdown`: one
//!   conversation, either as a `confab.conversation.v1` JSON document (the
//!   whole message tree) or as Markdown (the thread currently shown).
//! - `GET /api/export`: every conversation of the caller (archived too) as one
//!   `confab.export.v1` JSON document, streamed one conversation at a time.
//! - `POST /api/import`: takes either document back and creates new
//!   conversations with new ids; nothing is overwritten. Each conversation is
//!   validated on its own: an invalid one is skipped with a reason, the others
//!   are imported (all of them in one store transaction).

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::conversations::{
    ConversationView, MessageView, message_view, validate_system_prompt, validate_title,
};
use super::{Json, Query};
use crate::auth::CurrentUser;
use crate::chat;
use crate::chat::validate_model;
use crate::clock::rfc3339;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::chat::Message;
use crate::transfer::filename::content_disposition;
use crate::transfer::import::{FieldChecks, ImportReport};
use crate::transfer::markdown::markdown;
use crate::transfer::{CONVERSATION_FORMAT, EXPORT_FORMAT};

/// A full export is sent in pieces of about this size.
const CHUNK_BYTES: usize = 32 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/conversations/{id}/export", get(export_conversation))
        .route("/export", get(export_all))
        .route(
            "/import",
            post(import).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route(
            "/imports",
            post(start_import)
                .get(list_imports)
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/imports/{id}", get(get_import))
}

// ---- document shapes ------------------------------------------------------

/// A single-conversation export (`format` = `confab.conversation.v1`).
#[derive(Serialize, ToSchema)]
pub struct ConversationExport {
    /// Always `confab.conversation.v1`.
    pub format: String,
    pub exported_at: String,
    pub conversation: ConversationView,
    /// Every message of the tree (all branches), oldest first; `parent_id`
    /// gives the tree.
    pub messages: Vec<MessageView>,
}

/// One conversation in a full export: the conversation's fields and all of
/// its messages.
#[derive(Serialize, ToSchema)]
pub struct ExportedConversation {
    #[serde(flatten)]
    pub conversation: ConversationView,
    /// Every message of the tree (all branches), oldest first.
    pub messages: Vec<MessageView>,
}

/// A full export (`format` = `confab.export.v1`). Streamed: it is never
/// built whole in memory.
#[derive(Serialize, ToSchema)]
pub struct FullExport {
    /// Always `confab.export.v1`.
    pub format: String,
    pub exported_at: String,
    /// Newest first (by last activity), archived ones included.
    pub conversations: Vec<ExportedConversation>,
    /// The user's uploaded files with their content, newest first.
    pub files: Vec<ExportedFile>,
}

/// What `POST /api/import` accepts: either export document.
#[derive(ToSchema)]
#[allow(dead_code, clippy::large_enum_variant)] // documentation only; the import reads JSON values
pub enum ImportDocument {
    Full(FullExport),
    Single(ConversationExport),
}

// ---- single conversation --------------------------------------------------

#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    #[default]
    Json,
    Markdown,
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ExportQuery {
    /// `json` (default: the whole tree, for import) or `markdown` (the
    /// thread currently shown, for reading).
    #[param(inline)]
    pub format: Option<ExportFormat>,
}

fn not_found(e: StoreError) -> AppError {
    match e {
        StoreError::NotFound => AppError::ConversationNotFound,
        other => other.into(),
    }
}

/// One conversation as a download. `json` holds every message of the tree
/// (all branches, oldest first) and can be imported again; `markdown` is the
/// thread currently shown, with the system prompt as a quote at the top.
#[utoipa::path(get, path = "/api/conversations/{id}/export", tag = "conversations", params(ExportQuery),
    responses(
        (status = 200, description = "An attachment (`Content-Disposition`)", content(
            (ConversationExport = "application/json"),
            (String = "text/markdown"),
        )),
        (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
    ))]
pub async fn export_conversation(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Query(q): Query<ExportQuery>,
) -> AppResult<Response> {
    let cid = Uuid::parse_str(&id).map_err(|_| AppError::ConversationNotFound)?;
    let uid = user.id();
    let (c, msgs) = state
        .store
        .conversation_with_messages(uid, cid)
        .await
        .map_err(not_found)?;
    match q.format.unwrap_or_default() {
        ExportFormat::Json => {
            let doc = ConversationExport {
                format: CONVERSATION_FORMAT.into(),
                exported_at: rfc3339(crate::clock::now()),
                conversation: (&c).into(),
                messages: msgs.iter().map(|m| export_view(&state, m)).collect(),
            };
            let body = serde_json::to_vec(&doc).map_err(AppError::internal)?;
            Ok(attachment(
                body.into(),
                "application/json",
                &c.title,
                "conversation",
                "json",
            ))
        }
        ExportFormat::Markdown => {
            let thread = chat::thread_to(&msgs, c.current_leaf);
            Ok(attachment(
                markdown(&c, &thread).into(),
                "text/markdown; charset=utf-8",
                &c.title,
                "conversation",
                "md",
            ))
        }
    }
}

fn export_view(state: &AppState, m: &Message) -> MessageView {
    let mut v = message_view(state, m, None);
    // A running answer's generation means nothing outside this server.
    v.generation_id = None;
    v
}

/// A download: content type, and `Content-Disposition: attachment` with an
/// ASCII-safe `filename` and the exact title in `filename*` (RFC 6266).
fn attachment(
    body: Body,
    content_type: &'static str,
    title: &str,
    fallback: &str,
    ext: &str,
) -> Response {
    let value = content_disposition(title, fallback, ext);
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("attachment")),
    );
    resp
}

// ---- full export ----------------------------------------------------------

/// Every conversation of the caller, archived ones too, newest first, as one
/// `confab.export.v1` document: `{format, exported_at, conversations: [{…
/// conversation fields, messages: [every message, oldest first]}]}`.
///
/// The body is streamed: the list of conversation ids is read first (16
/// bytes each), then the conversations are read and written one at a time,
/// so memory stays bounded by the largest conversation. A conversation
/// deleted while the export runs is left out; one created meanwhile is not
/// included. If the store fails part way, the response is cut off (never a
/// well-formed but incomplete document).
#[utoipa::path(get, path = "/api/export", tag = "conversations",
    responses((status = 200, description = "An attachment `confab-export-<date>.json` (streamed)", body = FullExport)))]
pub async fn export_all(State(state): State<AppState>, user: CurrentUser) -> AppResult<Response> {
    let uid = user.id();
    let ids = state.store.conversation_ids(uid).await?;
    let now = time::OffsetDateTime::now_utc();
    let exported_at = rfc3339(now.unix_timestamp());
    let head = format!(
        "{{\"format\":{},\"exported_at\":{},\"conversations\":[",
        Value::from(EXPORT_FORMAT),
        Value::from(exported_at)
    );
    let files = state.files.all_of(uid).await?;
    let walk = ExportWalk {
        state,
        user_id: uid,
        ids: ids.into_iter(),
        files: files.into_iter(),
        in_files: false,
        buf: head.into_bytes(),
        first: true,
        done: false,
    };
    let stream = futures::stream::unfold(walk, |mut w| async move {
        let chunk = w.next_chunk().await?;
        Some((chunk, w))
    });
    let date = format!(
        "{:04}-{:02}-{:02}",
        now.year(),
        u8::from(now.month()),
        now.day()
    );
    let mut resp = Body::from_stream(stream).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!(
            "attachment; filename=\"confab-export-{date}.json\""
        ))
        .expect("ascii"),
    );
    Ok(resp)
}

struct ExportWalk {
    state: AppState,
    user_id: Uuid,
    ids: std::vec::IntoIter<Uuid>,
    /// The user's files, written after the conversations with their
    /// content (base64), one at a time.
    files: std::vec::IntoIter<crate::store::uploads::Upload>,
    in_files: bool,
    buf: Vec<u8>,
    first: bool,
    done: bool,
}

impl ExportWalk {
    /// The next piece of the document (about [`CHUNK_BYTES`]), or None at
    /// the end.
    async fn next_chunk(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        if self.done {
            return None;
        }
        while self.buf.len() < CHUNK_BYTES {
            if self.in_files {
                match self.next_file().await {
                    Some(Ok(())) => continue,
                    Some(Err(e)) => return Some(Err(e)),
                    None => {
                        self.buf.extend_from_slice(b"]}");
                        self.done = true;
                        break;
                    }
                }
            }
            let Some(id) = self.ids.next() else {
                self.buf.extend_from_slice(b"],\"files\":[");
                self.in_files = true;
                self.first = true;
                continue;
            };
            let uid = self.user_id;
            let r = self.state.store.conversation_with_messages(uid, id).await;
            let (c, msgs) = match r {
                Ok(x) => x,
                // Deleted since the export started.
                Err(StoreError::NotFound) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "export failed part way");
                    self.done = true;
                    return Some(Err(std::io::Error::other("export failed")));
                }
            };
            let entry = ExportedConversation {
                conversation: (&c).into(),
                messages: msgs.iter().map(|m| export_view(&self.state, m)).collect(),
            };
            if !self.first {
                self.buf.push(b',');
            }
            self.first = false;
            if let Err(e) = serde_json::to_writer(&mut self.buf, &entry) {
                tracing::error!(error = %e, "export failed part way");
                self.done = true;
                return Some(Err(std::io::Error::other("export failed")));
            }
        }
        Some(Ok(Bytes::from(std::mem::take(&mut self.buf))))
    }

    /// Appends the next file (None when there is none left).
    async fn next_file(&mut self) -> Option<Result<(), std::io::Error>> {
        use base64::Engine;
        loop {
            let u = self.files.next()?;
            let (u, bytes) = match self.state.files.bytes(self.user_id, u.id).await {
                Ok(x) => x,
                // Deleted since the export started.
                Err(crate::files::FilesError::NotFound) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "export failed part way");
                    self.done = true;
                    return Some(Err(std::io::Error::other("export failed")));
                }
            };
            let entry = ExportedFile {
                file: (&u).into(),
                content_base64: base64::engine::general_purpose::STANDARD.encode(&bytes),
            };
            if !self.first {
                self.buf.push(b',');
            }
            self.first = false;
            if serde_json::to_writer(&mut self.buf, &entry).is_err() {
                self.done = true;
                return Some(Err(std::io::Error::other("export failed")));
            }
            return Some(Ok(()));
        }
    }
}

/// One file in a full export: its view and its content.
#[derive(Serialize, ToSchema)]
pub struct ExportedFile {
    #[serde(flatten)]
    pub file: super::files::FileView,
    /// The bytes, base64.
    pub content_base64: String,
}

// ---- import ---------------------------------------------------------------

/// Imports a file into the caller's account and answers when it is done:
/// confab's own exports (`confab.export.v1`, `confab.conversation.v1`), or
/// a data export of ChatGPT, Claude, Open WebUI or LibreChat (its
/// `conversations.json`, or the zip as downloaded), recognised from the
/// content. `POST /api/imports` does the same as a job with progress.
///
/// Every conversation and message gets a new id (UUIDv7, in the original
/// order); parent links and `current_leaf` are remapped; nothing existing is
/// changed. Each conversation is checked on its own — title and system
/// prompt length, roles, parents that are messages of the same conversation,
/// no cycles, unique message ids — and skipped with a reason when it fails.
/// A conversation imported before from the same source (its id in the
/// file) and still present is skipped as `already imported`: importing a
/// file twice adds nothing. Messages that were still `streaming` are
/// imported as `interrupted`.
///
/// The body is read as a stream into a temporary file (up to
/// `max_import_bytes`, 2 GiB by default: a larger one is 413
/// PAYLOAD_TOO_LARGE) and parsed one conversation at a time. A file that is
/// not JSON or matches no known format is 400 VALIDATION_FAILED and imports
/// nothing.
#[utoipa::path(post, path = "/api/import", tag = "conversations", request_body = ImportDocument,
    responses(
        (status = 200, body = ImportReport),
        (status = 400, body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody),
    ))]
pub async fn import(
    State(state): State<AppState>,
    user: CurrentUser,
    req: axum::extract::Request,
) -> AppResult<Json<ImportReport>> {
    check_type(&req)?;
    let limit = state.settings().max_import_bytes;
    let path = spool(&state, req.into_body(), limit).await?;
    let job = std::sync::Arc::new(crate::transfer::jobs::Job::new(user.id(), None));
    match crate::transfer::run::run(
        &deps(&state),
        &FIELD_CHECKS,
        &user.user,
        path.to_path_buf(),
        job,
    )
    .await
    {
        Ok(report) => Ok(Json(report)),
        Err(f) if f.report.imported.is_empty() && f.report.files_imported == 0 => {
            Err(AppError::Validation(f.reason))
        }
        Err(mut f) => {
            f.report.error = Some(f.reason);
            Ok(Json(f.report))
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct StartImportQuery {
    /// The file's name, shown with the job.
    pub name: Option<String>,
}

/// Starts an import job (the same import as `POST /api/import`) and answers
/// 202 with it as soon as the file is uploaded; `GET /api/imports/{id}`
/// tells its progress and, once finished, its report. At most two imports
/// of one user run at once (409 CONFLICT).
#[utoipa::path(post, path = "/api/imports", tag = "conversations", params(StartImportQuery),
    request_body(content = String, description = "The export file: JSON, or a zip holding conversations.json", content_type = "application/octet-stream"),
    responses(
        (status = 202, body = crate::transfer::jobs::JobView),
        (status = 400, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody),
    ))]
pub async fn start_import(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(q): Query<StartImportQuery>,
    req: axum::extract::Request,
) -> AppResult<Response> {
    check_type(&req)?;
    let limit = state.settings().max_import_bytes;
    let path = spool(&state, req.into_body(), limit).await?;
    let name = q
        .name
        .map(|n| n.chars().take(200).collect::<String>())
        .filter(|n| !n.trim().is_empty());
    let Some(job) = state.imports.start(user.id(), name).await? else {
        return Err(AppError::Conflict(
            "two imports are running already; wait for one to finish".into(),
        ));
    };
    let view = job.view();
    let st = deps(&state);
    let who = user.user.clone();
    let j = job.clone();
    state.imports.spawn(job, async move {
        let r = crate::transfer::run::run(&st, &FIELD_CHECKS, &who, path.to_path_buf(), j.clone())
            .await;
        drop(path);
        match r {
            Ok(report) => j.finish(report, None).await,
            Err(f) => j.finish(f.report, Some(f.reason)).await,
        }
    });
    Ok((axum::http::StatusCode::ACCEPTED, Json(view)).into_response())
}

#[derive(Serialize, ToSchema)]
pub struct JobList {
    pub items: Vec<crate::transfer::jobs::JobView>,
}

/// The caller's imports running or finished lately, newest first.
#[utoipa::path(get, path = "/api/imports", tag = "conversations",
    responses((status = 200, body = JobList)))]
pub async fn list_imports(
    State(state): State<AppState>,
    user: CurrentUser,
) -> AppResult<Json<JobList>> {
    Ok(Json(JobList {
        items: state.imports.list(user.id()).await?,
    }))
}

/// One import job: progress, and once finished its report.
#[utoipa::path(get, path = "/api/imports/{id}", tag = "conversations",
    responses(
        (status = 200, body = crate::transfer::jobs::JobView),
        (status = 404, body = crate::error::ErrorBody),
    ))]
pub async fn get_import(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> AppResult<Json<crate::transfer::jobs::JobView>> {
    let missing = || AppError::NotFound("no such import".into());
    let id = Uuid::parse_str(&id).map_err(|_| missing())?;
    let job = state
        .imports
        .get(user.id(), id)
        .await?
        .ok_or_else(missing)?;
    Ok(Json(job))
}

fn deps(state: &AppState) -> crate::transfer::run::Deps {
    crate::transfer::run::Deps {
        store: state.store.clone(),
        files: state.files.clone(),
        cfg: state.settings(),
    }
}

/// An import body is JSON or a zip (or bytes of either).
fn check_type(req: &axum::extract::Request) -> AppResult<()> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let ok = [
        "application/json",
        "application/zip",
        "application/x-zip-compressed",
        "application/octet-stream",
    ]
    .iter()
    .any(|t| ct.starts_with(t));
    if !ok {
        return Err(AppError::validation(
            "the import must be sent as application/json, application/zip or application/octet-stream",
        ));
    }
    Ok(())
}

/// Writes the body to a temporary file in the data directory (deleted when
/// the path is dropped), refusing more than `limit` bytes.
async fn spool(state: &AppState, body: Body, limit: u64) -> AppResult<tempfile::TempPath> {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    let dir = state.cfg.data_dir.join("tmp");
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(AppError::internal)?;
    let tmp = tempfile::Builder::new()
        .prefix("import-")
        .tempfile_in(&dir)
        .map_err(AppError::internal)?;
    let (file, path) = tmp.into_parts();
    let mut f = tokio::io::BufWriter::new(tokio::fs::File::from_std(file));
    let mut stream = body.into_data_stream();
    let mut n: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| AppError::validation("the upload was cut off"))?;
        n += chunk.len() as u64;
        if n > limit {
            return Err(AppError::PayloadTooLarge(
                usize::try_from(limit).unwrap_or(usize::MAX),
            ));
        }
        f.write_all(&chunk).await.map_err(AppError::internal)?;
    }
    f.flush().await.map_err(AppError::internal)?;
    Ok(path)
}

/// The import checks a conversation's fields like the conversations API.
const FIELD_CHECKS: FieldChecks = FieldChecks {
    title: |t| validate_title(t).map_err(|e| e.to_string()),
    system_prompt: |p| validate_system_prompt(p).map_err(|e| e.to_string()),
    model: |m| validate_model(m).map_err(|e| e.to_string()),
    max_title: super::conversations::MAX_TITLE,
};
