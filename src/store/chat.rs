//! Conversations and their message trees. Every call takes the owner's
//! user id: a conversation of another user is `NotFound`, never visible.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Conversation {
    pub id: Uuid,
    pub user_id: Uuid,
    pub title: String,
    /// True while the title is the placeholder or was made by confab; a
    /// title the user typed is never replaced.
    #[serde(default)]
    pub title_auto: bool,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub system_prompt: Option<String>,
    pub created_at: i64,
    /// Milliseconds, so the newest-first index orders edits within a second.
    pub updated_at_ms: u64,
    #[serde(default)]
    pub pinned: bool,
    #[serde(default)]
    pub archived: bool,
    #[serde(default)]
    pub current_leaf: Option<Uuid>,
    /// The preset the conversation was started with: its sampling settings
    /// go with every answer (see `presets.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset_id: Option<Uuid>,
    /// Sampling settings sent with every answer of this conversation.
    #[serde(default)]
    pub params: ModelParams,
    /// Knowledge collections whose documents answer in this conversation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collections: Vec<Uuid>,
}

/// A conversation's sampling settings; `None` leaves the provider's
/// default. The chat service validates them (ranges) before they are stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
}

/// A change to some of a conversation's [`ModelParams`]: each `Some`
/// replaces the stored value, `Some(None)` goes back to the provider's
/// default.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ModelParamsPatch {
    pub temperature: Option<Option<f32>>,
    pub max_tokens: Option<Option<u32>>,
    pub top_p: Option<Option<f32>>,
}

impl ModelParamsPatch {
    pub fn is_empty(&self) -> bool {
        *self == ModelParamsPatch::default()
    }
    /// `base` with this change applied.
    pub fn apply(&self, base: ModelParams) -> ModelParams {
        ModelParams {
            temperature: self.temperature.unwrap_or(base.temperature),
            max_tokens: self.max_tokens.unwrap_or(base.max_tokens),
            top_p: self.top_p.unwrap_or(base.top_p),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    User,
    Assistant,
    System,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Complete,
    Streaming,
    Interrupted,
    Error,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// True when confab estimated the counts (the provider sent none).
    pub estimated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MessageError {
    pub code: String,
    pub message: String,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Message {
    pub id: Uuid,
    pub conversation_id: Uuid,
    #[serde(default)]
    pub parent_id: Option<Uuid>,
    pub role: MessageRole,
    pub content: String,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub provider: Option<String>,
    pub status: MessageStatus,
    #[serde(default)]
    pub usage: Option<Usage>,
    pub created_at: i64,
    #[serde(default)]
    pub duration_ms: Option<u64>,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub error: Option<MessageError>,
    /// The passages of documents an answer was given (retrieval).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Source>,
    /// Files attached to a user message (references to the owner's
    /// uploads; the bytes stay in the blob store).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

/// A passage of a document put into an answer's context: which file,
/// where in it, and the text (a snippet of the chunk, or the start of a
/// document sent whole).
#[derive(Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Source {
    #[schema(value_type = String)]
    pub file_id: Uuid,
    /// The file's name.
    pub name: String,
    /// The chunk's place in the document (absent when sent whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<u32>,
    #[serde(flatten)]
    pub span: crate::store::knowledge::ChunkSpan,
    pub snippet: String,
    /// The whole document went into the context (it was small enough).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub whole: bool,
}

impl std::fmt::Debug for Source {
    // Document text never goes to logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("file_id", &self.file_id)
            .field("chunk", &self.chunk)
            .field("snippet_chars", &self.snippet.chars().count())
            .finish_non_exhaustive()
    }
}

impl Message {
    /// Ids of the files attached to this message.
    pub fn attachment_ids(&self) -> Vec<Uuid> {
        self.attachments.iter().map(|a| a.id).collect()
    }
}

/// A file attached to a message, as the message remembers it: enough to
/// show it (and to find its content) even when the file is deleted later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attachment {
    /// The uploaded file's id (`/api/files/{id}`).
    #[schema(value_type = String)]
    pub id: Uuid,
    pub name: String,
    pub mime: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

impl Attachment {
    pub fn is_image(&self) -> bool {
        matches!(
            self.mime.as_str(),
            "image/png" | "image/jpeg" | "image/gif" | "image/webp"
        )
    }
}

impl std::fmt::Debug for Message {
    // Message text never goes to logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("id", &self.id)
            .field("role", &self.role)
            .field("status", &self.status)
            .field("content_chars", &self.content.chars().count())
            .finish_non_exhaustive()
    }
}

/// Where a listing page starts: strictly older than this (updated_at, id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConversationCursor {
    pub updated_at_ms: u64,
    pub id: Uuid,
}

impl ConversationCursor {
    pub fn encode(&self) -> String {
        format!("{}_{}", self.updated_at_ms, self.id.simple())
    }
    pub fn decode(s: &str) -> Option<Self> {
        let (a, b) = s.split_once('_')?;
        Some(ConversationCursor {
            updated_at_ms: a.parse().ok()?,
            id: Uuid::parse_str(b).ok()?,
        })
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ConversationFilter {
    /// None: not archived only; Some(true): archived only; Some(false): same as None.
    pub archived: Option<bool>,
    pub pinned: Option<bool>,
}

/// From `start`, follow the newest child down to a leaf: what the user
/// expects to see after switching to a branch.
pub fn deepest_leaf(messages: &[Message], start: Uuid) -> Uuid {
    let mut children: HashMap<Uuid, Uuid> = HashMap::new();
    for m in messages {
        if let Some(p) = m.parent_id {
            // Ids are time-ordered: keep the newest child.
            let e = children.entry(p).or_insert(m.id);
            if m.id > *e {
                *e = m.id;
            }
        }
    }
    let mut cur = start;
    let mut guard = 0;
    while let Some(&c) = children.get(&cur) {
        cur = c;
        guard += 1;
        if guard > messages.len() {
            break;
        }
    }
    cur
}
