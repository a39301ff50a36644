//! The HTTP surface: router assembly, the cross-cutting layers (request id,
//! request log, security headers, origin check, CORS, body limit, panic
//! catcher) and extractors whose rejections use the one error shape.
//! One file per resource holds its handlers.

pub mod admin;
pub mod assets;
pub mod auth;
pub mod branding;
pub mod chat;
pub mod collections;
pub mod conversations;
pub mod export;
pub mod extract;
pub mod files;
pub mod groups;
pub mod health;
pub mod keys;
pub mod limits_layer;
pub mod metrics;
pub mod models;
pub mod openapi;
pub mod own_keys;
pub mod presets;
pub mod providers;
pub mod search;
pub mod security;
pub mod shares;
pub mod sso;
pub mod tls;
pub mod usage;
pub mod v1;

use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use std::time::Instant;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::{AppError, REQUEST_ID};
use crate::state::AppState;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Strict by default: scripts and styles only from this origin, no framing.
/// Inline `style` attributes are allowed because KaTeX and syntax
/// highlighting emit them; inline script never is.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; manifest-src 'self'";

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(auth::routes())
        .merge(sso::routes())
        .merge(keys::routes())
        .merge(admin::routes())
        .merge(groups::routes())
        .merge(providers::routes())
        .merge(models::routes())
        .merge(conversations::routes())
        .merge(collections::routes())
        .merge(export::routes())
        .merge(chat::routes())
        .merge(search::routes())
        .merge(usage::routes())
        .merge(tls::routes())
        .merge(presets::routes())
        .merge(branding::routes())
        .merge(files::routes())
        .merge(security::routes())
        .merge(shares::routes())
        .route("/openapi.json", axum::routing::get(openapi::openapi_json))
        .fallback(api_not_found)
        .method_not_allowed_fallback(method_not_allowed);

    let mut app = Router::new()
        .nest("/api", api)
        .merge(health::routes())
        .route("/health/{*rest}", axum::routing::any(json_not_found))
        .merge(metrics::routes())
        .merge(v1::routes())
        .route("/s/{token}", axum::routing::get(shares::page))
        .fallback(assets::serve_asset)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.cfg.max_body_bytes))
        .layer(axum::Extension(BodyLimit(state.cfg.max_body_bytes)))
        .layer(middleware::from_fn_with_state(state.clone(), origin_check))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limits_layer::rate_limit,
        ));

    if !state.cfg.cors_origins.is_empty() {
        let origins: Vec<HeaderValue> = state
            .cfg
            .cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok())
            .collect();
        app = app.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_credentials(true)
                .allow_methods([
                    Method::GET,
                    Method::POST,
                    Method::PATCH,
                    Method::PUT,
                    Method::DELETE,
                ])
                .allow_headers([
                    header::CONTENT_TYPE,
                    header::AUTHORIZATION,
                    HeaderName::from_static(crate::auth::CSRF_HEADER),
                    HeaderName::from_static(REQUEST_ID_HEADER),
                    header::HeaderName::from_static("last-event-id"),
                ])
                .expose_headers([HeaderName::from_static(REQUEST_ID_HEADER)]),
        );
    }

    app.layer(CatchPanicLayer::custom(
        |_: Box<dyn std::any::Any + Send>| {
            AppError::internal(anyhow::anyhow!("handler panicked")).into_response()
        },
    ))
    .layer(middleware::from_fn_with_state(
        state.clone(),
        limits_layer::refuse_oversized_body,
    ))
    .layer(middleware::from_fn(v1::errors::reshape))
    .layer(middleware::from_fn(security_headers))
    .layer(middleware::from_fn(request_context))
    .layer(middleware::from_fn_with_state(
        state.clone(),
        limits_layer::track,
    ))
    .with_state(state)
}

async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}

/// A path outside `/api` that is not an app route either (`/health/…`):
/// JSON, never the browser app.
async fn json_not_found() -> AppError {
    AppError::NotFound("no such endpoint".into())
}

async fn api_not_found() -> AppError {
    AppError::NotFound("no such API endpoint".into())
}

fn valid_request_id(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Accepts or generates the request id, makes it available to error bodies,
/// echoes it, and logs one line per request (method, path without query,
/// status, duration, id — never bodies, cookies or tokens).
async fn request_context(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_request_id(v))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    req.headers_mut().insert(
        REQUEST_ID_HEADER,
        HeaderValue::from_str(&id).expect("validated header value"),
    );
    let mut resp = REQUEST_ID.scope(id.clone(), next.run(req)).await;
    resp.headers_mut().insert(
        REQUEST_ID_HEADER,
        HeaderValue::from_str(&id).expect("validated header value"),
    );
    let status = resp.status().as_u16();
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::warn!(%method, %path, status, duration_ms, request_id = %id, "request");
    } else {
        tracing::info!(%method, %path, status, duration_ms, request_id = %id, "request");
    }
    resp
}

/// One place for the headers every response carries.
async fn security_headers(req: Request, next: Next) -> Response {
    let hsts = req
        .extensions()
        .get::<OverTls>()
        .is_some_and(|t| t.0.hsts());
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    if hsts {
        // One year; no includeSubDomains: other names under the domain
        // may not serve https.
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    // File answers set their own, stricter policy (`sandbox`).
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The shared page sets `no-referrer`: its URL is the secret.
    if !h.contains_key(header::REFERRER_POLICY) {
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("strict-origin-when-cross-origin"),
        );
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// Marks requests that arrived over TLS (added by `app::serve_tls`); HSTS
/// is sent on their responses while a CA-issued certificate is in use.
#[derive(Clone)]
pub struct OverTls(pub std::sync::Arc<crate::tls::Tls>);

/// Browsers always send `Origin` on cross-site unsafe requests; refuse those
/// that do not come from this server or a configured CORS origin. This backs
/// up the CSRF token (and covers the unauthenticated auth routes).
async fn origin_check(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    // `/v1` takes API keys only, never the session cookie: a foreign page
    // cannot act with a browser's credentials there.
    let v1 = req.uri().path().starts_with("/v1/");
    if unsafe_method && !v1 && !origin_allowed(&state, req.headers()) {
        return AppError::CsrfInvalid.into_response();
    }
    next.run(req).await
}

/// True when the request has no `Origin` or comes from this server (by its
/// public URL or the Host it was reached at) or a configured CORS origin.
pub fn origin_allowed(state: &AppState, headers: &axum::http::HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let origin = origin
        .to_str()
        .unwrap_or("")
        .trim_end_matches('/')
        .to_ascii_lowercase();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase);
    let same_host =
        host.is_some_and(|h| origin == format!("http://{h}") || origin == format!("https://{h}"));
    same_host || state.allowed_origins.contains(&origin)
}

/// `axum::Json`, with rejections in the one error shape: malformed JSON and
/// wrong types are 400 VALIDATION_FAILED naming the field; an oversized body
/// is 413 PAYLOAD_TOO_LARGE.
///
/// Every request body is an object: a top-level array, string, number or
/// `null` is refused before serde sees it, because serde's derive would map
/// an array onto a struct by position (`["admin"]` setting a role). The
/// whole body must be valid UTF-8, including the fields the target type
/// ignores (serde skips those without checking them).
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;
    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map(|b| b.0)
            .unwrap_or(0);
        if !json_content_type(req.headers()) {
            return Err(AppError::validation(
                "request body must be JSON with Content-Type: application/json",
            ));
        }
        let bytes = match bytes::Bytes::from_request(req, state).await {
            Ok(b) => b,
            Err(rej) if rej.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(AppError::PayloadTooLarge(limit));
            }
            Err(rej) => return Err(AppError::Validation(rej.body_text())),
        };
        check_json_object(&bytes)?;
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rej) => Err(json_rejection(rej, limit)),
        }
    }
}

/// `application/json` or any `application/*+json`, parameters allowed (what
/// `axum::Json` accepts).
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let Some(sub) = essence.strip_prefix("application/") else {
        return false;
    };
    sub == "json" || (sub.ends_with("+json") && !sub.contains('/'))
}

/// The checks serde cannot make for us: valid UTF-8 everywhere, and an
/// object at the top level. An empty body is left to the parser, whose
/// message says so.
fn check_json_object(body: &[u8]) -> Result<(), AppError> {
    if let Err(e) = std::str::from_utf8(body) {
        return Err(AppError::Validation(format!(
            "request body is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        )));
    }
    match body
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        None | Some(b'{') => Ok(()),
        Some(_) => Err(AppError::validation("request body must be a JSON object")),
    }
}

/// The configured body limit, put in each request's extensions so the
/// rejection message can name it.
#[derive(Clone, Copy)]
struct BodyLimit(usize);

fn json_rejection(rej: JsonRejection, limit: usize) -> AppError {
    if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return AppError::PayloadTooLarge(limit);
    }
    match rej {
        JsonRejection::JsonDataError(e) => {
            let text = e.body_text();
            let detail = text
                .strip_prefix("Failed to deserialize the JSON body into the target type: ")
                .unwrap_or(&text);
            AppError::Validation(format!("invalid request body: {detail}"))
        }
        JsonRejection::JsonSyntaxError(e) => {
            let text = e.body_text();
            let detail = text
                .strip_prefix("Failed to parse the request body as JSON: ")
                .unwrap_or(&text);
            AppError::Validation(format!("request body is not valid JSON: {detail}"))
        }
        JsonRejection::MissingJsonContentType(_) => {
            AppError::validation("request body must be JSON with Content-Type: application/json")
        }
        other => AppError::Validation(other.body_text()),
    }
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `WebSocketUpgrade` with its rejections in the one error shape: a request
/// that is not an upgrade (a plain GET, a missing header) is 400
/// VALIDATION_FAILED instead of axum's plain-text answer.
pub struct WsUpgrade(pub axum::extract::ws::WebSocketUpgrade);

impl<S: Send + Sync> FromRequestParts<S> for WsUpgrade {
    type Rejection = AppError;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, AppError> {
        match axum::extract::ws::WebSocketUpgrade::from_request_parts(parts, state).await {
            Ok(u) => Ok(WsUpgrade(u)),
            Err(rej) if rej.status() == StatusCode::METHOD_NOT_ALLOWED => {
                Err(AppError::MethodNotAllowed)
            }
            Err(rej) => Err(AppError::Validation(format!(
                "this endpoint needs a WebSocket upgrade: {}",
                rej.body_text()
            ))),
        }
    }
}

/// `axum::extract::Query` with rejections as 400 VALIDATION_FAILED.
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, AppError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(AppError::Validation(format!(
                    "invalid query: {}",
                    e.body_text()
                        .trim_start_matches("Failed to deserialize query string: ")
                )))
            }
            Err(e) => Err(AppError::Validation(e.body_text())),
        }
    }
}

/// Parses an id from the path; anything that is not an id cannot exist, so
/// it is a 404 like any unknown id.
pub fn parse_id(raw: &str, what: &str) -> Result<uuid::Uuid, AppError> {
    uuid::Uuid::parse_str(raw).map_err(|_| AppError::not_found(what))
}

/// 201 with a JSON body.
pub fn created<T: serde::Serialize>(v: T) -> Response {
    (StatusCode::CREATED, axum::Json(v)).into_response()
}
