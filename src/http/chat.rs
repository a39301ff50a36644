//! Chat: start an answer (SSE, plain JSON or WebSocket), follow or resume
//! it with `Last-Event-ID`, and stop it.

use axum::Router;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, close_code};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Deserializer};
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use utoipa::ToSchema;
use uuid::Uuid;

use super::conversations::{MessageView, message_view, new_conversation, validate_model};
use super::{Json, parse_id};
use crate::auth::CurrentUser;
use crate::chat::generation::{GenEvent, Generation, Job, Outcome};
use crate::chat::{self, DEFAULT_CONTEXT_WINDOW};
use crate::error::{AppError, AppResult, current_request_id};
use crate::providers::{ChatMessage, ChatRequest};
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::chat::{Message, MessageRole, MessageStatus};

pub const MAX_CONTENT_CHARS: usize = 200_000;
pub const PROVIDER_KEY_HEADER: &str = "x-provider-key";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/chat/stream", post(stream))
        .route("/chat/message", post(message))
        .route("/chat/ws", get(ws))
        .route("/generations/{id}/events", get(events))
        .route("/generations/{id}", delete(stop))
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Deserialize, ToSchema, Default, Clone)]
pub struct ChatBody {
    /// Omit to start a new conversation.
    #[serde(default)]
    pub conversation_id: Option<String>,
    /// Where the new user message goes: omitted = after the shown thread's
    /// last message; a message id = under that message (editing creates a
    /// sibling this way); null = a new root (editing the first message).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub parent_id: Option<Option<String>>,
    #[serde(default)]
    pub content: String,
    #[serde(default)]
    pub model: Option<String>,
    /// An assistant message to answer again (adds a sibling; `content` is ignored).
    #[serde(default)]
    pub regenerate_of: Option<String>,
    /// Only for `/api/chat/message`; must be false or absent.
    #[serde(default)]
    pub stream: Option<bool>,
}

/// Validates the request, stores the turn and starts the generation.
pub async fn start(
    state: &AppState,
    user: &CurrentUser,
    body: ChatBody,
    user_key: Option<String>,
) -> AppResult<Arc<Generation>> {
    if user_key.is_some() && !state.settings().allow_user_keys {
        return Err(AppError::Forbidden(
            "this server does not accept users' own provider keys".into(),
        ));
    }
    let regen = body
        .regenerate_of
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|r| Uuid::parse_str(r).map_err(|_| AppError::not_found("message")))
        .transpose()?;
    if regen.is_none() {
        if body.content.trim().is_empty() {
            return Err(AppError::validation("content must not be empty"));
        }
        if body.content.chars().count() > MAX_CONTENT_CHARS {
            return Err(AppError::Validation(format!(
                "content must be at most {MAX_CONTENT_CHARS} characters"
            )));
        }
    }
    if let Some(m) = &body.model {
        validate_model(m)?;
    }
    // Governance, before any work: the chat rate limit, the cap on running
    // answers and the daily quota. The reservation is settled with the real
    // usage when the answer ends (released unused if this request fails).
    let started = std::time::Instant::now();
    let reservation = state
        .limits
        .admit(&state.store, user, chat::estimate_tokens(&body.content))
        .await?;
    let uid = user.id();

    // The conversation: existing (owned) or new.
    let (conv, is_new) = match body.conversation_id.as_deref().filter(|s| !s.is_empty()) {
        Some(id) => {
            let cid = Uuid::parse_str(id).map_err(|_| AppError::ConversationNotFound)?;
            let c = state
                .store
                .get_conversation(uid, cid)
                .map_err(|e| match e {
                    StoreError::NotFound => AppError::ConversationNotFound,
                    o => o.into(),
                })?;
            (c, false)
        }
        None => {
            if regen.is_some() {
                return Err(AppError::validation(
                    "regenerate_of needs the conversation_id of its conversation",
                ));
            }
            (new_conversation(uid, None, body.model.clone(), None), true)
        }
    };
    let all = if is_new {
        Vec::new()
    } else {
        state.store.list_messages(uid, conv.id)?
    };

    // Where the new messages hang in the tree.
    let (user_msg, parent_of_answer) = if let Some(rid) = regen {
        let target = all
            .iter()
            .find(|m| m.id == rid && m.role == MessageRole::Assistant)
            .ok_or_else(|| AppError::not_found("message"))?;
        (None, target.parent_id)
    } else {
        let parent = match &body.parent_id {
            None => conv.current_leaf,
            Some(None) => None,
            Some(Some(p)) => {
                let pid = parse_id(p, "parent message")?;
                if !all.iter().any(|m| m.id == pid) {
                    return Err(AppError::not_found("parent message"));
                }
                Some(pid)
            }
        };
        let m = Message {
            id: Uuid::now_v7(),
            conversation_id: conv.id,
            parent_id: parent,
            role: MessageRole::User,
            content: body.content.clone(),
            model: None,
            provider: None,
            status: MessageStatus::Complete,
            usage: None,
            created_at: crate::clock::now(),
            duration_ms: None,
            finish_reason: None,
            error: None,
        };
        let id = m.id;
        (Some(m), Some(id))
    };

    // The model: asked for, else the conversation's, else the default.
    let model = body
        .model
        .clone()
        .or_else(|| conv.model.clone())
        .or_else(|| state.settings().default_model.clone())
        .or_else(|| state.providers.models().first().map(|m| m.id.clone()))
        .ok_or_else(|| {
            AppError::ModelNotFound(
                "no model is available: an administrator needs to add a provider".into(),
            )
        })?;
    let (provider_name, provider) = state.providers.resolve_model(&model).ok_or_else(|| {
        AppError::ModelNotFound(format!("model {model:?} is not offered by any provider"))
    })?;
    let window = state
        .providers
        .models()
        .iter()
        .find(|m| m.id == model && m.provider == provider_name)
        .and_then(|m| m.context_window)
        .unwrap_or(DEFAULT_CONTEXT_WINDOW);

    // Context: the thread down to the message being answered.
    let mut thread = chat::thread_to(&all, parent_of_answer.filter(|_| user_msg.is_none()));
    if let Some(u) = &user_msg {
        thread = chat::thread_to(&all, u.parent_id);
        thread.push(u.clone());
    }
    let ctx = chat::build_context(conv.system_prompt.as_deref(), &thread, window);
    if ctx.messages.is_empty() {
        return Err(AppError::validation("there is no message to answer"));
    }

    let assistant = Message {
        id: Uuid::now_v7(),
        conversation_id: conv.id,
        parent_id: parent_of_answer,
        role: MessageRole::Assistant,
        content: String::new(),
        model: Some(model.clone()),
        provider: Some(provider_name.clone()),
        status: MessageStatus::Streaming,
        usage: None,
        created_at: crate::clock::now(),
        duration_ms: None,
        finish_reason: None,
        error: None,
    };
    let um = user_msg.clone();
    let am = assistant.clone();
    let new_conv = is_new.then(|| conv.clone());
    let remember_model = body.model.clone();
    state
        .store
        .blocking(move |s| {
            // Sending with a model makes it the conversation's model.
            s.start_turn(uid, new_conv.as_ref(), remember_model, um.as_ref(), &am)
        })
        .await
        .map_err(|e| match e {
            StoreError::NotFound => AppError::ConversationNotFound,
            o => o.into(),
        })?;

    let meta = json!({
        "conversation_id": conv.id.to_string(),
        "user_message_id": user_msg.as_ref().map(|m| m.id.to_string()),
        "assistant_message_id": assistant.id.to_string(),
        "parent_id": parent_of_answer.map(|p| p.to_string()),
        "model": model,
        "provider": provider_name,
        "context_trimmed": ctx.trimmed > 0,
        "trimmed_messages": ctx.trimmed,
    });
    let request = ChatRequest {
        model: model.clone(),
        system: ctx.system,
        messages: ctx.messages,
        max_tokens: None,
        temperature: None,
        api_key_override: user_key.clone(),
    };
    // The title goes to the provider that answered, with the credential that
    // answered: a user's own key, or the server's when they brought none.
    let title_with = TitleCredential {
        provider: provider_name.clone(),
        user_key,
    };
    let job = Job {
        user_id: uid,
        provider_name,
        provider,
        request,
        message: assistant,
        meta,
        request_id: current_request_id(),
    };
    let st = state.clone();
    let g = state.generations.start(
        &state.store,
        job,
        Box::new(move |msg, outcome| {
            st.limits.finish(&st.store, reservation, &msg, outcome);
            if outcome == Outcome::Complete {
                tokio::spawn(make_title(st, uid, msg, title_with));
            } else {
                tokio::spawn(title_from_question(st, uid, msg));
            }
        }),
    );
    state.limits.watch_first_token(&g, started);
    Ok(g)
}

/// A chat whose first answer failed or was stopped is still named, from the
/// first words of the question, instead of staying "New chat". `title_auto`
/// stays set: the first answer that completes later replaces it with a
/// model-made title (make_title).
async fn title_from_question(state: AppState, user_id: Uuid, answer: Message) {
    let cid = answer.conversation_id;
    let Ok(conv) = state.store.get_conversation(user_id, cid) else {
        return;
    };
    if !conv.title_auto || conv.title != chat::DEFAULT_TITLE {
        return;
    }
    let Ok(all) = state.store.list_messages(user_id, cid) else {
        return;
    };
    let first_user = chat::thread_to(&all, Some(answer.id))
        .into_iter()
        .find(|m| m.role == MessageRole::User)
        .map(|m| m.content)
        .unwrap_or_default();
    let title = chat::fallback_title(&first_user);
    if title == chat::DEFAULT_TITLE {
        return;
    }
    let _ = state
        .store
        .blocking(move |s| {
            s.update_conversation(user_id, cid, false, |c, _| {
                // Named meanwhile (by the user or a later answer): keep that.
                if c.title_auto && c.title == chat::DEFAULT_TITLE {
                    c.title = title;
                }
                Ok(())
            })
        })
        .await;
}

/// Who answered, so the title request is made the same way.
struct TitleCredential {
    provider: String,
    user_key: Option<String>,
}

/// After the first complete answer, names the conversation with the same
/// model (in the background), falling back to the first words. It uses the
/// answer's provider and credential: a bring-your-own-key user's words never
/// travel with the server's key, and their key never goes to another provider.
async fn make_title(state: AppState, user_id: Uuid, answer: Message, with: TitleCredential) {
    let cid = answer.conversation_id;
    let Ok(conv) = state.store.get_conversation(user_id, cid) else {
        return;
    };
    if !conv.title_auto {
        return;
    }
    let Ok(all) = state.store.list_messages(user_id, cid) else {
        return;
    };
    let first_user = chat::thread_to(&all, Some(answer.id))
        .into_iter()
        .find(|m| m.role == MessageRole::User)
        .map(|m| m.content)
        .unwrap_or_default();
    let fallback = chat::fallback_title(&first_user);
    let model = answer.model.clone().unwrap_or_default();
    let excerpt: String = first_user.chars().take(1000).collect();
    let answer_excerpt: String = answer.content.chars().take(500).collect();
    // What the title request used, charged to the user like an answer's tokens.
    let mut used: Option<(String, u64, u64, String)> = None;
    let ask = async {
        let (provider_name, provider) = state.providers.resolve_model(&model)?;
        if provider_name != with.provider {
            // The model moved to another provider since the answer.
            return None;
        }
        let req = ChatRequest {
            model: model.clone(),
            system: Some("You write short, specific titles for conversations. Reply with the title only: at most six words, no quotes, no final period.".into()),
            messages: vec![ChatMessage::user(format!(
                "Conversation start:\n\nUser: {excerpt}\n\nAssistant: {answer_excerpt}\n\nTitle:"
            ))],
            max_tokens: Some(24),
            temperature: Some(0.2),
            api_key_override: with.user_key,
        };
        let prompt_tokens = req
            .messages
            .iter()
            .map(|m| chat::estimate_tokens(&m.content))
            .sum::<u64>()
            + req.system.as_deref().map_or(0, chat::estimate_tokens);
        let mut s = provider.stream(req).await.ok()?;
        let mut text = String::new();
        let mut reported = None;
        let mut failed = false;
        while let Some(ev) = s.next().await {
            match ev {
                Ok(crate::providers::ChatEvent::Delta(t)) => text.push_str(&t),
                Ok(crate::providers::ChatEvent::Usage {
                    input_tokens,
                    output_tokens,
                }) => {
                    reported = Some((input_tokens, output_tokens));
                }
                Ok(crate::providers::ChatEvent::Done { .. }) => break,
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
            let (i, o) = reported.unwrap_or((prompt_tokens, chat::estimate_tokens(&text)));
            used = Some((provider_name, i, o, model.clone()));
        }
        if failed {
            return None;
        }
        chat::clean_title(&text)
    };
    let title = tokio::time::timeout(Duration::from_secs(20), ask)
        .await
        .ok()
        .flatten()
        .unwrap_or(fallback);
    if let Some((provider, i, o, model)) = used {
        state
            .limits
            .charge_title(&state.store, user_id, &provider, &model, i, o)
            .await;
    }
    let _ = state
        .store
        .blocking(move |s| {
            s.update_conversation(user_id, cid, false, |c, _| {
                // The user may have renamed it meanwhile.
                if c.title_auto {
                    c.title = title;
                    c.title_auto = false;
                }
                Ok(())
            })
        })
        .await;
}

fn user_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get(PROVIDER_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_string)
}

fn sse_response(g: &Arc<Generation>, after: u64) -> Response {
    let stream = g.events(after).map(|e: Arc<GenEvent>| {
        Ok::<_, Infallible>(
            Event::default()
                .id(e.id.to_string())
                .event(e.event)
                .data(e.data.clone()),
        )
    });
    let mut resp = Sse::new(stream)
        .keep_alive(
            KeepAlive::new()
                .interval(Duration::from_secs(15))
                .text("keep-alive"),
        )
        .into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Tell reverse proxies not to buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

/// Starts an answer and streams it as server-sent events: `meta` (every
/// id), `delta`s, `usage`, then `done` or `error`. Each event has an
/// integer `id:`; a comment line every 15 s keeps the stream open.
#[utoipa::path(post, path = "/api/chat/stream", tag = "chat", request_body = ChatBody,
    params(("X-Provider-Key" = Option<String>, Header, description = "The caller's own provider key, when the server allows it")),
    responses((status = 200, description = "meta, delta, usage, then done or error events", content_type = "text/event-stream", body = String),
    (status = 403, description = "`FORBIDDEN`: `X-Provider-Key` on a server that does not allow users' keys", body = crate::error::ErrorBody),
    (status = 404, description = "`CONVERSATION_NOT_FOUND`, `MODEL_NOT_FOUND`, or `NOT_FOUND` for `parent_id` / `regenerate_of`", body = crate::error::ErrorBody),
    (status = 429, description = "`QUOTA_EXCEEDED` (daily quota, `Retry-After` to midnight UTC) or `RATE_LIMITED` (chat rate or the cap on running answers)", body = crate::error::ErrorBody)))]
pub async fn stream(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    Json(body): Json<ChatBody>,
) -> AppResult<Response> {
    let g = start(&state, &user, body, user_key(&headers)).await?;
    Ok(sse_response(&g, 0))
}

/// Starts an answer and returns the finished assistant message as JSON.
#[utoipa::path(post, path = "/api/chat/message", tag = "chat", request_body = ChatBody,
    params(("X-Provider-Key" = Option<String>, Header, description = "The caller's own provider key, when the server allows it")),
    responses((status = 200, body = MessageView),
    (status = 403, description = "`FORBIDDEN`: `X-Provider-Key` on a server that does not allow users' keys", body = crate::error::ErrorBody),
    (status = 404, description = "`CONVERSATION_NOT_FOUND`, `MODEL_NOT_FOUND`, or `NOT_FOUND` for `parent_id` / `regenerate_of`", body = crate::error::ErrorBody),
    (status = 429, description = "`QUOTA_EXCEEDED`, or `RATE_LIMITED` (here or at the provider)", body = crate::error::ErrorBody),
    (status = 502, description = "`PROVIDER_UNREACHABLE` or `PROVIDER_ERROR`", body = crate::error::ErrorBody),
    (status = 504, description = "`PROVIDER_TIMEOUT`", body = crate::error::ErrorBody)))]
pub async fn message(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    Json(body): Json<ChatBody>,
) -> AppResult<Json<MessageView>> {
    if body.stream == Some(true) {
        return Err(AppError::validation(
            "stream must be false here; use /api/chat/stream for a streamed answer",
        ));
    }
    let g = start(&state, &user, body, user_key(&headers)).await?;
    g.wait().await;
    let m = state
        .store
        .get_message(user.id(), g.conversation_id, g.message_id)?;
    if m.status == MessageStatus::Error
        && let Some(err) = &m.error
    {
        return Err(provider_error(&err.code, &err.message));
    }
    Ok(Json(message_view(&state, &m, None)))
}

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

fn last_event_id(headers: &HeaderMap, query: Option<&str>) -> AppResult<u64> {
    let raw = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            query.and_then(|q| {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix("last_event_id=").map(str::to_string))
            })
        });
    match raw.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(0),
        Some(s) => s
            .parse()
            .map_err(|_| AppError::validation("Last-Event-ID must be a whole number")),
    }
}

/// Replays the events after `Last-Event-ID` (header, or `?last_event_id=`)
/// and continues live until the answer ends.
#[utoipa::path(get, path = "/api/generations/{id}/events", tag = "chat",
    params(("id" = String, Path, description = "Generation id"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Replay from the event after this one"),
        ("last_event_id" = Option<u64>, Query, description = "The same, for clients that cannot set headers")),
    responses((status = 200, description = "The generation's events", content_type = "text/event-stream", body = String),
    (status = 404, body = crate::error::ErrorBody)))]
pub async fn events(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> AppResult<Response> {
    let gid = parse_id(&id, "generation")?;
    let g = state
        .generations
        .get(user.id(), gid)
        .ok_or_else(|| AppError::not_found("generation"))?;
    let after = last_event_id(&headers, uri.query())?;
    Ok(sse_response(&g, after))
}

/// Stops an answer; the text so far is kept with status `interrupted`.
#[utoipa::path(delete, path = "/api/generations/{id}", tag = "chat",
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn stop(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let gid = parse_id(&id, "generation")?;
    let g = state
        .generations
        .get(user.id(), gid)
        .ok_or_else(|| AppError::not_found("generation"))?;
    g.stop();
    // Answer once the partial answer is stored, so a reload shows it.
    let _ = tokio::time::timeout(Duration::from_secs(5), g.wait()).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WsIn {
    Chat(Box<ChatBodyWs>),
    Stop {
        generation_id: String,
    },
    Resume {
        generation_id: String,
        #[serde(default)]
        last_event_id: u64,
    },
}

#[derive(Deserialize)]
struct ChatBodyWs {
    #[serde(flatten)]
    body: ChatBody,
    /// The user's own provider key, when the server allows it.
    #[serde(default)]
    provider_key: Option<String>,
}

/// The same events as JSON frames `{generation_id, id, event, data}`.
/// Send `{"type":"chat", …body}`, `{"type":"stop","generation_id"}` or
/// `{"type":"resume","generation_id","last_event_id"}`. Every frame counts
/// against the per-user API rate limit, and the credential is checked again
/// on every frame that acts: once it is no longer valid (logged out,
/// expired, account disabled, password reset), the socket answers with an
/// error frame and closes with code 1008.
#[utoipa::path(get, path = "/api/chat/ws", tag = "chat",
    responses((status = 101, description = "WebSocket carrying the chat events as JSON frames"),
    (status = 400, description = "`VALIDATION_FAILED`: not a WebSocket upgrade request", body = crate::error::ErrorBody),
    (status = 403, description = "`CSRF_INVALID`: a foreign `Origin`; `FORBIDDEN`: an API key without the `write` scope", body = crate::error::ErrorBody)))]
pub async fn ws(
    State(state): State<AppState>,
    user: CurrentUser,
    cred: crate::auth::Credential,
    headers: HeaderMap,
    super::WsUpgrade(upgrade): super::WsUpgrade,
) -> AppResult<Response> {
    // A WebSocket upgrade is a GET, so the CSRF middleware does not see it;
    // refuse cross-site pages here (cross-site WebSocket hijacking).
    if !super::origin_allowed(&state, &headers) {
        return Err(AppError::CsrfInvalid);
    }
    // The upgrade is a GET, which a read-only API key may make; starting and
    // stopping answers over the socket are writes.
    if let crate::auth::AuthVia::ApiKey { scopes, .. } = &user.via
        && !scopes.iter().any(|s| s == "write")
    {
        return Err(AppError::Forbidden(
            "this API key lacks the \"write\" scope needed for chat".into(),
        ));
    }
    let request_id = current_request_id();
    Ok(upgrade
        .max_message_size(state.cfg.max_body_bytes)
        .on_upgrade(move |socket| ws_session(socket, state, user, cred, request_id)))
}

/// Admits one frame: it counts against the per-user API limit, and a frame
/// that acts (`needed` is the API-key scope the same HTTP request would
/// need) checks the credential again, so the caller acts as the user is
/// now (role, quota) or not at all. `Err((error, close))`: `close` when the
/// credential is no longer valid.
async fn admit_frame(
    state: &AppState,
    user: &CurrentUser,
    cred: &crate::auth::Credential,
    needed: Option<&str>,
) -> Result<CurrentUser, (AppError, bool)> {
    state.limits.check_api(user.id()).map_err(|e| (e, false))?;
    match needed {
        None => Ok(user.clone()),
        Some(scope) => super::extract::verify(state, cred, scope)
            .await
            .map_err(|e| (e, true)),
    }
}

async fn ws_session(
    socket: WebSocket,
    state: AppState,
    user: CurrentUser,
    cred: crate::auth::Credential,
    request_id: String,
) {
    let (mut sink, mut source) = socket.split();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<WsMessage>(256);
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let last = matches!(msg, WsMessage::Close(_));
            if sink.send(msg).await.is_err() || last {
                break;
            }
        }
    });
    let forward = |g: Arc<Generation>, after: u64, tx: tokio::sync::mpsc::Sender<WsMessage>| {
        tokio::spawn(async move {
            let gid = g.id.to_string();
            let mut s = Box::pin(g.events(after));
            while let Some(e) = s.next().await {
                let data: serde_json::Value =
                    serde_json::from_str(&e.data).unwrap_or(serde_json::Value::Null);
                let frame =
                    json!({"generation_id": gid, "id": e.id, "event": e.event, "data": data});
                if tx
                    .send(WsMessage::Text(frame.to_string().into()))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
    };
    let error_frame = |e: &AppError| {
        let b = e.body();
        let mut data = json!({"code": b.code, "message": b.message, "request_id": request_id});
        if let AppError::RateLimited { retry_after, .. } = e {
            data["retry_after"] = json!(retry_after);
        }
        WsMessage::Text(json!({"event": "error", "data": data}).to_string().into())
    };
    // Awaited, not `try_send`: a refused frame always gets its error frame;
    // while the client reads too slowly to empty the queue, the loop stops
    // reading its frames (back-pressure) instead of dropping the answer.
    let send_error = |tx: &tokio::sync::mpsc::Sender<WsMessage>, e: AppError| {
        let (tx, frame) = (tx.clone(), error_frame(&e));
        async move {
            let _ = tx.send(frame).await;
        }
    };
    while let Some(Ok(msg)) = source.next().await {
        let text = match msg {
            WsMessage::Text(t) => t.to_string(),
            WsMessage::Close(_) => break,
            _ => continue,
        };
        let parsed: Result<WsIn, _> = serde_json::from_str(&text);
        let needed = match &parsed {
            Err(_) => None,
            Ok(WsIn::Resume { .. }) => Some("read"),
            Ok(WsIn::Chat(_) | WsIn::Stop { .. }) => Some("write"),
        };
        let user = match admit_frame(&state, &user, &cred, needed).await {
            Ok(u) => u,
            Err((e, false)) => {
                send_error(&tx, e).await;
                continue;
            }
            Err((e, true)) => {
                // The error frame, then a close frame with the code as reason.
                // Answers already running go on and are stored, as an SSE
                // stream's would; nothing new starts.
                let code = e.code();
                let _ = tx.send(error_frame(&e)).await;
                let _ = tx
                    .send(WsMessage::Close(Some(CloseFrame {
                        code: close_code::POLICY,
                        reason: code.into(),
                    })))
                    .await;
                break;
            }
        };
        match parsed {
            Err(e) => send_error(&tx, AppError::Validation(format!("invalid frame: {e}"))).await,
            Ok(WsIn::Chat(b)) => {
                let b = *b;
                match crate::error::REQUEST_ID
                    .scope(
                        request_id.clone(),
                        start(&state, &user, b.body, b.provider_key),
                    )
                    .await
                {
                    Ok(g) => forward(g, 0, tx.clone()),
                    Err(e) => send_error(&tx, e).await,
                }
            }
            Ok(WsIn::Stop { generation_id }) => {
                match Uuid::parse_str(&generation_id)
                    .ok()
                    .and_then(|id| state.generations.get(user.id(), id))
                {
                    Some(g) => g.stop(),
                    None => send_error(&tx, AppError::not_found("generation")).await,
                }
            }
            Ok(WsIn::Resume {
                generation_id,
                last_event_id,
            }) => match Uuid::parse_str(&generation_id)
                .ok()
                .and_then(|id| state.generations.get(user.id(), id))
            {
                Some(g) => forward(g, last_event_id, tx.clone()),
                None => send_error(&tx, AppError::not_found("generation")).await,
            },
        }
    }
    drop(tx);
    let _ = writer.await;
}
