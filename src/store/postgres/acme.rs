//! ACME records in PostgreSQL, keyed as in redb (`account <dir>`,
//! `cert <dir> <sorted names>`).

use async_trait::async_trait;

use super::{PgStore, Sql, dec, json};
use crate::store::acme::*;
use crate::store::{AcmeStore, StoreResult};

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

impl PgStore {
    async fn acme_get<T: serde::de::DeserializeOwned>(&self, key: &str) -> StoreResult<Option<T>> {
        let c = self.client().await?;
        c.opt("SELECT data FROM acme WHERE key = $1", &[&key])
            .await?
            .map(|r| dec(&r, 0))
            .transpose()
    }

    async fn acme_put<T: serde::Serialize + std::fmt::Debug + Sync>(
        &self,
        key: &str,
        v: &T,
    ) -> StoreResult<()> {
        let c = self.client().await?;
        c.exec(
            "INSERT INTO acme (key, data) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET data = excluded.data",
            &[&key, &json(v)],
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl AcmeStore for PgStore {
    async fn get_acme_account(&self, directory: &str) -> StoreResult<Option<AcmeAccountRecord>> {
        self.acme_get(&account_key(directory)).await
    }
    async fn put_acme_account(&self, r: &AcmeAccountRecord) -> StoreResult<()> {
        self.acme_put(&account_key(&r.directory), r).await
    }
    async fn delete_acme_account(&self, directory: &str) -> StoreResult<()> {
        let c = self.client().await?;
        c.exec(
            "DELETE FROM acme WHERE key = $1",
            &[&account_key(directory)],
        )
        .await?;
        Ok(())
    }
    async fn get_acme_cert(
        &self,
        directory: &str,
        domains: &[String],
    ) -> StoreResult<Option<AcmeCertRecord>> {
        self.acme_get(&cert_key(directory, domains)).await
    }
    async fn put_acme_cert(&self, r: &AcmeCertRecord) -> StoreResult<()> {
        self.acme_put(&cert_key(&r.directory, &r.domains), r).await
    }
}
