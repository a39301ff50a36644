//! Runtime providers in redb.

use redb::ReadableTable;

use super::{Db, PROVIDERS, StoreError, StoreResult, dec, enc};
use crate::store::provider_records::*;

impl Db {
    /// Inserts or replaces the record of `p.name`.
    pub fn put_provider(&self, p: &StoredProvider) -> StoreResult<()> {
        let tx = self.write()?;
        tx.open_table(PROVIDERS)?
            .insert(p.name.as_str(), enc(p).as_slice())?;
        tx.commit()?;
        Ok(())
    }

    /// Inserts a new record; `Conflict` when the name is taken.
    pub fn create_provider(&self, p: &StoredProvider) -> StoreResult<()> {
        let tx = self.write()?;
        {
            let mut t = tx.open_table(PROVIDERS)?;
            if t.get(p.name.as_str())?.is_some() {
                return Err(StoreError::Conflict(format!(
                    "a provider named \"{}\" already exists",
                    p.name
                )));
            }
            t.insert(p.name.as_str(), enc(p).as_slice())?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn get_provider(&self, name: &str) -> StoreResult<Option<StoredProvider>> {
        let tx = self.read()?;
        let t = tx.open_table(PROVIDERS)?;
        t.get(name)?.map(|v| dec(v.value())).transpose()
    }

    /// Every stored provider, oldest first (the order they are registered in).
    pub fn list_providers(&self) -> StoreResult<Vec<StoredProvider>> {
        let tx = self.read()?;
        let t = tx.open_table(PROVIDERS)?;
        let mut out: Vec<StoredProvider> = t
            .iter()?
            .map(|r| {
                r.map_err(StoreError::from)
                    .and_then(|(_, v)| dec(v.value()))
            })
            .collect::<StoreResult<_>>()?;
        out.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
        Ok(out)
    }

    /// `NotFound` when no record has that name.
    pub fn delete_provider(&self, name: &str) -> StoreResult<()> {
        let tx = self.write()?;
        {
            let mut t = tx.open_table(PROVIDERS)?;
            if t.remove(name)?.is_none() {
                return Err(StoreError::NotFound);
            }
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ProviderKind;

    fn rec(name: &str, at: i64) -> StoredProvider {
        StoredProvider {
            name: name.into(),
            kind: ProviderKind::Openai,
            base_url: "http://127.0.0.1:9/v1".into(),
            models: Some(vec!["m".into()]),
            enabled: true,
            encrypted_key: Some(vec![1, 2, 3, 250]),
            created_at: at,
            updated_at: at,
            priority: 0,
            allow_user_keys: true,
        }
    }

    #[test]
    fn crud() {
        let dir = tempfile::tempdir().unwrap();
        let s = Db::open(dir.path()).unwrap();
        assert!(s.list_providers().unwrap().is_empty());
        s.create_provider(&rec("b", 2)).unwrap();
        s.create_provider(&rec("a", 3)).unwrap();
        assert!(matches!(
            s.create_provider(&rec("a", 4)),
            Err(StoreError::Conflict(_))
        ));
        let names: Vec<String> = s
            .list_providers()
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["b", "a"]);
        let mut a = s.get_provider("a").unwrap().unwrap();
        assert_eq!(a, rec("a", 3));
        a.enabled = false;
        a.encrypted_key = None;
        s.put_provider(&a).unwrap();
        assert_eq!(s.get_provider("a").unwrap().unwrap(), a);
        s.delete_provider("a").unwrap();
        assert!(matches!(s.delete_provider("a"), Err(StoreError::NotFound)));
        assert!(s.get_provider("a").unwrap().is_none());
        assert!(!format!("{:?}", rec("x", 1)).contains("250"));
    }
}
