//! `confab backup` and `confab restore`, and the file behind
//! `GET /api/admin/backup`.
//!
//! The data directory is exclusive to one process (redb locks the file), so
//! "a backup while the server runs" is taken *by the server*: `confab backup`
//! first tries to open the directory itself; when a running server holds
//! it, the command asks that server for the backup over HTTP with an admin
//! API key (`--api-key` / `CONFAB_API_KEY`) and streams it to the file.
//! Either way the copy is one read transaction of the store (see
//! `store::backup`), so it is consistent while writes go on.
//!
//! A backup holds the database, the content of uploaded files (the blobs
//! the records reference, in a table of the backup file) and the key files of the data directory
//! (`provider.key`: without it, stored provider API keys could not be
//! decrypted). The JWT signing key (`jwt.key`) is left out on purpose: it
//! protects no stored data, and a copy of it would let whoever holds the
//! backup sign access tokens for any user of the live server. A restore
//! sets the data directory's key aside and makes a new one, so access
//! tokens issued before the restore stop working (sessions, refresh tokens
//! and API keys are in the database and keep working). The search index is
//! not included either: it is rebuilt from the database after a restore.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::auth::tokens::{JWT_KEY_FILE, JWT_KEY_LEN};
use crate::store::backup::{
    BackupError, BackupHeader, BackupSource, BlobSource, lock_for_restore, prepare_restore,
    read_header,
};
use crate::store::{SharedStore, StoreError};

/// Key files that never go into a backup, nor come back from one (older
/// backups did carry `jwt.key`).
const NOT_BACKED_UP: &[&str] = &[JWT_KEY_FILE, crate::auth::device::KEY_FILE];

/// The data-directory files a backup carries: every top-level `*.key`
/// except the JWT signing key and the device-cookie key.
pub fn key_files(data_dir: &Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(data_dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".key")
            && !name.starts_with('.')
            && !NOT_BACKED_UP.contains(&name.as_str())
            && entry.file_type()?.is_file()
        {
            out.push((name, std::fs::read(entry.path())?));
        }
    }
    out.sort();
    Ok(out)
}

/// Writes a backup of a running server's store to `dest` (a new file).
pub fn write_from_server(
    store: &SharedStore,
    data_dir: &Path,
    dest: &Path,
    blobs: &dyn BlobSource,
) -> Result<BackupHeader, BackupError> {
    let Some(file) = store.file() else {
        return Err(BackupError::NotAFile);
    };
    let files = key_files(data_dir)?;
    file.backup_to(dest, &files, blobs, &mut |_, _| {})
}

/// A file name for a backup taken now: `confab-backup-20261122T013000Z.redb`.
pub fn default_file_name() -> String {
    format!(
        "confab-backup-{}.redb",
        crate::clock::compact(crate::clock::now())
    )
}

fn rows_bar(what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{bar:40}}] {{pos}}/{{len}} records ({{per_sec}}, eta {{eta}})"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    dest.with_file_name(name)
}

/// How `confab backup` reaches the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupVia {
    /// The data directory was not in use: read directly.
    StoppedDataDir,
    /// A running server streamed it.
    RunningServer,
}

/// `confab backup FILE`: from the stopped data directory, or through the
/// running server when it holds the directory.
pub async fn backup_command(
    data_dir: &Path,
    dest: &Path,
    server_url: &str,
    api_key: Option<&str>,
) -> anyhow::Result<(BackupHeader, BackupVia)> {
    if dest.exists() {
        anyhow::bail!(
            "{} already exists; choose a new file name (backups never overwrite)",
            dest.display()
        );
    }
    let partial = partial_path(dest);
    let _ = std::fs::remove_file(&partial);
    let source = {
        let dir = data_dir.to_path_buf();
        tokio::task::spawn_blocking(move || BackupSource::open_stopped(&dir)).await?
    };
    let via = match source {
        Ok(src) => {
            let (dir, p) = (data_dir.to_path_buf(), partial.clone());
            tokio::task::spawn_blocking(move || -> Result<(), BackupError> {
                let files = key_files(&dir)?;
                let blobs = crate::store::blobs::LocalBlobs::at(&dir);
                let bar = rows_bar("backing up");
                src.backup_to(&p, &files, &blobs, &mut |done, total| {
                    bar.set_length(total);
                    bar.set_position(done);
                })?;
                bar.finish_and_clear();
                Ok(())
            })
            .await??;
            BackupVia::StoppedDataDir
        }
        Err(StoreError::Locked(_)) => {
            let Some(key) = api_key.filter(|k| !k.trim().is_empty()) else {
                anyhow::bail!(
                    "a running server holds {}; to back it up while it runs, give an admin API key with --api-key or CONFAB_API_KEY (create one in the web app under API keys with the admin scope, or: POST /api/keys {{\"name\":\"backup\",\"scopes\":[\"admin\"]}}), or stop the server first",
                    data_dir.display()
                );
            };
            download(server_url, key.trim(), &partial).await?;
            BackupVia::RunningServer
        }
        Err(e) => return Err(e.into()),
    };
    // The file must read back as a backup before it takes its final name.
    let header = match read_header(&partial) {
        Ok(h) => h,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e.into());
        }
    };
    std::fs::File::open(&partial)?.sync_all()?;
    std::fs::rename(&partial, dest)?;
    if let Some(dir) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok((header, via))
}

async fn download(server_url: &str, api_key: &str, dest: &Path) -> anyhow::Result<()> {
    let url = format!("{}/api/admin/backup", server_url.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        // The admin key must not follow a redirect to another origin.
        .redirect(crate::providers::same_origin_redirects())
        .build()?;
    let mut resp = client
        .get(&url)
        .bearer_auth(api_key)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the running server at {url}: {e} (use --url to point at it)"
            )
        })?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        anyhow::bail!(
            "the server at {url} refused the backup: HTTP {status}: {}",
            body["message"].as_str().unwrap_or("no details")
        );
    }
    let bar = indicatif::ProgressBar::new(resp.content_length().unwrap_or(0));
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} downloading [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let result = async {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut file = opts.open(dest)?;
        while let Some(chunk) = resp.chunk().await? {
            file.write_all(&chunk)?;
            bar.inc(chunk.len() as u64);
        }
        file.sync_all()?;
        anyhow::Ok(())
    }
    .await;
    bar.finish_and_clear();
    if result.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    result
}

/// What a restore did.
#[derive(Debug)]
pub struct RestoreReport {
    pub header: BackupHeader,
    /// Where the previous database and key files were moved.
    pub set_aside: Vec<PathBuf>,
}

/// `confab restore FILE` into a stopped data directory: verify the backup,
/// set the current database and key files aside (`*.pre-restore-<time>`),
/// swap the backup in and drop the search index (rebuilt from the
/// database). The caller opens the store afterwards (migrations) and
/// rebuilds the index.
pub fn restore_command(data_dir: &Path, backup: &Path) -> anyhow::Result<RestoreReport> {
    if !backup.is_file() {
        anyhow::bail!("there is no backup file at {}", backup.display());
    }
    // Checked before the data directory is locked: it may name the live file.
    read_header(backup)?;
    crate::store::ensure_data_dir(data_dir)?;
    let lock = match lock_for_restore(data_dir) {
        Ok(l) => l,
        Err(StoreError::Locked(_)) => anyhow::bail!(
            "a running server holds {}; stop it first (e.g. systemctl stop confab), then restore",
            data_dir.display()
        ),
        Err(e) => return Err(e.into()),
    };
    let staged = data_dir.join("confab.redb.restoring");
    let bar = rows_bar("verifying");
    let prepared = prepare_restore(backup, &staged, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let prepared = prepared?;

    let suffix = format!("pre-restore-{}", crate::clock::compact(crate::clock::now()));
    let aside = |name: &str| data_dir.join(format!("{name}.{suffix}"));
    let mut set_aside = Vec::new();
    let live = data_dir.join("confab.redb");
    if live.exists() {
        std::fs::rename(&live, aside("confab.redb"))?;
        set_aside.push(aside("confab.redb"));
    }
    std::fs::rename(&prepared.staged, &live)?;
    drop(lock);
    let restored: Vec<&(String, Vec<u8>)> = prepared
        .files
        .iter()
        .filter(|(n, _)| !NOT_BACKED_UP.contains(&n.as_str()))
        .collect();
    for (name, content) in &restored {
        let path = data_dir.join(name);
        if path.exists() {
            std::fs::rename(&path, aside(name))?;
            set_aside.push(aside(name));
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&path)?;
        f.write_all(content)?;
        f.sync_all()?;
    }
    // A new JWT signing key: the old one may be what the restore is
    // recovering from, and tokens it signed belong to the replaced state.
    let jwt = data_dir.join(JWT_KEY_FILE);
    if jwt.exists() {
        std::fs::rename(&jwt, aside(JWT_KEY_FILE))?;
        set_aside.push(aside(JWT_KEY_FILE));
    }
    crate::keyfile::load_or_create(&jwt, JWT_KEY_LEN)?;
    // The uploaded files' content: the backup's, or none for a backup
    // made before files existed; the previous blobs are set aside.
    let blobs = data_dir.join("blobs");
    if blobs.exists() {
        std::fs::rename(&blobs, aside("blobs"))?;
        set_aside.push(aside("blobs"));
    }
    if let Some(dir) = &prepared.blobs {
        std::fs::rename(dir, &blobs)?;
    }
    let index = data_dir.join("index");
    if index.exists() {
        std::fs::remove_dir_all(&index)?;
    }
    std::fs::File::open(data_dir)?.sync_all()?;
    let mut owned = vec![live, jwt, blobs];
    owned.extend(restored.iter().map(|(n, _)| data_dir.join(n)));
    match_owner(data_dir, &owned)?;
    Ok(RestoreReport {
        header: prepared.header,
        set_aside,
    })
}

/// When root restores into a directory owned by the service user (the
/// packaged /var/lib/confab), the new files must belong to that user too:
/// `paths` (recursively) get the data directory's owner when they differ.
#[cfg(unix)]
pub fn match_owner(data_dir: &Path, paths: &[PathBuf]) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dir = std::fs::metadata(data_dir)?;
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            for e in std::fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
        if meta.uid() == dir.uid() && meta.gid() == dir.gid() {
            continue;
        }
        if let Err(e) = std::os::unix::fs::lchown(&p, Some(dir.uid()), Some(dir.gid())) {
            eprintln!(
                "warning: {} is not owned by the data directory's owner ({e}); chown it before starting the server",
                p.display()
            );
        }
    }
    Ok(())
}

#[cfg(not(unix))]
pub fn match_owner(_: &Path, _: &[PathBuf]) -> std::io::Result<()> {
    Ok(())
}

static BACKUP_RUNNING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A snapshot ready to stream: the open file (already unlinked, so nothing
/// is left behind whatever happens to the download), its size and header.
pub struct Snapshot {
    pub file: std::fs::File,
    pub len: u64,
    pub header: BackupHeader,
}

/// Why the server could not produce a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("a backup is already being taken; try again when it has finished")]
    Busy,
    #[error(transparent)]
    Backup(#[from] BackupError),
}

/// Takes a backup of the running server into a temporary file in the data
/// directory (same disk, so no surprise from a small /tmp), for
/// `GET /api/admin/backup`. One at a time per process. Blocking: run it on
/// the blocking pool.
pub fn snapshot(
    store: &SharedStore,
    data_dir: &Path,
    blobs: &dyn BlobSource,
) -> Result<Snapshot, SnapshotError> {
    use std::sync::atomic::Ordering;
    if BACKUP_RUNNING.swap(true, Ordering::SeqCst) {
        return Err(SnapshotError::Busy);
    }
    struct Release;
    impl Drop for Release {
        fn drop(&mut self) {
            BACKUP_RUNNING.store(false, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let _release = Release;
    let tmp = data_dir.join(format!(".backup-{}.tmp", uuid::Uuid::now_v7()));
    let header = write_from_server(store, data_dir, &tmp, blobs)?;
    let opened = std::fs::File::open(&tmp);
    let _ = std::fs::remove_file(&tmp);
    let file = opened.map_err(BackupError::from)?;
    let len = file.metadata().map_err(BackupError::from)?.len();
    Ok(Snapshot { file, len, header })
}
