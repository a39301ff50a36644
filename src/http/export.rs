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
        .route("/import", post(import))
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
    let walk = ExportWalk {
        state,
        user_id: uid,
        ids: ids.into_iter(),
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
            let Some(id) = self.ids.next() else {
                self.buf.extend_from_slice(b"]}");
                self.done = true;
                break;
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
/// The body is limited to the server's `max_body_bytes` (1 MiB by default):
/// a larger file is refused with 413 PAYLOAD_TOO_LARGE. Malformed JSON or a
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
    Json(doc): Json<Value>,
) -> AppResult<Json<ImportReport>> {
    let ImportPlan { ready, report } =
        plan(&FIELD_CHECKS, user.id(), doc).map_err(AppError::Validation)?;
    if !ready.is_empty() {
        state.store.import_conversations(&ready).await?;
    }
    Ok(Json(report))
}

/// The import checks a conversation's fields like the conversations API.
const FIELD_CHECKS: FieldChecks = FieldChecks {
    title: |t| validate_title(t).map_err(|e| e.to_string()),
    system_prompt: |p| validate_system_prompt(p).map_err(|e| e.to_string()),
    model: |m| validate_model(m).map_err(|e| e.to_string()),
    max_title: super::conversations::MAX_TITLE,
};
