//! The events of a generation, typed. They are kept in the generation's log
//! as values; the front ends turn them into SSE or WebSocket frames (the
//! payload's JSON is the frame's `data`).
//!
//! Payload fields are declared in alphabetical order: that is the order
//! the wire format has always had (it was built from sorted JSON maps).

use serde::{Deserialize, Serialize};
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
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sources: Vec<Source>,
    },
    /// The answer failed.
    Error(ErrorEvent),
}

impl GenEvent {
    /// The event as stored for other instances: its name and its JSON
    /// payload (exactly the SSE `event` and `data`).
    pub fn to_parts(&self) -> (&'static str, String) {
        let data = serde_json::to_string(self).unwrap_or_else(|_| "{}".into());
        (self.name(), data)
    }

    /// The event [`Self::to_parts`] stored; None for an unknown name or a
    /// payload that does not fit it.
    pub fn from_parts(name: &str, data: &str) -> Option<GenEvent> {
        #[derive(Deserialize)]
        struct Text {
            text: String,
        }
        #[derive(Deserialize)]
        struct Finish {
            finish_reason: String,
            #[serde(default)]
            sources: Vec<Source>,
        }
        let e = match name {
            "meta" => GenEvent::Meta(serde_json::from_str(data).ok()?),
            "delta" => GenEvent::Delta {
                text: serde_json::from_str::<Text>(data).ok()?.text,
            },
            "title" => GenEvent::Title(serde_json::from_str(data).ok()?),
            "usage" => GenEvent::Usage(serde_json::from_str(data).ok()?),
            "done" => {
                let f = serde_json::from_str::<Finish>(data).ok()?;
                GenEvent::Done {
                    finish_reason: f.finish_reason,
                    sources: f.sources,
                }
            }
            "error" => GenEvent::Error(serde_json::from_str(data).ok()?),
            _ => return None,
        };
        Some(e)
    }

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

#[derive(Debug, Clone, Serialize, Deserialize)]
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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Source>,
    pub trimmed_messages: usize,
    pub user_message_id: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Title {
    pub conversation_id: Uuid,
    pub title: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct UsageEvent {
    pub estimated: bool,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What another instance reads back is what this one sent, byte for
    /// byte on the wire.
    #[test]
    fn events_round_trip_through_their_stored_parts() {
        let events = [
            GenEvent::Meta(Meta {
                assistant_message_id: Uuid::now_v7(),
                context_trimmed: true,
                conversation_id: Uuid::now_v7(),
                generation_id: Uuid::now_v7(),
                model: "m".into(),
                parent_id: None,
                provider: "p".into(),
                sources: Vec::new(),
                trimmed_messages: 2,
                user_message_id: Some(Uuid::now_v7()),
            }),
            GenEvent::Delta {
                text: "h\u{e9}llo \"x\"\n".into(),
            },
            GenEvent::Title(Title {
                conversation_id: Uuid::now_v7(),
                title: "T".into(),
            }),
            GenEvent::Usage(UsageEvent {
                estimated: true,
                input_tokens: 3,
                output_tokens: 4,
            }),
            GenEvent::Done {
                finish_reason: "stop".into(),
                sources: Vec::new(),
            },
            GenEvent::Error(ErrorEvent {
                code: "PROVIDER_ERROR".into(),
                message: "no".into(),
                request_id: "r".into(),
                retry_after: None,
            }),
        ];
        for e in events {
            let (name, data) = e.to_parts();
            let back = GenEvent::from_parts(name, &data).expect("parses back");
            assert_eq!(back.to_parts(), (name, data));
        }
        assert!(GenEvent::from_parts("nope", "{}").is_none());
        assert!(GenEvent::from_parts("delta", "{}").is_none());
    }
}
