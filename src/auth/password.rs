//! argon2id password hashing on the blocking pool, behind a semaphore so a
//! burst of logins cannot take more memory (19 MiB each) or CPU than there
//! are cores, and so request handling keeps its async workers.

use argon2::password_hash::{PasswordHash, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use std::sync::Arc;
use tokio::sync::Semaphore;

pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 128;

fn argon() -> Argon2<'static> {
    // OWASP: m=19 MiB, t=2, p=1.
    let params = Params::new(19456, 2, 1, None).expect("static argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_sync(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    argon()
        .hash_password(password.as_bytes(), &salt)
        .expect("hashing with valid parameters cannot fail")
        .to_string()
}

fn verify_sync(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => argon()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Checks length rules; the message names the field.
pub fn validate(field: &str, password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if !(MIN_LEN..=MAX_LEN).contains(&n) {
        return Err(format!(
            "{field} must be {MIN_LEN} to {MAX_LEN} characters long"
        ));
    }
    Ok(())
}

pub struct Hasher {
    permits: Semaphore,
    /// Verified against when the user does not exist, so an unknown user
    /// costs the same time as a wrong password.
    dummy: String,
}

impl Hasher {
    pub fn new() -> Arc<Hasher> {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Arc::new(Hasher {
            permits: Semaphore::new(cores),
            dummy: hash_sync("confab-dummy-password-for-timing"),
        })
    }

    pub async fn hash(&self, password: String) -> String {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("semaphore never closed");
        tokio::task::spawn_blocking(move || hash_sync(&password))
            .await
            .expect("hashing does not panic")
    }

    /// Verifies `password` against `hash`, or against a dummy hash when
    /// `hash` is None (and then always answers false).
    pub async fn verify(&self, password: String, hash: Option<String>) -> bool {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("semaphore never closed");
        let real = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.clone());
        let ok = tokio::task::spawn_blocking(move || verify_sync(&password, &hash))
            .await
            .expect("verifying does not panic");
        ok && real
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_roundtrip_uses_owasp_params() {
        let h = hash_sync("correct horse");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_sync("correct horse", &h));
        assert!(!verify_sync("wrong horse", &h));
        assert!(!verify_sync("x", "not a hash"));
    }

    #[test]
    fn length_rules() {
        assert!(validate("password", "short").is_err());
        assert!(validate("password", "long enough").is_ok());
        assert!(validate("password", &"x".repeat(129)).is_err());
    }
}
