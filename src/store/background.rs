//! Store writes that outlive the request that caused them: the usage of a
//! `/v1` call whose client went away, an audit entry written after the call,
//! the last-used time of a key. They run as tasks of their own so the
//! request does not wait on them, and the server waits for them (bounded by
//! `shutdown_grace_secs`) before it stops: a task the runtime dropped at
//! exit would lose its write ("store task was cancelled").

use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

use tokio_util::task::TaskTracker;

static WRITES: LazyLock<TaskTracker> = LazyLock::new(TaskTracker::new);

/// Runs `write` in the background; [`drain`] waits for it.
pub fn spawn<F>(write: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    WRITES.spawn(write);
}

/// Waits until every background write has finished, at most `limit`;
/// answers how many were still running when it gave up.
pub async fn drain(limit: Duration) -> usize {
    // `wait` ends only on a closed tracker; reopened after, so a server
    // started later in the same process (tests) tracks its writes too.
    WRITES.close();
    let done = tokio::time::timeout(limit, WRITES.wait()).await.is_ok();
    WRITES.reopen();
    if done { 0 } else { WRITES.len() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test]
    async fn drain_waits_for_a_running_write() {
        let wrote = Arc::new(AtomicBool::new(false));
        let w = wrote.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        spawn(async move {
            let _ = rx.await;
            w.store(true, Ordering::SeqCst);
        });
        let drained = tokio::spawn(drain(Duration::from_secs(30)));
        tx.send(()).unwrap();
        assert_eq!(drained.await.unwrap(), 0);
        assert!(
            wrote.load(Ordering::SeqCst),
            "drain returned before the write ended"
        );
    }
}
