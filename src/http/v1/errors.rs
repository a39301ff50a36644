//! Errors of `/v1` in each API's own shape, so the official SDKs raise
//! their typed exceptions: OpenAI's `{"error":{"message","type","param",
//! "code"}}` and Anthropic's `{"type":"error","error":{"type","message"},
//! "request_id"}`, with the statuses those APIs use. Every confab error
//! (`AppError`) maps onto them by its status and stable code; errors made
//! by the layers outside the `/v1` handlers (body limit, panics, unknown
//! methods) are reshaped by [`reshape`].

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::{AppError, current_request_id};

/// Which API a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    OpenAi,
    Anthropic,
}

impl Api {
    /// Anthropic for `/v1/messages`, OpenAI for its own endpoints, and for
    /// the rest (the model list, unknown paths) Anthropic when the request
    /// carries `anthropic-version` (the Anthropic SDKs always send it).
    pub fn of(path: &str, headers: &axum::http::HeaderMap) -> Api {
        if path == "/v1/messages" || path.starts_with("/v1/messages/") {
            Api::Anthropic
        } else if path == "/v1/chat/completions" || path == "/v1/embeddings" {
            Api::OpenAi
        } else if headers.contains_key("anthropic-version") {
            Api::Anthropic
        } else {
            Api::OpenAi
        }
    }
}

/// Marks a response whose error body is already in its API's shape.
#[derive(Clone, Copy)]
struct Shaped;

/// One `/v1` error.
#[derive(Debug)]
pub struct V1Error {
    pub api: Api,
    pub status: StatusCode,
    /// OpenAI's `type`.
    pub kind: &'static str,
    /// OpenAI's `code`: a stable string.
    pub code: &'static str,
    /// The request field at fault, when one is.
    pub param: Option<String>,
    pub message: String,
    pub retry_after: Option<u64>,
}

/// OpenAI's `type` and `code` for a confab status and code.
fn openai_kind(status: StatusCode, code: &str) -> (&'static str, &'static str) {
    match (status.as_u16(), code) {
        (401, _) => ("authentication_error", "invalid_api_key"),
        (403, _) => ("permission_error", "permission_denied"),
        (404, "MODEL_NOT_FOUND") => ("invalid_request_error", "model_not_found"),
        (404, _) => ("invalid_request_error", "not_found"),
        (405, _) => ("invalid_request_error", "method_not_allowed"),
        (413, _) => ("invalid_request_error", "request_too_large"),
        (429, "QUOTA_EXCEEDED") => ("insufficient_quota", "insufficient_quota"),
        (429, _) => ("rate_limit_error", "rate_limit_exceeded"),
        (502, "PROVIDER_UNREACHABLE") => ("api_error", "provider_unreachable"),
        (502, _) => ("api_error", "provider_error"),
        (504, _) => ("api_error", "provider_timeout"),
        (503, _) => ("server_error", "unavailable"),
        (s, _) if s >= 500 => ("server_error", "internal_error"),
        _ => ("invalid_request_error", "invalid_request"),
    }
}

/// Anthropic's error `type` for a status.
fn anthropic_kind(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    }
}

impl V1Error {
    fn new(api: Api, status: StatusCode, code: &str, message: String) -> V1Error {
        let (kind, code) = openai_kind(status, code);
        V1Error {
            api,
            status,
            kind,
            code,
            param: None,
            message,
            retry_after: None,
        }
    }

    /// A 400 `invalid_request_error` about `param`.
    pub fn invalid(api: Api, param: Option<&str>, message: impl Into<String>) -> V1Error {
        V1Error {
            param: param.map(str::to_string),
            ..V1Error::new(
                api,
                StatusCode::BAD_REQUEST,
                "VALIDATION_FAILED",
                message.into(),
            )
        }
    }

    /// A 401: no API key, or one confab does not know.
    pub fn unauthenticated(api: Api, message: impl Into<String>) -> V1Error {
        V1Error::new(
            api,
            StatusCode::UNAUTHORIZED,
            "AUTH_REQUIRED",
            message.into(),
        )
    }

    /// The 404 of a path under `/v1` that is not an endpoint.
    pub fn no_endpoint(api: Api, method: &str, path: &str) -> V1Error {
        V1Error::new(
            api,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("Invalid URL ({method} {path}): confab serves no such /v1 endpoint"),
        )
    }

    pub fn from_app(api: Api, e: AppError) -> V1Error {
        if let AppError::Internal(cause) = &e {
            tracing::error!(request_id = %current_request_id(), error = %format!("{cause:#}"), "internal error");
        }
        let status = e.status();
        let retry_after = match &e {
            AppError::RateLimited { retry_after, .. } => Some(*retry_after),
            AppError::QuotaExceeded { retry_after, .. } => *retry_after,
            _ => None,
        };
        let message = match &e {
            AppError::AuthRequired => {
                "Incorrect API key provided: send a confab API key (cfk_…) as `Authorization: Bearer` or `x-api-key`".into()
            }
            AppError::SessionExpired => "This API key has expired".into(),
            other => other.public_message(),
        };
        V1Error {
            retry_after,
            ..V1Error::new(api, status, e.code(), message)
        }
    }

    pub fn body(&self) -> Value {
        match self.api {
            Api::OpenAi => json!({"error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }}),
            Api::Anthropic => json!({
                "type": "error",
                "error": {"type": anthropic_kind(self.status), "message": self.message},
                "request_id": current_request_id(),
            }),
        }
    }

    /// The in-stream form: OpenAI's `data:` chunk carrying `error`, or
    /// Anthropic's `event: error`.
    pub fn sse_event(&self) -> axum::response::sse::Event {
        let e = axum::response::sse::Event::default().data(self.body().to_string());
        match self.api {
            Api::OpenAi => e,
            Api::Anthropic => e.event("error"),
        }
    }
}

impl IntoResponse for V1Error {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&secs.max(1).to_string()).expect("digits"),
            );
        }
        resp.extensions_mut().insert(Shaped);
        resp
    }
}

/// Largest error body reshaped; confab's own are a few hundred bytes.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Puts the errors answered on `/v1` paths by code outside the `/v1`
/// handlers (the body-size layer, the panic catcher, unknown methods) into
/// the API's shape, keeping their status and headers (`Retry-After`).
pub async fn reshape(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path != "/v1" && !path.starts_with("/v1/") {
        return next.run(req).await;
    }
    let api = Api::of(path, req.headers());
    let resp = next.run(req).await;
    if resp.status().as_u16() < 400 || resp.extensions().get::<Shaped>().is_some() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_ERROR_BODY)
        .await
        .unwrap_or_default();
    let (code, message) = match serde_json::from_slice::<Value>(&bytes) {
        Ok(v) => (
            v["code"].as_str().unwrap_or("").to_string(),
            v["message"].as_str().unwrap_or("").to_string(),
        ),
        Err(_) => (String::new(), String::from_utf8_lossy(&bytes).into_owned()),
    };
    let message = if message.is_empty() {
        parts
            .status
            .canonical_reason()
            .unwrap_or("error")
            .to_string()
    } else {
        message
    };
    let e = V1Error::new(api, parts.status, &code, message);
    let body = serde_json::to_vec(&e.body()).unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_each_apis_types() {
        let e = V1Error::from_app(Api::OpenAi, AppError::ModelNotFound("gone".into()));
        assert_eq!(e.status, 404);
        assert_eq!(e.body()["error"]["code"], "model_not_found");
        let e = V1Error::from_app(
            Api::Anthropic,
            AppError::RateLimited {
                message: "slow down".into(),
                retry_after: 3,
            },
        );
        assert_eq!(e.body()["error"]["type"], "rate_limit_error");
        assert_eq!(e.retry_after, Some(3));
        let e = V1Error::from_app(
            Api::OpenAi,
            AppError::internal(anyhow::anyhow!("disk on fire")),
        );
        assert!(!e.body().to_string().contains("disk"));
        assert_eq!(e.body()["error"]["type"], "server_error");
    }
}
