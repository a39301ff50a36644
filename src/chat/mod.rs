//! Conversation logic: message trees, the thread shown, the context sent
//! to a model, and titles. The chat service that front ends call is in
//! [`turn`], stateless `/v1` calls in [`complete`]; generations (the running answers) in [`generation`], their
//! typed events in [`events`], naming conversations in [`title`].

pub mod attachments;
pub mod complete;
pub mod events;
pub mod generation;
pub mod shared;
pub mod temporary;
pub mod title;
pub mod turn;

use std::collections::HashMap;
use uuid::Uuid;

use crate::clock::now_ms;
use crate::error::{AppError, AppResult};
use crate::providers::{ChatMessage, Role};
use crate::store::chat::{Conversation, Message, MessageRole, MessageStatus};

pub const DEFAULT_TITLE: &str = "New chat";
/// Used when a model does not say how large its context window is.
pub const DEFAULT_CONTEXT_WINDOW: u32 = 8192;

/// Rough token estimate (≈4 characters per token for English text), used
/// for context trimming and when a provider sends no usage.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

pub fn validate_model(m: &str) -> AppResult<()> {
    if m.is_empty() || m.len() > 200 {
        return Err(AppError::validation("model must be 1 to 200 characters"));
    }
    Ok(())
}

/// Creates an empty conversation for `user_id`.
pub fn new_conversation(
    user_id: Uuid,
    title: Option<String>,
    model: Option<String>,
    system_prompt: Option<String>,
) -> Conversation {
    let now = crate::clock::now();
    Conversation {
        id: Uuid::now_v7(),
        user_id,
        title_auto: title.is_none(),
        title: title.unwrap_or_else(|| DEFAULT_TITLE.to_string()),
        model,
        provider: None,
        system_prompt: system_prompt.filter(|s| !s.trim().is_empty()),
        created_at: now,
        updated_at_ms: now_ms(),
        pinned: false,
        archived: false,
        current_leaf: None,
        preset_id: None,
        params: Default::default(),
        collections: Vec::new(),
    }
}

/// The path from the root to `leaf`, oldest first.
pub fn thread_to(messages: &[Message], leaf: Option<Uuid>) -> Vec<Message> {
    let by_id: HashMap<Uuid, &Message> = messages.iter().map(|m| (m.id, m)).collect();
    let mut out = Vec::new();
    let mut cur = leaf.and_then(|l| by_id.get(&l).copied());
    let mut guard = 0;
    while let Some(m) = cur {
        out.push(m.clone());
        cur = m.parent_id.and_then(|p| by_id.get(&p).copied());
        guard += 1;
        if guard > messages.len() {
            break; // a cycle cannot happen, but never loop forever on bad data
        }
    }
    out.reverse();
    out
}

pub use crate::store::chat::deepest_leaf;

/// Ids of the messages sharing `m`'s parent (including `m`), oldest first.
pub fn siblings(messages: &[Message], m: &Message) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = messages
        .iter()
        .filter(|x| x.parent_id == m.parent_id && x.role == m.role)
        .map(|x| x.id)
        .collect();
    ids.sort();
    ids
}

/// What is sent to the model, and how many old messages were left out.
pub struct Context {
    pub system: Option<String>,
    pub messages: Vec<ChatMessage>,
    /// The stored message each of `messages` was made from.
    pub ids: Vec<Uuid>,
    pub trimmed: usize,
}

/// System prompt + thread, trimmed oldest-first to fit `window` tokens
/// (keeping room for the answer). The system prompt and the newest message
/// are never dropped.
pub fn build_context(system: Option<&str>, thread: &[Message], window: u32) -> Context {
    let usable: Vec<(&Message, ChatMessage)> = thread
        .iter()
        .filter(|m| !(m.role == MessageRole::Assistant && m.content.is_empty()))
        .filter(|m| m.status != MessageStatus::Streaming)
        .map(|m| {
            let role = match m.role {
                MessageRole::User => Role::User,
                MessageRole::Assistant => Role::Assistant,
                MessageRole::System => Role::System,
            };
            (m, ChatMessage::new(role, m.content.clone()))
        })
        .collect();
    let window = u64::from(window.max(256));
    // Leave a quarter of the window for the answer.
    let budget = window - window / 4;
    let cost = |(src, m): &(&Message, ChatMessage)| {
        let images = src.attachments.iter().filter(|a| a.is_image()).count() as u64;
        estimate_tokens(&m.content) + 4 + images * attachments::IMAGE_TOKENS
    };
    let mut total: u64 = system.map(estimate_tokens).unwrap_or(0) + 4;
    let mut keep = 0;
    for m in usable.iter().rev() {
        let c = cost(m);
        if keep > 0 && total + c > budget {
            break;
        }
        total += c;
        keep += 1;
    }
    let trimmed = usable.len() - keep;
    let mut kept: Vec<(&Message, ChatMessage)> = usable.into_iter().skip(trimmed).collect();
    // Most APIs want the conversation to start with the user.
    while kept.first().is_some_and(|m| m.1.role == Role::Assistant) && kept.len() > 1 {
        kept.remove(0);
    }
    let (ids, messages) = kept.into_iter().map(|(src, m)| (src.id, m)).unzip();
    Context {
        system: system.filter(|s| !s.trim().is_empty()).map(str::to_string),
        messages,
        ids,
        trimmed,
    }
}

/// A title from the first words of the user's message, when the model
/// cannot make one.
pub fn fallback_title(first_user_message: &str) -> String {
    let words: Vec<&str> = first_user_message.split_whitespace().take(8).collect();
    let mut t = words.join(" ");
    if t.chars().count() > 60 {
        t = t
            .chars()
            .take(60)
            .collect::<String>()
            .trim_end()
            .to_string()
            + "…";
    }
    if t.is_empty() {
        DEFAULT_TITLE.to_string()
    } else {
        t
    }
}

/// Tidies a model-made title: one line, no quotes or trailing period.
pub fn clean_title(raw: &str) -> Option<String> {
    let line = raw.lines().map(str::trim).find(|l| !l.is_empty())?;
    let line = line
        .trim_start_matches(['#', '*', ' '])
        .trim_start_matches("Title:")
        .trim()
        .trim_matches(['"', '\'', '*', '`', '“', '”'])
        .trim_end_matches(['.', '!'])
        .trim();
    if line.is_empty() {
        return None;
    }
    let mut t: String = line.chars().take(80).collect();
    if line.chars().count() > 80 {
        t = t.trim_end().to_string() + "…";
    }
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: u128, parent: Option<u128>, role: MessageRole, content: &str) -> Message {
        Message {
            id: Uuid::from_u128(id),
            conversation_id: Uuid::nil(),
            parent_id: parent.map(Uuid::from_u128),
            role,
            content: content.into(),
            model: None,
            provider: None,
            status: MessageStatus::Complete,
            usage: None,
            created_at: 0,
            duration_ms: None,
            finish_reason: None,
            error: None,
            sources: Vec::new(),
            attachments: Vec::new(),
        }
    }

    #[test]
    fn threads_branches_and_leaves() {
        use MessageRole::*;
        let m = vec![
            msg(1, None, User, "q1"),
            msg(2, Some(1), Assistant, "a1"),
            msg(3, Some(2), User, "q2"),
            msg(4, Some(3), Assistant, "a2"),
            msg(5, Some(2), User, "q2 edited"),
            msg(6, Some(5), Assistant, "a2'"),
            msg(7, Some(5), Assistant, "a2''"),
        ];
        let t = thread_to(&m, Some(Uuid::from_u128(4)));
        assert_eq!(
            t.iter().map(|x| x.content.as_str()).collect::<Vec<_>>(),
            ["q1", "a1", "q2", "a2"]
        );
        assert_eq!(deepest_leaf(&m, Uuid::from_u128(5)), Uuid::from_u128(7));
        assert_eq!(deepest_leaf(&m, Uuid::from_u128(1)), Uuid::from_u128(7));
        assert_eq!(
            siblings(&m, &m[2]),
            vec![Uuid::from_u128(3), Uuid::from_u128(5)]
        );
        assert_eq!(siblings(&m, &m[5]).len(), 2);
    }

    #[test]
    fn context_trims_oldest_and_keeps_system_and_last() {
        use MessageRole::*;
        let long = "word ".repeat(400); // ~500 tokens
        let thread = vec![
            msg(1, None, User, &long),
            msg(2, Some(1), Assistant, &long),
            msg(3, Some(2), User, &long),
            msg(4, Some(3), Assistant, &long),
            msg(5, Some(4), User, "last question"),
        ];
        let c = build_context(Some("be brief"), &thread, 1024);
        assert_eq!(c.system.as_deref(), Some("be brief"));
        assert_eq!(c.messages.last().unwrap().content, "last question");
        assert!(c.trimmed >= 3, "{}", c.trimmed);
        assert_eq!(c.messages.first().unwrap().role, Role::User);
        let all = build_context(None, &thread, 128_000);
        assert_eq!(all.trimmed, 0);
        assert_eq!(all.messages.len(), 5);
        // Even a huge last message is kept.
        let huge = vec![msg(1, None, User, &"x".repeat(100_000))];
        assert_eq!(build_context(None, &huge, 1024).messages.len(), 1);
    }

    #[test]
    fn titles() {
        assert_eq!(
            clean_title("\"Rust ownership basics.\"\n"),
            Some("Rust ownership basics".into())
        );
        assert_eq!(clean_title("Title: Tokio tips"), Some("Tokio tips".into()));
        assert_eq!(clean_title("   \n  "), None);
        assert_eq!(
            fallback_title("how do I   write a bench in rust quickly please now"),
            "how do I write a bench in rust"
        );
        assert_eq!(fallback_title(""), DEFAULT_TITLE);
    }
}
