//! Generations: answers that run in their own task, independent of the
//! connection that asked for them.
//!
//! Each generation keeps its event log in memory (numbered from 1, so
//! `Last-Event-ID: n` resumes at n+1) and wakes followers through a watch
//! channel. Text is persisted by one flusher for all running answers, in a
//! single transaction every [`FLUSH_EVERY`], so a crash loses at most that
//! much and many concurrent answers cost one fsync per tick, not one each.
//! The log holds typed [`GenEvent`]s; the front ends encode them.
//!
//! With several instances on one database the manager also publishes each
//! answer's new events and text every [`super::shared::PUBLISH_EVERY`], so
//! another instance can follow, read and stop it (see [`super::shared`]).

use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::events::{ErrorEvent, GenEvent, Logged, Meta, Title, UsageEvent};
use super::temporary::TempChats;
use crate::providers::registry::Registry;
use crate::providers::{ChatEvent, ChatRequest, ProviderError};
use crate::store::SharedStore;
use crate::store::chat::{Message, MessageError, MessageStatus, Usage};

pub const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// Finished generations stay replayable this long for late reconnects.
pub const KEEP_FINISHED: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Complete,
    Stopped,
    Failed,
}

/// One event of the log. A delta is kept as the range of `content` it
/// added, so an answer's text is held once however many events carry it
/// (16 bytes a delta instead of an allocation each); followers get it as a
/// [`GenEvent::Delta`] when they read it.
enum Slot {
    Delta { start: u32, end: u32 },
    Event(Arc<Logged>),
}

struct GenState {
    events: Vec<Slot>,
    content: String,
    /// Id of the last `delta` event folded into `content` (0: none yet).
    text_event: u64,
    /// Text changed since the last flush.
    dirty: bool,
    finished: Option<(Outcome, Instant)>,
    /// Events published for other instances (a prefix of `events`).
    published: usize,
}

impl GenState {
    /// Adds the next event to the log; returns its id.
    fn append(&mut self, event: GenEvent) -> u64 {
        let id = self.events.len() as u64 + 1;
        self.events
            .push(Slot::Event(Arc::new(Logged { id, event })));
        id
    }

    /// Adds `text` to the answer and its delta to the log; returns its id.
    fn append_delta(&mut self, text: &str) -> u64 {
        let start = self.content.len();
        self.content.push_str(text);
        match (u32::try_from(start), u32::try_from(self.content.len())) {
            (Ok(start), Ok(end)) => {
                self.events.push(Slot::Delta { start, end });
                self.events.len() as u64
            }
            // Past 4 GiB of text: keep the piece as it is.
            _ => self.append(GenEvent::Delta {
                text: text.to_string(),
            }),
        }
    }

    /// The event at `index` (its id is `index + 1`).
    fn get(&self, index: usize) -> Option<Arc<Logged>> {
        Some(match self.events.get(index)? {
            Slot::Event(e) => e.clone(),
            Slot::Delta { start, end } => Arc::new(Logged {
                id: index as u64 + 1,
                event: GenEvent::Delta {
                    text: self
                        .content
                        .get(*start as usize..*end as usize)
                        .unwrap_or_default()
                        .to_string(),
                },
            }),
        })
    }
}

pub struct Generation {
    pub id: Uuid,
    pub user_id: Uuid,
    pub conversation_id: Uuid,
    pub message_id: Uuid,
    /// The answer of a temporary chat: its text never reaches the store.
    pub temporary: bool,
    state: Mutex<GenState>,
    notify: watch::Sender<u64>,
    cancel: CancellationToken,
}

impl Generation {
    fn lock(&self) -> std::sync::MutexGuard<'_, GenState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, event: GenEvent) {
        let id = self.lock().append(event);
        self.notify.send_replace(id);
    }

    /// Appends streamed text and its `delta` event in one step, so a
    /// [`snapshot`](Self::snapshot) never sees one without the other.
    fn push_delta(&self, text: &str) {
        let mut st = self.lock();
        st.dirty = true;
        let id = st.append_delta(text);
        st.text_event = id;
        drop(st);
        self.notify.send_replace(id);
    }

    /// The text streamed so far and the id of the last event it includes:
    /// a reader that shows this text and follows from that id sees every
    /// later event exactly once.
    pub fn snapshot(&self) -> (String, u64) {
        let st = self.lock();
        (st.content.clone(), st.text_event)
    }

    pub fn is_finished(&self) -> bool {
        self.lock().finished.is_some()
    }

    pub fn outcome(&self) -> Option<Outcome> {
        self.lock().finished.map(|f| f.0)
    }

    /// Asks the generation to stop; the partial answer is kept.
    pub fn stop(&self) {
        self.cancel.cancel();
    }

    /// Events with id > `after`, then live ones until the generation ends.
    pub fn events(
        self: &Arc<Self>,
        after: u64,
    ) -> impl Stream<Item = Arc<Logged>> + Send + 'static {
        let rx = self.notify.subscribe();
        futures::stream::unfold((self.clone(), after, rx), |(g, next, mut rx)| async move {
            loop {
                {
                    let st = g.lock();
                    if let Some(e) = st.get(next as usize) {
                        drop(st);
                        return Some((e, (g, next + 1, rx)));
                    }
                    if st.finished.is_some() {
                        return None;
                    }
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        })
    }

    /// Waits until the generation has ended.
    pub async fn wait(self: &Arc<Self>) -> Outcome {
        let mut s = Box::pin(self.events(self.lock().events.len() as u64));
        while s.next().await.is_some() {}
        self.outcome().unwrap_or(Outcome::Failed)
    }
}

/// Everything needed to run one answer.
pub struct Job {
    pub user_id: Uuid,
    /// The provider announced in `meta`: the first candidate. When another
    /// one answers (failover), a second `meta` names it.
    pub provider_name: String,
    /// Routes the request's model (see [`Registry::open_stream`]).
    pub providers: Arc<Registry>,
    /// The assistant message as inserted (status streaming, empty).
    pub message: Message,
    /// The `meta` event; the manager fills in `generation_id`.
    pub meta: Meta,
    pub request_id: String,
    /// Names the conversation once the answer is stored; its `title`
    /// event goes out before `usage` (see [`await_title`]).
    pub titler: Option<Titler>,
    /// Set for a temporary chat: the answer is kept there, never stored.
    pub temporary: Option<Arc<TempChats>>,
    /// Called with the answering provider's name at the first delta.
    pub on_first_token: Option<FirstToken>,
}

/// Told the name of the provider that answered, at the answer's first text.
pub type FirstToken = Box<dyn FnOnce(&str) + Send>;

/// Makes (and stores) a title for the finished answer; `Some` when the
/// conversation was named.
pub type Titler = Box<dyn FnOnce(Message, Outcome) -> BoxFuture<'static, Option<Title>> + Send>;

/// Called once an answer has been stored in its final state.
pub type OnFinish = Box<dyn FnOnce(Message, Outcome) + Send>;

pub struct Manager {
    /// The temporary chats the answers of this manager may belong to.
    pub temporary: Arc<TempChats>,
    gens: Mutex<HashMap<Uuid, Arc<Generation>>>,
    by_message: Mutex<HashMap<Uuid, Uuid>>,
    flusher_started: std::sync::atomic::AtomicBool,
    /// Other instances on the same database, to publish answers to.
    pub shared: Option<Arc<super::shared::SharedGens>>,
    /// One publication at a time (the periodic one and a new answer's).
    publishing: tokio::sync::Mutex<()>,
}

impl Manager {
    pub fn new() -> Arc<Manager> {
        Self::with_shared(None)
    }

    /// A manager whose answers other instances can follow and stop.
    pub fn with_shared(shared: Option<Arc<super::shared::SharedGens>>) -> Arc<Manager> {
        Arc::new(Manager {
            temporary: Arc::new(TempChats::default()),
            gens: Mutex::new(HashMap::new()),
            by_message: Mutex::new(HashMap::new()),
            flusher_started: std::sync::atomic::AtomicBool::new(false),
            shared,
            publishing: tokio::sync::Mutex::new(()),
        })
    }

    fn gens(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<Generation>>> {
        self.gens.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A generation of `user_id`; another user's id is None (a 404).
    pub fn get(&self, user_id: Uuid, id: Uuid) -> Option<Arc<Generation>> {
        self.gens()
            .get(&id)
            .filter(|g| g.user_id == user_id)
            .cloned()
    }

    /// The running generation writing `message_id`, if any.
    pub fn for_message(&self, message_id: Uuid) -> Option<Arc<Generation>> {
        let id = *self
            .by_message
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&message_id)?;
        self.gens().get(&id).filter(|g| !g.is_finished()).cloned()
    }

    /// How many answers are streaming right now.
    pub fn running(&self) -> usize {
        self.gens().values().filter(|g| !g.is_finished()).count()
    }

    /// Stops every running generation of a conversation (before deleting it).
    pub fn stop_conversation(&self, conversation_id: Uuid) {
        for g in self.gens().values() {
            if g.conversation_id == conversation_id {
                g.stop();
            }
        }
    }

    /// Lets running generations finish for up to `grace`, then stops the
    /// rest and waits (bounded) until each has stored its partial answer.
    pub async fn shutdown(&self, grace: Duration) {
        let running: Vec<Arc<Generation>> = self
            .gens()
            .values()
            .filter(|g| !g.is_finished())
            .cloned()
            .collect();
        if running.is_empty() {
            return;
        }
        let all = || futures::future::join_all(running.iter().map(|g| g.wait()));
        if tokio::time::timeout(grace, all()).await.is_ok() {
            return;
        }
        for g in &running {
            g.stop();
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), all()).await;
    }

    fn ensure_flusher(self: &Arc<Self>, store: &SharedStore) {
        if self
            .flusher_started
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        // Holds only weak references, so it ends with the server and never
        // keeps the database open.
        let weak: Weak<Manager> = Arc::downgrade(self);
        let store_weak = Arc::downgrade(store);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let (Some(mgr), Some(store)) = (weak.upgrade(), store_weak.upgrade()) else {
                    return;
                };
                mgr.flush(&store).await;
                mgr.evict_old();
            }
        });
    }

    async fn flush(&self, store: &SharedStore) {
        let parts: Vec<(Uuid, Uuid, String)> = self
            .gens()
            .values()
            .filter_map(|g| {
                let mut st = g.lock();
                if st.dirty && st.finished.is_none() && !g.temporary {
                    st.dirty = false;
                    Some((g.conversation_id, g.message_id, st.content.clone()))
                } else {
                    None
                }
            })
            .collect();
        if parts.is_empty() {
            return;
        }
        if let Err(e) = store.flush_partials(&parts).await {
            tracing::error!(error = %e, "failed to persist streamed text");
        }
    }

    fn evict_old(&self) {
        let now = Instant::now();
        let mut gone = Vec::new();
        self.gens().retain(|_, g| {
            let st = g.lock();
            let unpublished =
                self.shared.is_some() && !g.temporary && st.published < st.events.len();
            let keep = unpublished
                || st
                    .finished
                    .is_none_or(|(_, at)| now.duration_since(at) < KEEP_FINISHED);
            drop(st);
            if !keep {
                gone.push(g.message_id);
            }
            keep
        });
        if !gone.is_empty() {
            let mut bm = self.by_message.lock().unwrap_or_else(|e| e.into_inner());
            for m in gone {
                bm.remove(&m);
            }
        }
    }

    /// Registers and starts a generation. The `meta` event is recorded
    /// before this returns, so every follower sees it first.
    pub fn start(
        self: &Arc<Self>,
        store: &SharedStore,
        open: Opening,
        mut job: Job,
        on_finish: OnFinish,
    ) -> Arc<Generation> {
        self.ensure_flusher(store);
        let id = Uuid::now_v7();
        let (tx, _) = watch::channel(0);
        let g = Arc::new(Generation {
            id,
            user_id: job.user_id,
            conversation_id: job.message.conversation_id,
            message_id: job.message.id,
            temporary: job.temporary.is_some(),
            state: Mutex::new(GenState {
                events: Vec::new(),
                content: String::new(),
                text_event: 0,
                dirty: false,
                finished: None,
                published: 0,
            }),
            notify: tx,
            cancel: CancellationToken::new(),
        });
        job.meta.generation_id = id;
        g.push(GenEvent::Meta(job.meta.clone()));
        self.gens().insert(id, g.clone());
        self.by_message
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job.message.id, id);
        let store = store.clone();
        tokio::spawn(run(g.clone(), store, job, open, on_finish));
        g
    }

    /// Local generations whose events are not all published yet.
    fn unpublished(&self) -> Vec<Arc<Generation>> {
        self.gens()
            .values()
            .filter(|g| {
                !g.temporary && {
                    let st = g.lock();
                    st.published < st.events.len()
                }
            })
            .cloned()
            .collect()
    }

    /// Publishes what changed in `gens` (all unpublished ones when None)
    /// for the other instances: new events, the text and whether it ended.
    /// Does nothing without other instances.
    pub async fn publish(&self, gens: Option<Vec<Arc<Generation>>>) {
        let Some(shared) = &self.shared else { return };
        let _one = self.publishing.lock().await;
        let gens = gens.unwrap_or_else(|| self.unpublished());
        let mut updates = Vec::new();
        let mut marks = Vec::new();
        for g in gens.iter().filter(|g| !g.temporary) {
            let st = g.lock();
            if st.published >= st.events.len() {
                continue;
            }
            let events = (st.published..st.events.len())
                .filter_map(|i| st.get(i))
                .map(|l| {
                    let (name, data) = l.event.to_parts();
                    crate::store::cluster::StoredEvent {
                        seq: l.id,
                        name: name.into(),
                        data,
                    }
                })
                .collect();
            updates.push(crate::store::cluster::GenUpdate {
                record: crate::store::cluster::GenRecord {
                    id: g.id,
                    user_id: g.user_id,
                    conversation_id: g.conversation_id,
                    message_id: g.message_id,
                    instance: shared.instance(),
                },
                events,
                text: st.content.clone(),
                text_event: st.text_event,
                finished: st.finished.is_some(),
            });
            marks.push((g.clone(), st.events.len()));
        }
        if updates.is_empty() {
            return;
        }
        match shared.store().gen_publish(&updates).await {
            Ok(()) => {
                for (g, n) in marks {
                    let mut st = g.lock();
                    st.published = st.published.max(n);
                }
            }
            Err(e) => shared.publish_failed(&e),
        }
    }

    /// Stops the local generations with these ids (asked from another
    /// instance).
    pub fn stop_ids(&self, ids: &[Uuid]) {
        let gens = self.gens();
        for id in ids {
            if let Some(g) = gens.get(id) {
                g.stop();
            }
        }
    }

    /// Ids of the local generations still running (not temporary).
    pub fn running_ids(&self) -> Vec<Uuid> {
        self.gens()
            .values()
            .filter(|g| !g.temporary && !g.is_finished())
            .map(|g| g.id)
            .collect()
    }

    /// Stops every local answer still running (this instance was declared
    /// dead and its answers ended by another one).
    pub fn stop_all(&self) {
        for g in self.gens().values() {
            if !g.temporary {
                g.stop();
            }
        }
    }
}

/// Why a stream ended.
enum End {
    Done(String),
    Failed(ProviderError),
    Stopped,
}

/// How long `done` may wait for the title. A title request is short (a
/// few tokens), but a slow or busy model must not hold the answer open:
/// past this, `done` goes out and the title, still made and stored, shows
/// the next time the conversation list is read.
pub const TITLE_WAIT: Duration = Duration::from_secs(3);

/// Waits for the title of a finished answer, so its event reaches the
/// followers still reading. Stopping the generation meanwhile, or
/// [`TITLE_WAIT`] passing, stops the wait, not the title: it runs on and is
/// stored.
async fn await_title(g: &Generation, task: BoxFuture<'static, Option<Title>>) -> Option<Title> {
    let handle = tokio::spawn(task);
    let stopped_before = g.cancel.is_cancelled();
    tokio::select! {
        r = handle => r.ok().flatten(),
        _ = g.cancel.cancelled(), if !stopped_before => None,
        _ = tokio::time::sleep(TITLE_WAIT) => None,
    }
}

/// Stores the answer's final state. On a database several instances share
/// a failure is retried for about 20 s (a failover to a replica takes
/// seconds), so the answer does not stay `streaming` until the reaper ends
/// it; one process's own file is written once, as always.
async fn store_final(store: &SharedStore, g: &Generation, m: &Message) {
    let mut wait = Duration::from_millis(250);
    let mut tries = 0;
    loop {
        match store.finish_message(m).await {
            Ok(()) => return,
            Err(e) if tries < 8 && store.cluster().is_some() => {
                if tries == 0 {
                    tracing::warn!(generation_id = %g.id, error = %e, "cannot store the finished answer yet; trying again");
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
                tries += 1;
            }
            Err(e) => {
                tracing::error!(generation_id = %g.id, error = %e, "failed to store the finished answer");
                return;
            }
        }
    }
}

/// Opens the answer's stream: routing and the provider's request, up to
/// the first event of the answer. Built by [`opening`]; it may already be
/// under way (or done) when [`Manager::start`] gets it.
pub struct Opening {
    open: BoxFuture<'static, Result<crate::providers::Routed, ProviderError>>,
    /// Tokens the request's messages are estimated at, for an answer whose
    /// provider sends no usage.
    input_estimate: u64,
}

/// The future that opens `request`'s stream. The request goes to the
/// provider as it is, moved into this boxed future: the task that runs the
/// answer never holds it, so an open stream holds one copy of the context,
/// and only while it opens.
pub fn opening(providers: Arc<Registry>, request: ChatRequest) -> Opening {
    let input_estimate = request
        .messages
        .iter()
        .map(|m| super::estimate_tokens(&m.content) + 4)
        .sum::<u64>()
        + request
            .system
            .as_deref()
            .map(super::estimate_tokens)
            .unwrap_or(0);
    Opening {
        open: Box::pin(async move {
            let model = request.model.clone();
            providers.open_stream(&model, request).await
        }),
        input_estimate,
    }
}

impl Opening {
    /// Runs `work` while the stream opens, and gives back its result with
    /// what is left of the opening (the outcome itself when the first
    /// event came first). Storing a turn takes a durable commit; the
    /// provider needs longer for its first token, so the commit no longer
    /// adds to the time to the first token (measured in benches/chat.rs).
    /// Dropping the returned opening cancels the provider's request.
    pub async fn alongside<T>(mut self, work: impl Future<Output = T>) -> (T, Opening) {
        let mut work = std::pin::pin!(work);
        let mut opened = None;
        let out = loop {
            tokio::select! {
                biased;
                out = &mut work => break out,
                r = &mut self.open, if opened.is_none() => opened = Some(r),
            }
        };
        if let Some(r) = opened {
            self.open = Box::pin(std::future::ready(r));
        }
        (out, self)
    }
}

/// Runs one answer. The task's future is as large as its largest state, and
/// it is held for as long as the answer streams: opening the stream
/// (`open`, built by [`Manager::start`]) and finishing ([`finish`]:
/// storing, the title) are boxed, so their states take memory only while
/// they run (measured in benches/chat.rs).
async fn run(
    g: Arc<Generation>,
    store: SharedStore,
    mut job: Job,
    open: Opening,
    on_finish: OnFinish,
) {
    let started = Instant::now();
    let Opening {
        open,
        input_estimate,
    } = open;
    let mut usage: Option<(u64, u64)> = None;
    let end = tokio::select! {
        biased;
        _ = g.cancel.cancelled() => End::Stopped,
        r = open => match r {
            Err(e) => End::Failed(e),
            Ok(routed) => {
                if routed.provider_name != job.provider_name {
                    // Failed over before any text: say who answers instead.
                    job.provider_name = routed.provider_name;
                    job.meta.provider = job.provider_name.clone();
                    job.message.provider = Some(job.provider_name.clone());
                    g.push(GenEvent::Meta(job.meta.clone()));
                }
                let mut stream = routed.stream;
                loop {
                    tokio::select! {
                        biased;
                        _ = g.cancel.cancelled() => break End::Stopped,
                        item = stream.next() => match item {
                            Some(Ok(ChatEvent::Delta(text))) => {
                                if text.is_empty() { continue; }
                                g.push_delta(&text);
                                if let Some(first) = job.on_first_token.take() {
                                    first(&job.provider_name);
                                }
                            }
                            Some(Ok(ChatEvent::Usage { input_tokens, output_tokens })) => {
                                usage = Some((input_tokens, output_tokens));
                            }
                            Some(Ok(ChatEvent::Done { finish_reason })) => break End::Done(finish_reason),
                            // The app's chats offer no tools, so no provider is
                            // asked for a call; one that calls anyway adds no text.
                            Some(Ok(ChatEvent::ToolCall(_))) => {}
                            Some(Err(e)) => break End::Failed(e),
                            None => break End::Failed(ProviderError::Protocol(
                                crate::providers::ENDED_EARLY.into(),
                            )),
                        }
                    }
                }
            }
        },
    };

    let ended = Ended {
        end,
        usage,
        started,
        input_estimate,
    };
    Box::pin(finish(g, store, job, on_finish, ended)).await;
}

/// How a stream ended, with what [`finish`] needs to account for it.
struct Ended {
    end: End,
    /// The provider's counts (input, output), when it sent them.
    usage: Option<(u64, u64)>,
    started: Instant,
    input_estimate: u64,
}

/// Stores and announces the end of an answer (see [`run`]).
async fn finish(
    g: Arc<Generation>,
    store: SharedStore,
    mut job: Job,
    on_finish: OnFinish,
    ended: Ended,
) {
    let Ended {
        end,
        usage,
        started,
        input_estimate,
    } = ended;
    let content = g.lock().content.clone();
    let usage = match usage {
        Some((i, o)) => Usage {
            input_tokens: i,
            output_tokens: o,
            estimated: false,
        },
        None => Usage {
            input_tokens: input_estimate,
            output_tokens: super::estimate_tokens(&content),
            estimated: true,
        },
    };
    let mut msg = job.message.clone();
    msg.content = content;
    msg.usage = Some(usage);
    msg.duration_ms = Some(started.elapsed().as_millis() as u64);
    let (outcome, last) = match &end {
        End::Done(reason) => {
            msg.status = MessageStatus::Complete;
            msg.finish_reason = Some(reason.clone());
            (
                Outcome::Complete,
                GenEvent::Done {
                    finish_reason: reason.clone(),
                    sources: job.message.sources.clone(),
                },
            )
        }
        End::Stopped => {
            msg.status = MessageStatus::Interrupted;
            msg.finish_reason = Some("stopped".into());
            (
                Outcome::Stopped,
                GenEvent::Done {
                    finish_reason: "stopped".into(),
                    sources: job.message.sources.clone(),
                },
            )
        }
        End::Failed(e) => {
            msg.status = MessageStatus::Error;
            msg.finish_reason = Some("error".into());
            msg.error = Some(MessageError {
                code: e.code().into(),
                message: e.to_string(),
            });
            tracing::warn!(
                generation_id = %g.id,
                provider = %job.provider_name,
                code = e.code(),
                "generation failed"
            );
            let data = ErrorEvent {
                code: e.code().into(),
                message: e.to_string(),
                request_id: job.request_id.clone(),
                retry_after: e.retry_after_secs(),
            };
            (Outcome::Failed, GenEvent::Error(data))
        }
    };

    // Store first, then announce: a client that sees `done` and reloads
    // must find the final message.
    let m2 = msg.clone();
    if let Some(temp) = &job.temporary {
        temp.finish(&m2);
    } else {
        store_final(&store, &g, &m2).await;
    }
    // The text is final: the flusher must not write it again.
    g.lock().dirty = false;
    if let Some(titler) = job.titler.take()
        && let Some(t) = await_title(&g, titler(msg.clone(), outcome)).await
    {
        g.push(GenEvent::Title(t));
    }
    g.push(GenEvent::Usage(UsageEvent {
        estimated: usage.estimated,
        input_tokens: usage.input_tokens,
        output_tokens: usage.output_tokens,
    }));
    // The final event and the finished flag change together, so followers
    // never stop before reading the last event.
    {
        let mut st = g.lock();
        let id = st.append(last);
        st.finished = Some((outcome, Instant::now()));
        // Kept for replays for a while: no spare capacity meanwhile.
        st.content.shrink_to_fit();
        st.events.shrink_to_fit();
        drop(st);
        g.notify.send_replace(id);
    }
    on_finish(msg, outcome);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A delta kept as a range of the text reads back as the piece it
    /// added, with its id, between events kept whole.
    #[test]
    fn deltas_read_back_from_the_text_they_added() {
        let mut st = GenState {
            events: Vec::new(),
            content: String::new(),
            text_event: 0,
            dirty: false,
            finished: None,
            published: 0,
        };
        st.append(GenEvent::Usage(UsageEvent {
            estimated: false,
            input_tokens: 1,
            output_tokens: 2,
        }));
        assert_eq!(st.append_delta("h\u{e9}"), 2);
        assert_eq!(st.append_delta("llo"), 3);
        assert_eq!(st.content, "h\u{e9}llo");
        let read: Vec<(u64, String)> = (0..3)
            .map(|i| {
                let l = st.get(i).expect("logged");
                let text = match &l.event {
                    GenEvent::Delta { text } => text.clone(),
                    e => e.name().to_string(),
                };
                (l.id, text)
            })
            .collect();
        assert_eq!(
            read,
            [
                (1, "usage".to_string()),
                (2, "h\u{e9}".to_string()),
                (3, "llo".to_string())
            ]
        );
        assert!(st.get(3).is_none());
    }

    /// An opening whose future reports when it is first polled and ends
    /// with what the returned sender sends.
    fn probe() -> (
        Opening,
        Arc<std::sync::atomic::AtomicBool>,
        tokio::sync::oneshot::Sender<ProviderError>,
    ) {
        let polled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let seen = polled.clone();
        let open = Opening {
            open: Box::pin(async move {
                seen.store(true, std::sync::atomic::Ordering::SeqCst);
                Err(rx
                    .await
                    .unwrap_or_else(|_| ProviderError::Protocol("sender dropped".into())))
            }),
            input_estimate: 7,
        };
        (open, polled, tx)
    }

    /// The provider is asked while the work (storing the turn) runs: the
    /// opening has begun when the work ends, goes on afterwards, and
    /// dropping what is left of it cancels the request.
    #[tokio::test]
    async fn the_opening_runs_alongside_the_work_and_goes_on_after_it() {
        let (open, polled, tx) = probe();
        let (out, rest) = open
            .alongside(async {
                tokio::task::yield_now().await;
                41 + 1
            })
            .await;
        assert_eq!(out, 42);
        assert!(polled.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(rest.input_estimate, 7);
        tx.send(ProviderError::Timeout("late".into()))
            .expect("the opening still waits");
        match rest.open.await {
            Err(ProviderError::Timeout(m)) => assert_eq!(m, "late"),
            other => panic!("unexpected {:?}", other.err()),
        }

        let (open, _, tx) = probe();
        let (_, rest) = open.alongside(tokio::task::yield_now()).await;
        drop(rest);
        assert!(tx.is_closed(), "dropping the opening cancels it");
    }

    /// An opening that ends before the work keeps its outcome.
    #[tokio::test]
    async fn an_opening_that_ends_first_keeps_its_outcome() {
        let (open, _, tx) = probe();
        tx.send(ProviderError::KeyRejected("no".into())).unwrap();
        let (gate_tx, gate_rx) = tokio::sync::oneshot::channel::<()>();
        let work = async move {
            gate_rx.await.ok();
            "stored"
        };
        let (out, rest) = tokio::join!(open.alongside(work), async move {
            for _ in 0..4 {
                tokio::task::yield_now().await;
            }
            gate_tx.send(()).ok();
        })
        .0;
        assert_eq!(out, "stored");
        assert!(matches!(
            rest.open.await,
            Err(ProviderError::KeyRejected(_))
        ));
    }
}
