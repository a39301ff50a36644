//! Encryption at rest for provider keys that admins store through the API.
//!
//! The 32-byte key lives in `<data_dir>/provider.key` (hex, mode 0600),
//! created on first use. Each value is sealed with XChaCha20-Poly1305 under a
//! fresh random 24-byte nonce and stored as `nonce || ciphertext`; the
//! provider's name is bound in as associated data, so a sealed key copied onto
//! another provider's record does not open. The key is never returned by any
//! API and never logged ([`SecretBox`]'s `Debug` shows nothing of it).

use std::fmt;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// The key file's name inside the data directory.
pub const KEY_FILE: &str = "provider.key";
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot use the provider key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the provider key file {0} is missing, so stored provider keys cannot be decrypted; restore it from a backup or enter the keys again"
    )]
    KeyMissing(PathBuf),
    #[error(
        "a stored provider key could not be decrypted (wrong {KEY_FILE} or damaged record); enter the key again"
    )]
    Decrypt,
}

/// Seals and opens provider keys with the data directory's key.
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBox(***)")
    }
}

pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEY_FILE)
}

impl SecretBox {
    fn from_bytes(path: &Path, bytes: &[u8]) -> Result<SecretBox, SecretError> {
        if bytes.len() != KEY_LEN {
            return Err(SecretError::KeyFile {
                path: path.to_path_buf(),
                source: std::io::Error::other(format!(
                    "expected a {KEY_LEN}-byte key, found {} bytes",
                    bytes.len()
                )),
            });
        }
        let cipher = XChaCha20Poly1305::new_from_slice(bytes).map_err(|_| SecretError::Decrypt)?;
        Ok(SecretBox { cipher })
    }

    /// Loads `<data_dir>/provider.key`, creating it (0600) if it does not
    /// exist yet. Use when sealing a new value.
    pub fn load_or_create(data_dir: &Path) -> Result<SecretBox, SecretError> {
        let path = key_path(data_dir);
        let io = |source| SecretError::KeyFile {
            path: path.clone(),
            source,
        };
        let bytes = match crate::keyfile::load_or_create(&path, KEY_LEN) {
            Ok(b) => b,
            // Another task created it between our read and our create.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                crate::keyfile::load_or_create(&path, KEY_LEN).map_err(io)?
            }
            Err(e) => return Err(io(e)),
        };
        Self::from_bytes(&path, &bytes)
    }

    /// Loads an existing key without creating one: opening values sealed
    /// under a key that is gone must fail, not silently use a new key.
    pub fn load(data_dir: &Path) -> Result<SecretBox, SecretError> {
        let path = key_path(data_dir);
        if !path.exists() {
            return Err(SecretError::KeyMissing(path));
        }
        Self::load_or_create(data_dir)
    }

    /// `nonce || ciphertext` of `plaintext`, bound to `context` (the
    /// provider's name).
    pub fn seal(&self, context: &str, plaintext: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory sizes");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens what [`seal`](Self::seal) produced with the same `context`.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<String, SecretError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(SecretError::Decrypt);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Decrypt)?;
        String::from_utf8(plain).map_err(|_| SecretError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_fresh_nonce_and_binding() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            SecretBox::load(dir.path()),
            Err(SecretError::KeyMissing(_))
        ));
        let b = SecretBox::load_or_create(dir.path()).unwrap();
        let a1 = b.seal("p1", "sk-secret-value");
        let a2 = b.seal("p1", "sk-secret-value");
        assert_ne!(a1, a2, "a fresh nonce per value");
        assert!(!a1.windows(9).any(|w| w == b"sk-secret"));
        assert_eq!(b.open("p1", &a1).unwrap(), "sk-secret-value");
        // Bound to the provider name.
        assert!(b.open("p2", &a1).is_err());
        // Tampering is detected.
        let mut bad = a1.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(b.open("p1", &bad).is_err());
        assert!(b.open("p1", &a1[..10]).is_err());
        // The same key is loaded again.
        let again = SecretBox::load(dir.path()).unwrap();
        assert_eq!(again.open("p1", &a2).unwrap(), "sk-secret-value");
        assert_eq!(format!("{again:?}"), "SecretBox(***)");
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        SecretBox::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(key_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_different_key_cannot_open() {
        let d1 = tempfile::tempdir().unwrap();
        let d2 = tempfile::tempdir().unwrap();
        let sealed = SecretBox::load_or_create(d1.path()).unwrap().seal("p", "k");
        let other = SecretBox::load_or_create(d2.path()).unwrap();
        assert!(matches!(
            other.open("p", &sealed),
            Err(SecretError::Decrypt)
        ));
    }
}
