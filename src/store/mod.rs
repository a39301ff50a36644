//! Storage: the records confab keeps, the traits every backend implements
//! (one per aggregate, see `traits.rs`), and the backends. The rest of confab
//! holds a [`SharedStore`] (`Arc<dyn Store>`, opened by [`open`] from the
//! configuration) and never names a backend type; `redb/` is the embedded
//! default and the only code that touches redb, `postgres/` the PostgreSQL
//! backend.
//!
//! To add a backend: implement every trait of `traits.rs` for one type
//! (plus `Store`, returning `None` from `file()` unless it is one local
//! file), run the contract suite in `tests/it/store_contract.rs` against it,
//! and choose it in [`open`] from the configuration.

pub mod acme;
pub mod audit_query;
pub mod background;
pub mod blobs;
pub mod chat;
pub mod cluster;
pub mod file;
pub mod groups;
pub mod identities;
pub mod import_jobs;
pub mod knowledge;
pub mod metrics;
pub mod model_settings;
pub mod postgres;
pub mod presets;
pub mod provider_records;
pub mod records;
pub mod redb;
pub mod search_outbox;
pub mod security;
pub mod shares;
pub mod traits;
pub mod uploads;
pub mod usage;

use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use uuid::Uuid;

pub use self::redb::SCHEMA_VERSION;
pub use self::redb::backup;
pub use file::{BackupError, BackupHeader, FileStore};
pub use records::*;
pub use traits::*;

/// How the rest of confab holds the store.
pub type SharedStore = Arc<dyn Store>;
/// A handle that does not keep the store open (background tasks that must
/// end with the server).
pub type WeakStore = std::sync::Weak<dyn Store>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error(
        "another confab is using {0} (only one process may open a data directory; stop the running server first)"
    )]
    Locked(PathBuf),
    #[error(
        "the data directory {path} was written by a newer confab (schema {found}, this binary knows {known}); upgrade confab"
    )]
    TooNew {
        path: PathBuf,
        found: u64,
        known: u64,
    },
    #[error(
        "the {what} was written by a newer confab (schema {found}, this binary knows {known}); upgrade confab"
    )]
    TooNewDatabase {
        what: String,
        found: u64,
        known: u64,
    },
    /// The backend failed (I/O, a database error); the text says how.
    #[error("storage error: {0}")]
    Backend(String),
    #[error("corrupt record: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Opens the store `cfg` chooses: the redb file in `data_dir` (the
/// default), or the PostgreSQL database of `store` (migrated at open; the
/// data directory still holds the keys and the search index).
pub async fn open(cfg: &crate::config::Config) -> StoreResult<SharedStore> {
    match cfg
        .store_choice()
        .map_err(|e| StoreError::Backend(e.to_string()))?
    {
        crate::config::StoreChoice::Redb => redb::RedbStore::open_shared_with_cache(
            &cfg.data_dir,
            cfg.store_cache_mib.saturating_mul(1024 * 1024),
        ),
        crate::config::StoreChoice::Postgres(p) => {
            ensure_data_dir(&cfg.data_dir)?;
            postgres::PgStore::open_shared(&p).await
        }
    }
}

/// Creates the data directory with mode 0700 if it does not exist.
pub fn ensure_data_dir(dir: &Path) -> std::io::Result<()> {
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

/// A change to a user: each field set replaces the stored one.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub role: Option<Role>,
    pub status: Option<UserStatus>,
    pub password_hash: Option<String>,
    /// `Some(None)` returns the user to the server's default quota.
    pub quota: Option<Option<QuotaOverride>>,
    /// A new address (`Some(None)` removes it); a changed address is
    /// unverified.
    pub email: Option<Option<String>>,
    /// Marks the address verified, if it is still this one.
    pub verify_email: Option<String>,
    pub updated_at: i64,
}

impl UserPatch {
    pub fn apply(self, u: &mut User) {
        if let Some(r) = self.role {
            u.role = r;
        }
        if let Some(s) = self.status {
            u.status = s;
        }
        if let Some(h) = self.password_hash {
            u.password_hash = h;
        }
        if let Some(q) = self.quota {
            u.quota = q;
        }
        if let Some(e) = self.email
            && e != u.email
        {
            u.email = e;
            u.email_verified = false;
        }
        if let Some(e) = self.verify_email
            && u.email.as_deref() == Some(e.as_str())
        {
            u.email_verified = true;
        }
        u.updated_at = self.updated_at;
    }
}

/// How [`UserStore::update_user`] ends a user's sign-ins: every
/// session but `keep_session` and every refresh-token family always; every
/// API key too with `api_keys` (a password change or reset: the account may
/// have been compromised).
#[derive(Debug, Clone, Copy)]
pub struct SignOut {
    pub keep_session: Option<Uuid>,
    pub api_keys: bool,
}

/// What a sign-out ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Revoked {
    pub sessions: usize,
    pub api_keys: usize,
}
