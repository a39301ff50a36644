//! Single sign-on records: the identities (an OpenID Connect provider's
//! `sub`, an LDAP entry) linked to confab accounts, and the short-lived
//! state of a sign-in under way at a provider (state, nonce, PKCE
//! verifier), kept in the store so that any instance can finish a sign-in
//! another one started, and only once.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{StoreResult, User};

/// An outside identity linked to an account: (issuer, subject) is unique.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdentityLink {
    pub id: Uuid,
    pub user_id: Uuid,
    /// The configured provider's name (`[[oidc]] name`, or `ldap`).
    pub provider: String,
    /// The OIDC issuer URL, or `ldap:` and the directory's URL.
    pub issuer: String,
    /// The OIDC `sub`, or the LDAP entry's DN.
    pub subject: String,
    /// The address the provider reported when linked (shown, never used to
    /// match accounts).
    #[serde(default)]
    pub email: Option<String>,
    pub created_at: i64,
}

/// A sign-in started at a provider and not yet finished.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SsoState {
    pub provider: String,
    pub nonce: String,
    pub pkce_verifier: String,
    /// Set when a signed-in user links a new identity to their account.
    #[serde(default)]
    pub link_user: Option<Uuid>,
    pub created_at: i64,
    pub expires_at: i64,
}

impl std::fmt::Debug for SsoState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoState")
            .field("provider", &self.provider)
            .field("link_user", &self.link_user)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[async_trait]
pub trait IdentityStore: Send + Sync {
    /// Stores `link`; with `new_user`, creates that account in the same
    /// transaction (first sign-in with auto-creation). Conflict when the
    /// (issuer, subject) is linked already or the new user's name is taken.
    async fn link_identity(&self, link: &IdentityLink, new_user: Option<&User>) -> StoreResult<()>;
    async fn find_identity(&self, issuer: &str, subject: &str)
    -> StoreResult<Option<IdentityLink>>;
    /// The user's identities, oldest first.
    async fn list_identities(&self, user_id: Uuid) -> StoreResult<Vec<IdentityLink>>;
    /// NotFound when the identity is not the user's.
    async fn unlink_identity(&self, user_id: Uuid, id: Uuid) -> StoreResult<IdentityLink>;
    /// Stores a sign-in under way under `key` (a hash of its `state`) and
    /// drops the ones expired at `s.created_at`.
    async fn put_sso_state(&self, key: &[u8], s: &SsoState) -> StoreResult<()>;
    /// Removes and returns the sign-in under `key`: a second call finds
    /// nothing (single use); an expired one is removed and not returned.
    async fn take_sso_state(&self, key: &[u8], now: i64) -> StoreResult<Option<SsoState>>;
}
