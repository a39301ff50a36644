//! Documents, their chunks and vectors, and knowledge collections in redb.
//! A document is keyed by its file's id and checked against its owner on
//! every read; chunks are keyed (file id, ordinal), so a document's chunks
//! are one range.

use redb::{ReadableTable, WriteTransaction};
use uuid::Uuid;

use super::search_outbox::push;
use super::{
    COLLECTIONS, COLLECTIONS_BY_USER, DOC_CHUNKS, DOC_VECTORS, DOCUMENTS, DOCUMENTS_BY_USER, Db,
    StoreError, StoreResult, dec, enc,
};
use crate::store::knowledge::*;
use crate::store::search_outbox::OutboxOp;

/// A document's record when `owner` owns it.
fn owned_doc(
    t: &impl ReadableTable<u128, &'static [u8]>,
    owner: Uuid,
    file_id: Uuid,
) -> StoreResult<DocumentRecord> {
    let d: DocumentRecord = match t.get(file_id.as_u128())? {
        Some(v) => dec(v.value())?,
        None => return Err(StoreError::NotFound),
    };
    if d.owner != owner {
        return Err(StoreError::NotFound);
    }
    Ok(d)
}

/// Removes a document's record, chunks and vectors inside `tx`; true when
/// there was one.
fn remove_doc(tx: &WriteTransaction, owner: Uuid, file_id: Uuid) -> StoreResult<bool> {
    let k = file_id.as_u128();
    let existed = {
        let mut docs = tx.open_table(DOCUMENTS)?;
        let found = docs
            .get(k)?
            .map(|v| dec::<DocumentRecord>(v.value()))
            .transpose()?;
        match found {
            Some(d) if d.owner == owner => {
                docs.remove(k)?;
                true
            }
            Some(_) => return Err(StoreError::NotFound),
            None => false,
        }
    };
    tx.open_table(DOCUMENTS_BY_USER)?
        .remove((owner.as_u128(), k))?;
    tx.open_table(DOC_CHUNKS)?
        .retain_in((k, 0)..=(k, u32::MAX), |_, _| false)?;
    tx.open_table(DOC_VECTORS)?.remove(k)?;
    Ok(existed)
}

/// Forgets the document read from a file inside `tx` (the file is being
/// deleted): record, chunks, vectors, its place in the owner's collections,
/// and a search outbox op that takes it out of the index. False when there
/// was none (or it is another user's).
pub(crate) fn forget_in(tx: &WriteTransaction, owner: Uuid, file_id: Uuid) -> StoreResult<bool> {
    let existed = match remove_doc(tx, owner, file_id) {
        Ok(e) => e,
        Err(StoreError::NotFound) => return Ok(false),
        Err(e) => return Err(e),
    };
    // The file leaves every collection of its owner.
    {
        let by = tx.open_table(COLLECTIONS_BY_USER)?;
        let mut cols = tx.open_table(COLLECTIONS)?;
        let o = owner.as_u128();
        let ids: Vec<u128> = by
            .range((o, 0)..=(o, u128::MAX))?
            .map(|r| r.map(|(k, _)| k.value().1))
            .collect::<Result<_, _>>()?;
        for id in ids {
            let Some(mut c) = cols
                .get(id)?
                .map(|v| dec::<Collection>(v.value()))
                .transpose()?
            else {
                continue;
            };
            let before = c.file_ids.len();
            c.file_ids.retain(|f| *f != file_id);
            if c.file_ids.len() != before {
                cols.insert(id, enc(&c).as_slice())?;
            }
        }
    }
    push(tx, &[OutboxOp::Document { file_id }])?;
    Ok(existed)
}

impl Db {
    pub fn put_document(&self, doc: &DocumentRecord, chunks: &[Chunk]) -> StoreResult<()> {
        let tx = self.write()?;
        remove_doc(&tx, doc.owner, doc.file_id)?;
        let k = doc.file_id.as_u128();
        tx.open_table(DOCUMENTS)?.insert(k, enc(doc).as_slice())?;
        tx.open_table(DOCUMENTS_BY_USER)?
            .insert((doc.owner.as_u128(), k), ())?;
        {
            let mut t = tx.open_table(DOC_CHUNKS)?;
            for c in chunks {
                t.insert((k, c.ordinal), enc(c).as_slice())?;
            }
        }
        push(
            &tx,
            &[OutboxOp::Document {
                file_id: doc.file_id,
            }],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn get_document(&self, owner: Uuid, file_id: Uuid) -> StoreResult<DocumentRecord> {
        let tx = self.read()?;
        owned_doc(&tx.open_table(DOCUMENTS)?, owner, file_id)
    }

    pub fn list_documents(&self, owner: Uuid) -> StoreResult<Vec<DocumentRecord>> {
        let tx = self.read()?;
        let by = tx.open_table(DOCUMENTS_BY_USER)?;
        let docs = tx.open_table(DOCUMENTS)?;
        let o = owner.as_u128();
        let mut out = Vec::new();
        for r in by.range((o, 0)..=(o, u128::MAX))? {
            let (k, _) = r?;
            if let Some(v) = docs.get(k.value().1)? {
                out.push(dec(v.value())?);
            }
        }
        Ok(out)
    }

    pub fn document_chunks(
        &self,
        owner: Uuid,
        file_id: Uuid,
        from: u32,
        to: u32,
    ) -> StoreResult<Vec<Chunk>> {
        let tx = self.read()?;
        owned_doc(&tx.open_table(DOCUMENTS)?, owner, file_id)?;
        let t = tx.open_table(DOC_CHUNKS)?;
        let k = file_id.as_u128();
        let mut out = Vec::new();
        if from >= to {
            return Ok(out);
        }
        for r in t.range((k, from)..(k, to))? {
            let (_, v) = r?;
            out.push(dec(v.value())?);
        }
        Ok(out)
    }

    pub fn get_chunks(&self, owner: Uuid, keys: &[(Uuid, u32)]) -> StoreResult<Vec<Chunk>> {
        let tx = self.read()?;
        let docs = tx.open_table(DOCUMENTS)?;
        let t = tx.open_table(DOC_CHUNKS)?;
        let mut owned: std::collections::HashMap<Uuid, bool> = Default::default();
        let mut out = Vec::new();
        for &(f, ord) in keys {
            let mine = match owned.get(&f) {
                Some(m) => *m,
                None => {
                    let m = owned_doc(&docs, owner, f).is_ok();
                    owned.insert(f, m);
                    m
                }
            };
            if !mine {
                continue;
            }
            if let Some(v) = t.get((f.as_u128(), ord))? {
                out.push(dec(v.value())?);
            }
        }
        Ok(out)
    }

    pub fn delete_document(&self, owner: Uuid, file_id: Uuid) -> StoreResult<bool> {
        let tx = self.write()?;
        let existed = forget_in(&tx, owner, file_id)?;
        tx.commit()?;
        Ok(existed)
    }

    pub fn put_vectors(&self, owner: Uuid, v: &ChunkVectors) -> StoreResult<()> {
        let tx = self.write()?;
        let k = v.file_id.as_u128();
        {
            let mut docs = tx.open_table(DOCUMENTS)?;
            let mut d = owned_doc(&docs, owner, v.file_id)?;
            d.embedding_model = Some(v.model.clone());
            docs.insert(k, enc(&d).as_slice())?;
        }
        tx.open_table(DOC_VECTORS)?.insert(k, enc(v).as_slice())?;
        tx.commit()?;
        Ok(())
    }

    pub fn get_vectors(&self, owner: Uuid, file_id: Uuid) -> StoreResult<Option<ChunkVectors>> {
        let tx = self.read()?;
        owned_doc(&tx.open_table(DOCUMENTS)?, owner, file_id)?;
        let t = tx.open_table(DOC_VECTORS)?;
        t.get(file_id.as_u128())?
            .map(|v| dec(v.value()))
            .transpose()
    }

    pub fn documents_page(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> StoreResult<Vec<(DocumentRecord, Vec<Chunk>)>> {
        let tx = self.read()?;
        let docs = tx.open_table(DOCUMENTS)?;
        let chunks = tx.open_table(DOC_CHUNKS)?;
        let from = match after {
            Some(a) => std::ops::Bound::Excluded(a.as_u128()),
            None => std::ops::Bound::Unbounded,
        };
        let mut out = Vec::new();
        for r in docs.range::<u128>((from, std::ops::Bound::Unbounded))? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = r?;
            let d: DocumentRecord = dec(v.value())?;
            let k = k.value();
            let mut list = Vec::new();
            for r in chunks.range((k, 0)..=(k, u32::MAX))? {
                let (_, v) = r?;
                list.push(dec(v.value())?);
            }
            out.push((d, list));
        }
        Ok(out)
    }

    pub fn create_collection(&self, c: &Collection) -> StoreResult<()> {
        let tx = self.write()?;
        {
            let mut t = tx.open_table(COLLECTIONS)?;
            if t.get(c.id.as_u128())?.is_some() {
                return Err(StoreError::Conflict("the collection exists".into()));
            }
            t.insert(c.id.as_u128(), enc(c).as_slice())?;
        }
        tx.open_table(COLLECTIONS_BY_USER)?
            .insert((c.owner.as_u128(), c.id.as_u128()), ())?;
        tx.commit()?;
        Ok(())
    }

    pub fn get_collection(&self, owner: Uuid, id: Uuid) -> StoreResult<Collection> {
        let tx = self.read()?;
        let t = tx.open_table(COLLECTIONS)?;
        let c: Collection = match t.get(id.as_u128())? {
            Some(v) => dec(v.value())?,
            None => return Err(StoreError::NotFound),
        };
        if c.owner != owner {
            return Err(StoreError::NotFound);
        }
        Ok(c)
    }

    pub fn list_collections(&self, owner: Uuid) -> StoreResult<Vec<Collection>> {
        let tx = self.read()?;
        let by = tx.open_table(COLLECTIONS_BY_USER)?;
        let t = tx.open_table(COLLECTIONS)?;
        let o = owner.as_u128();
        let mut out: Vec<Collection> = Vec::new();
        for r in by.range((o, 0)..=(o, u128::MAX))? {
            let (k, _) = r?;
            if let Some(v) = t.get(k.value().1)? {
                out.push(dec(v.value())?);
            }
        }
        out.sort_by_key(|c| (c.name.to_lowercase(), c.id));
        Ok(out)
    }

    pub fn update_collection(
        &self,
        owner: Uuid,
        id: Uuid,
        patch: CollectionPatch,
        now: i64,
    ) -> StoreResult<Collection> {
        let tx = self.write()?;
        let c = {
            let mut t = tx.open_table(COLLECTIONS)?;
            let mut c: Collection = match t.get(id.as_u128())? {
                Some(v) => dec(v.value())?,
                None => return Err(StoreError::NotFound),
            };
            if c.owner != owner {
                return Err(StoreError::NotFound);
            }
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
            t.insert(id.as_u128(), enc(&c).as_slice())?;
            c
        };
        tx.commit()?;
        Ok(c)
    }

    pub fn delete_collection(&self, owner: Uuid, id: Uuid) -> StoreResult<()> {
        let tx = self.write()?;
        {
            let mut t = tx.open_table(COLLECTIONS)?;
            let c: Collection = match t.get(id.as_u128())? {
                Some(v) => dec(v.value())?,
                None => return Err(StoreError::NotFound),
            };
            if c.owner != owner {
                return Err(StoreError::NotFound);
            }
            t.remove(id.as_u128())?;
        }
        tx.open_table(COLLECTIONS_BY_USER)?
            .remove((owner.as_u128(), id.as_u128()))?;
        tx.commit()?;
        Ok(())
    }
}
