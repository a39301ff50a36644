//! Content-addressed blobs: the bytes of uploaded files and their
//! thumbnails, each stored once under the lowercase hex SHA-256 of its
//! content. [`BlobStore`] is the interface (the state holds an
//! `Arc<dyn BlobStore>`); [`LocalBlobs`] keeps them under
//! `<data_dir>/blobs/ab/cd/<sha>`, and the PostgreSQL store brings its own,
//! shared by every instance on the database (`store::postgres::blobs`).
//!
//! A committed blob comes with a [`BlobHold`]: until it is released (once
//! the record referencing the blob exists) a shared store does not delete
//! the blob, so another instance deleting the last file with the same
//! content cannot remove it between the commit and the record.
//!
//! No path is ever built from anything but a validated SHA-256, so a
//! user's file name cannot reach the file system. Writing is staged: the
//! bytes stream into a temporary file (hashed and counted on the way),
//! which is fsynced and renamed to its address only on [`BlobStore::commit`];
//! a staged blob dropped without a commit is removed.

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// A body of bytes, as a download leaves.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;
/// A body of bytes as it arrives (it may borrow the request it comes from).
pub type BodyStream<'a> = BoxStream<'a, std::io::Result<Bytes>>;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob not found")]
    NotFound,
    /// The body being stored failed (the client went away, or the caller's
    /// stream refused to go on, e.g. past a size limit); nothing was stored.
    #[error("{0}")]
    Source(std::io::Error),
    #[error("blob storage: {0}")]
    Io(#[from] std::io::Error),
}

/// What undoes a staging that was not committed (given the staging key).
type Discard = Box<dyn FnOnce(String) + Send + Sync>;

/// Bytes written to the store but not yet visible under their address.
/// Dropping it without [`BlobStore::commit`] discards them.
pub struct StagedBlob {
    pub sha256: String,
    pub size: u64,
    temp: Option<PathBuf>,
    /// Where a store other than the local disk staged the bytes, and how
    /// it removes them.
    elsewhere: Option<(String, Discard)>,
}

impl std::fmt::Debug for StagedBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedBlob")
            .field("sha256", &self.sha256)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl StagedBlob {
    /// A staged blob whose bytes are at `temp` (for implementations).
    pub fn new(sha256: String, size: u64, temp: PathBuf) -> StagedBlob {
        StagedBlob {
            sha256,
            size,
            temp: Some(temp),
            elsewhere: None,
        }
    }

    /// A staged blob a store keeps under `key`; `discard(key)` runs when
    /// it is dropped without a commit.
    pub fn staged_at(
        sha256: String,
        size: u64,
        key: String,
        discard: impl FnOnce(String) + Send + Sync + 'static,
    ) -> StagedBlob {
        StagedBlob {
            sha256,
            size,
            temp: None,
            elsewhere: Some((key, Box::new(discard))),
        }
    }

    /// Takes the temporary file over (it is no longer removed on drop).
    pub fn take_temp(&mut self) -> Option<PathBuf> {
        self.temp.take()
    }

    /// Takes the staging key over (it is no longer discarded on drop).
    pub fn take_key(&mut self) -> Option<String> {
        self.elsewhere.take().map(|(k, _)| k)
    }
}

impl Drop for StagedBlob {
    fn drop(&mut self) {
        if let Some(p) = self.temp.take() {
            let _ = std::fs::remove_file(p);
        }
        if let Some((key, discard)) = self.elsewhere.take() {
            discard(key);
        }
    }
}

/// A committed blob, kept from deletion by a shared store until
/// [`BlobStore::release`] (or until the hold expires, after a crash).
#[derive(Debug)]
#[must_use = "release the hold once the record referencing the blob is stored"]
pub struct BlobHold {
    pub sha256: String,
    id: Option<uuid::Uuid>,
}

impl BlobHold {
    /// A hold that holds nothing (a store that needs none).
    pub fn none(sha256: String) -> BlobHold {
        BlobHold { sha256, id: None }
    }

    /// A hold a store keeps under `id`.
    pub fn with_id(sha256: String, id: uuid::Uuid) -> BlobHold {
        BlobHold {
            sha256,
            id: Some(id),
        }
    }

    pub fn id(&self) -> Option<uuid::Uuid> {
        self.id
    }
}

#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// Streams `body` into staging, hashing and counting it. A failing
    /// body leaves nothing behind ([`BlobError::Source`]).
    async fn stage(&self, body: BodyStream<'_>) -> Result<StagedBlob, BlobError>;
    /// Makes a staged blob readable under its address (durably); a blob
    /// with that address already there is kept (same content). The blob
    /// is held against deletion until the hold is released.
    async fn commit(&self, staged: StagedBlob) -> Result<BlobHold, BlobError>;
    /// Ends a hold (the record referencing the blob exists, or will not).
    async fn release(&self, _hold: BlobHold) -> Result<(), BlobError> {
        Ok(())
    }
    /// Stages and commits `bytes` at once; the hold names the address.
    async fn put_bytes(&self, bytes: Bytes) -> Result<BlobHold, BlobError> {
        let staged = self
            .stage(futures::stream::once(async move { Ok(bytes) }).boxed())
            .await?;
        self.commit(staged).await
    }
    /// The content as a stream, with its length.
    async fn open(&self, sha256: &str) -> Result<(ByteStream, u64), BlobError>;
    /// The whole content, refused ([`BlobError::Io`]) when larger than `max`.
    async fn read(&self, sha256: &str, max: u64) -> Result<Bytes, BlobError>;
    /// Removes a blob the caller found unreferenced; a missing one is not
    /// an error. A store shared by several servers checks again under its
    /// own lock and keeps a blob that a record or a hold references by then.
    async fn delete(&self, sha256: &str) -> Result<(), BlobError>;
    async fn exists(&self, sha256: &str) -> Result<bool, BlobError>;
    /// Every stored address (backups and garbage collection).
    async fn list(&self) -> Result<Vec<String>, BlobError>;
    /// Removes what crashed writers left: expired holds, stagings never
    /// committed (garbage collection).
    async fn sweep(&self) -> Result<(), BlobError> {
        Ok(())
    }
}

/// Where [`adopt_local`] moves a data directory's blob files aside once
/// the shared store holds them all.
pub const ADOPTED_DIR: &str = "blobs.in-database";

/// Copies the blob files of `data_dir` that `shared` does not hold yet into
/// it (each streamed, hashed again and verified against its name), then
/// sets the directory aside as [`ADOPTED_DIR`]: files uploaded while this
/// instance kept its blobs on its own disk (before the shared store, or
/// before the move to PostgreSQL) are served by every instance. Returns how
/// many were copied; nothing happens without a `blobs` directory.
pub async fn adopt_local(data_dir: &Path, shared: &dyn BlobStore) -> Result<usize, BlobError> {
    let local = LocalBlobs::at(data_dir);
    if !local.root().is_dir() {
        return Ok(0);
    }
    let mut n = 0;
    for sha in local.list().await? {
        if shared.exists(&sha).await? {
            continue;
        }
        let (stream, _) = local.open(&sha).await?;
        let staged = shared.stage(stream).await?;
        if staged.sha256 != sha {
            return Err(BlobError::Io(std::io::Error::other(format!(
                "the file blobs/{}/{}/{sha} of the data directory does not hold the content its name says (damaged)",
                &sha[0..2],
                &sha[2..4]
            ))));
        }
        let hold = shared.commit(staged).await?;
        shared.release(hold).await?;
        n += 1;
    }
    let aside = data_dir.join(ADOPTED_DIR);
    if aside.exists() {
        // Set aside before: keep both, this one under a new name.
        let name = format!("{ADOPTED_DIR}-{}", uuid::Uuid::now_v7().simple());
        std::fs::rename(local.root(), data_dir.join(name))?;
    } else {
        std::fs::rename(local.root(), aside)?;
    }
    Ok(n)
}

/// True for 64 lowercase hex digits: the only strings that become paths.
pub fn is_address(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn not_an_address() -> BlobError {
    BlobError::NotFound
}

/// Blobs as files under one directory of the local disk.
#[derive(Debug, Clone)]
pub struct LocalBlobs {
    root: PathBuf,
}

impl crate::store::file::BlobSource for LocalBlobs {
    fn read_blob(&self, sha256: &str) -> std::io::Result<Option<Vec<u8>>> {
        let Ok(path) = self.path_of(sha256) else {
            return Ok(None);
        };
        match std::fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl LocalBlobs {
    /// The blobs of `data_dir` without creating anything (reading them for
    /// a backup of a stopped server).
    pub fn at(data_dir: &Path) -> LocalBlobs {
        LocalBlobs {
            root: data_dir.join("blobs"),
        }
    }

    /// Where a staged restore writes blobs before they are swapped in:
    /// `dir/ab/cd/<sha>`, fsynced. Blocking.
    pub fn write_into(dir: &Path, sha256: &str, bytes: &[u8]) -> std::io::Result<()> {
        if !is_address(sha256) {
            return Err(std::io::Error::other("not a blob address"));
        }
        let sub = dir.join(&sha256[0..2]).join(&sha256[2..4]);
        std::fs::create_dir_all(&sub)?;
        let path = sub.join(sha256);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path)?;
        std::io::Write::write_all(&mut f, bytes)?;
        f.sync_all()
    }

    /// Blobs under `<data_dir>/blobs` (created with mode 0700 when missing).
    pub fn open(data_dir: &Path) -> std::io::Result<LocalBlobs> {
        let root = data_dir.join("blobs");
        create_private_dir(&root)?;
        create_private_dir(&root.join(".staging"))?;
        Ok(LocalBlobs { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, sha: &str) -> Result<PathBuf, BlobError> {
        if !is_address(sha) {
            return Err(not_an_address());
        }
        Ok(self.root.join(&sha[0..2]).join(&sha[2..4]).join(sha))
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[async_trait]
impl BlobStore for LocalBlobs {
    async fn stage(&self, mut body: BodyStream<'_>) -> Result<StagedBlob, BlobError> {
        let temp = self
            .root
            .join(".staging")
            .join(format!("{}.part", uuid::Uuid::now_v7().simple()));
        let mut opts = tokio::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        opts.mode(0o600);
        let mut file = opts.open(&temp).await?;
        // From here on the staged blob owns the file: any early return
        // removes it.
        let mut staged = StagedBlob::new(String::new(), 0, temp);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(BlobError::Source)?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        file.sync_all().await?;
        drop(file);
        staged.sha256 = hex::encode(hasher.finalize());
        staged.size = size;
        Ok(staged)
    }

    async fn commit(&self, mut staged: StagedBlob) -> Result<BlobHold, BlobError> {
        let dest = self.path_of(&staged.sha256)?;
        let hold = BlobHold::none(staged.sha256.clone());
        let Some(temp) = staged.take_temp() else {
            return Ok(hold);
        };
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let dir = dest.parent().expect("blob paths have a parent");
            if dest.exists() {
                let _ = std::fs::remove_file(&temp);
                return Ok(());
            }
            if !dir.exists() {
                std::fs::create_dir_all(dir)?;
                if let Some(up) = dir.parent() {
                    sync_dir(up)?;
                }
            }
            let renamed = std::fs::rename(&temp, &dest);
            if renamed.is_err() {
                let _ = std::fs::remove_file(&temp);
            }
            renamed?;
            sync_dir(dir)
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;
        Ok(hold)
    }

    async fn open(&self, sha256: &str) -> Result<(ByteStream, u64), BlobError> {
        let path = self.path_of(sha256)?;
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(BlobError::NotFound),
            Err(e) => return Err(e.into()),
        };
        let len = file.metadata().await?.len();
        Ok((tokio_util::io::ReaderStream::new(file).boxed(), len))
    }

    async fn read(&self, sha256: &str, max: u64) -> Result<Bytes, BlobError> {
        let path = self.path_of(sha256)?;
        let meta = match tokio::fs::metadata(&path).await {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(BlobError::NotFound),
            Err(e) => return Err(e.into()),
        };
        if meta.len() > max {
            return Err(BlobError::Io(std::io::Error::other(format!(
                "blob is {} bytes, more than the {max} asked for",
                meta.len()
            ))));
        }
        Ok(tokio::fs::read(&path).await?.into())
    }

    async fn delete(&self, sha256: &str) -> Result<(), BlobError> {
        let path = self.path_of(sha256)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn exists(&self, sha256: &str) -> Result<bool, BlobError> {
        let path = self.path_of(sha256)?;
        Ok(tokio::fs::try_exists(&path).await?)
    }

    async fn list(&self) -> Result<Vec<String>, BlobError> {
        let root = self.root.clone();
        let out = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<String>> {
            let mut out = Vec::new();
            for a in std::fs::read_dir(&root)? {
                let a = a?;
                if !a.file_type()?.is_dir() || a.file_name().len() != 2 {
                    continue;
                }
                for b in std::fs::read_dir(a.path())? {
                    let b = b?;
                    if !b.file_type()?.is_dir() {
                        continue;
                    }
                    for f in std::fs::read_dir(b.path())? {
                        let name = f?.file_name().to_string_lossy().to_string();
                        if is_address(&name) {
                            out.push(name);
                        }
                    }
                }
            }
            out.sort();
            Ok(out)
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[&'static [u8]]) -> ByteStream {
        let v: Vec<std::io::Result<Bytes>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        futures::stream::iter(v).boxed()
    }

    #[tokio::test]
    async fn stage_commit_read_delete() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBlobs::open(dir.path()).unwrap();
        let staged = b.stage(body(&[b"hello ", b"world"])).await.unwrap();
        let sha = staged.sha256.clone();
        assert_eq!(
            sha,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(staged.size, 11);
        assert!(!b.exists(&sha).await.unwrap(), "not visible before commit");
        let _ = b.commit(staged).await.unwrap();
        assert!(b.exists(&sha).await.unwrap());
        assert_eq!(&b.read(&sha, 100).await.unwrap()[..], b"hello world");
        assert!(b.read(&sha, 5).await.is_err());
        assert_eq!(b.list().await.unwrap(), vec![sha.clone()]);
        // The same content again is one blob.
        assert_eq!(
            b.put_bytes(Bytes::from_static(b"hello world"))
                .await
                .unwrap()
                .sha256,
            sha
        );
        b.delete(&sha).await.unwrap();
        b.delete(&sha).await.unwrap();
        assert!(matches!(b.read(&sha, 100).await, Err(BlobError::NotFound)));
        // Nothing is left in staging.
        let staging: Vec<_> = std::fs::read_dir(b.root().join(".staging"))
            .unwrap()
            .collect();
        assert!(staging.is_empty());
    }

    #[tokio::test]
    async fn a_failing_or_dropped_body_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBlobs::open(dir.path()).unwrap();
        let failing: ByteStream = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"part")),
            Err(std::io::Error::other("client went away")),
        ])
        .boxed();
        assert!(matches!(b.stage(failing).await, Err(BlobError::Source(_))));
        let staged = b.stage(body(&[b"never committed"])).await.unwrap();
        drop(staged);
        let staging: Vec<_> = std::fs::read_dir(b.root().join(".staging"))
            .unwrap()
            .collect();
        assert!(staging.is_empty());
        assert!(b.list().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn only_addresses_become_paths() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBlobs::open(dir.path()).unwrap();
        for bad in ["../../etc/passwd", "", "ABCD", &"g".repeat(64)] {
            assert!(matches!(b.read(bad, 10).await, Err(BlobError::NotFound)));
            assert!(b.delete(bad).await.is_err());
        }
    }
}
