//! Temporary chats: conversations kept only in this process's memory.
//!
//! Their messages never reach the store (so neither the database file nor
//! the search index's outbox) and vanish when the user closes the chat,
//! after [`IDLE_TTL`] without use, or when the server stops. Answers run
//! as generations like any other (streaming, resume while they live);
//! only their usage is recorded. The map is bounded: a user keeps at most
//! [`MAX_PER_USER`] such chats and the server [`MAX_TOTAL`]; starting one
//! more forgets the least recently used.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

use crate::error::{AppError, AppResult};
use crate::store::chat::{Conversation, Message};

/// A temporary chat not used for this long is forgotten.
pub const IDLE_TTL: Duration = Duration::from_secs(60 * 60);
pub const MAX_PER_USER: usize = 20;
pub const MAX_TOTAL: usize = 2000;
/// Messages one temporary chat may hold (each turn adds two).
pub const MAX_MESSAGES: usize = 400;

struct TempChat {
    conv: Conversation,
    messages: Vec<Message>,
    touched: Instant,
}

/// Every temporary chat of the server, by conversation id.
#[derive(Default)]
pub struct TempChats {
    chats: Mutex<HashMap<Uuid, TempChat>>,
}

impl TempChats {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, TempChat>> {
        self.chats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets chats idle past [`IDLE_TTL`].
    fn expire(map: &mut HashMap<Uuid, TempChat>, now: Instant) {
        map.retain(|_, c| now.duration_since(c.touched) < IDLE_TTL);
    }

    /// A temporary chat of `user_id` with its messages; another user's, an
    /// expired or an unknown one is None.
    pub fn get(&self, user_id: Uuid, id: Uuid) -> Option<(Conversation, Vec<Message>)> {
        let now = Instant::now();
        let mut map = self.lock();
        Self::expire(&mut map, now);
        let c = map.get_mut(&id).filter(|c| c.conv.user_id == user_id)?;
        c.touched = now;
        Some((c.conv.clone(), c.messages.clone()))
    }

    /// Whether `id` is a live temporary chat of `user_id`.
    pub fn contains(&self, user_id: Uuid, id: Uuid) -> bool {
        self.lock()
            .get(&id)
            .is_some_and(|c| c.conv.user_id == user_id)
    }

    /// Adds a turn: the new chat (if it is one), the user's message (None
    /// for a regeneration) and the empty assistant message.
    pub fn start_turn(
        &self,
        user_id: Uuid,
        new_conv: Option<&Conversation>,
        model: Option<String>,
        params: crate::store::chat::ModelParamsPatch,
        user_msg: Option<&Message>,
        assistant: &Message,
    ) -> AppResult<()> {
        let now = Instant::now();
        let mut map = self.lock();
        Self::expire(&mut map, now);
        if let Some(conv) = new_conv {
            Self::make_room(&mut map, user_id);
            map.insert(
                conv.id,
                TempChat {
                    conv: conv.clone(),
                    messages: Vec::new(),
                    touched: now,
                },
            );
        }
        let chat = map
            .get_mut(&assistant.conversation_id)
            .filter(|c| c.conv.user_id == user_id)
            .ok_or(AppError::ConversationNotFound)?;
        if chat.messages.len() + 2 > MAX_MESSAGES {
            return Err(AppError::Validation(format!(
                "a temporary chat holds at most {MAX_MESSAGES} messages; start a new one"
            )));
        }
        chat.touched = now;
        if let Some(m) = model {
            chat.conv.model = Some(m);
        }
        chat.conv.params = params.apply(chat.conv.params);
        if let Some(u) = user_msg {
            chat.messages.push(u.clone());
        }
        chat.messages.push(assistant.clone());
        chat.conv.current_leaf = Some(assistant.id);
        chat.conv.updated_at_ms = crate::clock::now_ms();
        Ok(())
    }

    /// Drops the least recently used chats so one more fits: the user's
    /// own first, then anyone's.
    fn make_room(map: &mut HashMap<Uuid, TempChat>, user_id: Uuid) {
        loop {
            let mine = map.values().filter(|c| c.conv.user_id == user_id).count();
            let oldest = if mine >= MAX_PER_USER {
                map.iter()
                    .filter(|(_, c)| c.conv.user_id == user_id)
                    .min_by_key(|(_, c)| c.touched)
            } else if map.len() >= MAX_TOTAL {
                map.iter().min_by_key(|(_, c)| c.touched)
            } else {
                return;
            };
            match oldest.map(|(id, _)| *id) {
                Some(id) => {
                    map.remove(&id);
                }
                None => return,
            }
        }
    }

    /// Puts the finished answer in place of its streaming placeholder; a
    /// chat closed meanwhile stays gone.
    pub fn finish(&self, msg: &Message) {
        let mut map = self.lock();
        if let Some(chat) = map.get_mut(&msg.conversation_id)
            && let Some(m) = chat.messages.iter_mut().find(|m| m.id == msg.id)
        {
            *m = msg.clone();
        }
    }

    /// One message of a temporary chat of `user_id`.
    pub fn message(&self, user_id: Uuid, conv: Uuid, id: Uuid) -> Option<Message> {
        self.lock()
            .get(&conv)
            .filter(|c| c.conv.user_id == user_id)
            .and_then(|c| c.messages.iter().find(|m| m.id == id).cloned())
    }

    /// Forgets a temporary chat of `user_id`; false when there was none.
    pub fn discard(&self, user_id: Uuid, id: Uuid) -> bool {
        let mut map = self.lock();
        if map.get(&id).is_some_and(|c| c.conv.user_id == user_id) {
            map.remove(&id);
            true
        } else {
            false
        }
    }

    /// Forgets every temporary chat of `user_id` (at sign-out).
    pub fn discard_user(&self, user_id: Uuid) {
        self.lock().retain(|_, c| c.conv.user_id != user_id);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::chat::{MessageRole, MessageStatus};

    fn msg(conv: Uuid) -> Message {
        Message {
            id: Uuid::now_v7(),
            conversation_id: conv,
            parent_id: None,
            role: MessageRole::Assistant,
            content: String::new(),
            model: None,
            provider: None,
            status: MessageStatus::Streaming,
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
    fn bounded_per_user_and_owned() {
        let t = TempChats::default();
        let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let mut first = None;
        for _ in 0..MAX_PER_USER + 3 {
            let c = super::super::new_conversation(alice, None, None, None);
            t.start_turn(alice, Some(&c), None, Default::default(), None, &msg(c.id))
                .unwrap();
            first.get_or_insert(c.id);
        }
        assert_eq!(t.len(), MAX_PER_USER);
        let first = first.unwrap();
        assert!(t.get(alice, first).is_none(), "the oldest was forgotten");
        let c = super::super::new_conversation(bob, None, None, None);
        let m = msg(c.id);
        t.start_turn(bob, Some(&c), None, Default::default(), None, &m)
            .unwrap();
        assert!(
            t.get(alice, c.id).is_none(),
            "another user's chat is not found"
        );
        assert!(!t.discard(alice, c.id));
        let mut done = m.clone();
        done.content = "answer".into();
        t.finish(&done);
        assert_eq!(t.message(bob, c.id, m.id).unwrap().content, "answer");
        assert!(t.discard(bob, c.id));
        assert!(t.get(bob, c.id).is_none());
        t.discard_user(alice);
        assert!(t.is_empty());
    }
}
