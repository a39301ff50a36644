//! A fake LLM upstream for tests: one small axum server on `127.0.0.1:0` that
//! speaks OpenAI Chat Completions SSE (under `/openai/v1`), Anthropic Messages
//! SSE (under `/anthropic`) and Ollama's native NDJSON (under `/ollama`),
//! byte for byte in the shapes the real services send.
//!
//! Behaviour is scripted per request through the model name: a `+`-separated
//! list of flags, e.g. `"fake-model"`, `"split-bytes"`, `"claude-x+slow+crlf"`.
//!
//! | flag | effect |
//! | --- | --- |
//! | `split-bytes` | every byte of the body is its own chunk, flushed separately |
//! | `utf8-split` | replies [`UTF8_REPLY`] and cuts every multi-byte character across two chunks |
//! | `slow` | waits [`SLOW_DELAY`] (or the configured delay, if longer) before each token |
//! | `first-now` | no wait before the first token (the configured delay still before each later one) |
//! | `crlf` | CRLF line endings |
//! | `comments` | an SSE comment (`: ping`) before every event; blank lines in NDJSON |
//! | `echo` | replies the last user message instead of the configured text |
//! | `error-midstream` | [`PARTIAL_TOKENS`] tokens, then the dialect's in-stream error |
//! | `error-first` | no token, just the dialect's in-stream error (after a 200) |
//! | `reset` | [`PARTIAL_TOKENS`] tokens, then the connection is aborted |
//! | `stall` | [`PARTIAL_TOKENS`] tokens, then silence (connection left open) |
//! | `stall-headers` | no response at all, not even headers |
//! | `truncated` | [`PARTIAL_TOKENS`] tokens, then a clean end without the terminal event |
//! | `garbage` | one token, then an event whose JSON is malformed |
//! | `429` | 429 with `Retry-After: 7` and the dialect's JSON error body |
//! | `429-short` | 429 with `Retry-After: 1` and `retry-after-ms: 100` |
//! | `401` | 401 with the dialect's JSON error body (OpenAI's echoes a masked key) |
//! | `500` | 500 with the dialect's JSON error body |
//! | `missing-model` | 404 "model not found" in the dialect's words (chat, embeddings, `/api/show`) |
//! | `tools` | when the request offers tools: a call of the first (or the forced) tool with [`DEFAULT_TOOL_ARGUMENTS`] |
//! | `parallel-tools` | as `tools`, plus a second call (of the second tool offered, else the first again) |
//! | `preamble` | a tool-call answer starts with the text [`TOOL_PREAMBLE`] (Anthropic: a text block before the tool_use blocks) |
//!
//! Tools: a request that offers tools is answered with tool calls when its
//! model has the `tools`/`parallel-tools` flag or [`FakeUpstream::set_tool_call`]
//! was called (that name and arguments then, whatever the flags), unless its
//! `tool_choice` is "none". Calls stream in the dialect's exact format with
//! the arguments cut into [`tool_arg_pieces`] (OpenAI `delta.tool_calls`,
//! Anthropic `tool_use` + `input_json_delta`, Ollama whole calls with the
//! arguments as an object and no id); the finish reason is `tool_calls` /
//! `tool_use` / `stop`. A request whose last message is a tool result (an
//! OpenAI/Ollama `tool` message, an Anthropic user turn of `tool_result`
//! blocks) is answered with [`tool_result_reply`] of the result text.
//! Ids: `call_fake<8-digit request no.><call no.>` (OpenAI), `toolu_fake…` (Anthropic).
//!
//! Non-streaming: OpenAI and Anthropic requests without `"stream": true`,
//! and Ollama ones with `"stream": false`, get the whole answer as one JSON
//! object (`chat.completion`, `message`, Ollama's final object); the
//! stream-shaping flags (`split-bytes`, `error-midstream`, …) do not apply.
//!
//! Embeddings: `POST /openai/v1/embeddings` (input a string or an array of
//! strings, `dimensions`, `encoding_format` "float" or "base64") and
//! `POST /ollama/api/embed` answer [`fake_embedding`] of each input
//! ([`EMBEDDING_DIMS`] numbers unless `dimensions` says otherwise), with
//! [`word_count`] of all inputs as the prompt tokens. Anthropic has none.
//!
//! `POST /ollama/api/show` answers the model's `model_info` with
//! `llama.context_length` = [`DEFAULT_CONTEXT_LENGTH`] (or what
//! [`FakeUpstream::set_context_length`] set); a model whose name contains
//! "embed" is a `bert` embedding model ([`EMBEDDING_CONTEXT_LENGTH`],
//! capabilities `["embedding"]`). Flags `500` and `missing-model` make it fail.
//!
//! [`FakeUpstream::set_flags`] adds flags to every chat request, so two
//! upstreams serving one model name can behave differently.
//!
//! Anthropic requests without `x-api-key` or `anthropic-version`, and
//! messages requests without `max_tokens`, are refused as the real API does; any dialect refuses [`REJECTED_KEY`] with 401.
//!
//! Usage reported: input tokens = whitespace-separated words of the system
//! prompt and all messages ([`word_count`]); output tokens = number of reply
//! tokens ([`tokens`]).
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Value, json};

pub const DEFAULT_REPLY: &str = "Hello from the fake upstream! This answer arrives token by token.";
pub const UTF8_REPLY: &str = "Café crème, naïve façade 🦀 — über Straße ✓ 日本語";
/// Tokens sent before a scripted failure.
pub const PARTIAL_TOKENS: usize = 2;
pub const SLOW_DELAY: Duration = Duration::from_millis(100);
pub const RETRY_AFTER_SECS: u64 = 7;
/// A key every dialect answers 401 to.
pub const REJECTED_KEY: &str = "sk-rejected-0123456789abcdef";
pub const DEFAULT_MODELS: &[&str] = &["fake-model", "fake-model-2"];
/// The arguments of a scripted tool call unless `set_tool_call` says otherwise.
pub const DEFAULT_TOOL_ARGUMENTS: &str = r#"{"location":"Paris, France","unit":"celsius"}"#;
/// Longest piece of arguments in one streamed event.
pub const TOOL_ARG_PIECE_CHARS: usize = 8;
/// What a reply to a tool result starts with ([`tool_result_reply`]).
pub const TOOL_RESULT_PREFIX: &str = "The tool answered: ";
/// Text before the calls with the `preamble` flag.
pub const TOOL_PREAMBLE: &str = "Let me look that up.";
/// Numbers in a fake embedding when the request does not ask for fewer.
pub const EMBEDDING_DIMS: usize = 8;
/// `/api/show`'s context length for chat models.
pub const DEFAULT_CONTEXT_LENGTH: u64 = 131_072;
/// `/api/show`'s context length for embedding models.
pub const EMBEDDING_CONTEXT_LENGTH: u64 = 512;

pub const OPENAI_500: &str =
    "The server had an error while processing your request. Sorry about that!";
pub const OPENAI_503: &str = "The engine is currently overloaded, please try again later";
pub const OPENAI_MIDSTREAM: &str = OPENAI_500;
pub const ANTHROPIC_500: &str = "Internal server error";
pub const ANTHROPIC_MIDSTREAM: &str = "Overloaded";
pub const ANTHROPIC_401: &str = "invalid x-api-key";
pub const OLLAMA_500: &str = "llama runner process has terminated: exit status 2";
pub const OLLAMA_503: &str = "server busy, please try again.  maximum pending requests exceeded";
pub const OLLAMA_MIDSTREAM: &str =
    "an error was encountered while running the model: unexpected EOF";

/// Which of the three APIs a request was made to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    OpenAi,
    Anthropic,
    Ollama,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub dialect: Option<Dialect>,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Lowercased names, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body as JSON, `Value::Null` when empty or not JSON.
    pub body: Value,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn model(&self) -> Option<&str> {
        self.body.get("model").and_then(Value::as_str)
    }

    /// True for the chat endpoints (not model listings, embeddings or
    /// `/api/show`).
    pub fn is_chat(&self) -> bool {
        self.method == "POST"
            && (self.path.ends_with("/chat/completions")
                || self.path.ends_with("/v1/messages")
                || self.path.ends_with("/api/chat"))
    }

    /// True for the embedding endpoints.
    pub fn is_embedding(&self) -> bool {
        self.method == "POST"
            && (self.path.ends_with("/v1/embeddings") || self.path.ends_with("/api/embed"))
    }
}

struct Shared {
    reply: Mutex<String>,
    replies_by_model: Mutex<HashMap<String, String>>,
    token_delay: Mutex<Duration>,
    models: Mutex<Vec<String>>,
    requests: Mutex<Vec<RecordedRequest>>,
    fail_next: AtomicUsize,
    counter: AtomicU64,
    /// Set by `set_tool_call`: the call every request offering tools gets.
    tool_call: Mutex<Option<(String, String)>>,
    context_lengths: Mutex<HashMap<String, u64>>,
    extra_flags: Mutex<Vec<String>>,
}

pub struct FakeUpstream {
    pub addr: SocketAddr,
    /// With [`FakeUpstream::start_tls`]: the self-signed certificate (PEM)
    /// a client must trust.
    pub cert_pem: Option<String>,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeUpstream {
    /// Binds `127.0.0.1:0` and serves on the current runtime.
    pub async fn start() -> FakeUpstream {
        FakeUpstream::start_on(None).await
    }

    /// Like [`FakeUpstream::start`], over HTTPS with a fresh self-signed
    /// certificate for 127.0.0.1 ([`FakeUpstream::cert_pem`]), offering
    /// HTTP/2 and HTTP/1.1 by ALPN as the cloud providers do.
    pub async fn start_tls() -> FakeUpstream {
        FakeUpstream::start_tls_limited(u32::MAX).await
    }

    /// [`FakeUpstream::start_tls`] allowing at most `max_streams` HTTP/2
    /// streams open at once on a connection, as real servers do (100 to a
    /// few hundred).
    pub async fn start_tls_limited(max_streams: u32) -> FakeUpstream {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("a self-signed certificate");
        let key = rustls_pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .expect("a server certificate");
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let mut up = FakeUpstream::start_on(Some((Arc::new(cfg), max_streams))).await;
        up.cert_pem = Some(cert.cert.pem());
        up
    }

    async fn start_on(tls: Option<(Arc<rustls::ServerConfig>, u32)>) -> FakeUpstream {
        let shared = Arc::new(Shared {
            reply: Mutex::new(DEFAULT_REPLY.to_string()),
            replies_by_model: Mutex::new(HashMap::new()),
            token_delay: Mutex::new(Duration::ZERO),
            models: Mutex::new(DEFAULT_MODELS.iter().map(|s| s.to_string()).collect()),
            requests: Mutex::new(Vec::new()),
            fail_next: AtomicUsize::new(0),
            counter: AtomicU64::new(0),
            tool_call: Mutex::new(None),
            context_lengths: Mutex::new(HashMap::new()),
            extra_flags: Mutex::new(Vec::new()),
        });
        let listener = confab::server::listen("127.0.0.1:0".parse().expect("an address"))
            .expect("bind fake upstream");
        let addr = listener.local_addr().expect("fake upstream address");
        let app = Router::new().fallback(handle).with_state(shared.clone());
        if let Some((tls, max_streams)) = tls {
            let task = tokio::spawn(serve_tls(listener, tls, max_streams, app));
            return FakeUpstream {
                addr,
                cert_pem: None,
                shared,
                task,
            };
        }
        let task = tokio::spawn(async move {
            // Like real providers: small SSE writes go out at once.
            let listener =
                axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
                    let _ = tcp.set_nodelay(true);
                });
            let _ = axum::serve(listener, app).await;
        });
        FakeUpstream {
            addr,
            cert_pem: None,
            shared,
            task,
        }
    }

    fn scheme(&self) -> &'static str {
        if self.cert_pem.is_some() {
            "https"
        } else {
            "http"
        }
    }

    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.addr)
    }
    /// OpenAI-compatible base URL, including `/v1`.
    pub fn openai_base(&self) -> String {
        format!("{}://{}/openai/v1", self.scheme(), self.addr)
    }
    /// Registers this upstream with a running server as the OpenAI-compatible
    /// provider `oa` offering `models`: a 5 s idle timeout and no retries, so
    /// scripted failures reach the client as they are.
    pub fn register_openai(&self, state: &confab::app::AppState, models: &[&str]) {
        use confab::providers::registry::ProviderConfig;
        use confab::providers::{OpenAiProvider, ProviderKind, ProviderOptions, RetryPolicy};
        let cfg = ProviderConfig::new(ProviderKind::Openai, "oa", self.openai_base())
            .with_api_key("sk-test-key-0000")
            .with_models(models.iter().map(|m| m.to_string()).collect());
        let p = OpenAiProvider::new(
            "oa",
            &self.openai_base(),
            Some("sk-test-key-0000".into()),
            confab::providers::default_client(),
        )
        .with_options(ProviderOptions {
            idle_timeout: std::time::Duration::from_secs(5),
            retry: RetryPolicy::none(),
            ..Default::default()
        });
        state
            .providers
            .add_with(cfg, std::sync::Arc::new(p))
            .unwrap();
    }
    /// Anthropic base URL, without `/v1`.
    pub fn anthropic_base(&self) -> String {
        format!("{}://{}/anthropic", self.scheme(), self.addr)
    }
    /// Ollama server root.
    pub fn ollama_base(&self) -> String {
        format!("{}://{}/ollama", self.scheme(), self.addr)
    }
    pub fn base_for(&self, dialect: Dialect) -> String {
        match dialect {
            Dialect::OpenAi => self.openai_base(),
            Dialect::Anthropic => self.anthropic_base(),
            Dialect::Ollama => self.ollama_base(),
        }
    }

    /// The text every model answers (unless overridden per model or by a flag).
    pub fn set_reply(&self, text: &str) {
        *self.shared.reply.lock().unwrap() = text.to_string();
    }
    /// The text one exact model name answers.
    pub fn set_reply_for(&self, model: &str, text: &str) {
        self.shared
            .replies_by_model
            .lock()
            .unwrap()
            .insert(model.to_string(), text.to_string());
    }
    /// Pause before every token.
    pub fn set_token_delay(&self, delay: Duration) {
        *self.shared.token_delay.lock().unwrap() = delay;
    }
    /// The ids every models endpoint lists.
    pub fn set_models(&self, models: &[&str]) {
        *self.shared.models.lock().unwrap() = models.iter().map(|s| s.to_string()).collect();
    }
    /// The next `n` chat or embedding requests answer "overloaded" (503;
    /// Anthropic 529), for testing retries.
    pub fn fail_next(&self, n: usize) {
        self.shared.fail_next.store(n, Ordering::SeqCst);
    }

    /// From now on, every chat request that offers tools (and does not end
    /// with a tool result) is answered with a call of `name` with
    /// `arguments_json` (a JSON object's text), whatever the model's flags.
    pub fn set_tool_call(&self, name: &str, arguments_json: &str) {
        let parsed: Value = serde_json::from_str(arguments_json).expect("arguments are JSON");
        assert!(parsed.is_object(), "tool arguments must be a JSON object");
        *self.shared.tool_call.lock().unwrap() =
            Some((name.to_string(), arguments_json.to_string()));
    }
    /// Back to answering tool offers only for the `tools` flags.
    pub fn clear_tool_call(&self) {
        *self.shared.tool_call.lock().unwrap() = None;
    }
    /// The context length `/api/show` reports for `model`.
    pub fn set_context_length(&self, model: &str, tokens: u64) {
        self.shared
            .context_lengths
            .lock()
            .unwrap()
            .insert(model.to_string(), tokens);
    }

    /// Flags every chat request gets on top of its model name's (none
    /// after `set_flags(&[])`).
    pub fn set_flags(&self, flags: &[&str]) {
        *self.shared.extra_flags.lock().unwrap() = flags.iter().map(|s| s.to_string()).collect();
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.lock().unwrap().clone()
    }
    pub fn chat_requests(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_chat())
            .collect()
    }
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.shared.requests.lock().unwrap().last().cloned()
    }
    pub fn embedding_requests(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_embedding())
            .collect()
    }
    pub fn clear_requests(&self) {
        self.shared.requests.lock().unwrap().clear();
    }

    /// The reply text a request for `model` gets, as [`tokens`] would stream it.
    pub fn reply_for(&self, model: &str) -> String {
        reply_text(&self.shared, model, None)
    }
}

/// How the fake cuts a reply into streamed tokens: each word keeps its
/// trailing space, like real tokenizers' leading-space pieces.
pub fn tokens(text: &str) -> Vec<String> {
    text.split_inclusive(' ').map(str::to_string).collect()
}

/// The input token count the fake reports for a request's text.
pub fn word_count(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// The first [`PARTIAL_TOKENS`] tokens of `text`: what arrives before a
/// scripted failure.
pub fn partial(text: &str) -> String {
    tokens(text).into_iter().take(PARTIAL_TOKENS).collect()
}

fn flags(model: &str) -> Vec<&str> {
    model.split('+').collect()
}

fn reply_text(shared: &Shared, model: &str, body: Option<&Value>) -> String {
    if let Some(r) = shared.replies_by_model.lock().unwrap().get(model) {
        return r.clone();
    }
    let f = flags(model);
    let last_user = body
        .and_then(|b| b.get("messages"))
        .and_then(Value::as_array)
        .and_then(|m| {
            m.iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        })
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str);
    if f.contains(&"echo")
        && let Some(last) = last_user
    {
        return last.to_string();
    }
    if f.contains(&"utf8-split") {
        return UTF8_REPLY.to_string();
    }
    shared.reply.lock().unwrap().clone()
}

fn input_words(body: &Value) -> u64 {
    let mut n = body
        .get("system")
        .and_then(Value::as_str)
        .map_or(0, word_count);
    if let Some(msgs) = body.get("messages").and_then(Value::as_array) {
        for m in msgs {
            n += m.get("content").map_or(0, |c| word_count(&content_text(c)));
        }
    }
    n
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    version: axum::http::Version,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let dialect = if path.starts_with("/openai/") {
        Some(Dialect::OpenAi)
    } else if path.starts_with("/anthropic/") {
        Some(Dialect::Anthropic)
    } else if path.starts_with("/ollama") {
        Some(Dialect::Ollama)
    } else {
        None
    };
    let json_body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    shared.requests.lock().unwrap().push(RecordedRequest {
        dialect,
        version: format!("{version:?}"),
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().map(str::to_string),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: json_body.clone(),
    });

    let key = presented_key(&headers);
    match (method.as_str(), path.as_str()) {
        // For benches in another process: how many answers were asked for.
        ("GET", "/_fake/chats") => {
            let n = shared
                .requests
                .lock()
                .unwrap()
                .iter()
                .filter(|r| r.method == "POST" && r.path.ends_with("/chat/completions"))
                .count();
            json_response(200, &json!({ "count": n }))
        }
        ("GET", "/openai/v1/models") => {
            if key.as_deref() == Some(REJECTED_KEY) {
                return error_response(Dialect::OpenAi, 401, &key, "");
            }
            let data: Vec<Value> = shared
                .models
                .lock()
                .unwrap()
                .iter()
                .map(|id| json!({"id": id, "object": "model", "created": 1686935002, "owned_by": "fake"}))
                .collect();
            json_response(200, &json!({"object": "list", "data": data}))
        }
        ("GET", "/anthropic/v1/models") => {
            if let Some(refusal) = anthropic_auth(&headers, &key) {
                return refusal;
            }
            let models = shared.models.lock().unwrap().clone();
            let data: Vec<Value> = models
                .iter()
                .map(|id| json!({"type": "model", "id": id, "display_name": display_name(id), "created_at": "2025-02-19T00:00:00Z"}))
                .collect();
            json_response(
                200,
                &json!({"data": data, "has_more": false, "first_id": models.first(), "last_id": models.last()}),
            )
        }
        ("GET", "/ollama/api/tags") => {
            let data: Vec<Value> = shared
                .models
                .lock()
                .unwrap()
                .iter()
                .map(|id| {
                    json!({"name": id, "model": id, "modified_at": "2024-11-01T10:00:00.000000+01:00",
                        "size": 2019393189u64, "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
                        "details": {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                            "parameter_size": "3.2B", "quantization_level": "Q4_K_M"}})
                })
                .collect();
            json_response(200, &json!({"models": data}))
        }
        ("GET", "/ollama" | "/ollama/") => Response::builder()
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Body::from("Ollama is running"))
            .unwrap(),
        ("POST", "/openai/v1/chat/completions") => {
            chat(&shared, Dialect::OpenAi, &headers, &json_body, key).await
        }
        ("POST", "/anthropic/v1/messages") => {
            chat(&shared, Dialect::Anthropic, &headers, &json_body, key).await
        }
        ("POST", "/ollama/api/chat") => {
            chat(&shared, Dialect::Ollama, &headers, &json_body, key).await
        }
        ("POST", "/openai/v1/embeddings") => embeddings(&shared, Dialect::OpenAi, &json_body, key),
        ("POST", "/ollama/api/embed") => embeddings(&shared, Dialect::Ollama, &json_body, key),
        ("POST", "/ollama/api/show") => show(&shared, &json_body),
        _ => Response::builder()
            .status(404)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Body::from("404 page not found"))
            .unwrap(),
    }
}

fn display_name(id: &str) -> String {
    id.split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<String>>()
        .join(" ")
}

fn presented_key(headers: &HeaderMap) -> Option<String> {
    if let Some(k) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(k.to_string());
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
}

fn anthropic_auth(headers: &HeaderMap, key: &Option<String>) -> Option<Response> {
    if headers.get("x-api-key").is_none() {
        return Some(json_response(
            401,
            &json!({"type": "error", "error": {"type": "authentication_error", "message": "x-api-key header is required"}}),
        ));
    }
    if key.as_deref() == Some(REJECTED_KEY) {
        return Some(error_response(Dialect::Anthropic, 401, key, ""));
    }
    if headers.get("anthropic-version").is_none() {
        return Some(json_response(
            400,
            &json!({"type": "error", "error": {"type": "invalid_request_error", "message": "anthropic-version: header is required"}}),
        ));
    }
    None
}

fn json_response(status: u16, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// OpenAI shows a masked form of the key it refused; so does the fake, to
/// prove the client never passes it on.
fn masked(key: &Option<String>) -> String {
    match key {
        Some(k) if k.len() > 9 => format!("{}***{}", &k[..5], &k[k.len() - 4..]),
        Some(_) => "***".into(),
        None => "".into(),
    }
}

fn error_response(dialect: Dialect, status: u16, key: &Option<String>, model: &str) -> Response {
    let body = match (dialect, status) {
        (Dialect::OpenAi, 401) => {
            json!({"error": {"message": format!("Incorrect API key provided: {}. You can find your API key at https://platform.openai.com/account/api-keys.", masked(key)), "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}})
        }
        (Dialect::OpenAi, 404) => {
            json!({"error": {"message": format!("The model `{model}` does not exist or you do not have access to it."), "type": "invalid_request_error", "param": null, "code": "model_not_found"}})
        }
        (Dialect::OpenAi, 429) => {
            json!({"error": {"message": format!("Rate limit reached for {model} in organization org-fake on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 7s."), "type": "requests", "param": null, "code": "rate_limit_exceeded"}})
        }
        (Dialect::OpenAi, 503) => {
            json!({"error": {"message": OPENAI_503, "type": "server_error", "param": null, "code": null}})
        }
        (Dialect::OpenAi, _) => {
            json!({"error": {"message": OPENAI_500, "type": "server_error", "param": null, "code": null}})
        }
        (Dialect::Anthropic, 401) => {
            json!({"type": "error", "error": {"type": "authentication_error", "message": ANTHROPIC_401}})
        }
        (Dialect::Anthropic, 404) => {
            json!({"type": "error", "error": {"type": "not_found_error", "message": format!("model: {model}")}})
        }
        (Dialect::Anthropic, 429) => {
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Number of requests has exceeded your per-minute rate limit. Please try again later."}})
        }
        (Dialect::Anthropic, 529) => {
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
        }
        (Dialect::Anthropic, _) => {
            json!({"type": "error", "error": {"type": "api_error", "message": ANTHROPIC_500}})
        }
        (Dialect::Ollama, 401) => json!({"error": "unauthorized"}),
        (Dialect::Ollama, 404) => {
            json!({"error": format!("model \"{model}\" not found, try pulling it first")})
        }
        (Dialect::Ollama, 429) => json!({"error": "too many requests, please slow down"}),
        (Dialect::Ollama, 503) => json!({"error": OLLAMA_503}),
        (Dialect::Ollama, _) => json!({"error": OLLAMA_500}),
    };
    json_response(status, &body)
}

/// One piece of a scripted body.
enum Step {
    Send(Bytes),
    Pause(Duration),
    /// Lets the connection flush before the next piece, so the client reads
    /// pieces separately instead of one coalesced buffer.
    Flush,
    /// Aborts the connection mid-body.
    Fail,
    /// Never sends anything again.
    Hang,
}

struct Script {
    steps: VecDeque<Step>,
    crlf: bool,
    comments: bool,
    dialect: Dialect,
    split_bytes: bool,
    split_utf8: bool,
}

impl Script {
    fn event(&mut self, text: String) {
        let mut text = text;
        if self.comments {
            text = match self.dialect {
                Dialect::Ollama => format!("\n{text}"),
                _ => format!(": ping\n\n{text}"),
            };
        }
        if self.crlf {
            text = text.replace('\n', "\r\n");
        }
        let bytes = text.into_bytes();
        if self.split_bytes {
            for b in bytes {
                self.steps.push_back(Step::Send(Bytes::from(vec![b])));
                self.steps.push_back(Step::Flush);
            }
        } else if self.split_utf8 {
            // Cut right after the first byte of every multi-byte character.
            let mut start = 0;
            for (i, &b) in bytes.iter().enumerate() {
                if b >= 0xC0 {
                    self.steps
                        .push_back(Step::Send(Bytes::copy_from_slice(&bytes[start..=i])));
                    self.steps.push_back(Step::Flush);
                    start = i + 1;
                }
            }
            self.steps
                .push_back(Step::Send(Bytes::copy_from_slice(&bytes[start..])));
            self.steps.push_back(Step::Flush);
        } else {
            self.steps.push_back(Step::Send(Bytes::from(bytes)));
        }
    }

    fn into_body(self) -> Body {
        let stream = futures::stream::unfold(self.steps, |mut steps| async move {
            loop {
                match steps.pop_front()? {
                    Step::Send(b) => return Some((Ok::<Bytes, std::io::Error>(b), steps)),
                    Step::Pause(d) => tokio::time::sleep(d).await,
                    Step::Flush => tokio::task::yield_now().await,
                    Step::Fail => {
                        return Some((
                            Err(std::io::Error::new(
                                std::io::ErrorKind::ConnectionReset,
                                "scripted connection reset",
                            )),
                            steps,
                        ));
                    }
                    Step::Hang => futures::future::pending::<()>().await,
                }
            }
        });
        Body::from_stream(stream)
    }
}

enum Ending {
    Complete,
    ErrorEvent,
    Reset,
    Stall,
    Truncated,
    Garbage,
}

async fn chat(
    shared: &Arc<Shared>,
    dialect: Dialect,
    headers: &HeaderMap,
    body: &Value,
    key: Option<String>,
) -> Response {
    if dialect == Dialect::Anthropic {
        if let Some(refusal) = anthropic_auth(headers, &key) {
            return refusal;
        }
        if !body.get("max_tokens").is_some_and(Value::is_u64) {
            return json_response(
                400,
                &json!({"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"}}),
            );
        }
    } else if key.as_deref() == Some(REJECTED_KEY) {
        return error_response(dialect, 401, &key, "");
    }
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let extra = shared.extra_flags.lock().unwrap().clone();
    let mut f = flags(&model);
    f.extend(extra.iter().map(String::as_str));

    if shared
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        let status = if dialect == Dialect::Anthropic {
            529
        } else {
            503
        };
        return error_response(dialect, status, &key, &model);
    }
    if f.contains(&"stall-headers") {
        futures::future::pending::<()>().await;
    }
    for status in ["401", "500", "429"] {
        if f.contains(&status) {
            let mut resp = error_response(dialect, status.parse().unwrap(), &key, &model);
            if status == "429" {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, RETRY_AFTER_SECS.into());
            }
            return resp;
        }
    }
    if f.contains(&"429-short") {
        let mut resp = error_response(dialect, 429, &key, &model);
        resp.headers_mut().insert(header::RETRY_AFTER, 1.into());
        resp.headers_mut().insert("retry-after-ms", 100.into());
        return resp;
    }
    if f.contains(&"missing-model") {
        return error_response(dialect, 404, &key, &model);
    }

    let n = shared.counter.fetch_add(1, Ordering::SeqCst);
    let answer = plan_answer(shared, dialect, &model, body, n);
    let input = input_words(body);
    let output = answer.output_tokens();
    let wire = Wire {
        dialect,
        id: n,
        model: &model,
    };
    let streaming = match dialect {
        Dialect::Ollama => body.get("stream") != Some(&Value::Bool(false)),
        _ => body.get("stream") == Some(&Value::Bool(true)),
    };
    if !streaming {
        let mut resp = json_response(200, &wire.whole(&answer, input, output));
        resp.headers_mut().insert(
            if dialect == Dialect::Anthropic {
                "request-id"
            } else {
                "x-request-id"
            },
            format!("req_fake{n:08}").parse().unwrap(),
        );
        return resp;
    }
    let configured = *shared.token_delay.lock().unwrap();
    let delay = if f.contains(&"slow") {
        configured.max(SLOW_DELAY)
    } else {
        configured
    };
    let mut script = Script {
        steps: VecDeque::new(),
        crlf: f.contains(&"crlf"),
        comments: f.contains(&"comments"),
        dialect,
        split_bytes: f.contains(&"split-bytes"),
        split_utf8: f.contains(&"utf8-split"),
    };
    let text = match answer {
        Answer::Text(text) => text,
        Answer::Tools { preamble, calls } => {
            wire.tool_answer(
                &mut script,
                preamble.as_deref(),
                &calls,
                input,
                output,
                delay,
            );
            return stream_response(dialect, n, script);
        }
    };
    let toks = tokens(&text);
    let ending = if f.contains(&"error-midstream") || f.contains(&"error-first") {
        Ending::ErrorEvent
    } else if f.contains(&"reset") {
        Ending::Reset
    } else if f.contains(&"stall") {
        Ending::Stall
    } else if f.contains(&"truncated") {
        Ending::Truncated
    } else if f.contains(&"garbage") {
        Ending::Garbage
    } else {
        Ending::Complete
    };
    let sent_tokens = match ending {
        _ if f.contains(&"error-first") => 0,
        Ending::Complete => toks.len(),
        Ending::Garbage => 1.min(toks.len()),
        _ => PARTIAL_TOKENS.min(toks.len()),
    };
    wire.open(&mut script, input);
    let first_now = f.contains(&"first-now");
    for (i, t) in toks[..sent_tokens].iter().enumerate() {
        let pause = !delay.is_zero() && (i > 0 || !first_now);
        if pause {
            script.steps.push_back(Step::Pause(delay));
        }
        wire.token(&mut script, t);
    }
    match ending {
        Ending::Complete => wire.close(&mut script, input, output),
        Ending::ErrorEvent => wire.error(&mut script),
        Ending::Reset => {
            // Give the tokens time to leave, so the reset cuts a stream the
            // client has already started reading.
            script
                .steps
                .push_back(Step::Pause(Duration::from_millis(20)));
            script.steps.push_back(Step::Fail);
        }
        Ending::Stall => script.steps.push_back(Step::Hang),
        Ending::Truncated => {}
        Ending::Garbage => match dialect {
            Dialect::Ollama => script.event("{\"model\":\"x\",\"message\":{\"content\":\n".into()),
            _ => {
                script.event("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\n\n".into())
            }
        },
    }
    stream_response(dialect, n, script)
}

fn stream_response(dialect: Dialect, n: u64, script: Script) -> Response {
    let (content_type, request_id_header) = match dialect {
        Dialect::OpenAi => ("text/event-stream; charset=utf-8", "x-request-id"),
        Dialect::Anthropic => ("text/event-stream; charset=utf-8", "request-id"),
        Dialect::Ollama => ("application/x-ndjson", "x-request-id"),
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-cache")
        .header(request_id_header, format!("req_fake{n:08}"))
        .body(script.into_body())
        .unwrap()
}

/// Writes the events of one dialect in the exact shapes the real service uses.
struct Wire<'a> {
    dialect: Dialect,
    id: u64,
    model: &'a str,
}

const CREATED: u64 = 1731456789;
const CREATED_AT: &str = "2024-11-12T23:33:09.123456Z";

impl Wire<'_> {
    fn openai_chunk(&self, choices: Value, usage: Value) -> String {
        let chunk = json!({
            "id": format!("chatcmpl-fake{:08}", self.id),
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": self.model,
            "service_tier": "default",
            "system_fingerprint": "fp_fake0001",
            "choices": choices,
            "usage": usage,
        });
        format!("data: {chunk}\n\n")
    }

    fn anthropic_event(name: &str, data: Value) -> String {
        format!("event: {name}\ndata: {data}\n\n")
    }

    fn open(&self, s: &mut Script, input: u64) {
        match self.dialect {
            Dialect::OpenAi => s.event(self.openai_chunk(
                json!([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": null}, "logprobs": null, "finish_reason": null}]),
                Value::Null,
            )),
            Dialect::Anthropic => {
                s.event(self.anthropic_start(input));
                s.event(Self::anthropic_event(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                ));
                s.event("event: ping\ndata: {\"type\": \"ping\"}\n\n".to_string());
            }
            Dialect::Ollama => {}
        }
    }

    fn token(&self, s: &mut Script, t: &str) {
        match self.dialect {
            Dialect::OpenAi => s.event(self.openai_chunk(
                json!([{"index": 0, "delta": {"content": t}, "logprobs": null, "finish_reason": null}]),
                Value::Null,
            )),
            Dialect::Anthropic => s.event(Self::anthropic_event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}),
            )),
            Dialect::Ollama => s.event(format!(
                "{}\n",
                json!({"model": self.model, "created_at": CREATED_AT, "message": {"role": "assistant", "content": t}, "done": false})
            )),
        }
    }

    fn close(&self, s: &mut Script, input: u64, output: u64) {
        match self.dialect {
            Dialect::OpenAi => self.openai_finish(s, "stop", input, output),
            Dialect::Anthropic => {
                s.event(Self::anthropic_event(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": 0}),
                ));
                s.event(Self::anthropic_event(
                    "message_delta",
                    json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": output}}),
                ));
                s.event(Self::anthropic_event(
                    "message_stop",
                    json!({"type": "message_stop"}),
                ));
            }
            Dialect::Ollama => self.close_with(s, input, output, "stop"),
        }
    }

    fn error(&self, s: &mut Script) {
        match self.dialect {
            Dialect::OpenAi => s.event(format!(
                "data: {}\n\n",
                json!({"error": {"message": OPENAI_MIDSTREAM, "type": "server_error", "param": null, "code": null}})
            )),
            Dialect::Anthropic => s.event(format!(
                "event: error\ndata: {}\n\n",
                json!({"type": "error", "error": {"type": "overloaded_error", "message": ANTHROPIC_MIDSTREAM}})
            )),
            Dialect::Ollama => s.event(format!("{}\n", json!({"error": OLLAMA_MIDSTREAM}))),
        }
    }
}

/// One tool call the fake answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeToolCall {
    pub id: String,
    pub name: String,
    /// JSON text of the arguments object.
    pub arguments: String,
}

/// What a chat request is answered with.
enum Answer {
    Text(String),
    Tools {
        /// Text before the calls (flag `preamble`).
        preamble: Option<String>,
        calls: Vec<FakeToolCall>,
    },
}

impl Answer {
    fn output_tokens(&self) -> u64 {
        match self {
            Answer::Text(t) => tokens(t).len() as u64,
            Answer::Tools { preamble, calls } => tool_output_tokens(preamble.as_deref(), calls),
        }
    }
}

/// The output token count the fake reports for a tool-call answer: the
/// preamble's tokens plus one per streamed piece of arguments.
pub fn tool_output_tokens(preamble: Option<&str>, calls: &[FakeToolCall]) -> u64 {
    let text = preamble.map_or(0, |p| tokens(p).len());
    let pieces: usize = calls
        .iter()
        .map(|c| tool_arg_pieces(&c.arguments).len())
        .sum();
    (text + pieces) as u64
}

/// How the fake cuts a call's arguments into streamed pieces: at most
/// [`TOOL_ARG_PIECE_CHARS`] characters each, so every call takes several.
pub fn tool_arg_pieces(arguments: &str) -> Vec<String> {
    let chars: Vec<char> = arguments.chars().collect();
    chars
        .chunks(TOOL_ARG_PIECE_CHARS)
        .map(|c| c.iter().collect())
        .collect()
}

/// The reply to a request whose last message is a tool result.
pub fn tool_result_reply(result: &str) -> String {
    format!("{TOOL_RESULT_PREFIX}{result}")
}

/// The vector the fake's embedding endpoints give `text`: `dims` numbers in
/// -1..=1 derived from the text's bytes (FNV-1a per dimension).
pub fn fake_embedding(text: &str, dims: usize) -> Vec<f32> {
    (0..dims)
        .map(|i| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ (i as u64);
            for b in text.as_bytes() {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            (h % 20_001) as f32 / 10_000.0 - 1.0
        })
        .collect()
}

/// Text of a message's `content`: a string, or the text of its parts
/// (OpenAI content parts, Anthropic text and tool_result blocks).
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p.get("type").and_then(Value::as_str) {
                Some("tool_result") => p.get("content").map(content_text).unwrap_or_default(),
                _ => p
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            })
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The tool result(s) the request ends with, in the dialect's form:
/// a `tool` message (OpenAI, Ollama), or a user turn of `tool_result`
/// blocks (Anthropic).
fn trailing_tool_result(dialect: Dialect, body: &Value) -> Option<String> {
    let last = body.get("messages")?.as_array()?.last()?;
    let role = last.get("role").and_then(Value::as_str)?;
    let content = last.get("content").unwrap_or(&Value::Null);
    match dialect {
        Dialect::OpenAi | Dialect::Ollama => (role == "tool").then(|| content_text(content)),
        Dialect::Anthropic => {
            let blocks = content.as_array()?;
            let results: Vec<String> = blocks
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
                .map(|b| b.get("content").map(content_text).unwrap_or_default())
                .collect();
            (role == "user" && !results.is_empty()).then(|| results.join(" "))
        }
    }
}

/// Names of the tools a request offers, in order.
fn offered_tools(dialect: Dialect, body: &Value) -> Vec<String> {
    let Some(tools) = body.get("tools").and_then(Value::as_array) else {
        return Vec::new();
    };
    tools
        .iter()
        .filter_map(|t| match dialect {
            Dialect::Anthropic => t.get("name"),
            _ => t.get("function").and_then(|f| f.get("name")),
        })
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// The tool a request forces, if any (OpenAI's named function,
/// Anthropic's `{"type":"tool","name"}`).
fn forced_tool(body: &Value) -> Option<String> {
    let choice = body.get("tool_choice")?;
    choice
        .get("function")
        .and_then(|f| f.get("name"))
        .or_else(|| choice.get("name"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// True when the request says no tool may be called.
fn tools_refused(body: &Value) -> bool {
    match body.get("tool_choice") {
        Some(Value::String(s)) => s == "none",
        Some(v) => v.get("type").and_then(Value::as_str) == Some("none"),
        None => false,
    }
}

fn plan_answer(shared: &Shared, dialect: Dialect, model: &str, body: &Value, n: u64) -> Answer {
    if let Some(result) = trailing_tool_result(dialect, body) {
        return Answer::Text(tool_result_reply(&result));
    }
    let f = flags(model);
    let offered = offered_tools(dialect, body);
    let configured = shared.tool_call.lock().unwrap().clone();
    let wanted = f.contains(&"tools") || f.contains(&"parallel-tools") || configured.is_some();
    if offered.is_empty() || !wanted || tools_refused(body) {
        return Answer::Text(reply_text(shared, model, Some(body)));
    }
    let (name, arguments) = configured.unwrap_or_else(|| {
        let name = forced_tool(body).unwrap_or_else(|| offered[0].clone());
        (name, DEFAULT_TOOL_ARGUMENTS.to_string())
    });
    let mut names = vec![name];
    if f.contains(&"parallel-tools") {
        names.push(offered.get(1).unwrap_or(&offered[0]).clone());
    }
    let prefix = match dialect {
        Dialect::OpenAi => "call_fake",
        Dialect::Anthropic => "toolu_fake",
        Dialect::Ollama => "call_fake",
    };
    let calls = names
        .into_iter()
        .enumerate()
        .map(|(i, name)| FakeToolCall {
            id: format!("{prefix}{n:08}{i}"),
            name,
            arguments: arguments.clone(),
        })
        .collect();
    let preamble = f.contains(&"preamble").then(|| TOOL_PREAMBLE.to_string());
    Answer::Tools { preamble, calls }
}

impl Wire<'_> {
    /// A streamed answer that calls tools: optional text first, then each
    /// call with its arguments cut into [`tool_arg_pieces`].
    fn tool_answer(
        &self,
        s: &mut Script,
        preamble: Option<&str>,
        calls: &[FakeToolCall],
        input: u64,
        output: u64,
        delay: Duration,
    ) {
        let pause = |s: &mut Script| {
            if !delay.is_zero() {
                s.steps.push_back(Step::Pause(delay));
            }
        };
        match self.dialect {
            Dialect::OpenAi => {
                if let Some(text) = preamble {
                    self.open(s, input);
                    for t in tokens(text) {
                        pause(s);
                        self.token(s, &t);
                    }
                }
                for (i, call) in calls.iter().enumerate() {
                    let head = json!({"index": i, "id": call.id, "type": "function",
                        "function": {"name": call.name, "arguments": ""}});
                    let delta = if i == 0 && preamble.is_none() {
                        json!({"role": "assistant", "content": null, "tool_calls": [head], "refusal": null})
                    } else {
                        json!({"tool_calls": [head]})
                    };
                    s.event(self.openai_chunk(
                        json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": null}]),
                        Value::Null,
                    ));
                    for piece in tool_arg_pieces(&call.arguments) {
                        pause(s);
                        s.event(self.openai_chunk(
                            json!([{"index": 0, "delta": {"tool_calls": [{"index": i, "function": {"arguments": piece}}]}, "logprobs": null, "finish_reason": null}]),
                            Value::Null,
                        ));
                    }
                }
                self.openai_finish(s, "tool_calls", input, output);
            }
            Dialect::Anthropic => {
                s.event(self.anthropic_start(input));
                let mut block = 0;
                if let Some(text) = preamble {
                    s.event(Self::anthropic_event(
                        "content_block_start",
                        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                    ));
                    s.event("event: ping\ndata: {\"type\": \"ping\"}\n\n".to_string());
                    for t in tokens(text) {
                        pause(s);
                        self.token(s, &t);
                    }
                    s.event(Self::anthropic_event(
                        "content_block_stop",
                        json!({"type": "content_block_stop", "index": 0}),
                    ));
                    block = 1;
                }
                for call in calls {
                    s.event(Self::anthropic_event(
                        "content_block_start",
                        json!({"type": "content_block_start", "index": block, "content_block": {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}}),
                    ));
                    if block == 0 {
                        s.event("event: ping\ndata: {\"type\": \"ping\"}\n\n".to_string());
                    }
                    // The real API opens every tool block with an empty piece.
                    let mut pieces = vec![String::new()];
                    pieces.extend(tool_arg_pieces(&call.arguments));
                    for piece in pieces {
                        pause(s);
                        s.event(Self::anthropic_event(
                            "content_block_delta",
                            json!({"type": "content_block_delta", "index": block, "delta": {"type": "input_json_delta", "partial_json": piece}}),
                        ));
                    }
                    s.event(Self::anthropic_event(
                        "content_block_stop",
                        json!({"type": "content_block_stop", "index": block}),
                    ));
                    block += 1;
                }
                s.event(Self::anthropic_event(
                    "message_delta",
                    json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": output}}),
                ));
                s.event(Self::anthropic_event(
                    "message_stop",
                    json!({"type": "message_stop"}),
                ));
            }
            Dialect::Ollama => {
                if let Some(text) = preamble {
                    for t in tokens(text) {
                        pause(s);
                        self.token(s, &t);
                    }
                }
                // Ollama sends each call whole, in a line of its own, with
                // the arguments as an object and (before 0.12) no id.
                for (i, call) in calls.iter().enumerate() {
                    pause(s);
                    s.event(format!(
                        "{}\n",
                        json!({"model": self.model, "created_at": CREATED_AT, "message": {"role": "assistant", "content": "",
                            "tool_calls": [{"function": {"index": i, "name": call.name, "arguments": arguments_object(&call.arguments)}}]},
                            "done": false})
                    ));
                }
                self.close_with(s, input, output, "stop");
            }
        }
    }

    fn anthropic_start(&self, input: u64) -> String {
        Self::anthropic_event(
            "message_start",
            json!({"type": "message_start", "message": {"id": format!("msg_fake{:08}", self.id), "type": "message", "role": "assistant", "content": [], "model": self.model, "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": input, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 1}}}),
        )
    }

    fn openai_finish(&self, s: &mut Script, reason: &str, input: u64, output: u64) {
        s.event(self.openai_chunk(
            json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": reason}]),
            Value::Null,
        ));
        s.event(self.openai_chunk(json!([]), openai_usage(input, output)));
        s.event("data: [DONE]\n\n".to_string());
    }

    fn close_with(&self, s: &mut Script, input: u64, output: u64, reason: &str) {
        s.event(format!(
            "{}\n",
            json!({"model": self.model, "created_at": CREATED_AT, "message": {"role": "assistant", "content": ""},
                "done_reason": reason, "done": true, "total_duration": 4883583458u64, "load_duration": 1334875,
                "prompt_eval_count": input, "prompt_eval_duration": 342546000, "eval_count": output, "eval_duration": 4535599000u64})
        ));
    }

    /// The whole answer as one JSON object (`"stream": false`).
    fn whole(&self, answer: &Answer, input: u64, output: u64) -> Value {
        let (text, calls): (Option<&str>, &[FakeToolCall]) = match answer {
            Answer::Text(t) => (Some(t.as_str()), &[]),
            Answer::Tools { preamble, calls } => (preamble.as_deref(), calls.as_slice()),
        };
        match self.dialect {
            Dialect::OpenAi => {
                let mut message = json!({"role": "assistant", "content": text, "refusal": null, "annotations": []});
                if !calls.is_empty() {
                    message["tool_calls"] = calls
                        .iter()
                        .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
                        .collect();
                }
                let reason = if calls.is_empty() {
                    "stop"
                } else {
                    "tool_calls"
                };
                json!({"id": format!("chatcmpl-fake{:08}", self.id), "object": "chat.completion", "created": CREATED,
                    "model": self.model, "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": reason}],
                    "usage": openai_usage(input, output), "service_tier": "default", "system_fingerprint": "fp_fake0001"})
            }
            Dialect::Anthropic => {
                let mut content: Vec<Value> = text
                    .map(|t| json!({"type": "text", "text": t}))
                    .into_iter()
                    .collect();
                content.extend(calls.iter().map(|c| {
                    json!({"type": "tool_use", "id": c.id, "name": c.name, "input": arguments_object(&c.arguments)})
                }));
                let reason = if calls.is_empty() {
                    "end_turn"
                } else {
                    "tool_use"
                };
                json!({"id": format!("msg_fake{:08}", self.id), "type": "message", "role": "assistant", "model": self.model,
                    "content": content, "stop_reason": reason, "stop_sequence": null,
                    "usage": {"input_tokens": input, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": output}})
            }
            Dialect::Ollama => {
                let mut message = json!({"role": "assistant", "content": text.unwrap_or("")});
                if !calls.is_empty() {
                    message["tool_calls"] = calls
                        .iter()
                        .enumerate()
                        .map(|(i, c)| json!({"function": {"index": i, "name": c.name, "arguments": arguments_object(&c.arguments)}}))
                        .collect();
                }
                json!({"model": self.model, "created_at": CREATED_AT, "message": message, "done_reason": "stop", "done": true,
                    "total_duration": 4883583458u64, "load_duration": 1334875, "prompt_eval_count": input,
                    "prompt_eval_duration": 342546000, "eval_count": output, "eval_duration": 4535599000u64})
            }
        }
    }
}

fn openai_usage(input: u64, output: u64) -> Value {
    json!({"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}})
}

/// A call's arguments as the object Anthropic and Ollama carry.
fn arguments_object(arguments: &str) -> Value {
    serde_json::from_str(arguments).expect("the fake's tool arguments are a JSON object")
}

/// Texts of an embeddings request's `input`: a string or an array of them.
fn embedding_inputs(body: &Value) -> Option<Vec<String>> {
    match body.get("input")? {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => None,
    }
}

/// `POST /openai/v1/embeddings` and `POST /ollama/api/embed`.
fn embeddings(shared: &Shared, dialect: Dialect, body: &Value, key: Option<String>) -> Response {
    if key.as_deref() == Some(REJECTED_KEY) {
        return error_response(dialect, 401, &key, "");
    }
    let model = body.get("model").and_then(Value::as_str).unwrap_or("");
    if shared
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return error_response(dialect, 503, &key, model);
    }
    let f = flags(model);
    if f.contains(&"missing-model") {
        return error_response(dialect, 404, &key, model);
    }
    if f.contains(&"500") {
        return error_response(dialect, 500, &key, model);
    }
    let Some(inputs) = embedding_inputs(body) else {
        let body = match dialect {
            Dialect::Ollama => json!({"error": "invalid input type"}),
            _ => {
                json!({"error": {"message": "'input' : input must be a string or an array of strings (this fake takes no token arrays)", "type": "invalid_request_error", "param": null, "code": null}})
            }
        };
        return json_response(400, &body);
    };
    let dims = body
        .get("dimensions")
        .and_then(Value::as_u64)
        .map_or(EMBEDDING_DIMS, |d| d as usize);
    let tokens: u64 = inputs.iter().map(|t| word_count(t)).sum();
    let vectors: Vec<Vec<f32>> = inputs.iter().map(|t| fake_embedding(t, dims)).collect();
    match dialect {
        Dialect::Ollama => json_response(
            200,
            &json!({"model": model, "embeddings": vectors, "total_duration": 14143917u64,
                "load_duration": 1019500, "prompt_eval_count": tokens}),
        ),
        _ => {
            let base64 = body.get("encoding_format").and_then(Value::as_str) == Some("base64");
            let data: Vec<Value> = vectors
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let embedding = if base64 {
                        use base64::Engine as _;
                        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                        json!(base64::engine::general_purpose::STANDARD.encode(bytes))
                    } else {
                        json!(v)
                    };
                    json!({"object": "embedding", "index": i, "embedding": embedding})
                })
                .collect();
            json_response(
                200,
                &json!({"object": "list", "data": data, "model": model,
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
            )
        }
    }
}

/// `POST /ollama/api/show`: the model's architecture, context length and
/// capabilities, as Ollama reports them.
fn show(shared: &Shared, body: &Value) -> Response {
    let model = body
        .get("model")
        .or_else(|| body.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let f = flags(model);
    if f.contains(&"missing-model") {
        return json_response(404, &json!({"error": format!("model '{model}' not found")}));
    }
    if f.contains(&"500") {
        return json_response(500, &json!({"error": OLLAMA_500}));
    }
    let embedding = model.contains("embed");
    let (arch, default_ctx, capabilities) = if embedding {
        ("bert", EMBEDDING_CONTEXT_LENGTH, json!(["embedding"]))
    } else {
        (
            "llama",
            DEFAULT_CONTEXT_LENGTH,
            json!(["completion", "tools"]),
        )
    };
    let ctx = shared
        .context_lengths
        .lock()
        .unwrap()
        .get(model)
        .copied()
        .unwrap_or(default_ctx);
    let mut info = serde_json::Map::new();
    info.insert("general.architecture".into(), json!(arch));
    info.insert("general.file_type".into(), json!(15));
    info.insert("general.parameter_count".into(), json!(3212749888u64));
    info.insert(format!("{arch}.context_length"), json!(ctx));
    info.insert(format!("{arch}.embedding_length"), json!(3072));
    json_response(
        200,
        &json!({"license": "", "modelfile": format!("FROM {model}\n"), "parameters": "stop \"<|eot_id|>\"",
            "template": "{{ .Prompt }}",
            "details": {"parent_model": "", "format": "gguf", "family": arch, "families": [arch],
                "parameter_size": "3.2B", "quantization_level": "Q4_K_M"},
            "model_info": info, "capabilities": capabilities,
            "modified_at": "2024-11-01T10:00:00.000000+01:00"}),
    )
}

/// Serves `app` over TLS: HTTP/2 or HTTP/1.1 as ALPN agreed, at most
/// `max_streams` HTTP/2 streams open at once on a connection.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    max_streams: u32,
    app: Router,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let mut b =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            b.http2().max_concurrent_streams(max_streams);
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ = b
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
