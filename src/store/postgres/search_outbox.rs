//! The search outbox in PostgreSQL (see `store::search_outbox`).
//!
//! A reader must never see seq N before every smaller seq that will ever
//! exist: an identity column alone does not promise that (a transaction can
//! take seq 5, another seq 6 and commit first). So a transaction that queues
//! ops takes a transaction-scoped advisory lock right before it inserts them,
//! as its last statement, and holds it through its commit: seqs are handed
//! out in commit order. The cost is that such commits (a turn starting or
//! finishing, a rename) happen one at a time; see docs/ARCHITECTURE.md.

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use std::collections::HashMap;
use uuid::Uuid;

use super::{PgStore, Sql, begin, begin_snapshot, commit, dec, unbig};
use crate::store::chat::{Conversation, Message, MessageStatus};
use crate::store::knowledge::{Chunk, DocumentRecord, DocumentStatus};
use crate::store::search_outbox::*;
use crate::store::{SearchOutboxStore, SearchablePage, StoreResult};

/// Serializes the commits of transactions that queue search ops.
const OUTBOX_LOCK: i64 = 0x636f_6e66_6162_0003;

/// Document text one outbox batch may carry (it ends after the op that
/// passes it), as in redb.
const BATCH_TEXT_BYTES: usize = 32 * 1024 * 1024;

/// Queues `ops` and commits `tx`. Call it instead of `commit` wherever a
/// transaction changed searchable text: the lock it takes is held until the
/// commit, so nothing may be waited for after it.
pub(super) async fn commit_with_ops(tx: Transaction<'_>, ops: &[OutboxOp]) -> StoreResult<()> {
    if !ops.is_empty() {
        tx.exec("SELECT pg_advisory_xact_lock($1)", &[&OUTBOX_LOCK])
            .await?;
        let values: Vec<serde_json::Value> = ops
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()?;
        tx.exec(
            "INSERT INTO search_outbox (op) SELECT o.op FROM unnest($1::jsonb[]) WITH ORDINALITY AS o(op, n) ORDER BY o.n",
            &[&values],
        )
        .await?;
    }
    commit(tx).await
}

/// Up to `limit` ops after seq `after`, oldest first, resolved against one
/// snapshot (the single drain and the feed every instance follows, see
/// `cluster.rs`, both read through it).
pub(super) async fn resolve_after(
    c: &mut deadpool_postgres::Object,
    after: u64,
    limit: usize,
) -> StoreResult<Vec<(u64, Resolved)>> {
    let tx = begin_snapshot(c).await?;
    let rows = tx
        .rows(
            "SELECT seq, op FROM search_outbox WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&(after.min(i64::MAX as u64) as i64), &(limit as i64)],
        )
        .await?;
    let mut ops = Vec::with_capacity(rows.len());
    for r in &rows {
        let seq: i64 = r.get(0);
        let op: OutboxOp = dec(r, 1)?;
        ops.push((unbig(seq), op));
    }
    // Resolve against the same snapshot, two queries for the batch.
    let mut conv_ids: Vec<Uuid> = Vec::new();
    let mut msg_ids: Vec<Uuid> = Vec::new();
    for (_, op) in &ops {
        match op {
            OutboxOp::Message {
                conversation_id,
                message_id,
            } => {
                conv_ids.push(*conversation_id);
                msg_ids.push(*message_id);
            }
            OutboxOp::Title { conversation_id } => conv_ids.push(*conversation_id),
            _ => {}
        }
    }
    let mut convs: HashMap<Uuid, Conversation> = HashMap::new();
    if !conv_ids.is_empty() {
        for r in tx
            .rows(
                "SELECT data FROM conversations WHERE id = ANY($1)",
                &[&conv_ids],
            )
            .await?
        {
            let c: Conversation = dec(&r, 0)?;
            convs.insert(c.id, c);
        }
    }
    let mut msgs: HashMap<(Uuid, Uuid), Message> = HashMap::new();
    if !msg_ids.is_empty() {
        for r in tx
            .rows(
                "SELECT conversation_id, data FROM messages WHERE id = ANY($1)",
                &[&msg_ids],
            )
            .await?
        {
            let conv: Uuid = r.get(0);
            let m: Message = dec(&r, 1)?;
            msgs.insert((conv, m.id), m);
        }
    }
    let mut out = Vec::with_capacity(ops.len());
    // Document text read into this batch: the batch ends after the op that
    // passes [`BATCH_TEXT_BYTES`], so a run of big documents stays bounded.
    let mut text_bytes = 0usize;
    for (seq, op) in ops {
        let resolved = match op {
            OutboxOp::Message {
                conversation_id,
                message_id,
            } => match (
                convs.get(&conversation_id),
                msgs.get(&(conversation_id, message_id)),
            ) {
                (Some(c), Some(m)) if m.status != MessageStatus::Streaming => {
                    Resolved::Message(Box::new(IndexedMessage {
                        user_id: c.user_id,
                        message: m.clone(),
                    }))
                }
                _ => Resolved::MessageGone { message_id },
            },
            OutboxOp::Title { conversation_id } => match convs.get(&conversation_id) {
                Some(c) => Resolved::Title(Box::new(c.clone())),
                None => Resolved::TitleGone { conversation_id },
            },
            OutboxOp::DeleteConversation { conversation_id } => {
                Resolved::DeleteConversation { conversation_id }
            }
            OutboxOp::DeleteUser { user_id } => Resolved::DeleteUser { user_id },
            OutboxOp::Document { file_id } => {
                let d: Option<DocumentRecord> = tx
                    .opt("SELECT data FROM documents WHERE file_id = $1", &[&file_id])
                    .await?
                    .map(|r| dec(&r, 0))
                    .transpose()?;
                match d {
                    Some(d) if d.status == DocumentStatus::Ready => {
                        let mut chunks = Vec::new();
                        for r in tx
                            .rows(
                                "SELECT data FROM doc_chunks WHERE file_id = $1 ORDER BY ordinal",
                                &[&file_id],
                            )
                            .await?
                        {
                            let c: Chunk = dec(&r, 0)?;
                            text_bytes += c.text.len();
                            chunks.push(c);
                        }
                        Resolved::Document(Box::new(IndexedDocument {
                            owner: d.owner,
                            file_id,
                            chunks,
                        }))
                    }
                    _ => Resolved::DocumentGone { file_id },
                }
            }
        };
        out.push((seq, resolved));
        if text_bytes > BATCH_TEXT_BYTES {
            break;
        }
    }
    commit(tx).await?;
    Ok(out)
}

#[async_trait]
impl SearchOutboxStore for PgStore {
    async fn outbox_batch(&self, limit: usize) -> StoreResult<Vec<(u64, Resolved)>> {
        let mut c = self.client().await?;
        resolve_after(&mut c, 0, limit).await
    }

    async fn outbox_ack(&self, seq: u64) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = begin(&mut c).await?;
        // Not user-visible: a lost acknowledgement only replays ops.
        tx.exec("SET LOCAL synchronous_commit = off", &[]).await?;
        tx.exec(
            "DELETE FROM search_outbox WHERE seq <= $1",
            &[&(seq.min(i64::MAX as u64) as i64)],
        )
        .await?;
        commit(tx).await
    }

    async fn outbox_len(&self) -> StoreResult<u64> {
        let c = self.client().await?;
        let n: i64 = c
            .one("SELECT count(*) FROM search_outbox", &[])
            .await?
            .get(0);
        Ok(unbig(n))
    }

    async fn outbox_head(&self) -> StoreResult<u64> {
        let c = self.client().await?;
        let n: i64 = c
            .one("SELECT coalesce(max(seq), 0) FROM search_outbox", &[])
            .await?
            .get(0);
        Ok(unbig(n))
    }

    async fn searchable_page(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> StoreResult<SearchablePage> {
        let mut c = self.client().await?;
        let tx = begin_snapshot(&mut c).await?;
        let rows = tx
            .rows(
                "SELECT data FROM conversations WHERE $1::uuid IS NULL OR id > $1 ORDER BY id LIMIT $2",
                &[&after, &(limit as i64 + 1)],
            )
            .await?;
        let mut page = SearchablePage::default();
        let mut list: Vec<Conversation> =
            rows.iter().map(|r| dec(r, 0)).collect::<StoreResult<_>>()?;
        if list.len() > limit {
            list.truncate(limit);
            page.next = list.last().map(|c| c.id);
        }
        let ids: Vec<Uuid> = list.iter().map(|c| c.id).collect();
        let mut by_conv: HashMap<Uuid, Vec<Message>> = HashMap::new();
        if !ids.is_empty() {
            for r in tx
                .rows(
                    "SELECT conversation_id, data FROM messages
                     WHERE conversation_id = ANY($1) AND status <> 'streaming'
                     ORDER BY conversation_id, id",
                    &[&ids],
                )
                .await?
            {
                let conv: Uuid = r.get(0);
                by_conv.entry(conv).or_default().push(dec(&r, 1)?);
            }
        }
        commit(tx).await?;
        page.conversations = list
            .into_iter()
            .map(|c| {
                let msgs = by_conv.remove(&c.id).unwrap_or_default();
                (c, msgs)
            })
            .collect();
        Ok(page)
    }

    async fn message_count(&self) -> StoreResult<u64> {
        let c = self.client().await?;
        let n: i64 = c.one("SELECT count(*) FROM messages", &[]).await?.get(0);
        Ok(unbig(n))
    }
}
