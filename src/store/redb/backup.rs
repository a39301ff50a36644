//! Consistent copies of the store, and their verification before a restore.
//!
//! A backup is itself a redb file: every table copied inside **one read
//! transaction** of the source (so it is a snapshot of one instant, taken
//! while the server keeps writing), plus a `confab_backup` table holding a
//! header (format, versions, row counts) and the small key files of the data
//! directory. redb's public API cannot copy a table it does not know the
//! types of, so every table is listed in [`for_each_table!`](super); a table
//! found in the file but missing there makes the backup fail loudly instead
//! of silently leaving data behind.
//!
//! Restoring copies the file next to the live one, checks its integrity,
//! header, schema version and row counts, decodes the main records, takes
//! the key files out and drops the header table; only then is it swapped in
//! (see `crate::ops::backup`).

use redb::{
    Database, Durability, Key, MultimapTableHandle, ReadOnlyDatabase, ReadTransaction,
    ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableError,
    TableHandle, Value,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;
pub use crate::store::file::{BackupError, BackupHeader, BlobSource, NoBlobs};

/// The header and embedded files of a backup.
const BACKUP: TableDefinition<&str, &[u8]> = TableDefinition::new("confab_backup");
/// The blobs (uploaded files' content) the records reference: sha256 hex →
/// bytes. Format 2 on; a restore writes them back under `blobs/`.
const BACKUP_BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("confab_blobs");
/// Bump when the layout of a backup file changes incompatibly: 2 added
/// [`BACKUP_BLOBS`] (an older confab must refuse it, not drop the files).
pub const BACKUP_FORMAT: u32 = 2;
/// Blob bytes copied per destination transaction.
const BLOB_BATCH_BYTES: usize = 64 * 1024 * 1024;
/// Rows per destination write transaction: bounds the memory a backup of a
/// large store needs; the copy is durable only after the last commit.
const BATCH: u64 = 20_000;

/// A verified backup, ready to be swapped in.
#[derive(Debug)]
pub struct PreparedRestore {
    pub header: BackupHeader,
    /// The staged database file (header table removed).
    pub staged: PathBuf,
    /// Embedded files to write next to it: name → content.
    pub files: Vec<(String, Vec<u8>)>,
    /// The blobs, written under this directory (`ab/cd/<sha>`), to become
    /// the data directory's `blobs/`; None when the backup has none.
    pub blobs: Option<PathBuf>,
}

macro_rules! redb_into_backup {
    ($($t:ty),*) => {$(
        impl From<$t> for BackupError {
            fn from(e: $t) -> Self { BackupError::Store(e.into()) }
        }
    )*};
}
redb_into_backup!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// A source database opened only to be backed up.
pub enum BackupSource {
    ReadOnly(ReadOnlyDatabase),
    /// Opened read-write because the file needed a repair after a crash
    /// (redb cannot repair read-only); nothing else is written.
    Repaired(Database),
}

impl BackupSource {
    /// Opens `<data_dir>/confab.redb` of a stopped server without migrating
    /// it (a backup taken before an upgrade must stay in the old schema).
    /// `Err(StoreError::Locked)` means a server has it open.
    pub fn open_stopped(data_dir: &Path) -> StoreResult<BackupSource> {
        let path = data_dir.join("confab.redb");
        if !path.is_file() {
            return Err(StoreError::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("there is no database at {}", path.display()),
            )));
        }
        match ReadOnlyDatabase::open(&path) {
            Ok(db) => Ok(BackupSource::ReadOnly(db)),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                Err(StoreError::Locked(data_dir.to_path_buf()))
            }
            Err(redb::DatabaseError::RepairAborted) => match Database::open(&path) {
                Ok(db) => Ok(BackupSource::Repaired(db)),
                Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                    Err(StoreError::Locked(data_dir.to_path_buf()))
                }
                Err(e) => Err(e.into()),
            },
            Err(e) => Err(e.into()),
        }
    }

    fn begin_read(&self) -> StoreResult<ReadTransaction> {
        Ok(match self {
            BackupSource::ReadOnly(db) => db.begin_read()?,
            BackupSource::Repaired(db) => db.begin_read()?,
        })
    }

    /// Writes a backup of this database to `dest`; see [`Db::backup_to`].
    pub fn backup_to(
        &self,
        dest: &Path,
        files: &[(String, Vec<u8>)],
        blobs: &dyn BlobSource,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<BackupHeader, BackupError> {
        write_backup(&self.begin_read()?, dest, files, blobs, progress)
    }
}

impl Db {
    /// Writes a consistent copy of the whole store to a new redb file at
    /// `dest` (which must not exist), embedding `files` (name, content).
    /// Every table is read inside one read transaction, so concurrent
    /// writes are either entirely in the copy or entirely absent; writers are
    /// never blocked. `progress(rows_done, rows_total)` is called as rows
    /// are copied.
    pub fn backup_to(
        &self,
        dest: &Path,
        files: &[(String, Vec<u8>)],
        blobs: &dyn BlobSource,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<BackupHeader, BackupError> {
        write_backup(&self.read()?, dest, files, blobs, progress)
    }
}

fn open_if_exists<K: Key + 'static, V: Value + 'static>(
    tx: &ReadTransaction,
    def: TableDefinition<K, V>,
) -> StoreResult<Option<redb::ReadOnlyTable<K, V>>> {
    match tx.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Copies one table; returns the rows copied.
fn copy_table<K: Key + 'static, V: Value + 'static>(
    src: &ReadTransaction,
    dst: &Database,
    def: TableDefinition<K, V>,
    tick: &mut dyn FnMut(u64),
) -> StoreResult<u64> {
    let source = open_if_exists(src, def)?;
    let mut iter = match &source {
        Some(t) => Some(t.iter()?),
        None => None,
    };
    let mut total = 0;
    loop {
        let mut tx = dst.begin_write()?;
        tx.set_durability(Durability::None)?;
        let mut n = 0;
        let mut done = true;
        {
            // Opening creates the table, so even an empty one exists in the copy.
            let mut t = tx.open_table(def)?;
            if let Some(it) = iter.as_mut() {
                for r in it.by_ref() {
                    let (k, v) = r?;
                    t.insert(k.value(), v.value())?;
                    n += 1;
                    if n == BATCH {
                        done = false;
                        break;
                    }
                }
            }
        }
        tx.commit()?;
        total += n;
        tick(n);
        if done {
            return Ok(total);
        }
    }
}

fn count<K: Key + 'static, V: Value + 'static>(
    tx: &ReadTransaction,
    def: TableDefinition<K, V>,
) -> StoreResult<u64> {
    Ok(match open_if_exists(tx, def)? {
        Some(t) => t.len()?,
        None => 0,
    })
}

fn known_tables() -> Vec<&'static str> {
    let mut names = Vec::new();
    macro_rules! name {
        ($t:ident) => {
            names.push($t.name());
        };
    }
    for_each_table!(name);
    names
}

/// Copies every blob the snapshot's records reference (read from `blobs`)
/// into the backup; returns how many. A blob missing from the source is
/// left out with a warning (its file then has no content after a restore).
fn copy_blobs(
    src: &ReadTransaction,
    dst: &Database,
    blobs: &dyn BlobSource,
) -> Result<u64, BackupError> {
    let mut shas: Vec<String> = Vec::new();
    if let Some(t) = open_if_exists(src, UPLOAD_BLOBS)? {
        for r in t.iter()? {
            let (k, _) = r?;
            let sha = k.value().0;
            if shas.last().map(String::as_str) != Some(sha) {
                shas.push(sha.to_string());
            }
        }
    }
    let mut copied = 0;
    let mut pending: Vec<(String, Vec<u8>)> = Vec::new();
    let mut pending_bytes = 0;
    let flush = |pending: &mut Vec<(String, Vec<u8>)>| -> Result<(), BackupError> {
        let mut tx = dst.begin_write()?;
        tx.set_durability(Durability::None)?;
        {
            let mut t = tx.open_table(BACKUP_BLOBS)?;
            for (sha, bytes) in pending.drain(..) {
                t.insert(sha.as_str(), bytes.as_slice())?;
            }
        }
        tx.commit()?;
        Ok(())
    };
    for sha in shas {
        match blobs.read_blob(&sha)? {
            Some(bytes) => {
                pending_bytes += bytes.len();
                pending.push((sha, bytes));
                copied += 1;
            }
            None => {
                tracing::warn!(blob = %sha, "a file's content is missing from the blob store; the backup leaves it out")
            }
        }
        if pending_bytes >= BLOB_BATCH_BYTES {
            flush(&mut pending)?;
            pending_bytes = 0;
        }
    }
    flush(&mut pending)?;
    Ok(copied)
}

fn write_backup(
    src: &ReadTransaction,
    dest: &Path,
    files: &[(String, Vec<u8>)],
    blobs: &dyn BlobSource,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<BackupHeader, BackupError> {
    let known = known_tables();
    for t in src.list_tables()? {
        if !known.contains(&t.name()) {
            return Err(BackupError::UnknownTable(t.name().to_string()));
        }
    }
    if let Some(t) = src.list_multimap_tables()?.next() {
        return Err(BackupError::UnknownTable(t.name().to_string()));
    }
    let mut tables = BTreeMap::new();
    macro_rules! count_rows {
        ($t:ident) => {
            tables.insert($t.name().to_string(), count(src, $t)?);
        };
    }
    for_each_table!(count_rows);
    let total: u64 = tables.values().sum();
    let schema_version = match open_if_exists(src, META)? {
        Some(t) => match t.get("schema_version")? {
            Some(v) => dec::<u64>(v.value())?,
            None => 0,
        },
        None => 0,
    };

    // create_new: never overwrite an existing file by accident.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(dest)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    let result = (|| -> Result<BackupHeader, BackupError> {
        let dst =
            Database::builder().create_with_backend(redb::backends::FileBackend::new(file)?)?;
        let mut done = 0u64;
        progress(0, total);
        let mut tick = |n: u64| {
            done += n;
            progress(done, total);
        };
        macro_rules! copy {
            ($t:ident) => {
                copy_table(src, &dst, $t, &mut tick)?;
            };
        }
        for_each_table!(copy);
        let blob_count = copy_blobs(src, &dst, blobs)?;
        let header = BackupHeader {
            blobs: blob_count,
            format: BACKUP_FORMAT,
            created_at: crate::clock::rfc3339(crate::clock::now()),
            confab_version: crate::VERSION.to_string(),
            schema_version,
            tables,
            files: files.iter().map(|(n, _)| n.clone()).collect(),
        };
        let mut tx = dst.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        {
            let mut t = tx.open_table(BACKUP)?;
            t.insert("header", enc(&header).as_slice())?;
            for (name, content) in files {
                t.insert(format!("file:{name}").as_str(), content.as_slice())?;
            }
        }
        tx.commit()?;
        Ok(header)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    result
}

/// Reads the header of a backup file without changing it.
pub fn read_header(path: &Path) -> Result<BackupHeader, BackupError> {
    let not = |why: String| BackupError::NotABackup {
        path: path.to_path_buf(),
        why,
    };
    let db = match ReadOnlyDatabase::open(path) {
        Ok(db) => db,
        Err(redb::DatabaseError::RepairAborted) => {
            return Err(not(
                "the file is incomplete or damaged (cut short during a copy?)".into(),
            ));
        }
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
            return Err(not(
                "it is a database a running confab has open, not a backup".into(),
            ));
        }
        Err(e) => return Err(not(e.to_string())),
    };
    let tx = db.begin_read()?;
    let t = open_if_exists(&tx, BACKUP)?.ok_or_else(|| not("it has no backup header".into()))?;
    let v = t
        .get("header")?
        .ok_or_else(|| not("it has no backup header".into()))?;
    serde_json::from_slice(v.value()).map_err(|e| not(format!("unreadable header: {e}")))
}

/// Copies `backup` to `staged`, verifies it thoroughly and strips the
/// backup header, leaving a plain store file ready to be renamed into place.
/// On any error `staged` is removed.
pub fn prepare_restore(
    backup: &Path,
    staged: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<PreparedRestore, BackupError> {
    let header = read_header(backup)?;
    if header.format > BACKUP_FORMAT {
        return Err(BackupError::NotABackup {
            path: backup.to_path_buf(),
            why: format!(
                "backup format {} is newer than this confab understands ({BACKUP_FORMAT})",
                header.format
            ),
        });
    }
    if header.schema_version > SCHEMA_VERSION {
        return Err(BackupError::TooNew {
            path: backup.to_path_buf(),
            found: header.schema_version,
            known: SCHEMA_VERSION,
        });
    }
    let _ = std::fs::remove_file(staged);
    std::fs::copy(backup, staged)?;
    let result = verify_and_strip(backup, staged, header, progress);
    if result.is_err() {
        let _ = std::fs::remove_file(staged);
        let mut name = staged.file_name().unwrap_or_default().to_os_string();
        name.push(".blobs");
        let _ = std::fs::remove_dir_all(staged.with_file_name(name));
    }
    result
}

fn verify_and_strip(
    backup: &Path,
    staged: &Path,
    header: BackupHeader,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<PreparedRestore, BackupError> {
    let damaged = |why: String| BackupError::Damaged {
        path: backup.to_path_buf(),
        why,
    };
    let mut db = Database::open(staged).map_err(|e| damaged(e.to_string()))?;
    match db.check_integrity() {
        Ok(true) => {}
        Ok(false) => return Err(damaged("redb integrity check failed".into())),
        Err(e) => return Err(damaged(e.to_string())),
    }
    let total = header.rows();
    let mut done = 0u64;
    progress(0, total);
    {
        let tx = db.begin_read()?;
        for t in tx.list_tables()? {
            if t.name() != BACKUP.name()
                && t.name() != BACKUP_BLOBS.name()
                && !known_tables().contains(&t.name())
            {
                return Err(damaged(format!("unknown table {}", t.name())));
            }
        }
        let mut found = BTreeMap::new();
        macro_rules! count_rows {
            ($t:ident) => {
                found.insert($t.name().to_string(), count(&tx, $t)?);
            };
        }
        for_each_table!(count_rows);
        for (name, rows) in &header.tables {
            let have = found.get(name).copied().unwrap_or(0);
            if have != *rows {
                return Err(damaged(format!(
                    "table {name} has {have} rows, the header says {rows}"
                )));
            }
        }
        // Every record decodes: a backup that cannot be read back is no backup.
        let check = |what: &str, r: StoreResult<()>| {
            r.map_err(|e| damaged(format!("a {what} record does not decode: {e}")))
        };
        let mut step = |n: &mut u64| {
            *n += 1;
            if (*n).is_multiple_of(1000) {
                progress(*n, total);
            }
        };
        macro_rules! decode_all {
            ($t:ident, $ty:ty, $what:expr) => {
                if let Some(t) = open_if_exists(&tx, $t)? {
                    for r in t.iter()? {
                        let (_, v) = r?;
                        check($what, dec::<$ty>(v.value()).map(|_| ()))?;
                        step(&mut done);
                    }
                }
            };
        }
        decode_all!(USERS, User, "user");
        decode_all!(
            CONVERSATIONS,
            crate::store::chat::Conversation,
            "conversation"
        );
        decode_all!(MESSAGES, crate::store::chat::Message, "message");
        decode_all!(AUDIT, AuditEntry, "audit");
    }
    progress(total, total);
    let blobs_dir = extract_blobs(&db, staged, &damaged)?;
    let mut files = Vec::new();
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate)?;
    {
        let t = tx.open_table(BACKUP)?;
        for name in &header.files {
            let v = t
                .get(format!("file:{name}").as_str())?
                .ok_or_else(|| damaged(format!("embedded file {name} is missing")))?;
            if name.contains('/') || name.starts_with('.') {
                return Err(damaged(format!(
                    "embedded file name {name:?} is not allowed"
                )));
            }
            files.push((name.clone(), v.value().to_vec()));
        }
    }
    tx.delete_table(BACKUP)?;
    let had_blobs = tx.delete_table(BACKUP_BLOBS)?;
    tx.commit()?;
    if had_blobs {
        // The blobs now live as files: give their pages back.
        db.compact()
            .map_err(|e| damaged(format!("cannot compact: {e}")))?;
    }
    drop(db);
    Ok(PreparedRestore {
        header,
        staged: staged.to_path_buf(),
        files,
        blobs: blobs_dir,
    })
}

/// Writes the backup's blobs under `<staged>.blobs/` (each checked against
/// its address); None when the backup has no blob table.
fn extract_blobs(
    db: &Database,
    staged: &Path,
    damaged: &dyn Fn(String) -> BackupError,
) -> Result<Option<PathBuf>, BackupError> {
    use sha2::{Digest, Sha256};
    let tx = db.begin_read()?;
    let Some(t) = open_if_exists(&tx, BACKUP_BLOBS)? else {
        return Ok(None);
    };
    let mut name = staged.file_name().unwrap_or_default().to_os_string();
    name.push(".blobs");
    let dir = staged.with_file_name(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    for r in t.iter()? {
        let (k, v) = r?;
        let (sha, bytes) = (k.value(), v.value());
        if hex::encode(Sha256::digest(bytes)) != sha {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(damaged(format!("blob {sha} does not match its content")));
        }
        crate::store::blobs::LocalBlobs::write_into(&dir, sha, bytes)?;
    }
    Ok(Some(dir))
}

/// Holds the live database file of a stopped data directory during a
/// restore, so a server cannot start on it half-way.
pub struct RestoreLock {
    _db: Option<Database>,
}

/// Takes the data directory's database for a restore. Fails with
/// [`StoreError::Locked`] while a server (or another command) has it open.
/// A database that cannot be opened at all (damaged: the reason to restore)
/// is not an error: it is set aside like any other.
pub fn lock_for_restore(data_dir: &Path) -> StoreResult<RestoreLock> {
    let path = data_dir.join("confab.redb");
    if !path.exists() {
        return Ok(RestoreLock { _db: None });
    }
    match Database::open(&path) {
        Ok(db) => Ok(RestoreLock { _db: Some(db) }),
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
            Err(StoreError::Locked(data_dir.to_path_buf()))
        }
        Err(e) => {
            tracing::warn!(error = %e, "the current database cannot be opened; it will be set aside");
            Ok(RestoreLock { _db: None })
        }
    }
}
