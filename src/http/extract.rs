//! The request extractors that need the server state or the limits layer:
//! [`CurrentUser`] and [`Admin`] (resolved from a session cookie + CSRF
//! token, a JWT or an API key, see [`verify`]) and [`ClientInfo`].

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Method, header};
use std::net::{IpAddr, SocketAddr};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::auth::{Admin, AuthVia, CSRF_HEADER, ClientInfo, Credential, CurrentUser};
use crate::error::AppError;
use crate::state::AppState;
use crate::store::{User, UserStatus};

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

fn active(user: User) -> Result<User, AppError> {
    match user.status {
        UserStatus::Active => Ok(user),
        UserStatus::Disabled => Err(AppError::UserInactive),
    }
}

/// Checks `cred` as a request needing the API-key scope `needed` is
/// checked (CSRF aside: the caller checks that). A WebSocket calls it again
/// on every frame that acts (it passed the origin check at its upgrade):
/// the session or key must still exist and not have expired, the JWT must
/// not have expired, and the user must still be active.
pub async fn verify(
    state: &AppState,
    cred: &Credential,
    needed: &str,
) -> Result<CurrentUser, AppError> {
    let now = crate::clock::now();
    match cred {
        Credential::ApiKey(hash) => {
            let key = state
                .store
                .get_api_key(hash)
                .await?
                .ok_or(AppError::AuthRequired)?;
            if key.expires_at.is_some_and(|e| e <= now) {
                return Err(AppError::SessionExpired);
            }
            if !key.scopes.iter().any(|s| s == needed) {
                return Err(AppError::Forbidden(format!(
                    "this API key lacks the {needed:?} scope"
                )));
            }
            let user = active(
                state
                    .store
                    .get_user(key.user_id)
                    .await
                    .map_err(|_| AppError::AuthRequired)?,
            )?;
            if key.last_used_at.is_none_or(|t| now - t >= 60) {
                let store = state.store.clone();
                let hash = hash.clone();
                tokio::spawn(async move { store.touch_api_key(&hash, now).await });
            }
            Ok(CurrentUser {
                user,
                via: AuthVia::ApiKey {
                    key_id: key.id,
                    scopes: key.scopes,
                    expires_at: key.expires_at,
                },
            })
        }
        Credential::Jwt(token) => {
            let claims = state.jwt.verify(token).ok_or(AppError::SessionExpired)?;
            let id = Uuid::parse_str(&claims.sub).map_err(|_| AppError::AuthRequired)?;
            let user = active(
                state
                    .store
                    .get_user(id)
                    .await
                    .map_err(|_| AppError::AuthRequired)?,
            )?;
            Ok(CurrentUser {
                user,
                via: AuthVia::Jwt,
            })
        }
        Credential::Session(hash) => {
            let session = state
                .store
                .get_session(hash)
                .await?
                .ok_or(AppError::AuthRequired)?;
            let idle = state.cfg.auth.session_idle_hours as i64 * 3600;
            if session.expires_at <= now || session.last_seen + idle <= now {
                let store = state.store.clone();
                let (uid, sid) = (session.user_id, session.id);
                tokio::spawn(async move { store.delete_session(uid, sid).await });
                return Err(AppError::SessionExpired);
            }
            let user = active(
                state
                    .store
                    .get_user(session.user_id)
                    .await
                    .map_err(|_| AppError::AuthRequired)?,
            )?;
            // last_seen only needs minute precision; skip the fsync on most requests.
            if now - session.last_seen >= 60 {
                let store = state.store.clone();
                let hash = hash.clone();
                tokio::spawn(async move { store.touch_session(&hash, now).await });
            }
            Ok(CurrentUser {
                user,
                via: AuthVia::Session {
                    session_id: session.id,
                    csrf: session.csrf_secret,
                },
            })
        }
    }
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
    let user = verify(state, &cred, needed).await?;
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
    Ok(user)
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
