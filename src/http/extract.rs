//! The request extractors that need the server state or the limits layer:
//! [`CurrentUser`] and [`Admin`] (resolved from a session cookie + CSRF
//! token, a JWT or an API key, checked by [`crate::auth::verify`]) and
//! [`ClientInfo`].

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Method, header};
use std::net::{IpAddr, SocketAddr};
use subtle::ConstantTimeEq;

use crate::auth::{Admin, AuthVia, CSRF_HEADER, ClientInfo, Credential, CurrentUser};
use crate::error::AppError;
use crate::state::AppState;

impl<S: Send + Sync> FromRequestParts<S> for ClientInfo {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Resolved through the trusted proxies by the tracking layer.
        let ip = match parts.extensions.get::<crate::limits::ClientIp>() {
            Some(c) => c.0,
            None => parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
                .unwrap_or(IpAddr::from([127, 0, 0, 1])),
        };
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect());
        Ok(ClientInfo { ip, user_agent })
    }
}

fn is_safe(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

async fn authenticate(parts: &Parts, state: &AppState) -> Result<CurrentUser, AppError> {
    let cred = Credential::from_parts(parts).ok_or(AppError::AuthRequired)?;
    // Inside the nested /api router the URI has lost its prefix; the
    // original one still has it.
    let path = parts
        .extensions
        .get::<axum::extract::OriginalUri>()
        .map_or(parts.uri.path(), |u| u.0.path());
    let needed = if path.starts_with("/api/admin") {
        "admin"
    } else if is_safe(&parts.method) {
        "read"
    } else {
        "write"
    };
    let user = state.verifier().verify(&cred, needed).await?;
    if let AuthVia::Session { csrf, .. } = &user.via
        && !is_safe(&parts.method)
    {
        let sent = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !bool::from(sent.as_bytes().ct_eq(csrf.as_bytes())) {
            return Err(AppError::CsrfInvalid);
        }
    }
    if matches!(user.via, AuthVia::Session { .. }) && !open_before_enrolment(path) {
        require_enrolment(state, &user).await?;
    }
    Ok(user)
}

/// What a browser session may reach before the second factor the policy
/// requires is set up: who am I, signing out, and setting it up.
fn open_before_enrolment(path: &str) -> bool {
    matches!(path, "/api/auth/me" | "/api/auth/logout") || path.starts_with("/api/auth/two-factor")
}

/// Refuses a session whose user must use a second factor (the admins'
/// policy) and has none yet. API keys and tokens are not asked.
async fn require_enrolment(state: &AppState, user: &CurrentUser) -> Result<(), AppError> {
    if enrolment_required(state, &user.user).await? {
        return Err(AppError::TwoFactorEnrolmentRequired);
    }
    Ok(())
}

/// Whether the policy requires `user` to set up a second factor they do
/// not have yet.
pub async fn enrolment_required(
    state: &AppState,
    user: &crate::store::User,
) -> Result<bool, AppError> {
    let policy = state.two_factor_policy.get(&state.store).await?;
    if !policy.requires(user.role) {
        return Ok(false);
    }
    Ok(!state
        .store
        .get_two_factor(user.id)
        .await?
        .is_some_and(|t| t.enabled))
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        if let Some(u) = parts.extensions.get::<CurrentUser>() {
            return Ok(u.clone());
        }
        let u = authenticate(parts, state).await?;
        parts.extensions.insert(u.clone());
        Ok(u)
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let u = CurrentUser::from_request_parts(parts, state).await?;
        if !u.is_admin() {
            return Err(AppError::AdminRequired);
        }
        Ok(Admin(u))
    }
}
