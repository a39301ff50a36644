//! The limiting HTTP layers: [`track`] (client address, request metrics,
//! open SSE streams, failed sign-ins) around everything, [`rate_limit`] on
//! the API and [`refuse_oversized_body`]. The limiters themselves live in
//! [`crate::limits`].

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use crate::auth::{CurrentUser, SESSION_COOKIE};
use crate::error::AppError;
use crate::limits::ClientIp;
use crate::limits::ip::limiter_key;
use crate::limits::metrics::{HttpLabels, RouteLabels};
use crate::limits::rate::{Class, Decision, noting};
use crate::state::AppState;

/// The route template for metrics: the matched path with `{id}` written
/// `:id` (braces inside label values trip up simple exposition parsers),
/// or a fixed label for what no route matched (so labels stay bounded).
fn route_label(req: &Request) -> String {
    match req.extensions().get::<MatchedPath>() {
        Some(p) => p.as_str().replace('{', ":").replace('}', ""),
        None if req.uri().path().starts_with("/api/") => "/api/(unmatched)".into(),
        None => "(static)".into(),
    }
}

/// Resolves the client address (trusted proxies) and records the request.
pub async fn track(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let ip = state.limits.proxies.client_ip(peer, req.headers());
    req.extensions_mut().insert(ClientIp(ip));
    let method = req.method().clone();
    let route = route_label(&req);
    let resp = next.run(req).await;
    let m = &state.limits.metrics;
    let status = resp.status();
    m.http_requests
        .get_or_create(&HttpLabels {
            method: method.to_string(),
            route: route.clone(),
            status: status.as_u16().to_string(),
        })
        .inc();
    m.http_duration
        .get_or_create(&RouteLabels {
            method: method.to_string(),
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    if status == StatusCode::UNAUTHORIZED
        && method == Method::POST
        && matches!(route.as_str(), "/api/auth/login" | "/api/auth/token")
    {
        m.login_failures.inc();
    }
    let sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !sse {
        return resp;
    }
    // Count the stream as open until its body is dropped.
    let gauge = m.sse_streams.clone();
    gauge.inc();
    let guard = DecOnDrop(gauge);
    let (parts, body) = resp.into_parts();
    let body = Body::from_stream(body.into_data_stream().map(move |chunk| {
        let _keep = &guard;
        chunk
    }));
    Response::from_parts(parts, body)
}

struct DecOnDrop(prometheus_client::metrics::gauge::Gauge);
impl Drop for DecOnDrop {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Credential routes, limited per IP by the stricter auth limiter.
fn is_auth_route(method: &Method, route: &str) -> bool {
    method == Method::POST
        && matches!(
            route,
            "/api/auth/login"
                | "/api/auth/register"
                | "/api/auth/token"
                | "/api/auth/refresh"
                | "/api/setup"
        )
}

fn has_credentials(req: &Request) -> bool {
    req.headers().contains_key(header::AUTHORIZATION)
        || req
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .any(|v| v.to_str().is_ok_and(|s| s.contains(SESSION_COOKIE)))
}

/// Every `/api` request counts against one limiter: the per-IP sign-in
/// failure budget on the credential routes (see [`credential_route`]), the
/// per-user limiter when the caller is signed in, else the per-IP limiter
/// for anonymous requests. Responses carry `RateLimit-Limit/Remaining/Reset`;
/// a refusal is 429 RATE_LIMITED with `Retry-After`.
pub async fn rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limits = &state.limits;
    if !req.uri().path().starts_with("/api/") {
        return next.run(req).await;
    }
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let auth_route = is_auth_route(req.method(), &route);
    // Sign-in throttling stays on even with `limits.enabled = false`.
    if !limits.rate.enabled && !auth_route {
        return next.run(req).await;
    }
    let ip = req
        .extensions()
        .get::<ClientIp>()
        .map(|c| c.0)
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    if auth_route {
        return credential_route(&state, ip, &route, req, next).await;
    }
    // Authenticate once here; the handler reuses the result.
    let user = if has_credentials(&req) {
        let (mut parts, body) = req.into_parts();
        let u = CurrentUser::from_request_parts(&mut parts, &state)
            .await
            .ok();
        (u, Request::from_parts(parts, body))
    } else {
        (None, req)
    };
    let (class, decision, req) = match user {
        (Some(u), req) => (Class::Api, limits.rate.api.check(&u.id()).await, req),
        (None, req) => (
            Class::Anon,
            limits.rate.anon.check(&limiter_key(ip)).await,
            req,
        ),
    };
    if !decision.allowed {
        return refuse(&state, class, decision);
    }
    let (mut resp, inner) = noting(next.run(req)).await;
    inner.unwrap_or(decision).apply(resp.headers_mut());
    resp
}

/// A 429 for `class`, with the limiter's headers.
fn refuse(state: &AppState, class: Class, decision: Decision) -> Response {
    state.limits.metrics.rate_limited(class.label());
    let what = match class {
        Class::Auth => "too many failed sign-in attempts from this address",
        Class::Anon => "too many requests from this address",
        _ => "too many requests",
    };
    let mut resp = AppError::RateLimited {
        message: format!("{what}; try again in {} s", decision.reset_secs),
        retry_after: decision.reset_secs,
    }
    .into_response();
    decision.apply(resp.headers_mut());
    resp
}

/// Runs `req`, reporting in the headers the decision a handler noted.
async fn run_noting(req: Request, next: Next) -> Response {
    let (mut resp, inner) = noting(next.run(req)).await;
    if let Some(d) = inner {
        d.apply(resp.headers_mut());
    }
    resp
}

/// The credential routes. Each *failed* answer is charged to the
/// per-address failure budget (their only limiter), which stays on even
/// with `limits.enabled = false`: successes are free, so a
/// household behind one address registering and signing in is never
/// refused, while guessing is. Sign-in (`login`, `token`) settles that
/// budget in the handler (`auth::throttle`), because a device that has
/// signed in to the account before is exempt from it and only the handler
/// knows which account is meant.
async fn credential_route(
    state: &AppState,
    ip: IpAddr,
    route: &str,
    req: Request,
    next: Next,
) -> Response {
    let limits = &state.limits;
    let key = limiter_key(ip);
    if matches!(route, "/api/auth/login" | "/api/auth/token") {
        return run_noting(req, next).await;
    }
    let attempt = match limits.rate.auth.begin(&key).await {
        Ok(a) => a,
        Err(d) => return refuse(state, Class::Auth, d),
    };
    let mut resp = next.run(req).await;
    let d = if resp.status().is_client_error() {
        attempt.fail()
    } else {
        attempt.succeed()
    };
    d.apply(resp.headers_mut());
    resp
}

/// Refuses a request whose declared `Content-Length` is over
/// `max_body_bytes` with 413 PAYLOAD_TOO_LARGE before any of the body is
/// read, instead of waiting for (and then discarding) the body. The
/// connection then closes, since the unread body cannot be skipped.
pub async fn refuse_oversized_body(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    // An upload is checked against the file limit by its handler (which
    // names that limit, before reading the body); other bodies against
    // `max_body_bytes`.
    if req.method() == Method::POST && req.uri().path() == "/api/files" {
        return next.run(req).await;
    }
    let path = req.uri().path();
    let limit = if req.method() == Method::POST && (path == "/api/import" || path == "/api/imports")
    {
        usize::try_from(state.settings().max_import_bytes).unwrap_or(usize::MAX)
    } else {
        state.cfg.max_body_bytes
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return AppError::PayloadTooLarge(limit).into_response();
    }
    next.run(req).await
}
