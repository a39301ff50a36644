//! ACME records in redb's `acme` table.

use serde::Serialize;

use super::{ACME, Db, StoreResult, dec, enc};
use crate::store::acme::*;

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

impl Db {
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
        let s = Db::open(dir.path()).unwrap();
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
