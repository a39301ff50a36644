//! HTTP plumbing shared by the three providers: sending with retries (only
//! before the first body byte), turning upstream failures into
//! [`ProviderError`]s without leaking keys or URLs, and driving a wire decoder
//! over the response body under the idle timeout.

use std::error::Error as _;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use reqwest::header::HeaderMap;
use serde_json::Value;

use super::shards::InFlight;
use super::{ChatStream, ENDED_EARLY, EventQueue, ProviderError, ProviderOptions, StreamDecoder};

/// Error bodies larger than this are cut; the message is all we want from them.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Longest upstream message passed on to clients.
const MAX_MESSAGE_CHARS: usize = 500;

/// Who is being talked to, for error messages and key redaction. Carries the
/// key only so it can be scrubbed from anything the upstream echoes back.
#[derive(Clone)]
pub(crate) struct Origin {
    pub provider: String,
    pub key: Option<String>,
    /// Set for chat requests, so a 404 can be recognised as an unknown model.
    pub model: Option<String>,
}

/// The parts of an upstream JSON error body that matter.
#[derive(Debug, Default, Clone)]
pub(crate) struct ErrorDetail {
    pub message: String,
    pub code: Option<String>,
    pub kind: Option<String>,
}

impl Origin {
    pub fn timeout(&self, idle: Duration) -> ProviderError {
        ProviderError::Timeout(format!(
            "provider \"{}\" sent nothing for {}",
            self.provider,
            human_duration(idle)
        ))
    }

    pub fn unreachable(&self, e: &reqwest::Error) -> ProviderError {
        let reason = connect_reason(e);
        tracing::warn!(provider = %self.provider, reason, "provider unreachable");
        ProviderError::Unreachable(format!(
            "cannot reach provider \"{}\" ({reason})",
            self.provider
        ))
    }

    pub fn broken(&self, e: &reqwest::Error) -> ProviderError {
        tracing::warn!(provider = %self.provider, reason = %source_chain(e), "provider stream broke");
        ProviderError::Protocol(format!(
            "the connection to provider \"{}\" broke mid-answer",
            self.provider
        ))
    }

    pub fn error_from_body(
        &self,
        status: u16,
        retry_after: Option<u64>,
        body: &[u8],
    ) -> ProviderError {
        self.error_from_detail(status, retry_after, error_detail_bytes(body))
    }

    pub fn error_from_detail(
        &self,
        status: u16,
        retry_after_secs: Option<u64>,
        detail: ErrorDetail,
    ) -> ProviderError {
        let mut message = truncate(&redact(detail.message.trim(), self.key.as_deref()));
        if message.is_empty() {
            message = reqwest::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("no error message")
                .to_string();
        }
        let p = &self.provider;
        tracing::warn!(provider = %p, status, code = ?detail.code, kind = ?detail.kind, "provider returned an error");
        match status {
            401 | 403 => ProviderError::KeyRejected(format!(
                "provider \"{p}\" refused the API key (HTTP {status}): {message}"
            )),
            429 => ProviderError::RateLimited {
                message: format!("provider \"{p}\" is rate limiting requests: {message}"),
                retry_after_secs,
            },
            _ => match &self.model {
                Some(model) if model_missing(status, &message, &detail) => {
                    ProviderError::ModelNotFound(format!(
                        "model \"{model}\" was not found on provider \"{p}\""
                    ))
                }
                _ => ProviderError::Upstream { status, message },
            },
        }
    }
}

fn model_missing(status: u16, message: &str, d: &ErrorDetail) -> bool {
    if d.code.as_deref() == Some("model_not_found") {
        return true;
    }
    let lower = message.to_ascii_lowercase();
    let says_missing = lower.contains("not found") || lower.contains("does not exist");
    match status {
        // Anthropic's 404 reads `not_found_error` / "model: claude-x".
        404 => lower.contains("model") || d.kind.as_deref() == Some("not_found_error"),
        400 | 422 => lower.contains("model") && says_missing,
        _ => false,
    }
}

/// Pulls a message out of the error shapes in the wild: OpenAI and Anthropic
/// (`{"error":{"message"}}`), Ollama (`{"error":"…"}`), vLLM and friends
/// (`{"message"}`), FastAPI (`{"detail"}`), or plain text.
pub(crate) fn error_detail_bytes(body: &[u8]) -> ErrorDetail {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => error_detail(&v),
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            // An HTML error page says nothing a user can act on.
            let message = if text.starts_with('<') {
                String::new()
            } else {
                text.to_string()
            };
            ErrorDetail {
                message,
                ..Default::default()
            }
        }
    }
}

pub(crate) fn error_detail(v: &Value) -> ErrorDetail {
    let as_text = |v: Option<&Value>| -> Option<String> {
        match v? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    match v.get("error") {
        Some(Value::Object(e)) => {
            return ErrorDetail {
                message: as_text(e.get("message")).unwrap_or_default(),
                code: as_text(e.get("code")),
                kind: as_text(e.get("type")),
            };
        }
        Some(Value::String(s)) => {
            return ErrorDetail {
                message: s.clone(),
                ..Default::default()
            };
        }
        _ => {}
    }
    ErrorDetail {
        message: as_text(v.get("message"))
            .or_else(|| as_text(v.get("detail")))
            .unwrap_or_default(),
        code: as_text(v.get("code")),
        kind: as_text(v.get("type")),
    }
}

/// Upstreams echo keys back (OpenAI: "Incorrect API key provided: sk-ab***yz").
/// The configured key and anything shaped like a key become "***".
pub(crate) fn redact(message: &str, key: Option<&str>) -> String {
    let mut out = message.to_string();
    if let Some(k) = key.filter(|k| k.len() >= 4) {
        out = out.replace(k, "***");
    }
    const PREFIXES: [&str; 6] = ["sk-", "sk_", "gsk_", "xai-", "cfk_", "key-"];
    let key_head: Option<&str> = key.filter(|k| k.len() >= 12).map(|k| &k[..8]);
    let mut result = String::with_capacity(out.len());
    for (i, word) in out.split(' ').enumerate() {
        if i > 0 {
            result.push(' ');
        }
        let bare = word.trim_matches(|c: char| !c.is_alphanumeric() && c != '*');
        let keyish = PREFIXES.iter().any(|p| bare.starts_with(p))
            || key_head.is_some_and(|h| bare.starts_with(h))
            || (bare.contains("***") && bare.len() > 3);
        if keyish && !bare.is_empty() {
            result.push_str(&word.replace(bare, "***"));
        } else {
            result.push_str(word);
        }
    }
    result
}

fn truncate(s: &str) -> String {
    match s.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

pub(crate) fn human_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

fn source_chain(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut src = e.source();
    while let Some(s) = src {
        parts.push(s.to_string());
        src = s.source();
    }
    if parts.is_empty() {
        "unknown".into()
    } else {
        parts.join(": ")
    }
}

/// A short reason for a failed connect, without the URL reqwest puts in its
/// own Display (base URLs are admin-only information).
fn connect_reason(e: &reqwest::Error) -> &'static str {
    let mut src = e.source();
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            match io.kind() {
                ConnectionRefused => return "connection refused",
                ConnectionReset | ConnectionAborted | BrokenPipe => {
                    return "connection reset";
                }
                TimedOut => return "connection timed out",
                _ => {}
            }
        }
        let text = s.to_string().to_ascii_lowercase();
        if text.contains("dns") || text.contains("lookup") || text.contains("resolve") {
            return "host name not found";
        }
        if text.contains("unknownissuer") || text.contains("unknown issuer") {
            // A private CA: admins name it in `provider_ca_file`.
            return "its TLS certificate is not signed by a trusted authority";
        }
        if text.contains("certificate") || text.contains("tls") {
            return "TLS handshake failed";
        }
        src = s.source();
    }
    if e.is_timeout() {
        "connection timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "connection closed before an answer"
    }
}

/// Reads Retry-After (delta-seconds or HTTP-date) and OpenAI's finer
/// `retry-after-ms`, rounded up to whole seconds.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
    {
        return Some(Duration::from_millis(ms.ceil() as u64));
    }
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when =
        time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()?;
    let secs = (when - time::OffsetDateTime::now_utc())
        .whole_seconds()
        .max(0);
    Some(Duration::from_secs(secs as u64))
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn retryable_status(status: u16) -> bool {
    // 501 and 505 say the request can never work; every other 5xx may pass.
    matches!(status, 408 | 500 | 502 | 503 | 504) || (506..600).contains(&status)
}

/// Reads a (small) error body; silence or a broken connection just leaves
/// the message empty, the status still says enough.
async fn read_error_body(mut resp: reqwest::Response, idle: Duration) -> Vec<u8> {
    let _place = place_of(&mut resp);
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while body.len() < MAX_ERROR_BODY {
        match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(Ok(chunk))) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_ERROR_BODY);
    body
}

/// Sends `rb`. Over HTTPS with `options.shards`, on a client with room for
/// one more request in flight, whose place the response carries in its
/// extensions until its body is read (see [`super::shards`]).
async fn dispatch(
    options: &ProviderOptions,
    rb: reqwest::RequestBuilder,
) -> reqwest::Result<reqwest::Response> {
    let Some(shards) = &options.shards else {
        return rb.send().await;
    };
    let (client, req) = rb.build_split();
    let req = req?;
    if req.url().scheme() != "https" {
        return client.execute(req).await;
    }
    let (client, place) = shards.pick();
    let mut resp = client.execute(req).await?;
    resp.extensions_mut().insert(place);
    Ok(resp)
}

/// The place a response holds on its client (see [`dispatch`]), to keep
/// while its body is read.
fn place_of(resp: &mut reqwest::Response) -> Option<InFlight> {
    resp.extensions_mut().remove::<InFlight>()
}

/// Sends a request built by `build` (called again for every attempt) and
/// returns the response once it has a success status.
///
/// Retried with backoff: connect failures, 408 and 5xx (except 501/505). A
/// 429 is returned at once as `RateLimited` unless its Retry-After is at most
/// one second, in which case it is waited out and retried once: sleeping for
/// longer would hold the user's request hostage to someone else's quota.
pub(crate) async fn send(
    origin: &Origin,
    options: &ProviderOptions,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<reqwest::Response, ProviderError> {
    let attempts = options.retry.attempts.max(1);
    let mut attempt = 1;
    let mut waited_out_429 = false;
    loop {
        let err = match tokio::time::timeout(options.idle_timeout, dispatch(options, build())).await
        {
            Err(_) => return Err(origin.timeout(options.idle_timeout)),
            Ok(Err(e)) if e.is_builder() => {
                return Err(ProviderError::Protocol(format!(
                    "could not build a request for provider \"{}\"",
                    origin.provider
                )));
            }
            Ok(Err(e)) => origin.unreachable(&e),
            Ok(Ok(resp)) if is_redirect(resp.status()) => {
                match cross_origin(origin, options, &build, resp).await? {
                    resp if resp.status().is_success() => return Ok(resp),
                    resp => {
                        let status = resp.status().as_u16();
                        let body = read_error_body(resp, options.idle_timeout).await;
                        return Err(origin.error_from_body(status, None, &body));
                    }
                }
            }
            Ok(Ok(resp)) if resp.status().is_success() => return Ok(resp),
            Ok(Ok(resp)) => {
                let status = resp.status().as_u16();
                let wait = retry_after(resp.headers());
                let body = read_error_body(resp, options.idle_timeout).await;
                let err = origin.error_from_body(status, wait.map(ceil_secs), &body);
                if status == 429 {
                    match wait {
                        Some(w) if w <= Duration::from_secs(1) && !waited_out_429 => {
                            waited_out_429 = true;
                            tracing::info!(provider = %origin.provider, "rate limited briefly; retrying once");
                            tokio::time::sleep(w).await;
                            continue;
                        }
                        _ => return Err(err),
                    }
                }
                if !retryable_status(status) {
                    return Err(err);
                }
                err
            }
        };
        if attempt >= attempts {
            return Err(err);
        }
        let delay = options.retry.backoff(attempt);
        tracing::info!(provider = %origin.provider, attempt, code = err.code(), delay_ms = delay.as_millis() as u64, "retrying provider request");
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

fn is_redirect(status: reqwest::StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// Headers that carry a credential, by any provider's convention.
const CREDENTIAL_HEADERS: [&str; 6] = [
    "authorization",
    "x-api-key",
    "api-key",
    "proxy-authorization",
    "cookie",
    "x-goog-api-key",
];

/// A redirect the client stopped at because it leads to another origin
/// (the client follows same-origin ones itself, see `default_client`).
/// Refused unless `options.cross_origin_redirects`; then followed hop by hop
/// with every credential header removed, so the key never leaves the
/// configured origin. The target host is logged for admins, never put in
/// the error users see.
async fn cross_origin(
    origin: &Origin,
    options: &ProviderOptions,
    build: &impl Fn() -> reqwest::RequestBuilder,
    mut resp: reqwest::Response,
) -> Result<reqwest::Response, ProviderError> {
    let p = &origin.provider;
    let mut hops = 0;
    let mut method_get = false;
    while is_redirect(resp.status()) {
        let status = resp.status().as_u16();
        let from = resp.url().clone();
        let target = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| from.join(l).ok())
            .filter(|u| matches!(u.scheme(), "http" | "https"));
        let Some(target) = target else {
            tracing::warn!(provider = %p, status, "provider answered a redirect without a usable Location");
            return Err(ProviderError::Protocol(format!(
                "provider \"{p}\" answered a redirect (HTTP {status}) without a usable location"
            )));
        };
        let to_host = target.host_str().unwrap_or_default().to_string();
        if !options.cross_origin_redirects {
            tracing::warn!(provider = %p, status, to_host, "provider redirected to another host; not followed (provider_cross_origin_redirects is off)");
            return Err(ProviderError::Redirected(format!(
                "provider \"{p}\" redirected to another host, which confab does not follow; an admin can check the provider's base_url"
            )));
        }
        hops += 1;
        if hops > super::MAX_REDIRECTS {
            return Err(ProviderError::Protocol(format!(
                "provider \"{p}\" redirected too many times"
            )));
        }
        tracing::info!(provider = %p, status, to_host, "following a provider redirect to another host, without credentials");
        let (client, req) = build().build_split();
        let mut req = req.map_err(|_| {
            ProviderError::Protocol(format!("could not build a request for provider \"{p}\""))
        })?;
        for h in CREDENTIAL_HEADERS {
            req.headers_mut().remove(h);
        }
        // As browsers do: 303, and 301/302 after a POST, continue as GET.
        method_get |=
            status == 303 || (matches!(status, 301 | 302) && req.method() == reqwest::Method::POST);
        if method_get {
            *req.method_mut() = reqwest::Method::GET;
            *req.body_mut() = None;
            req.headers_mut().remove(reqwest::header::CONTENT_TYPE);
            req.headers_mut().remove(reqwest::header::CONTENT_LENGTH);
        }
        *req.url_mut() = target;
        resp = match tokio::time::timeout(options.idle_timeout, client.execute(req)).await {
            Err(_) => return Err(origin.timeout(options.idle_timeout)),
            Ok(Err(e)) => return Err(origin.unreachable(&e)),
            Ok(Ok(r)) => r,
        };
    }
    Ok(resp)
}

/// Reads a whole (JSON) success body, bounded by the idle timeout per chunk.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
    origin: &Origin,
    mut resp: reqwest::Response,
    idle: Duration,
) -> Result<T, ProviderError> {
    let _place = place_of(&mut resp);
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    loop {
        match tokio::time::timeout(idle, stream.next()).await {
            Err(_) => return Err(origin.timeout(idle)),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(origin.broken(&e)),
            Ok(Some(Ok(chunk))) => body.extend_from_slice(&chunk),
        }
    }
    serde_json::from_slice(&body).map_err(|e| {
        ProviderError::Protocol(format!(
            "provider \"{}\" sent an unreadable answer: {e}",
            origin.provider
        ))
    })
}

/// Turns a response body into the event stream: reads with the idle timeout
/// on every chunk, feeds the decoder, stops at the terminal event or at the
/// first error (which is always the stream's last item).
pub(crate) fn drive<D: StreamDecoder>(
    mut resp: reqwest::Response,
    decoder: D,
    origin: Origin,
    idle: Duration,
) -> ChatStream {
    struct State<D> {
        body: BoxStream<'static, reqwest::Result<Bytes>>,
        decoder: D,
        queue: EventQueue,
        reading: bool,
        origin: Origin,
        idle: Duration,
        /// Held until the answer's stream is dropped.
        _place: Option<InFlight>,
    }
    let state = State {
        _place: place_of(&mut resp),
        body: resp.bytes_stream().boxed(),
        decoder,
        queue: EventQueue::new(),
        reading: true,
        origin,
        idle,
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.queue.pop_front() {
                if item.is_err() {
                    st.queue.clear();
                    st.reading = false;
                }
                return Some((item, st));
            }
            if !st.reading || st.decoder.is_done() {
                return None;
            }
            match tokio::time::timeout(st.idle, st.body.next()).await {
                Err(_) => {
                    st.reading = false;
                    st.queue.push_back(Err(st.origin.timeout(st.idle)));
                }
                Ok(Some(Ok(bytes))) => st.decoder.feed(&bytes, &mut st.queue),
                Ok(Some(Err(e))) => {
                    st.reading = false;
                    st.queue.push_back(Err(st.origin.broken(&e)));
                }
                Ok(None) => {
                    st.reading = false;
                    st.decoder.finish(&mut st.queue);
                    let failed = st.queue.iter().any(|r| r.is_err());
                    if !st.decoder.is_done() && !failed {
                        st.queue
                            .push_back(Err(ProviderError::Protocol(ENDED_EARLY.into())));
                    }
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(model: Option<&str>) -> Origin {
        Origin {
            provider: "p".into(),
            key: Some("sk-proj-SECRETSECRET1234".into()),
            model: model.map(Into::into),
        }
    }

    #[test]
    fn keys_are_redacted() {
        let o = origin(None);
        let e = o.error_from_body(
            401,
            None,
            br#"{"error":{"message":"Incorrect API key provided: sk-proj-SE***1234. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
        );
        let s = e.to_string();
        assert!(matches!(e, ProviderError::KeyRejected(_)));
        assert!(!s.contains("sk-"), "{s}");
        assert!(!s.contains("1234"), "{s}");
        assert!(s.contains("refused the API key"), "{s}");
        assert_eq!(
            redact(
                "key sk-proj-SECRETSECRET1234 was bad",
                Some("sk-proj-SECRETSECRET1234")
            ),
            "key *** was bad"
        );
        assert_eq!(redact("Bearer abc", None), "Bearer abc");
        assert_eq!(redact("use (sk-abc) here", None), "use (***) here");
    }

    #[test]
    fn error_shapes() {
        let d = error_detail_bytes(
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert_eq!(d.message, "Overloaded");
        assert_eq!(d.kind.as_deref(), Some("overloaded_error"));
        let d = error_detail_bytes(br#"{"error":"model \"x\" not found, try pulling it first"}"#);
        assert_eq!(d.message, "model \"x\" not found, try pulling it first");
        let d = error_detail_bytes(br#"{"object":"error","message":"The model `x` does not exist.","type":"NotFoundError","param":null,"code":404}"#);
        assert_eq!(d.code.as_deref(), Some("404"));
        assert_eq!(d.message, "The model `x` does not exist.");
        let d = error_detail_bytes(b"<html><body>502</body></html>");
        assert_eq!(d.message, "");
        let d = error_detail_bytes(b"404 page not found\n");
        assert_eq!(d.message, "404 page not found");
    }

    #[test]
    fn statuses_classify() {
        let chat = origin(Some("nope"));
        assert!(matches!(
            chat.error_from_body(
                404,
                None,
                br#"{"type":"error","error":{"type":"not_found_error","message":"model: nope"}}"#
            ),
            ProviderError::ModelNotFound(_)
        ));
        assert!(matches!(
            chat.error_from_body(404, None, b"404 page not found"),
            ProviderError::Upstream { status: 404, .. }
        ));
        assert!(matches!(
            chat.error_from_body(
                400,
                None,
                br#"{"error":{"message":"bad","code":"model_not_found"}}"#
            ),
            ProviderError::ModelNotFound(_)
        ));
        let e = chat.error_from_body(503, None, b"");
        assert_eq!(
            e,
            ProviderError::Upstream {
                status: 503,
                message: "Service Unavailable".into()
            }
        );
        let e = chat.error_from_body(429, Some(7), b"{}");
        assert_eq!(e.retry_after_secs(), Some(7));
        assert!(matches!(
            origin(None).error_from_body(404, None, b"{\"error\":\"model gone\"}"),
            ProviderError::Upstream { .. }
        ));
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        assert_eq!(ceil_secs(Duration::from_millis(1001)), 2);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(Duration::from_millis(300)), "300 ms");
        assert_eq!(human_duration(Duration::from_secs(60)), "60 s");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.5 s");
    }
}
