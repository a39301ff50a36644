//! Ollama's native `/api/chat` NDJSON stream. The base URL is the server root
//! (`http://127.0.0.1:11434`). The native API is used rather than Ollama's
//! /v1 because it reports token counts on every version and names its errors.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::images::WireImage;
use super::sse::LineSplitter;
use super::transport::{self, ErrorDetail, Origin};
use serde_json::{Value, json};

use super::{
    ChatEvent, ChatRequest, ChatStream, EmbeddingRequest, Embeddings, EventQueue, ModelInfo,
    ModelKind, Provider, ProviderError, ProviderKind, ProviderOptions, ResponseFormat, Role,
    StreamDecoder, ToolCall, ToolCallDelta, ToolChoice, normalize_finish_reason,
};

pub struct OllamaProvider {
    name: String,
    base_url: String,
    api_key: Option<String>,
    client: reqwest::Client,
    options: ProviderOptions,
    /// What `/api/show` said of each model, by name and digest (a model
    /// pulled again may change), so a refresh asks only about new models.
    shown: Mutex<HashMap<(String, String), ShowInfo>>,
}

/// The parts of `/api/show` the model list uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ShowInfo {
    context_window: Option<u32>,
    kind: Option<ModelKind>,
}

/// At most this many `/api/show` requests run at once.
const SHOW_CONCURRENCY: usize = 4;

impl std::fmt::Debug for OllamaProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OllamaProvider")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .finish()
    }
}

impl OllamaProvider {
    /// `api_key` is optional: Ollama has no auth of its own, but is often put
    /// behind a proxy that checks a bearer token.
    pub fn new(
        name: impl Into<String>,
        base_url: &str,
        api_key: Option<String>,
        client: reqwest::Client,
    ) -> Self {
        let base = base_url.trim_end_matches('/');
        let base = base.strip_suffix("/api").unwrap_or(base);
        OllamaProvider {
            name: name.into(),
            base_url: base.to_string(),
            api_key: api_key.filter(|k| !k.is_empty()),
            client,
            options: ProviderOptions::default(),
            shown: Mutex::new(HashMap::new()),
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
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<WireToolCall<'a>>,
    /// For a tool result: the called tool's name (how Ollama pairs results
    /// with calls) and the call's id (newer servers read it).
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
    /// Base64 images (no data-URL prefix) for a vision model.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    images: Vec<&'a str>,
}

#[derive(Serialize)]
struct WireToolCall<'a> {
    id: &'a str,
    function: WireFunctionCall<'a>,
}

#[derive(Serialize)]
struct WireFunctionCall<'a> {
    name: &'a str,
    /// Ollama takes (and gives) the arguments as an object, not JSON text.
    arguments: Value,
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
    parameters: &'a Value,
}

#[derive(Serialize, Default)]
struct WireOptions<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    num_predict: Option<u32>,
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
}

impl WireOptions<'_> {
    fn is_empty(&self) -> bool {
        self.num_predict.is_none()
            && self.temperature.is_none()
            && self.top_p.is_none()
            && self.stop.is_empty()
            && self.seed.is_none()
            && self.presence_penalty.is_none()
            && self.frequency_penalty.is_none()
    }
}

/// The `/api/chat` request. Ollama has no `tool_choice`: `None` is honoured
/// by sending no tools at all; `Required` and a named tool cannot be forced,
/// so the tools are sent as they are and the model chooses (as with `Auto`).
/// Nor has it a `user`: that end-user id is only an abuse-monitoring hint
/// for hosted providers, so it is not sent.
#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<WireOptions<'a>>,
    /// `"json"` for any JSON object, or the JSON Schema to follow.
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
}

/// Arguments as the object Ollama wants; text that is not a JSON object
/// cannot be expressed there.
fn arguments_object(call: &ToolCall) -> Result<Value, ProviderError> {
    if call.arguments.trim().is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(&call.arguments) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(ProviderError::Unsupported(format!(
            "the arguments of tool call \"{}\" must be a JSON object for Ollama",
            call.id
        ))),
    }
}

fn wire_request<'a>(
    req: &'a ChatRequest,
    images: &'a [Vec<WireImage>],
) -> Result<WireRequest<'a>, ProviderError> {
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    let plain = |role: &'static str, content: &'static str| WireMessage {
        role,
        content,
        tool_calls: Vec::new(),
        tool_name: None,
        tool_call_id: None,
        images: Vec::new(),
    };
    if let Some(system) = req.system.as_deref().filter(|s| !s.is_empty()) {
        messages.push(WireMessage {
            content: system,
            ..plain("system", "")
        });
    }
    for (i, m) in req.messages.iter().enumerate() {
        let mut tool_calls = Vec::with_capacity(m.tool_calls.len());
        for call in &m.tool_calls {
            tool_calls.push(WireToolCall {
                id: &call.id,
                function: WireFunctionCall {
                    name: &call.name,
                    arguments: arguments_object(call)?,
                },
            });
        }
        let tool_call_id = (m.role == Role::Tool)
            .then_some(m.tool_call_id.as_deref())
            .flatten();
        // The name of the call this result answers, from the nearest
        // assistant turn before it that made a call with that id.
        let tool_name = tool_call_id.and_then(|id| {
            req.messages[..i]
                .iter()
                .rev()
                .flat_map(|earlier| earlier.tool_calls.iter())
                .find(|c| c.id == id)
                .map(|c| c.name.as_str())
        });
        messages.push(WireMessage {
            role: m.role.as_str(),
            content: &m.content,
            tool_calls,
            tool_name,
            tool_call_id,
            images: images
                .get(i)
                .map(|v| v.iter().map(|p| p.base64.as_str()).collect())
                .unwrap_or_default(),
        });
    }
    let options = WireOptions {
        num_predict: req.max_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        stop: &req.stop,
        seed: req.seed,
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
    };
    let format = match &req.response_format {
        None | Some(ResponseFormat::Text) => None,
        Some(ResponseFormat::JsonObject) => Some(json!("json")),
        Some(ResponseFormat::JsonSchema { schema, .. }) => Some(schema.clone()),
    };
    let tools = if req.tool_choice == Some(ToolChoice::None) {
        Vec::new()
    } else {
        req.tools
            .iter()
            .map(|t| WireTool {
                kind: "function",
                function: WireFunction {
                    name: &t.name,
                    description: t.description.as_deref(),
                    parameters: &t.parameters,
                },
            })
            .collect()
    };
    Ok(WireRequest {
        model: &req.model,
        messages,
        stream: true,
        options: (!options.is_empty()).then_some(options),
        format,
        tools,
    })
}

#[derive(Deserialize)]
struct Tags {
    #[serde(default)]
    models: Vec<Tag>,
}

#[derive(Deserialize)]
struct Tag {
    name: Option<String>,
    model: Option<String>,
    #[serde(default)]
    digest: String,
}

#[derive(Deserialize)]
struct Show {
    #[serde(default)]
    model_info: serde_json::Map<String, Value>,
    capabilities: Option<Vec<String>>,
}

impl Show {
    /// `<architecture>.context_length` of `model_info`.
    fn info(&self) -> ShowInfo {
        let arch = self
            .model_info
            .get("general.architecture")
            .and_then(Value::as_str);
        let context = match arch {
            Some(arch) => self.model_info.get(&format!("{arch}.context_length")),
            None => self
                .model_info
                .iter()
                .find(|(k, _)| k.ends_with(".context_length"))
                .map(|(_, v)| v),
        };
        let kind = self.capabilities.as_ref().map(|caps| {
            let has = |c: &str| caps.iter().any(|x| x == c);
            if has("embedding") && !has("completion") {
                ModelKind::Embedding
            } else {
                ModelKind::Chat
            }
        });
        ShowInfo {
            context_window: context
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok()),
            kind,
        }
    }
}

/// The `/api/embed` request; `user` has no place here and is not sent
/// (see [`WireRequest`]).
#[derive(Serialize)]
struct WireEmbedRequest<'a> {
    model: &'a str,
    input: &'a [String],
    /// Honoured by servers that support shortening (Ollama 0.11 and later).
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<u32>,
}

#[derive(Deserialize)]
struct WireEmbeddings {
    #[serde(default)]
    embeddings: Vec<Vec<f32>>,
    prompt_eval_count: Option<u64>,
}

impl OllamaProvider {
    /// `/api/show` for one model; `None` when it fails (the context window
    /// then stays unknown until a later refresh asks again).
    async fn show(&self, model: &str) -> Option<ShowInfo> {
        let key = self.api_key.as_deref();
        let origin = self.origin(key, Some(model));
        let url = format!("{}/api/show", self.base_url);
        let options = ProviderOptions {
            retry: super::RetryPolicy::none(),
            ..self.options.clone()
        };
        let body: bytes::Bytes = serde_json::to_vec(&json!({ "model": model })).ok()?.into();
        let result = async {
            let resp = transport::send(&origin, &options, || {
                self.authorize(self.client.post(&url), key)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
            })
            .await?;
            transport::read_json::<Show>(&origin, resp, options.idle_timeout).await
        }
        .await;
        match result {
            Ok(show) => Some(show.info()),
            Err(e) => {
                tracing::warn!(provider = %self.name, code = e.code(), "model details unavailable");
                None
            }
        }
    }

    /// Details of every listed model: cached ones at once, the others from
    /// `/api/show`, a few at a time.
    async fn details(&self, listed: &[(String, String)]) -> HashMap<String, ShowInfo> {
        let missing: Vec<(String, String)> = {
            let shown = self.shown.lock().unwrap_or_else(|e| e.into_inner());
            listed
                .iter()
                .filter(|k| !shown.contains_key(*k))
                .cloned()
                .collect()
        };
        let fetched: Vec<((String, String), Option<ShowInfo>)> =
            futures::stream::iter(missing.into_iter().map(|k| async move {
                let info = self.show(&k.0).await;
                (k, info)
            }))
            .buffer_unordered(SHOW_CONCURRENCY)
            .collect()
            .await;
        let mut shown = self.shown.lock().unwrap_or_else(|e| e.into_inner());
        for (k, info) in fetched {
            if let Some(info) = info {
                shown.insert(k, info);
            }
        }
        // Models gone from the server need not be remembered.
        shown.retain(|k, _| listed.contains(k));
        listed
            .iter()
            .filter_map(|k| shown.get(k).map(|info| (k.0.clone(), *info)))
            .collect()
    }
}

#[async_trait]
impl Provider for OllamaProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Ollama
    }

    async fn models(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        let key = self.api_key.as_deref();
        let origin = self.origin(key, None);
        let url = format!("{}/api/tags", self.base_url);
        let resp = transport::send(&origin, &self.options, || {
            self.authorize(self.client.get(&url), key)
        })
        .await?;
        let tags: Tags = transport::read_json(&origin, resp, self.options.idle_timeout).await?;
        let listed: Vec<(String, String)> = tags
            .models
            .into_iter()
            .filter_map(|t| t.name.or(t.model).map(|id| (id, t.digest)))
            .collect();
        // /api/tags does not tell the context window; /api/show does, once
        // per model (and digest) thanks to the cache.
        let details = self.details(&listed).await;
        let mut models: Vec<ModelInfo> = listed
            .into_iter()
            .map(|(id, _)| {
                let info = details.get(&id);
                ModelInfo {
                    display_name: id.clone(),
                    context_window: info.and_then(|i| i.context_window),
                    max_output_tokens: None,
                    kind: info
                        .and_then(|i| i.kind)
                        .unwrap_or_else(|| super::model_kind_from_id(&id)),
                    id,
                }
            })
            .collect();
        models.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(models)
    }

    async fn stream(&self, req: ChatRequest) -> Result<ChatStream, ProviderError> {
        let key = req
            .api_key_override
            .as_deref()
            .filter(|k| !k.is_empty())
            .or(self.api_key.as_deref());
        let origin = self.origin(key, Some(&req.model));
        let url = format!("{}/api/chat", self.base_url);
        let images = super::images::prepare(&req, ProviderKind::Ollama).await?;
        let body: bytes::Bytes = serde_json::to_vec(&wire_request(&req, &images)?)
            .map_err(|e| ProviderError::Protocol(format!("could not encode the request: {e}")))?
            .into();
        let resp = transport::send(&origin, &self.options, || {
            self.authorize(self.client.post(&url), key)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
        })
        .await?;
        let decoder = OllamaDecoder::new(origin.clone());
        Ok(transport::drive(
            resp,
            decoder,
            origin,
            self.options.idle_timeout,
        ))
    }

    /// `POST /api/embed`; the prompt's token count is `prompt_eval_count`.
    async fn embed(&self, req: EmbeddingRequest) -> Result<Embeddings, ProviderError> {
        let key = req
            .api_key_override
            .as_deref()
            .filter(|k| !k.is_empty())
            .or(self.api_key.as_deref());
        let origin = self.origin(key, Some(&req.model));
        let url = format!("{}/api/embed", self.base_url);
        let body: bytes::Bytes = serde_json::to_vec(&WireEmbedRequest {
            model: &req.model,
            input: &req.input,
            dimensions: req.dimensions,
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
        if answer.embeddings.len() != req.input.len() {
            return Err(ProviderError::Protocol(format!(
                "provider \"{}\" answered {} embeddings for {} inputs",
                self.name,
                answer.embeddings.len(),
                req.input.len()
            )));
        }
        Ok(Embeddings {
            vectors: answer.embeddings,
            input_tokens: answer.prompt_eval_count.unwrap_or(0),
        })
    }
}

#[derive(Deserialize)]
struct Line {
    message: Option<LineMessage>,
    #[serde(default)]
    done: bool,
    done_reason: Option<String>,
    prompt_eval_count: Option<u64>,
    eval_count: Option<u64>,
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct LineMessage {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<LineToolCall>,
}

/// Ollama sends each tool call whole, arguments as an object.
#[derive(Deserialize)]
struct LineToolCall {
    id: Option<String>,
    function: LineFunction,
}

#[derive(Deserialize)]
struct LineFunction {
    name: String,
    #[serde(default)]
    arguments: Value,
}

/// Decodes one JSON object per line; the object with `done: true` carries the
/// token counts and ends the answer.
pub(crate) struct OllamaDecoder {
    lines: LineSplitter,
    origin: Origin,
    /// Tool calls seen so far (the next one's index).
    tool_calls: u32,
    /// Ids for calls that come without one (older servers): unique per
    /// answer, so clients can pair results with calls.
    id_prefix: String,
    done: bool,
}

impl OllamaDecoder {
    pub(crate) fn new(origin: Origin) -> Self {
        let id_prefix = format!("call_{}", uuid::Uuid::now_v7().simple());
        Self::with_id_prefix(origin, id_prefix)
    }

    pub(crate) fn with_id_prefix(origin: Origin, id_prefix: String) -> Self {
        OllamaDecoder {
            lines: LineSplitter::default(),
            origin,
            tool_calls: 0,
            id_prefix,
            done: false,
        }
    }

    fn line(&mut self, line: &str, out: &mut EventQueue) {
        if self.done || line.trim().is_empty() {
            return;
        }
        let parsed: Line = match serde_json::from_str(line) {
            Ok(l) => l,
            Err(e) => {
                out.push_back(Err(ProviderError::Protocol(format!(
                    "provider \"{}\" sent a malformed stream line: {e}",
                    self.origin.provider
                ))));
                return;
            }
        };
        if let Some(err) = parsed.error {
            let value = serde_json::json!({ "error": err });
            let detail: ErrorDetail = transport::error_detail(&value);
            out.push_back(Err(self.origin.error_from_detail(500, None, detail)));
            return;
        }
        if let Some(message) = parsed.message {
            if let Some(text) = message.content.filter(|t| !t.is_empty()) {
                out.push_back(Ok(ChatEvent::Delta(text)));
            }
            for call in message.tool_calls {
                let index = self.tool_calls;
                self.tool_calls += 1;
                let arguments = match call.function.arguments {
                    Value::Null => "{}".to_string(),
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                let id = call
                    .id
                    .filter(|i| !i.is_empty())
                    .unwrap_or_else(|| format!("{}_{index}", self.id_prefix));
                out.push_back(Ok(ChatEvent::ToolCall(ToolCallDelta {
                    index,
                    id: Some(id),
                    name: Some(call.function.name),
                    arguments,
                })));
            }
        }
        if parsed.done {
            if parsed.prompt_eval_count.is_some() || parsed.eval_count.is_some() {
                out.push_back(Ok(ChatEvent::Usage {
                    input_tokens: parsed.prompt_eval_count.unwrap_or(0),
                    output_tokens: parsed.eval_count.unwrap_or(0),
                }));
            }
            let reason = parsed.done_reason.unwrap_or_else(|| "stop".into());
            // Ollama says "stop" after calling tools; clients expect to be
            // told the answer ended in tool calls.
            let reason = if reason == "stop" && self.tool_calls > 0 {
                "tool_calls".to_string()
            } else {
                normalize_finish_reason(&reason)
            };
            out.push_back(Ok(ChatEvent::Done {
                finish_reason: reason,
            }));
            self.done = true;
        }
    }
}

impl StreamDecoder for OllamaDecoder {
    fn feed(&mut self, bytes: &[u8], out: &mut EventQueue) {
        self.lines.push(bytes);
        while let Some(line) = self.lines.next_line() {
            match line {
                Ok(l) => self.line(&l, out),
                Err(e) => {
                    out.push_back(Err(e));
                    return;
                }
            }
        }
    }

    fn finish(&mut self, out: &mut EventQueue) {
        match self.lines.finish() {
            Some(Ok(l)) => self.line(&l, out),
            Some(Err(e)) => out.push_back(Err(e)),
            None => {}
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
        "{\"model\":\"llama3.2\",\"created_at\":\"2024-11-12T10:00:00.1Z\",\"message\":{\"role\":\"assistant\",\"content\":\"Olá\"},\"done\":false}\n",
        "{\"model\":\"llama3.2\",\"created_at\":\"2024-11-12T10:00:00.2Z\",\"message\":{\"role\":\"assistant\",\"content\":\" 🦀\"},\"done\":false}\n",
        "{\"model\":\"llama3.2\",\"created_at\":\"2024-11-12T10:00:00.3Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done_reason\":\"stop\",\"done\":true,\"total_duration\":4883583458,\"load_duration\":1334875,\"prompt_eval_count\":26,\"prompt_eval_duration\":342546000,\"eval_count\":2,\"eval_duration\":4535599000}\n",
    );

    fn decode(chunks: &[&[u8]]) -> (Vec<Result<ChatEvent, ProviderError>>, bool) {
        let mut d = OllamaDecoder::new(Origin {
            provider: "ol".into(),
            key: None,
            model: Some("llama3.2".into()),
        });
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
            Ok(ChatEvent::Delta("Olá".into())),
            Ok(ChatEvent::Delta(" 🦀".into())),
            Ok(ChatEvent::Usage {
                input_tokens: 26,
                output_tokens: 2,
            }),
            Ok(ChatEvent::Done {
                finish_reason: "stop".into(),
            }),
        ];
        assert_eq!(decode(&[STREAM.as_bytes()]), (expected.clone(), true));
        let chunks: Vec<&[u8]> = STREAM.as_bytes().chunks(1).collect();
        assert_eq!(decode(&chunks), (expected.clone(), true));
        let no_final_newline = STREAM.trim_end();
        assert_eq!(decode(&[no_final_newline.as_bytes()]), (expected, true));
    }

    #[test]
    fn error_line() {
        let s = "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":false}\n{\"error\":\"an error was encountered while running the model: unexpected EOF\"}\n";
        let (got, done) = decode(&[s.as_bytes()]);
        assert!(!done);
        assert_eq!(
            got[1],
            Err(ProviderError::Upstream {
                status: 500,
                message: "an error was encountered while running the model: unexpected EOF".into()
            })
        );
    }

    #[test]
    fn request_shape() {
        let mut req = ChatRequest::new("llama3.2", vec![ChatMessage::user("hi")]);
        req.system = Some("sys".into());
        let v = serde_json::to_value(wire_request(&req, &[]).unwrap()).unwrap();
        assert_eq!(v["messages"][0]["role"], "system");
        assert!(v.get("options").is_none());
        req.max_tokens = Some(10);
        let v = serde_json::to_value(wire_request(&req, &[]).unwrap()).unwrap();
        assert_eq!(v["options"]["num_predict"], 10);
    }
}

#[cfg(test)]
mod tool_tests {
    use super::*;
    use crate::providers::{ChatMessage, Tool};

    const TOOL_STREAM: &str = concat!(
        "{\"model\":\"llama3.2\",\"created_at\":\"2025-01-01T00:00:00.1Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}},{\"function\":{\"name\":\"get_time\",\"arguments\":{}}}]},\"done\":false}\n",
        "{\"model\":\"llama3.2\",\"created_at\":\"2025-01-01T00:00:00.2Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"call_srv\",\"function\":{\"index\":2,\"name\":\"get_date\",\"arguments\":{\"tz\":\"UTC\"}}}]},\"done\":false}\n",
        "{\"model\":\"llama3.2\",\"created_at\":\"2025-01-01T00:00:00.3Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done_reason\":\"stop\",\"done\":true,\"prompt_eval_count\":120,\"eval_count\":25}\n",
    );

    fn decode(chunks: &[&[u8]]) -> Vec<Result<ChatEvent, ProviderError>> {
        let mut d = OllamaDecoder::with_id_prefix(
            Origin {
                provider: "ol".into(),
                key: None,
                model: Some("llama3.2".into()),
            },
            "call_x".into(),
        );
        let mut q = EventQueue::new();
        for c in chunks {
            d.feed(c, &mut q);
        }
        d.finish(&mut q);
        assert!(d.is_done());
        q.into_iter().collect()
    }

    fn whole(index: u32, id: &str, name: &str, args: &str) -> Result<ChatEvent, ProviderError> {
        Ok(ChatEvent::ToolCall(ToolCallDelta {
            index,
            id: Some(id.into()),
            name: Some(name.into()),
            arguments: args.into(),
        }))
    }

    #[test]
    fn whole_calls_byte_by_byte_equal_whole() {
        let expected = vec![
            whole(0, "call_x_0", "get_weather", "{\"city\":\"Paris\"}"),
            whole(1, "call_x_1", "get_time", "{}"),
            whole(2, "call_srv", "get_date", "{\"tz\":\"UTC\"}"),
            Ok(ChatEvent::Usage {
                input_tokens: 120,
                output_tokens: 25,
            }),
            Ok(ChatEvent::Done {
                finish_reason: "tool_calls".into(),
            }),
        ];
        assert_eq!(decode(&[TOOL_STREAM.as_bytes()]), expected);
        let bytes: Vec<&[u8]> = TOOL_STREAM.as_bytes().chunks(1).collect();
        assert_eq!(decode(&bytes), expected);
    }

    #[test]
    fn generated_ids_differ_between_answers() {
        let o = Origin {
            provider: "ol".into(),
            key: None,
            model: None,
        };
        let a = OllamaDecoder::new(o.clone()).id_prefix;
        let b = OllamaDecoder::new(o).id_prefix;
        assert_ne!(a, b);
        assert!(a.starts_with("call_"));
    }

    #[test]
    fn every_field_in_ollama_words() {
        let mut assistant = ChatMessage::assistant("");
        assistant.tool_calls = vec![ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: "{\"city\":\"Paris\"}".into(),
        }];
        let mut result = ChatMessage::new(Role::Tool, "18 degrees");
        result.tool_call_id = Some("call_1".into());
        let mut req = ChatRequest::new(
            "llama3.2",
            vec![ChatMessage::user("weather?"), assistant, result],
        );
        req.temperature = Some(0.25);
        req.top_p = Some(0.5);
        req.max_tokens = Some(64);
        req.stop = vec!["END".into()];
        req.seed = Some(3);
        req.presence_penalty = Some(0.5);
        req.frequency_penalty = Some(0.25);
        req.tools = vec![Tool {
            name: "get_weather".into(),
            description: Some("Weather now".into()),
            parameters: json!({"type": "object"}),
        }];
        req.tool_choice = Some(ToolChoice::Required);
        req.response_format = Some(ResponseFormat::JsonObject);
        let v = serde_json::to_value(wire_request(&req, &[]).unwrap()).unwrap();
        assert_eq!(
            v["options"],
            json!({"num_predict": 64, "temperature": 0.25, "top_p": 0.5, "stop": ["END"], "seed": 3,
                "presence_penalty": 0.5, "frequency_penalty": 0.25})
        );
        assert_eq!(v["format"], "json");
        assert_eq!(
            v["tools"],
            json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather now", "parameters": {"type": "object"}}}])
        );
        assert!(v.get("tool_choice").is_none());
        let msgs = v["messages"].as_array().unwrap();
        assert_eq!(
            msgs[1]["tool_calls"],
            json!([{"id": "call_1", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}])
        );
        assert_eq!(
            msgs[2],
            json!({"role": "tool", "content": "18 degrees", "tool_name": "get_weather", "tool_call_id": "call_1"})
        );

        req.tool_choice = Some(ToolChoice::None);
        req.response_format = Some(ResponseFormat::JsonSchema {
            name: "w".into(),
            schema: json!({"type": "object", "required": ["a"]}),
            strict: None,
        });
        let v = serde_json::to_value(wire_request(&req, &[]).unwrap()).unwrap();
        assert!(v.get("tools").is_none(), "none means no tools");
        assert_eq!(v["format"], json!({"type": "object", "required": ["a"]}));
    }

    #[test]
    fn show_reads_the_architectures_context_length() {
        let show: Show = serde_json::from_value(json!({
            "model_info": {"general.architecture": "qwen2", "qwen2.context_length": 32768, "llama.context_length": 1},
            "capabilities": ["completion", "tools"]
        }))
        .unwrap();
        assert_eq!(
            show.info(),
            ShowInfo {
                context_window: Some(32768),
                kind: Some(ModelKind::Chat)
            }
        );
        let show: Show = serde_json::from_value(json!({
            "model_info": {"bert.context_length": 512}, "capabilities": ["embedding"]
        }))
        .unwrap();
        assert_eq!(
            show.info(),
            ShowInfo {
                context_window: Some(512),
                kind: Some(ModelKind::Embedding)
            }
        );
        let show: Show = serde_json::from_value(json!({"modelfile": "FROM x"})).unwrap();
        assert_eq!(
            show.info(),
            ShowInfo {
                context_window: None,
                kind: None
            }
        );
    }
}
