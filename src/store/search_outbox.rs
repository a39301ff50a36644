//! The durable queue between redb (the truth) and the search index.
//!
//! Every write that changes searchable text appends an [`OutboxOp`] in the
//! same transaction, so the queue can never miss a change. Ops say *what*
//! changed, not the new text: the indexer reads the current state from redb
//! when it applies them, so replaying an op twice is harmless and an op for
//! something since deleted removes it from the index.

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, WriteTransaction};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::chat::{Conversation, Message, MessageStatus};
use super::{CONVERSATIONS, MESSAGES, SEARCH_OUTBOX, Store, StoreResult, dec, enc};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum OutboxOp {
    /// Re-sync one message (indexed when it exists and is not streaming).
    Message {
        conversation_id: Uuid,
        message_id: Uuid,
    },
    /// Re-sync a conversation's title document.
    Title { conversation_id: Uuid },
    /// Remove everything of a conversation.
    DeleteConversation { conversation_id: Uuid },
    /// Remove everything of a user.
    DeleteUser { user_id: Uuid },
}

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

/// What the indexer needs to index one message.
#[derive(Debug, Clone)]
pub struct IndexedMessage {
    pub user_id: Uuid,
    pub message: Message,
}

/// A message or title resolved against the current state of redb.
#[derive(Debug, Clone)]
pub enum Resolved {
    Message(Box<IndexedMessage>),
    /// The message no longer exists (or is still streaming): not indexed.
    MessageGone {
        message_id: Uuid,
    },
    Title(Conversation),
    TitleGone {
        conversation_id: Uuid,
    },
    DeleteConversation {
        conversation_id: Uuid,
    },
    DeleteUser {
        user_id: Uuid,
    },
}

impl Store {
    /// Up to `limit` pending ops, oldest first, each resolved against the
    /// current data.
    pub fn outbox_batch(&self, limit: usize) -> StoreResult<Vec<(u64, Resolved)>> {
        let tx = self.read()?;
        let t = tx.open_table(SEARCH_OUTBOX)?;
        let convs = tx.open_table(CONVERSATIONS)?;
        let msgs = tx.open_table(MESSAGES)?;
        let mut out = Vec::new();
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
                        Some(v) => Resolved::Title(dec(v.value())?),
                        None => Resolved::TitleGone { conversation_id },
                    }
                }
                OutboxOp::DeleteConversation { conversation_id } => {
                    Resolved::DeleteConversation { conversation_id }
                }
                OutboxOp::DeleteUser { user_id } => Resolved::DeleteUser { user_id },
            };
            out.push((k.value(), resolved));
            if out.len() >= limit {
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

    /// Walks every conversation and complete message in one consistent
    /// snapshot (for a full rebuild). Returns the last outbox seq the
    /// snapshot already reflects.
    pub fn for_each_searchable(
        &self,
        mut on_title: impl FnMut(&Conversation),
        mut on_message: impl FnMut(Uuid, &Message),
    ) -> StoreResult<u64> {
        let tx = self.db.begin_read()?;
        let outbox = tx.open_table(SEARCH_OUTBOX)?;
        let covered = outbox.last()?.map(|(k, _)| k.value()).unwrap_or(0);
        let convs = tx.open_table(CONVERSATIONS)?;
        let msgs = tx.open_table(MESSAGES)?;
        for r in convs.iter()? {
            let (_, v) = r?;
            let c: Conversation = dec(v.value())?;
            on_title(&c);
            let k = c.id.as_u128();
            for r in msgs.range((k, 0)..=(k, u128::MAX))? {
                let (_, v) = r?;
                let m: Message = dec(v.value())?;
                if m.status != MessageStatus::Streaming {
                    on_message(c.user_id, &m);
                }
            }
        }
        Ok(covered)
    }

    /// How many messages are stored (for progress reporting).
    pub fn message_count(&self) -> StoreResult<u64> {
        let tx = self.read()?;
        Ok(tx.open_table(MESSAGES)?.len()?)
    }
}
