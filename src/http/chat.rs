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
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use utoipa::ToSchema;

use super::Json;
use super::conversations::{MessageView, ModelParamsBody, message_view};
use crate::auth::CurrentUser;
use crate::chat::events::{GenEvent, Logged};
use crate::chat::shared::Followed;
use crate::chat::turn::{ChatService, Placement, TurnRequest};
use crate::error::{AppError, AppResult, current_request_id};
use crate::state::AppState;
pub const PROVIDER_KEY_HEADER: &str = "x-provider-key";
/// `openai` or `anthropic`: the kind of provider the own key belongs to.
pub const PROVIDER_KEY_KIND_HEADER: &str = "x-provider-key-kind";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/chat/stream", post(stream))
        .route("/chat/message", post(message))
        .route("/chat/ws", get(ws))
        .route("/generations/{id}/events", get(events))
        .route("/generations/{id}", delete(stop))
        .route(
            "/chat/temporary/{id}",
            delete(super::own_keys::discard_temporary),
        )
        .route("/chat/validate-key", post(super::own_keys::validate_key))
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
    /// A preset to start the new conversation with (only without
    /// `conversation_id`): it sets the model (unless `model` is given), the
    /// system prompt and the sampling settings.
    #[serde(default)]
    pub preset_id: Option<String>,
    /// An assistant message to answer again (adds a sibling; `content` is ignored).
    #[serde(default)]
    pub regenerate_of: Option<String>,
    /// Only for `/api/chat/message`; must be false or absent.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Sampling settings for this answer on; they become the
    /// conversation's (like `model`).
    #[serde(flatten)]
    pub params: ModelParamsBody,
    /// Start a temporary chat: kept only in the server's memory, never
    /// stored or indexed, gone when closed (`DELETE
    /// /api/chat/temporary/{id}`) or idle for an hour. Only without
    /// `conversation_id`; a turn in a temporary chat needs no flag.
    #[serde(default)]
    pub temporary: bool,
    /// The system prompt of a new temporary chat (it has no
    /// `PATCH /api/conversations/{id}`); refused otherwise: a saved
    /// conversation takes it through `POST /api/conversations`.
    #[serde(default)]
    pub system_prompt: Option<String>,
    /// Ids of the caller's files (`POST /api/files`) to attach to the new
    /// message, at most 10. Images go to the model (which must read images:
    /// else 422 `VISION_UNSUPPORTED`); documents are read and their passages
    /// put into the context, with `sources` on the answer. Another user's id
    /// answers 404.
    #[serde(default)]
    pub attachments: Vec<String>,
}

impl ChatBody {
    /// The service's request for this body.
    fn into_turn(self, key: OwnKey, request_id: String) -> AppResult<TurnRequest> {
        if let Some(p) = &self.system_prompt {
            super::conversations::validate_system_prompt(p)?;
        }
        Ok(TurnRequest {
            conversation_id: self.conversation_id,
            placement: match self.parent_id {
                None => Placement::AfterLeaf,
                Some(None) => Placement::Root,
                Some(Some(p)) => Placement::Under(p),
            },
            content: self.content,
            model: self.model,
            preset_id: self.preset_id,
            params: self.params.into_patch(),
            regenerate_of: self.regenerate_of,
            provider_key: key.key,
            provider_key_kind: key.kind,
            temporary: self.temporary,
            system_prompt: self.system_prompt,
            attachments: self.attachments,
            request_id,
        })
    }
}

/// The chat service over this server's state, with the settings in force
/// now.
pub fn service(state: &AppState) -> ChatService {
    ChatService {
        store: state.store.clone(),
        providers: state.providers.clone(),
        limits: state.limits.clone(),
        generations: state.generations.clone(),
        settings: state.settings(),
        knowledge: state.knowledge.clone(),
        files: state.files.clone(),
        models: state.models.clone(),
    }
}

/// A caller's own provider key and the kind it belongs to.
#[derive(Default)]
pub struct OwnKey {
    pub key: Option<String>,
    pub kind: Option<crate::providers::ProviderKind>,
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

/// `OwnKey` from a key and its kind as given; an unknown kind is refused.
pub fn own_key(key: Option<&str>, kind: Option<&str>) -> AppResult<OwnKey> {
    let kind = kind
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| k.parse().map_err(AppError::Validation))
        .transpose()?;
    Ok(OwnKey {
        key: key
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_string),
        kind,
    })
}

fn user_key(headers: &HeaderMap) -> AppResult<OwnKey> {
    own_key(
        header_text(headers, PROVIDER_KEY_HEADER),
        header_text(headers, PROVIDER_KEY_KIND_HEADER),
    )
}

/// The JSON of an event's payload: the `data` of its SSE frame. The wire
/// has always had sorted keys: the payload structs declare their fields in
/// that order, so they are written directly (one pass, no map in between);
/// only document `sources` (whose fields are not declared sorted) go
/// through a sorted map.
fn event_data(e: &GenEvent) -> String {
    let unsorted = match e {
        GenEvent::Meta(m) => !m.sources.is_empty(),
        GenEvent::Done { sources, .. } => !sources.is_empty(),
        _ => false,
    };
    let json = if unsorted {
        serde_json::to_value(e).map(|v| v.to_string())
    } else {
        serde_json::to_string(e)
    };
    json.unwrap_or_else(|_| "null".into())
}

fn sse_response(g: &Followed, after: u64) -> Response {
    let stream = g.events(after).map(|e: Arc<Logged>| {
        Ok::<_, Infallible>(
            Event::default()
                .id(e.id.to_string())
                .event(e.event.name())
                .data(event_data(&e.event)),
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
/// id), `delta`s, `title` (when this answer named the conversation),
/// `usage`, then `done` or `error`. Each event has an
/// integer `id:`; a comment line every 15 s keeps the stream open.
#[utoipa::path(post, path = "/api/chat/stream", tag = "chat", request_body = ChatBody,
    params(("X-Provider-Key" = Option<String>, Header, description = "The caller's own provider key, when the server allows it"),
        ("X-Provider-Key-Kind" = Option<String>, Header, description = "openai or anthropic: the only kind of provider the key is sent to")),
    responses((status = 200, description = "meta, delta, title (when the conversation was just named), usage, then done or error events", content_type = "text/event-stream", body = String),
    (status = 403, description = "`FORBIDDEN`: `X-Provider-Key` on a server that does not allow users' keys", body = crate::error::ErrorBody),
    (status = 404, description = "`CONVERSATION_NOT_FOUND`, `MODEL_NOT_FOUND`, or `NOT_FOUND` for `parent_id` / `regenerate_of`", body = crate::error::ErrorBody),
    (status = 429, description = "`QUOTA_EXCEEDED` (daily quota, `Retry-After` to midnight UTC) or `RATE_LIMITED` (chat rate or the cap on running answers)", body = crate::error::ErrorBody)))]
pub async fn stream(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    Json(body): Json<ChatBody>,
) -> AppResult<Response> {
    let turn = body.into_turn(user_key(&headers)?, current_request_id())?;
    let g = service(&state).start_turn(&user, turn).await?;
    Ok(sse_response(&Followed::Local(g), 0))
}

/// Starts an answer and returns the finished assistant message as JSON.
#[utoipa::path(post, path = "/api/chat/message", tag = "chat", request_body = ChatBody,
    params(("X-Provider-Key" = Option<String>, Header, description = "The caller's own provider key, when the server allows it"),
        ("X-Provider-Key-Kind" = Option<String>, Header, description = "openai or anthropic: the only kind of provider the key is sent to")),
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
    let turn = body.into_turn(user_key(&headers)?, current_request_id())?;
    let m = service(&state).answer(&user, turn).await?;
    Ok(Json(message_view(&state, &m, None)))
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
    let after = last_event_id(&headers, uri.query())?;
    let g = service(&state).generation(user.id(), &id).await?;
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
    service(&state).stop(user.id(), &id).await?;
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
    /// openai or anthropic: the only kind of provider the key is sent to.
    #[serde(default)]
    provider_key_kind: Option<String>,
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
    state
        .limits
        .check_api(user.id())
        .await
        .map_err(|e| (e, false))?;
    match needed {
        None => Ok(user.clone()),
        Some(scope) => state
            .verifier()
            .verify(cred, scope)
            .await
            .map_err(|e| (e, true)),
    }
}

/// A WebSocket event frame; fields in the order the wire has always had.
#[derive(Serialize)]
struct WsFrame<'a> {
    data: &'a GenEvent,
    event: &'static str,
    generation_id: &'a str,
    id: u64,
}

/// The session's outgoing side: frames queue here and a writer task sends
/// them in order.
struct WsOut {
    tx: tokio::sync::mpsc::Sender<WsMessage>,
    request_id: String,
}

impl WsOut {
    /// Forwards a generation's events after `after` as frames.
    fn forward(&self, g: Followed, after: u64) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let gid = g.id().to_string();
            let mut s = g.events(after);
            while let Some(e) = s.next().await {
                let frame = WsFrame {
                    data: &e.event,
                    event: e.event.name(),
                    generation_id: &gid,
                    id: e.id,
                };
                let text = serde_json::to_string(&frame).unwrap_or_default();
                if tx.send(WsMessage::Text(text.into())).await.is_err() {
                    break;
                }
            }
        });
    }

    fn error_frame(&self, e: &AppError) -> WsMessage {
        let b = e.body();
        let mut data = json!({"code": b.code, "message": b.message, "request_id": self.request_id});
        if let AppError::RateLimited { retry_after, .. } = e {
            data["retry_after"] = json!(retry_after);
        }
        WsMessage::Text(json!({"event": "error", "data": data}).to_string().into())
    }

    /// Awaited, not `try_send`: a refused frame always gets its error frame;
    /// while the client reads too slowly to empty the queue, the session
    /// stops reading its frames (back-pressure) instead of dropping the answer.
    async fn error(&self, e: &AppError) {
        let _ = self.tx.send(self.error_frame(e)).await;
    }

    /// The error frame, then a close frame with the code as reason.
    async fn close(&self, e: &AppError) {
        self.error(e).await;
        let close = CloseFrame {
            code: close_code::POLICY,
            reason: e.code().into(),
        };
        let _ = self.tx.send(WsMessage::Close(Some(close))).await;
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
    let out = WsOut { tx, request_id };
    while let Some(Ok(msg)) = source.next().await {
        let text = match msg {
            WsMessage::Text(t) => t.to_string(),
            WsMessage::Close(_) => break,
            _ => continue,
        };
        if !ws_frame(&state, &user, &cred, &out, &text).await {
            break;
        }
    }
    drop(out);
    let _ = writer.await;
}

/// Acts on one frame from the client; false when the socket must close.
async fn ws_frame(
    state: &AppState,
    user: &CurrentUser,
    cred: &crate::auth::Credential,
    out: &WsOut,
    text: &str,
) -> bool {
    let parsed: Result<WsIn, _> = serde_json::from_str(text);
    let needed = match &parsed {
        Err(_) => None,
        Ok(WsIn::Resume { .. }) => Some("read"),
        Ok(WsIn::Chat(_) | WsIn::Stop { .. }) => Some("write"),
    };
    let user = match admit_frame(state, user, cred, needed).await {
        Ok(u) => u,
        Err((e, false)) => {
            out.error(&e).await;
            return true;
        }
        Err((e, true)) => {
            // Answers already running go on and are stored, as an SSE
            // stream's would; nothing new starts.
            out.close(&e).await;
            return false;
        }
    };
    let started = act(state, &user, out, parsed).await;
    if let Err(e) = started {
        out.error(&e).await;
    }
    true
}

/// What one admitted frame asks for: start an answer, stop one, or follow
/// one from an event id.
async fn act(
    state: &AppState,
    user: &CurrentUser,
    out: &WsOut,
    parsed: Result<WsIn, serde_json::Error>,
) -> AppResult<()> {
    let chat = service(state);
    match parsed.map_err(|e| AppError::Validation(format!("invalid frame: {e}")))? {
        WsIn::Chat(b) => {
            let key = own_key(b.provider_key.as_deref(), b.provider_key_kind.as_deref())?;
            let turn = b.body.into_turn(key, out.request_id.clone())?;
            let start = chat.start_turn(user, turn);
            let g = crate::error::REQUEST_ID
                .scope(out.request_id.clone(), start)
                .await?;
            out.forward(Followed::Local(g), 0);
        }
        WsIn::Stop { generation_id } => {
            let g = chat.generation(user.id(), &generation_id).await?;
            // The stop itself goes on in the background (on another
            // instance it waits for the answer's end), like a local stop.
            tokio::spawn(async move { g.stop().await });
        }
        WsIn::Resume {
            generation_id,
            last_event_id,
        } => {
            let g = chat.generation(user.id(), &generation_id).await?;
            out.forward(g, last_event_id);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::chat::ModelParamsPatch;

    fn turn_of(frame: serde_json::Value) -> TurnRequest {
        match serde_json::from_value::<WsIn>(frame).expect("a chat frame") {
            WsIn::Chat(b) => b
                .body
                .into_turn(
                    OwnKey {
                        key: b.provider_key,
                        kind: None,
                    },
                    String::new(),
                )
                .expect("a valid chat frame"),
            _ => panic!("not a chat frame"),
        }
    }

    /// Model settings in a WebSocket chat frame (a tagged, flattened body)
    /// arrive as in the JSON body: a number sets, null clears, absent keeps.
    #[test]
    fn model_settings_in_a_websocket_frame() {
        let t = turn_of(json!({"type": "chat", "content": "hi", "temperature": 1,
            "max_tokens": 20, "top_p": null}));
        assert_eq!(
            t.params,
            ModelParamsPatch {
                temperature: Some(Some(1.0)),
                max_tokens: Some(Some(20)),
                top_p: Some(None),
            }
        );
        let t = turn_of(json!({"type": "chat", "content": "hi"}));
        assert!(t.params.is_empty());
    }

    /// The payloads written directly are byte for byte those of the sorted
    /// maps the wire was always built from.
    #[test]
    fn event_data_keeps_the_sorted_wire_format() {
        use crate::chat::events::{ErrorEvent, Meta, Title, UsageEvent};
        use crate::store::chat::Source;
        let source = Source {
            file_id: uuid::Uuid::now_v7(),
            name: "n.pdf".into(),
            chunk: Some(2),
            span: crate::store::knowledge::ChunkSpan {
                page_start: Some(1),
                ..Default::default()
            },
            snippet: "s".into(),
            whole: false,
        };
        let meta = |sources: Vec<Source>| {
            GenEvent::Meta(Meta {
                assistant_message_id: uuid::Uuid::now_v7(),
                context_trimmed: false,
                conversation_id: uuid::Uuid::now_v7(),
                generation_id: uuid::Uuid::now_v7(),
                model: "m".into(),
                parent_id: None,
                provider: "p".into(),
                sources,
                trimmed_messages: 0,
                user_message_id: Some(uuid::Uuid::now_v7()),
            })
        };
        let events = [
            meta(Vec::new()),
            meta(vec![source.clone()]),
            GenEvent::Delta {
                text: "h\u{e9}llo \"x\"\n".into(),
            },
            GenEvent::Title(Title {
                conversation_id: uuid::Uuid::now_v7(),
                title: "T".into(),
            }),
            GenEvent::Usage(UsageEvent {
                estimated: true,
                input_tokens: 1,
                output_tokens: 2,
            }),
            GenEvent::Done {
                finish_reason: "stop".into(),
                sources: vec![source],
            },
            GenEvent::Done {
                finish_reason: "stop".into(),
                sources: Vec::new(),
            },
            GenEvent::Error(ErrorEvent {
                code: "C".into(),
                message: "m".into(),
                request_id: "r".into(),
                retry_after: Some(3),
            }),
        ];
        for e in events {
            let sorted = serde_json::to_value(&e).unwrap().to_string();
            assert_eq!(event_data(&e), sorted, "{}", e.name());
        }
    }
}
