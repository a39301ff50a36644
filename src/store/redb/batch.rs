//! Small writes of many callers in one transaction. Every answer starts
//! with its turn (the new conversation, the question, the answer being
//! streamed) and ends with its final message and a usage charge; a new
//! conversation's title is a patch; every `/v1` call writes a usage charge
//! and an audit entry. Each in a write transaction of its own, those
//! commits were half of the server's CPU at 750 new answers a second
//! (benches/chat.rs under perf: redb's per-transaction work and the pages
//! each one copies). Queued here, they are applied by one blocking task,
//! as many as are waiting in one transaction, so under load a commit
//! carries dozens of them; a lone write still commits at once. Each caller
//! still hears back only once its write is durable (the transaction's
//! commit waits for the group fsync), with its own result.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use uuid::Uuid;

use super::Db;
use crate::store::ConversationPatch;
use crate::store::chat::{Conversation, Message, ModelParamsPatch};
use crate::store::usage::Charge;
use crate::store::{AuditEntry, StoreError, StoreResult};

/// A write that joins others in one transaction.
pub(crate) enum Small {
    Charge {
        user_id: Uuid,
        day: u32,
        charge: Charge,
    },
    Audit(AuditEntry),
    /// An answer's final message (see `chat::finish_message_in`).
    Finish(Box<crate::store::chat::Message>),
    /// A turn's start (see `chat::start_turn_in`).
    StartTurn(Box<Turn>),
    /// A conversation's patch (see `chat::update_conversation_in`).
    Patch {
        user_id: Uuid,
        id: Uuid,
        patch: Box<ConversationPatch>,
    },
}

/// What `ChatStore::start_turn` stores.
pub(crate) struct Turn {
    pub user_id: Uuid,
    pub new_conv: Option<Conversation>,
    pub model: Option<String>,
    pub params: ModelParamsPatch,
    pub user_msg: Option<Message>,
    pub assistant: Message,
}

/// A write's own result.
pub(crate) enum Done {
    Unit,
    Conversation(Box<Conversation>),
}

impl Done {
    fn conversation(self) -> StoreResult<Conversation> {
        match self {
            Done::Conversation(c) => Ok(*c),
            Done::Unit => Err(StoreError::Backend(
                "the store's write task answered the wrong kind".into(),
            )),
        }
    }
}

type Waiting = (Small, oneshot::Sender<StoreResult<Done>>);

#[derive(Default)]
pub(crate) struct Batcher {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    queue: Vec<Waiting>,
    /// A blocking task is draining the queue.
    draining: bool,
}

/// Longest run of writes in one transaction: a bound on how long a writer
/// holds redb's single write lock.
const MAX_BATCH: usize = 256;

/// How long after taking a batch of several writes the next one is taken
/// (unless a full batch waits). A batch costs one transaction and one
/// durable commit, about as much as a few of its writes; at 1,000 new
/// answers a second, batches taken back to back carried about two writes
/// each, and about six with this (benches/chat.rs). A lone write, or a
/// caller writing one thing after another, never waits for it.
const LINGER: std::time::Duration = std::time::Duration::from_millis(1);

impl Batcher {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `op` and returns once it is durable (or failed).
    pub(crate) async fn submit(self: &Arc<Self>, db: &Db, op: Small) -> StoreResult<()> {
        self.submit_for(db, op).await.map(|_| ())
    }

    /// Queues `op` (a turn or a patch) and returns the conversation it
    /// left, once durable.
    pub(crate) async fn submit_conversation(
        self: &Arc<Self>,
        db: &Db,
        op: Small,
    ) -> StoreResult<Conversation> {
        self.submit_for(db, op).await?.conversation()
    }

    async fn submit_for(self: &Arc<Self>, db: &Db, op: Small) -> StoreResult<Done> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut st = self.lock();
            st.queue.push((op, tx));
            !std::mem::replace(&mut st.draining, true)
        };
        if start {
            let (me, db) = (self.clone(), db.clone());
            tokio::task::spawn_blocking(move || me.drain(&db));
        }
        rx.await
            .unwrap_or_else(|_| Err(StoreError::Backend("the store's write task failed".into())))
    }

    fn drain(&self, db: &Db) {
        // Whatever happens below (a panic included), the next submit starts
        // a new drain, and no caller is left waiting on a dropped batch.
        let _reset = Reset(self);
        // When the last batch was not alone, more writes are coming: wait
        // for them a little, so the next batch carries more of them.
        let mut linger_until: Option<std::time::Instant> = None;
        loop {
            if let Some(until) = linger_until.take() {
                let left = until.saturating_duration_since(std::time::Instant::now());
                if !left.is_zero() && self.lock().queue.len() < MAX_BATCH {
                    std::thread::sleep(left);
                }
            }
            let batch: Vec<Waiting> = {
                let mut st = self.lock();
                if st.queue.is_empty() {
                    st.draining = false;
                    return;
                }
                let n = st.queue.len().min(MAX_BATCH);
                st.queue.drain(..n).collect()
            };
            if batch.len() > 1 {
                linger_until = Some(std::time::Instant::now() + LINGER);
            }
            let ops: Vec<&Small> = batch.iter().map(|(op, _)| op).collect();
            match db.apply_small(&ops) {
                Ok(results) => {
                    for ((_, done), r) in batch.into_iter().zip(results) {
                        let _ = done.send(Ok(r));
                    }
                }
                // One bad write (a turn whose conversation was deleted, say)
                // must not fail the others: the batch's transaction was
                // dropped whole, and each is applied again alone.
                Err(_) if batch.len() > 1 => {
                    for (op, done) in batch {
                        let r = db
                            .apply_small(&[&op])
                            .map(|mut r| r.pop().unwrap_or(Done::Unit));
                        let _ = done.send(r);
                    }
                }
                Err(e) => {
                    if let Some((_, done)) = batch.into_iter().next() {
                        let _ = done.send(Err(e));
                    }
                }
            }
        }
    }
}

struct Reset<'a>(&'a Batcher);

impl Drop for Reset<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut st = self.0.lock();
            st.draining = false;
            // Their senders drop here: those callers get an error.
            st.queue.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::store::chat::{Conversation, Message, MessageRole, MessageStatus};
    use crate::store::redb::RedbStore;
    use crate::store::usage::Charge;
    use crate::store::{AuditEntry, AuditStore, ChatStore, ConversationPatch, UsageStore};
    use uuid::Uuid;

    /// An answer being streamed in `conv`.
    fn answer(conv: Uuid) -> Message {
        Message {
            id: Uuid::now_v7(),
            conversation_id: conv,
            parent_id: None,
            role: MessageRole::Assistant,
            content: String::new(),
            model: Some("m".into()),
            provider: Some("oa".into()),
            status: MessageStatus::Streaming,
            usage: None,
            created_at: 0,
            duration_ms: None,
            finish_reason: None,
            error: None,
            sources: Vec::new(),
            attachments: Vec::new(),
        }
    }

    /// A new conversation of `user` (built here: the store does not use
    /// the chat service).
    fn conversation(user: Uuid) -> Conversation {
        Conversation {
            id: Uuid::now_v7(),
            user_id: user,
            title_auto: true,
            title: "New chat".into(),
            model: None,
            provider: None,
            system_prompt: None,
            created_at: 0,
            updated_at_ms: 0,
            pinned: false,
            archived: false,
            current_leaf: None,
            preset_id: None,
            params: Default::default(),
            collections: Vec::new(),
        }
    }

    /// Hundreds of concurrent charges and audit entries: every caller hears
    /// back, every write is there, and they shared transactions.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_small_writes_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(RedbStore::open(dir.path()).unwrap());
        let user = Uuid::now_v7();
        let key = Uuid::now_v7();
        let mut tasks = Vec::new();
        for i in 0..300u64 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                let c = Charge {
                    provider: "oa".into(),
                    model: "m".into(),
                    messages: 1,
                    input_tokens: i,
                    output_tokens: 1,
                    api_key: (i % 2 == 0).then_some(key),
                    ..Default::default()
                };
                s.charge_usage(user, 20260101, &c).await.unwrap();
                let e = AuditEntry {
                    id: Uuid::now_v7(),
                    at: 0,
                    actor: Some(user),
                    actor_name: None,
                    action: "v1.chat".into(),
                    target: Some(format!("call {i}")),
                    ip: None,
                    user_agent: None,
                    outcome: "ok".into(),
                };
                s.append_audit(&e).await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let day = store.usage_user_day(user, 20260101).await.unwrap();
        assert_eq!(day.messages, 300);
        assert_eq!(day.input_tokens, (0..300).sum::<u64>());
        let by_key = store
            .usage_by_key(Some(user), 20260101, 20260101)
            .await
            .unwrap();
        assert_eq!(by_key.iter().map(|r| r.counts.messages).sum::<u64>(), 150);
        assert_eq!(store.list_audit(None, 1000).await.unwrap().len(), 300);
        let commits = store.db().group.lock().committed;
        assert!(
            commits < 600,
            "{commits} commits for 600 writes: none were batched"
        );
    }

    /// Answers' final messages share transactions with charges; the one
    /// whose conversation was deleted meanwhile writes nothing and fails
    /// no one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn finished_messages_land_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(RedbStore::open(dir.path()).unwrap());
        let user = Uuid::now_v7();
        let mut answers = Vec::new();
        for _ in 0..40 {
            let conv = conversation(user);
            let a = answer(conv.id);
            store
                .start_turn(user, Some(&conv), None, Default::default(), None, &a)
                .await
                .unwrap();
            answers.push(a);
        }
        let gone = answers[0].conversation_id;
        store.delete_conversation(user, gone).await.unwrap();
        let mut tasks = Vec::new();
        for (i, mut a) in answers.clone().into_iter().enumerate() {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                a.content = format!("answer {i}");
                a.status = MessageStatus::Complete;
                s.finish_message(&a).await.unwrap();
                let c = Charge {
                    provider: "oa".into(),
                    model: "m".into(),
                    messages: 1,
                    ..Default::default()
                };
                s.charge_usage(user, 20260101, &c).await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        for (i, a) in answers.iter().enumerate().skip(1) {
            let m = store
                .get_message(user, a.conversation_id, a.id)
                .await
                .unwrap();
            assert_eq!(m.content, format!("answer {i}"));
            assert_eq!(m.status, MessageStatus::Complete);
        }
        assert!(store.get_conversation(user, gone).await.is_err());
        let day = store.usage_user_day(user, 20260101).await.unwrap();
        assert_eq!(day.messages, 40);
    }

    /// Concurrent turns and title patches share transactions, each caller
    /// gets its own conversation back, and a turn into a conversation that
    /// is not there fails alone: the turns batched with it all land.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn turns_and_patches_land_in_batches_and_fail_alone() {
        use crate::store::TitleChange;
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(RedbStore::open(dir.path()).unwrap());
        let user = Uuid::now_v7();
        let before = store.db().group.lock().committed;
        let mut tasks = Vec::new();
        for i in 0..120usize {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                let missing = i % 10 == 7;
                let conv = conversation(user);
                let a = answer(conv.id);
                let new_conv = (!missing).then_some(&conv);
                let r = s
                    .start_turn(
                        user,
                        new_conv,
                        Some(format!("m{i}")),
                        Default::default(),
                        None,
                        &a,
                    )
                    .await;
                if missing {
                    assert!(r.is_err(), "turn {i} into no conversation was stored");
                    return None;
                }
                let c = r.unwrap();
                assert_eq!((c.id, c.current_leaf), (conv.id, Some(a.id)));
                assert_eq!(c.model.as_deref(), Some(format!("m{i}").as_str()));
                let patch = ConversationPatch {
                    title: Some(TitleChange::Auto {
                        title: format!("title {i}"),
                        last: true,
                        default: "New chat".into(),
                    }),
                    ..Default::default()
                };
                let c = s.update_conversation(user, conv.id, patch).await.unwrap();
                assert_eq!(c.title, format!("title {i}"));
                Some((conv.id, a.id, i))
            }));
        }
        let mut stored = Vec::new();
        for t in tasks {
            stored.extend(t.await.unwrap());
        }
        assert_eq!(stored.len(), 108);
        for (conv, answer, i) in stored {
            let c = store.get_conversation(user, conv).await.unwrap();
            assert_eq!(c.title, format!("title {i}"));
            assert_eq!(c.current_leaf, Some(answer));
            store.get_message(user, conv, answer).await.unwrap();
        }
        let commits = store.db().group.lock().committed - before;
        assert!(
            commits < 228,
            "{commits} commits for 228 writes: none were batched"
        );
    }
}
