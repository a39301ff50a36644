//! Titles: naming a conversation after its first answer. A chat-domain
//! task run by the generation once the answer is stored; the title it
//! stores is also announced as the stream's `title` event.

use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

use super::events::Title;
use super::generation::Outcome;
use crate::limits::Limits;
use crate::providers::registry::Registry;
use crate::providers::{ChatEvent, ChatMessage, ChatRequest};
use crate::store::chat::{Message, MessageRole};
use crate::store::{ConversationPatch, SharedStore, TitleChange};

/// How long the model gets to make a title before the fallback is used.
const TITLE_TIMEOUT: Duration = Duration::from_secs(20);

/// What naming a conversation needs.
#[derive(Clone)]
pub struct Titles {
    pub store: SharedStore,
    pub providers: Arc<Registry>,
    pub limits: Arc<Limits>,
}

/// Who answered, so the title request is made the same way: a user's own
/// key, or the server's when they brought none.
pub struct TitleCredential {
    pub provider: String,
    pub user_key: Option<String>,
}

impl Titles {
    /// Names the conversation of `answer` after it ended: with the model
    /// when it completed, else from the first words of the question.
    pub async fn after_answer(
        self,
        user_id: Uuid,
        answer: Message,
        outcome: Outcome,
        with: TitleCredential,
    ) -> Option<Title> {
        if outcome == Outcome::Complete {
            self.make_title(user_id, answer, with).await
        } else {
            self.title_from_question(user_id, answer).await
        }
    }

    /// The first user message on the way to `answer`, if the conversation
    /// still exists.
    async fn first_question(&self, user_id: Uuid, answer: &Message) -> Option<String> {
        let all = self
            .store
            .list_messages(user_id, answer.conversation_id)
            .await
            .ok()?;
        Some(
            super::thread_to(&all, Some(answer.id))
                .into_iter()
                .find(|m| m.role == MessageRole::User)
                .map(|m| m.content)
                .unwrap_or_default(),
        )
    }

    /// A chat whose first answer failed or was stopped is still named, from
    /// the first words of the question, instead of staying "New chat".
    /// `title_auto` stays set: the first answer that completes later
    /// replaces it with a model-made title (make_title).
    async fn title_from_question(&self, user_id: Uuid, answer: Message) -> Option<Title> {
        let cid = answer.conversation_id;
        let conv = self.store.get_conversation(user_id, cid).await.ok()?;
        if !conv.title_auto || conv.title != super::DEFAULT_TITLE {
            return None;
        }
        let title = super::fallback_title(&self.first_question(user_id, &answer).await?);
        if title == super::DEFAULT_TITLE {
            return None;
        }
        self.store_title(user_id, cid, title, false).await
    }

    /// After the first complete answer, names the conversation with the same
    /// model, falling back to the first words. It uses the answer's provider
    /// and credential: a bring-your-own-key user's words never travel with
    /// the server's key, and their key never goes to another provider.
    async fn make_title(
        &self,
        user_id: Uuid,
        answer: Message,
        with: TitleCredential,
    ) -> Option<Title> {
        let cid = answer.conversation_id;
        let conv = self.store.get_conversation(user_id, cid).await.ok()?;
        if !conv.title_auto {
            return None;
        }
        let first_user = self.first_question(user_id, &answer).await?;
        let fallback = super::fallback_title(&first_user);
        let model = answer.model.clone().unwrap_or_default();
        let mut used = None;
        let ask = self.ask_model(&model, &first_user, &answer.content, with, &mut used);
        let title = tokio::time::timeout(TITLE_TIMEOUT, ask)
            .await
            .ok()
            .flatten()
            .unwrap_or(fallback);
        if let Some((provider, i, o)) = used {
            self.limits
                .charge_title(&self.store, user_id, &provider, &model, i, o)
                .await;
        }
        self.store_title(user_id, cid, title, true).await
    }

    /// Asks `model` for a title. `used` gets what the request used (provider,
    /// input and output tokens), charged to the user like an answer's tokens.
    async fn ask_model(
        &self,
        model: &str,
        question: &str,
        answer: &str,
        with: TitleCredential,
        used: &mut Option<(String, u64, u64)>,
    ) -> Option<String> {
        let excerpt: String = question.chars().take(1000).collect();
        let answer_excerpt: String = answer.chars().take(500).collect();
        // The provider that answered (after any failover), under its own
        // id of the model; none when it no longer serves the model.
        let c = self
            .providers
            .candidates(
                &format!("{}/{model}", with.provider),
                with.user_key.is_some(),
            )
            .into_iter()
            .find(|c| c.provider_name == with.provider)?;
        let (provider_name, provider) = (c.provider_name, c.provider);
        let req = ChatRequest {
            model: c.model,
            system: Some("You write short, specific titles for conversations. Reply with the title only: at most six words, no quotes, no final period.".into()),
            messages: vec![ChatMessage::user(format!(
                "Conversation start:\n\nUser: {excerpt}\n\nAssistant: {answer_excerpt}\n\nTitle:"
            ))],
            max_tokens: Some(24),
            temperature: Some(0.2),
            api_key_override: with.user_key,
            ..Default::default()
        };
        let prompt_tokens = req
            .messages
            .iter()
            .map(|m| super::estimate_tokens(&m.content))
            .sum::<u64>()
            + req.system.as_deref().map_or(0, super::estimate_tokens);
        let mut s = provider.stream(req).await.ok()?;
        let mut text = String::new();
        let mut reported = None;
        let mut failed = false;
        while let Some(ev) = s.next().await {
            match ev {
                Ok(ChatEvent::Delta(t)) => text.push_str(&t),
                Ok(ChatEvent::Usage {
                    input_tokens,
                    output_tokens,
                }) => {
                    reported = Some((input_tokens, output_tokens));
                }
                Ok(ChatEvent::Done { .. }) => break,
                // Title requests offer no tools.
                Ok(ChatEvent::ToolCall(_)) => {}
                Err(_) => {
                    failed = true;
                    break;
                }
            }
            if text.len() > 400 {
                break;
            }
        }
        if reported.is_some() || !text.is_empty() {
            let (i, o) = reported.unwrap_or((prompt_tokens, super::estimate_tokens(&text)));
            *used = Some((provider_name, i, o));
        }
        if failed {
            return None;
        }
        super::clean_title(&text)
    }

    /// Stores `title` unless the conversation was named meanwhile (by the
    /// user, or by a later answer); `last` ends automatic naming.
    async fn store_title(
        &self,
        user_id: Uuid,
        cid: Uuid,
        title: String,
        last: bool,
    ) -> Option<Title> {
        let patch = ConversationPatch {
            title: Some(TitleChange::Auto {
                title: title.clone(),
                last,
                default: super::DEFAULT_TITLE.into(),
            }),
            ..Default::default()
        };
        let stored = self
            .store
            .update_conversation(user_id, cid, patch)
            .await
            .ok()?;
        // Unchanged when the conversation was named meanwhile.
        (stored.title == title).then_some(Title {
            conversation_id: cid,
            title,
        })
    }
}
