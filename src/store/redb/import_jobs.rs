//! Import jobs in redb: the record under its id, and the owner's list.

use redb::ReadableTable;
use uuid::Uuid;

use super::{Db, IMPORT_JOBS, IMPORT_JOBS_BY_USER, StoreError, StoreResult, dec, enc};
use crate::store::import_jobs::{ImportJobRecord, ImportJobStatus};

impl Db {
    pub fn put_import_job(&self, j: &ImportJobRecord) -> StoreResult<()> {
        let tx = self.write()?;
        {
            let mut t = tx.open_table(IMPORT_JOBS)?;
            if let Some(old) = t.get(j.id.as_u128())? {
                let old: ImportJobRecord = dec(old.value())?;
                if old.user_id != j.user_id {
                    return Err(StoreError::Conflict("the import job id exists".into()));
                }
            }
            t.insert(j.id.as_u128(), enc(j).as_slice())?;
            tx.open_table(IMPORT_JOBS_BY_USER)?
                .insert((j.user_id.as_u128(), j.id.as_u128()), ())?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn import_job(&self, user_id: Uuid, id: Uuid) -> StoreResult<ImportJobRecord> {
        let tx = self.read()?;
        let t = tx.open_table(IMPORT_JOBS)?;
        match t.get(id.as_u128())? {
            Some(v) => {
                let j: ImportJobRecord = dec(v.value())?;
                if j.user_id != user_id {
                    return Err(StoreError::NotFound);
                }
                Ok(j)
            }
            None => Err(StoreError::NotFound),
        }
    }

    pub fn list_import_jobs(&self, user_id: Uuid) -> StoreResult<Vec<ImportJobRecord>> {
        let tx = self.read()?;
        let by = tx.open_table(IMPORT_JOBS_BY_USER)?;
        let t = tx.open_table(IMPORT_JOBS)?;
        let u = user_id.as_u128();
        let mut out = Vec::new();
        for r in by.range((u, 0)..=(u, u128::MAX))?.rev() {
            let (k, _) = r?;
            if let Some(v) = t.get(k.value().1)? {
                out.push(dec(v.value())?);
            }
        }
        Ok(out)
    }

    pub fn delete_import_job(&self, user_id: Uuid, id: Uuid) -> StoreResult<()> {
        let tx = self.write()?;
        {
            let mut by = tx.open_table(IMPORT_JOBS_BY_USER)?;
            if by.remove((user_id.as_u128(), id.as_u128()))?.is_none() {
                return Err(StoreError::NotFound);
            }
            tx.open_table(IMPORT_JOBS)?.remove(id.as_u128())?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn interrupt_import_jobs(&self, alive: &[Uuid], error: &str, now: i64) -> StoreResult<u64> {
        let tx = self.write()?;
        let mut n = 0;
        {
            let mut t = tx.open_table(IMPORT_JOBS)?;
            let mut stale = Vec::new();
            for r in t.iter()? {
                let (_, v) = r?;
                let j: ImportJobRecord = dec(v.value())?;
                if j.status == ImportJobStatus::Running
                    && !j.runner.is_some_and(|r| alive.contains(&r))
                {
                    stale.push(j);
                }
            }
            for mut j in stale {
                j.status = ImportJobStatus::Interrupted;
                j.error = Some(error.to_string());
                j.updated_at = now;
                t.insert(j.id.as_u128(), enc(&j).as_slice())?;
                n += 1;
            }
        }
        tx.commit()?;
        Ok(n)
    }
}
