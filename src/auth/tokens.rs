//! Random tokens, their hashes, and JWT access tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

/// 256 random bits, URL-safe base64.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// A shorter random code (128 bits), for invites.
pub fn random_code() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// Tokens are stored only as their SHA-256 (they carry 256 bits of entropy,
/// so a fast hash is enough; what matters is that a stolen file holds no
/// usable token).
pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

pub const API_KEY_PREFIX: &str = "cfk_";

pub fn new_api_key() -> String {
    format!("{API_KEY_PREFIX}{}", random_token())
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

/// The JWT signing key in the data directory. Deliberately not part of
/// backups (see `ops::backup`): a restore makes a new one.
pub const JWT_KEY_FILE: &str = "jwt.key";

pub const JWT_KEY_LEN: usize = 32;

pub struct JwtKeys {
    enc: EncodingKey,
    dec: DecodingKey,
}

impl JwtKeys {
    pub fn from_secret(secret: &[u8]) -> JwtKeys {
        JwtKeys {
            enc: EncodingKey::from_secret(secret),
            dec: DecodingKey::from_secret(secret),
        }
    }

    /// Loads `<data>/jwt.key`, creating it (0600) with 256 random bits on
    /// first start (and after a restore).
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<JwtKeys> {
        let bytes = crate::keyfile::load_or_create(&data_dir.join(JWT_KEY_FILE), JWT_KEY_LEN)?;
        Ok(Self::from_secret(&bytes))
    }

    pub fn issue(&self, user_id: uuid::Uuid, now: i64, ttl_secs: i64) -> String {
        let claims = Claims {
            sub: user_id.to_string(),
            iat: now,
            exp: now + ttl_secs,
            jti: uuid::Uuid::now_v7().to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.enc)
            .expect("HS256 signing cannot fail")
    }

    pub fn verify(&self, token: &str) -> Option<Claims> {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 5;
        v.set_required_spec_claims(&["exp", "sub", "iat"]);
        jsonwebtoken::decode::<Claims>(token, &self.dec, &v)
            .ok()
            .map(|d| d.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_roundtrip_and_expiry() {
        let k = JwtKeys::from_secret(b"0123456789abcdef0123456789abcdef");
        let id = uuid::Uuid::now_v7();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let t = k.issue(id, now, 900);
        let c = k.verify(&t).unwrap();
        assert_eq!(c.sub, id.to_string());
        assert_eq!(c.exp - c.iat, 900);
        assert!(k.verify(&k.issue(id, now - 1000, 900)).is_none(), "expired");
        let other = JwtKeys::from_secret(b"another-secret-another-secret-xx");
        assert!(other.verify(&t).is_none(), "foreign key");
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        assert_ne!(random_token(), random_token());
        assert_eq!(random_token().len(), 43);
        assert!(new_api_key().starts_with("cfk_"));
        assert_eq!(hash_token("a").len(), 32);
    }
}
