//! Tokens for programs: a short-lived JWT access token plus a rotating
//! refresh token; presenting a spent refresh token revokes its family.

use uuid::Uuid;

use super::{Actor, UserError, UserResult, audit};
use crate::auth::tokens::{self, JwtKeys};
use crate::store::{RefreshOutcome, RefreshToken, SharedStore, UserStatus};

/// A new access token and refresh token.
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
}

/// The token service: the store, the signing keys and the lifetimes.
pub struct Tokens<'a> {
    pub store: &'a SharedStore,
    pub jwt: &'a JwtKeys,
    pub access_ttl_secs: i64,
    pub refresh_ttl_secs: i64,
}

impl Tokens<'_> {
    /// A pair for `user_id`. With `family` (a new sign-in), the refresh
    /// token is stored as the first of that family; without, the caller
    /// has stored it already (a rotation) and replaces it.
    pub async fn issue(&self, user_id: Uuid, family: Option<Uuid>) -> UserResult<TokenPair> {
        let now = crate::clock::now();
        let refresh = tokens::random_token();
        if let Some(family_id) = family {
            let r = RefreshToken {
                user_id,
                family_id,
                expires_at: now + self.refresh_ttl_secs,
                used: false,
                created_at: now,
            };
            let h = tokens::hash_token(&refresh);
            self.store.put_refresh(&h, &r).await?;
        }
        Ok(TokenPair {
            access_token: self.jwt.issue(user_id, now, self.access_ttl_secs),
            refresh_token: refresh,
            expires_in: self.access_ttl_secs,
        })
    }

    /// Spends a refresh token for a new pair. A spent token presented
    /// again revokes its whole family (audited as reuse).
    pub async fn refresh(&self, client: &Actor, refresh_token: &str) -> UserResult<TokenPair> {
        let now = crate::clock::now();
        let old = tokens::hash_token(refresh_token);
        let new_token = tokens::random_token();
        let new = tokens::hash_token(&new_token);
        let exp = now + self.refresh_ttl_secs;
        let outcome = self.store.rotate_refresh(&old, &new, now, exp).await?;
        match outcome {
            RefreshOutcome::Rotated { user_id } => {
                let user = self.store.get_user(user_id).await?;
                if user.status != UserStatus::Active {
                    return Err(UserError::Inactive);
                }
                let mut t = self.issue(user_id, None).await?;
                t.refresh_token = new_token;
                let who = Actor::of(&user, client);
                audit(self.store, who.entry("token.refresh", None, "ok")).await;
                Ok(t)
            }
            RefreshOutcome::Reused { user_id } => {
                let who = match self.store.get_user(user_id).await {
                    Ok(u) => Actor::of(&u, client),
                    Err(_) => client.clone(),
                };
                let target = Some("reuse: family revoked".into());
                audit(
                    self.store,
                    who.entry("token.refresh", target, "SESSION_EXPIRED"),
                )
                .await;
                tracing::warn!(%user_id, "refresh token reuse detected; token family revoked");
                Err(UserError::SessionExpired)
            }
            RefreshOutcome::Invalid => Err(UserError::SessionExpired),
        }
    }
}
