//! `[files]`: uploaded files (attachments).

use serde::{Deserialize, Serialize};

use super::{ConfigError, err};

/// `[files]`: how large one uploaded file may be and how much one user may
/// keep. Admins override the storage quota per user.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct FilesConfig {
    /// Largest file accepted, in bytes.
    pub max_file_bytes: u64,
    /// Bytes of files one user may keep; 0 = no limit.
    pub quota_bytes_per_user: u64,
}

pub const MIB: u64 = 1024 * 1024;
/// The largest `max_file_bytes` accepted: an upload is read once into the
/// blob store, but an image is decoded in memory.
pub const MAX_FILE_BYTES_LIMIT: u64 = 1024 * MIB;

impl Default for FilesConfig {
    fn default() -> Self {
        FilesConfig {
            max_file_bytes: 25 * MIB,
            quota_bytes_per_user: 1024 * MIB,
        }
    }
}

impl FilesConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_file_bytes == 0 || self.max_file_bytes > MAX_FILE_BYTES_LIMIT {
            return Err(err(format!(
                "files.max_file_bytes must be between 1 and {MAX_FILE_BYTES_LIMIT} (1 GiB), got {}",
                self.max_file_bytes
            )));
        }
        Ok(())
    }

    /// The default storage quota; None when unlimited.
    pub fn default_quota(&self) -> Option<u64> {
        (self.quota_bytes_per_user > 0).then_some(self.quota_bytes_per_user)
    }
}
