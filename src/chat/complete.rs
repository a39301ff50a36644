//! Stateless completions: what the `/v1` front end calls. A call names a
//! model and carries the whole exchange itself; it is admitted exactly like
//! an answer in the app (the per-user chat rate limit, the cap on running
//! answers and the daily quota, reserved before the upstream call), charged
//! when it ends (the provider's usage, else an estimate marked as such) to
//! the user and to the API key it was made with, counted in the metrics and
//! audited without content. Nothing is stored but the usage and the audit
//! entry: no conversation, no message. Plain inputs and outputs: no HTTP
//! types.

use crate::groups::ModelAccess;
use futures::StreamExt;
use futures::stream::BoxStream;
use std::sync::Arc;
use uuid::Uuid;

use super::estimate_tokens;
use super::generation::Outcome;
use super::turn::ChatService;
use crate::auth::CurrentUser;
use crate::error::{AppError, AppResult};
use crate::limits::quota::Reservation;
use crate::limits::{CallEnd, Limits};
use crate::providers::{
    ChatEvent, ChatRequest, ChatStream, EmbeddingRequest, Embeddings, ModelKind, Provider,
    ProviderError, ToolCallDelta,
};
use crate::store::SharedStore;
use crate::store::chat::Usage;
use crate::users::Actor;

/// Who makes a call: the user (for admission), the API key it was made
/// with (for usage per key) and where from (for the audit log).
#[derive(Debug, Clone)]
pub struct Caller {
    pub actor: Actor,
    pub api_key: Option<Uuid>,
}

/// What a running call yields: text and tool-call pieces in order, then
/// exactly one `Done` or `Failed`, sent after the call has been charged.
#[derive(Debug, Clone, PartialEq)]
pub enum CallEvent {
    Text(String),
    ToolCall(ToolCallDelta),
    Done {
        /// OpenAI's words: stop, length, tool_calls, content_filter.
        finish_reason: String,
        usage: Usage,
    },
    Failed {
        error: ProviderError,
        usage: Usage,
    },
}

/// An admitted call whose answer is streaming.
pub struct Completion {
    /// The provider that answers (its configured name).
    pub provider: String,
    pub model: String,
    /// What the input is estimated at (the `message_start` usage of
    /// Anthropic's stream, before the provider's count is known).
    pub input_estimate: u64,
    pub events: BoxStream<'static, CallEvent>,
}

/// Tokens of a request's input, estimated the way the app's answers are
/// (text, tool calls, tool definitions).
pub fn input_estimate(req: &ChatRequest) -> u64 {
    let messages: u64 = req
        .messages
        .iter()
        .map(|m| {
            estimate_tokens(&m.content)
                + 4
                + m.tool_calls
                    .iter()
                    .map(|c| estimate_tokens(&c.name) + estimate_tokens(&c.arguments))
                    .sum::<u64>()
        })
        .sum();
    let tools: u64 = req
        .tools
        .iter()
        .map(|t| {
            estimate_tokens(&t.name)
                + t.description.as_deref().map_or(0, estimate_tokens)
                + estimate_tokens(&t.parameters.to_string())
        })
        .sum();
    messages + tools + req.system.as_deref().map_or(0, estimate_tokens)
}

/// Everything needed to charge and audit a call when it ends.
struct Accounting {
    limits: Arc<Limits>,
    store: SharedStore,
    reservation: Reservation,
    endpoint: &'static str,
    action: &'static str,
    provider: String,
    model: String,
    caller: Caller,
}

impl Accounting {
    async fn end(self, outcome: Outcome, usage: Usage, consumed: bool, error: Option<&str>) {
        let end = CallEnd {
            endpoint: self.endpoint,
            provider: &self.provider,
            model: &self.model,
            api_key: self.caller.api_key,
            usage,
            outcome,
            consumed,
            error_code: error,
        };
        self.limits
            .finish_call(&self.store, self.reservation, end)
            .await;
        let outcome = match (outcome, error) {
            (_, Some(code)) => code.to_string(),
            (Outcome::Stopped, None) => "stopped".into(),
            _ => "ok".into(),
        };
        audit(
            &self.store,
            &self.caller,
            self.action,
            &self.provider,
            &self.model,
            &outcome,
        );
    }
}

/// The audit entry of a call: who, which model, how it ended; never the
/// content. Written in the background: the call itself already happened.
fn audit(
    store: &SharedStore,
    caller: &Caller,
    action: &str,
    provider: &str,
    model: &str,
    outcome: &str,
) {
    let target = match caller.api_key {
        Some(k) => format!("model {model} ({provider}), key {k}"),
        None => format!("model {model} ({provider})"),
    };
    let entry = caller.actor.entry(action, Some(target), outcome);
    let store = store.clone();
    crate::store::background::spawn(async move {
        if let Err(e) = store.append_audit(&entry).await {
            tracing::error!(action = %entry.action, error = %e, "failed to write audit entry");
        }
    });
}

/// The audit entry of a call refused before it reached a provider (an
/// unknown model, a bad request). Rate-limit and quota refusals write none,
/// as in the app: a refusal must not cost a store write (they are counted
/// in the metrics).
fn refused(store: &SharedStore, caller: &Caller, action: &str, model: &str, e: &AppError) {
    if matches!(
        e,
        AppError::RateLimited { .. } | AppError::QuotaExceeded { .. }
    ) {
        return;
    }
    audit(store, caller, action, "-", model, e.code());
}

/// The stream of a running call and what it has used so far.
struct Running {
    inner: ChatStream,
    accounting: Option<Accounting>,
    input_estimate: u64,
    output_chars: u64,
    reported: Option<(u64, u64)>,
}

impl Running {
    fn usage(&self) -> Usage {
        match self.reported {
            Some((i, o)) => Usage {
                input_tokens: i,
                output_tokens: o,
                estimated: false,
            },
            None => Usage {
                input_tokens: self.input_estimate,
                output_tokens: self.output_chars.div_ceil(4),
                estimated: true,
            },
        }
    }

    /// The provider did work once it wrote something or counted tokens.
    fn consumed(&self) -> bool {
        self.output_chars > 0 || self.reported.is_some()
    }

    async fn settle(&mut self, outcome: Outcome, error: Option<&str>) {
        let (usage, consumed) = (
            self.usage(),
            self.consumed() || outcome == Outcome::Complete,
        );
        if let Some(a) = self.accounting.take() {
            a.end(outcome, usage, consumed, error).await;
        }
    }

    async fn next_event(&mut self) -> Option<CallEvent> {
        self.accounting.as_ref()?;
        loop {
            let failed = match self.inner.next().await {
                Some(Ok(ChatEvent::Delta(text))) => {
                    if text.is_empty() {
                        continue;
                    }
                    self.output_chars += text.chars().count() as u64;
                    return Some(CallEvent::Text(text));
                }
                Some(Ok(ChatEvent::ToolCall(d))) => {
                    self.output_chars += (d.arguments.chars().count()
                        + d.name.as_deref().map_or(0, |n| n.chars().count()))
                        as u64;
                    return Some(CallEvent::ToolCall(d));
                }
                Some(Ok(ChatEvent::Usage {
                    input_tokens,
                    output_tokens,
                })) => {
                    self.reported = Some((input_tokens, output_tokens));
                    continue;
                }
                Some(Ok(ChatEvent::Done { finish_reason })) => {
                    self.settle(Outcome::Complete, None).await;
                    return Some(CallEvent::Done {
                        finish_reason,
                        usage: self.usage(),
                    });
                }
                Some(Err(e)) => e,
                None => ProviderError::Protocol(crate::providers::ENDED_EARLY.into()),
            };
            tracing::warn!(code = failed.code(), "v1 call failed mid-answer");
            self.settle(Outcome::Failed, Some(failed.code())).await;
            return Some(CallEvent::Failed {
                error: failed,
                usage: self.usage(),
            });
        }
    }
}

impl Drop for Running {
    /// The client went away mid-answer: the upstream call is dropped and
    /// what it used so far is charged, as a stopped answer is in the app.
    fn drop(&mut self) {
        let Some(a) = self.accounting.take() else {
            return;
        };
        let (usage, consumed) = (self.usage(), self.consumed());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(a.end(Outcome::Stopped, usage, consumed, None));
        }
    }
}

impl ChatService {
    /// The first provider routing would try for `model` among those the
    /// caller's groups allow (see `crate::groups`), and the name to route
    /// by (pinned to that provider when the groups leave some out); 404
    /// MODEL_NOT_FOUND when there is none.
    fn first_candidate(
        &self,
        access: &ModelAccess,
        model: &str,
    ) -> AppResult<(crate::providers::routing::Candidate, String)> {
        super::validate_model(model)?;
        let (allowed, pin) = access.keep(self.providers.candidates(model, false));
        let first = allowed.into_iter().next().ok_or_else(|| {
            AppError::ModelNotFound(format!(
                "The model `{model}` does not exist or you do not have access to it."
            ))
        })?;
        let route = if pin {
            format!("{}/{}", first.provider_name, first.model)
        } else {
            model.to_string()
        };
        Ok((first, route))
    }

    /// The provider serving `model` for the caller, or 404 MODEL_NOT_FOUND.
    fn provider_of(
        &self,
        access: &ModelAccess,
        model: &str,
    ) -> AppResult<(String, Arc<dyn Provider>)> {
        self.first_candidate(access, model)
            .map(|(c, _)| (c.provider_name, c.provider))
    }

    /// Admits a stateless call and starts its answer. Refusals (rate,
    /// quota, unknown model) and failures before the first byte come back
    /// as the `Err`; later failures as [`CallEvent::Failed`].
    pub async fn complete(
        &self,
        user: &CurrentUser,
        caller: Caller,
        mut req: ChatRequest,
    ) -> AppResult<Completion> {
        if req.messages.is_empty() {
            return Err(AppError::validation("messages must not be empty"));
        }
        // A call runs on the server's provider credentials only.
        req.api_key_override = None;
        let access = ModelAccess::load(&self.store, &user.user).await?;
        let (first, route) = self
            .first_candidate(&access, &req.model)
            .and_then(|(first, route)| {
                let embedding = self.providers.models().iter().any(|m| {
                    m.id == first.model
                        && m.provider == first.provider_name
                        && m.kind == ModelKind::Embedding
                });
                if embedding {
                    return Err(AppError::Validation(format!(
                        "{} is an embedding model: use /v1/embeddings",
                        req.model
                    )));
                }
                let images: Vec<_> = req
                    .messages
                    .iter()
                    .flat_map(|m| m.images.iter())
                    .map(|i| crate::store::chat::Attachment {
                        id: Uuid::nil(),
                        name: String::new(),
                        mime: i.mime.clone(),
                        size: i.data.len() as u64,
                        width: None,
                        height: None,
                    })
                    .collect();
                let vision = images.is_empty()
                    || crate::model_settings::reads_images(
                        &self.models,
                        &self.providers,
                        &first.model,
                        &first.provider_name,
                    );
                super::attachments::check_vision(&images, &req.model, vision)?;
                Ok((first, route))
            })
            .inspect_err(|e| refused(&self.store, &caller, "v1.chat", &req.model, e))?;
        let estimate = input_estimate(&req);
        let reservation = self
            .limits
            .admit(&self.store, user, estimate)
            .await
            .inspect_err(|e| refused(&self.store, &caller, "v1.chat", &req.model, e))?;
        let mut accounting = Accounting {
            limits: self.limits.clone(),
            store: self.store.clone(),
            reservation,
            endpoint: "chat",
            action: "v1.chat",
            provider: first.provider_name.clone(),
            model: req.model.clone(),
            caller,
        };
        let model = req.model.clone();
        // Routed over every provider of the model (the caller may use):
        // failover before the first token, and the one that answered is
        // charged.
        let (provider_name, inner) = match self.providers.open_stream(&route, req).await {
            Ok(routed) => {
                accounting.provider = routed.provider_name.clone();
                (routed.provider_name, routed.stream)
            }
            Err(e) => {
                let usage = Usage {
                    input_tokens: 0,
                    output_tokens: 0,
                    estimated: true,
                };
                accounting
                    .end(Outcome::Failed, usage, false, Some(e.code()))
                    .await;
                return Err(e.into());
            }
        };
        let running = Running {
            inner,
            accounting: Some(accounting),
            input_estimate: estimate,
            output_chars: 0,
            reported: None,
        };
        let events = futures::stream::unfold(running, |mut r| async move {
            let e = r.next_event().await?;
            Some((e, r))
        })
        .boxed();
        Ok(Completion {
            provider: provider_name,
            model,
            input_estimate: estimate,
            events,
        })
    }

    /// Admits and runs one embedding call, charged like a completion (one
    /// message and its input tokens).
    pub async fn embed(
        &self,
        user: &CurrentUser,
        caller: Caller,
        mut req: EmbeddingRequest,
    ) -> AppResult<Embeddings> {
        if req.input.is_empty() {
            return Err(AppError::validation("input must not be empty"));
        }
        req.api_key_override = None;
        let access = ModelAccess::load(&self.store, &user.user).await?;
        let (provider_name, provider) = self
            .provider_of(&access, &req.model)
            .inspect_err(|e| refused(&self.store, &caller, "v1.embeddings", &req.model, e))?;
        let estimate: u64 = req.input.iter().map(|t| estimate_tokens(t)).sum();
        let reservation = self
            .limits
            .admit(&self.store, user, estimate)
            .await
            .inspect_err(|e| refused(&self.store, &caller, "v1.embeddings", &req.model, e))?;
        let accounting = Accounting {
            limits: self.limits.clone(),
            store: self.store.clone(),
            reservation,
            endpoint: "embeddings",
            action: "v1.embeddings",
            provider: provider_name,
            model: req.model.clone(),
            caller,
        };
        match provider.embed(req).await {
            Ok(e) => {
                let usage = Usage {
                    input_tokens: if e.input_tokens > 0 {
                        e.input_tokens
                    } else {
                        estimate
                    },
                    output_tokens: 0,
                    estimated: e.input_tokens == 0,
                };
                accounting.end(Outcome::Complete, usage, true, None).await;
                Ok(e)
            }
            Err(err) => {
                let usage = Usage {
                    input_tokens: 0,
                    output_tokens: 0,
                    estimated: true,
                };
                accounting
                    .end(Outcome::Failed, usage, false, Some(err.code()))
                    .await;
                Err(err.into())
            }
        }
    }
}
