//! The chat service: what every front end (the browser API's SSE, JSON and
//! WebSocket paths, later `/v1`) calls to start, follow and stop answers.
//! It owns the rules of a turn: validation, admission and quota, where the
//! new messages hang in the tree (a new message, an edit or a
//! regeneration), the model, the context, the stored turn, the generation
//! and the title. Plain inputs and outputs: no HTTP types.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

use super::events::Meta;
use super::generation::{Generation, Job, Manager, Titler, opening};
use super::shared::Followed;
use super::title::{TitleCredential, Titles};
use super::{DEFAULT_CONTEXT_WINDOW, new_conversation, validate_model};
use crate::auth::CurrentUser;
use crate::config::Config;
use crate::error::{AppError, AppResult};
use crate::limits::Limits;
use crate::providers::registry::Registry;
use crate::providers::routing::KeyScope;
use crate::providers::{ChatRequest, ProviderKind};
use crate::store::chat::{Conversation, Message, MessageRole, MessageStatus, ModelParamsPatch};
use crate::store::{SharedStore, StoreError};

pub const MAX_CONTENT_CHARS: usize = 200_000;
/// The largest `max_tokens` a conversation may ask for: above every model's
/// output limit today, low enough to catch a typo.
pub const MAX_MAX_TOKENS: u32 = 1_000_000;

/// Checks sampling settings before they are stored or sent: temperature
/// 0–2, top_p 0–1, max_tokens 1–[`MAX_MAX_TOKENS`]. Clearing one (back to
/// the provider's default) is always allowed.
pub fn validate_params(p: &ModelParamsPatch) -> AppResult<()> {
    if let Some(Some(t)) = p.temperature
        && !(t.is_finite() && (0.0..=2.0).contains(&t))
    {
        return Err(AppError::validation(
            "temperature must be a number from 0 to 2",
        ));
    }
    if let Some(Some(t)) = p.top_p
        && !(t.is_finite() && (0.0..=1.0).contains(&t))
    {
        return Err(AppError::validation("top_p must be a number from 0 to 1"));
    }
    if let Some(Some(m)) = p.max_tokens
        && !(1..=MAX_MAX_TOKENS).contains(&m)
    {
        return Err(AppError::Validation(format!(
            "max_tokens must be a whole number from 1 to {MAX_MAX_TOKENS}"
        )));
    }
    Ok(())
}

/// What the chat service works with; built by each front end from its
/// state.
#[derive(Clone)]
pub struct ChatService {
    pub store: SharedStore,
    pub providers: Arc<Registry>,
    pub limits: Arc<Limits>,
    pub generations: Arc<Manager>,
    /// The settings in force now (`allow_user_keys`, `default_model`).
    pub settings: Arc<Config>,
    /// Documents and collections: the passages a turn's context gets.
    pub knowledge: Arc<crate::knowledge::Knowledge>,
    /// Uploaded files (attachments).
    pub files: Arc<crate::files::Files>,
    /// What admins set per model (whether it reads images).
    pub models: Arc<crate::model_settings::ModelSettings>,
}

/// Where the new user message goes.
#[derive(Debug, Clone, Default)]
pub enum Placement {
    /// After the shown thread's last message.
    #[default]
    AfterLeaf,
    /// Under this message (raw id; editing creates a sibling this way).
    Under(String),
    /// A new root (editing the first message).
    Root,
}

/// One turn to start.
#[derive(Debug, Clone, Default)]
pub struct TurnRequest {
    /// Raw id; None or empty starts a new conversation.
    pub conversation_id: Option<String>,
    pub placement: Placement,
    pub content: String,
    pub model: Option<String>,
    /// A preset (raw id) to start the new conversation with.
    pub preset_id: Option<String>,
    /// Sampling settings to use from this turn on: they become the
    /// conversation's, like `model`.
    pub params: ModelParamsPatch,
    /// An assistant message (raw id) to answer again: a sibling answer;
    /// `content` and `placement` are ignored.
    pub regenerate_of: Option<String>,
    /// The caller's own provider key.
    pub provider_key: Option<String>,
    /// The kind of provider the key belongs to (openai or anthropic); it
    /// goes to providers of that kind only. None: the kind of the first
    /// provider chosen for the model.
    pub provider_key_kind: Option<ProviderKind>,
    /// Start a temporary chat (kept in memory only). A turn in an existing
    /// temporary chat is temporary without it.
    pub temporary: bool,
    /// The system prompt of a new temporary chat (only then).
    pub system_prompt: Option<String>,
    /// Ids of the caller's files attached to the new user message.
    pub attachments: Vec<String>,
    /// Carried into the `error` event.
    pub request_id: String,
}

/// The model a turn uses, with its provider, context window and output
/// limit (when known).
struct Chosen {
    model: String,
    /// What the request routes by: `model`, or `<provider>/<model>` when
    /// the user's groups allow only some of the providers serving it.
    route: String,
    provider_name: String,
    window: u32,
    max_output: Option<u32>,
}

/// The messages of a turn, before they are stored.
struct Placed {
    conv: Conversation,
    is_new: bool,
    all: Vec<Message>,
    user_msg: Option<Message>,
    parent_of_answer: Option<Uuid>,
    /// A temporary chat: kept in memory, never stored.
    temporary: bool,
}

impl Placed {
    /// The thread down to the message answered.
    fn thread(&self) -> Vec<Message> {
        match &self.user_msg {
            Some(u) => {
                let mut t = super::thread_to(&self.all, u.parent_id);
                t.push(u.clone());
                t
            }
            None => super::thread_to(&self.all, self.parent_of_answer),
        }
    }

    /// The message being answered (the new one, or a regeneration's parent).
    fn answered_message(&self) -> Option<&Message> {
        match &self.user_msg {
            Some(u) => Some(u),
            None => self
                .parent_of_answer
                .and_then(|p| self.all.iter().find(|m| m.id == p)),
        }
    }

    /// The files of the message being answered.
    fn answered(&self) -> Vec<crate::store::chat::Attachment> {
        self.answered_message()
            .map(|m| m.attachments.clone())
            .unwrap_or_default()
    }

    /// The text of the message being answered.
    fn question(&self) -> String {
        self.answered_message()
            .map(|m| m.content.clone())
            .unwrap_or_default()
    }

    /// The files attached to the thread's user messages, oldest first:
    /// what the turn's documents are (images among them are skipped by the
    /// knowledge service).
    fn documents(&self) -> Vec<Uuid> {
        let mut out: Vec<Uuid> = Vec::new();
        for m in self.thread() {
            if m.role != MessageRole::User {
                continue;
            }
            for id in m.attachment_ids() {
                if !out.contains(&id) {
                    out.push(id);
                }
            }
        }
        out
    }

    /// What the model is sent: the thread down to the message answered.
    fn context(&self, system: Option<&str>, window: u32) -> AppResult<super::Context> {
        let thread = self.thread();
        let ctx = super::build_context(system, &thread, window);
        if ctx.messages.is_empty() {
            return Err(AppError::validation("there is no message to answer"));
        }
        Ok(ctx)
    }
}

fn conversation_missing(e: StoreError) -> AppError {
    match e {
        StoreError::NotFound => AppError::ConversationNotFound,
        o => o.into(),
    }
}

fn message(conversation_id: Uuid, parent_id: Option<Uuid>, role: MessageRole) -> Message {
    Message {
        id: Uuid::now_v7(),
        conversation_id,
        parent_id,
        role,
        content: String::new(),
        model: None,
        provider: None,
        status: MessageStatus::Complete,
        usage: None,
        created_at: crate::clock::now(),
        duration_ms: None,
        finish_reason: None,
        error: None,
        sources: Vec::new(),
        attachments: Vec::new(),
    }
}

impl ChatService {
    /// Validates the request, admits it (rate, running answers, quota),
    /// stores the turn and starts the generation.
    pub async fn start_turn(
        &self,
        user: &CurrentUser,
        req: TurnRequest,
    ) -> AppResult<Arc<Generation>> {
        let regen = validate(&self.settings, &req)?;
        // Governance, before any work. The reservation is settled with the
        // real usage when the answer ends (released unused if this fails).
        let started = Instant::now();
        let reservation = self
            .limits
            .admit(&self.store, user, super::estimate_tokens(&req.content))
            .await?;
        let uid = user.id();
        let files = super::attachments::resolve(&self.files, uid, &req.attachments).await?;
        let attached: Vec<_> = files
            .iter()
            .map(super::attachments::attachment_of)
            .collect();
        let mut placed = self.place(uid, &req, regen, attached).await?;
        // The preset and the user's custom instructions (see `presets.rs`).
        let turn = crate::presets::Presets {
            store: self.store.clone(),
        }
        .for_turn(
            user,
            &mut placed.conv,
            placed.is_new,
            req.preset_id.as_deref(),
            req.model.is_some(),
        )
        .await?;
        // A preset's sampling settings fill what the conversation leaves
        // unset; a new conversation keeps them as its own.
        let base = &mut placed.conv.params;
        base.temperature = base.temperature.or(turn.params.temperature);
        base.max_tokens = base.max_tokens.or(turn.params.max_tokens);
        base.top_p = base.top_p.or(turn.params.top_p);
        let Chosen {
            model,
            route,
            provider_name,
            window,
            max_output,
        } = self.choose_model(user, &req, &placed.conv).await?;
        let params = req.params.apply(placed.conv.params);
        if let (Some(want), Some(limit)) = (params.max_tokens, max_output)
            && want > limit
        {
            return Err(AppError::Validation(format!(
                "max_tokens is {want}, more than the {limit} tokens model {model:?} can write: lower it or clear it"
            )));
        }

        // The files of the message answered: images go to the model (if it
        // reads them), checked before anything is stored or sent; documents
        // (and the conversation's collections) through the knowledge service.
        let answered = placed.answered();
        let images: Vec<_> = answered.iter().filter(|a| a.is_image()).cloned().collect();
        let vision = crate::model_settings::reads_images(
            &self.models,
            &self.providers,
            &model,
            &provider_name,
        );
        super::attachments::check_vision(&images, &model, vision)?;
        // Passages of the thread's documents and the conversation's
        // collections, within half of what the context may hold.
        let usable = u64::from(window.max(256)) * 3 / 4;
        let retrieved = self
            .knowledge
            .for_turn(
                uid,
                &placed.question(),
                &placed.documents(),
                &placed.conv.collections,
                usable / 2,
            )
            .await?;
        let system = match (turn.system, retrieved.context) {
            (Some(s), Some(d)) => Some(format!("{s}\n\n{d}")),
            (s, d) => s.or(d),
        };
        let mut ctx = placed.context(system.as_deref(), window)?;
        super::attachments::add_images(&self.files, uid, &placed.thread(), &mut ctx, vision)
            .await?;

        let mut assistant = message(
            placed.conv.id,
            placed.parent_of_answer,
            MessageRole::Assistant,
        );
        assistant.model = Some(model.clone());
        assistant.provider = Some(provider_name.clone());
        assistant.status = MessageStatus::Streaming;
        assistant.sources = retrieved.sources;
        let meta = Meta {
            assistant_message_id: assistant.id,
            context_trimmed: ctx.trimmed > 0,
            conversation_id: placed.conv.id,
            generation_id: Uuid::nil(),
            model: model.clone(),
            parent_id: placed.parent_of_answer,
            provider: provider_name.clone(),
            sources: assistant.sources.clone(),
            trimmed_messages: ctx.trimmed,
            user_message_id: placed.user_msg.as_ref().map(|m| m.id),
        };
        let request = ChatRequest {
            model: route,
            system: ctx.system,
            messages: ctx.messages,
            max_tokens: params.max_tokens,
            temperature: params.temperature,
            top_p: params.top_p,
            api_key_override: req.provider_key.clone(),
            api_key_kind: req.provider_key_kind,
            ..Default::default()
        };
        let new_conv = placed.is_new.then_some(&placed.conv);
        // Sending with a model (or sampling settings) makes it the
        // conversation's.
        let remember_model = req.model.clone();
        let open = if placed.temporary {
            self.generations.temporary.start_turn(
                uid,
                new_conv,
                remember_model,
                req.params,
                placed.user_msg.as_ref(),
                &assistant,
            )?;
            opening(self.providers.clone(), request)
        } else {
            // The provider is asked while the turn is stored; the answer
            // is handed out only once the turn is durable, and a turn that
            // cannot be stored cancels the request.
            let (stored, open) = opening(self.providers.clone(), request)
                .alongside(self.store.start_turn(
                    uid,
                    new_conv,
                    remember_model,
                    req.params,
                    placed.user_msg.as_ref(),
                    &assistant,
                ))
                .await;
            stored.map_err(conversation_missing)?;
            open
        };

        // A temporary chat keeps the default title: naming it would send
        // its words once more for nothing to keep.
        let titler =
            (!placed.temporary).then(|| self.titler(uid, &provider_name, req.provider_key));
        let temporary = placed.temporary.then(|| self.generations.temporary.clone());
        let job = Job {
            user_id: uid,
            provider_name,
            providers: self.providers.clone(),
            message: assistant,
            meta,
            request_id: req.request_id,
            titler,
            temporary,
            on_first_token: Some(self.limits.first_token_observer(started)),
        };
        let (limits, store) = (self.limits.clone(), self.store.clone());
        let g = self.generations.start(
            &self.store,
            open,
            job,
            Box::new(move |msg, outcome| limits.finish(&store, reservation, &msg, outcome)),
        );
        // Announced before the stream is handed out, so the client can
        // follow it from any instance at once.
        self.generations.publish(Some(vec![g.clone()])).await;
        Ok(g)
    }

    /// Names the conversation once the answer is stored. The title request
    /// goes to the provider that answered, with the credential that
    /// answered: a user's own key, or the server's when they brought none.
    fn titler(&self, uid: Uuid, provider: &str, user_key: Option<String>) -> Titler {
        let titles = Titles {
            store: self.store.clone(),
            providers: self.providers.clone(),
            limits: self.limits.clone(),
        };
        let first = provider.to_string();
        Box::new(move |msg, outcome| {
            // The provider that answered, which failover may have changed.
            let with = TitleCredential {
                provider: msg.provider.clone().unwrap_or(first),
                user_key,
            };
            Box::pin(titles.after_answer(uid, msg, outcome, with))
        })
    }

    /// The conversation (existing and owned, or new) and where the new
    /// messages hang in its tree.
    async fn place(
        &self,
        uid: Uuid,
        req: &TurnRequest,
        regen: Option<Uuid>,
        attached: Vec<crate::store::chat::Attachment>,
    ) -> AppResult<Placed> {
        let mut temp_messages = None;
        let (conv, is_new) = match req.conversation_id.as_deref().filter(|s| !s.is_empty()) {
            Some(id) => {
                let cid = Uuid::parse_str(id).map_err(|_| AppError::ConversationNotFound)?;
                if let Some((c, all)) = self.generations.temporary.get(uid, cid) {
                    temp_messages = Some(all);
                    (c, false)
                } else {
                    let c = self
                        .store
                        .get_conversation(uid, cid)
                        .await
                        .map_err(conversation_missing)?;
                    (c, false)
                }
            }
            None if regen.is_some() => {
                return Err(AppError::validation(
                    "regenerate_of needs the conversation_id of its conversation",
                ));
            }
            None => (
                new_conversation(uid, None, req.model.clone(), req.system_prompt.clone()),
                true,
            ),
        };
        if req.system_prompt.is_some() && !(is_new && req.temporary) {
            return Err(AppError::validation(
                "system_prompt here is for a new temporary chat; set a conversation's with /api/conversations",
            ));
        }
        if req.temporary && !is_new && temp_messages.is_none() {
            return Err(AppError::validation(
                "temporary starts a new chat; a saved conversation cannot become temporary",
            ));
        }
        let temporary = temp_messages.is_some() || (is_new && req.temporary);
        let all = match temp_messages {
            Some(all) => all,
            None if is_new => Vec::new(),
            None => self.store.list_messages(uid, conv.id).await?,
        };
        if let Some(rid) = regen {
            let target = all
                .iter()
                .find(|m| m.id == rid && m.role == MessageRole::Assistant)
                .ok_or_else(|| AppError::not_found("message"))?;
            let parent_of_answer = target.parent_id;
            return Ok(Placed {
                conv,
                is_new,
                all,
                user_msg: None,
                parent_of_answer,
                temporary,
            });
        }
        let parent = match &req.placement {
            Placement::AfterLeaf => conv.current_leaf,
            Placement::Root => None,
            Placement::Under(p) => {
                let pid = Uuid::parse_str(p).map_err(|_| AppError::not_found("parent message"))?;
                if !all.iter().any(|m| m.id == pid) {
                    return Err(AppError::not_found("parent message"));
                }
                Some(pid)
            }
        };
        let mut m = message(conv.id, parent, MessageRole::User);
        m.content = req.content.clone();
        m.attachments = attached;
        let id = m.id;
        Ok(Placed {
            conv,
            is_new,
            all,
            user_msg: Some(m),
            parent_of_answer: Some(id),
            temporary,
        })
    }

    /// The model: asked for, else the conversation's, else the default
    /// (else the first the user's groups allow); with the provider to try
    /// first, its context window and output limit (when known). A model the
    /// user's groups do not allow is not found (see `crate::groups`).
    async fn choose_model(
        &self,
        user: &CurrentUser,
        req: &TurnRequest,
        conv: &Conversation,
    ) -> AppResult<Chosen> {
        let access = crate::groups::ModelAccess::load(&self.store, &user.user).await?;
        let fallback = || {
            self.settings
                .default_model
                .clone()
                .filter(|m| {
                    access.is_all()
                        || self
                            .providers
                            .candidates(m, false)
                            .iter()
                            .any(|c| access.allows(&c.model, &c.provider_name))
                })
                .or_else(|| {
                    self.providers
                        .models()
                        .into_iter()
                        .find(|m| {
                            access.allows(&m.id, &m.provider)
                                && (access.is_all()
                                    || m.kind != crate::providers::ModelKind::Embedding)
                        })
                        .map(|m| m.id)
                })
        };
        let model = req
            .model
            .clone()
            .or_else(|| conv.model.clone())
            .or_else(fallback)
            .ok_or_else(|| {
                AppError::ModelNotFound(
                    "no model is available: an administrator needs to add a provider".into(),
                )
            })?;
        let key = req.provider_key.is_some().then_some(KeyScope {
            kind: req.provider_key_kind,
        });
        let (allowed, pin) = access.keep(self.providers.candidates_for(&model, key));
        let first = allowed
            .into_iter()
            .next()
            .ok_or_else(|| match req.provider_key_kind.filter(|_| key.is_some()) {
                Some(kind) => AppError::ModelNotFound(format!(
                    "model {model:?} is not offered by any {kind} provider that accepts your own key"
                )),
                None => AppError::ModelNotFound(format!(
                    "model {model:?} is not offered by any provider"
                )),
            })?;
        let info = self
            .providers
            .models()
            .into_iter()
            .find(|m| m.id == first.model && m.provider == first.provider_name);
        let window = info
            .as_ref()
            .and_then(|m| m.context_window)
            .unwrap_or(DEFAULT_CONTEXT_WINDOW);
        let max_output = info.and_then(|m| m.max_output_tokens);
        let route = if pin {
            format!("{}/{}", first.provider_name, first.model)
        } else {
            model.clone()
        };
        Ok(Chosen {
            route,
            model,
            provider_name: first.provider_name,
            window,
            max_output,
        })
    }

    /// Starts a turn and waits for its answer: the stored message, or the
    /// provider's error when it failed.
    pub async fn answer(&self, user: &CurrentUser, req: TurnRequest) -> AppResult<Message> {
        let g = self.start_turn(user, req).await?;
        g.wait().await;
        let m = if g.temporary {
            self.generations
                .temporary
                .message(user.id(), g.conversation_id, g.message_id)
                .ok_or(AppError::ConversationNotFound)?
        } else {
            self.store
                .get_message(user.id(), g.conversation_id, g.message_id)
                .await?
        };
        if m.status == MessageStatus::Error
            && let Some(err) = &m.error
        {
            return Err(provider_error(&err.code, &err.message));
        }
        Ok(m)
    }

    /// A generation of `user_id` (another user's is not found), to follow:
    /// running here, or on another instance on the same database.
    pub async fn generation(&self, user_id: Uuid, id: &str) -> AppResult<Followed> {
        let id = Uuid::parse_str(id).map_err(|_| AppError::not_found("generation"))?;
        if let Some(g) = self.generations.get(user_id, id) {
            return Ok(Followed::Local(g));
        }
        if let Some(shared) = &self.generations.shared
            && let Some(r) = shared.find(user_id, id).await
        {
            return Ok(Followed::Remote(r));
        }
        Err(AppError::not_found("generation"))
    }

    /// Stops an answer and waits (bounded) until its partial text is stored,
    /// so a reload shows it.
    pub async fn stop(&self, user_id: Uuid, id: &str) -> AppResult<()> {
        match self.generation(user_id, id).await? {
            Followed::Local(g) => {
                g.stop();
                let _ = tokio::time::timeout(Duration::from_secs(5), g.wait()).await;
            }
            remote => remote.stop().await,
        }
        Ok(())
    }

    /// Stops every answer of a conversation, on any instance (before it is
    /// deleted).
    pub async fn stop_conversation(&self, conversation_id: Uuid) {
        self.generations.stop_conversation(conversation_id);
        if let Some(shared) = &self.generations.shared
            && let Err(e) = shared.store().gen_stop_conversation(conversation_id).await
        {
            tracing::warn!(error = %e, "cannot stop the conversation's answers on other instances");
        }
    }

    /// The live text of the answers among `messages` that are still
    /// streaming (by message id): the generation, its text so far and the
    /// last event that text includes. The stored text lags by up to a
    /// flush; this is what a reader shows and follows on from.
    pub async fn live_text(&self, messages: &[Message]) -> HashMap<Uuid, LiveAnswer> {
        let mut out = HashMap::new();
        let mut elsewhere = Vec::new();
        for m in messages
            .iter()
            .filter(|m| m.status == MessageStatus::Streaming)
        {
            match self.generations.for_message(m.id) {
                Some(g) => {
                    let (text, event) = g.snapshot();
                    out.insert(
                        m.id,
                        LiveAnswer {
                            generation_id: g.id,
                            text,
                            event,
                        },
                    );
                }
                None => elsewhere.push(m.id),
            }
        }
        if let Some(shared) = &self.generations.shared
            && !elsewhere.is_empty()
        {
            for l in shared.live_text(&elsewhere).await {
                out.insert(
                    l.message_id,
                    LiveAnswer {
                        generation_id: l.generation_id,
                        text: l.text,
                        event: l.text_event,
                    },
                );
            }
        }
        out
    }
}

/// A streaming answer's live text (see [`ChatService::live_text`]).
#[derive(Debug, Clone)]
pub struct LiveAnswer {
    pub generation_id: Uuid,
    pub text: String,
    /// The id of the last event `text` includes.
    pub event: u64,
}

/// The error of a failed answer, by its stored code.
fn provider_error(code: &str, message: &str) -> AppError {
    let m = message.to_string();
    match code {
        "PROVIDER_UNREACHABLE" => AppError::ProviderUnreachable(m),
        "PROVIDER_TIMEOUT" => AppError::ProviderTimeout(m),
        "MODEL_NOT_FOUND" => AppError::ModelNotFound(m),
        "RATE_LIMITED" => AppError::RateLimited {
            message: m,
            retry_after: 1,
        },
        _ => AppError::ProviderError(m),
    }
}

/// The checks that need no store: the caller's own key, the ids, the
/// content and the model name. Returns the message to regenerate.
fn validate(settings: &Config, req: &TurnRequest) -> AppResult<Option<Uuid>> {
    if req.provider_key.is_some() && !settings.allow_user_keys {
        return Err(AppError::Forbidden(
            "this server does not accept users' own provider keys".into(),
        ));
    }
    match req.provider_key_kind {
        Some(ProviderKind::Ollama) => {
            return Err(AppError::validation(
                "own keys are for openai or anthropic providers",
            ));
        }
        Some(_) if req.provider_key.is_none() => {
            return Err(AppError::validation(
                "a provider key kind was given without a provider key",
            ));
        }
        _ => {}
    }
    let regen = req
        .regenerate_of
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|r| Uuid::parse_str(r).map_err(|_| AppError::not_found("message")))
        .transpose()?;
    if regen.is_none() {
        if req.content.trim().is_empty() && req.attachments.is_empty() {
            return Err(AppError::validation("content must not be empty"));
        }
        if req.content.chars().count() > MAX_CONTENT_CHARS {
            return Err(AppError::Validation(format!(
                "content must be at most {MAX_CONTENT_CHARS} characters"
            )));
        }
    }
    if let Some(m) = &req.model {
        validate_model(m)?;
    }
    validate_params(&req.params)?;
    Ok(regen)
}
