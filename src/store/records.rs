//! Records kept in redb. Times are Unix seconds (UTC). Every struct uses
//! `serde(default)` on added fields so older records keep loading.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    Active,
    Disabled,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QuotaOverride {
    pub messages_per_day: Option<u64>,
    pub tokens_per_day: Option<u64>,
    /// Bytes of uploaded files the user may keep (`[files]
    /// quota_bytes_per_user` when unset; 0 = no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_bytes: Option<u64>,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    #[serde(default)]
    pub email: Option<String>,
    /// The owner proved `email` is theirs (a link mailed to it was
    /// followed). Only a verified address receives password resets.
    #[serde(default)]
    pub email_verified: bool,
    pub password_hash: String,
    pub role: Role,
    pub status: UserStatus,
    pub created_at: i64,
    #[serde(default)]
    pub updated_at: i64,
    #[serde(default)]
    pub quota: Option<QuotaOverride>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("role", &self.role)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub id: Uuid,
    pub user_id: Uuid,
    pub created_at: i64,
    pub last_seen: i64,
    pub expires_at: i64,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub user_agent: Option<String>,
    /// The CSRF token for this session (sent as `X-CSRF-Token`).
    pub csrf_secret: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshToken {
    pub user_id: Uuid,
    pub family_id: Uuid,
    pub expires_at: i64,
    pub used: bool,
    #[serde(default)]
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshFamily {
    pub user_id: Uuid,
    pub revoked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    Rotated {
        user_id: Uuid,
    },
    /// A spent token was presented again: the family is now revoked.
    Reused {
        user_id: Uuid,
    },
    Invalid,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub created_at: i64,
    /// The first characters of the key, so a user can tell keys apart.
    #[serde(default)]
    pub prefix: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Invite {
    pub code: String,
    /// None when created from the command line.
    pub created_by: Option<Uuid>,
    pub created_at: i64,
    pub expires_at: i64,
    pub uses_left: u32,
    pub role: Role,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: Uuid,
    pub at: i64,
    /// Who acted: a user id, or None for anonymous attempts and the CLI.
    pub actor: Option<Uuid>,
    /// The name the actor used (e.g. the username typed at login).
    #[serde(default)]
    pub actor_name: Option<String>,
    pub action: String,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub user_agent: Option<String>,
    /// "ok" or a stable error code.
    pub outcome: String,
}
