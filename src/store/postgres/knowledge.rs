//! Documents, their chunks and vectors, and knowledge collections in
//! PostgreSQL. A document is keyed by its file's id and checked against its
//! owner on every read (the `owner` column); chunks are keyed (file id,
//! ordinal), so a document's chunks are one index range. Collections keep
//! their file list in the JSONB record, as in redb.

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use std::collections::HashMap;
use uuid::Uuid;

use super::search_outbox::commit_with_ops;
use super::{PgStore, Sql, begin, begin_snapshot, commit, dec, json};
use crate::store::knowledge::*;
use crate::store::search_outbox::OutboxOp;
use crate::store::{KnowledgeStore, StoreError, StoreResult};

/// The owner of document `file_id`, locking its row; None when missing.
async fn doc_owner_for_update(tx: &Transaction<'_>, file_id: Uuid) -> StoreResult<Option<Uuid>> {
    Ok(tx
        .opt(
            "SELECT owner FROM documents WHERE file_id = $1 FOR UPDATE",
            &[&file_id],
        )
        .await?
        .map(|r| r.get(0)))
}

/// NotFound unless `owner` has a document `file_id` (read inside `c`).
async fn check_owned(c: &impl Sql, owner: Uuid, file_id: Uuid) -> StoreResult<()> {
    c.opt(
        "SELECT 1 FROM documents WHERE file_id = $1 AND owner = $2",
        &[&file_id, &owner],
    )
    .await?
    .map(|_| ())
    .ok_or(StoreError::NotFound)
}

/// Forgets the document read from a file inside `tx` (the file is being
/// deleted, or the document itself): record, chunks, vectors, its place in
/// the owner's collections. Returns whether there was one and the search
/// ops to queue at commit (none when the document is another user's, which
/// also answers false).
pub(super) async fn forget_in(
    tx: &Transaction<'_>,
    owner: Uuid,
    file_id: Uuid,
) -> StoreResult<(bool, Vec<OutboxOp>)> {
    let existed = match doc_owner_for_update(tx, file_id).await? {
        Some(o) if o != owner => return Ok((false, Vec::new())),
        Some(_) => true,
        None => false,
    };
    if existed {
        tx.exec("DELETE FROM documents WHERE file_id = $1", &[&file_id])
            .await?;
    }
    tx.exec("DELETE FROM doc_chunks WHERE file_id = $1", &[&file_id])
        .await?;
    tx.exec("DELETE FROM doc_vectors WHERE file_id = $1", &[&file_id])
        .await?;
    // The file leaves every collection of its owner.
    let rows = tx
        .rows(
            "SELECT data FROM collections WHERE owner = $1 ORDER BY id FOR UPDATE",
            &[&owner],
        )
        .await?;
    for r in &rows {
        let mut c: Collection = dec(r, 0)?;
        let before = c.file_ids.len();
        c.file_ids.retain(|f| *f != file_id);
        if c.file_ids.len() != before {
            tx.exec(
                "UPDATE collections SET data = $2 WHERE id = $1",
                &[&c.id, &json(&c)],
            )
            .await?;
        }
    }
    Ok((existed, vec![OutboxOp::Document { file_id }]))
}

#[async_trait]
impl KnowledgeStore for PgStore {
    async fn put_document(&self, doc: &DocumentRecord, chunks: &[Chunk]) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = begin(&mut c).await?;
        // Inserts or replaces, locking the row; another user's row is left
        // alone (no row comes back) and answers NotFound.
        let stored = tx
            .exec(
                "INSERT INTO documents (file_id, owner, data) VALUES ($1, $2, $3)
                 ON CONFLICT (file_id) DO UPDATE SET data = excluded.data
                 WHERE documents.owner = excluded.owner",
                &[&doc.file_id, &doc.owner, &json(doc)],
            )
            .await?;
        if stored == 0 {
            return Err(StoreError::NotFound);
        }
        tx.exec("DELETE FROM doc_chunks WHERE file_id = $1", &[&doc.file_id])
            .await?;
        tx.exec(
            "DELETE FROM doc_vectors WHERE file_id = $1",
            &[&doc.file_id],
        )
        .await?;
        if !chunks.is_empty() {
            let ordinals: Vec<i64> = chunks.iter().map(|c| i64::from(c.ordinal)).collect();
            let data: Vec<serde_json::Value> = chunks
                .iter()
                .map(serde_json::to_value)
                .collect::<Result<_, _>>()?;
            tx.exec(
                "INSERT INTO doc_chunks (file_id, ordinal, data)
                 SELECT $1, t.o, t.d FROM unnest($2::int8[], $3::jsonb[]) AS t(o, d)
                 ON CONFLICT (file_id, ordinal) DO UPDATE SET data = excluded.data",
                &[&doc.file_id, &ordinals, &data],
            )
            .await?;
        }
        commit_with_ops(
            tx,
            &[OutboxOp::Document {
                file_id: doc.file_id,
            }],
        )
        .await
    }

    async fn get_document(&self, owner: Uuid, file_id: Uuid) -> StoreResult<DocumentRecord> {
        let c = self.client().await?;
        c.opt(
            "SELECT data FROM documents WHERE file_id = $1 AND owner = $2",
            &[&file_id, &owner],
        )
        .await?
        .map(|r| dec(&r, 0))
        .transpose()?
        .ok_or(StoreError::NotFound)
    }

    async fn list_documents(&self, owner: Uuid) -> StoreResult<Vec<DocumentRecord>> {
        let c = self.client().await?;
        c.rows(
            "SELECT data FROM documents WHERE owner = $1 ORDER BY file_id",
            &[&owner],
        )
        .await?
        .iter()
        .map(|r| dec(r, 0))
        .collect()
    }

    async fn document_chunks(
        &self,
        owner: Uuid,
        file_id: Uuid,
        from: u32,
        to: u32,
    ) -> StoreResult<Vec<Chunk>> {
        let mut c = self.client().await?;
        let tx = begin_snapshot(&mut c).await?;
        check_owned(&tx, owner, file_id).await?;
        let rows = tx
            .rows(
                "SELECT data FROM doc_chunks
                 WHERE file_id = $1 AND ordinal >= $2 AND ordinal < $3 ORDER BY ordinal",
                &[&file_id, &i64::from(from), &i64::from(to)],
            )
            .await?;
        commit(tx).await?;
        rows.iter().map(|r| dec(r, 0)).collect()
    }

    async fn get_chunks(&self, owner: Uuid, keys: &[(Uuid, u32)]) -> StoreResult<Vec<Chunk>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let files: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let ordinals: Vec<i64> = keys.iter().map(|k| i64::from(k.1)).collect();
        let c = self.client().await?;
        c.rows(
            "SELECT c.data
             FROM unnest($2::uuid[], $3::int8[]) WITH ORDINALITY AS k(f, o, n)
             JOIN documents d ON d.file_id = k.f AND d.owner = $1
             JOIN doc_chunks c ON c.file_id = k.f AND c.ordinal = k.o
             ORDER BY k.n",
            &[&owner, &files, &ordinals],
        )
        .await?
        .iter()
        .map(|r| dec(r, 0))
        .collect()
    }

    async fn delete_document(&self, owner: Uuid, file_id: Uuid) -> StoreResult<bool> {
        let mut c = self.client().await?;
        let tx = begin(&mut c).await?;
        let (existed, ops) = forget_in(&tx, owner, file_id).await?;
        commit_with_ops(tx, &ops).await?;
        Ok(existed)
    }

    async fn put_vectors(&self, owner: Uuid, v: &ChunkVectors) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = begin(&mut c).await?;
        let mut d: DocumentRecord = tx
            .opt(
                "SELECT data FROM documents WHERE file_id = $1 AND owner = $2 FOR UPDATE",
                &[&v.file_id, &owner],
            )
            .await?
            .map(|r| dec(&r, 0))
            .transpose()?
            .ok_or(StoreError::NotFound)?;
        d.embedding_model = Some(v.model.clone());
        tx.exec(
            "UPDATE documents SET data = $2 WHERE file_id = $1",
            &[&v.file_id, &json(&d)],
        )
        .await?;
        tx.exec(
            "INSERT INTO doc_vectors (file_id, data) VALUES ($1, $2)
             ON CONFLICT (file_id) DO UPDATE SET data = excluded.data",
            &[&v.file_id, &json(v)],
        )
        .await?;
        commit(tx).await
    }

    async fn get_vectors(&self, owner: Uuid, file_id: Uuid) -> StoreResult<Option<ChunkVectors>> {
        let mut c = self.client().await?;
        let tx = begin_snapshot(&mut c).await?;
        check_owned(&tx, owner, file_id).await?;
        let v = tx
            .opt(
                "SELECT data FROM doc_vectors WHERE file_id = $1",
                &[&file_id],
            )
            .await?
            .map(|r| dec(&r, 0))
            .transpose()?;
        commit(tx).await?;
        Ok(v)
    }

    async fn documents_page(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> StoreResult<Vec<(DocumentRecord, Vec<Chunk>)>> {
        let mut c = self.client().await?;
        let tx = begin_snapshot(&mut c).await?;
        let docs: Vec<DocumentRecord> = tx
            .rows(
                "SELECT data FROM documents WHERE $1::uuid IS NULL OR file_id > $1
                 ORDER BY file_id LIMIT $2",
                &[&after, &(limit.min(i64::MAX as usize) as i64)],
            )
            .await?
            .iter()
            .map(|r| dec(r, 0))
            .collect::<StoreResult<_>>()?;
        let ids: Vec<Uuid> = docs.iter().map(|d| d.file_id).collect();
        let mut by_doc: HashMap<Uuid, Vec<Chunk>> = HashMap::new();
        if !ids.is_empty() {
            for r in tx
                .rows(
                    "SELECT file_id, data FROM doc_chunks WHERE file_id = ANY($1)
                     ORDER BY file_id, ordinal",
                    &[&ids],
                )
                .await?
            {
                let f: Uuid = r.get(0);
                by_doc.entry(f).or_default().push(dec(&r, 1)?);
            }
        }
        commit(tx).await?;
        Ok(docs
            .into_iter()
            .map(|d| {
                let chunks = by_doc.remove(&d.file_id).unwrap_or_default();
                (d, chunks)
            })
            .collect())
    }

    async fn create_collection(&self, c: &Collection) -> StoreResult<()> {
        let cl = self.client().await?;
        match cl
            .exec(
                "INSERT INTO collections (id, owner, data) VALUES ($1, $2, $3)",
                &[&c.id, &c.owner, &json(c)],
            )
            .await
        {
            Err(StoreError::Conflict(_)) => {
                Err(StoreError::Conflict("the collection exists".into()))
            }
            r => r.map(|_| ()),
        }
    }

    async fn get_collection(&self, owner: Uuid, id: Uuid) -> StoreResult<Collection> {
        let c = self.client().await?;
        c.opt(
            "SELECT data FROM collections WHERE id = $1 AND owner = $2",
            &[&id, &owner],
        )
        .await?
        .map(|r| dec(&r, 0))
        .transpose()?
        .ok_or(StoreError::NotFound)
    }

    async fn list_collections(&self, owner: Uuid) -> StoreResult<Vec<Collection>> {
        let c = self.client().await?;
        let mut out: Vec<Collection> = c
            .rows("SELECT data FROM collections WHERE owner = $1", &[&owner])
            .await?
            .iter()
            .map(|r| dec(r, 0))
            .collect::<StoreResult<_>>()?;
        // The same order as redb (Unicode lowercase, then id), whatever the
        // database's collation.
        out.sort_by_key(|c| (c.name.to_lowercase(), c.id));
        Ok(out)
    }

    async fn update_collection(
        &self,
        owner: Uuid,
        id: Uuid,
        patch: CollectionPatch,
        now: i64,
    ) -> StoreResult<Collection> {
        let mut cl = self.client().await?;
        let tx = begin(&mut cl).await?;
        let mut c: Collection = tx
            .opt(
                "SELECT data FROM collections WHERE id = $1 AND owner = $2 FOR UPDATE",
                &[&id, &owner],
            )
            .await?
            .map(|r| dec(&r, 0))
            .transpose()?
            .ok_or(StoreError::NotFound)?;
        if let Some(n) = patch.name {
            c.name = n;
        }
        if let Some(d) = patch.description {
            c.description = d;
        }
        c.file_ids.retain(|f| !patch.remove.contains(f));
        for f in patch.add {
            if !c.file_ids.contains(&f) {
                c.file_ids.push(f);
            }
        }
        if c.file_ids.len() > MAX_COLLECTION_FILES {
            return Err(StoreError::Conflict(format!(
                "a collection holds at most {MAX_COLLECTION_FILES} files"
            )));
        }
        c.updated_at = now;
        tx.exec(
            "UPDATE collections SET data = $2 WHERE id = $1",
            &[&id, &json(&c)],
        )
        .await?;
        commit(tx).await?;
        Ok(c)
    }

    async fn delete_collection(&self, owner: Uuid, id: Uuid) -> StoreResult<()> {
        let c = self.client().await?;
        if c.exec(
            "DELETE FROM collections WHERE id = $1 AND owner = $2",
            &[&id, &owner],
        )
        .await?
            == 0
        {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}
