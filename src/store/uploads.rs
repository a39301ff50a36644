//! Files users upload (attachments): the record of each one. The content
//! itself lives in the blob store ([`super::blobs`]), addressed by its
//! SHA-256; a record names its owner, and another user's record is not
//! found.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One uploaded file. `name` is a display name only (sanitized by the
/// files service); no path is ever built from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    pub id: Uuid,
    pub owner: Uuid,
    pub name: String,
    /// The type detected from the content (`image/png`, `application/pdf`,
    /// `text/markdown`, …).
    pub mime: String,
    pub size: u64,
    /// Lowercase hex SHA-256 of the content: its address in the blob store.
    pub sha256: String,
    pub created_at: i64,
    /// Pixels, for images.
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default)]
    pub height: Option<u32>,
    /// A small preview of an image, made once and kept as a blob.
    #[serde(default)]
    pub thumbnail: Option<Thumbnail>,
}

impl Upload {
    /// The blobs this record keeps alive: its content and its thumbnail.
    pub fn blobs(&self) -> Vec<&str> {
        let mut out = vec![self.sha256.as_str()];
        if let Some(t) = &self.thumbnail {
            out.push(t.sha256.as_str());
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thumbnail {
    pub sha256: String,
    pub mime: String,
    pub size: u64,
    pub width: u32,
    pub height: u32,
}

/// What [`UploadStore::create_upload`](super::UploadStore::create_upload) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadCreated {
    /// Stored; the owner now uses `used` bytes.
    Stored { used: u64 },
    /// Not stored: the owner's `used` bytes plus this file would pass the
    /// quota.
    OverQuota { used: u64 },
}

/// What deleting a record freed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedUpload {
    pub upload: Upload,
    /// Blobs no record references any more: the caller may remove them.
    pub unreferenced: Vec<String>,
}
