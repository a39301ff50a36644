//! OpenAI's API on confab: `GET /v1/models` (OpenAI's list),
//! `POST /v1/chat/completions` (streamed as `chat.completion.chunk`s, or one
//! `chat.completion`) and `POST /v1/embeddings`. Which request fields are
//! passed on, ignored or refused is listed in docs/API.md ("/v1").

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
use super::{authenticate, field, json_body, new_id, now, ranged, service, sse, unknown_fields};
use crate::auth::ClientInfo;
use crate::chat::complete::CallEvent;
use crate::providers::registry::RegistryModel;
use crate::providers::{
    ChatMessage, ChatRequest, EmbeddingRequest, ResponseFormat, Role, Tool, ToolCall,
    ToolCallDelta, ToolChoice,
};
use crate::state::AppState;
use crate::store::chat::Usage;

const API: Api = Api::OpenAi;

/// Fields passed on to the provider (or checked and honoured here).
const KNOWN: &[&str] = &[
    "model",
    "messages",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
    "tools",
    "tool_choice",
    "stream",
    "stream_options",
    "user",
    "safety_identifier",
    "n",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "parallel_tool_calls",
    "modalities",
];

/// Client hints that change nothing about the answer: accepted and
/// dropped (listed in docs/API.md).
pub const IGNORED: &[&str] = &["store", "metadata", "service_tier", "prompt_cache_key"];

/// Fields OpenAI knows that confab cannot honour: refused by name.
pub const REFUSED: &[&str] = &[
    "functions",
    "function_call",
    "audio",
    "prediction",
    "reasoning_effort",
    "web_search_options",
    "verbosity",
];

// ---- schemas for the OpenAPI document -------------------------------

/// OpenAI's model list.
#[derive(Serialize, ToSchema)]
#[schema(as = OpenAiModelList)]
pub struct ModelList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<Model>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = OpenAiModel)]
pub struct Model {
    pub id: String,
    /// Always `model`.
    pub object: &'static str,
    /// Unix seconds; 0: confab does not know when a provider made a model.
    pub created: i64,
    /// The confab provider that serves the model.
    pub owned_by: String,
}

/// OpenAI's error body.
#[derive(Serialize, ToSchema)]
#[schema(as = OpenAiErrorBody)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
#[schema(as = OpenAiErrorDetail)]
pub struct ErrorDetail {
    pub message: String,
    /// invalid_request_error, authentication_error, permission_error,
    /// rate_limit_error, insufficient_quota, api_error, server_error
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault, if one is (always present, maybe null).
    #[schema(required = true)]
    pub param: Option<String>,
    /// invalid_api_key, permission_denied, model_not_found, not_found,
    /// invalid_request, request_too_large, method_not_allowed,
    /// rate_limit_exceeded, insufficient_quota, provider_error,
    /// provider_unreachable, provider_timeout, internal_error, unavailable
    #[schema(required = true)]
    pub code: Option<String>,
}

/// `POST /v1/chat/completions` (see docs/API.md for every field).
#[derive(Serialize, ToSchema)]
#[schema(as = ChatCompletionRequest)]
pub struct ChatCompletionRequest {
    pub model: String,
    /// `{role, content}` objects: role system, developer, user, assistant
    /// (with `tool_calls`) or tool (with `tool_call_id`); content a string
    /// or an array of `{"type":"text","text":…}` parts.
    pub messages: Vec<Map<String, Value>>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    /// A string or up to 4 strings.
    #[schema(value_type = Option<Object>)]
    pub stop: Option<Value>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    /// `{"type":"text"|"json_object"}` or `{"type":"json_schema","json_schema":{name,schema,strict}}`.
    #[schema(value_type = Option<Object>)]
    pub response_format: Option<Value>,
    /// `{"type":"function","function":{name,description,parameters}}` objects.
    pub tools: Option<Vec<Map<String, Value>>>,
    /// "none", "auto", "required" or `{"type":"function","function":{"name":…}}`.
    #[schema(value_type = Option<Object>)]
    pub tool_choice: Option<Value>,
    pub stream: Option<bool>,
    /// `{"include_usage": true}` adds a last chunk with the usage.
    #[schema(value_type = Option<Object>)]
    pub stream_options: Option<Value>,
    pub user: Option<String>,
    /// Only 1.
    pub n: Option<u32>,
}

/// A non-streamed answer.
#[derive(Serialize, ToSchema)]
pub struct ChatCompletion {
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    pub created: i64,
    pub model: String,
    /// One choice: `{index, message: {role, content, tool_calls?, refusal}, logprobs, finish_reason}`.
    pub choices: Vec<Map<String, Value>>,
    pub usage: CompletionUsage,
}

/// Tokens used. `estimated` is present (true) when the provider reported
/// no usage and confab estimated it (≈ 4 characters per token).
#[derive(Serialize, ToSchema)]
pub struct CompletionUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated: Option<bool>,
}

impl From<Usage> for CompletionUsage {
    fn from(u: Usage) -> Self {
        CompletionUsage {
            prompt_tokens: u.input_tokens,
            completion_tokens: u.output_tokens,
            total_tokens: u.input_tokens + u.output_tokens,
            estimated: u.estimated.then_some(true),
        }
    }
}

/// `POST /v1/embeddings`.
#[derive(Serialize, ToSchema)]
pub struct EmbeddingsRequest {
    pub model: String,
    /// A string or an array of strings.
    #[schema(value_type = Object)]
    pub input: Value,
    pub dimensions: Option<u32>,
    /// `float` (the default) or `base64` (little-endian f32 values, what
    /// the official SDKs ask for by default).
    pub encoding_format: Option<String>,
    pub user: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct EmbeddingsResponse {
    /// Always `list`.
    pub object: String,
    pub data: Vec<EmbeddingItem>,
    pub model: String,
    pub usage: EmbeddingsUsage,
}

#[derive(Serialize, ToSchema)]
pub struct EmbeddingItem {
    /// Always `embedding`.
    pub object: String,
    pub index: usize,
    /// Numbers, or their little-endian f32 bytes in base64.
    #[schema(value_type = Object)]
    pub embedding: Vector,
}

/// One embedding as `encoding_format` asked.
#[derive(Serialize)]
#[serde(untagged)]
pub enum Vector {
    Float(Vec<f32>),
    Base64(String),
}

impl Vector {
    fn encode(v: Vec<f32>, base64: bool) -> Vector {
        if !base64 {
            return Vector::Float(v);
        }
        use base64::Engine as _;
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        Vector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
    }
}

#[derive(Serialize, ToSchema)]
pub struct EmbeddingsUsage {
    pub prompt_tokens: u64,
    pub total_tokens: u64,
}

// ---- models ----------------------------------------------------------

pub fn model_of(m: &RegistryModel) -> Model {
    Model {
        id: m.id.clone(),
        object: "model",
        created: 0,
        owned_by: m.provider.clone(),
    }
}

pub fn model_list(models: &[RegistryModel]) -> axum::Json<ModelList> {
    axum::Json(ModelList {
        object: "list",
        data: models.iter().map(model_of).collect(),
    })
}

// ---- requests ----------------------------------------------------------

fn refuse_extras(obj: &Map<String, Value>) -> Result<(), V1Error> {
    if let Some(k) = obj.keys().find(|k| REFUSED.contains(&k.as_str())) {
        return Err(V1Error::invalid(
            API,
            Some(k),
            format!("{k} is not supported by confab's /v1 (see docs/API.md)"),
        ));
    }
    if let Some(k) = unknown_fields(obj, KNOWN, IGNORED) {
        return Err(V1Error::invalid(
            API,
            Some(k),
            format!("Unrecognized request argument supplied: {k}"),
        ));
    }
    let present = |k: &str| obj.get(k).is_some_and(|v| !v.is_null());
    if let Some(n) = field::<u32>(API, obj, "n")?
        && n != 1
    {
        return Err(V1Error::invalid(
            API,
            Some("n"),
            "n must be 1: confab answers one choice per request",
        ));
    }
    if field::<bool>(API, obj, "logprobs")? == Some(true) || present("top_logprobs") {
        return Err(V1Error::invalid(
            API,
            Some("logprobs"),
            "logprobs are not supported by confab's /v1",
        ));
    }
    if obj.get("logit_bias").is_some_and(|v| {
        v.as_object().is_some_and(|m| !m.is_empty()) || !(v.is_null() || v.is_object())
    }) {
        return Err(V1Error::invalid(
            API,
            Some("logit_bias"),
            "logit_bias is not supported by confab's /v1",
        ));
    }
    if field::<bool>(API, obj, "parallel_tool_calls")? == Some(false) {
        return Err(V1Error::invalid(
            API,
            Some("parallel_tool_calls"),
            "parallel_tool_calls=false is not supported: the providers decide how many tools to call",
        ));
    }
    if let Some(m) = field::<Vec<String>>(API, obj, "modalities")?
        && m.iter().any(|x| x != "text")
    {
        return Err(V1Error::invalid(
            API,
            Some("modalities"),
            "only the text modality is supported",
        ));
    }
    Ok(())
}

/// The text of a message's `content` (a string, or text parts joined by
/// newlines) and its images (`image_url` parts with data URLs; remote URLs
/// are refused, see [`super::data_url_base64`]). Audio and files are
/// refused.
fn content_of(
    v: Option<&Value>,
    param: &str,
) -> Result<(Option<String>, Vec<crate::providers::ImageInput>), V1Error> {
    let mut images = Vec::new();
    let text = match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(parts)) => {
            let mut out = Vec::new();
            for (j, p) in parts.iter().enumerate() {
                let kind = p.get("type").and_then(Value::as_str).unwrap_or("");
                let here = format!("{param}[{j}]");
                let text = match kind {
                    "text" => p.get("text").and_then(Value::as_str),
                    "refusal" => p.get("refusal").and_then(Value::as_str),
                    "image_url" => {
                        let url = p
                            .get("image_url")
                            .and_then(|u| u.get("url").and_then(Value::as_str).or(u.as_str()))
                            .ok_or_else(|| {
                                V1Error::invalid(
                                    API,
                                    Some(&here),
                                    "an image_url part needs image_url.url",
                                )
                            })?;
                        let img = super::data_url_base64(url)
                            .and_then(super::inline_image)
                            .map_err(|m| V1Error::invalid(API, Some(&here), m))?;
                        images.push(img);
                        continue;
                    }
                    "input_audio" | "file" => {
                        return Err(V1Error::invalid(
                            API,
                            Some(&here),
                            format!(
                                "{kind} content parts are not supported: confab's /v1 takes text and images"
                            ),
                        ));
                    }
                    _ => None,
                };
                let Some(text) = text else {
                    return Err(V1Error::invalid(
                        API,
                        Some(&here),
                        "a content part must be {\"type\":\"text\",\"text\":…} or an image_url",
                    ));
                };
                out.push(text);
            }
            Some(out.join("\n"))
        }
        Some(_) => {
            return Err(V1Error::invalid(
                API,
                Some(param),
                "content must be a string or an array of content parts",
            ));
        }
    };
    Ok((text, images))
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn message(i: usize, m: &Value) -> Result<ChatMessage, V1Error> {
    let p = format!("messages[{i}]");
    let role = str_of(m, "role").ok_or_else(|| {
        V1Error::invalid(API, Some(&p), format!("{p} must be an object with a role"))
    })?;
    let (content, images) = content_of(m.get("content"), &format!("{p}.content"))?;
    let role = match role {
        "system" | "developer" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        "function" => {
            return Err(V1Error::invalid(
                API,
                Some(&p),
                "the function role is not supported: use tools and the tool role",
            ));
        }
        other => {
            return Err(V1Error::invalid(
                API,
                Some(&p),
                format!(
                    "{p}.role must be system, developer, user, assistant or tool, got {other:?}"
                ),
            ));
        }
    };
    if !images.is_empty() && role != Role::User {
        return Err(V1Error::invalid(
            API,
            Some(&format!("{p}.content")),
            "images are accepted in user messages only",
        ));
    }
    let mut msg = ChatMessage::new(role, content.clone().unwrap_or_default());
    msg.images = images;
    if role == Role::Assistant
        && let Some(calls) = m.get("tool_calls").and_then(Value::as_array)
    {
        for (j, c) in calls.iter().enumerate() {
            let f = c.get("function").unwrap_or(&Value::Null);
            let (Some(id), Some(name)) = (str_of(c, "id"), str_of(f, "name")) else {
                return Err(V1Error::invalid(
                    API,
                    Some(&format!("{p}.tool_calls[{j}]")),
                    "a tool call needs an id and function.name",
                ));
            };
            msg.tool_calls.push(ToolCall {
                id: id.into(),
                name: name.into(),
                arguments: str_of(f, "arguments").unwrap_or("{}").into(),
            });
        }
    }
    if role == Role::Tool {
        let id = str_of(m, "tool_call_id").ok_or_else(|| {
            V1Error::invalid(
                API,
                Some(&format!("{p}.tool_call_id")),
                "a tool message needs tool_call_id",
            )
        })?;
        msg.tool_call_id = Some(id.into());
    }
    if content.is_none() && msg.tool_calls.is_empty() {
        return Err(V1Error::invalid(
            API,
            Some(&format!("{p}.content")),
            format!("{p}.content is required"),
        ));
    }
    Ok(msg)
}

fn tools(obj: &Map<String, Value>) -> Result<Vec<Tool>, V1Error> {
    let Some(list) = field::<Vec<Value>>(API, obj, "tools")? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let p = format!("tools[{i}]");
        if str_of(t, "type") != Some("function") {
            return Err(V1Error::invalid(
                API,
                Some(&p),
                "only function tools are supported",
            ));
        }
        let f = t.get("function").unwrap_or(&Value::Null);
        let name = str_of(f, "name")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| V1Error::invalid(API, Some(&p), "a tool needs function.name"))?;
        out.push(Tool {
            name: name.into(),
            description: str_of(f, "description").map(str::to_string),
            parameters: f
                .get("parameters")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
        });
    }
    Ok(out)
}

fn tool_choice(obj: &Map<String, Value>) -> Result<Option<ToolChoice>, V1Error> {
    let bad = || {
        V1Error::invalid(
            API,
            Some("tool_choice"),
            "tool_choice must be none, auto, required or {\"type\":\"function\",\"function\":{\"name\":…}}",
        )
    };
    match obj.get("tool_choice") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => match s.as_str() {
            "none" => Ok(Some(ToolChoice::None)),
            "auto" => Ok(Some(ToolChoice::Auto)),
            "required" => Ok(Some(ToolChoice::Required)),
            _ => Err(bad()),
        },
        Some(v) => v
            .get("function")
            .and_then(|f| str_of(f, "name"))
            .map(|n| Some(ToolChoice::Named(n.into())))
            .ok_or_else(bad),
    }
}

fn response_format(obj: &Map<String, Value>) -> Result<Option<ResponseFormat>, V1Error> {
    let Some(v) = obj.get("response_format").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    match str_of(v, "type") {
        Some("text") => Ok(Some(ResponseFormat::Text)),
        Some("json_object") => Ok(Some(ResponseFormat::JsonObject)),
        Some("json_schema") => {
            let s = v.get("json_schema").unwrap_or(&Value::Null);
            let name = str_of(s, "name").unwrap_or("response").to_string();
            let schema = s.get("schema").cloned().ok_or_else(|| {
                V1Error::invalid(API, Some("response_format"), "json_schema needs a schema")
            })?;
            Ok(Some(ResponseFormat::JsonSchema {
                name,
                schema,
                strict: s.get("strict").and_then(Value::as_bool),
            }))
        }
        _ => Err(V1Error::invalid(
            API,
            Some("response_format"),
            "response_format.type must be text, json_object or json_schema",
        )),
    }
}

fn stop(obj: &Map<String, Value>) -> Result<Vec<String>, V1Error> {
    let v = match obj.get("stop") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => vec![s.clone()],
        Some(_) => field::<Vec<String>>(API, obj, "stop")?.unwrap_or_default(),
    };
    if v.len() > 4 {
        return Err(V1Error::invalid(
            API,
            Some("stop"),
            "stop takes at most 4 sequences",
        ));
    }
    Ok(v)
}

/// What a streamed request asked for besides the answer.
struct Options {
    stream: bool,
    include_usage: bool,
}

fn parse(obj: &Map<String, Value>) -> Result<(ChatRequest, Options), V1Error> {
    refuse_extras(obj)?;
    let model: String = field(API, obj, "model")?
        .ok_or_else(|| V1Error::invalid(API, Some("model"), "model is required"))?;
    let list: Vec<Value> = field(API, obj, "messages")?
        .ok_or_else(|| V1Error::invalid(API, Some("messages"), "messages is required"))?;
    if list.is_empty() {
        return Err(V1Error::invalid(
            API,
            Some("messages"),
            "messages must not be empty",
        ));
    }
    let messages = list
        .iter()
        .enumerate()
        .map(|(i, m)| message(i, m))
        .collect::<Result<Vec<_>, _>>()?;
    let max_tokens = match field::<u32>(API, obj, "max_completion_tokens")? {
        Some(n) => Some(n),
        None => field::<u32>(API, obj, "max_tokens")?,
    };
    if max_tokens == Some(0) {
        return Err(V1Error::invalid(
            API,
            Some("max_tokens"),
            "max_tokens must be at least 1",
        ));
    }
    let user = match field::<String>(API, obj, "user")? {
        Some(u) => Some(u),
        None => field::<String>(API, obj, "safety_identifier")?,
    };
    let stream = field::<bool>(API, obj, "stream")?.unwrap_or(false);
    let include_usage = obj
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let req = ChatRequest {
        model,
        messages,
        max_tokens,
        temperature: ranged(API, obj, "temperature", 0.0, 2.0)?,
        top_p: ranged(API, obj, "top_p", 0.0, 1.0)?,
        stop: stop(obj)?,
        seed: field(API, obj, "seed")?,
        presence_penalty: ranged(API, obj, "presence_penalty", -2.0, 2.0)?,
        frequency_penalty: ranged(API, obj, "frequency_penalty", -2.0, 2.0)?,
        response_format: response_format(obj)?,
        tools: tools(obj)?,
        tool_choice: tool_choice(obj)?,
        user,
        ..Default::default()
    };
    Ok((
        req,
        Options {
            stream,
            include_usage,
        },
    ))
}

// ---- answers -----------------------------------------------------------

/// Tool calls being assembled, by index.
#[derive(Default)]
struct Calls(BTreeMap<u32, (String, String, String)>);

impl Calls {
    /// Folds in one piece; returns the id of a call seen for the first time.
    fn add(&mut self, d: &ToolCallDelta) -> Option<String> {
        let mut first = None;
        let e = self.0.entry(d.index).or_insert_with(|| {
            let id = d.id.clone().unwrap_or_else(|| new_id("call_"));
            first = Some(id.clone());
            (id, String::new(), String::new())
        });
        if let Some(n) = &d.name
            && e.1.is_empty()
        {
            e.1 = n.clone();
        }
        e.2.push_str(&d.arguments);
        first
    }

    fn json(&self) -> Vec<Value> {
        self.0
            .values()
            .map(|(id, name, args)| {
                json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}})
            })
            .collect()
    }
}

/// Writes `chat.completion.chunk`s.
struct Chunks {
    id: String,
    created: i64,
    model: String,
    include_usage: bool,
    calls: Calls,
    /// Every chunk's fields before `choices`, serialized once: a streamed
    /// answer repeats them in each of its deltas.
    head: String,
}

/// `s` as a JSON string literal.
fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

impl Chunks {
    fn new(id: String, created: i64, model: String, include_usage: bool) -> Chunks {
        let head = format!(
            r#"{{"id":{},"object":"chat.completion.chunk","created":{created},"model":{},"system_fingerprint":null,"choices":"#,
            json_str(&id),
            json_str(&model)
        );
        Chunks {
            id,
            created,
            model,
            include_usage,
            calls: Calls::default(),
            head,
        }
    }

    /// A chunk with `choices` (JSON text) and, when usage was asked for,
    /// `usage` (JSON text; `null` on all but the last chunk).
    fn chunk(&self, choices: &str, usage: Option<&str>) -> Event {
        Event::default().data(self.body(choices, usage))
    }

    fn body(&self, choices: &str, usage: Option<&str>) -> String {
        let mut c = String::with_capacity(self.head.len() + choices.len() + 16);
        c.push_str(&self.head);
        c.push_str(choices);
        if self.include_usage {
            c.push_str(r#","usage":"#);
            c.push_str(usage.unwrap_or("null"));
        }
        c.push('}');
        c
    }

    fn delta(&self, delta: Value, finish: Option<&str>) -> Event {
        let choices =
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
        self.chunk(&choices.to_string(), None)
    }

    /// The delta of a piece of text, the bulk of a stream: written without
    /// building a JSON tree.
    fn text(&self, t: &str) -> Event {
        Event::default().data(self.text_body(t))
    }

    fn text_body(&self, t: &str) -> String {
        let choices = format!(
            r#"[{{"index":0,"delta":{{"content":{}}},"logprobs":null,"finish_reason":null}}]"#,
            json_str(t)
        );
        self.body(&choices, None)
    }

    fn encode(&mut self, e: CallEvent) -> Vec<Event> {
        match e {
            CallEvent::Text(t) => vec![self.text(&t)],
            CallEvent::ToolCall(d) => {
                let call = match self.calls.add(&d) {
                    Some(id) => json!({
                        "index": d.index, "id": id, "type": "function",
                        "function": {"name": d.name.unwrap_or_default(), "arguments": d.arguments},
                    }),
                    None => json!({"index": d.index, "function": {"arguments": d.arguments}}),
                };
                vec![self.delta(json!({"tool_calls": [call]}), None)]
            }
            CallEvent::Done {
                finish_reason,
                usage,
            } => {
                let mut out = vec![self.delta(json!({}), Some(&finish_reason))];
                if self.include_usage {
                    let u = serde_json::to_string(&CompletionUsage::from(usage))
                        .unwrap_or_else(|_| "null".into());
                    out.push(self.chunk("[]", Some(&u)));
                }
                out.push(Event::default().data("[DONE]"));
                out
            }
            CallEvent::Failed { error, .. } => {
                vec![V1Error::from_app(API, error.into()).sse_event()]
            }
        }
    }
}

/// `POST /v1/chat/completions`.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "v1", operation_id = "v1_chat_completions",
    request_body = ChatCompletionRequest,
    responses(
        (status = 200, description = "`stream: false`: one `chat.completion`. `stream: true`: `text/event-stream` of `data: {chat.completion.chunk}` lines (the role first, then content or tool_call deltas, then one with finish_reason; with `stream_options.include_usage` a last chunk with empty `choices` and the usage), then `data: [DONE]`; a failure mid-answer is a `data: {\"error\":{…}}` line and the stream ends.",
            content((ChatCompletion = "application/json"), (String = "text/event-stream"))),
        (status = 400, description = "invalid_request_error: a malformed body, a refused or unknown field (the `param` names it)", body = ErrorBody),
        (status = 401, description = "No API key, or an unknown or expired one", body = ErrorBody),
        (status = 403, description = "The key lacks the `write` scope, or the account is disabled", body = ErrorBody),
        (status = 404, description = "model_not_found: no provider offers the model", body = ErrorBody),
        (status = 413, description = "The body is larger than `max_body_bytes`", body = ErrorBody),
        (status = 429, description = "A rate limit, the running-answer cap or the daily quota; `Retry-After` says when to try again", body = ErrorBody),
        (status = 502, description = "The provider failed or cannot be reached", body = ErrorBody),
        (status = 504, description = "The provider did not answer in time", body = ErrorBody),
    ))]
pub async fn chat_completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: ClientInfo,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match run_chat(state, headers, client, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn run_chat(
    state: AppState,
    headers: HeaderMap,
    client: ClientInfo,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, V1Error> {
    let who = authenticate(&state, API, &headers, &client, "write").await?;
    let obj = json_body(API, &headers, body, state.cfg.max_body_bytes)?;
    let (req, opts) = parse(&obj)?;
    let call = service(&state)
        .complete(&who.user, who.caller, req)
        .await
        .map_err(|e| V1Error::from_app(API, e))?;
    let mut chunks = Chunks::new(
        new_id("chatcmpl-"),
        now(),
        call.model.clone(),
        opts.include_usage,
    );
    if opts.stream {
        let first = chunks.delta(json!({"role": "assistant", "content": ""}), None);
        let rest = call
            .events
            .flat_map(move |e| futures::stream::iter(chunks.encode(e)));
        let events = futures::stream::once(async move { first })
            .chain(rest)
            .map(Ok::<_, Infallible>);
        return Ok(sse(events));
    }
    whole(chunks, call.events).await
}

/// The answer as one chat completion, once the call has ended.
async fn whole(
    mut chunks: Chunks,
    mut events: futures::stream::BoxStream<'static, CallEvent>,
) -> Result<Response, V1Error> {
    let mut text = String::new();
    while let Some(e) = events.next().await {
        match e {
            CallEvent::Text(t) => text.push_str(&t),
            CallEvent::ToolCall(d) => {
                chunks.calls.add(&d);
            }
            CallEvent::Failed { error, .. } => return Err(V1Error::from_app(API, error.into())),
            CallEvent::Done {
                finish_reason,
                usage,
            } => {
                let tool_calls = chunks.calls.json();
                let mut message = json!({
                    "role": "assistant",
                    "content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { Value::String(text) },
                    "refusal": null,
                });
                if !tool_calls.is_empty() {
                    message["tool_calls"] = Value::Array(tool_calls);
                }
                let body = json!({
                    "id": chunks.id,
                    "object": "chat.completion",
                    "created": chunks.created,
                    "model": chunks.model,
                    "system_fingerprint": null,
                    "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason}],
                    "usage": CompletionUsage::from(usage),
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

// ---- embeddings ------------------------------------------------------------

const EMBED_FIELDS: &[&str] = &["model", "input", "dimensions", "encoding_format", "user"];

/// The request, and whether vectors go back as base64.
fn parse_embeddings(obj: &Map<String, Value>) -> Result<(EmbeddingRequest, bool), V1Error> {
    if let Some(k) = unknown_fields(obj, EMBED_FIELDS, &[]) {
        return Err(V1Error::invalid(
            API,
            Some(k),
            format!("Unrecognized request argument supplied: {k}"),
        ));
    }
    let model: String = field(API, obj, "model")?
        .ok_or_else(|| V1Error::invalid(API, Some("model"), "model is required"))?;
    let input = match obj.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if a.iter().all(Value::is_string) && !a.is_empty() => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(Value::Array(a)) if !a.is_empty() => {
            return Err(V1Error::invalid(
                API,
                Some("input"),
                "input must be a string or an array of strings (token arrays are not supported)",
            ));
        }
        _ => {
            return Err(V1Error::invalid(
                API,
                Some("input"),
                "input must be a non-empty string or array of strings",
            ));
        }
    };
    let base64 = match field::<String>(API, obj, "encoding_format")?.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => {
            return Err(V1Error::invalid(
                API,
                Some("encoding_format"),
                "encoding_format must be float or base64",
            ));
        }
    };
    let dimensions = field::<u32>(API, obj, "dimensions")?;
    if dimensions == Some(0) {
        return Err(V1Error::invalid(
            API,
            Some("dimensions"),
            "dimensions must be at least 1",
        ));
    }
    let req = EmbeddingRequest {
        model,
        input,
        dimensions,
        user: field(API, obj, "user")?,
        api_key_override: None,
    };
    Ok((req, base64))
}

/// `POST /v1/embeddings`.
#[utoipa::path(post, path = "/v1/embeddings", tag = "v1", operation_id = "v1_embeddings",
    request_body = EmbeddingsRequest,
    responses(
        (status = 200, description = "One vector per input, in order", body = EmbeddingsResponse),
        (status = 400, description = "invalid_request_error; also a model whose provider offers no embeddings", body = ErrorBody),
        (status = 401, description = "No API key, or an unknown or expired one", body = ErrorBody),
        (status = 403, description = "The key lacks the `write` scope, or the account is disabled", body = ErrorBody),
        (status = 404, description = "model_not_found", body = ErrorBody),
        (status = 413, description = "The body is larger than `max_body_bytes`", body = ErrorBody),
        (status = 429, description = "A rate limit or the daily quota; `Retry-After`", body = ErrorBody),
        (status = 502, description = "The provider failed", body = ErrorBody),
        (status = 504, description = "The provider did not answer in time", body = ErrorBody),
    ))]
pub async fn embeddings(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: ClientInfo,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let run = async {
        let who = authenticate(&state, API, &headers, &client, "write").await?;
        let obj = json_body(API, &headers, body, state.cfg.max_body_bytes)?;
        let (req, base64) = parse_embeddings(&obj)?;
        let model = req.model.clone();
        let e = service(&state)
            .embed(&who.user, who.caller, req)
            .await
            .map_err(|e| V1Error::from_app(API, e))?;
        let tokens = e.input_tokens;
        Ok::<_, V1Error>(axum::Json(EmbeddingsResponse {
            object: "list".into(),
            data: e
                .vectors
                .into_iter()
                .enumerate()
                .map(|(index, embedding)| EmbeddingItem {
                    object: "embedding".into(),
                    index,
                    embedding: Vector::encode(embedding, base64),
                })
                .collect(),
            model,
            usage: EmbeddingsUsage {
                prompt_tokens: tokens,
                total_tokens: tokens,
            },
        }))
    };
    match run.await {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn fields_are_passed_on() {
        let (r, o) = parse(&obj(json!({
            "model": "m", "stream": true, "stream_options": {"include_usage": true},
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"}
            ],
            "temperature": 0.5, "top_p": 0.9, "max_tokens": 10, "stop": "x", "seed": 7,
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "tool_choice": "required", "response_format": {"type": "json_object"},
            "store": false, "metadata": {"a": "b"}, "n": 1, "user": "u1"
        })))
        .unwrap();
        assert!(o.stream && o.include_usage);
        assert_eq!(r.messages.len(), 4);
        assert_eq!(r.messages[0].role, Role::System);
        assert_eq!(r.messages[1].content, "a\nb");
        assert_eq!(r.messages[2].tool_calls[0].id, "c1");
        assert_eq!(r.messages[3].tool_call_id.as_deref(), Some("c1"));
        assert_eq!(r.max_tokens, Some(10));
        assert_eq!(r.stop, vec!["x".to_string()]);
        assert_eq!(r.tool_choice, Some(ToolChoice::Required));
        assert_eq!(r.response_format, Some(ResponseFormat::JsonObject));
        assert_eq!(r.user.as_deref(), Some("u1"));
    }

    #[test]
    fn chunks_written_directly_are_the_json_they_stand_for() {
        let c = Chunks::new("chatcmpl-1".into(), 7, "m \"q\"".into(), true);
        let text: Value = serde_json::from_str(&c.text_body("a \"b\"\n\u{1F600}")).unwrap();
        assert_eq!(
            text,
            json!({
                "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7,
                "model": "m \"q\"", "system_fingerprint": null, "usage": null,
                "choices": [{"index": 0, "delta": {"content": "a \"b\"\n\u{1F600}"},
                    "logprobs": null, "finish_reason": null}],
            })
        );
        let last: Value =
            serde_json::from_str(&c.body("[]", Some(r#"{"total_tokens":3}"#))).unwrap();
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["usage"]["total_tokens"], 3);
        let plain = Chunks::new("x".into(), 1, "m".into(), false);
        let v: Value = serde_json::from_str(&plain.text_body("hi")).unwrap();
        assert!(v.get("usage").is_none(), "{v}");
    }

    #[test]
    fn refused_fields_name_themselves() {
        let base = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        for (extra, param) in [
            (json!({"n": 2}), "n"),
            (json!({"logprobs": true}), "logprobs"),
            (json!({"logit_bias": {"1": 2}}), "logit_bias"),
            (json!({"functions": []}), "functions"),
            (json!({"frobnicate": 1}), "frobnicate"),
            (json!({"temperature": 3}), "temperature"),
        ] {
            let mut o = obj(base.clone());
            o.extend(obj(extra));
            let e = parse(&o).err().unwrap();
            assert_eq!(e.status, 400);
            assert_eq!(e.param.as_deref(), Some(param));
        }
        let mut o = obj(base);
        o["messages"] = json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]);
        let e = parse(&o).err().unwrap();
        assert!(e.message.contains("data URL"), "{}", e.message);
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0]"));
        o["messages"] =
            json!([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]);
        let e = parse(&o).err().unwrap();
        assert!(e.message.contains("not supported"), "{}", e.message);
    }
}
