//! Checking a credential: a session (cookie + CSRF, checked by the HTTP
//! layer), a JWT access token or an API key, resolved to the active user it
//! belongs to. The HTTP extractors and the WebSocket (on every frame that
//! acts) call [`Verifier::verify`].

use uuid::Uuid;

use super::tokens::JwtKeys;
use super::{AuthVia, Credential, CurrentUser};
use crate::error::AppError;
use crate::store::{SharedStore, User, UserStatus};

/// What checking a credential needs.
pub struct Verifier<'a> {
    pub store: &'a SharedStore,
    pub jwt: &'a JwtKeys,
    /// Sessions unused this long have ended.
    pub session_idle_secs: i64,
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
impl Verifier<'_> {
    pub async fn verify(&self, cred: &Credential, needed: &str) -> Result<CurrentUser, AppError> {
        let now = crate::clock::now();
        match cred {
            Credential::ApiKey(hash) => {
                let key = self
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
                    self.store
                        .get_user(key.user_id)
                        .await
                        .map_err(|_| AppError::AuthRequired)?,
                )?;
                if key.last_used_at.is_none_or(|t| now - t >= 60) {
                    let store = self.store.clone();
                    let hash = hash.clone();
                    crate::store::background::spawn(async move {
                        let _ = store.touch_api_key(&hash, now).await;
                    });
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
                let claims = self.jwt.verify(token).ok_or(AppError::SessionExpired)?;
                let id = Uuid::parse_str(&claims.sub).map_err(|_| AppError::AuthRequired)?;
                let user = active(
                    self.store
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
                let session = self
                    .store
                    .get_session(hash)
                    .await?
                    .ok_or(AppError::AuthRequired)?;
                let idle = self.session_idle_secs;
                if session.expires_at <= now || session.last_seen + idle <= now {
                    let store = self.store.clone();
                    let (uid, sid) = (session.user_id, session.id);
                    tokio::spawn(async move { store.delete_session(uid, sid).await });
                    return Err(AppError::SessionExpired);
                }
                let user = active(
                    self.store
                        .get_user(session.user_id)
                        .await
                        .map_err(|_| AppError::AuthRequired)?,
                )?;
                // last_seen only needs minute precision; skip the fsync on most requests.
                if now - session.last_seen >= 60 {
                    let store = self.store.clone();
                    let hash = hash.clone();
                    crate::store::background::spawn(async move {
                        let _ = store.touch_session(&hash, now).await;
                    });
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
}
