//! The durable queue between redb (the truth) and the search index.
//!
//! Every write that changes searchable text appends an [`OutboxOp`] in the
//! same transaction, so the queue can never miss a change. Ops say *what*
//! changed, not the new text: the indexer reads the current state from redb
//! when it applies them, so replaying an op twice is harmless and an op for
//! something since deleted removes it from the index.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::chat::{Conversation, Message};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum OutboxOp {
    /// Re-sync one message (indexed when it exists and is not streaming).
    Message {
        conversation_id: Uuid,
        message_id: Uuid,
    },
    /// Re-sync a conversation's title document.
    Title { conversation_id: Uuid },
    /// Remove everything of a conversation.
    DeleteConversation { conversation_id: Uuid },
    /// Remove everything of a user.
    DeleteUser { user_id: Uuid },
    /// Re-sync the chunks of a document (indexed when it exists).
    Document { file_id: Uuid },
}

/// What the indexer needs to index one message.
#[derive(Debug, Clone)]
pub struct IndexedMessage {
    pub user_id: Uuid,
    pub message: Message,
}

/// A message or title resolved against the current state of redb.
#[derive(Debug, Clone)]
pub enum Resolved {
    Message(Box<IndexedMessage>),
    /// The message no longer exists (or is still streaming): not indexed.
    MessageGone {
        message_id: Uuid,
    },
    Title(Box<Conversation>),
    TitleGone {
        conversation_id: Uuid,
    },
    DeleteConversation {
        conversation_id: Uuid,
    },
    DeleteUser {
        user_id: Uuid,
    },
    /// A document's chunks, to replace what the index has of it.
    Document(Box<IndexedDocument>),
    /// The document is gone: its chunks leave the index.
    DocumentGone {
        file_id: Uuid,
    },
}

/// What the indexer needs to index one document.
#[derive(Debug, Clone)]
pub struct IndexedDocument {
    pub owner: Uuid,
    pub file_id: Uuid,
    pub chunks: Vec<super::knowledge::Chunk>,
}
