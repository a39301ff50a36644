//! Uploaded files (the files service) as the knowledge service reads
//! them. Deleting an upload forgets its document in the same store
//! transaction (`UploadStore::delete_upload`), so nothing is needed here
//! for that.

use async_trait::async_trait;
use std::sync::Arc;
use uuid::Uuid;

use super::service::{FileMeta, FileSource};
use crate::error::{AppError, AppResult};
use crate::files::{Files, FilesError};
use crate::store::uploads::Upload;

pub struct Uploads(pub Arc<Files>);

fn meta(u: &Upload) -> FileMeta {
    FileMeta {
        id: u.id,
        owner: u.owner,
        name: u.name.clone(),
        mime: u.mime.clone(),
    }
}

fn missing(e: FilesError) -> AppError {
    match e {
        FilesError::NotFound => AppError::not_found("file"),
        other => AppError::internal(anyhow::anyhow!("{other}")),
    }
}

#[async_trait]
impl FileSource for Uploads {
    async fn meta(&self, owner: Uuid, id: Uuid) -> AppResult<FileMeta> {
        let u = self.0.get(owner, id).await.map_err(missing)?;
        Ok(meta(&u))
    }

    async fn read(&self, owner: Uuid, id: Uuid) -> AppResult<(FileMeta, Vec<u8>)> {
        let u = self.0.get(owner, id).await.map_err(missing)?;
        let bytes = self
            .0
            .blobs()
            .read(&u.sha256, u.size.max(1))
            .await
            .map_err(|e| AppError::internal(anyhow::anyhow!("{e}")))?;
        Ok((meta(&u), bytes.to_vec()))
    }
}
