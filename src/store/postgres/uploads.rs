//! Uploaded files' records in PostgreSQL: the record by id with its owner,
//! size and blobs (content and thumbnail) as columns, and each owner's byte
//! count in `upload_usage`, all changed in one transaction.
//!
//! What redb gets from its single writer is held here by locks: the owner's
//! `upload_usage` row (so two uploads cannot both pass the quota) and a
//! transaction-scoped advisory lock per blob, taken in sorted order, by every
//! change that adds or drops a reference to it (so two deletes of files
//! sharing a blob cannot both miss that it is now unreferenced, and a new
//! reference cannot slip past a delete's check).

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use uuid::Uuid;

use super::{PgStore, Sql, begin, big, commit, dec, json, unbig};
use crate::store::uploads::{DeletedUpload, Thumbnail, Upload, UploadCreated};
use crate::store::{StoreError, StoreResult, UploadStore};

/// Locks each blob's references until the transaction ends (sorted, so two
/// transactions never wait on each other in a cycle).
async fn lock_blobs(tx: &Transaction<'_>, shas: &[&str]) -> StoreResult<()> {
    let mut shas: Vec<&str> = shas.to_vec();
    shas.sort_unstable();
    shas.dedup();
    for sha in shas {
        tx.exec(
            "SELECT pg_advisory_xact_lock(hashtextextended('confab blob ' || $1, 0))",
            &[&sha],
        )
        .await?;
    }
    Ok(())
}

/// True when some record references `sha` (content or thumbnail).
async fn referenced(c: &impl Sql, sha: &str) -> StoreResult<bool> {
    Ok(c.one(
        "SELECT EXISTS (SELECT 1 FROM uploads WHERE sha256 = $1)
             OR EXISTS (SELECT 1 FROM uploads WHERE thumb_sha256 = $1)",
        &[&sha],
    )
    .await?
    .get(0))
}

/// The record of `id` when `owner` owns it, its row locked.
async fn owned_for_update(tx: &Transaction<'_>, owner: Uuid, id: Uuid) -> StoreResult<Upload> {
    tx.opt(
        "SELECT data FROM uploads WHERE id = $1 AND owner = $2 FOR UPDATE",
        &[&id, &owner],
    )
    .await?
    .map(|r| dec(&r, 0))
    .transpose()?
    .ok_or(StoreError::NotFound)
}

#[async_trait]
impl UploadStore for PgStore {
    async fn create_upload(&self, u: &Upload, quota: Option<u64>) -> StoreResult<UploadCreated> {
        let mut c = self.client().await?;
        let tx = begin(&mut c).await?;
        lock_blobs(&tx, &u.blobs()).await?;
        // Creates the owner's counter when missing and locks it either way.
        let used: i64 = tx
            .one(
                "INSERT INTO upload_usage (owner, bytes) VALUES ($1, 0)
                 ON CONFLICT (owner) DO UPDATE SET bytes = upload_usage.bytes
                 RETURNING bytes",
                &[&u.owner],
            )
            .await?
            .get(0);
        let used = unbig(used);
        let after = used.saturating_add(u.size);
        if quota.is_some_and(|q| after > q) {
            // Dropping the transaction undoes the counter's creation.
            return Ok(UploadCreated::OverQuota { used });
        }
        let thumb = u.thumbnail.as_ref().map(|t| t.sha256.as_str());
        match tx
            .exec(
                "INSERT INTO uploads (id, owner, size, sha256, thumb_sha256, data)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[&u.id, &u.owner, &big(u.size)?, &u.sha256, &thumb, &json(u)],
            )
            .await
        {
            Err(StoreError::Conflict(_)) => {
                return Err(StoreError::Conflict("a file with this id exists".into()));
            }
            r => r?,
        };
        tx.exec(
            "UPDATE upload_usage SET bytes = $2 WHERE owner = $1",
            &[&u.owner, &big(after)?],
        )
        .await?;
        commit(tx).await?;
        Ok(UploadCreated::Stored { used: after })
    }

    async fn get_upload(&self, owner: Uuid, id: Uuid) -> StoreResult<Upload> {
        let c = self.client().await?;
        c.opt(
            "SELECT data FROM uploads WHERE id = $1 AND owner = $2",
            &[&id, &owner],
        )
        .await?
        .map(|r| dec(&r, 0))
        .transpose()?
        .ok_or(StoreError::NotFound)
    }

    async fn list_uploads(
        &self,
        owner: Uuid,
        before: Option<Uuid>,
        limit: usize,
    ) -> StoreResult<Vec<Upload>> {
        let c = self.client().await?;
        c.rows(
            "SELECT data FROM uploads WHERE owner = $1 AND ($2::uuid IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3",
            &[&owner, &before, &(limit.min(i64::MAX as usize) as i64)],
        )
        .await?
        .iter()
        .map(|r| dec(r, 0))
        .collect()
    }

    async fn upload_usage(&self, owner: Uuid) -> StoreResult<u64> {
        let c = self.client().await?;
        Ok(
            c.opt("SELECT bytes FROM upload_usage WHERE owner = $1", &[&owner])
                .await?
                .map_or(0, |r| unbig(r.get(0))),
        )
    }

    async fn set_upload_thumbnail(
        &self,
        owner: Uuid,
        id: Uuid,
        thumb: &Thumbnail,
    ) -> StoreResult<(Upload, Vec<String>)> {
        let mut c = self.client().await?;
        let tx = begin(&mut c).await?;
        let mut u = owned_for_update(&tx, owner, id).await?;
        let old = u.thumbnail.replace(thumb.clone());
        let mut shas = vec![thumb.sha256.as_str()];
        if let Some(o) = &old {
            shas.push(o.sha256.as_str());
        }
        lock_blobs(&tx, &shas).await?;
        tx.exec(
            "UPDATE uploads SET thumb_sha256 = $2, data = $3 WHERE id = $1",
            &[&id, &thumb.sha256, &json(&u)],
        )
        .await?;
        let mut freed = Vec::new();
        if let Some(old) = old
            && old.sha256 != thumb.sha256
            && old.sha256 != u.sha256
            && !referenced(&tx, &old.sha256).await?
        {
            freed.push(old.sha256);
        }
        commit(tx).await?;
        Ok((u, freed))
    }

    async fn delete_upload(&self, owner: Uuid, id: Uuid) -> StoreResult<DeletedUpload> {
        let mut c = self.client().await?;
        let tx = begin(&mut c).await?;
        let u = owned_for_update(&tx, owner, id).await?;
        lock_blobs(&tx, &u.blobs()).await?;
        tx.exec("DELETE FROM uploads WHERE id = $1", &[&id]).await?;
        let left: Option<i64> = tx
            .opt(
                "UPDATE upload_usage SET bytes = greatest(bytes - $2, 0) WHERE owner = $1
                 RETURNING bytes",
                &[&owner, &big(u.size)?],
            )
            .await?
            .map(|r| r.get(0));
        if left == Some(0) {
            tx.exec("DELETE FROM upload_usage WHERE owner = $1", &[&owner])
                .await?;
        }
        let mut unreferenced: Vec<String> = Vec::new();
        for sha in u.blobs() {
            if !unreferenced.iter().any(|s| s == sha) && !referenced(&tx, sha).await? {
                unreferenced.push(sha.to_string());
            }
        }
        // What was read of the file goes with it (chunks, vectors, its
        // place in collections, the index).
        let (_, ops) = super::knowledge::forget_in(&tx, owner, id).await?;
        super::search_outbox::commit_with_ops(tx, &ops).await?;
        Ok(DeletedUpload {
            upload: u,
            unreferenced,
        })
    }

    async fn blob_referenced(&self, sha256: &str) -> StoreResult<bool> {
        let c = self.client().await?;
        referenced(&c, sha256).await
    }

    async fn all_uploads(&self, after: Option<Uuid>, limit: usize) -> StoreResult<Vec<Upload>> {
        let c = self.client().await?;
        c.rows(
            "SELECT data FROM uploads WHERE $1::uuid IS NULL OR id > $1 ORDER BY id LIMIT $2",
            &[&after, &(limit.min(i64::MAX as usize) as i64)],
        )
        .await?
        .iter()
        .map(|r| dec(r, 0))
        .collect()
    }
}
