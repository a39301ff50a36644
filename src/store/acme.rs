//! ACME state (`acme` table): the account per CA directory, and the
//! certificate chain with its private key per CA directory and set of
//! domains. Keys sit in the database file, which only confab's user can read
//! (0600 in a 0700 directory), like the other secrets of the data directory.

use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
pub struct AcmeAccountRecord {
    pub directory: String,
    /// instant-acme's account credentials (id, key, directory) as JSON.
    pub credentials: serde_json::Value,
    #[serde(default)]
    pub email: Option<String>,
    pub created_at: i64,
}

impl std::fmt::Debug for AcmeAccountRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeAccountRecord")
            .field("directory", &self.directory)
            .field("email", &self.email)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Serialize, Deserialize)]
pub struct AcmeCertRecord {
    pub directory: String,
    pub domains: Vec<String>,
    /// Leaf first, then the intermediates.
    pub chain_pem: String,
    pub key_pem: String,
    pub not_before: i64,
    pub not_after: i64,
    pub issued_at: i64,
    /// The challenge type that worked (`http-01`, `tls-alpn-01`).
    #[serde(default)]
    pub challenge: Option<String>,
}

impl std::fmt::Debug for AcmeCertRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeCertRecord")
            .field("directory", &self.directory)
            .field("domains", &self.domains)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("issued_at", &self.issued_at)
            .field("challenge", &self.challenge)
            .finish_non_exhaustive()
    }
}
