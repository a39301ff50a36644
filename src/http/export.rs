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
use crate::transfer::import::{FieldChecks, ImportPlan, ImportReport, plan};
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

/// Imports a full export (`confab.export.v1`) or a single-conversation
/// export (`confab.conversation.v1`) into the caller's account.
///
/// Every conversation and message gets a new id (UUIDv7, in the original
/// order); parent links and `current_leaf` are remapped; nothing existing is
/// changed. Each conversation is checked on its own — title and system
/// prompt length, roles, parents that are messages of the same conversation,
/// no cycles, unique message ids — and skipped with a reason when it fails;
/// the others are imported together in one store transaction. Messages that
/// were still `streaming` are imported as `interrupted`.
///
/// A full export's `files` are stored as the caller's through the same
/// checks as an upload (size, quota, type), and the messages' attachments
/// point at them. The body is limited to `max_body_bytes` plus twice
/// `[files] max_file_bytes` (51 MiB by default): a larger one is refused
/// with 413 PAYLOAD_TOO_LARGE. Malformed JSON or a
/// document that is not an export is 400 VALIDATION_FAILED.
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
    let cfg = state.settings();
    let limit = import_limit(&cfg);
    let doc = read_document(req, limit).await?;
    let (doc, files) = take_files(doc);
    let (map, files_imported, files_skipped) = import_files(&state, &cfg, &user, files).await;
    let ImportPlan { ready, mut report } =
        plan(&FIELD_CHECKS, user.id(), doc, &map).map_err(AppError::Validation)?;
    if !ready.is_empty() {
        state.store.import_conversations(&ready).await?;
    }
    report.files_imported = files_imported;
    report.files_skipped = files_skipped;
    Ok(Json(report))
}

/// The largest import body: room for files beside the conversations.
pub fn import_limit(cfg: &crate::config::Config) -> usize {
    let files = usize::try_from(cfg.files.max_file_bytes.saturating_mul(2)).unwrap_or(usize::MAX);
    cfg.max_body_bytes.saturating_add(files)
}

/// The body as a JSON object, within `limit` bytes.
async fn read_document(req: axum::extract::Request, limit: usize) -> AppResult<Value> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct
        .trim()
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return Err(AppError::validation(
            "request body must be JSON with Content-Type: application/json",
        ));
    }
    let bytes = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| AppError::PayloadTooLarge(limit))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(AppError::validation("request body must be a JSON object")),
        Err(e) => Err(AppError::Validation(format!(
            "request body is not valid JSON: {e}"
        ))),
    }
}

/// Takes a full export's `files` out of the document.
fn take_files(doc: Value) -> (Value, Vec<Value>) {
    match doc {
        Value::Object(mut o) => {
            let files = match o.remove("files") {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            };
            (Value::Object(o), files)
        }
        other => (other, Vec::new()),
    }
}

/// Stores the document's files as the caller's, through the same checks as
/// an upload (size, quota, type); maps their old ids to the new files.
async fn import_files(
    state: &AppState,
    cfg: &crate::config::Config,
    user: &CurrentUser,
    files: Vec<Value>,
) -> (
    std::collections::HashMap<Uuid, crate::store::chat::Attachment>,
    usize,
    Vec<crate::transfer::import::SkippedFile>,
) {
    use base64::Engine;
    let mut map = std::collections::HashMap::new();
    let mut skipped = Vec::new();
    for f in files {
        let name = f.get("name").and_then(Value::as_str).map(str::to_string);
        let old = f
            .get("id")
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok());
        let bytes = f
            .get("content_base64")
            .and_then(Value::as_str)
            .ok_or("no content_base64".to_string())
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|e| format!("content_base64 is not base64: {e}"))
            });
        let stored = match bytes {
            Err(reason) => Err(reason),
            Ok(bytes) => {
                let body =
                    futures::stream::once(
                        async move { Ok::<_, std::io::Error>(Bytes::from(bytes)) },
                    );
                let nf = crate::files::NewFile {
                    name: name.clone(),
                    declared_size: None,
                    body: futures::StreamExt::boxed(body),
                };
                state
                    .files
                    .upload(&cfg.files, &user.user, nf)
                    .await
                    .map_err(|e| e.to_string())
            }
        };
        match stored {
            Ok(u) => {
                if let Some(old) = old {
                    map.insert(old, crate::chat::attachments::attachment_of(&u));
                }
            }
            Err(reason) => skipped.push(crate::transfer::import::SkippedFile { name, reason }),
        }
    }
    let n = map.len();
    (map, n, skipped)
}

/// The import checks a conversation's fields like the conversations API.
const FIELD_CHECKS: FieldChecks = FieldChecks {
    title: |t| validate_title(t).map_err(|e| e.to_string()),
    system_prompt: |p| validate_system_prompt(p).map_err(|e| e.to_string()),
    model: |m| validate_model(m).map_err(|e| e.to_string()),
    max_title: super::conversations::MAX_TITLE,
};
