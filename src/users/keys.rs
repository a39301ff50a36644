//! API keys: long-lived credentials a user makes for scripts and clients.

use uuid::Uuid;

use super::{Actor, UserError, UserResult, Users};
use crate::auth::tokens;
use crate::store::ApiKey;

/// Longest key name, in characters.
const MAX_NAME: usize = 100;

/// A key name as stored: trimmed, 1 to 100 characters.
pub fn check_name(name: &str) -> UserResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(UserError::Validation(format!(
            "name must be 1 to {MAX_NAME} characters"
        )));
    }
    Ok(name.to_string())
}

impl Users<'_> {
    /// Makes a key for `user_id` with scopes and expiry the caller's grant
    /// already allowed. Returns the record and the key itself, which is
    /// shown once and stored only as a hash. Audited as `key.create`.
    pub async fn create_api_key(
        &self,
        actor: &Actor,
        user_id: Uuid,
        name: &str,
        scopes: Vec<String>,
        expires_at: Option<i64>,
        now: i64,
    ) -> UserResult<(ApiKey, String)> {
        let name = check_name(name)?;
        let key = tokens::new_api_key();
        let record = ApiKey {
            id: Uuid::now_v7(),
            user_id,
            name,
            scopes,
            expires_at,
            last_used_at: None,
            created_at: now,
            prefix: key.chars().take(10).collect(),
        };
        let hash = tokens::hash_token(&key);
        let r2 = record.clone();
        self.store.put_api_key(&hash, &r2).await?;
        self.audit(actor.entry("key.create", Some(record.id.to_string()), "ok"))
            .await;
        Ok((record, key))
    }
}
