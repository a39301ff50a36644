//! OpenAI-compatible Chat Completions over SSE: OpenAI itself, LM Studio,
//! vLLM, llama.cpp server, Ollama's /v1, OpenRouter, Groq and the like.
//! The base URL includes the `/v1` (or whatever prefix the server uses).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::images::WireImage;
use super::sse::SseParser;
use super::transport::{self, Origin};
use serde_json::json;

use super::{
    ChatEvent, ChatMessage, ChatRequest, ChatStream, EmbeddingRequest, Embeddings, EventQueue,
    ModelInfo, Provider, ProviderError, ProviderKind, ProviderOptions, ResponseFormat, Role,
    StreamDecoder, ToolCallDelta, ToolChoice, normalize_finish_reason,
};

pub struct OpenAiProvider {
    name: String,
    base_url: String,
    api_key: Option<String>,
    client: reqwest::Client,
    options: ProviderOptions,
}

impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .finish()
    }
}

impl OpenAiProvider {
    /// `base_url` up to and including `/v1`, e.g. `https://api.openai.com/v1`.
    pub fn new(
        name: impl Into<String>,
        base_url: &str,
        api_key: Option<String>,
        client: reqwest::Client,
    ) -> Self {
        OpenAiProvider {
            name: name.into(),
            base_url: base_url.trim_end_matches('/').to_string(),
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

    fn authorize(&self, rb: reqwest::RequestBuilder, key: Option<&str>) -> reqwest::RequestBuilder {
        match key {
            Some(k) => rb.bearer_auth(k),
            None => rb,
        }
    }

    /// OpenAI's own API has replaced `max_tokens` (which its reasoning models
    /// reject) with `max_completion_tokens`; most compatible servers only know
    /// the old name.
    fn is_openai_proper(&self) -> bool {
        self.base_url.contains("://api.openai.com")
    }
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    /// `null` for an assistant message that only calls tools.
    content: Option<WireContent<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<WireToolCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

/// A plain string, or content parts when the message has images: the
/// text, then one `image_url` part (a data URL) per image.
#[derive(Serialize)]
#[serde(untagged)]
enum WireContent<'a> {
    Text(&'a str),
    Parts(Vec<serde_json::Value>),
}

#[derive(Serialize)]
struct WireToolCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunctionCall<'a>,
}

#[derive(Serialize)]
struct WireFunctionCall<'a> {
    name: &'a str,
    arguments: &'a str,
}

#[derive(Serialize)]
struct WireTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunction<'a>,
}

#[derive(Serialize)]
struct WireFunction<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    parameters: &'a serde_json::Value,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    stream: bool,
    stream_options: StreamOptions,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
}

/// OpenAI's spelling of a tool choice.
fn tool_choice(choice: &ToolChoice) -> serde_json::Value {
    match choice {
        ToolChoice::Auto => json!("auto"),
        ToolChoice::None => json!("none"),
        ToolChoice::Required => json!("required"),
        ToolChoice::Named(name) => json!({"type": "function", "function": {"name": name}}),
    }
}

/// OpenAI's spelling of a response format.
fn response_format(format: &ResponseFormat) -> serde_json::Value {
    match format {
        ResponseFormat::Text => json!({"type": "text"}),
        ResponseFormat::JsonObject => json!({"type": "json_object"}),
        ResponseFormat::JsonSchema {
            name,
            schema,
            strict,
        } => {
            let mut spec = json!({"name": name, "schema": schema});
            if let Some(strict) = strict {
                spec["strict"] = json!(strict);
            }
            json!({"type": "json_schema", "json_schema": spec})
        }
    }
}

fn wire_message<'a>(m: &'a ChatMessage, images: &[WireImage]) -> WireMessage<'a> {
    let content = if m.role == Role::Assistant && m.content.is_empty() && !m.tool_calls.is_empty() {
        None
    } else if images.is_empty() {
        Some(WireContent::Text(m.content.as_str()))
    } else {
        let mut parts = Vec::with_capacity(images.len() + 1);
        if !m.content.is_empty() {
            parts.push(json!({"type": "text", "text": m.content}));
        }
        for i in images {
            parts.push(json!({"type": "image_url", "image_url": {"url": i.data_url()}}));
        }
        Some(WireContent::Parts(parts))
    };
    WireMessage {
        role: m.role.as_str(),
        content,
        tool_calls: m
            .tool_calls
            .iter()
            .map(|c| WireToolCall {
                id: &c.id,
                kind: "function",
                function: WireFunctionCall {
                    name: &c.name,
                    arguments: &c.arguments,
                },
            })
            .collect(),
        tool_call_id: if m.role == Role::Tool {
            m.tool_call_id.as_deref()
        } else {
            None
        },
    }
}

fn wire_request<'a>(
    req: &'a ChatRequest,
    images: &[Vec<WireImage>],
    openai_proper: bool,
) -> WireRequest<'a> {
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = req.system.as_deref().filter(|s| !s.is_empty()) {
        messages.push(WireMessage {
            role: "system",
            content: Some(WireContent::Text(system)),
            tool_calls: Vec::new(),
            tool_call_id: None,
        });
    }
    messages.extend(
        req.messages
            .iter()
            .enumerate()
            .map(|(i, m)| wire_message(m, images.get(i).map_or(&[][..], |v| v))),
    );
    let (max_tokens, max_completion_tokens) = if openai_proper {
        (None, req.max_tokens)
    } else {
        (req.max_tokens, None)
    };
    WireRequest {
        model: &req.model,
        messages,
        stream: true,
        stream_options: StreamOptions {
            include_usage: true,
        },
        max_tokens,
        max_completion_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        stop: &req.stop,
        seed: req.seed,
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        response_format: req.response_format.as_ref().map(response_format),
        tools: req
            .tools
            .iter()
            .map(|t| WireTool {
                kind: "function",
                function: WireFunction {
                    name: &t.name,
                    description: t.description.as_deref(),
                    parameters: &t.parameters,
                },
            })
            .collect(),
        tool_choice: req
            .tool_choice
            .as_ref()
            .filter(|c| !req.tools.is_empty() || !super::choice_is_moot(c))
            .map(tool_choice),
        user: req.user.as_deref(),
    }
}

#[derive(Deserialize)]
struct ModelList {
    #[serde(default)]
    data: Vec<WireModel>,
}

#[derive(Deserialize)]
struct WireModel {
    id: String,
    /// OpenRouter's human name.
    name: Option<String>,
    /// OpenRouter.
    context_length: Option<u64>,
    /// vLLM.
    max_model_len: Option<u64>,
}

impl OpenAiProvider {
    /// The model list, asked for with `key`.
    async fn models_with(&self, key: Option<&str>) -> Result<Vec<ModelInfo>, ProviderError> {
        let origin = self.origin(key, None);
        let url = format!("{}/models", self.base_url);
        let resp = transport::send(&origin, &self.options, || {
            self.authorize(self.client.get(&url), key)
        })
        .await?;
        let list: ModelList =
            transport::read_json(&origin, resp, self.options.idle_timeout).await?;
        let mut models: Vec<ModelInfo> = list
            .data
            .into_iter()
            .map(|m| ModelInfo {
                display_name: m
                    .name
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| m.id.clone()),
                context_window: m
                    .context_length
                    .or(m.max_model_len)
                    .and_then(|n| u32::try_from(n).ok()),
                max_output_tokens: None,
                kind: super::model_kind_from_id(&m.id),
                id: m.id,
            })
            .collect();
        models.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(models)
    }
}

#[async_trait]
impl Provider for OpenAiProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Openai
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
        let url = format!("{}/chat/completions", self.base_url);
        let images = super::images::prepare(&req, ProviderKind::Openai).await?;
        let body: bytes::Bytes =
            serde_json::to_vec(&wire_request(&req, &images, self.is_openai_proper()))
                .map_err(|e| ProviderError::Protocol(format!("could not encode the request: {e}")))?
                .into();
        let resp = transport::send(&origin, &self.options, || {
            self.authorize(self.client.post(&url), key)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(reqwest::header::ACCEPT, "text/event-stream")
                .body(body.clone())
        })
        .await?;
        let decoder = OpenAiDecoder::new(origin.clone());
        Ok(transport::drive(
            resp,
            decoder,
            origin,
            self.options.idle_timeout,
        ))
    }

    /// `POST {base}/embeddings`, floats asked for explicitly (OpenAI's own
    /// SDK asks for base64, which not every compatible server speaks).
    async fn embed(&self, req: EmbeddingRequest) -> Result<Embeddings, ProviderError> {
        let key = req
            .api_key_override
            .as_deref()
            .filter(|k| !k.is_empty())
            .or(self.api_key.as_deref());
        let origin = self.origin(key, Some(&req.model));
        let url = format!("{}/embeddings", self.base_url);
        let body: bytes::Bytes = serde_json::to_vec(&WireEmbeddingRequest {
            model: &req.model,
            input: &req.input,
            encoding_format: "float",
            dimensions: req.dimensions,
            user: req.user.as_deref(),
        })
        .map_err(|e| ProviderError::Protocol(format!("could not encode the request: {e}")))?
        .into();
        let resp = transport::send(&origin, &self.options, || {
            self.authorize(self.client.post(&url), key)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
        })
        .await?;
        let answer: WireEmbeddings =
            transport::read_json(&origin, resp, self.options.idle_timeout).await?;
        let mut data = answer.data;
        data.sort_by_key(|d| d.index);
        if data.len() != req.input.len() {
            return Err(ProviderError::Protocol(format!(
                "provider \"{}\" answered {} embeddings for {} inputs",
                self.name,
                data.len(),
                req.input.len()
            )));
        }
        Ok(Embeddings {
            vectors: data.into_iter().map(|d| d.embedding).collect(),
            input_tokens: answer.usage.map_or(0, |u| u.prompt_tokens),
        })
    }
}

#[derive(Serialize)]
struct WireEmbeddingRequest<'a> {
    model: &'a str,
    input: &'a [String],
    encoding_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
}

#[derive(Deserialize)]
struct WireEmbeddings {
    #[serde(default)]
    data: Vec<WireEmbedding>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireEmbedding {
    #[serde(default)]
    index: usize,
    embedding: Vec<f32>,
}

/// Decodes `data:` events of `chat.completion.chunk` objects. Usage arrives
/// in its own chunk with empty `choices` after the finish chunk; both are
/// held back and emitted as `Usage` then `Done` on `[DONE]`, so consumers get
/// one order whatever the server.
pub(crate) struct OpenAiDecoder {
    sse: SseParser,
    origin: Origin,
    finish_reason: Option<String>,
    usage: Option<(u64, u64)>,
    done: bool,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<WireUsage>,
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    index: u32,
    delta: Option<Delta>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<WireToolCallDelta>,
}

/// One piece of a streamed tool call: the first carries `id` and the
/// function's `name`, later ones more `arguments` text for the same `index`.
#[derive(Deserialize)]
struct WireToolCallDelta {
    #[serde(default)]
    index: u32,
    id: Option<String>,
    function: Option<WireFunctionDelta>,
}

#[derive(Deserialize)]
struct WireFunctionDelta {
    name: Option<String>,
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

impl OpenAiDecoder {
    pub(crate) fn new(origin: Origin) -> Self {
        OpenAiDecoder {
            sse: SseParser::default(),
            origin,
            finish_reason: None,
            usage: None,
            done: false,
        }
    }

    fn event(&mut self, event: Option<&str>, data: &str, out: &mut EventQueue) {
        if self.done {
            return;
        }
        let data = data.trim();
        if data == "[DONE]" {
            if let Some((input_tokens, output_tokens)) = self.usage {
                out.push_back(Ok(ChatEvent::Usage {
                    input_tokens,
                    output_tokens,
                }));
            }
            let reason = self.finish_reason.take().unwrap_or_else(|| "stop".into());
            out.push_back(Ok(ChatEvent::Done {
                finish_reason: normalize_finish_reason(&reason),
            }));
            self.done = true;
            return;
        }
        if data.is_empty() {
            return;
        }
        let chunk: Chunk = match serde_json::from_str(data) {
            Ok(c) => c,
            Err(e) => {
                out.push_back(Err(ProviderError::Protocol(format!(
                    "provider \"{}\" sent a malformed stream event: {e}",
                    self.origin.provider
                ))));
                return;
            }
        };
        // Mid-stream failures (OpenAI, OpenRouter, vLLM) arrive as an
        // `error` object in place of a chunk, sometimes under `event: error`.
        if chunk.error.is_some() || event == Some("error") {
            let value: serde_json::Value = serde_json::from_str(data).unwrap_or_default();
            let detail = transport::error_detail(&value);
            let status = detail
                .code
                .as_deref()
                .and_then(|c| c.parse::<u16>().ok())
                .filter(|s| (400..600).contains(s))
                .unwrap_or(500);
            out.push_back(Err(self.origin.error_from_detail(status, None, detail)));
            return;
        }
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if let Some(delta) = choice.delta {
                if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                    out.push_back(Ok(ChatEvent::Delta(text)));
                }
                for call in delta.tool_calls {
                    let (name, arguments) = match call.function {
                        Some(f) => (f.name.filter(|n| !n.is_empty()), f.arguments),
                        None => (None, None),
                    };
                    let id = call.id.filter(|i| !i.is_empty());
                    let arguments = arguments.unwrap_or_default();
                    if id.is_none() && name.is_none() && arguments.is_empty() {
                        continue;
                    }
                    out.push_back(Ok(ChatEvent::ToolCall(ToolCallDelta {
                        index: call.index,
                        id,
                        name,
                        arguments,
                    })));
                }
            }
            if let Some(reason) = choice.finish_reason.filter(|r| !r.is_empty()) {
                self.finish_reason = Some(reason);
            }
        }
        if let Some(u) = chunk.usage {
            self.usage = Some((u.prompt_tokens, u.completion_tokens));
        }
    }
}

impl StreamDecoder for OpenAiDecoder {
    fn feed(&mut self, bytes: &[u8], out: &mut EventQueue) {
        self.sse.push(bytes);
        while let Some(ev) = self.sse.next_event() {
            match ev {
                Ok(ev) => self.event(ev.event.as_deref(), &ev.data, out),
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
                Ok(ev) => self.event(ev.event.as_deref(), &ev.data, out),
                Err(e) => {
                    out.push_back(Err(e));
                    return;
                }
            }
        }
        // Some compatible servers close right after the finish chunk without
        // `[DONE]`; a finish_reason already says the answer is whole.
        if !self.done && self.finish_reason.is_some() {
            self.event(None, "[DONE]", out);
        }
    }

    fn is_done(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{ChatMessage, ENDED_EARLY};

    fn origin() -> Origin {
        Origin {
            provider: "oa".into(),
            key: None,
            model: Some("gpt-test".into()),
        }
    }

    const STREAM: &str = concat!(
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1731456789,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1731456789,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Caf\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1731456789,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"é 🦀\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1731456789,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"length\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1731456789,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3,\"total_tokens\":15}}\n\n",
        "data: [DONE]\n\n",
    );

    fn decode(chunks: &[&[u8]], eof: bool) -> Vec<Result<ChatEvent, ProviderError>> {
        let mut d = OpenAiDecoder::new(origin());
        let mut q = EventQueue::new();
        for c in chunks {
            d.feed(c, &mut q);
        }
        if eof {
            d.finish(&mut q);
            if !d.is_done() {
                q.push_back(Err(ProviderError::Protocol(ENDED_EARLY.into())));
            }
        }
        q.into_iter().collect()
    }

    fn expected() -> Vec<Result<ChatEvent, ProviderError>> {
        vec![
            Ok(ChatEvent::Delta("Caf".into())),
            Ok(ChatEvent::Delta("é 🦀".into())),
            Ok(ChatEvent::Usage {
                input_tokens: 12,
                output_tokens: 3,
            }),
            Ok(ChatEvent::Done {
                finish_reason: "length".into(),
            }),
        ]
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        assert_eq!(decode(&[STREAM.as_bytes()], true), expected());
        let bytes: Vec<&[u8]> = STREAM.as_bytes().chunks(1).collect();
        assert_eq!(decode(&bytes, true), expected());
        let crlf = STREAM.replace('\n', "\r\n");
        let bytes: Vec<&[u8]> = crlf.as_bytes().chunks(1).collect();
        assert_eq!(decode(&bytes, true), expected());
    }

    #[test]
    fn truncated_stream_is_an_error() {
        let finish_chunk = STREAM.find("\"finish_reason\":\"length\"").unwrap();
        let cut = &STREAM[..STREAM[..finish_chunk].rfind("data: ").unwrap()];
        let got = decode(&[cut.as_bytes()], true);
        assert_eq!(got.len(), 3);
        assert_eq!(
            got.last().unwrap(),
            &Err(ProviderError::Protocol(ENDED_EARLY.into()))
        );
    }

    #[test]
    fn finish_reason_without_done_marker_completes() {
        let cut = &STREAM[..STREAM.find("data: [DONE]").unwrap()];
        let cut = cut.replace("\"length\"", "\"stop\"");
        let without_usage = &cut[..cut.find("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1731456789,\"model\":\"gpt-4o-mini\",\"choices\":[]").unwrap()];
        let got = decode(&[without_usage.as_bytes()], true);
        assert_eq!(
            got.last().unwrap(),
            &Ok(ChatEvent::Done {
                finish_reason: "stop".into()
            })
        );
    }

    #[test]
    fn error_event_mid_stream() {
        let s = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: {\"error\":{\"message\":\"The server had an error while processing your request. Sorry about that!\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n";
        let got = decode(&[s.as_bytes()], false);
        assert_eq!(got[0], Ok(ChatEvent::Delta("Hi".into())));
        assert_eq!(
            got[1],
            Err(ProviderError::Upstream {
                status: 500,
                message: "The server had an error while processing your request. Sorry about that!"
                    .into()
            })
        );
    }

    #[test]
    fn request_shape() {
        let mut req = ChatRequest::new("m", vec![ChatMessage::user("hi")]);
        req.system = Some("be brief".into());
        req.max_tokens = Some(5);
        let v = serde_json::to_value(wire_request(&req, &[], false)).unwrap();
        assert_eq!(v["messages"][0]["role"], "system");
        assert_eq!(v["messages"][1]["content"], "hi");
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["max_tokens"], 5);
        assert!(v.get("temperature").is_none());
        let v = serde_json::to_value(wire_request(&req, &[], true)).unwrap();
        assert_eq!(v["max_completion_tokens"], 5);
        assert!(v.get("max_tokens").is_none());
    }
}

#[cfg(test)]
mod tool_tests {
    use super::*;
    use crate::providers::{ChatMessage, Tool, ToolCall};
    use serde_json::Value;

    fn origin() -> Origin {
        Origin {
            provider: "oa".into(),
            key: None,
            model: Some("gpt-test".into()),
        }
    }

    /// As OpenAI streams two parallel calls: the first chunk opens call 0
    /// with role and null content, arguments follow in pieces.
    const TOOL_STREAM: &str = concat!(
        "data: {\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}],\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\"\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\":\\\"Paris\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\",\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"arguments\":\"{}\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":40,\"completion_tokens\":9,\"total_tokens\":49}}\n\n",
        "data: [DONE]\n\n",
    );

    fn decode(chunks: &[&[u8]]) -> Vec<Result<ChatEvent, ProviderError>> {
        let mut d = OpenAiDecoder::new(origin());
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
    fn tool_call_pieces_byte_by_byte_equal_whole() {
        let expected: Vec<Result<ChatEvent, ProviderError>> = vec![
            Ok(piece(0, Some("call_a"), Some("get_weather"), "")),
            Ok(piece(0, None, None, "{\"city\"")),
            Ok(piece(0, None, None, ":\"Paris\"}")),
            Ok(piece(1, Some("call_b"), Some("get_time"), "{}")),
            Ok(ChatEvent::Usage {
                input_tokens: 40,
                output_tokens: 9,
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
    fn every_field_in_openai_words() {
        let mut assistant = ChatMessage::assistant("");
        assistant.tool_calls = vec![ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: "{\"city\":\"Paris\"}".into(),
        }];
        let mut result = ChatMessage::new(Role::Tool, "18 degrees");
        result.tool_call_id = Some("call_1".into());
        let mut req = ChatRequest::new(
            "gpt-4o",
            vec![ChatMessage::user("weather?"), assistant, result],
        );
        req.temperature = Some(0.3);
        req.top_p = Some(0.9);
        req.max_tokens = Some(100);
        req.stop = vec!["END".into()];
        req.seed = Some(42);
        req.presence_penalty = Some(0.5);
        req.frequency_penalty = Some(-0.5);
        req.user = Some("user-7".into());
        req.tools = vec![Tool {
            name: "get_weather".into(),
            description: Some("Weather now".into()),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        }];
        req.tool_choice = Some(ToolChoice::Named("get_weather".into()));
        req.response_format = Some(ResponseFormat::JsonSchema {
            name: "w".into(),
            schema: json!({"type": "object"}),
            strict: Some(true),
        });
        let v = serde_json::to_value(wire_request(&req, &[], false)).unwrap();
        assert_eq!(v["temperature"], json!(0.3f32));
        assert_eq!(v["top_p"], json!(0.9f32));
        assert_eq!(v["max_tokens"], 100);
        assert_eq!(v["stop"], json!(["END"]));
        assert_eq!(v["seed"], 42);
        assert_eq!(v["presence_penalty"], 0.5);
        assert_eq!(v["frequency_penalty"], -0.5);
        assert_eq!(v["user"], "user-7");
        assert_eq!(
            v["tools"],
            json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
        );
        assert_eq!(
            v["tool_choice"],
            json!({"type": "function", "function": {"name": "get_weather"}})
        );
        assert_eq!(
            v["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": true}})
        );
        let msgs = v["messages"].as_array().unwrap();
        assert_eq!(msgs[1]["content"], Value::Null);
        assert_eq!(
            msgs[1]["tool_calls"],
            json!([{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}])
        );
        assert_eq!(msgs[2]["role"], "tool");
        assert_eq!(msgs[2]["tool_call_id"], "call_1");
        assert_eq!(msgs[2]["content"], "18 degrees");
        assert!(msgs[0].get("tool_calls").is_none());
        assert!(msgs[0].get("tool_call_id").is_none());

        for (choice, wire) in [
            (ToolChoice::Auto, json!("auto")),
            (ToolChoice::None, json!("none")),
            (ToolChoice::Required, json!("required")),
        ] {
            req.tool_choice = Some(choice);
            assert_eq!(
                serde_json::to_value(wire_request(&req, &[], true)).unwrap()["tool_choice"],
                wire
            );
        }
        req.response_format = Some(ResponseFormat::JsonObject);
        let v = serde_json::to_value(wire_request(&req, &[], true)).unwrap();
        assert_eq!(v["response_format"], json!({"type": "json_object"}));
        assert_eq!(v["max_completion_tokens"], 100);
        // Without tools, "auto" and "none" say nothing and are left out
        // (the API refuses them); "required" is passed on to be refused.
        req.tools.clear();
        req.tool_choice = Some(ToolChoice::None);
        let v = serde_json::to_value(wire_request(&req, &[], true)).unwrap();
        assert!(v.get("tool_choice").is_none());
        assert!(v.get("tools").is_none());
        req.tool_choice = Some(ToolChoice::Required);
        let v = serde_json::to_value(wire_request(&req, &[], true)).unwrap();
        assert_eq!(v["tool_choice"], "required");
    }
}
