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

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

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
    ConversationView, MessageView, message_view, validate_model, validate_system_prompt,
    validate_title,
};
use super::{Json, Query};
use crate::auth::CurrentUser;
use crate::chat;
use crate::clock::now_ms;
use crate::clock::rfc3339;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::chat::{Conversation, Message, MessageError, MessageRole, MessageStatus, Usage};

/// `format` of a single-conversation export.
pub const CONVERSATION_FORMAT: &str = "confab.conversation.v1";
/// `format` of a full export.
pub const EXPORT_FORMAT: &str = "confab.export.v1";

/// A full export is sent in pieces of about this size.
const CHUNK_BYTES: usize = 32 * 1024;
/// Longest model, provider or finish reason accepted on import.
const MAX_LABEL: usize = 200;

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
#[allow(dead_code)] // documentation only; the import reads JSON values
pub enum ImportDocument {
    Full(FullExport),
    Single(ConversationExport),
}

#[derive(Serialize, ToSchema)]
pub struct ImportedItem {
    /// The conversation's id in the imported document.
    pub source_id: Option<String>,
    /// The new conversation's id.
    pub id: String,
    pub title: String,
    /// How many messages it got.
    pub messages: usize,
}

#[derive(Serialize, ToSchema)]
pub struct SkippedItem {
    pub source_id: Option<String>,
    pub title: Option<String>,
    /// Why it was not imported.
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct ImportReport {
    pub imported: Vec<ImportedItem>,
    pub skipped: Vec<SkippedItem>,
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
        .blocking(move |s| s.conversation_with_messages(uid, cid))
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

/// The shown thread as Markdown: `# Title`, the system prompt as a quote,
/// then one `## User` / `## Assistant (model)` section per message.
pub fn markdown(c: &Conversation, thread: &[Message]) -> String {
    let mut out = String::new();
    out.push_str("# ");
    out.push_str(&one_line(&c.title));
    out.push_str("\n\n");
    if let Some(p) = c.system_prompt.as_deref().filter(|p| !p.trim().is_empty()) {
        out.push_str("> **System prompt**\n>\n");
        for line in p.lines() {
            if line.is_empty() {
                out.push_str(">\n");
            } else {
                out.push_str("> ");
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push('\n');
    }
    for m in thread {
        match m.role {
            MessageRole::User => out.push_str("## User"),
            MessageRole::System => out.push_str("## System"),
            MessageRole::Assistant => {
                out.push_str("## Assistant");
                if let Some(model) = m.model.as_deref().filter(|s| !s.is_empty()) {
                    out.push_str(" (");
                    out.push_str(&one_line(model));
                    out.push(')');
                }
            }
        }
        out.push_str("\n\n");
        out.push_str(m.content.trim_end());
        out.push_str("\n\n");
        match m.status {
            MessageStatus::Complete => {}
            MessageStatus::Streaming | MessageStatus::Interrupted => {
                out.push_str("*(interrupted)*\n\n");
            }
            MessageStatus::Error => {
                let why = m
                    .error
                    .as_ref()
                    .map(|e| format!(": {}", one_line(&e.message)))
                    .unwrap_or_default();
                out.push_str(&format!("*(error{why})*\n\n"));
            }
        }
    }
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    out.push('\n');
    out
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
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
    let ascii = ascii_file_stem(title, fallback);
    let utf8 = utf8_file_stem(title, fallback);
    let value = format!(
        "attachment; filename=\"{ascii}.{ext}\"; filename*=UTF-8''{}.{ext}",
        percent_encode(&utf8)
    );
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("attachment")),
    );
    resp
}

/// A file name made of the title's ASCII letters, digits, spaces and `-_.()`
/// (anything else becomes `_`), at most 80 characters, never starting with
/// a dot; `fallback` when nothing readable is left.
pub fn ascii_file_stem(title: &str, fallback: &str) -> String {
    let mut out = String::new();
    for ch in title.chars() {
        let c = if ch.is_ascii_alphanumeric() || matches!(ch, ' ' | '-' | '_' | '.' | '(' | ')') {
            ch
        } else {
            '_'
        };
        // No runs of replacement characters.
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    let out: String = out
        .trim_matches(|c: char| c == ' ' || c == '.' || c == '_')
        .chars()
        .take(80)
        .collect();
    let out = out.trim_end_matches([' ', '.']).to_string();
    if out.chars().any(|c| c.is_ascii_alphanumeric()) {
        out
    } else {
        fallback.to_string()
    }
}

/// The title with path separators, quotes and control characters replaced,
/// at most 80 characters.
fn utf8_file_stem(title: &str, fallback: &str) -> String {
    let out: String = title
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let out: String = out
        .trim_matches(|c: char| c.is_whitespace() || c == '.')
        .chars()
        .take(80)
        .collect();
    if out.trim().is_empty() {
        fallback.to_string()
    } else {
        out
    }
}

/// RFC 5987 `attr-char` encoding.
fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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
    let ids = state
        .store
        .blocking(move |s| s.conversation_ids(uid))
        .await?;
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
            let r = self
                .state
                .store
                .blocking(move |s| s.conversation_with_messages(uid, id))
                .await;
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

#[derive(Deserialize)]
struct InConversation {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    system_prompt: Option<String>,
    #[serde(default)]
    pinned: bool,
    #[serde(default)]
    archived: bool,
    #[serde(default)]
    current_leaf: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    updated_at: Option<String>,
}

#[derive(Deserialize)]
struct InUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    estimated: bool,
}

#[derive(Deserialize)]
struct InMessage {
    id: String,
    #[serde(default)]
    parent_id: Option<String>,
    role: MessageRole,
    content: String,
    #[serde(default)]
    status: Option<MessageStatus>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    usage: Option<InUsage>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    duration_ms: Option<u64>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    error: Option<MessageError>,
}

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
    let entries = document_entries(doc)?;
    let uid = user.id();
    let mut report = ImportReport {
        imported: Vec::new(),
        skipped: Vec::new(),
    };
    let mut ready: Vec<(Conversation, Vec<Message>)> = Vec::new();
    let mut sources: Vec<Option<String>> = Vec::new();
    for (conv, messages) in entries {
        let source_id = conv.get("id").and_then(Value::as_str).map(str::to_string);
        match prepare(uid, &conv, messages) {
            Ok(x) => {
                sources.push(source_id);
                ready.push(x);
            }
            Err(reason) => report.skipped.push(SkippedItem {
                source_id,
                title: conv
                    .get("title")
                    .and_then(Value::as_str)
                    .map(|t| t.chars().take(super::conversations::MAX_TITLE).collect()),
                reason,
            }),
        }
    }
    // Fresh conversation ids, ordered so that conversations with the same
    // `updated_at` (it has second precision) list in the document's order,
    // which for a full export is newest first.
    let mut rank: Vec<usize> = (0..ready.len()).collect();
    rank.sort_by_key(|&i| (ready[i].0.updated_at_ms, Reverse(i)));
    let mut ids: Vec<Uuid> = (0..ready.len()).map(|_| Uuid::now_v7()).collect();
    ids.sort();
    for (&i, id) in rank.iter().zip(ids) {
        let (c, msgs) = &mut ready[i];
        c.id = id;
        for m in msgs {
            m.conversation_id = id;
        }
    }
    report.imported = ready
        .iter()
        .zip(sources)
        .map(|((c, msgs), source_id)| ImportedItem {
            source_id,
            id: c.id.to_string(),
            title: c.title.clone(),
            messages: msgs.len(),
        })
        .collect();
    if !ready.is_empty() {
        state
            .store
            .blocking(move |s| s.import_conversations(&ready))
            .await?;
    }
    Ok(Json(report))
}

/// Splits a document into (conversation fields, messages) pairs.
fn document_entries(doc: Value) -> AppResult<Vec<(Value, Value)>> {
    let Value::Object(mut obj) = doc else {
        return Err(AppError::validation(
            "the import must be a confab export document (a JSON object)",
        ));
    };
    let format = match obj.get("format") {
        None | Some(Value::Null) => None,
        Some(Value::String(f)) => Some(f.clone()),
        Some(_) => return Err(AppError::validation("format must be a string")),
    };
    let full = match format.as_deref() {
        Some(EXPORT_FORMAT) => true,
        Some(CONVERSATION_FORMAT) => false,
        Some(other) => {
            return Err(AppError::Validation(format!(
                "unsupported format {:?}; expected {EXPORT_FORMAT:?} or {CONVERSATION_FORMAT:?}",
                other.chars().take(50).collect::<String>()
            )));
        }
        None if obj.contains_key("conversations") => true,
        None if obj.contains_key("conversation") => false,
        None => {
            return Err(AppError::validation(
                "not a confab export: expected \"conversations\" or \"conversation\"",
            ));
        }
    };
    if full {
        let Some(Value::Array(list)) = obj.remove("conversations") else {
            return Err(AppError::validation("conversations must be an array"));
        };
        Ok(list.into_iter().map(split_entry).collect())
    } else {
        let conv = match obj.remove("conversation") {
            Some(v @ Value::Object(_)) => v,
            _ => return Err(AppError::validation("conversation must be an object")),
        };
        let messages = obj.remove("messages").unwrap_or(Value::Null);
        Ok(vec![(conv, messages)])
    }
}

/// A full export's entry is the conversation's fields plus `messages`;
/// `{conversation, messages}` (the single-conversation shape) is accepted too.
fn split_entry(v: Value) -> (Value, Value) {
    match v {
        Value::Object(mut o) => {
            let messages = o.remove("messages").unwrap_or(Value::Null);
            match o.remove("conversation") {
                Some(c @ Value::Object(_)) => (c, messages),
                Some(other) => {
                    o.insert("conversation".into(), other);
                    (Value::Object(o), messages)
                }
                None => (Value::Object(o), messages),
            }
        }
        other => (other, Value::Null),
    }
}

fn parse_time(s: Option<&str>) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s?, &time::format_description::well_known::Rfc3339).ok()?;
    Some(t.unix_timestamp())
}

fn label(what: &str, v: Option<String>) -> Result<Option<String>, String> {
    match v {
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) if s.chars().count() > MAX_LABEL => {
            Err(format!("{what} must be at most {MAX_LABEL} characters"))
        }
        other => Ok(other),
    }
}

fn short(id: &str) -> String {
    let s: String = id.chars().take(64).collect();
    format!("{s:?}")
}

/// Checks one conversation and builds its records with new message ids (the
/// conversation id is left nil for the caller to set), or says why it
/// cannot be imported.
fn prepare(
    user_id: Uuid,
    conv: &Value,
    messages: Value,
) -> Result<(Conversation, Vec<Message>), String> {
    if !conv.is_object() {
        return Err("not a conversation object".into());
    }
    let c: InConversation =
        serde_path_to_error::deserialize(conv).map_err(|e| format!("invalid conversation: {e}"))?;
    let msgs: Vec<InMessage> = match messages {
        Value::Null => Vec::new(),
        v => serde_path_to_error::deserialize(v).map_err(|e| format!("invalid messages: {e}"))?,
    };

    let (title, title_auto) = match c.title.as_deref() {
        None => (chat::DEFAULT_TITLE.to_string(), true),
        Some(t) => (validate_title(t).map_err(|e| e.to_string())?, false),
    };
    let system_prompt = match c.system_prompt {
        Some(p) => {
            validate_system_prompt(&p).map_err(|e| e.to_string())?;
            Some(p).filter(|p| !p.trim().is_empty())
        }
        None => None,
    };
    let model = c.model.filter(|m| !m.is_empty());
    if let Some(m) = &model {
        validate_model(m).map_err(|e| e.to_string())?;
    }

    // Message ids are only keys within the document: unique, and every
    // parent one of them.
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(msgs.len());
    for (i, m) in msgs.iter().enumerate() {
        if index.insert(m.id.as_str(), i).is_some() {
            return Err(format!(
                "message id {} appears more than once",
                short(&m.id)
            ));
        }
    }
    let mut parent: Vec<Option<usize>> = Vec::with_capacity(msgs.len());
    for m in &msgs {
        parent.push(match m.parent_id.as_deref() {
            None => None,
            Some(p) => Some(*index.get(p).ok_or_else(|| {
                format!(
                    "message {}: parent_id {} is not a message of this conversation",
                    short(&m.id),
                    short(p)
                )
            })?),
        });
    }
    // Parents before children, otherwise in document order; whatever is
    // left over sits on a cycle.
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); msgs.len()];
    let mut heap = BinaryHeap::new();
    for (i, p) in parent.iter().enumerate() {
        match p {
            Some(p) => children[*p].push(i),
            None => heap.push(Reverse(i)),
        }
    }
    let mut order = Vec::with_capacity(msgs.len());
    while let Some(Reverse(i)) = heap.pop() {
        order.push(i);
        heap.extend(children[i].iter().map(|&c| Reverse(c)));
    }
    if order.len() != msgs.len() {
        let mut placed = vec![false; msgs.len()];
        for &i in &order {
            placed[i] = true;
        }
        let first = placed.iter().position(|p| !p).unwrap_or(0);
        return Err(format!(
            "message {} is part of a parent_id cycle",
            short(&msgs[first].id)
        ));
    }

    // New ids, time-ordered in the same order as the original messages.
    let mut ids: Vec<Uuid> = (0..msgs.len()).map(|_| Uuid::now_v7()).collect();
    ids.sort();
    let mut new_id = vec![Uuid::nil(); msgs.len()];
    for (k, &i) in order.iter().enumerate() {
        new_id[i] = ids[k];
    }

    let leaf = match c.current_leaf.as_deref() {
        Some(l) => Some(*index.get(l).ok_or_else(|| {
            format!(
                "current_leaf {} is not a message of this conversation",
                short(l)
            )
        })?),
        None => None,
    };
    drop(index);

    // The caller gives the conversation its id.
    let conv_id = Uuid::nil();
    let now = crate::clock::now();
    let mut out = Vec::with_capacity(msgs.len());
    for (i, m) in msgs.into_iter().enumerate() {
        let status = match m.status.unwrap_or(MessageStatus::Complete) {
            MessageStatus::Streaming => MessageStatus::Interrupted,
            s => s,
        };
        let ctx = |e: String| format!("message {}: {e}", short(&m.id));
        out.push(Message {
            id: new_id[i],
            conversation_id: conv_id,
            parent_id: parent[i].map(|p| new_id[p]),
            role: m.role,
            content: m.content,
            model: label("model", m.model).map_err(ctx)?,
            provider: label("provider", m.provider).map_err(ctx)?,
            status,
            usage: m.usage.map(|u| Usage {
                input_tokens: u.input_tokens,
                output_tokens: u.output_tokens,
                estimated: u.estimated,
            }),
            created_at: parse_time(m.created_at.as_deref()).unwrap_or(now),
            duration_ms: m.duration_ms,
            finish_reason: label("finish_reason", m.finish_reason).map_err(ctx)?,
            error: m.error,
        });
    }
    out.sort_by_key(|m| m.id);

    let current_leaf = match leaf {
        Some(i) => Some(new_id[i]),
        // The newest root's newest path.
        None => out
            .iter()
            .rev()
            .find(|m| m.parent_id.is_none())
            .map(|root| chat::deepest_leaf(&out, root.id)),
    };

    let created_at = parse_time(c.created_at.as_deref()).unwrap_or(now);
    let updated_at_ms = parse_time(c.updated_at.as_deref())
        .map(|t| (t.max(0) as u64) * 1000)
        .unwrap_or_else(now_ms);
    Ok((
        Conversation {
            id: conv_id,
            user_id,
            title,
            title_auto,
            model,
            provider: None,
            system_prompt,
            created_at,
            updated_at_ms,
            pinned: c.pinned,
            archived: c.archived,
            current_leaf,
        },
        out,
    ))
}
