//! Answers across instances on one database.
//!
//! The instance running an answer publishes its new events and text every
//! [`PUBLISH_EVERY`] (one transaction for all its answers, with a notice to
//! the others). Another instance follows it by reading the stored events
//! after `Last-Event-ID`, woken by the notices (and looking again every
//! [`POLL_EVERY`] in case one was missed), reads its live text from the
//! last publication, and stops it by setting a flag the running instance
//! is told about at once (notice) or finds at its next look.
//!
//! Each instance holds a lease (see `crate::cluster`). When one dies, the
//! first instance to see its lease run out ([`REAP_EVERY`]) ends its
//! answers: each becomes `interrupted` with the last text published or
//! flushed, and its followers get a final `done` event.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::watch;
use uuid::Uuid;

use super::events::{GenEvent, Logged};
use super::generation::{Generation, KEEP_FINISHED, Manager};
use crate::cluster::Cluster;
use crate::store::StoreError;
use crate::store::cluster::{ClusterStore, GenInfo, LiveText, NoticeKind};

/// How often an instance publishes its answers' new events.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(100);
/// How often a follower looks again without a notice.
pub const POLL_EVERY: Duration = Duration::from_secs(1);
/// How often each instance looks for instances whose lease ran out.
pub const REAP_EVERY: Duration = Duration::from_secs(2);
/// How often the running instance looks for stop requests without a notice.
const STOP_POLL_EVERY: Duration = Duration::from_secs(1);
/// Events read per query by a follower.
const PAGE: usize = 256;
/// How long a follower keeps trying while the database fails.
const FOLLOW_GIVE_UP: Duration = Duration::from_secs(30);

/// The cross-instance side of the generation manager.
pub struct SharedGens {
    cluster: Arc<Cluster>,
    /// Followers of generations on other instances, woken by notices.
    wakers: Mutex<HashMap<Uuid, Weak<watch::Sender<u64>>>>,
    /// When a failed publication was last logged (unix seconds).
    last_error: AtomicU64,
}

impl SharedGens {
    pub fn new(cluster: Arc<Cluster>) -> Arc<SharedGens> {
        Arc::new(SharedGens {
            cluster,
            wakers: Mutex::new(HashMap::new()),
            last_error: AtomicU64::new(0),
        })
    }

    pub fn store(&self) -> &Arc<dyn ClusterStore> {
        &self.cluster.store
    }

    pub fn instance(&self) -> Uuid {
        self.cluster.id
    }

    /// Logs a failed publication at most once a minute.
    pub fn publish_failed(&self, e: &StoreError) {
        let now = crate::clock::now() as u64;
        if self.last_error.swap(now, Ordering::Relaxed) + 60 <= now {
            tracing::error!(error = %e, "cannot publish running answers to the other instances");
        }
    }

    fn wakers(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Weak<watch::Sender<u64>>>> {
        self.wakers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A waker for generation `id`, shared by its followers here.
    fn waker(&self, id: Uuid) -> Arc<watch::Sender<u64>> {
        let mut w = self.wakers();
        if let Some(s) = w.get(&id).and_then(Weak::upgrade) {
            return s;
        }
        let s = Arc::new(watch::channel(0).0);
        w.insert(id, Arc::downgrade(&s));
        s
    }

    fn wake(&self, id: Option<Uuid>) {
        let mut w = self.wakers();
        w.retain(|_, s| s.strong_count() > 0);
        let wake = |s: &Weak<watch::Sender<u64>>| {
            if let Some(s) = s.upgrade() {
                s.send_modify(|n| *n += 1);
            }
        };
        match id {
            Some(id) => {
                if let Some(s) = w.get(&id) {
                    wake(s);
                }
            }
            None => w.values().for_each(wake),
        }
    }

    /// Starts the tasks of this instance: publishing its answers, hearing
    /// notices (stop requests, other instances' new events), looking for
    /// stop requests and for dead instances. They end with the manager.
    pub fn spawn(self: &Arc<Self>, mgr: &Arc<Manager>) -> Vec<tokio::task::JoinHandle<()>> {
        let weak = Arc::downgrade(mgr);
        let publisher = {
            let weak = weak.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(PUBLISH_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut stop_poll = tokio::time::Instant::now();
                loop {
                    tick.tick().await;
                    let Some(mgr) = weak.upgrade() else { return };
                    mgr.publish(None).await;
                    if stop_poll.elapsed() >= STOP_POLL_EVERY {
                        stop_poll = tokio::time::Instant::now();
                        poll_stops(&mgr).await;
                    }
                }
            })
        };
        let listener = {
            let weak = weak.clone();
            let me = Arc::downgrade(self);
            let mut rx = self.cluster.subscribe();
            let mut fenced = self.cluster.fenced();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        n = rx.recv() => {
                            let (Some(mgr), Some(me)) = (weak.upgrade(), me.upgrade()) else { return };
                            match n {
                                Ok(n) => match n.kind {
                                    NoticeKind::Stop => {
                                        if let Ok(id) = Uuid::parse_str(&n.payload) {
                                            mgr.stop_ids(&[id]);
                                        }
                                    }
                                    NoticeKind::Generation => me.wake(Uuid::parse_str(&n.payload).ok()),
                                    NoticeKind::Reconnected => {
                                        me.wake(None);
                                        poll_stops(&mgr).await;
                                    }
                                    NoticeKind::Certificate => {}
                                },
                                // Missed some: everyone looks again.
                                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => me.wake(None),
                                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                            }
                        }
                        r = fenced.changed() => {
                            if r.is_err() { return }
                            let Some(mgr) = weak.upgrade() else { return };
                            // Another instance already ended them as
                            // interrupted; end them here the same way.
                            mgr.stop_all();
                        }
                    }
                }
            })
        };
        let reaper = {
            let store = Arc::downgrade(self.store());
            let lease = self.cluster.lease;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(REAP_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut ticks = 0u64;
                loop {
                    tick.tick().await;
                    let Some(store) = store.upgrade() else { return };
                    reap(&*store, lease).await;
                    ticks += 1;
                    if ticks.is_multiple_of(30)
                        && let Err(e) = store.gen_prune(KEEP_FINISHED).await
                    {
                        tracing::warn!(error = %e, "cannot forget finished answers");
                    }
                }
            })
        };
        vec![publisher, listener, reaper]
    }

    /// A generation of `user` running (or recently finished) on another
    /// instance.
    pub async fn find(self: &Arc<Self>, user: Uuid, id: Uuid) -> Option<Arc<RemoteGen>> {
        match self.store().gen_get(user, id).await {
            Ok(Some(info)) => Some(Arc::new(RemoteGen {
                info,
                user,
                shared: self.clone(),
            })),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look a generation up");
                None
            }
        }
    }

    /// The published text of answers running elsewhere.
    pub async fn live_text(&self, message_ids: &[Uuid]) -> Vec<LiveText> {
        match self.store().gen_live_text(message_ids).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the live text of answers");
                Vec::new()
            }
        }
    }
}

/// Ends the answers of dead instances (once at start-up too).
pub async fn reap(store: &dyn ClusterStore, lease: Duration) {
    let done = GenEvent::Done {
        finish_reason: "server_restart".into(),
        sources: Vec::new(),
    };
    let (name, data) = done.to_parts();
    // A turn is stored a moment before its generation is announced: only a
    // streaming message older than this has lost its instance.
    let orphan_after = lease * 2;
    match store.gen_reap((name, &data), orphan_after).await {
        Ok(r) => {
            if !r.instances.is_empty() || r.messages > 0 {
                tracing::warn!(
                    instances = ?r.instances,
                    answers = r.messages,
                    "instances stopped renewing their lease; their running answers were marked interrupted"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot look for instances that stopped"),
    }
}

/// Stops local answers someone asked to stop while a notice was missed.
async fn poll_stops(mgr: &Manager) {
    let Some(shared) = &mgr.shared else { return };
    if mgr.running_ids().is_empty() {
        return;
    }
    match shared.store().gen_stop_requests(shared.instance()).await {
        Ok(ids) => mgr.stop_ids(&ids),
        Err(e) => tracing::debug!(error = %e, "cannot read stop requests"),
    }
}

/// A generation running on another instance (or finished there), followed
/// through the database.
pub struct RemoteGen {
    pub info: GenInfo,
    user: Uuid,
    shared: Arc<SharedGens>,
}

impl RemoteGen {
    /// Events after `after`, then live ones until the generation ends.
    pub fn events(self: &Arc<Self>, after: u64) -> BoxStream<'static, Arc<Logged>> {
        struct St {
            g: Arc<RemoteGen>,
            after: u64,
            buf: std::collections::VecDeque<Arc<Logged>>,
            wake: watch::Receiver<u64>,
            // Keeps the waker registered while this follower lives.
            _waker: Arc<watch::Sender<u64>>,
            failing_since: Option<tokio::time::Instant>,
        }
        let waker = self.shared.waker(self.info.id);
        let st = St {
            g: self.clone(),
            after,
            buf: Default::default(),
            wake: waker.subscribe(),
            _waker: waker,
            failing_since: None,
        };
        futures::stream::unfold(st, |mut st| async move {
            loop {
                if let Some(e) = st.buf.pop_front() {
                    return Some((e, st));
                }
                // Seen before reading, so a notice during the read wakes
                // the next wait.
                st.wake.borrow_and_update();
                match st.g.shared.store().gen_events(st.g.info.id, st.after, PAGE).await {
                    Ok((events, finished)) => {
                        st.failing_since = None;
                        let full = events.len() >= PAGE;
                        for e in events {
                            st.after = e.seq;
                            match GenEvent::from_parts(&e.name, &e.data) {
                                Some(event) => st.buf.push_back(Arc::new(Logged { id: e.seq, event })),
                                None => tracing::warn!(event = %e.name, "skipping an event this version cannot read"),
                            }
                        }
                        if !st.buf.is_empty() || full {
                            continue;
                        }
                        if finished {
                            return None;
                        }
                    }
                    Err(e) => {
                        let since = *st.failing_since.get_or_insert_with(tokio::time::Instant::now);
                        if since.elapsed() > FOLLOW_GIVE_UP {
                            tracing::warn!(error = %e, "giving up following an answer on another instance");
                            return None;
                        }
                    }
                }
                tokio::select! {
                    _ = st.wake.changed() => {}
                    _ = tokio::time::sleep(POLL_EVERY) => {}
                }
            }
        })
        .boxed()
    }

    /// Asks the instance running it to stop; waits (bounded) until it has
    /// stored the text so far.
    pub async fn stop(self: &Arc<Self>) {
        match self
            .shared
            .store()
            .gen_request_stop(self.user, self.info.id)
            .await
        {
            Ok(true) => {
                let mut events = self.events(u64::MAX - 1);
                let _ = tokio::time::timeout(Duration::from_secs(5), async {
                    while events.next().await.is_some() {}
                })
                .await;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot ask an answer on another instance to stop")
            }
        }
    }
}

/// A generation to follow: running here, or on another instance.
#[derive(Clone)]
pub enum Followed {
    Local(Arc<Generation>),
    Remote(Arc<RemoteGen>),
}

impl Followed {
    pub fn id(&self) -> Uuid {
        match self {
            Followed::Local(g) => g.id,
            Followed::Remote(r) => r.info.id,
        }
    }

    /// Events after `after`, then live ones until the answer ends.
    pub fn events(&self, after: u64) -> BoxStream<'static, Arc<Logged>> {
        match self {
            Followed::Local(g) => g.events(after).boxed(),
            Followed::Remote(r) => r.events(after),
        }
    }

    /// Asks the answer to stop (the text so far is kept).
    pub async fn stop(&self) {
        match self {
            Followed::Local(g) => g.stop(),
            Followed::Remote(r) => r.stop().await,
        }
    }
}
