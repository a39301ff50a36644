//! Uploaded files' records in redb: the record by id, a per-owner index
//! for newest-first listing, the blob references (content and thumbnail)
//! and each owner's byte count, all changed in one transaction.

use redb::{ReadableTable, WriteTransaction};
use uuid::Uuid;

use super::{
    Db, StoreError, StoreResult, UPLOAD_BLOBS, UPLOAD_USAGE, UPLOADS, UPLOADS_BY_USER, dec, enc,
};
use crate::store::uploads::{DeletedUpload, Thumbnail, Upload, UploadCreated};

/// True when some record references `sha` (inside `tx`).
fn referenced(tx: &WriteTransaction, sha: &str) -> StoreResult<bool> {
    let t = tx.open_table(UPLOAD_BLOBS)?;
    Ok(t.range((sha, 0u128)..=(sha, u128::MAX))?.next().is_some())
}

/// The record of `id` when `owner` owns it.
fn owned(tx: &WriteTransaction, owner: Uuid, id: Uuid) -> StoreResult<Upload> {
    let t = tx.open_table(UPLOADS)?;
    let u: Upload = match t.get(id.as_u128())? {
        Some(v) => dec(v.value())?,
        None => return Err(StoreError::NotFound),
    };
    if u.owner != owner {
        return Err(StoreError::NotFound);
    }
    Ok(u)
}

impl Db {
    pub fn create_upload(&self, u: &Upload, quota: Option<u64>) -> StoreResult<UploadCreated> {
        let tx = self.write()?;
        let used = {
            let mut usage = tx.open_table(UPLOAD_USAGE)?;
            let used = usage.get(u.owner.as_u128())?.map_or(0, |v| v.value());
            let after = used.saturating_add(u.size);
            if quota.is_some_and(|q| after > q) {
                return Ok(UploadCreated::OverQuota { used });
            }
            let mut t = tx.open_table(UPLOADS)?;
            if t.get(u.id.as_u128())?.is_some() {
                return Err(StoreError::Conflict("a file with this id exists".into()));
            }
            t.insert(u.id.as_u128(), enc(u).as_slice())?;
            tx.open_table(UPLOADS_BY_USER)?
                .insert((u.owner.as_u128(), u.id.as_u128()), ())?;
            let mut refs = tx.open_table(UPLOAD_BLOBS)?;
            for sha in u.blobs() {
                refs.insert((sha, u.id.as_u128()), ())?;
            }
            usage.insert(u.owner.as_u128(), after)?;
            after
        };
        tx.commit()?;
        Ok(UploadCreated::Stored { used })
    }

    pub fn get_upload(&self, owner: Uuid, id: Uuid) -> StoreResult<Upload> {
        let tx = self.read()?;
        let t = tx.open_table(UPLOADS)?;
        let u: Upload = match t.get(id.as_u128())? {
            Some(v) => dec(v.value())?,
            None => return Err(StoreError::NotFound),
        };
        if u.owner != owner {
            return Err(StoreError::NotFound);
        }
        Ok(u)
    }

    pub fn list_uploads(
        &self,
        owner: Uuid,
        before: Option<Uuid>,
        limit: usize,
    ) -> StoreResult<Vec<Upload>> {
        let tx = self.read()?;
        let idx = tx.open_table(UPLOADS_BY_USER)?;
        let t = tx.open_table(UPLOADS)?;
        let o = owner.as_u128();
        let end = before.map_or(u128::MAX, |b| b.as_u128());
        let mut out = Vec::new();
        for r in idx.range((o, 0)..(o, end))?.rev() {
            let (k, _) = r?;
            if let Some(v) = t.get(k.value().1)? {
                out.push(dec(v.value())?);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    pub fn upload_usage(&self, owner: Uuid) -> StoreResult<u64> {
        let tx = self.read()?;
        let t = tx.open_table(UPLOAD_USAGE)?;
        Ok(t.get(owner.as_u128())?.map_or(0, |v| v.value()))
    }

    pub fn set_upload_thumbnail(
        &self,
        owner: Uuid,
        id: Uuid,
        thumb: &Thumbnail,
    ) -> StoreResult<(Upload, Vec<String>)> {
        let tx = self.write()?;
        let mut u = owned(&tx, owner, id)?;
        let old = u.thumbnail.replace(thumb.clone());
        let mut freed = Vec::new();
        {
            let mut refs = tx.open_table(UPLOAD_BLOBS)?;
            if let Some(old) = &old
                && old.sha256 != thumb.sha256
                && old.sha256 != u.sha256
            {
                refs.remove((old.sha256.as_str(), id.as_u128()))?;
            }
            refs.insert((thumb.sha256.as_str(), id.as_u128()), ())?;
            tx.open_table(UPLOADS)?
                .insert(id.as_u128(), enc(&u).as_slice())?;
        }
        if let Some(old) = old
            && old.sha256 != thumb.sha256
            && old.sha256 != u.sha256
            && !referenced(&tx, &old.sha256)?
        {
            freed.push(old.sha256);
        }
        tx.commit()?;
        Ok((u, freed))
    }

    pub fn delete_upload(&self, owner: Uuid, id: Uuid) -> StoreResult<DeletedUpload> {
        let tx = self.write()?;
        let u = owned(&tx, owner, id)?;
        {
            tx.open_table(UPLOADS)?.remove(id.as_u128())?;
            tx.open_table(UPLOADS_BY_USER)?
                .remove((owner.as_u128(), id.as_u128()))?;
            let mut refs = tx.open_table(UPLOAD_BLOBS)?;
            for sha in u.blobs() {
                refs.remove((sha, id.as_u128()))?;
            }
            let mut usage = tx.open_table(UPLOAD_USAGE)?;
            let used = usage.get(owner.as_u128())?.map_or(0, |v| v.value());
            let left = used.saturating_sub(u.size);
            if left == 0 {
                usage.remove(owner.as_u128())?;
            } else {
                usage.insert(owner.as_u128(), left)?;
            }
        }
        let mut unreferenced = Vec::new();
        for sha in u.blobs() {
            if !referenced(&tx, sha)? && !unreferenced.iter().any(|s: &String| s == sha) {
                unreferenced.push(sha.to_string());
            }
        }
        // What was read of the file goes with it (chunks, vectors, its
        // place in collections, the index).
        super::knowledge::forget_in(&tx, owner, id)?;
        tx.commit()?;
        Ok(DeletedUpload {
            upload: u,
            unreferenced,
        })
    }

    pub fn blob_referenced(&self, sha: &str) -> StoreResult<bool> {
        let tx = self.read()?;
        let t = tx.open_table(UPLOAD_BLOBS)?;
        Ok(t.range((sha, 0u128)..=(sha, u128::MAX))?.next().is_some())
    }

    pub fn all_uploads(&self, after: Option<Uuid>, limit: usize) -> StoreResult<Vec<Upload>> {
        let tx = self.read()?;
        let t = tx.open_table(UPLOADS)?;
        let mut out = Vec::new();
        use std::ops::Bound;
        let start = match after {
            Some(a) => Bound::Excluded(a.as_u128()),
            None => Bound::Unbounded,
        };
        for r in t.range::<u128>((start, Bound::Unbounded))? {
            let (_, v) = r?;
            out.push(dec(v.value())?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}
