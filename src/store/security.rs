//! Second factors and one-time tokens: each user's TOTP enrolment (secret,
//! the last time step used, hashed recovery codes), the short-lived tokens
//! that stand for one step of a flow (the second sign-in step, a password
//! reset, an email verification), and the server-wide two-factor policy.
//!
//! Tokens are stored by the SHA-256 of their value (never the value), are
//! single use (taking one removes it) and expire.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One recovery code: its SHA-256 (hex) and when it was spent.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecoveryCode {
    pub hash: String,
    #[serde(default)]
    pub used_at: Option<i64>,
}

/// A user's TOTP enrolment. `enabled` is false while it waits for the first
/// code that confirms it (the secret was shown but not proven).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TwoFactor {
    pub user_id: Uuid,
    /// The shared secret (raw bytes, base32 when shown).
    #[serde(with = "hex_bytes")]
    pub secret: Vec<u8>,
    pub enabled: bool,
    pub created_at: i64,
    #[serde(default)]
    pub enabled_at: Option<i64>,
    /// The newest time step a code was accepted for: a code of that step or
    /// an older one is refused (no replay).
    #[serde(default)]
    pub last_step: u64,
    #[serde(default)]
    pub recovery: Vec<RecoveryCode>,
}

impl std::fmt::Debug for TwoFactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret or the codes' hashes.
        f.debug_struct("TwoFactor")
            .field("user_id", &self.user_id)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl TwoFactor {
    /// Recovery codes not spent yet.
    pub fn recovery_left(&self) -> usize {
        self.recovery.iter().filter(|c| c.used_at.is_none()).count()
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let t = String::deserialize(d)?;
        hex::decode(t).map_err(serde::de::Error::custom)
    }
}

/// What a one-time token stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OneTimeKind {
    /// The second sign-in step, after a correct password.
    LoginChallenge,
    PasswordReset,
    EmailVerification,
}

impl OneTimeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OneTimeKind::LoginChallenge => "login_challenge",
            OneTimeKind::PasswordReset => "password_reset",
            OneTimeKind::EmailVerification => "email_verification",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OneTimeToken {
    pub kind: OneTimeKind,
    pub user_id: Uuid,
    pub created_at: i64,
    pub expires_at: i64,
    /// The address an email verification is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Wrong codes tried on a sign-in challenge so far.
    #[serde(default)]
    pub attempts: u32,
    /// What a sign-in challenge leads to: `login` (a session) or `token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
}

/// Who must use a second factor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TwoFactorPolicy {
    /// Whoever wants to.
    #[default]
    Optional,
    /// Every administrator.
    Admins,
    /// Every user.
    Everyone,
}

impl TwoFactorPolicy {
    pub fn requires(self, role: super::Role) -> bool {
        match self {
            TwoFactorPolicy::Optional => false,
            TwoFactorPolicy::Admins => role == super::Role::Admin,
            TwoFactorPolicy::Everyone => true,
        }
    }
}

/// The `meta` key of the two-factor policy (both backends).
pub const POLICY_KEY: &str = "two_factor_policy";

/// Changes a [`TwoFactor`] record inside the store's transaction; returns
/// whether it changed it (only then is it written).
pub type TwoFactorUpdate = Box<dyn FnOnce(&mut TwoFactor) -> bool + Send>;
