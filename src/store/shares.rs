//! Share links: a read-only snapshot of one thread of a conversation,
//! reached by an unguessable token. The snapshot is copied when the link is
//! made, so later changes to the conversation (or its deletion) never show
//! through it; revoking deletes the record.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::chat::{Attachment, MessageRole};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Share {
    pub id: Uuid,
    /// The link's secret: 32 random bytes, base64url (256 bits).
    pub token: String,
    pub user_id: Uuid,
    /// The conversation it was made from (its owner's; never shown to
    /// anyone else).
    pub conversation_id: Uuid,
    pub title: String,
    #[serde(default)]
    pub model: Option<String>,
    /// Only signed-in users of this server may open it.
    #[serde(default)]
    pub signed_in_only: bool,
    pub created_at: i64,
    /// The thread shown when the link was made, root first.
    #[serde(default)]
    pub messages: Vec<SharedMessage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedMessage {
    pub role: MessageRole,
    pub content: String,
    #[serde(default)]
    pub model: Option<String>,
    pub created_at: i64,
    /// The message's files as they were when the link was made: the
    /// owner's file ids, reached through the link only by their place in
    /// the snapshot (never shown to a viewer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

impl Share {
    /// The snapshot's files in order (the `n` of `/api/shared/{token}/files/{n}`).
    pub fn files(&self) -> impl Iterator<Item = &Attachment> {
        self.messages.iter().flat_map(|m| m.attachments.iter())
    }
}

/// What [`crate::store::ChatStore::import_sourced`] did with one conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sourced {
    /// Stored as given.
    Imported,
    /// The same source was imported before and that conversation still
    /// exists: nothing written.
    Existing(Uuid),
}
