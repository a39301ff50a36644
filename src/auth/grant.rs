//! What a credential may grant when it creates an API key: never more than
//! it holds itself (issue 13: an admin's read/write key could mint an admin
//! key, and a short-lived key an eternal one).
//!
//! A browser session and a JWT access token both come from a password
//! sign-in, so they hold every scope of the user's role and no expiry (the
//! refresh token renews the JWT for as long as the sign-in lasts). An API
//! key holds its own scopes until its own `expires_at`.

use super::{AuthVia, CurrentUser, SCOPES};
use crate::error::AppError;
use crate::store::Role;

/// The scopes a new key gets when the request names none (limited to what
/// the creator holds).
pub const DEFAULT_SCOPES: &[&str] = &["read", "write"];

/// What the caller may put into a new key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Scopes the caller holds.
    pub scopes: Vec<String>,
    /// The latest expiry a new key may have (`None` = no limit).
    pub expires_at: Option<i64>,
}

impl Grant {
    pub fn of(user: &CurrentUser) -> Grant {
        match &user.via {
            AuthVia::ApiKey {
                scopes, expires_at, ..
            } => Grant {
                scopes: scopes.clone(),
                expires_at: *expires_at,
            },
            AuthVia::Session { .. } | AuthVia::Jwt => Grant {
                scopes: SCOPES
                    .iter()
                    .filter(|s| **s != "admin" || user.user.role == Role::Admin)
                    .map(|s| s.to_string())
                    .collect(),
                expires_at: None,
            },
        }
    }

    /// Decides a new key's scopes and expiry from the request. Omitted scopes
    /// are the default ones the caller holds; an omitted expiry is the
    /// caller's own (none for a session). Asking for more than the caller
    /// holds is `403 FORBIDDEN`; malformed input is `400 VALIDATION_FAILED`.
    pub fn new_key(
        &self,
        role: Role,
        scopes: Option<Vec<String>>,
        expires_at: Option<i64>,
        now: i64,
    ) -> Result<(Vec<String>, Option<i64>), AppError> {
        let mut scopes = match scopes {
            Some(s) => s,
            None => DEFAULT_SCOPES
                .iter()
                .filter(|d| self.scopes.iter().any(|s| s == *d))
                .map(|s| s.to_string())
                .collect(),
        };
        scopes.sort();
        scopes.dedup();
        if scopes.is_empty() {
            return Err(AppError::validation(
                "scopes must name at least one of read, write, admin",
            ));
        }
        if let Some(bad) = scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
            return Err(AppError::Validation(format!(
                "scopes: unknown scope {bad:?}; allowed are read, write, admin"
            )));
        }
        if scopes.iter().any(|s| s == "admin") && role != Role::Admin {
            return Err(AppError::validation(
                "scopes: only administrators can create keys with the admin scope",
            ));
        }
        // Only an API key can get here: a session holds every scope its role allows.
        if let Some(extra) = scopes.iter().find(|s| !self.scopes.contains(s)) {
            return Err(AppError::Forbidden(format!(
                "this API key lacks the {extra:?} scope, so it cannot create a key that has it"
            )));
        }
        if let Some(t) = expires_at
            && t <= now
        {
            return Err(AppError::validation("expires_at must be in the future"));
        }
        let expires_at = match (expires_at, self.expires_at) {
            (None, limit) => limit,
            (Some(t), Some(limit)) if t > limit => {
                return Err(AppError::Forbidden(format!(
                    "expires_at must not be later than the expiry of the API key creating it ({})",
                    crate::clock::rfc3339(limit)
                )));
            }
            (Some(t), _) => Some(t),
        };
        Ok((scopes, expires_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(scopes: &[&str], expires_at: Option<i64>) -> Grant {
        Grant {
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            expires_at,
        }
    }

    fn v(s: &[&str]) -> Option<Vec<String>> {
        Some(s.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn subsets_only_and_never_later() {
        let rw = key(&["read", "write"], None);
        let e = rw.new_key(Role::Admin, v(&["admin"]), None, 0).unwrap_err();
        assert_eq!(e.code(), "FORBIDDEN");
        assert_eq!(
            rw.new_key(Role::Admin, v(&["write", "read", "read"]), None, 0)
                .unwrap(),
            (vec!["read".to_string(), "write".to_string()], None)
        );
        let w = key(&["write"], Some(100));
        assert_eq!(
            w.new_key(Role::User, None, None, 0).unwrap(),
            (vec!["write".to_string()], Some(100)),
            "omitted: default scopes it holds, its own expiry"
        );
        assert_eq!(
            w.new_key(Role::User, None, Some(101), 0)
                .unwrap_err()
                .code(),
            "FORBIDDEN"
        );
        assert_eq!(
            w.new_key(Role::User, None, Some(50), 0).unwrap().1,
            Some(50)
        );
        assert_eq!(
            w.new_key(Role::User, None, Some(50), 60)
                .unwrap_err()
                .code(),
            "VALIDATION_FAILED",
            "in the past"
        );
        assert_eq!(
            w.new_key(Role::User, v(&[]), None, 0).unwrap_err().code(),
            "VALIDATION_FAILED"
        );
    }
}
