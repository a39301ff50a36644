//! Conversations and message trees in redb.

use redb::{ReadableTable, ReadableTableMetadata};
use uuid::Uuid;

use super::search_outbox::push as outbox;
use super::{
    CONVERSATIONS, CONVERSATIONS_BY_USER, Db, IMPORT_SOURCES, MESSAGES, STREAMING, StoreError,
    StoreResult, dec, enc,
};
use crate::store::ConversationPatch;
use crate::store::chat::*;
use crate::store::search_outbox::OutboxOp;
use crate::store::shares::Sourced;

type WriteTx = redb::WriteTransaction;

fn load_conv(tx: &WriteTx, user_id: Uuid, id: Uuid) -> StoreResult<Conversation> {
    let t = tx.open_table(CONVERSATIONS)?;
    let c: Conversation = match t.get(id.as_u128())? {
        Some(v) => dec(v.value())?,
        None => return Err(StoreError::NotFound),
    };
    if c.user_id != user_id {
        return Err(StoreError::NotFound);
    }
    Ok(c)
}

/// Writes a conversation and moves its index entry if `updated_at` changed.
/// Writes `c`: an update when `old_updated` is its previous `updated_at_ms`,
/// else a new conversation (Conflict when the id is taken: an overwrite
/// would leave the old listing entry behind).
fn save_conv(tx: &WriteTx, old_updated: Option<u64>, c: &Conversation) -> StoreResult<()> {
    if old_updated.is_none() && tx.open_table(CONVERSATIONS)?.get(c.id.as_u128())?.is_some() {
        return Err(StoreError::Conflict(format!(
            "a conversation with id {} already exists",
            c.id
        )));
    }
    let mut idx = tx.open_table(CONVERSATIONS_BY_USER)?;
    if let Some(old) = old_updated {
        idx.remove((c.user_id.as_u128(), old, c.id.as_u128()))?;
    }
    idx.insert((c.user_id.as_u128(), c.updated_at_ms, c.id.as_u128()), ())?;
    tx.open_table(CONVERSATIONS)?
        .insert(c.id.as_u128(), enc(c).as_slice())?;
    Ok(())
}

/// Stores an answer's final message within `tx` (one of a batch: see
/// [`super::batch`]): the message, out of the streaming set, queued for the
/// search index, and the conversation's `updated_at`. Nothing when the
/// conversation was deleted while the answer streamed.
pub(super) fn finish_message_in(tx: &WriteTx, m: &Message) -> StoreResult<()> {
    let key = (m.conversation_id.as_u128(), m.id.as_u128());
    let mut msgs = tx.open_table(MESSAGES)?;
    if msgs.get(key)?.is_none() {
        return Ok(());
    }
    msgs.insert(key, enc(m).as_slice())?;
    drop(msgs);
    tx.open_table(STREAMING)?.remove(key)?;
    outbox(
        tx,
        &[OutboxOp::Message {
            conversation_id: m.conversation_id,
            message_id: m.id,
        }],
    )?;
    let convs = tx.open_table(CONVERSATIONS)?;
    let c: Option<Conversation> = convs
        .get(m.conversation_id.as_u128())?
        .map(|v| dec(v.value()))
        .transpose()?;
    drop(convs);
    if let Some(mut c) = c {
        let old = c.updated_at_ms;
        c.updated_at_ms = crate::clock::now_ms().max(old + 1);
        save_conv(tx, Some(old), &c)?;
    }
    Ok(())
}

/// A conversation's patch within `tx` (alone, or one of a batch: see
/// [`super::batch`]).
pub(super) fn update_conversation_in(
    tx: &WriteTx,
    user_id: Uuid,
    id: Uuid,
    patch: ConversationPatch,
) -> StoreResult<Conversation> {
    let mut c = load_conv(tx, user_id, id)?;
    let old = c.updated_at_ms;
    let old_title = c.title.clone();
    let (current_leaf, touch) = patch.apply_fields(&mut c);
    if let Some(l) = current_leaf {
        let msgs = messages_in(&tx.open_table(MESSAGES)?, id)?;
        if !msgs.iter().any(|m| m.id == l) {
            return Err(StoreError::Conflict(
                "current_leaf is not a message of this conversation".into(),
            ));
        }
        c.current_leaf = Some(deepest_leaf(&msgs, l));
    }
    if c.title != old_title {
        outbox(
            tx,
            &[OutboxOp::Title {
                conversation_id: id,
            }],
        )?;
    }
    if touch {
        c.updated_at_ms = crate::clock::now_ms().max(old + 1);
    }
    save_conv(tx, Some(old), &c)?;
    Ok(c)
}

/// One turn within `tx` (alone, or one of a batch: see [`super::batch`]):
/// the new conversation, the user's message, the answer being streamed.
pub(super) fn start_turn_in(
    tx: &WriteTx,
    user_id: Uuid,
    new_conv: Option<&Conversation>,
    model: Option<String>,
    params: ModelParamsPatch,
    user_msg: Option<&Message>,
    assistant: &Message,
) -> StoreResult<Conversation> {
    let conv_id = assistant.conversation_id;
    if let Some(nc) = new_conv {
        save_conv(tx, None, nc)?;
        outbox(
            tx,
            &[OutboxOp::Title {
                conversation_id: nc.id,
            }],
        )?;
    }
    let mut c = load_conv(tx, user_id, conv_id)?;
    if let Some(m) = model {
        c.model = Some(m);
    }
    c.params = params.apply(c.params);
    let mut msgs = tx.open_table(MESSAGES)?;
    for m in user_msg.iter().copied().chain(std::iter::once(assistant)) {
        if let Some(p) = m.parent_id
            && msgs.get((conv_id.as_u128(), p.as_u128()))?.is_none()
            && user_msg.is_none_or(|u| u.id != p)
        {
            return Err(StoreError::NotFound);
        }
        msgs.insert((conv_id.as_u128(), m.id.as_u128()), enc(m).as_slice())?;
    }
    tx.open_table(STREAMING)?
        .insert((conv_id.as_u128(), assistant.id.as_u128()), ())?;
    if let Some(u) = user_msg {
        outbox(
            tx,
            &[OutboxOp::Message {
                conversation_id: conv_id,
                message_id: u.id,
            }],
        )?;
    }
    let old = c.updated_at_ms;
    c.current_leaf = Some(assistant.id);
    c.updated_at_ms = crate::clock::now_ms().max(old + 1);
    save_conv(tx, Some(old), &c)?;
    Ok(c)
}

impl Db {
    pub fn create_conversation(&self, c: &Conversation) -> StoreResult<()> {
        let tx = self.write()?;
        save_conv(&tx, None, c)?;
        outbox(
            &tx,
            &[OutboxOp::Title {
                conversation_id: c.id,
            }],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn get_conversation(&self, user_id: Uuid, id: Uuid) -> StoreResult<Conversation> {
        let tx = self.read()?;
        let t = tx.open_table(CONVERSATIONS)?;
        let c: Conversation = match t.get(id.as_u128())? {
            Some(v) => dec(v.value())?,
            None => return Err(StoreError::NotFound),
        };
        if c.user_id != user_id {
            return Err(StoreError::NotFound);
        }
        Ok(c)
    }

    /// Newest first (by last update), starting after `cursor`.
    pub fn list_conversations(
        &self,
        user_id: Uuid,
        cursor: Option<ConversationCursor>,
        filter: ConversationFilter,
        limit: usize,
    ) -> StoreResult<Vec<Conversation>> {
        let tx = self.read()?;
        let idx = tx.open_table(CONVERSATIONS_BY_USER)?;
        let convs = tx.open_table(CONVERSATIONS)?;
        let u = user_id.as_u128();
        let end = match cursor {
            Some(c) => (u, c.updated_at_ms, c.id.as_u128()),
            None => (u, u64::MAX, u128::MAX),
        };
        let want_archived = filter.archived.unwrap_or(false);
        let mut out = Vec::new();
        for r in idx.range((u, 0, 0)..end)?.rev() {
            let (k, _) = r?;
            let (_, _, cid) = k.value();
            let Some(v) = convs.get(cid)? else { continue };
            let c: Conversation = dec(v.value())?;
            if c.archived != want_archived {
                continue;
            }
            if filter.pinned.is_some_and(|p| p != c.pinned) {
                continue;
            }
            out.push(c);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Deletes a conversation and all of its messages.
    pub fn delete_conversation(&self, user_id: Uuid, id: Uuid) -> StoreResult<usize> {
        let tx = self.write()?;
        let n = {
            let c = load_conv(&tx, user_id, id)?;
            tx.open_table(CONVERSATIONS_BY_USER)?.remove((
                c.user_id.as_u128(),
                c.updated_at_ms,
                c.id.as_u128(),
            ))?;
            tx.open_table(CONVERSATIONS)?.remove(id.as_u128())?;
            let k = id.as_u128();
            let mut msgs = tx.open_table(MESSAGES)?;
            let before = msgs.len()?;
            msgs.retain_in((k, 0)..=(k, u128::MAX), |_, _| false)?;
            let n = (before - msgs.len()?) as usize;
            tx.open_table(STREAMING)?
                .retain_in((k, 0)..=(k, u128::MAX), |_, _| false)?;
            outbox(
                &tx,
                &[OutboxOp::DeleteConversation {
                    conversation_id: id,
                }],
            )?;
            n
        };
        tx.commit()?;
        Ok(n)
    }

    /// Inserts complete messages as they are (import). Ownership checked.
    pub fn insert_messages(
        &self,
        user_id: Uuid,
        conv_id: Uuid,
        list: &[Message],
    ) -> StoreResult<()> {
        let tx = self.write()?;
        {
            load_conv(&tx, user_id, conv_id)?;
            let mut msgs = tx.open_table(MESSAGES)?;
            for m in list {
                msgs.insert((conv_id.as_u128(), m.id.as_u128()), enc(m).as_slice())?;
            }
            drop(msgs);
            let ops: Vec<OutboxOp> = list
                .iter()
                .map(|m| OutboxOp::Message {
                    conversation_id: conv_id,
                    message_id: m.id,
                })
                .collect();
            outbox(&tx, &ops)?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn get_message(&self, user_id: Uuid, conv_id: Uuid, id: Uuid) -> StoreResult<Message> {
        self.get_conversation(user_id, conv_id)?;
        let tx = self.read()?;
        let t = tx.open_table(MESSAGES)?;
        match t.get((conv_id.as_u128(), id.as_u128()))? {
            Some(v) => dec(v.value()),
            None => Err(StoreError::NotFound),
        }
    }

    /// Every message of a conversation, oldest first (ids are time-ordered).
    pub fn list_messages(&self, user_id: Uuid, conv_id: Uuid) -> StoreResult<Vec<Message>> {
        self.get_conversation(user_id, conv_id)?;
        let tx = self.read()?;
        messages_in(&tx.open_table(MESSAGES)?, conv_id)
    }

    /// Saves the text streamed so far for many messages in one transaction
    /// (one fsync however many answers are running). A message that was
    /// already finished is left alone.
    pub fn flush_partials(&self, parts: &[(Uuid, Uuid, String)]) -> StoreResult<()> {
        if parts.is_empty() {
            return Ok(());
        }
        let tx = self.write()?;
        {
            let mut msgs = tx.open_table(MESSAGES)?;
            for (conv, id, content) in parts {
                let key = (conv.as_u128(), id.as_u128());
                let m: Option<Message> = msgs.get(key)?.map(|v| dec(v.value())).transpose()?;
                if let Some(mut m) = m
                    && m.status == MessageStatus::Streaming
                {
                    m.content.clone_from(content);
                    msgs.insert(key, enc(&m).as_slice())?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Marks every message left `streaming` by a crash as `interrupted`,
    /// keeping the text that was flushed. Returns how many.
    pub fn recover_streaming(&self) -> StoreResult<usize> {
        let tx = self.write()?;
        let n = {
            let mut streaming = tx.open_table(STREAMING)?;
            let keys: Vec<(u128, u128)> = streaming
                .iter()?
                .map(|r| r.map(|(k, _)| k.value()))
                .collect::<Result<_, _>>()?;
            let mut msgs = tx.open_table(MESSAGES)?;
            for k in &keys {
                let m: Option<Message> = msgs.get(*k)?.map(|v| dec(v.value())).transpose()?;
                if let Some(mut m) = m
                    && m.status == MessageStatus::Streaming
                {
                    m.status = MessageStatus::Interrupted;
                    m.finish_reason = Some("server_restart".into());
                    msgs.insert(*k, enc(&m).as_slice())?;
                }
                streaming.remove(*k)?;
            }
            drop(streaming);
            drop(msgs);
            let ops: Vec<OutboxOp> = keys
                .iter()
                .map(|(c, m)| OutboxOp::Message {
                    conversation_id: Uuid::from_u128(*c),
                    message_id: Uuid::from_u128(*m),
                })
                .collect();
            outbox(&tx, &ops)?;
            keys.len()
        };
        tx.commit()?;
        Ok(n)
    }

    /// Ids of every conversation of a user (archived too), newest first:
    /// what a full export walks, one conversation at a time. Reads only the
    /// index, so it stays small however long the conversations are.
    pub fn conversation_ids(&self, user_id: Uuid) -> StoreResult<Vec<Uuid>> {
        let tx = self.read()?;
        let idx = tx.open_table(CONVERSATIONS_BY_USER)?;
        let u = user_id.as_u128();
        let mut out = Vec::new();
        for r in idx.range((u, 0, 0)..=(u, u64::MAX, u128::MAX))?.rev() {
            let (k, _) = r?;
            out.push(Uuid::from_u128(k.value().2));
        }
        Ok(out)
    }

    /// A conversation and all of its messages (oldest first) from one
    /// snapshot, so `current_leaf` always names a message of the list.
    pub fn conversation_with_messages(
        &self,
        user_id: Uuid,
        id: Uuid,
    ) -> StoreResult<(Conversation, Vec<Message>)> {
        let tx = self.read()?;
        let c: Conversation = match tx.open_table(CONVERSATIONS)?.get(id.as_u128())? {
            Some(v) => dec(v.value())?,
            None => return Err(StoreError::NotFound),
        };
        if c.user_id != user_id {
            return Err(StoreError::NotFound);
        }
        let msgs = messages_in(&tx.open_table(MESSAGES)?, id)?;
        Ok((c, msgs))
    }

    /// Import: creates new conversations with all of their messages in one
    /// write transaction, so a failure leaves nothing half-written. The
    /// records must be new (fresh ids) and already validated.
    pub fn import_conversations(&self, list: &[(Conversation, Vec<Message>)]) -> StoreResult<()> {
        let tx = self.write()?;
        {
            let mut msgs = tx.open_table(MESSAGES)?;
            let mut ops = Vec::new();
            for (c, ms) in list {
                save_conv(&tx, None, c)?;
                ops.push(OutboxOp::Title {
                    conversation_id: c.id,
                });
                for m in ms {
                    msgs.insert((c.id.as_u128(), m.id.as_u128()), enc(m).as_slice())?;
                    ops.push(OutboxOp::Message {
                        conversation_id: c.id,
                        message_id: m.id,
                    });
                }
            }
            drop(msgs);
            outbox(&tx, &ops)?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn import_sourced(
        &self,
        user_id: Uuid,
        list: &[(Option<String>, Conversation, Vec<Message>)],
    ) -> StoreResult<Vec<Sourced>> {
        let tx = self.write()?;
        let mut out = Vec::with_capacity(list.len());
        {
            let mut ops = Vec::new();
            for (source, c, ms) in list {
                if c.user_id != user_id {
                    return Err(StoreError::NotFound);
                }
                let u = user_id.as_u128();
                let prior = match source {
                    Some(source) => tx
                        .open_table(IMPORT_SOURCES)?
                        .get((u, source.as_str()))?
                        .map(|v| v.value()),
                    None => None,
                };
                if let Some(prior) = prior {
                    let exists = tx.open_table(CONVERSATIONS)?.get(prior)?.is_some();
                    if exists {
                        out.push(Sourced::Existing(Uuid::from_u128(prior)));
                        continue;
                    }
                }
                save_conv(&tx, None, c)?;
                ops.push(OutboxOp::Title {
                    conversation_id: c.id,
                });
                let mut msgs = tx.open_table(MESSAGES)?;
                for m in ms {
                    msgs.insert((c.id.as_u128(), m.id.as_u128()), enc(m).as_slice())?;
                    ops.push(OutboxOp::Message {
                        conversation_id: c.id,
                        message_id: m.id,
                    });
                }
                drop(msgs);
                if let Some(source) = source {
                    tx.open_table(IMPORT_SOURCES)?
                        .insert((u, source.as_str()), c.id.as_u128())?;
                }
                out.push(Sourced::Imported);
            }
            outbox(&tx, &ops)?;
        }
        tx.commit()?;
        Ok(out)
    }
}

fn messages_in<T: ReadableTable<(u128, u128), &'static [u8]>>(
    t: &T,
    conv_id: Uuid,
) -> StoreResult<Vec<Message>> {
    let k = conv_id.as_u128();
    let mut out = Vec::new();
    for r in t.range((k, 0)..=(k, u128::MAX))? {
        let (_, v) = r?;
        out.push(dec(v.value())?);
    }
    Ok(out)
}
