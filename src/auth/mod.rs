//! Who is calling: sessions (cookie + CSRF), JWT access tokens, refresh
//! tokens and API keys, resolved by the [`CurrentUser`] and [`Admin`]
//! extractors that every protected handler takes.

pub mod device;
pub mod grant;
pub mod keyfile;
pub mod password;
pub mod throttle;
pub mod tokens;
pub mod username;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Method, header};
use std::net::{IpAddr, SocketAddr};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::app::AppState;
use crate::error::AppError;
use crate::store::{Role, User, UserStatus};

pub const SESSION_COOKIE: &str = "confab_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// API key scopes. `read` covers safe methods, `write` unsafe ones, `admin`
/// the admin routes (only for admins' keys).
pub const SCOPES: &[&str] = &["read", "write", "admin"];

/// How the caller proved who they are.
#[derive(Debug, Clone)]
pub enum AuthVia {
    Session {
        session_id: Uuid,
        csrf: String,
    },
    Jwt,
    ApiKey {
        key_id: Uuid,
        scopes: Vec<String>,
        expires_at: Option<i64>,
    },
}

/// The signed-in, active user making this request. Handlers that take it
/// cannot run for anonymous or disabled callers, and pass `user.id` to every
/// store call so ownership is always checked.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub user: User,
    pub via: AuthVia,
}

impl CurrentUser {
    pub fn id(&self) -> Uuid {
        self.user.id
    }
    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
            && match &self.via {
                AuthVia::ApiKey { scopes, .. } => scopes.iter().any(|s| s == "admin"),
                _ => true,
            }
    }
    pub fn session_id(&self) -> Option<Uuid> {
        match &self.via {
            AuthVia::Session { session_id, .. } => Some(*session_id),
            _ => None,
        }
    }
}

/// An admin making this request.
#[derive(Debug, Clone)]
pub struct Admin(pub CurrentUser);

/// The caller's address and user agent, for audit and throttling.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: IpAddr,
    pub user_agent: Option<String>,
}

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

pub fn cookie_value(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

fn bearer(parts: &Parts) -> Option<String> {
    let v = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
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

/// What a caller presented: the session cookie's or API key's hash, or a
/// JWT. A WebSocket keeps it to check again on every frame that acts
/// ([`recheck`]), so a socket does not outlive a logout, a disabled account
/// or a password reset.
#[derive(Clone)]
pub enum Credential {
    Session(Vec<u8>),
    Jwt(String),
    ApiKey(Vec<u8>),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a token or its hash.
        f.write_str(match self {
            Credential::Session(_) => "Credential::Session(***)",
            Credential::Jwt(_) => "Credential::Jwt(***)",
            Credential::ApiKey(_) => "Credential::ApiKey(***)",
        })
    }
}

impl Credential {
    /// `Authorization: Bearer` wins over the cookie.
    fn from_parts(parts: &Parts) -> Option<Credential> {
        if let Some(token) = bearer(parts) {
            return Some(if token.starts_with(tokens::API_KEY_PREFIX) {
                Credential::ApiKey(tokens::hash_token(&token))
            } else {
                Credential::Jwt(token)
            });
        }
        cookie_value(parts, SESSION_COOKIE).map(|t| Credential::Session(tokens::hash_token(&t)))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Credential {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        Credential::from_parts(parts).ok_or(AppError::AuthRequired)
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
                .get_api_key(hash)?
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
                    .map_err(|_| AppError::AuthRequired)?,
            )?;
            if key.last_used_at.is_none_or(|t| now - t >= 60) {
                let store = state.store.clone();
                let hash = hash.clone();
                tokio::task::spawn_blocking(move || store.touch_api_key(&hash, now));
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
                .get_session(hash)?
                .ok_or(AppError::AuthRequired)?;
            let idle = state.cfg.auth.session_idle_hours as i64 * 3600;
            if session.expires_at <= now || session.last_seen + idle <= now {
                let store = state.store.clone();
                let (uid, sid) = (session.user_id, session.id);
                tokio::task::spawn_blocking(move || store.delete_session(uid, sid));
                return Err(AppError::SessionExpired);
            }
            let user = active(
                state
                    .store
                    .get_user(session.user_id)
                    .map_err(|_| AppError::AuthRequired)?,
            )?;
            // last_seen only needs minute precision; skip the fsync on most requests.
            if now - session.last_seen >= 60 {
                let store = state.store.clone();
                let hash = hash.clone();
                tokio::task::spawn_blocking(move || store.touch_session(&hash, now));
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

/// Checks a new username and returns the form to store (see [`username`]).
pub fn validate_username(name: &str) -> Result<String, AppError> {
    username::validate(name)
}

pub fn validate_email(email: &str) -> Result<(), AppError> {
    let ok = email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(a, b)| !a.is_empty() && b.contains('.') && !b.starts_with('.'))
        && !email.contains(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(AppError::validation(
            "email must be a valid address like name@example.com",
        ))
    }
}
