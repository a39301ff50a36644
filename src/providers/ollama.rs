//! Ollama's native `/api/chat` NDJSON stream. The base URL is the server root
//! (`http://127.0.0.1:11434`). The native API is used rather than Ollama's
//! /v1 because it reports token counts on every version and names its errors.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::sse::LineSplitter;
use super::transport::{self, ErrorDetail, Origin};
use super::{
    ChatEvent, ChatRequest, ChatStream, EventQueue, ModelInfo, Provider, ProviderError,
    ProviderKind, ProviderOptions, StreamDecoder, normalize_finish_reason,
};

pub struct OllamaProvider {
    name: String,
    base_url: String,
    api_key: Option<String>,
    client: reqwest::Client,
    options: ProviderOptions,
}

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
}

#[derive(Serialize, Default)]
struct WireOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    num_predict: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<WireOptions>,
}

fn wire_request(req: &ChatRequest) -> WireRequest<'_> {
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = req.system.as_deref().filter(|s| !s.is_empty()) {
        messages.push(WireMessage {
            role: "system",
            content: system,
        });
    }
    messages.extend(req.messages.iter().map(|m| WireMessage {
        role: m.role.as_str(),
        content: &m.content,
    }));
    let options = (req.max_tokens.is_some() || req.temperature.is_some()).then_some(WireOptions {
        num_predict: req.max_tokens,
        temperature: req.temperature,
    });
    WireRequest {
        model: &req.model,
        messages,
        stream: true,
        options,
    }
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
        let mut models: Vec<ModelInfo> = tags
            .models
            .into_iter()
            .filter_map(|t| t.name.or(t.model))
            .map(|id| ModelInfo {
                display_name: id.clone(),
                // /api/tags does not say; /api/show would, at one request
                // per model, which a periodic refresh should not cost.
                context_window: None,
                max_output_tokens: None,
                kind: super::model_kind_from_id(&id),
                id,
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
        let body: bytes::Bytes = serde_json::to_vec(&wire_request(&req))
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
}

/// Decodes one JSON object per line; the object with `done: true` carries the
/// token counts and ends the answer.
pub(crate) struct OllamaDecoder {
    lines: LineSplitter,
    origin: Origin,
    done: bool,
}

impl OllamaDecoder {
    pub(crate) fn new(origin: Origin) -> Self {
        OllamaDecoder {
            lines: LineSplitter::default(),
            origin,
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
        if let Some(text) = parsed
            .message
            .and_then(|m| m.content)
            .filter(|t| !t.is_empty())
        {
            out.push_back(Ok(ChatEvent::Delta(text)));
        }
        if parsed.done {
            if parsed.prompt_eval_count.is_some() || parsed.eval_count.is_some() {
                out.push_back(Ok(ChatEvent::Usage {
                    input_tokens: parsed.prompt_eval_count.unwrap_or(0),
                    output_tokens: parsed.eval_count.unwrap_or(0),
                }));
            }
            let reason = parsed.done_reason.unwrap_or_else(|| "stop".into());
            out.push_back(Ok(ChatEvent::Done {
                finish_reason: normalize_finish_reason(&reason),
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
        let v = serde_json::to_value(wire_request(&req)).unwrap();
        assert_eq!(v["messages"][0]["role"], "system");
        assert!(v.get("options").is_none());
        req.max_tokens = Some(10);
        let v = serde_json::to_value(wire_request(&req)).unwrap();
        assert_eq!(v["options"]["num_predict"], 10);
    }
}
