//! The abilities only a store kept in one local file has (redb): its path
//! and an online backup. A database server does these with its own tools, so
//! they are not part of the aggregate traits (see [`FileStore`]).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::StoreError;

/// The abilities of a store that lives in one file of the data directory:
/// its path and an online, consistent backup.
pub trait FileStore: Send + Sync {
    fn path(&self) -> &Path;
    /// Writes a consistent copy of every record plus `files` (name, bytes)
    /// to `dest` (which must not exist) while the server keeps running;
    /// `progress(rows_done, rows_total)` is called as rows are copied.
    fn backup_to(
        &self,
        dest: &Path,
        files: &[(String, Vec<u8>)],
        blobs: &dyn BlobSource,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<BackupHeader, BackupError>;
}

/// Where a backup reads the blobs (uploaded files) its records reference.
/// Called on a blocking thread.
pub trait BlobSource {
    /// The content of blob `sha256`; None when it is missing.
    fn read_blob(&self, sha256: &str) -> std::io::Result<Option<Vec<u8>>>;
}

/// No blobs at all (a store without uploads).
pub struct NoBlobs;

impl BlobSource for NoBlobs {
    fn read_blob(&self, _: &str) -> std::io::Result<Option<Vec<u8>>> {
        Ok(None)
    }
}

/// What a backup file says about itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupHeader {
    pub format: u32,
    /// RFC 3339 UTC time the snapshot was taken.
    pub created_at: String,
    pub confab_version: String,
    pub schema_version: u64,
    /// Rows per table at the snapshot.
    pub tables: BTreeMap<String, u64>,
    /// Names of the data-directory files embedded (key files).
    pub files: Vec<String>,
    /// Blobs (uploaded files' content) embedded; older backups have none.
    #[serde(default)]
    pub blobs: u64,
}

impl BackupHeader {
    pub fn rows(&self) -> u64 {
        self.tables.values().sum()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{path} is not a confab backup: {why}")]
    NotABackup { path: PathBuf, why: String },
    #[error(
        "the backup {path} is damaged ({why}); it was not restored and the data directory is unchanged"
    )]
    Damaged { path: PathBuf, why: String },
    #[error(
        "the backup {path} was made by a newer confab (schema {found}, this binary knows {known}); restore it with that version or newer"
    )]
    TooNew {
        path: PathBuf,
        found: u64,
        known: u64,
    },
    #[error(
        "the data directory contains a table this confab cannot back up ({0}); upgrade confab, or this is a bug: every table must be listed in store::for_each_table!"
    )]
    UnknownTable(String),
    /// The store is a database server, not one file: back it up with the
    /// database's own tools.
    #[error(
        "this server keeps its data in PostgreSQL, not in one file: back it up with pg_dump (see docs/OPERATIONS.md, \"PostgreSQL\")"
    )]
    NotAFile,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
