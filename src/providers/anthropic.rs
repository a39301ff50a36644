//! Anthropic's Messages API over SSE. The base URL is the server root
//! (`https://api.anthropic.com`), without `/v1`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::images::WireImage;
use super::sse::SseParser;
use super::transport::{self, ErrorDetail, Origin};
use serde_json::{Value, json};

use super::{
    ChatEvent, ChatMessage, ChatRequest, ChatStream, EventQueue, ModelInfo, Provider,
    ProviderError, ProviderKind, ProviderOptions, ResponseFormat, Role, StreamDecoder,
    ToolCallDelta, ToolChoice, merged_system, normalize_finish_reason,
};

pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// The API requires `max_tokens`; when the request has none, the model's
/// output limit is used ([`default_max_tokens`]), and this for a model
/// the table does not know.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;
/// Every current Claude model accepts at least this much context; the models
/// endpoint does not say.
const CLAUDE_CONTEXT: u32 = 200_000;

pub struct AnthropicProvider {
    name: String,
    base_url: String,
    api_key: Option<String>,
    client: reqwest::Client,
    options: ProviderOptions,
}

impl std::fmt::Debug for AnthropicProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicProvider")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .finish()
    }
}

impl AnthropicProvider {
    /// `base_url` is the server root; a trailing `/v1` is tolerated.
    pub fn new(
        name: impl Into<String>,
        base_url: &str,
        api_key: Option<String>,
        client: reqwest::Client,
    ) -> Self {
        let base = base_url.trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base);
        AnthropicProvider {
            name: name.into(),
            base_url: base.to_string(),
            api_key: api_key.filter(|k| !k.is_empty()),
            client,
            options: ProviderOptions::default(),
        }
    }

    pub fn with_options(mut self, options: ProviderOptions) -> Self {
        self.options = options;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn origin(&self, key: Option<&str>, model: Option<&str>) -> Origin {
        Origin {
            provider: self.name.clone(),
            key: key.map(Into::into),
            model: model.map(Into::into),
        }
    }

    fn headers(&self, rb: reqwest::RequestBuilder, key: Option<&str>) -> reqwest::RequestBuilder {
        let rb = rb.header("anthropic-version", ANTHROPIC_VERSION);
        match key {
            Some(k) => rb.header("x-api-key", k),
            None => rb,
        }
    }
}

/// Longest answer of each Claude family, in tokens (Anthropic's models
/// overview, without beta headers such as 3.7 Sonnet's 128k output). The
/// first prefix that matches wins, so the longer names come first.
const CLAUDE_OUTPUT_LIMITS: &[(&str, u32)] = &[
    ("claude-opus-4-6", 128_000),
    ("claude-opus-4-7", 128_000),
    ("claude-sonnet-4-6", 128_000),
    ("claude-opus-4-5", 64_000),
    ("claude-sonnet-4-5", 64_000),
    ("claude-haiku-4-5", 64_000),
    ("claude-opus-4-1", 32_000),
    ("claude-opus-4", 32_000),
    ("claude-sonnet-4", 64_000),
    ("claude-3-7-sonnet", 64_000),
    ("claude-3-5-sonnet", 8_192),
    ("claude-3-5-haiku", 8_192),
    ("claude-3-opus", 4_096),
    ("claude-3-sonnet", 4_096),
    ("claude-3-haiku", 4_096),
];

/// The output limit of a known Claude model, from [`CLAUDE_OUTPUT_LIMITS`].
pub fn claude_max_output_tokens(model: &str) -> Option<u32> {
    let model = model.to_ascii_lowercase();
    CLAUDE_OUTPUT_LIMITS
        .iter()
        .find(|(prefix, _)| model.starts_with(prefix))
        .map(|&(_, limit)| limit)
}

/// `max_tokens` for a request that set none: the model's whole output
/// limit, [`DEFAULT_MAX_TOKENS`] for a model the table does not know.
pub fn default_max_tokens(model: &str) -> u32 {
    claude_max_output_tokens(model).unwrap_or(DEFAULT_MAX_TOKENS)
}

#[derive(Serialize)]
struct WireMessage {
    role: &'static str,
    /// A plain string, or content blocks when tools are involved.
    content: Value,
}

#[derive(Serialize)]
struct WireTool<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: &'a Value,
}

#[derive(Serialize)]
struct WireMetadata<'a> {
    user_id: &'a str,
}

/// The Messages API request. OpenAI's `seed`, `presence_penalty` and
/// `frequency_penalty` have no counterpart here; they are sampling hints
/// that do not change what an answer may contain, so they are dropped
/// rather than refused. A JSON `response_format` is refused instead
/// (see [`wire_request`]): that one is a promise about the answer.
/// `temperature` and `top_p` are both passed on when both are set, though
/// Anthropic advises altering only one and its newest models refuse the
/// pair: choosing one for the client would change what it asked for, so
/// that refusal reaches the client as it is.
#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    messages: Vec<WireMessage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<WireMetadata<'a>>,
    stream: bool,
}

fn tool_choice(choice: &ToolChoice) -> Value {
    match choice {
        ToolChoice::Auto => json!({"type": "auto"}),
        ToolChoice::None => json!({"type": "none"}),
        ToolChoice::Required => json!({"type": "any"}),
        ToolChoice::Named(name) => json!({"type": "tool", "name": name}),
    }
}

/// An assistant turn that called tools: its text (if any), then one
/// `tool_use` block per call with the arguments as a JSON object.
fn assistant_blocks(m: &ChatMessage) -> Result<Value, ProviderError> {
    let mut blocks = Vec::with_capacity(m.tool_calls.len() + 1);
    if !m.content.is_empty() {
        blocks.push(json!({"type": "text", "text": m.content}));
    }
    for call in &m.tool_calls {
        let input: Value = if call.arguments.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(&call.arguments).map_err(|_| {
                ProviderError::Unsupported(format!(
                    "the arguments of tool call \"{}\" are not valid JSON, which Anthropic needs",
                    call.id
                ))
            })?
        };
        if !input.is_object() {
            return Err(ProviderError::Unsupported(format!(
                "the arguments of tool call \"{}\" must be a JSON object for Anthropic",
                call.id
            )));
        }
        blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input}));
    }
    Ok(Value::Array(blocks))
}

fn wire_request<'a>(
    req: &'a ChatRequest,
    images: &[Vec<WireImage>],
) -> Result<WireRequest<'a>, ProviderError> {
    match &req.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject | ResponseFormat::JsonSchema { .. }) => {
            return Err(ProviderError::Unsupported(
                "Anthropic has no JSON mode: response_format json_object or json_schema cannot be passed on to it; describe the JSON in the prompt instead".into(),
            ));
        }
    }
    // The API rejects a "system" role inside messages; those are folded
    // into the top-level field instead. Tool results travel as
    // `tool_result` blocks of a user turn, consecutive ones in one turn.
    let mut messages: Vec<WireMessage> = Vec::with_capacity(req.messages.len());
    let mut last_was_tool = false;
    for (i, m) in req.messages.iter().enumerate() {
        let pictures = images.get(i).map_or(&[][..], |v| v);
        match m.role {
            Role::System => continue,
            Role::Tool => {
                let block = json!({
                    "type": "tool_result",
                    "tool_use_id": m.tool_call_id.as_deref().unwrap_or_default(),
                    "content": m.content,
                });
                match messages.last_mut() {
                    Some(WireMessage {
                        content: Value::Array(blocks),
                        ..
                    }) if last_was_tool => blocks.push(block),
                    _ => messages.push(WireMessage {
                        role: "user",
                        content: json!([block]),
                    }),
                }
                last_was_tool = true;
                continue;
            }
            Role::Assistant if !m.tool_calls.is_empty() => messages.push(WireMessage {
                role: "assistant",
                content: assistant_blocks(m)?,
            }),
            // Images first, then the text (Anthropic's advice), each image a
            // base64 `image` block.
            Role::User if !pictures.is_empty() => {
                let mut blocks: Vec<Value> = pictures
                    .iter()
                    .map(|p| {
                        json!({"type": "image", "source": {"type": "base64",
                            "media_type": p.mime, "data": p.base64}})
                    })
                    .collect();
                if !m.content.is_empty() {
                    blocks.push(json!({"type": "text", "text": m.content}));
                }
                messages.push(WireMessage {
                    role: "user",
                    content: Value::Array(blocks),
                })
            }
            Role::User | Role::Assistant => messages.push(WireMessage {
                role: m.role.as_str(),
                content: Value::String(m.content.clone()),
            }),
        }
        last_was_tool = false;
    }
    Ok(WireRequest {
        model: &req.model,
        max_tokens: req
            .max_tokens
            .unwrap_or_else(|| default_max_tokens(&req.model)),
        messages,
        system: merged_system(req),
        // Anthropic's range is 0..=1, OpenAI's 0..=2; clamping beats a 400.
        temperature: req.temperature.map(|t| t.clamp(0.0, 1.0)),
        top_p: req.top_p,
        stop_sequences: &req.stop,
        tools: req
            .tools
            .iter()
            .map(|t| WireTool {
                name: &t.name,
                description: t.description.as_deref(),
                input_schema: &t.parameters,
            })
            .collect(),
        tool_choice: req
            .tool_choice
            .as_ref()
            .filter(|c| !req.tools.is_empty() || !super::choice_is_moot(c))
            .map(tool_choice),
        metadata: req
            .user
            .as_deref()
            .filter(|u| !u.is_empty())
            .map(|user_id| WireMetadata { user_id }),
        stream: true,
    })
}

#[derive(Deserialize)]
struct ModelList {
    #[serde(default)]
    data: Vec<WireModel>,
}

#[derive(Deserialize)]
struct WireModel {
    id: String,
    display_name: Option<String>,
}

impl AnthropicProvider {
    /// The model list, asked for with `key`.
    async fn models_with(&self, key: Option<&str>) -> Result<Vec<ModelInfo>, ProviderError> {
        let origin = self.origin(key, None);
        let url = format!("{}/v1/models?limit=1000", self.base_url);
        let resp = transport::send(&origin, &self.options, || {
            self.headers(self.client.get(&url), key)
        })
        .await?;
        let list: ModelList =
            transport::read_json(&origin, resp, self.options.idle_timeout).await?;
        Ok(list
            .data
            .into_iter()
            .map(|m| ModelInfo {
                display_name: m
                    .display_name
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| m.id.clone()),
                context_window: m.id.starts_with("claude").then_some(CLAUDE_CONTEXT),
                max_output_tokens: claude_max_output_tokens(&m.id),
                kind: super::ModelKind::Chat,
                id: m.id,
            })
            .collect())
    }
}

#[async_trait]
impl Provider for AnthropicProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Anthropic
    }

    async fn models(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        self.models_with(self.api_key.as_deref()).await
    }

    async fn check_key(&self, key: &str) -> Result<usize, ProviderError> {
        self.models_with(Some(key)).await.map(|m| m.len())
    }

    async fn stream(&self, req: ChatRequest) -> Result<ChatStream, ProviderError> {
        let key = req
            .api_key_override
            .as_deref()
            .filter(|k| !k.is_empty())
            .or(self.api_key.as_deref());
        let origin = self.origin(key, Some(&req.model));
        let url = format!("{}/v1/messages", self.base_url);
        let images = super::images::prepare(&req, ProviderKind::Anthropic).await?;
        let body: bytes::Bytes = serde_json::to_vec(&wire_request(&req, &images)?)
            .map_err(|e| ProviderError::Protocol(format!("could not encode the request: {e}")))?
            .into();
        let resp = transport::send(&origin, &self.options, || {
            self.headers(self.client.post(&url), key)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(reqwest::header::ACCEPT, "text/event-stream")
                .body(body.clone())
        })
        .await?;
        let decoder = AnthropicDecoder::new(origin.clone());
        Ok(transport::drive(
            resp,
            decoder,
            origin,
            self.options.idle_timeout,
        ))
    }
}

/// The HTTP status Anthropic uses for each error type, so a mid-stream error
/// event is classified exactly like the same error at status time.
fn status_for_error_type(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        #[serde(default)]
        index: u32,
        content_block: Block,
    },
    ContentBlockDelta {
        #[serde(default)]
        index: u32,
        delta: BlockDelta,
    },
    ContentBlockStop,
    MessageDelta {
        delta: MessageDeltaBody,
        usage: Option<WireUsage>,
    },
    MessageStop,
    Ping,
    Error {
        error: WireError,
    },
    /// New event types may appear at any time (Anthropic's versioning policy).
    #[serde(other)]
    Unknown,
}

#[derive(Deserialize)]
struct StartMessage {
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
    /// `tool_use` blocks.
    id: Option<String>,
    name: Option<String>,
    input: Option<Value>,
}

#[derive(Deserialize)]
struct BlockDelta {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
    /// `input_json_delta`: more of a tool call's arguments.
    partial_json: Option<String>,
}

#[derive(Deserialize)]
struct MessageDeltaBody {
    stop_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Cached prompt tokens are reported apart from `input_tokens` but are
    /// input all the same, and quotas should see them.
    fn input(&self) -> Option<u64> {
        match (
            self.input_tokens,
            self.cache_creation_input_tokens,
            self.cache_read_input_tokens,
        ) {
            (None, None, None) => None,
            (a, b, c) => Some(a.unwrap_or(0) + b.unwrap_or(0) + c.unwrap_or(0)),
        }
    }
}

#[derive(Deserialize)]
struct WireError {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<String>,
}

/// Decodes Messages API events. Input tokens come with `message_start`,
/// the cumulative output count with `message_delta`; `Usage` and `Done` are
/// emitted together at `message_stop`.
pub(crate) struct AnthropicDecoder {
    sse: SseParser,
    origin: Origin,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    stop_reason: Option<String>,
    /// Content block index of each `tool_use` block, in order: a tool call's
    /// index is its position here, whatever text blocks came before it.
    tool_blocks: Vec<u32>,
    done: bool,
}

impl AnthropicDecoder {
    pub(crate) fn new(origin: Origin) -> Self {
        AnthropicDecoder {
            sse: SseParser::default(),
            origin,
            input_tokens: None,
            output_tokens: None,
            stop_reason: None,
            tool_blocks: Vec::new(),
            done: false,
        }
    }

    fn tool_index(&self, block: u32) -> Option<u32> {
        self.tool_blocks
            .iter()
            .position(|&b| b == block)
            .and_then(|i| u32::try_from(i).ok())
    }

    fn event(&mut self, data: &str, out: &mut EventQueue) {
        if self.done || data.trim().is_empty() {
            return;
        }
        let ev: WireEvent = match serde_json::from_str(data) {
            Ok(ev) => ev,
            Err(e) => {
                out.push_back(Err(ProviderError::Protocol(format!(
                    "provider \"{}\" sent a malformed stream event: {e}",
                    self.origin.provider
                ))));
                return;
            }
        };
        match ev {
            WireEvent::MessageStart { message } => {
                if let Some(u) = message.usage {
                    self.input_tokens = u.input();
                    self.output_tokens = u.output_tokens;
                }
            }
            WireEvent::ContentBlockStart {
                index,
                content_block,
            } => match content_block.kind.as_str() {
                "text" => {
                    if let Some(t) = content_block.text.filter(|t| !t.is_empty()) {
                        out.push_back(Ok(ChatEvent::Delta(t)));
                    }
                }
                "tool_use" => {
                    let call = self.tool_blocks.len() as u32;
                    self.tool_blocks.push(index);
                    // Streamed calls start with `input: {}` and send the
                    // arguments as deltas; a non-empty input is whole.
                    let arguments = match content_block.input {
                        Some(Value::Object(o)) if !o.is_empty() => Value::Object(o).to_string(),
                        _ => String::new(),
                    };
                    out.push_back(Ok(ChatEvent::ToolCall(ToolCallDelta {
                        index: call,
                        id: content_block.id,
                        name: content_block.name,
                        arguments,
                    })));
                }
                _ => {}
            },
            WireEvent::ContentBlockDelta { index, delta } => match delta.kind.as_str() {
                "text_delta" => {
                    if let Some(t) = delta.text.filter(|t| !t.is_empty()) {
                        out.push_back(Ok(ChatEvent::Delta(t)));
                    }
                }
                "input_json_delta" => {
                    let piece = delta.partial_json.unwrap_or_default();
                    match self.tool_index(index) {
                        Some(call) if !piece.is_empty() => {
                            out.push_back(Ok(ChatEvent::ToolCall(ToolCallDelta {
                                index: call,
                                id: None,
                                name: None,
                                arguments: piece,
                            })));
                        }
                        Some(_) => {}
                        None => out.push_back(Err(ProviderError::Protocol(format!(
                            "provider \"{}\" sent tool arguments for a block that is not a tool call",
                            self.origin.provider
                        )))),
                    }
                }
                // thinking_delta, signature_delta, citations_delta are not
                // part of the visible answer.
                _ => {}
            },
            WireEvent::MessageDelta { delta, usage } => {
                if let Some(r) = delta.stop_reason {
                    self.stop_reason = Some(r);
                }
                if let Some(u) = usage {
                    if let Some(input) = u.input() {
                        self.input_tokens = Some(input);
                    }
                    if let Some(o) = u.output_tokens {
                        self.output_tokens = Some(o);
                    }
                }
            }
            WireEvent::MessageStop => {
                if self.input_tokens.is_some() || self.output_tokens.is_some() {
                    out.push_back(Ok(ChatEvent::Usage {
                        input_tokens: self.input_tokens.unwrap_or(0),
                        output_tokens: self.output_tokens.unwrap_or(0),
                    }));
                }
                let reason = self.stop_reason.take().unwrap_or_else(|| "end_turn".into());
                out.push_back(Ok(ChatEvent::Done {
                    finish_reason: normalize_finish_reason(&reason),
                }));
                self.done = true;
            }
            WireEvent::Error { error } => {
                let kind = error.kind.unwrap_or_default();
                let status = status_for_error_type(&kind);
                let detail = ErrorDetail {
                    message: error.message.unwrap_or_default(),
                    code: None,
                    kind: Some(kind),
                };
                out.push_back(Err(self.origin.error_from_detail(status, None, detail)));
            }
            WireEvent::ContentBlockStop | WireEvent::Ping | WireEvent::Unknown => {}
        }
    }
}

impl StreamDecoder for AnthropicDecoder {
    fn feed(&mut self, bytes: &[u8], out: &mut EventQueue) {
        self.sse.push(bytes);
        while let Some(ev) = self.sse.next_event() {
            match ev {
                Ok(ev) => self.event(&ev.data, out),
                Err(e) => {
                    out.push_back(Err(e));
                    return;
                }
            }
        }
    }

    fn finish(&mut self, out: &mut EventQueue) {
        while let Some(ev) = self.sse.finish() {
            match ev {
                Ok(ev) => self.event(&ev.data, out),
                Err(e) => {
                    out.push_back(Err(e));
                    return;
                }
            }
        }
    }

    fn is_done(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ChatMessage;

    const STREAM: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-test\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: ping\n",
        "data: {\"type\": \"ping\"}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Grüß\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" 🦀\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    );

    fn origin() -> Origin {
        Origin {
            provider: "an".into(),
            key: None,
            model: Some("claude-test".into()),
        }
    }

    fn decode(chunks: &[&[u8]]) -> (Vec<Result<ChatEvent, ProviderError>>, bool) {
        let mut d = AnthropicDecoder::new(origin());
        let mut q = EventQueue::new();
        for c in chunks {
            d.feed(c, &mut q);
        }
        d.finish(&mut q);
        (q.into_iter().collect(), d.is_done())
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let expected = vec![
            Ok(ChatEvent::Delta("Grüß".into())),
            Ok(ChatEvent::Delta(" 🦀".into())),
            Ok(ChatEvent::Usage {
                input_tokens: 25,
                output_tokens: 15,
            }),
            Ok(ChatEvent::Done {
                finish_reason: "stop".into(),
            }),
        ];
        assert_eq!(decode(&[STREAM.as_bytes()]), (expected.clone(), true));
        let chunks: Vec<&[u8]> = STREAM.as_bytes().chunks(1).collect();
        assert_eq!(decode(&chunks), (expected.clone(), true));
        let crlf = STREAM.replace('\n', "\r\n");
        let chunks: Vec<&[u8]> = crlf.as_bytes().chunks(1).collect();
        assert_eq!(decode(&chunks), (expected, true));
    }

    #[test]
    fn overloaded_mid_stream() {
        let s = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\nevent: error\ndata: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}\n\n";
        let (got, done) = decode(&[s.as_bytes()]);
        assert!(!done);
        assert_eq!(got[0], Ok(ChatEvent::Delta("Hi".into())));
        assert_eq!(
            got[1],
            Err(ProviderError::Upstream {
                status: 529,
                message: "Overloaded".into()
            })
        );
    }

    #[test]
    fn system_goes_top_level() {
        let mut req = ChatRequest::new(
            "claude",
            vec![ChatMessage::system("extra"), ChatMessage::user("hi")],
        );
        req.system = Some("be brief".into());
        req.temperature = Some(1.7);
        let v = serde_json::to_value(wire_request(&req, &[]).unwrap()).unwrap();
        assert_eq!(v["system"], "be brief\n\nextra");
        assert_eq!(v["messages"].as_array().unwrap().len(), 1);
        assert_eq!(v["max_tokens"], DEFAULT_MAX_TOKENS);
        assert_eq!(v["temperature"], 1.0);
        assert_eq!(v["stream"], true);
    }
}

#[cfg(test)]
mod tool_tests {
    use super::*;
    use crate::providers::{Tool, ToolCall};

    /// Text block 0, then two tool_use blocks (1 and 2): the calls are
    /// numbered 0 and 1, whatever their block index.
    const TOOL_STREAM: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_02\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-test\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":472,\"output_tokens\":2}}}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Okay, checking.\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01\",\"name\":\"get_weather\",\"input\":{}}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"location\\\": \\\"San Fra\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"ncisco, CA\\\"}\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_02\",\"name\":\"get_time\",\"input\":{}}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":2}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":89}}\n\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    );

    fn decode(chunks: &[&[u8]]) -> Vec<Result<ChatEvent, ProviderError>> {
        let mut d = AnthropicDecoder::new(Origin {
            provider: "an".into(),
            key: None,
            model: Some("claude-test".into()),
        });
        let mut q = EventQueue::new();
        for c in chunks {
            d.feed(c, &mut q);
        }
        d.finish(&mut q);
        assert!(d.is_done());
        q.into_iter().collect()
    }

    fn piece(index: u32, id: Option<&str>, name: Option<&str>, args: &str) -> ChatEvent {
        ChatEvent::ToolCall(ToolCallDelta {
            index,
            id: id.map(Into::into),
            name: name.map(Into::into),
            arguments: args.into(),
        })
    }

    #[test]
    fn tool_use_blocks_byte_by_byte_equal_whole() {
        let expected: Vec<Result<ChatEvent, ProviderError>> = vec![
            Ok(ChatEvent::Delta("Okay, checking.".into())),
            Ok(piece(0, Some("toolu_01"), Some("get_weather"), "")),
            Ok(piece(0, None, None, "{\"location\": \"San Fra")),
            Ok(piece(0, None, None, "ncisco, CA\"}")),
            Ok(piece(1, Some("toolu_02"), Some("get_time"), "")),
            Ok(piece(1, None, None, "{}")),
            Ok(ChatEvent::Usage {
                input_tokens: 472,
                output_tokens: 89,
            }),
            Ok(ChatEvent::Done {
                finish_reason: "tool_calls".into(),
            }),
        ];
        assert_eq!(decode(&[TOOL_STREAM.as_bytes()]), expected);
        let bytes: Vec<&[u8]> = TOOL_STREAM.as_bytes().chunks(1).collect();
        assert_eq!(decode(&bytes), expected);
        let crlf = TOOL_STREAM.replace('\n', "\r\n");
        let bytes: Vec<&[u8]> = crlf.as_bytes().chunks(1).collect();
        assert_eq!(decode(&bytes), expected);
    }

    #[test]
    fn arguments_for_a_text_block_are_a_protocol_error() {
        let s = "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\"}}\n\n";
        let mut d = AnthropicDecoder::new(Origin {
            provider: "an".into(),
            key: None,
            model: None,
        });
        let mut q = EventQueue::new();
        d.feed(s.as_bytes(), &mut q);
        assert!(matches!(
            q.pop_front(),
            Some(Err(ProviderError::Protocol(_)))
        ));
    }

    fn call(id: &str, name: &str, args: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: args.into(),
        }
    }

    fn tool_result(id: &str, text: &str) -> ChatMessage {
        let mut m = ChatMessage::new(Role::Tool, text);
        m.tool_call_id = Some(id.into());
        m
    }

    #[test]
    fn every_field_in_anthropic_words() {
        let mut assistant = ChatMessage::assistant("Checking both.");
        assistant.tool_calls = vec![
            call("toolu_1", "get_weather", "{\"city\":\"Paris\"}"),
            call("toolu_2", "get_time", ""),
        ];
        let mut req = ChatRequest::new(
            "claude-3-5-haiku-20241022",
            vec![
                ChatMessage::user("weather and time?"),
                assistant,
                tool_result("toolu_1", "18 degrees"),
                tool_result("toolu_2", "noon"),
                ChatMessage::user("thanks"),
            ],
        );
        req.temperature = Some(0.2);
        req.top_p = Some(0.8);
        req.stop = vec!["END".into(), "STOP".into()];
        req.seed = Some(7);
        req.presence_penalty = Some(1.0);
        req.frequency_penalty = Some(1.0);
        req.user = Some("user-7".into());
        req.tools = vec![Tool {
            name: "get_weather".into(),
            description: None,
            parameters: json!({"type": "object"}),
        }];
        req.tool_choice = Some(ToolChoice::Required);
        let v = serde_json::to_value(wire_request(&req, &[]).unwrap()).unwrap();
        assert_eq!(v["max_tokens"], 8192, "3.5 Haiku's output limit");
        assert_eq!(v["top_p"], json!(0.8f32));
        assert_eq!(v["stop_sequences"], json!(["END", "STOP"]));
        assert_eq!(v["metadata"], json!({"user_id": "user-7"}));
        assert_eq!(
            v["tools"],
            json!([{"name": "get_weather", "input_schema": {"type": "object"}}])
        );
        assert_eq!(v["tool_choice"], json!({"type": "any"}));
        for dropped in [
            "seed",
            "presence_penalty",
            "frequency_penalty",
            "stop",
            "user",
        ] {
            assert!(v.get(dropped).is_none(), "{dropped}");
        }
        let msgs = v["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 4, "{msgs:?}");
        assert_eq!(
            msgs[1],
            json!({"role": "assistant", "content": [
                {"type": "text", "text": "Checking both."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}}]})
        );
        assert_eq!(
            msgs[2],
            json!({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 degrees"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "noon"}]})
        );
        assert_eq!(msgs[3], json!({"role": "user", "content": "thanks"}));

        for (choice, wire) in [
            (ToolChoice::Auto, json!({"type": "auto"})),
            (ToolChoice::None, json!({"type": "none"})),
            (
                ToolChoice::Named("get_weather".into()),
                json!({"type": "tool", "name": "get_weather"}),
            ),
        ] {
            req.tool_choice = Some(choice);
            assert_eq!(
                serde_json::to_value(wire_request(&req, &[]).unwrap()).unwrap()["tool_choice"],
                wire
            );
        }
        req.tools.clear();
        req.tool_choice = Some(ToolChoice::Auto);
        let v = serde_json::to_value(wire_request(&req, &[]).unwrap()).unwrap();
        assert!(v.get("tool_choice").is_none() && v.get("tools").is_none());
    }

    #[test]
    fn json_mode_and_bad_arguments_are_refused() {
        let mut req = ChatRequest::new("claude-sonnet-4-20250514", vec![ChatMessage::user("hi")]);
        req.response_format = Some(ResponseFormat::JsonObject);
        let e = wire_request(&req, &[]).err().unwrap();
        assert_eq!(e.code(), "UNSUPPORTED");
        assert!(e.to_string().contains("Anthropic has no JSON mode"), "{e}");
        req.response_format = Some(ResponseFormat::JsonSchema {
            name: "x".into(),
            schema: json!({}),
            strict: None,
        });
        assert!(matches!(
            wire_request(&req, &[]),
            Err(ProviderError::Unsupported(_))
        ));
        req.response_format = Some(ResponseFormat::Text);
        assert!(wire_request(&req, &[]).is_ok());

        let mut assistant = ChatMessage::assistant("");
        assistant.tool_calls = vec![call("toolu_1", "f", "[1, 2]")];
        let req = ChatRequest::new("claude", vec![ChatMessage::user("hi"), assistant]);
        assert!(matches!(
            wire_request(&req, &[]),
            Err(ProviderError::Unsupported(_))
        ));
    }

    #[test]
    fn output_limits_by_family() {
        for (model, limit) in [
            ("claude-3-haiku-20240307", Some(4096)),
            ("claude-3-opus-20240229", Some(4096)),
            ("claude-3-5-sonnet-20241022", Some(8192)),
            ("claude-3-5-haiku-latest", Some(8192)),
            ("claude-3-7-sonnet-20250219", Some(64_000)),
            ("claude-sonnet-4-20250514", Some(64_000)),
            ("claude-opus-4-20250514", Some(32_000)),
            ("claude-opus-4-1-20250805", Some(32_000)),
            ("claude-sonnet-4-5-20250929", Some(64_000)),
            ("claude-haiku-4-5", Some(64_000)),
            ("claude-opus-4-5-20251101", Some(64_000)),
            ("claude-opus-4-6", Some(128_000)),
            ("mystery-model", None),
        ] {
            assert_eq!(claude_max_output_tokens(model), limit, "{model}");
        }
        assert_eq!(default_max_tokens("mystery-model"), DEFAULT_MAX_TOKENS);
        assert_eq!(default_max_tokens("claude-3-7-sonnet-latest"), 64_000);
    }
}
