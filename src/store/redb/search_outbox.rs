//! The search outbox in redb (see `store::search_outbox`).

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, WriteTransaction};
use uuid::Uuid;

use super::{
    CONVERSATIONS, DOC_CHUNKS, DOCUMENTS, Db, MESSAGES, SEARCH_OUTBOX, StoreResult, dec, enc,
};
use crate::store::SearchablePage;
use crate::store::chat::{Conversation, Message, MessageStatus};
use crate::store::knowledge::{DocumentRecord, DocumentStatus};
use crate::store::search_outbox::*;

/// Appends ops inside an open write transaction.
pub(crate) fn push(tx: &WriteTransaction, ops: &[OutboxOp]) -> StoreResult<()> {
    if ops.is_empty() {
        return Ok(());
    }
    let mut t = tx.open_table(SEARCH_OUTBOX)?;
    let first = t.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
    for (seq, op) in (first..).zip(ops) {
        t.insert(seq, enc(op).as_slice())?;
    }
    Ok(())
}

/// Document text one outbox batch may carry (it ends after the op that
/// passes it).
const BATCH_TEXT_BYTES: usize = 32 * 1024 * 1024;

impl Db {
    /// Up to `limit` pending ops, oldest first, each resolved against the
    /// current data.
    pub fn outbox_batch(&self, limit: usize) -> StoreResult<Vec<(u64, Resolved)>> {
        let tx = self.read()?;
        let t = tx.open_table(SEARCH_OUTBOX)?;
        let convs = tx.open_table(CONVERSATIONS)?;
        let msgs = tx.open_table(MESSAGES)?;
        let docs = tx.open_table(DOCUMENTS)?;
        let chunks = tx.open_table(DOC_CHUNKS)?;
        let mut out = Vec::new();
        // Document text read into this batch: a batch stops early past
        // [`BATCH_TEXT_BYTES`], so a run of big documents stays bounded.
        let mut text_bytes = 0usize;
        for r in t.iter()? {
            let (k, v) = r?;
            let op: OutboxOp = dec(v.value())?;
            let resolved = match op {
                OutboxOp::Message {
                    conversation_id,
                    message_id,
                } => {
                    let conv: Option<Conversation> = convs
                        .get(conversation_id.as_u128())?
                        .map(|v| dec(v.value()))
                        .transpose()?;
                    let m: Option<Message> = msgs
                        .get((conversation_id.as_u128(), message_id.as_u128()))?
                        .map(|v| dec(v.value()))
                        .transpose()?;
                    match (conv, m) {
                        (Some(c), Some(m)) if m.status != MessageStatus::Streaming => {
                            Resolved::Message(Box::new(IndexedMessage {
                                user_id: c.user_id,
                                message: m,
                            }))
                        }
                        _ => Resolved::MessageGone { message_id },
                    }
                }
                OutboxOp::Title { conversation_id } => {
                    match convs.get(conversation_id.as_u128())? {
                        Some(v) => Resolved::Title(Box::new(dec(v.value())?)),
                        None => Resolved::TitleGone { conversation_id },
                    }
                }
                OutboxOp::DeleteConversation { conversation_id } => {
                    Resolved::DeleteConversation { conversation_id }
                }
                OutboxOp::DeleteUser { user_id } => Resolved::DeleteUser { user_id },
                OutboxOp::Document { file_id } => {
                    let k = file_id.as_u128();
                    let d: Option<DocumentRecord> =
                        docs.get(k)?.map(|v| dec(v.value())).transpose()?;
                    match d {
                        Some(d) if d.status == DocumentStatus::Ready => {
                            let mut list = Vec::new();
                            for r in chunks.range((k, 0)..=(k, u32::MAX))? {
                                let (_, v) = r?;
                                let c: crate::store::knowledge::Chunk = dec(v.value())?;
                                text_bytes += c.text.len();
                                list.push(c);
                            }
                            Resolved::Document(Box::new(IndexedDocument {
                                owner: d.owner,
                                file_id,
                                chunks: list,
                            }))
                        }
                        _ => Resolved::DocumentGone { file_id },
                    }
                }
            };
            out.push((k.value(), resolved));
            if out.len() >= limit || text_bytes > BATCH_TEXT_BYTES {
                break;
            }
        }
        Ok(out)
    }

    /// Removes every op up to and including `seq` (after they were indexed).
    pub fn outbox_ack(&self, seq: u64) -> StoreResult<()> {
        // Not user-visible: losing an ack only means replaying ops, which is
        // harmless, so skip the fsync.
        let mut tx = self.db.begin_write()?;
        tx.set_durability(redb::Durability::None)?;
        tx.open_table(SEARCH_OUTBOX)?
            .retain_in(..=seq, |_, _| false)?;
        tx.commit()?;
        Ok(())
    }

    pub fn outbox_len(&self) -> StoreResult<u64> {
        let tx = self.read()?;
        Ok(tx.open_table(SEARCH_OUTBOX)?.len()?)
    }

    /// The seq of the newest op, 0 when none.
    pub fn outbox_head(&self) -> StoreResult<u64> {
        let tx = self.read()?;
        let outbox = tx.open_table(SEARCH_OUTBOX)?;
        Ok(outbox.last()?.map(|(k, _)| k.value()).unwrap_or(0))
    }

    /// Up to `limit` conversations after `after` (by id), with their
    /// complete messages, read in one snapshot.
    pub fn searchable_page(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> StoreResult<SearchablePage> {
        let tx = self.db.begin_read()?;
        let convs = tx.open_table(CONVERSATIONS)?;
        let msgs = tx.open_table(MESSAGES)?;
        let from = match after {
            Some(a) => std::ops::Bound::Excluded(a.as_u128()),
            None => std::ops::Bound::Unbounded,
        };
        let mut page = SearchablePage::default();
        for r in convs.range::<u128>((from, std::ops::Bound::Unbounded))? {
            if page.conversations.len() >= limit {
                page.next = page.conversations.last().map(|(c, _)| c.id);
                break;
            }
            let (_, v) = r?;
            let c: Conversation = dec(v.value())?;
            let k = c.id.as_u128();
            let mut list = Vec::new();
            for r in msgs.range((k, 0)..=(k, u128::MAX))? {
                let (_, v) = r?;
                let m: Message = dec(v.value())?;
                if m.status != MessageStatus::Streaming {
                    list.push(m);
                }
            }
            page.conversations.push((c, list));
        }
        Ok(page)
    }

    /// How many messages are stored (for progress reporting).
    pub fn message_count(&self) -> StoreResult<u64> {
        let tx = self.read()?;
        Ok(tx.open_table(MESSAGES)?.len()?)
    }
}
