//! Uploaded files: the rules of uploading (size limit, storage quota, type
//! detection, safe names), reading back (content, thumbnails, images for
//! vision models), deleting, and keeping blobs and records in step.
//!
//! Records live in the store ([`UploadStore`]), bytes in the blob store
//! ([`BlobStore`]), addressed by SHA-256: two uploads of the same bytes
//! share one blob. The moments a blob gains or loses its last reference
//! are serialized by one lock ([`Files::refs`]): an upload makes its blob
//! visible and inserts its record under it, a delete removes its record
//! and then the blob under it, so a delete can never remove the blob of an
//! upload that is being recorded. That lock is one process's; with several
//! instances on one database the shared blob store holds the same rule:
//! a commit returns a [`BlobHold`] released only once the record exists,
//! and its delete re-checks references and holds under the database's
//! per-blob lock (see `store::postgres::blobs`). While a backup copies blobs, deletes
//! leave blobs behind ([`Files::pause_deletes`]); the garbage collection in
//! the maintenance task removes them afterwards (and blobs left by a crash).
//!
//! [`UploadStore`]: crate::store::UploadStore

pub mod detect;

use bytes::Bytes;
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use uuid::Uuid;

use crate::config::FilesConfig;
pub use crate::store::blobs::BodyStream;
use crate::store::blobs::{BlobError, BlobHold, BlobStore, ByteStream};
use crate::store::uploads::{Thumbnail, Upload, UploadCreated};
use crate::store::{SharedStore, StoreError, User};
pub use detect::{FileKind, IMAGE_MIMES, is_image_mime, sanitize_name};

/// How much of the start of an upload is kept in memory for type detection
/// and an image's size (a JPEG's frame header may follow large metadata).
pub const HEAD_BYTES: usize = 1024 * 1024;
/// Longest side of a thumbnail.
pub const THUMBNAIL_EDGE: u32 = 256;

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// Larger than `max_file_bytes`.
    #[error("the file is larger than the limit of {} per file", human_bytes(*.0))]
    TooLarge(u64),
    #[error(
        "this file would take your stored files to {}, over your storage quota of {}; delete some files first",
        human_bytes(*.needed),
        human_bytes(*.quota)
    )]
    QuotaExceeded { needed: u64, quota: u64 },
    #[error("the file is empty (0 bytes); there is nothing to upload")]
    Empty,
    #[error(
        "this type of file is not accepted: upload an image (PNG, JPEG, GIF, WebP), a PDF, a Word document (DOCX) or a text file (plain text, Markdown, CSV, HTML, source code)"
    )]
    Unsupported,
    #[error("{0}")]
    Unreadable(String),
    #[error("file not found")]
    NotFound,
    /// The upload body failed (the client went away, a malformed request).
    #[error("the upload was not received completely: {0}")]
    Body(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Blob(BlobError),
}

impl From<BlobError> for FilesError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::NotFound => FilesError::Blob(BlobError::NotFound),
            other => FilesError::Blob(other),
        }
    }
}

pub type Result<T> = std::result::Result<T, FilesError>;

/// `25 MiB`, `512 KiB`, `12 bytes`.
pub fn human_bytes(n: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = KIB * 1024;
    const GIB: u64 = MIB * 1024;
    let f = |v: u64, unit: u64, name: &str| {
        if v.is_multiple_of(unit) {
            format!("{} {name}", v / unit)
        } else {
            format!("{:.1} {name}", v as f64 / unit as f64)
        }
    };
    if n >= GIB {
        f(n, GIB, "GiB")
    } else if n >= MIB {
        f(n, MIB, "MiB")
    } else if n >= KIB {
        f(n, KIB, "KiB")
    } else {
        format!("{n} bytes")
    }
}

/// The storage quota of `user`: their override, else the server's; None
/// when unlimited (0 means no limit in both).
pub fn storage_quota(cfg: &FilesConfig, user: &User) -> Option<u64> {
    match user.quota.as_ref().and_then(|q| q.storage_bytes) {
        Some(0) => None,
        Some(n) => Some(n),
        None => cfg.default_quota(),
    }
}

/// A file being uploaded.
pub struct NewFile<'a> {
    /// The name the client gave (made safe before it is kept).
    pub name: Option<String>,
    /// The size the client announced, when it did: refused at once when
    /// over the limit.
    pub declared_size: Option<u64>,
    pub body: BodyStream<'a>,
}

/// A user's storage: bytes used and the quota (None: unlimited).
#[derive(Debug, Clone, Copy)]
pub struct Storage {
    pub used: u64,
    pub quota: Option<u64>,
}

/// An image ready for a model: its type and bytes as stored.
#[derive(Debug, Clone)]
pub struct ImageBytes {
    pub mime: String,
    pub bytes: Bytes,
}

/// The files service (one per server, in the state).
#[derive(Debug)]
pub struct Files {
    store: SharedStore,
    blobs: Arc<dyn BlobStore>,
    /// Serializes a blob's last reference appearing or going (see the
    /// module doc).
    refs: tokio::sync::Mutex<()>,
    /// Backups copying blobs right now: deletes leave blobs alone.
    paused: Arc<AtomicUsize>,
}

/// The blob store read from a blocking thread (a backup).
pub struct BlockingBlobs {
    blobs: Arc<dyn BlobStore>,
    rt: tokio::runtime::Handle,
}

impl crate::store::file::BlobSource for BlockingBlobs {
    fn read_blob(&self, sha256: &str) -> std::io::Result<Option<Vec<u8>>> {
        match self.rt.block_on(self.blobs.read(sha256, u64::MAX)) {
            Ok(b) => Ok(Some(b.to_vec())),
            Err(BlobError::NotFound) => Ok(None),
            Err(e) => Err(std::io::Error::other(e.to_string())),
        }
    }
}

/// While alive, deleted files' blobs stay on disk (a backup is copying
/// them); dropping it lets the next garbage collection remove them.
pub struct DeletePause(Arc<AtomicUsize>);

impl Drop for DeletePause {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts the bytes of an upload as they pass, refuses them past the
/// limit, and keeps the first [`HEAD_BYTES`] for type detection.
struct Counted {
    limit: u64,
    seen: u64,
    head: Vec<u8>,
}

fn too_large_marker() -> std::io::Error {
    std::io::Error::other("over the size limit")
}

impl Files {
    pub fn new(store: SharedStore, blobs: Arc<dyn BlobStore>) -> Files {
        Files {
            store,
            blobs,
            refs: tokio::sync::Mutex::new(()),
            paused: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    /// Bytes used and the quota of `user`.
    pub async fn storage(&self, cfg: &FilesConfig, user: &User) -> Result<Storage> {
        let user = &crate::groups::with_group_quotas(&self.store, user).await?;
        Ok(Storage {
            used: self.store.upload_usage(user.id).await?,
            quota: storage_quota(cfg, user),
        })
    }

    /// Stores an upload: refused as soon as it is over the size limit (by
    /// its announced size, else while it streams) or the quota, when empty,
    /// or when its content is not a type confab keeps.
    pub async fn upload(&self, cfg: &FilesConfig, user: &User, f: NewFile<'_>) -> Result<Upload> {
        let limit = cfg.max_file_bytes;
        if f.declared_size.is_some_and(|n| n > limit) {
            return Err(FilesError::TooLarge(limit));
        }
        let user = &crate::groups::with_group_quotas(&self.store, user).await?;
        let quota = storage_quota(cfg, user);
        if let Some(q) = quota {
            let used = self.store.upload_usage(user.id).await?;
            let needed = used.saturating_add(f.declared_size.unwrap_or(1));
            if needed > q {
                return Err(FilesError::QuotaExceeded { needed, quota: q });
            }
        }
        let counter = Arc::new(std::sync::Mutex::new(Counted {
            limit,
            seen: 0,
            head: Vec::new(),
        }));
        let c = counter.clone();
        let body = f
            .body
            .map(move |chunk| {
                let chunk = chunk?;
                let mut st = c.lock().expect("lock not poisoned");
                st.seen += chunk.len() as u64;
                if st.seen > st.limit {
                    return Err(too_large_marker());
                }
                if st.head.len() < HEAD_BYTES {
                    let take = (HEAD_BYTES - st.head.len()).min(chunk.len());
                    st.head.extend_from_slice(&chunk[..take]);
                }
                Ok(chunk)
            })
            .boxed();
        let staged = match self.blobs.stage(body).await {
            Ok(s) => s,
            Err(BlobError::Source(e)) => {
                let over = counter.lock().expect("lock not poisoned").seen > limit;
                return Err(if over {
                    FilesError::TooLarge(limit)
                } else {
                    FilesError::Body(e.to_string())
                });
            }
            Err(e) => return Err(e.into()),
        };
        if staged.size == 0 {
            return Err(FilesError::Empty);
        }
        let head = std::mem::take(&mut counter.lock().expect("lock not poisoned").head);
        let name = sanitize_name(f.name.as_deref().unwrap_or(""), "file");
        let complete = staged.size as usize == head.len();
        let detected = detect::detect(&head, &name, complete).ok_or(FilesError::Unsupported)?;
        let (width, height) = if detected.kind == FileKind::Image {
            let (w, h) = crate::imaging::dimensions(&head)
                .map_err(|e| FilesError::Unreadable(e.to_string()))?;
            (Some(w), Some(h))
        } else {
            (None, None)
        };
        let record = Upload {
            id: Uuid::now_v7(),
            owner: user.id,
            name,
            mime: detected.mime.to_string(),
            size: staged.size,
            sha256: staged.sha256.clone(),
            created_at: crate::clock::now(),
            width,
            height,
            thumbnail: None,
        };
        let _refs = self.refs.lock().await;
        let hold = self.blobs.commit(staged).await?;
        let created = self.store.create_upload(&record, quota).await;
        self.release(hold).await;
        match created {
            Ok(UploadCreated::Stored { .. }) => Ok(record),
            Ok(UploadCreated::OverQuota { used }) => {
                self.drop_if_unreferenced(&record.sha256).await;
                Err(FilesError::QuotaExceeded {
                    needed: used.saturating_add(record.size),
                    quota: quota.unwrap_or(0),
                })
            }
            Err(e) => {
                self.drop_if_unreferenced(&record.sha256).await;
                Err(e.into())
            }
        }
    }

    /// Ends a blob's hold; one left behind only delays its deletion until
    /// it expires.
    async fn release(&self, hold: BlobHold) {
        if let Err(e) = self.blobs.release(hold).await {
            tracing::warn!(error = %e, "cannot release a blob's hold");
        }
    }

    /// Removes a blob nothing references (the refs lock is held).
    async fn drop_if_unreferenced(&self, sha: &str) {
        if self.paused.load(Ordering::SeqCst) > 0 {
            return;
        }
        match self.store.blob_referenced(sha).await {
            Ok(false) => {
                if let Err(e) = self.blobs.delete(sha).await {
                    tracing::warn!(error = %e, "cannot remove an unreferenced blob");
                }
            }
            Ok(true) => {}
            Err(e) => tracing::warn!(error = %e, "cannot check a blob's references"),
        }
    }

    /// Every one of `owner`'s files, newest first (exports).
    pub async fn all_of(&self, owner: Uuid) -> Result<Vec<Upload>> {
        let mut out = Vec::new();
        let mut before = None;
        loop {
            let page = self.store.list_uploads(owner, before, 500).await?;
            let done = page.len() < 500;
            before = page.last().map(|u| u.id);
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }

    /// The whole content of one of `owner`'s files (exports).
    pub async fn bytes(&self, owner: Uuid, id: Uuid) -> Result<(Upload, Bytes)> {
        let u = self.get(owner, id).await?;
        let b = self
            .blobs
            .read(&u.sha256, u.size.max(1))
            .await
            .map_err(missing_blob)?;
        Ok((u, b))
    }

    /// The record of one of `owner`'s files.
    pub async fn get(&self, owner: Uuid, id: Uuid) -> Result<Upload> {
        self.store.get_upload(owner, id).await.map_err(not_found)
    }

    /// `owner`'s files, newest first, older than `before`.
    pub async fn list(
        &self,
        owner: Uuid,
        before: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<Upload>> {
        Ok(self.store.list_uploads(owner, before, limit).await?)
    }

    /// The content of one of `owner`'s files, streamed.
    pub async fn content(&self, owner: Uuid, id: Uuid) -> Result<(Upload, ByteStream, u64)> {
        let u = self.get(owner, id).await?;
        let (stream, len) = self.blobs.open(&u.sha256).await.map_err(missing_blob)?;
        Ok((u, stream, len))
    }

    /// The whole content of an image of `owner`'s (to send to a model).
    pub async fn image(&self, owner: Uuid, id: Uuid) -> Result<(Upload, ImageBytes)> {
        let u = self.get(owner, id).await?;
        if !is_image_mime(&u.mime) {
            return Err(FilesError::Unsupported);
        }
        let bytes = self
            .blobs
            .read(&u.sha256, u.size.max(1))
            .await
            .map_err(missing_blob)?;
        let mime = u.mime.clone();
        Ok((u, ImageBytes { mime, bytes }))
    }

    /// A small preview of an image, made at the first request and kept as
    /// a blob: (type, bytes). NotFound for files that are not images.
    pub async fn thumbnail(&self, owner: Uuid, id: Uuid) -> Result<(String, Bytes)> {
        let u = self.get(owner, id).await?;
        if !is_image_mime(&u.mime) {
            return Err(FilesError::NotFound);
        }
        if let Some(t) = &u.thumbnail {
            match self.blobs.read(&t.sha256, t.size.max(1)).await {
                Ok(b) => return Ok((t.mime.clone(), b)),
                Err(BlobError::NotFound) => {} // made again below
                Err(e) => return Err(e.into()),
            }
        }
        let original = self
            .blobs
            .read(&u.sha256, u.size.max(1))
            .await
            .map_err(missing_blob)?;
        let made = tokio::task::spawn_blocking(move || {
            crate::imaging::thumbnail(&original, THUMBNAIL_EDGE)
        })
        .await
        .map_err(|e| FilesError::Unreadable(format!("the thumbnail could not be made: {e}")))?
        .map_err(|e| FilesError::Unreadable(e.to_string()))?;
        let bytes = Bytes::from(made.bytes);
        let _refs = self.refs.lock().await;
        let hold = self.blobs.put_bytes(bytes.clone()).await?;
        let thumb = Thumbnail {
            sha256: hold.sha256.clone(),
            mime: made.mime.to_string(),
            size: bytes.len() as u64,
            width: made.width,
            height: made.height,
        };
        let set = self.store.set_upload_thumbnail(owner, id, &thumb).await;
        self.release(hold).await;
        match set {
            Ok((_, freed)) => {
                for sha in freed {
                    self.drop_if_unreferenced(&sha).await;
                }
            }
            Err(StoreError::NotFound) => {
                // Deleted meanwhile: the new blob belongs to nothing.
                self.drop_if_unreferenced(&thumb.sha256).await;
                return Err(FilesError::NotFound);
            }
            Err(e) => return Err(e.into()),
        }
        Ok((thumb.mime, bytes))
    }

    /// Deletes one of `owner`'s files, and its blobs when no other record
    /// references them.
    pub async fn delete(&self, owner: Uuid, id: Uuid) -> Result<Upload> {
        let _refs = self.refs.lock().await;
        let d = self
            .store
            .delete_upload(owner, id)
            .await
            .map_err(not_found)?;
        for sha in &d.unreferenced {
            self.drop_if_unreferenced(sha).await;
        }
        Ok(d.upload)
    }

    /// The blobs for a backup running on a blocking thread of `rt`.
    pub fn blob_source(&self, rt: tokio::runtime::Handle) -> BlockingBlobs {
        BlockingBlobs {
            blobs: self.blobs.clone(),
            rt,
        }
    }

    /// Keeps deleted files' blobs on disk while the pause lives (backups).
    pub fn pause_deletes(&self) -> DeletePause {
        self.paused.fetch_add(1, Ordering::SeqCst);
        DeletePause(self.paused.clone())
    }

    /// Removes blobs no record references (left by deletes during a
    /// backup, or by a crash between a record's removal and its blob's).
    /// Returns how many went.
    pub async fn collect_garbage(&self) -> Result<usize> {
        let _refs = self.refs.lock().await;
        if self.paused.load(Ordering::SeqCst) > 0 {
            return Ok(0);
        }
        self.blobs.sweep().await?;
        let mut n = 0;
        for sha in self.blobs.list().await? {
            if !self.store.blob_referenced(&sha).await? {
                self.blobs.delete(&sha).await?;
                n += 1;
            }
        }
        Ok(n)
    }
}

fn not_found(e: StoreError) -> FilesError {
    match e {
        StoreError::NotFound => FilesError::NotFound,
        other => other.into(),
    }
}

/// A record whose blob is gone (a damaged data directory): internal.
fn missing_blob(e: BlobError) -> FilesError {
    match e {
        BlobError::NotFound => FilesError::Blob(BlobError::Io(std::io::Error::other(
            "the content of a stored file is missing from the blob store",
        ))),
        other => other.into(),
    }
}

impl From<FilesError> for crate::error::AppError {
    fn from(e: FilesError) -> Self {
        use crate::error::AppError;
        let m = e.to_string();
        match e {
            FilesError::TooLarge(_) => AppError::FileTooLarge(m),
            FilesError::QuotaExceeded { .. } => AppError::StorageQuotaExceeded(m),
            FilesError::Empty => AppError::FileEmpty(m),
            FilesError::Unsupported => AppError::UnsupportedFileType(m),
            FilesError::Unreadable(_) => AppError::FileUnreadable(m),
            FilesError::NotFound => AppError::not_found("file"),
            FilesError::Body(_) => AppError::Validation(m),
            FilesError::Store(s) => s.into(),
            FilesError::Blob(b) => AppError::internal(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(25 * 1024 * 1024), "25 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(12), "12 bytes");
        assert_eq!(human_bytes(1024 * 1024 * 1024), "1 GiB");
    }
}
