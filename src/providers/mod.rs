//! The LLM provider layer: one [`Provider`] trait, three wire implementations
//! (OpenAI-compatible SSE, Anthropic Messages SSE, Ollama native NDJSON), the
//! [`registry`] of configured and auto-detected providers, and the one
//! [`ProviderError`] every upstream failure is folded into.
//!
//! Everything above this module sees only [`ChatEvent`]s and [`ProviderError`]s;
//! no wire format, HTTP status or reqwest type leaks out.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

pub mod anthropic;
pub mod capabilities;
pub mod images;
pub mod ollama;
pub mod openai;
pub mod registry;
pub mod routing;
pub mod secrets;
pub mod shards;
mod sse;
mod transport;

pub use anthropic::AnthropicProvider;
pub use ollama::OllamaProvider;
pub use openai::OpenAiProvider;
pub use registry::{
    LocalProbe, ProviderConfig, ProviderStatus, ProviderSummary, Registry, RegistryError,
    RegistryModel, build_provider, detect_local, detect_local_with, from_env, from_env_with,
};
pub use routing::{Candidate, Routed, Strategy};

/// How long establishing a TCP (+TLS) connection to a provider may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default longest silence between two received chunks of an answer.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The message of [`ProviderError::Protocol`] when the upstream closed the
/// stream cleanly but without its terminal event.
pub const ENDED_EARLY: &str = "stream ended before the answer was complete";

/// The one shared HTTP client for all providers. Only the connect phase is
/// bounded here: a total request timeout would cut long answers, so silence is
/// bounded per chunk by [`ProviderOptions::idle_timeout`] instead.
///
/// Redirects are followed only within one origin (scheme, host and port):
/// a provider's key must never travel to another host, and reqwest's own
/// redirect handling keeps custom key headers (Anthropic's `x-api-key`)
/// and keeps `Authorization` on an https→http hop. A redirect to another
/// origin comes back to `transport::send`, which refuses it or, when an
/// admin allows it, follows it without any credential.
pub fn default_client() -> reqwest::Client {
    client_builder()
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(same_origin_redirects())
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("confab/", env!("CARGO_PKG_VERSION")))
}

/// Makes clients like [`default_client`], also trusting the CA
/// certificates in the PEM file `ca_file` (`provider_ca_file`), read once.
/// Fails with a sentence naming the file when it cannot be read or holds no
/// certificate.
///
/// The clients share one TLS configuration (the parsed root store, the
/// session cache): the HTTP/2 shards (see `shards.rs`) make a client per
/// hundred answers in flight, and each built its own, about 170 KB apiece.
pub fn client_factory(
    ca_file: Option<&std::path::Path>,
) -> anyhow::Result<impl Fn() -> reqwest::Client + Send + Sync + 'static> {
    let extra = match ca_file {
        Some(path) => ca_roots(path)?,
        None => Vec::new(),
    };
    let tls = tls_config(&extra)?;
    // Checked once here, so the clients made later build as this one did.
    client_builder()
        .use_preconfigured_tls(tls.clone())
        .build()
        .map_err(|e| anyhow::anyhow!("cannot build the provider HTTP client: {e}"))?;
    Ok(move || {
        client_builder()
            .use_preconfigured_tls(tls.clone())
            .build()
            .unwrap_or_else(|_| default_client())
    })
}

/// What reqwest's own rustls set-up makes (the web's roots, TLS 1.2 and
/// 1.3, HTTP/2 or HTTP/1.1 by ALPN), plus `extra` roots.
fn tls_config(
    extra: &[rustls_pki_types::CertificateDer<'static>],
) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for c in extra {
        roots
            .add(c.clone())
            .map_err(|e| anyhow::anyhow!("provider_ca_file: a certificate is not usable: {e}"))?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("cannot set up TLS for providers: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

fn ca_roots(
    path: &std::path::Path,
) -> anyhow::Result<Vec<rustls_pki_types::CertificateDer<'static>>> {
    use rustls_pki_types::pem::PemObject;
    let pem = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cannot read provider_ca_file {}: {e}", path.display()))?;
    let roots = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("provider_ca_file {} is not PEM: {e}", path.display()))?;
    anyhow::ensure!(
        !roots.is_empty(),
        "provider_ca_file {} holds no certificate",
        path.display()
    );
    Ok(roots)
}

/// Longest chain of redirects one provider request follows.
pub const MAX_REDIRECTS: usize = 10;

/// A redirect policy that follows hops within the origin that answered and
/// stops (handing back the 3xx response) at a hop to another origin.
pub fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error("too many redirects");
        }
        let same = attempt
            .previous()
            .last()
            .is_some_and(|prev| same_origin(prev, attempt.url()));
        if same {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// Same scheme, host and port (an https→http hop is another origin).
pub fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Which wire protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Openai,
    Anthropic,
    Ollama,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Ollama => "ollama",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ProviderKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "openai" => Ok(ProviderKind::Openai),
            "anthropic" => Ok(ProviderKind::Anthropic),
            "ollama" => Ok(ProviderKind::Ollama),
            other => Err(format!(
                "unknown provider kind \"{other}\" (expected openai, anthropic or ollama)"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
    System,
    /// A tool's result, answering one of the assistant's `tool_calls`.
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::System => "system",
            Role::Tool => "tool",
        }
    }
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
    /// The tools an assistant message called (in the order it called them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a `Tool` message: the id of the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Images that go with a user message (each provider writes them in
    /// its own format, scaled down to its limits: see [`images`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageInput>,
}

/// An image for a model: its type (png, jpeg, gif or webp) and bytes as
/// the user gave them. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInput {
    pub mime: String,
    #[serde(with = "base64_bytes")]
    pub data: bytes::Bytes,
}

impl fmt::Debug for ImageInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImageInput")
            .field("mime", &self.mime)
            .field("bytes", &self.data.len())
            .finish()
    }
}

mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &bytes::Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<bytes::Bytes, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(bytes::Bytes::from)
            .map_err(serde::de::Error::custom)
    }
}

/// One call of a tool by the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as the model wrote them: JSON text (OpenAI's form).
    pub arguments: String,
}

/// A tool the model may call: a function with a JSON Schema for its
/// arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments object.
    pub parameters: serde_json::Value,
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToolChoice {
    Auto,
    None,
    /// Some tool must be called.
    Required,
    /// This tool must be called.
    Named(String),
}

/// The shape the answer must take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ResponseFormat {
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON matching `schema`.
    JsonSchema {
        name: String,
        schema: serde_json::Value,
        strict: Option<bool>,
    },
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        ChatMessage {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            images: Vec::new(),
        }
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }
}

// Message text must never reach a log, so Debug shows only its size.
impl fmt::Debug for ChatMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatMessage")
            .field("role", &self.role)
            .field("content_chars", &self.content.chars().count())
            .field("tool_calls", &self.tool_calls.len())
            .field("images", &self.images.len())
            .finish()
    }
}

/// One request for a streamed answer. `api_key_override` carries a user's own
/// key for this request only (bring-your-own-key); it replaces the configured one.
#[derive(Clone, Default)]
pub struct ChatRequest {
    pub model: String,
    pub system: Option<String>,
    pub messages: Vec<ChatMessage>,
    /// Longest answer in tokens; a provider that requires one (Anthropic)
    /// gets the model's output limit when this is unset.
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// Stop sequences (at most 4 on OpenAI).
    pub stop: Vec<String>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub response_format: Option<ResponseFormat>,
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    /// An end-user id for the provider's abuse monitoring (OpenAI `user`,
    /// Anthropic `metadata.user_id`); never a name or an address.
    pub user: Option<String>,
    pub api_key_override: Option<String>,
    /// The kind of provider `api_key_override` belongs to: routing sends
    /// the key to providers of this kind only. None with a key: the kind
    /// of the first provider chosen.
    pub api_key_kind: Option<ProviderKind>,
}

impl ChatRequest {
    pub fn new(model: impl Into<String>, messages: Vec<ChatMessage>) -> Self {
        ChatRequest {
            model: model.into(),
            messages,
            ..Default::default()
        }
    }
}

// Neither keys nor text may be logged; Debug keeps only the shape.
impl fmt::Debug for ChatRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatRequest")
            .field("model", &self.model)
            .field("system", &self.system.as_ref().map(|_| "…"))
            .field("messages", &self.messages)
            .field("max_tokens", &self.max_tokens)
            .field("temperature", &self.temperature)
            .field("top_p", &self.top_p)
            .field("stop", &self.stop.len())
            .field("tools", &self.tools.len())
            .field(
                "api_key_override",
                &self.api_key_override.as_ref().map(|_| "***"),
            )
            .field("api_key_kind", &self.api_key_kind)
            .finish()
    }
}

/// What a provider's stream yields. A successful stream is any number of
/// `Delta`s, at most one `Usage`, then exactly one `Done`; a failed one ends
/// with one `Err` instead of `Done`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChatEvent {
    Delta(String),
    /// A piece of a tool call: the first piece of call `index` carries its
    /// `id` and `name`, later ones only more `arguments` text.
    ToolCall(ToolCallDelta),
    Usage {
        input_tokens: u64,
        output_tokens: u64,
    },
    /// `finish_reason` uses OpenAI's words ("stop", "length", …) for every
    /// provider so clients see one vocabulary.
    Done {
        finish_reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    /// Which call of this answer (0, 1, …).
    pub index: u32,
    pub id: Option<String>,
    pub name: Option<String>,
    /// More of the arguments' JSON text.
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub id: String,
    pub display_name: String,
    pub context_window: Option<u32>,
    /// Longest answer the model can write, in tokens, when known.
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    /// What the model does: chat, or embeddings only.
    #[serde(default)]
    pub kind: ModelKind,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    #[default]
    Chat,
    Embedding,
}

/// What a model is for, from its id when the provider does not say: the
/// common embedding families (`text-embedding-*`, `*embed*`, `bge-*`,
/// `e5-*`, `gte-*`) are embedding models, everything else chats.
pub fn model_kind_from_id(id: &str) -> ModelKind {
    let id = id.to_ascii_lowercase();
    let base = id.rsplit('/').next().unwrap_or(&id);
    let embedding = base.contains("embed")
        || ["bge-", "e5-", "gte-", "all-minilm"]
            .iter()
            .any(|p| base.starts_with(p));
    if embedding {
        ModelKind::Embedding
    } else {
        ModelKind::Chat
    }
}

/// Texts to embed.
#[derive(Clone, Default)]
pub struct EmbeddingRequest {
    pub model: String,
    pub input: Vec<String>,
    /// Fewer dimensions, where the model supports it.
    pub dimensions: Option<u32>,
    pub user: Option<String>,
    pub api_key_override: Option<String>,
}

impl fmt::Debug for EmbeddingRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddingRequest")
            .field("model", &self.model)
            .field("inputs", &self.input.len())
            .field("dimensions", &self.dimensions)
            .finish()
    }
}

/// One vector per input, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    pub input_tokens: u64,
}

/// Every way talking to a provider can fail, each with one stable [`code`](Self::code).
/// Messages are written for end users: they name the provider, never its base
/// URL, key or the conversation text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Connection refused, DNS failure, connect timeout, TLS failure.
    #[error("{0}")]
    Unreachable(String),
    /// No byte arrived within the idle timeout.
    #[error("{0}")]
    Timeout(String),
    /// HTTP 401/403: the key was refused.
    #[error("{0}")]
    KeyRejected(String),
    /// HTTP 429, with the upstream's Retry-After when it sent one.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_secs: Option<u64>,
    },
    #[error("{0}")]
    ModelNotFound(String),
    /// Any other upstream error; `message` is the upstream's own (key redacted).
    #[error("the provider answered HTTP {status}: {message}")]
    Upstream { status: u16, message: String },
    /// Malformed stream, or the stream stopped before its terminal event.
    #[error("{0}")]
    Protocol(String),
    /// The provider redirected to another origin and following is not
    /// allowed (`provider_cross_origin_redirects`).
    #[error("{0}")]
    Redirected(String),
    /// The provider cannot do what was asked (embeddings on Anthropic, a
    /// parameter its wire format has no place for).
    #[error("{0}")]
    Unsupported(String),
}

impl ProviderError {
    /// The stable code clients see (DESIGN.md "Errors").
    pub fn code(&self) -> &'static str {
        match self {
            ProviderError::Unreachable(_) => "PROVIDER_UNREACHABLE",
            ProviderError::Timeout(_) => "PROVIDER_TIMEOUT",
            ProviderError::KeyRejected(_) => "PROVIDER_ERROR",
            ProviderError::RateLimited { .. } => "RATE_LIMITED",
            ProviderError::ModelNotFound(_) => "MODEL_NOT_FOUND",
            ProviderError::Upstream { .. } => "PROVIDER_ERROR",
            ProviderError::Protocol(_) => "PROVIDER_ERROR",
            ProviderError::Redirected(_) => "PROVIDER_ERROR",
            ProviderError::Unsupported(_) => "UNSUPPORTED",
        }
    }

    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ProviderError::RateLimited {
                retry_after_secs, ..
            } => *retry_after_secs,
            _ => None,
        }
    }
}

/// Retries happen only before the first byte of the response body, so a
/// retried request can never duplicate text the caller has already seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts including the first; 1 disables retrying.
    pub attempts: u32,
    /// Delay before the second attempt; doubled for each further one.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    pub fn none() -> Self {
        RetryPolicy {
            attempts: 1,
            ..Default::default()
        }
    }

    /// Backoff before attempt number `attempt + 1` (attempt counts from 1).
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// Per-provider-instance tuning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderOptions {
    /// Longest silence allowed while waiting for response headers and between
    /// two body chunks. Not a bound on the whole answer.
    pub idle_timeout: Duration,
    pub retry: RetryPolicy,
    /// Follow a redirect to another origin (scheme, host, port), without
    /// the API key or any other credential. Off: such a redirect fails the
    /// request. Redirects within the origin are always followed.
    pub cross_origin_redirects: bool,
    /// Clients HTTPS requests are spread over, so no HTTP/2 connection
    /// carries more answers than servers allow (see [`shards`]). None: the
    /// client the request was built with.
    pub shards: Option<shards::Shards>,
}

impl Default for ProviderOptions {
    fn default() -> Self {
        ProviderOptions {
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            retry: RetryPolicy::default(),
            cross_origin_redirects: false,
            shards: None,
        }
    }
}

/// The stream type every provider returns.
pub type ChatStream = BoxStream<'static, Result<ChatEvent, ProviderError>>;

#[async_trait]
pub trait Provider: Send + Sync {
    fn kind(&self) -> ProviderKind;
    async fn models(&self) -> Result<Vec<ModelInfo>, ProviderError>;
    /// Checks a user's own key with a cheap authenticated call (the model
    /// list): Ok with how many models it lists, or the provider's refusal.
    /// Providers that take no users' keys refuse.
    async fn check_key(&self, key: &str) -> Result<usize, ProviderError> {
        let _ = key;
        Err(ProviderError::Unsupported(format!(
            "{} providers take no users' own keys",
            self.kind()
        )))
    }
    /// Starts one answer. Failures before the first body byte (after any
    /// retries) come back as the outer `Err`; failures after it as the
    /// stream's last item.
    async fn stream(&self, req: ChatRequest) -> Result<ChatStream, ProviderError>;
    /// Embeds texts; providers without embedding models refuse.
    async fn embed(&self, req: EmbeddingRequest) -> Result<Embeddings, ProviderError> {
        Err(ProviderError::Unsupported(format!(
            "{} providers offer no embeddings (model {})",
            self.kind(),
            req.model
        )))
    }
}

/// Events decoded from one read, in order, possibly ending with an error.
pub(crate) type EventQueue = VecDeque<Result<ChatEvent, ProviderError>>;

/// A provider's incremental wire decoder, driven by [`transport::drive`].
pub(crate) trait StreamDecoder: Send + 'static {
    /// Feeds raw bytes exactly as read; any split is allowed.
    fn feed(&mut self, bytes: &[u8], out: &mut EventQueue);
    /// The body ended cleanly: decode whatever is still buffered.
    fn finish(&mut self, out: &mut EventQueue);
    /// True once the terminal event was decoded (and `Done` queued).
    fn is_done(&self) -> bool;
}

/// Maps other providers' stop reasons onto OpenAI's vocabulary.
pub(crate) fn normalize_finish_reason(reason: &str) -> String {
    match reason {
        "end_turn" | "stop_sequence" | "stop" => "stop".into(),
        "max_tokens" | "length" => "length".into(),
        "tool_use" => "tool_calls".into(),
        "refusal" => "content_filter".into(),
        other => other.into(),
    }
}

/// True for a tool choice that says nothing when no tools are offered
/// ("auto", "none"): OpenAI and Anthropic refuse a `tool_choice` without
/// `tools`, so such a choice is left out. "required" or a named tool
/// without tools is still sent, and the upstream's refusal passed on.
pub(crate) fn choice_is_moot(choice: &ToolChoice) -> bool {
    matches!(choice, ToolChoice::Auto | ToolChoice::None)
}

/// Concatenates the system prompt and any system-role messages, which some
/// wire formats can only carry as one top-level field.
pub(crate) fn merged_system(req: &ChatRequest) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    if let Some(s) = req.system.as_deref().filter(|s| !s.is_empty()) {
        parts.push(s);
    }
    for m in &req.messages {
        if m.role == Role::System && !m.content.is_empty() {
            parts.push(&m.content);
        }
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("\n\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        let cases = [
            (
                ProviderError::Unreachable("x".into()),
                "PROVIDER_UNREACHABLE",
            ),
            (ProviderError::Timeout("x".into()), "PROVIDER_TIMEOUT"),
            (ProviderError::KeyRejected("x".into()), "PROVIDER_ERROR"),
            (
                ProviderError::RateLimited {
                    message: "x".into(),
                    retry_after_secs: Some(7),
                },
                "RATE_LIMITED",
            ),
            (ProviderError::ModelNotFound("x".into()), "MODEL_NOT_FOUND"),
            (
                ProviderError::Upstream {
                    status: 500,
                    message: "boom".into(),
                },
                "PROVIDER_ERROR",
            ),
            (ProviderError::Protocol("x".into()), "PROVIDER_ERROR"),
        ];
        for (e, code) in cases {
            assert_eq!(e.code(), code);
        }
        let e = ProviderError::Upstream {
            status: 502,
            message: "bad".into(),
        };
        assert_eq!(e.to_string(), "the provider answered HTTP 502: bad");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1), Duration::from_millis(250));
        assert_eq!(p.backoff(2), Duration::from_millis(500));
        assert_eq!(p.backoff(3), Duration::from_secs(1));
        assert_eq!(p.backoff(30), Duration::from_secs(1));
    }

    #[test]
    fn debug_hides_text_and_keys() {
        let mut req = ChatRequest::new("m", vec![ChatMessage::user("secret words")]);
        req.system = Some("hidden system".into());
        req.api_key_override = Some("sk-live-abcdef".into());
        let s = format!("{req:?}");
        assert!(!s.contains("secret"), "{s}");
        assert!(!s.contains("hidden"), "{s}");
        assert!(!s.contains("sk-live"), "{s}");
    }

    #[test]
    fn kind_round_trips() {
        assert_eq!(
            serde_json::to_string(&ProviderKind::Anthropic).unwrap(),
            "\"anthropic\""
        );
        assert_eq!(
            "OLLAMA".parse::<ProviderKind>().unwrap(),
            ProviderKind::Ollama
        );
        assert!("gemini".parse::<ProviderKind>().is_err());
    }
}
