//! The events of a generation, typed. They are kept in the generation's log
//! as values; the front ends turn them into SSE or WebSocket frames (the
//! payload's JSON is the frame's `data`).
//!
//! Payload fields are declared in alphabetical order: that is the order
//! the wire format has always had (it was built from sorted JSON maps).

use serde::Serialize;
use uuid::Uuid;

use crate::store::chat::Source;

/// One event of a generation's stream.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum GenEvent {
    /// First, always: every id of the turn. Sent once more, before any
    /// `delta`, when the answer failed over to another provider.
    Meta(Meta),
    /// A piece of the answer's text.
    Delta { text: String },
    /// The conversation was named (first turns); before `usage`.
    Title(Title),
    /// What the answer used; just before the last event.
    Usage(UsageEvent),
    /// The answer ended (`finish_reason`, `stopped` when stopped), with
    /// the document passages it was given (as in `meta`).
    Done {
        finish_reason: String,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        sources: Vec<Source>,
    },
    /// The answer failed.
    Error(ErrorEvent),
}

impl GenEvent {
    /// The event's name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            GenEvent::Meta(_) => "meta",
            GenEvent::Delta { .. } => "delta",
            GenEvent::Title(_) => "title",
            GenEvent::Usage(_) => "usage",
            GenEvent::Done { .. } => "done",
            GenEvent::Error(_) => "error",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    pub assistant_message_id: Uuid,
    pub context_trimmed: bool,
    pub conversation_id: Uuid,
    /// Set by the generation manager when the generation starts.
    pub generation_id: Uuid,
    pub model: String,
    pub parent_id: Option<Uuid>,
    pub provider: String,
    /// Passages of the user's documents put into the context (retrieval).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Source>,
    pub trimmed_messages: usize,
    pub user_message_id: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Title {
    pub conversation_id: Uuid,
    pub title: String,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct UsageEvent {
    pub estimated: bool,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorEvent {
    pub code: String,
    pub message: String,
    pub request_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

/// An event as logged: its number in the stream (from 1) and the event.
#[derive(Debug, Clone)]
pub struct Logged {
    pub id: u64,
    pub event: GenEvent,
}
