//! ACME state (`acme` table): the account per CA directory, and the
//! certificate chain with its private key per CA directory and set of
//! domains. Keys sit in the database file, which only confab's user can read
//! (0600 in a 0700 directory), like the other secrets of the data directory.

use serde::{Deserialize, Serialize};

use super::{ACME, Store, StoreResult, dec, enc};

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

fn account_key(directory: &str) -> String {
    format!("account {directory}")
}

/// The same set of names in any order and case is the same certificate.
fn cert_key(directory: &str, domains: &[String]) -> String {
    let mut d: Vec<String> = domains.iter().map(|d| d.to_ascii_lowercase()).collect();
    d.sort();
    d.dedup();
    format!("cert {directory} {}", d.join(","))
}

impl Store {
    fn acme_get<T: serde::de::DeserializeOwned>(&self, key: &str) -> StoreResult<Option<T>> {
        let tx = self.read()?;
        let t = tx.open_table(ACME)?;
        t.get(key)?.map(|v| dec(v.value())).transpose()
    }

    fn acme_put<T: Serialize>(&self, key: &str, v: &T) -> StoreResult<()> {
        let tx = self.write()?;
        tx.open_table(ACME)?.insert(key, enc(v).as_slice())?;
        tx.commit()?;
        Ok(())
    }

    pub fn get_acme_account(&self, directory: &str) -> StoreResult<Option<AcmeAccountRecord>> {
        self.acme_get(&account_key(directory))
    }

    pub fn put_acme_account(&self, r: &AcmeAccountRecord) -> StoreResult<()> {
        self.acme_put(&account_key(&r.directory), r)
    }

    pub fn delete_acme_account(&self, directory: &str) -> StoreResult<()> {
        let tx = self.write()?;
        tx.open_table(ACME)?
            .remove(account_key(directory).as_str())?;
        tx.commit()?;
        Ok(())
    }

    pub fn get_acme_cert(
        &self,
        directory: &str,
        domains: &[String],
    ) -> StoreResult<Option<AcmeCertRecord>> {
        self.acme_get(&cert_key(directory, domains))
    }

    pub fn put_acme_cert(&self, r: &AcmeCertRecord) -> StoreResult<()> {
        self.acme_put(&cert_key(&r.directory, &r.domains), r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_keys_ignore_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let d = "https://acme.example/dir";
        assert!(s.get_acme_account(d).unwrap().is_none());
        s.put_acme_account(&AcmeAccountRecord {
            directory: d.into(),
            credentials: serde_json::json!({"id": "x"}),
            email: None,
            created_at: 1,
        })
        .unwrap();
        assert_eq!(
            s.get_acme_account(d).unwrap().unwrap().credentials["id"],
            "x"
        );
        let rec = AcmeCertRecord {
            directory: d.into(),
            domains: vec!["b.example".into(), "A.example".into()],
            chain_pem: "c".into(),
            key_pem: "secret-key".into(),
            not_before: 1,
            not_after: 2,
            issued_at: 1,
            challenge: Some("http-01".into()),
        };
        s.put_acme_cert(&rec).unwrap();
        let back = s
            .get_acme_cert(d, &["a.example".into(), "b.example".into()])
            .unwrap()
            .unwrap();
        assert_eq!(back.key_pem, "secret-key");
        assert!(!format!("{back:?}").contains("secret-key"));
        assert!(
            s.get_acme_cert("https://other/dir", &rec.domains)
                .unwrap()
                .is_none()
        );
        s.delete_acme_account(d).unwrap();
        assert!(s.get_acme_account(d).unwrap().is_none());
    }
}
