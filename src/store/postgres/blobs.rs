//! The blob store of several instances on one database: the bytes of
//! uploaded files in PostgreSQL, content-addressed like the local store and
//! cut into [`CHUNK`]-sized `bytea` rows keyed (address, n), so that an
//! upload or a download streams through memory one chunk at a time.
//!
//! - `blobs` has one row per committed blob (size, chunk count);
//! - `blob_chunks` holds the bytes, under the blob's address once committed
//!   and under a `staging/<uuid>` key while an upload streams in (a
//!   staging never committed is removed when dropped, or by the sweep a
//!   day later after a crash or a request cancelled mid-upload);
//! - `blob_holds` keeps a just-committed blob from deletion until the
//!   record that references it is stored (or the hold expires).
//!
//! A blob gains and loses references under the same transaction-scoped
//! advisory lock the upload records take (`uploads.rs`): a commit makes
//! its blob visible and adds its hold under it, and a delete checks under
//! it that no upload record and no live hold references the blob before
//! removing it. So an instance deleting the last file with some content
//! and another uploading that content at the same moment cannot leave a
//! record without its bytes, whichever order they run in.

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use deadpool_postgres::Pool;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Sql, begin, big, commit, unbig};
use crate::store::StoreError;
use crate::store::blobs::{
    BlobError, BlobHold, BlobStore, BodyStream, ByteStream, StagedBlob, is_address,
};

/// Bytes per row of `blob_chunks`.
pub const CHUNK: usize = 1024 * 1024;

/// How long a hold keeps a blob when nobody releases it (a crash between
/// the commit and the record).
const HOLD_SECS: i64 = 3600;

/// The tables (schema step 3 → 4). The chunks are stored without
/// compression: uploads are mostly images and PDFs, already compressed.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE blobs (
    sha256 text PRIMARY KEY,
    size bigint NOT NULL,
    chunks integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE blob_chunks (
    blob text NOT NULL,
    n integer NOT NULL,
    data bytea NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (blob, n)
);
ALTER TABLE blob_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE TABLE blob_holds (
    id uuid PRIMARY KEY,
    sha256 text NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX blob_holds_by_blob ON blob_holds (sha256);
"#;

/// Blobs in the database of a [`super::PgStore`].
#[derive(Clone)]
pub struct PgBlobs {
    pool: Pool,
    what: String,
}

impl std::fmt::Debug for PgBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBlobs").field("db", &self.what).finish()
    }
}

fn io(e: StoreError) -> BlobError {
    BlobError::Io(std::io::Error::other(e.to_string()))
}

/// Locks a blob's references until the transaction ends: the lock the
/// upload records take too.
pub(super) async fn lock_blob(tx: &impl Sql, sha: &str) -> Result<(), StoreError> {
    tx.exec(
        "SELECT pg_advisory_xact_lock(hashtextextended('confab blob ' || $1, 0))",
        &[&sha],
    )
    .await?;
    Ok(())
}

/// Writes chunk `n` of `key` (its own statement; staging is not one
/// transaction, so a long upload holds no transaction open).
pub(super) async fn put_chunk(
    c: &impl Sql,
    key: &str,
    n: i32,
    data: &[u8],
) -> Result<(), StoreError> {
    c.exec(
        "INSERT INTO blob_chunks (blob, n, data) VALUES ($1, $2, $3)",
        &[&key, &n, &data],
    )
    .await?;
    Ok(())
}

/// Records a blob whose chunks are all under its address.
pub(super) async fn put_blob_row(
    c: &impl Sql,
    sha: &str,
    size: u64,
    chunks: i32,
) -> Result<(), StoreError> {
    c.exec(
        "INSERT INTO blobs (sha256, size, chunks) VALUES ($1, $2, $3)",
        &[&sha, &big(size)?, &chunks],
    )
    .await?;
    Ok(())
}

impl PgBlobs {
    pub(super) fn new(pool: Pool, what: String) -> PgBlobs {
        PgBlobs { pool, what }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, BlobError> {
        self.pool.get().await.map_err(|e| {
            BlobError::Io(std::io::Error::other(format!(
                "cannot get a connection to the {}: {e}",
                self.what
            )))
        })
    }

    async fn drop_staging(&self, key: &str) -> Result<(), BlobError> {
        let c = self.client().await?;
        c.exec("DELETE FROM blob_chunks WHERE blob = $1", &[&key])
            .await
            .map_err(io)?;
        Ok(())
    }

    async fn stage_into(
        &self,
        key: &str,
        mut body: BodyStream<'_>,
    ) -> Result<(String, u64), BlobError> {
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buf = BytesMut::with_capacity(CHUNK);
        let mut n: i32 = 0;
        while let Some(part) = body.next().await {
            let part = part.map_err(BlobError::Source)?;
            hasher.update(&part);
            size += part.len() as u64;
            let mut rest = &part[..];
            while !rest.is_empty() {
                let take = (CHUNK - buf.len()).min(rest.len());
                buf.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if buf.len() == CHUNK {
                    let c = self.client().await?;
                    put_chunk(&c, key, n, &buf).await.map_err(io)?;
                    buf.clear();
                    n += 1;
                }
            }
        }
        if !buf.is_empty() {
            let c = self.client().await?;
            put_chunk(&c, key, n, &buf).await.map_err(io)?;
        }
        Ok((hex::encode(hasher.finalize()), size))
    }
}

/// The number of chunks of `size` bytes.
pub(super) fn chunks_of(size: u64) -> i32 {
    size.div_ceil(CHUNK as u64).min(i32::MAX as u64) as i32
}

#[async_trait]
impl BlobStore for PgBlobs {
    async fn stage(&self, body: BodyStream<'_>) -> Result<StagedBlob, BlobError> {
        let key = format!("staging/{}", Uuid::now_v7().simple());
        match self.stage_into(&key, body).await {
            Ok((sha, size)) => {
                let me = self.clone();
                Ok(StagedBlob::staged_at(sha, size, key, move |key| {
                    if let Ok(rt) = tokio::runtime::Handle::try_current() {
                        rt.spawn(async move {
                            if let Err(e) = me.drop_staging(&key).await {
                                tracing::warn!(error = %e, "cannot remove a staged blob");
                            }
                        });
                    }
                }))
            }
            Err(e) => {
                if let Err(e) = self.drop_staging(&key).await {
                    tracing::warn!(error = %e, "cannot remove a failed staged blob");
                }
                Err(e)
            }
        }
    }

    async fn commit(&self, mut staged: StagedBlob) -> Result<BlobHold, BlobError> {
        let sha = staged.sha256.clone();
        if !is_address(&sha) {
            return Err(BlobError::NotFound);
        }
        let key = staged
            .take_key()
            .ok_or_else(|| BlobError::Io(std::io::Error::other("not staged in this store")))?;
        let result: Result<Uuid, StoreError> = async {
            let mut c = self.pool.get().await.map_err(|e| {
                StoreError::Backend(format!("cannot get a connection to the {}: {e}", self.what))
            })?;
            let tx = begin(&mut c).await?;
            lock_blob(&tx, &sha).await?;
            let exists = tx
                .opt("SELECT 1 FROM blobs WHERE sha256 = $1", &[&sha])
                .await?
                .is_some();
            if exists {
                tx.exec("DELETE FROM blob_chunks WHERE blob = $1", &[&key])
                    .await?;
            } else {
                tx.exec(
                    "UPDATE blob_chunks SET blob = $2 WHERE blob = $1",
                    &[&key, &sha],
                )
                .await?;
                put_blob_row(&tx, &sha, staged.size, chunks_of(staged.size)).await?;
            }
            let id = Uuid::now_v7();
            tx.exec(
                "INSERT INTO blob_holds (id, sha256, expires_at)
                 VALUES ($1, $2, now() + make_interval(secs => $3))",
                &[&id, &sha, &(HOLD_SECS as f64)],
            )
            .await?;
            commit(tx).await?;
            Ok(id)
        }
        .await;
        match result {
            Ok(id) => Ok(BlobHold::with_id(sha, id)),
            Err(e) => {
                // The transaction rolled back: the staging is still there.
                let _ = self.drop_staging(&key).await;
                Err(io(e))
            }
        }
    }

    async fn release(&self, hold: BlobHold) -> Result<(), BlobError> {
        let Some(id) = hold.id() else {
            return Ok(());
        };
        let c = self.client().await?;
        c.exec("DELETE FROM blob_holds WHERE id = $1", &[&id])
            .await
            .map_err(io)?;
        Ok(())
    }

    async fn open(&self, sha256: &str) -> Result<(ByteStream, u64), BlobError> {
        if !is_address(sha256) {
            return Err(BlobError::NotFound);
        }
        let c = self.client().await?;
        let Some(row) = c
            .opt(
                "SELECT size, chunks FROM blobs WHERE sha256 = $1",
                &[&sha256],
            )
            .await
            .map_err(io)?
        else {
            return Err(BlobError::NotFound);
        };
        drop(c);
        let size = unbig(row.get(0));
        let chunks: i32 = row.get(1);
        let me = self.clone();
        let sha = sha256.to_string();
        // One chunk in memory at a time, each read with a connection taken
        // from the pool only for that read (a slow client holds none).
        let stream = futures::stream::unfold(0i32, move |n| {
            let me = me.clone();
            let sha = sha.clone();
            async move {
                if n >= chunks {
                    return None;
                }
                let got: std::io::Result<Bytes> = async {
                    let c = me
                        .client()
                        .await
                        .map_err(|e| std::io::Error::other(e.to_string()))?;
                    let row = c
                        .opt(
                            "SELECT data FROM blob_chunks WHERE blob = $1 AND n = $2",
                            &[&sha, &n],
                        )
                        .await
                        .map_err(|e| std::io::Error::other(e.to_string()))?
                        .ok_or_else(|| std::io::Error::other("a blob's chunk is missing"))?;
                    let data: Vec<u8> = row.get(0);
                    Ok(Bytes::from(data))
                }
                .await;
                // After an error the stream ends.
                let next = if got.is_ok() { n + 1 } else { chunks };
                Some((got, next))
            }
        });
        Ok((stream.boxed(), size))
    }

    async fn read(&self, sha256: &str, max: u64) -> Result<Bytes, BlobError> {
        if !is_address(sha256) {
            return Err(BlobError::NotFound);
        }
        let c = self.client().await?;
        let Some(row) = c
            .opt("SELECT size FROM blobs WHERE sha256 = $1", &[&sha256])
            .await
            .map_err(io)?
        else {
            return Err(BlobError::NotFound);
        };
        let size = unbig(row.get(0));
        if size > max {
            return Err(BlobError::Io(std::io::Error::other(format!(
                "blob is {size} bytes, more than the {max} asked for"
            ))));
        }
        let rows = c
            .rows(
                "SELECT data FROM blob_chunks WHERE blob = $1 ORDER BY n",
                &[&sha256],
            )
            .await
            .map_err(io)?;
        let mut out = BytesMut::with_capacity(size as usize);
        for r in rows {
            let data: &[u8] = r.get(0);
            out.extend_from_slice(data);
        }
        if out.len() as u64 != size {
            return Err(BlobError::Io(std::io::Error::other(
                "a blob's chunks do not add up to its size",
            )));
        }
        Ok(out.freeze())
    }

    async fn delete(&self, sha256: &str) -> Result<(), BlobError> {
        if !is_address(sha256) {
            return Err(BlobError::NotFound);
        }
        let mut c = self.client().await?;
        let done: Result<(), StoreError> = async {
            let tx = begin(&mut c).await?;
            lock_blob(&tx, sha256).await?;
            let kept: bool = tx
                .one(
                    "SELECT EXISTS (SELECT 1 FROM uploads WHERE sha256 = $1)
                         OR EXISTS (SELECT 1 FROM uploads WHERE thumb_sha256 = $1)
                         OR EXISTS (SELECT 1 FROM blob_holds WHERE sha256 = $1 AND expires_at > now())",
                    &[&sha256],
                )
                .await?
                .get(0);
            if kept {
                return Ok(());
            }
            tx.exec("DELETE FROM blob_chunks WHERE blob = $1", &[&sha256])
                .await?;
            tx.exec("DELETE FROM blobs WHERE sha256 = $1", &[&sha256])
                .await?;
            tx.exec("DELETE FROM blob_holds WHERE sha256 = $1", &[&sha256])
                .await?;
            commit(tx).await
        }
        .await;
        done.map_err(io)
    }

    async fn exists(&self, sha256: &str) -> Result<bool, BlobError> {
        if !is_address(sha256) {
            return Ok(false);
        }
        let c = self.client().await?;
        Ok(c.opt("SELECT 1 FROM blobs WHERE sha256 = $1", &[&sha256])
            .await
            .map_err(io)?
            .is_some())
    }

    async fn list(&self) -> Result<Vec<String>, BlobError> {
        let c = self.client().await?;
        Ok(c.rows("SELECT sha256 FROM blobs ORDER BY sha256", &[])
            .await
            .map_err(io)?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    async fn sweep(&self) -> Result<(), BlobError> {
        let c = self.client().await?;
        c.exec("DELETE FROM blob_holds WHERE expires_at <= now()", &[])
            .await
            .map_err(io)?;
        c.exec(
            "DELETE FROM blob_chunks WHERE blob LIKE 'staging/%' AND written_at < now() - interval '1 day'",
            &[],
        )
        .await
        .map_err(io)?;
        Ok(())
    }
}
