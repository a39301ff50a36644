//! Anthropic's Messages API on confab: `POST /v1/messages`, streamed with
//! Anthropic's event types or answered as one `message`, against any
//! confab provider (the chat domain translates), and the model list in
//! Anthropic's shape. Which request fields are passed on, ignored or
//! refused is listed in docs/API.md ("/v1").

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::convert::Infallible;
use utoipa::ToSchema;

use super::errors::{Api, V1Error};
use super::{authenticate, field, json_body, new_id, ranged, service, sse, unknown_fields};
use crate::auth::ClientInfo;
use crate::chat::complete::{CallEvent, Completion};
use crate::providers::registry::RegistryModel;
use crate::providers::{ChatMessage, ChatRequest, Role, Tool, ToolCall, ToolChoice};
use crate::state::AppState;
use crate::store::chat::Usage;

const API: Api = Api::Anthropic;

const KNOWN: &[&str] = &[
    "model",
    "max_tokens",
    "messages",
    "system",
    "temperature",
    "top_p",
    "stop_sequences",
    "tools",
    "tool_choice",
    "metadata",
    "stream",
];

/// Client hints that change nothing about the answer: accepted and
/// dropped (listed in docs/API.md).
pub const IGNORED: &[&str] = &["service_tier"];

/// Fields Anthropic knows that confab cannot honour: refused by name.
pub const REFUSED: &[&str] = &[
    "top_k",
    "thinking",
    "container",
    "mcp_servers",
    "context_management",
];

// ---- schemas for the OpenAPI document -------------------------------

/// Anthropic's model list.
#[derive(Serialize, ToSchema)]
#[schema(as = AnthropicModelList)]
pub struct ModelList {
    pub data: Vec<Model>,
    /// Always false: every model is on the one page.
    pub has_more: bool,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = AnthropicModel)]
pub struct Model {
    /// Always `model`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    pub display_name: String,
    /// RFC 3339; the Unix epoch: confab does not know when a provider made a model.
    pub created_at: String,
}

/// Anthropic's error body.
#[derive(Serialize, ToSchema)]
#[schema(as = AnthropicErrorBody)]
pub struct ErrorBody {
    /// Always `error`.
    #[serde(rename = "type")]
    pub kind: String,
    pub error: ErrorDetail,
    pub request_id: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = AnthropicErrorDetail)]
pub struct ErrorDetail {
    /// invalid_request_error, authentication_error, permission_error,
    /// not_found_error, request_too_large, rate_limit_error, api_error,
    /// overloaded_error
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
}

/// `POST /v1/messages` (see docs/API.md for every field).
#[derive(Serialize, ToSchema)]
#[schema(as = MessagesRequest)]
pub struct MessagesRequest {
    pub model: String,
    /// Required, as on Anthropic's API.
    pub max_tokens: u32,
    /// `{role: user|assistant, content}`; content a string or blocks:
    /// text, tool_use (assistant), tool_result (user).
    pub messages: Vec<Map<String, Value>>,
    /// A string or text blocks.
    #[schema(value_type = Option<Object>)]
    pub system: Option<Value>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub stop_sequences: Option<Vec<String>>,
    /// `{name, description, input_schema}` objects.
    pub tools: Option<Vec<Map<String, Value>>>,
    /// `{"type":"auto"|"any"|"none"}` or `{"type":"tool","name":…}`.
    #[schema(value_type = Option<Object>)]
    pub tool_choice: Option<Value>,
    /// Only `user_id` is used.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    pub stream: Option<bool>,
}

/// A non-streamed answer.
#[derive(Serialize, ToSchema)]
#[schema(as = AnthropicMessage)]
pub struct Message {
    pub id: String,
    /// Always `message`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Always `assistant`.
    pub role: String,
    /// `{"type":"text","text"}` and `{"type":"tool_use","id","name","input"}` blocks.
    pub content: Vec<Map<String, Value>>,
    pub model: String,
    /// end_turn, max_tokens, tool_use or refusal.
    pub stop_reason: Option<String>,
    /// Always null: the providers' stop reasons do not say which sequence matched.
    pub stop_sequence: Option<String>,
    pub usage: MessageUsage,
}

/// Tokens used. `estimated` is present (true) when the provider reported
/// no usage and confab estimated it.
#[derive(Serialize, ToSchema)]
pub struct MessageUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated: Option<bool>,
}

impl From<Usage> for MessageUsage {
    fn from(u: Usage) -> Self {
        MessageUsage {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            estimated: u.estimated.then_some(true),
        }
    }
}

pub fn model_of(m: &RegistryModel) -> Model {
    Model {
        kind: "model",
        id: m.id.clone(),
        display_name: m.display_name.clone(),
        created_at: "1970-01-01T00:00:00Z".into(),
    }
}

pub fn model_list(models: &[RegistryModel]) -> axum::Json<ModelList> {
    axum::Json(ModelList {
        has_more: false,
        first_id: models.first().map(|m| m.id.clone()),
        last_id: models.last().map(|m| m.id.clone()),
        data: models.iter().map(model_of).collect(),
    })
}

// ---- requests ----------------------------------------------------------

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// The text of `content` given as a string or text blocks.
fn text_blocks(v: &Value, param: &str) -> Result<String, V1Error> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut out = Vec::new();
            for (j, b) in blocks.iter().enumerate() {
                match (str_of(b, "type"), str_of(b, "text")) {
                    (Some("text"), Some(t)) => out.push(t),
                    (Some(kind @ ("image" | "document")), _) => {
                        return Err(V1Error::invalid(
                            API,
                            Some(&format!("{param}.{j}")),
                            format!(
                                "{kind} blocks inside a tool_result are not supported: put images in the user message itself"
                            ),
                        ));
                    }
                    _ => {
                        return Err(V1Error::invalid(
                            API,
                            Some(&format!("{param}.{j}")),
                            format!("{param}.{j}: expected a text block"),
                        ));
                    }
                }
            }
            Ok(out.join("\n"))
        }
        _ => Err(V1Error::invalid(
            API,
            Some(param),
            format!("{param}: expected a string or a list of blocks"),
        )),
    }
}

/// One Anthropic message as confab messages: a user message's tool
/// results become tool messages (before its text), an assistant's
/// tool_use blocks its tool calls.
fn messages_of(i: usize, m: &Value, out: &mut Vec<ChatMessage>) -> Result<(), V1Error> {
    let p = format!("messages.{i}");
    let role = match str_of(m, "role") {
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        _ => {
            return Err(V1Error::invalid(
                API,
                Some(&format!("{p}.role")),
                format!("{p}.role: Input should be 'user' or 'assistant'"),
            ));
        }
    };
    let content = m.get("content").unwrap_or(&Value::Null);
    let blocks = match content {
        Value::String(s) => {
            out.push(ChatMessage::new(role, s.clone()));
            return Ok(());
        }
        Value::Array(b) => b,
        _ => {
            return Err(V1Error::invalid(
                API,
                Some(&format!("{p}.content")),
                format!("{p}.content: expected a string or a list of blocks"),
            ));
        }
    };
    let mut text = Vec::new();
    let mut calls = Vec::new();
    let mut images = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let bp = format!("{p}.content.{j}");
        match str_of(b, "type") {
            Some("text") => text.push(str_of(b, "text").unwrap_or("").to_string()),
            Some("tool_use") if role == Role::Assistant => {
                let (Some(id), Some(name)) = (str_of(b, "id"), str_of(b, "name")) else {
                    return Err(V1Error::invalid(
                        API,
                        Some(&bp),
                        "a tool_use block needs id and name",
                    ));
                };
                let input = b.get("input").cloned().unwrap_or_else(|| json!({}));
                calls.push(ToolCall {
                    id: id.into(),
                    name: name.into(),
                    arguments: input.to_string(),
                });
            }
            Some("tool_result") if role == Role::User => {
                let id = str_of(b, "tool_use_id").ok_or_else(|| {
                    V1Error::invalid(API, Some(&bp), "a tool_result block needs tool_use_id")
                })?;
                let mut result = match b.get("content") {
                    None | Some(Value::Null) => String::new(),
                    Some(c) => text_blocks(c, &format!("{bp}.content"))?,
                };
                // OpenAI-style tool messages have no error flag: say it in the text.
                if b.get("is_error").and_then(Value::as_bool) == Some(true) {
                    result = format!("[tool error] {result}");
                }
                let mut msg = ChatMessage::new(Role::Tool, result);
                msg.tool_call_id = Some(id.into());
                out.push(msg);
            }
            Some("image") if role == Role::User => {
                let source = b.get("source").unwrap_or(&Value::Null);
                let img = match str_of(source, "type") {
                    Some("base64") => super::inline_image(str_of(source, "data").unwrap_or("")),
                    Some("url") => Err("image blocks with a url source are not fetched by this server: send the image as a base64 source".to_string()),
                    _ => Err("an image block needs a source {\"type\":\"base64\",\"media_type\",\"data\"}".to_string()),
                }
                .map_err(|m| V1Error::invalid(API, Some(&format!("{bp}.source")), m))?;
                images.push(img);
            }
            Some("document") => {
                return Err(V1Error::invalid(
                    API,
                    Some(&bp),
                    "document blocks are not supported: confab's /v1 takes text and images",
                ));
            }
            other => {
                return Err(V1Error::invalid(
                    API,
                    Some(&bp),
                    format!(
                        "{bp}: block type {:?} is not supported in a {} message",
                        other.unwrap_or(""),
                        role.as_str()
                    ),
                ));
            }
        }
    }
    if !text.is_empty() || !calls.is_empty() || !images.is_empty() {
        let mut msg = ChatMessage::new(role, text.join("\n"));
        msg.tool_calls = calls;
        msg.images = images;
        out.push(msg);
    }
    Ok(())
}

fn tools(obj: &Map<String, Value>) -> Result<Vec<Tool>, V1Error> {
    let Some(list) = field::<Vec<Value>>(API, obj, "tools")? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let p = format!("tools.{i}");
        if let Some(kind) = str_of(t, "type").filter(|k| *k != "custom") {
            return Err(V1Error::invalid(
                API,
                Some(&p),
                format!(
                    "{p}: server tools ({kind}) are not supported; only custom tools with input_schema"
                ),
            ));
        }
        let name = str_of(t, "name")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| V1Error::invalid(API, Some(&p), format!("{p}.name: Field required")))?;
        let schema = t.get("input_schema").cloned().ok_or_else(|| {
            V1Error::invalid(API, Some(&p), format!("{p}.input_schema: Field required"))
        })?;
        out.push(Tool {
            name: name.into(),
            description: str_of(t, "description").map(str::to_string),
            parameters: schema,
        });
    }
    Ok(out)
}

fn tool_choice(obj: &Map<String, Value>) -> Result<Option<ToolChoice>, V1Error> {
    let Some(v) = obj.get("tool_choice").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    if v.get("disable_parallel_tool_use").and_then(Value::as_bool) == Some(true) {
        return Err(V1Error::invalid(
            API,
            Some("tool_choice"),
            "tool_choice.disable_parallel_tool_use is not supported: the providers decide how many tools to call",
        ));
    }
    match str_of(v, "type") {
        Some("auto") => Ok(Some(ToolChoice::Auto)),
        Some("any") => Ok(Some(ToolChoice::Required)),
        Some("none") => Ok(Some(ToolChoice::None)),
        Some("tool") => str_of(v, "name")
            .map(|n| Some(ToolChoice::Named(n.into())))
            .ok_or_else(|| {
                V1Error::invalid(API, Some("tool_choice"), "tool_choice.name: Field required")
            }),
        _ => Err(V1Error::invalid(
            API,
            Some("tool_choice"),
            "tool_choice.type must be auto, any, none or tool",
        )),
    }
}

fn parse(obj: &Map<String, Value>) -> Result<(ChatRequest, bool), V1Error> {
    if let Some(k) = obj.keys().find(|k| REFUSED.contains(&k.as_str())) {
        return Err(V1Error::invalid(
            API,
            Some(k),
            format!("{k}: not supported by confab's /v1 (see docs/API.md)"),
        ));
    }
    if let Some(k) = unknown_fields(obj, KNOWN, IGNORED) {
        return Err(V1Error::invalid(
            API,
            Some(k),
            format!("{k}: Extra inputs are not permitted"),
        ));
    }
    let model: String = field(API, obj, "model")?
        .ok_or_else(|| V1Error::invalid(API, Some("model"), "model: Field required"))?;
    let max_tokens: u32 = field(API, obj, "max_tokens")?
        .ok_or_else(|| V1Error::invalid(API, Some("max_tokens"), "max_tokens: Field required"))?;
    if max_tokens == 0 {
        return Err(V1Error::invalid(
            API,
            Some("max_tokens"),
            "max_tokens: must be at least 1",
        ));
    }
    let list: Vec<Value> = field(API, obj, "messages")?
        .ok_or_else(|| V1Error::invalid(API, Some("messages"), "messages: Field required"))?;
    if list.is_empty() {
        return Err(V1Error::invalid(
            API,
            Some("messages"),
            "messages: at least one message is required",
        ));
    }
    let mut messages = Vec::new();
    for (i, m) in list.iter().enumerate() {
        messages_of(i, m, &mut messages)?;
    }
    let system = match obj.get("system") {
        None | Some(Value::Null) => None,
        Some(v) => Some(text_blocks(v, "system")?).filter(|s| !s.is_empty()),
    };
    let user = obj
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let stop = field::<Vec<String>>(API, obj, "stop_sequences")?.unwrap_or_default();
    let req = ChatRequest {
        model,
        system,
        messages,
        max_tokens: Some(max_tokens),
        temperature: ranged(API, obj, "temperature", 0.0, 1.0)?,
        top_p: ranged(API, obj, "top_p", 0.0, 1.0)?,
        stop,
        tools: tools(obj)?,
        tool_choice: tool_choice(obj)?,
        user,
        ..Default::default()
    };
    Ok((req, field::<bool>(API, obj, "stream")?.unwrap_or(false)))
}

// ---- answers -----------------------------------------------------------

/// Anthropic's stop reason for confab's (OpenAI's) finish reason.
fn stop_reason(finish: &str) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "tool_calls" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// The arguments text of a tool call as the object Anthropic's `input` is.
fn input_of(args: &str) -> Value {
    if args.trim().is_empty() {
        return json!({});
    }
    serde_json::from_str(args).unwrap_or_else(|_| json!({}))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    Tool(u32),
}

/// Writes Anthropic's stream events.
struct Events {
    /// The block open now and its index.
    open: Option<(Open, usize)>,
    next_index: usize,
    pinged: bool,
}

fn event(name: &str, data: Value) -> Event {
    Event::default().event(name).data(data.to_string())
}

impl Events {
    fn close(&mut self, out: &mut Vec<Event>) {
        if let Some((_, index)) = self.open.take() {
            out.push(event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": index}),
            ));
        }
    }

    fn start(&mut self, kind: Open, block: Value, out: &mut Vec<Event>) -> usize {
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((kind, index));
        out.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        self.ping(out);
        index
    }

    fn ping(&mut self, out: &mut Vec<Event>) {
        if !self.pinged {
            self.pinged = true;
            out.push(event("ping", json!({"type": "ping"})));
        }
    }

    fn encode(&mut self, e: CallEvent) -> Vec<Event> {
        let mut out = Vec::new();
        match e {
            CallEvent::Text(t) => {
                let index = match self.open {
                    Some((Open::Text, i)) => i,
                    _ => self.start(Open::Text, json!({"type": "text", "text": ""}), &mut out),
                };
                out.push(event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": t}}),
                ));
            }
            CallEvent::ToolCall(d) => {
                let index = match self.open {
                    Some((Open::Tool(n), i)) if n == d.index => i,
                    _ => {
                        let id = d.id.clone().unwrap_or_else(|| new_id("toolu_"));
                        let block = json!({"type": "tool_use", "id": id, "name": d.name.clone().unwrap_or_default(), "input": {}});
                        self.start(Open::Tool(d.index), block, &mut out)
                    }
                };
                if !d.arguments.is_empty() {
                    out.push(event(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": d.arguments}}),
                    ));
                }
            }
            CallEvent::Done {
                finish_reason,
                usage,
            } => {
                self.close(&mut out);
                self.ping(&mut out);
                out.push(event(
                    "message_delta",
                    json!({
                        "type": "message_delta",
                        "delta": {"stop_reason": stop_reason(&finish_reason), "stop_sequence": null},
                        "usage": MessageUsage::from(usage),
                    }),
                ));
                out.push(event("message_stop", json!({"type": "message_stop"})));
            }
            CallEvent::Failed { error, .. } => {
                out.push(V1Error::from_app(API, error.into()).sse_event());
            }
        }
        out
    }
}

/// `POST /v1/messages`.
#[utoipa::path(post, path = "/v1/messages", tag = "v1", operation_id = "v1_messages",
    params(("anthropic-version" = Option<String>, Header, description = "Sent by the Anthropic SDKs; accepted, any value")),
    request_body = MessagesRequest,
    responses(
        (status = 200, description = "`stream: false`: one `message`. `stream: true`: `text/event-stream` with Anthropic's events: `message_start`, then per content block `content_block_start`, `content_block_delta` (`text_delta` or `input_json_delta`) and `content_block_stop` (a `ping` after the first block starts), then `message_delta` (stop_reason and usage) and `message_stop`; a failure mid-answer is an `event: error` and the stream ends.",
            content((Message = "application/json"), (String = "text/event-stream"))),
        (status = 400, description = "invalid_request_error: a malformed body, a missing `max_tokens`, a refused or unknown field", body = ErrorBody),
        (status = 401, description = "authentication_error: no API key, or an unknown or expired one", body = ErrorBody),
        (status = 403, description = "permission_error: the key lacks the `write` scope, or the account is disabled", body = ErrorBody),
        (status = 404, description = "not_found_error: no provider offers the model", body = ErrorBody),
        (status = 413, description = "request_too_large: the body is larger than `max_body_bytes`", body = ErrorBody),
        (status = 429, description = "rate_limit_error: a rate limit, the running-answer cap or the daily quota; `Retry-After`", body = ErrorBody),
        (status = 502, description = "api_error: the provider failed or cannot be reached", body = ErrorBody),
        (status = 504, description = "api_error: the provider did not answer in time", body = ErrorBody),
    ))]
pub async fn messages(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: ClientInfo,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match run(state, headers, client, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn run(
    state: AppState,
    headers: HeaderMap,
    client: ClientInfo,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, V1Error> {
    let who = authenticate(&state, API, &headers, &client, "write").await?;
    let obj = json_body(API, &headers, body, state.cfg.max_body_bytes)?;
    let (req, stream) = parse(&obj)?;
    let call = service(&state)
        .complete(&who.user, who.caller, req)
        .await
        .map_err(|e| V1Error::from_app(API, e))?;
    let id = new_id("msg_");
    if stream {
        return Ok(streamed(id, call));
    }
    whole(id, call).await
}

/// The answer as Anthropic's event stream.
fn streamed(id: String, call: Completion) -> Response {
    let start = event(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "content": [],
            "model": call.model, "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": call.input_estimate, "output_tokens": 0},
        }}),
    );
    let mut enc = Events {
        open: None,
        next_index: 0,
        pinged: false,
    };
    let rest = call
        .events
        .flat_map(move |e| futures::stream::iter(enc.encode(e)));
    let events = futures::stream::once(async move { start })
        .chain(rest)
        .map(Ok::<_, Infallible>);
    sse(events)
}

/// The answer as one Anthropic message, once the call has ended.
async fn whole(id: String, call: Completion) -> Result<Response, V1Error> {
    let mut text = String::new();
    let mut calls: BTreeMap<u32, (String, String, String)> = BTreeMap::new();
    let mut events = call.events;
    while let Some(e) = events.next().await {
        match e {
            CallEvent::Text(t) => text.push_str(&t),
            CallEvent::ToolCall(d) => {
                let c = calls.entry(d.index).or_insert_with(|| {
                    (
                        d.id.clone().unwrap_or_else(|| new_id("toolu_")),
                        String::new(),
                        String::new(),
                    )
                });
                if let Some(n) = &d.name
                    && c.1.is_empty()
                {
                    c.1 = n.clone();
                }
                c.2.push_str(&d.arguments);
            }
            CallEvent::Failed { error, .. } => return Err(V1Error::from_app(API, error.into())),
            CallEvent::Done {
                finish_reason,
                usage,
            } => {
                let mut content = Vec::new();
                if !text.is_empty() {
                    content.push(json!({"type": "text", "text": text}));
                }
                for (id, name, args) in calls.into_values() {
                    content.push(json!({"type": "tool_use", "id": id, "name": name, "input": input_of(&args)}));
                }
                let body = json!({
                    "id": id,
                    "type": "message",
                    "role": "assistant",
                    "content": content,
                    "model": call.model,
                    "stop_reason": stop_reason(&finish_reason),
                    "stop_sequence": null,
                    "usage": MessageUsage::from(usage),
                });
                return Ok(axum::Json(body).into_response());
            }
        }
    }
    Err(V1Error::from_app(
        API,
        crate::error::AppError::ProviderError(crate::providers::ENDED_EARLY.into()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn blocks_become_messages() {
        let (r, stream) = parse(&obj(json!({
            "model": "m", "max_tokens": 50, "stream": true,
            "system": [{"type": "text", "text": "be brief"}],
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": [{"type": "text", "text": "checking"}, {"type": "tool_use", "id": "t1", "name": "w", "input": {"city": "Oslo"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "rain"}, {"type": "text", "text": "thanks"}]}
            ],
            "tools": [{"name": "w", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any"}, "metadata": {"user_id": "u1"}, "stop_sequences": ["END"]
        })))
        .unwrap();
        assert!(stream);
        assert_eq!(r.system.as_deref(), Some("be brief"));
        let roles: Vec<Role> = r.messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, [Role::User, Role::Assistant, Role::Tool, Role::User]);
        assert_eq!(r.messages[1].tool_calls[0].arguments, r#"{"city":"Oslo"}"#);
        assert_eq!(r.messages[2].tool_call_id.as_deref(), Some("t1"));
        assert_eq!(r.tool_choice, Some(ToolChoice::Required));
        assert_eq!(r.max_tokens, Some(50));
        assert_eq!(r.user.as_deref(), Some("u1"));
    }

    #[test]
    fn max_tokens_is_required_and_top_k_refused() {
        let e = parse(&obj(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
        ))
        .err()
        .unwrap();
        assert_eq!(e.param.as_deref(), Some("max_tokens"));
        let e = parse(&obj(json!({"model": "m", "max_tokens": 5, "top_k": 3, "messages": [{"role": "user", "content": "hi"}]})))
            .err()
            .unwrap();
        assert_eq!(e.param.as_deref(), Some("top_k"));
    }
}
