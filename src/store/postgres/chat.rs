//! Conversations and message trees in PostgreSQL; the same rules as the
//! redb backend (`store/redb/chat.rs`), each method one transaction.

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use uuid::Uuid;

use super::search_outbox::commit_with_ops;
use super::{PgStore, Sql, begin, begin_snapshot, big, commit, dec, json};
use crate::store::chat::*;
use crate::store::search_outbox::OutboxOp;
use crate::store::{ChatStore, ConversationPatch, StoreError, StoreResult};

fn status(s: MessageStatus) -> &'static str {
    match s {
        MessageStatus::Complete => "complete",
        MessageStatus::Streaming => "streaming",
        MessageStatus::Interrupted => "interrupted",
        MessageStatus::Error => "error",
    }
}

/// The user's conversation, locked for this transaction; NotFound when it
/// is missing or another user's.
async fn load_conv(tx: &Transaction<'_>, user_id: Uuid, id: Uuid) -> StoreResult<Conversation> {
    match tx
        .opt(
            "SELECT data FROM conversations WHERE id = $1 AND user_id = $2 FOR UPDATE",
            &[&id, &user_id],
        )
        .await?
    {
        Some(r) => dec(&r, 0),
        None => Err(StoreError::NotFound),
    }
}

async fn insert_conv(tx: &Transaction<'_>, c: &Conversation) -> StoreResult<()> {
    let r = tx
        .exec(
            "INSERT INTO conversations (id, user_id, updated_at_ms, archived, pinned, data)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &c.id,
                &c.user_id,
                &big(c.updated_at_ms)?,
                &c.archived,
                &c.pinned,
                &json(c),
            ],
        )
        .await;
    match r {
        Err(StoreError::Conflict(_)) => Err(StoreError::Conflict(format!(
            "a conversation with id {} already exists",
            c.id
        ))),
        r => r.map(|_| ()),
    }
}

async fn save_conv(tx: &Transaction<'_>, c: &Conversation) -> StoreResult<()> {
    tx.exec(
        "UPDATE conversations SET updated_at_ms = $2, archived = $3, pinned = $4, data = $5
         WHERE id = $1",
        &[
            &c.id,
            &big(c.updated_at_ms)?,
            &c.archived,
            &c.pinned,
            &json(c),
        ],
    )
    .await?;
    Ok(())
}

/// Inserts or replaces messages of `conv_id` (as redb's insert does).
async fn put_messages(tx: &Transaction<'_>, conv_id: Uuid, list: &[&Message]) -> StoreResult<()> {
    for m in list {
        tx.exec(
            "INSERT INTO messages (conversation_id, id, status, data) VALUES ($1, $2, $3, $4)
             ON CONFLICT (conversation_id, id) DO UPDATE SET status = excluded.status, data = excluded.data",
            &[&conv_id, &m.id, &status(m.status), &json(*m)],
        )
        .await?;
    }
    Ok(())
}

async fn messages_in(tx: &impl Sql, conv_id: Uuid) -> StoreResult<Vec<Message>> {
    let rows = tx
        .rows(
            "SELECT data FROM messages WHERE conversation_id = $1 ORDER BY id",
            &[&conv_id],
        )
        .await?;
    rows.iter().map(|r| dec(r, 0)).collect()
}

/// Moves the conversation to the top: its update time strictly grows.
fn touch(c: &mut Conversation) {
    c.updated_at_ms = crate::clock::now_ms().max(c.updated_at_ms + 1);
}

#[async_trait]
impl ChatStore for PgStore {
    async fn create_conversation(&self, c: &Conversation) -> StoreResult<()> {
        let mut cl = self.client().await?;
        let tx = begin(&mut cl).await?;
        insert_conv(&tx, c).await?;
        commit_with_ops(
            tx,
            &[OutboxOp::Title {
                conversation_id: c.id,
            }],
        )
        .await
    }

    async fn get_conversation(&self, user_id: Uuid, id: Uuid) -> StoreResult<Conversation> {
        let c = self.client().await?;
        match c
            .opt(
                "SELECT data FROM conversations WHERE id = $1 AND user_id = $2",
                &[&id, &user_id],
            )
            .await?
        {
            Some(r) => dec(&r, 0),
            None => Err(StoreError::NotFound),
        }
    }

    async fn list_conversations(
        &self,
        user_id: Uuid,
        cursor: Option<ConversationCursor>,
        filter: ConversationFilter,
        limit: usize,
    ) -> StoreResult<Vec<Conversation>> {
        let c = self.client().await?;
        let (at, id) = match cursor {
            Some(k) => (big(k.updated_at_ms)?, k.id),
            None => (i64::MAX, Uuid::max()),
        };
        let archived = filter.archived.unwrap_or(false);
        let rows = c
            .rows(
                "SELECT data FROM conversations
                 WHERE user_id = $1 AND (updated_at_ms, id) < ($2, $3)
                   AND archived = $4 AND ($5::boolean IS NULL OR pinned = $5)
                 ORDER BY updated_at_ms DESC, id DESC LIMIT $6",
                &[
                    &user_id,
                    &at,
                    &id,
                    &archived,
                    &filter.pinned,
                    &(limit as i64),
                ],
            )
            .await?;
        rows.iter().map(|r| dec(r, 0)).collect()
    }

    async fn update_conversation(
        &self,
        user_id: Uuid,
        id: Uuid,
        patch: ConversationPatch,
    ) -> StoreResult<Conversation> {
        let mut cl = self.client().await?;
        let tx = begin(&mut cl).await?;
        let mut c = load_conv(&tx, user_id, id).await?;
        let old_title = c.title.clone();
        let (current_leaf, move_up) = patch.apply_fields(&mut c);
        if let Some(l) = current_leaf {
            let msgs = messages_in(&tx, id).await?;
            if !msgs.iter().any(|m| m.id == l) {
                return Err(StoreError::Conflict(
                    "current_leaf is not a message of this conversation".into(),
                ));
            }
            c.current_leaf = Some(deepest_leaf(&msgs, l));
        }
        let mut ops = Vec::new();
        if c.title != old_title {
            ops.push(OutboxOp::Title {
                conversation_id: id,
            });
        }
        if move_up {
            touch(&mut c);
        }
        save_conv(&tx, &c).await?;
        commit_with_ops(tx, &ops).await?;
        Ok(c)
    }

    async fn delete_conversation(&self, user_id: Uuid, id: Uuid) -> StoreResult<usize> {
        let mut cl = self.client().await?;
        let tx = begin(&mut cl).await?;
        load_conv(&tx, user_id, id).await?;
        let n = tx
            .exec("DELETE FROM messages WHERE conversation_id = $1", &[&id])
            .await?;
        tx.exec("DELETE FROM conversations WHERE id = $1", &[&id])
            .await?;
        commit_with_ops(
            tx,
            &[OutboxOp::DeleteConversation {
                conversation_id: id,
            }],
        )
        .await?;
        Ok(n as usize)
    }

    async fn start_turn(
        &self,
        user_id: Uuid,
        new_conv: Option<&Conversation>,
        model: Option<String>,
        params: ModelParamsPatch,
        user_msg: Option<&Message>,
        assistant: &Message,
    ) -> StoreResult<Conversation> {
        let conv_id = assistant.conversation_id;
        let mut cl = self.client().await?;
        let tx = begin(&mut cl).await?;
        let mut ops = Vec::new();
        if let Some(nc) = new_conv {
            insert_conv(&tx, nc).await?;
            ops.push(OutboxOp::Title {
                conversation_id: nc.id,
            });
        }
        let mut c = load_conv(&tx, user_id, conv_id).await?;
        if let Some(m) = model {
            c.model = Some(m);
        }
        c.params = params.apply(c.params);
        for m in user_msg.iter().copied().chain(std::iter::once(assistant)) {
            if let Some(p) = m.parent_id
                && user_msg.is_none_or(|u| u.id != p)
                && tx
                    .opt(
                        "SELECT 1 FROM messages WHERE conversation_id = $1 AND id = $2",
                        &[&conv_id, &p],
                    )
                    .await?
                    .is_none()
            {
                return Err(StoreError::NotFound);
            }
        }
        let list: Vec<&Message> = user_msg
            .iter()
            .copied()
            .chain(std::iter::once(assistant))
            .collect();
        put_messages(&tx, conv_id, &list).await?;
        if let Some(u) = user_msg {
            ops.push(OutboxOp::Message {
                conversation_id: conv_id,
                message_id: u.id,
            });
        }
        c.current_leaf = Some(assistant.id);
        touch(&mut c);
        save_conv(&tx, &c).await?;
        commit_with_ops(tx, &ops).await?;
        Ok(c)
    }

    async fn insert_messages(
        &self,
        user_id: Uuid,
        conv_id: Uuid,
        list: &[Message],
    ) -> StoreResult<()> {
        let mut cl = self.client().await?;
        let tx = begin(&mut cl).await?;
        load_conv(&tx, user_id, conv_id).await?;
        let refs: Vec<&Message> = list.iter().collect();
        put_messages(&tx, conv_id, &refs).await?;
        let ops: Vec<OutboxOp> = list
            .iter()
            .map(|m| OutboxOp::Message {
                conversation_id: conv_id,
                message_id: m.id,
            })
            .collect();
        commit_with_ops(tx, &ops).await
    }

    async fn get_message(&self, user_id: Uuid, conv_id: Uuid, id: Uuid) -> StoreResult<Message> {
        let c = self.client().await?;
        match c
            .opt(
                "SELECT m.data FROM messages m JOIN conversations c ON c.id = m.conversation_id
                 WHERE c.id = $1 AND c.user_id = $2 AND m.id = $3",
                &[&conv_id, &user_id, &id],
            )
            .await?
        {
            Some(r) => dec(&r, 0),
            None => Err(StoreError::NotFound),
        }
    }

    async fn list_messages(&self, user_id: Uuid, conv_id: Uuid) -> StoreResult<Vec<Message>> {
        Ok(self.conversation_with_messages(user_id, conv_id).await?.1)
    }

    async fn flush_partials(&self, parts: &[(Uuid, Uuid, String)]) -> StoreResult<()> {
        if parts.is_empty() {
            return Ok(());
        }
        let convs: Vec<Uuid> = parts.iter().map(|p| p.0).collect();
        let ids: Vec<Uuid> = parts.iter().map(|p| p.1).collect();
        let texts: Vec<&str> = parts.iter().map(|p| p.2.as_str()).collect();
        let c = self.client().await?;
        // One statement for every running answer: one commit.
        c.exec(
            "UPDATE messages m SET data = jsonb_set(m.data, '{content}', to_jsonb(u.content))
             FROM unnest($1::uuid[], $2::uuid[], $3::text[]) AS u(conv, id, content)
             WHERE m.conversation_id = u.conv AND m.id = u.id AND m.status = 'streaming'",
            &[&convs, &ids, &texts],
        )
        .await?;
        Ok(())
    }

    async fn finish_message(&self, m: &Message) -> StoreResult<()> {
        let mut cl = self.client().await?;
        let tx = begin(&mut cl).await?;
        // The conversation first, then its message: the order every writer
        // of a conversation locks in (a delete racing this finish must not
        // deadlock with it).
        let Some(r) = tx
            .opt(
                "SELECT data FROM conversations WHERE id = $1 FOR UPDATE",
                &[&m.conversation_id],
            )
            .await?
        else {
            // The conversation was deleted while the answer streamed.
            return Ok(());
        };
        let n = tx
            .exec(
                "UPDATE messages SET status = $3, data = $4 WHERE conversation_id = $1 AND id = $2",
                &[&m.conversation_id, &m.id, &status(m.status), &json(m)],
            )
            .await?;
        if n == 0 {
            return Ok(());
        }
        let mut c: Conversation = dec(&r, 0)?;
        touch(&mut c);
        save_conv(&tx, &c).await?;
        commit_with_ops(
            tx,
            &[OutboxOp::Message {
                conversation_id: m.conversation_id,
                message_id: m.id,
            }],
        )
        .await
    }

    async fn recover_streaming(&self) -> StoreResult<usize> {
        let mut cl = self.client().await?;
        let tx = begin(&mut cl).await?;
        let rows = tx
            .rows(
                "UPDATE messages SET status = 'interrupted',
                    data = data || '{\"status\": \"interrupted\", \"finish_reason\": \"server_restart\"}'::jsonb
                 WHERE status = 'streaming'
                 RETURNING conversation_id, id",
                &[],
            )
            .await?;
        let ops: Vec<OutboxOp> = rows
            .iter()
            .map(|r| OutboxOp::Message {
                conversation_id: r.get(0),
                message_id: r.get(1),
            })
            .collect();
        commit_with_ops(tx, &ops).await?;
        Ok(rows.len())
    }

    async fn conversation_ids(&self, user_id: Uuid) -> StoreResult<Vec<Uuid>> {
        let c = self.client().await?;
        let rows = c
            .rows(
                "SELECT id FROM conversations WHERE user_id = $1 ORDER BY updated_at_ms DESC, id DESC",
                &[&user_id],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn conversation_with_messages(
        &self,
        user_id: Uuid,
        id: Uuid,
    ) -> StoreResult<(Conversation, Vec<Message>)> {
        let mut cl = self.client().await?;
        let tx = begin_snapshot(&mut cl).await?;
        let c: Conversation = match tx
            .opt(
                "SELECT data FROM conversations WHERE id = $1 AND user_id = $2",
                &[&id, &user_id],
            )
            .await?
        {
            Some(r) => dec(&r, 0)?,
            None => return Err(StoreError::NotFound),
        };
        let msgs = messages_in(&tx, id).await?;
        commit(tx).await?;
        Ok((c, msgs))
    }

    async fn import_conversations(&self, list: &[(Conversation, Vec<Message>)]) -> StoreResult<()> {
        let mut cl = self.client().await?;
        let tx = begin(&mut cl).await?;
        let mut ops = Vec::new();
        for (c, ms) in list {
            insert_conv(&tx, c).await?;
            ops.push(OutboxOp::Title {
                conversation_id: c.id,
            });
            let refs: Vec<&Message> = ms.iter().collect();
            put_messages(&tx, c.id, &refs).await?;
            ops.extend(ms.iter().map(|m| OutboxOp::Message {
                conversation_id: c.id,
                message_id: m.id,
            }));
        }
        commit_with_ops(tx, &ops).await
    }

    async fn import_sourced(
        &self,
        user_id: Uuid,
        list: &[(Option<String>, Conversation, Vec<Message>)],
    ) -> StoreResult<Vec<crate::store::shares::Sourced>> {
        use crate::store::shares::Sourced;
        let mut cl = self.client().await?;
        let tx = begin(&mut cl).await?;
        // Two imports of one file by the same user run one after the other
        // here, so a source is never stored twice.
        let lock = (user_id.as_u128() as u64 as i64) ^ IMPORT_LOCK;
        tx.exec("SELECT pg_advisory_xact_lock($1)", &[&lock])
            .await?;
        let mut ops = Vec::new();
        let mut out = Vec::with_capacity(list.len());
        for (source, c, ms) in list {
            if c.user_id != user_id {
                return Err(StoreError::NotFound);
            }
            let prior = match source {
                None => None,
                Some(source) => {
                    tx.opt(
                        "SELECT s.conversation_id FROM import_sources s
                     JOIN conversations c ON c.id = s.conversation_id
                     WHERE s.user_id = $1 AND s.source = $2",
                        &[&user_id, source],
                    )
                    .await?
                }
            };
            if let Some(r) = prior {
                out.push(Sourced::Existing(r.get(0)));
                continue;
            }
            insert_conv(&tx, c).await?;
            ops.push(OutboxOp::Title {
                conversation_id: c.id,
            });
            let refs: Vec<&Message> = ms.iter().collect();
            put_messages(&tx, c.id, &refs).await?;
            ops.extend(ms.iter().map(|m| OutboxOp::Message {
                conversation_id: c.id,
                message_id: m.id,
            }));
            if let Some(source) = source {
                tx.exec(
                    "INSERT INTO import_sources (user_id, source, conversation_id) VALUES ($1, $2, $3)
                     ON CONFLICT (user_id, source) DO UPDATE SET conversation_id = excluded.conversation_id",
                    &[&user_id, source, &c.id],
                )
                .await?;
            }
            out.push(Sourced::Imported);
        }
        commit_with_ops(tx, &ops).await?;
        Ok(out)
    }
}

/// Mixed into the advisory lock key of a user's imports ("import").
const IMPORT_LOCK: i64 = 0x0069_6d70_6f72_7400;
