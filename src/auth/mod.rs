//! Who is calling: sessions (cookie + CSRF), JWT access tokens, refresh
//! tokens and API keys. The [`CurrentUser`] and [`Admin`] extractors that
//! every protected handler takes are implemented in `http::extract`.

pub mod device;
pub mod grant;
pub mod password;
pub mod throttle;
pub mod tokens;
pub mod totp;
pub mod verify;

/// The username rules live in a leaf module (the store keys its name index
/// with them); sign-in and registration reach them here.
pub use crate::username;
pub use verify::Verifier;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use std::net::IpAddr;
use uuid::Uuid;

use crate::error::AppError;
use crate::store::{Role, User};

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
    pub fn from_parts(parts: &Parts) -> Option<Credential> {
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

/// Checks a new username and returns the form to store (see [`username`]),
/// or a 400 saying what a name may be.
pub fn validate_username(name: &str) -> Result<String, AppError> {
    username::normalize(name).ok_or_else(|| {
        AppError::validation(
            "username must be 3 to 50 characters of letters (a–z), digits and underscore",
        )
    })
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
