//! Import jobs: an import runs in its own task, not in the request that
//! uploaded the file, so the app can poll its progress (and find it again
//! after a page reload or on another instance). The process running a job
//! holds its live counters; the job's record in the store
//! (`store::import_jobs`) is written when it starts, after every batch of
//! conversations stored, about once a second while the file is read, and
//! when it ends. A job whose process stopped (a restart, a crash, an
//! instance whose lease ran out) is shown `interrupted` with what it had
//! imported: importing the same file again adds only what is missing.
//! A finished job is kept for [`KEEP_SECS`], and at most [`KEEP_PER_USER`]
//! jobs per user.

use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use utoipa::ToSchema;
use uuid::Uuid;

use super::import::ImportReport;
use super::stream::Counter;
use crate::store::import_jobs::{ImportJobRecord, ImportJobStatus};
use crate::store::{SharedStore, StoreError, StoreResult};

/// How long a finished job is kept.
pub const KEEP_SECS: i64 = 24 * 3600;
/// Jobs kept per user (the oldest finished ones go first).
pub const KEEP_PER_USER: usize = 10;
/// Imports one user may run at once.
pub const RUNNING_PER_USER: usize = 2;
/// What an interrupted job says.
pub const INTERRUPTED: &str = "The server stopped before this import finished. The conversations imported so far are kept; importing the same file again adds the rest without duplicating anything.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Running,
    Done,
    Failed,
    Interrupted,
}

impl From<ImportJobStatus> for JobStatus {
    fn from(s: ImportJobStatus) -> Self {
        match s {
            ImportJobStatus::Running => JobStatus::Running,
            ImportJobStatus::Done => JobStatus::Done,
            ImportJobStatus::Failed => JobStatus::Failed,
            ImportJobStatus::Interrupted => JobStatus::Interrupted,
        }
    }
}

pub struct Job {
    pub id: Uuid,
    pub user_id: Uuid,
    pub created_at: i64,
    pub file_name: Option<String>,
    /// The process running it (see [`ImportJobRecord::runner`]).
    runner: Option<Uuid>,
    /// Size of the JSON being read (in a zip, of its conversations.json).
    pub bytes_total: AtomicU64,
    pub counter: Counter,
    /// How many passes over the file (2 for a confab export: files first).
    pub passes: AtomicU8,
    pub pass_done: AtomicU8,
    pub imported: AtomicUsize,
    pub skipped: AtomicUsize,
    end: Mutex<Option<End>>,
    /// Where its record is kept; None for a synchronous import.
    store: Option<SharedStore>,
    /// Serialises writes of the record, so that an older progress write
    /// never lands after a newer one.
    saving: tokio::sync::Mutex<()>,
}

struct End {
    report: ImportReport,
    error: Option<String>,
}

/// A job as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct JobView {
    pub id: String,
    pub status: JobStatus,
    pub file_name: Option<String>,
    pub created_at: String,
    /// From 0 to 1.
    pub progress: f64,
    pub bytes_total: u64,
    /// Conversations imported and skipped so far.
    pub imported: usize,
    pub skipped: usize,
    /// Why the file as a whole could not be (completely) imported.
    pub error: Option<String>,
    /// Once finished: every conversation imported or skipped, with why.
    #[schema(value_type = Option<ImportReport>)]
    pub report: Option<serde_json::Value>,
}

impl JobView {
    fn of(r: ImportJobRecord) -> JobView {
        JobView {
            id: r.id.to_string(),
            status: r.status.into(),
            file_name: r.file_name,
            created_at: crate::clock::rfc3339(r.created_at),
            progress: r.progress,
            bytes_total: r.bytes_total,
            imported: r.imported as usize,
            skipped: r.skipped as usize,
            error: r.error,
            report: r.report,
        }
    }
}

impl Job {
    /// A job of its own (a synchronous import), not kept anywhere.
    pub fn new(user_id: Uuid, file_name: Option<String>) -> Job {
        Job {
            id: Uuid::now_v7(),
            user_id,
            created_at: crate::clock::now(),
            file_name,
            runner: None,
            bytes_total: AtomicU64::new(0),
            counter: Counter::default(),
            passes: AtomicU8::new(1),
            pass_done: AtomicU8::new(0),
            imported: AtomicUsize::new(0),
            skipped: AtomicUsize::new(0),
            end: Mutex::new(None),
            store: None,
            saving: tokio::sync::Mutex::new(()),
        }
    }

    /// The job as it stands now, as stored.
    pub fn record(&self) -> ImportJobRecord {
        let end = self.end.lock().expect("job lock");
        let total = self.bytes_total.load(Ordering::Relaxed).max(1);
        let passes = self.passes.load(Ordering::Relaxed).max(1) as f64;
        let done = self.pass_done.load(Ordering::Relaxed) as f64;
        let read = (self.counter.bytes.load(Ordering::Relaxed) as f64 / total as f64).min(1.0);
        let status = match &*end {
            None => ImportJobStatus::Running,
            Some(e) if e.error.is_some() => ImportJobStatus::Failed,
            Some(_) => ImportJobStatus::Done,
        };
        ImportJobRecord {
            id: self.id,
            user_id: self.user_id,
            status,
            runner: self.runner,
            file_name: self.file_name.clone(),
            created_at: self.created_at,
            updated_at: crate::clock::now(),
            progress: if end.is_some() {
                1.0
            } else {
                ((done + read) / passes).min(0.99)
            },
            bytes_total: self.bytes_total.load(Ordering::Relaxed),
            imported: self.imported.load(Ordering::Relaxed) as u64,
            skipped: self.skipped.load(Ordering::Relaxed) as u64,
            error: end.as_ref().and_then(|e| e.error.clone()),
            report: end
                .as_ref()
                .and_then(|e| serde_json::to_value(&e.report).ok()),
        }
    }

    pub fn view(&self) -> JobView {
        JobView::of(self.record())
    }

    pub fn running(&self) -> bool {
        self.end.lock().expect("job lock").is_none()
    }

    /// Records the outcome (and stores it, for a kept job).
    pub async fn finish(&self, report: ImportReport, error: Option<String>) {
        *self.end.lock().expect("job lock") = Some(End { report, error });
        self.save().await;
    }

    /// Writes the job's record as it stands (a kept job only). A failed
    /// write is logged: the import goes on, and the next write catches up.
    pub async fn save(&self) {
        let Some(store) = &self.store else { return };
        let _one = self.saving.lock().await;
        if let Err(e) = store.put_import_job(&self.record()).await {
            tracing::warn!(error = %e, job = %self.id, "cannot store the import job's progress");
        }
    }
}

/// The import jobs this process runs, and the way to the others.
pub struct Jobs {
    store: SharedStore,
    /// Instances on a shared database: a running job whose instance is
    /// gone is interrupted.
    cluster: Option<Arc<crate::cluster::Cluster>>,
    /// This process (its cluster instance id, or an id of its own).
    runner: Uuid,
    running: Mutex<HashMap<Uuid, Arc<Job>>>,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Jobs {
    /// On a store only this process opens, every job still `running` was
    /// left by a previous run: it is marked interrupted now.
    pub async fn open(
        store: SharedStore,
        cluster: Option<Arc<crate::cluster::Cluster>>,
    ) -> StoreResult<Jobs> {
        let runner = match &cluster {
            Some(c) => c.id,
            None => {
                let n = store
                    .interrupt_import_jobs(&[], INTERRUPTED, crate::clock::now())
                    .await?;
                if n > 0 {
                    tracing::warn!(
                        jobs = n,
                        "imports cut off by the last stop are marked interrupted"
                    );
                }
                Uuid::now_v7()
            }
        };
        Ok(Jobs {
            store,
            cluster,
            runner,
            running: Mutex::default(),
            tasks: Mutex::default(),
        })
    }

    /// Marks running jobs whose instance is gone as interrupted (a shared
    /// database only; on a store of one process, [`Jobs::open`] did).
    async fn sweep(&self) -> StoreResult<()> {
        let Some(c) = &self.cluster else {
            return Ok(());
        };
        let alive: Vec<Uuid> = c
            .store
            .instances()
            .await?
            .into_iter()
            .map(|i| i.id)
            .collect();
        let n = self
            .store
            .interrupt_import_jobs(&alive, INTERRUPTED, crate::clock::now())
            .await?;
        if n > 0 {
            tracing::warn!(
                jobs = n,
                "imports of instances that stopped are marked interrupted"
            );
        }
        Ok(())
    }

    /// A new running job for `user_id`, stored; None when the user already
    /// runs [`RUNNING_PER_USER`] imports. Finished jobs beyond
    /// [`KEEP_PER_USER`] or older than [`KEEP_SECS`] are forgotten.
    pub async fn start(
        &self,
        user_id: Uuid,
        file_name: Option<String>,
    ) -> StoreResult<Option<Arc<Job>>> {
        self.sweep().await?;
        let mine = self.store.list_import_jobs(user_id).await?;
        let running = mine
            .iter()
            .filter(|j| j.status == ImportJobStatus::Running)
            .count();
        if running >= RUNNING_PER_USER {
            return Ok(None);
        }
        let now = crate::clock::now();
        let mut finished: Vec<&ImportJobRecord> = mine
            .iter()
            .filter(|j| j.status != ImportJobStatus::Running)
            .collect();
        // Newest first: keep room for the new one.
        finished.sort_by_key(|j| std::cmp::Reverse(j.id));
        let keep = KEEP_PER_USER.saturating_sub(running + 1);
        for (i, j) in finished.iter().enumerate() {
            if i >= keep || now - j.updated_at >= KEEP_SECS {
                match self.store.delete_import_job(user_id, j.id).await {
                    Ok(()) | Err(StoreError::NotFound) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let mut job = Job::new(user_id, file_name);
        job.runner = Some(self.runner);
        job.store = Some(self.store.clone());
        let job = Arc::new(job);
        self.store.put_import_job(&job.record()).await?;
        self.running
            .lock()
            .expect("jobs lock")
            .insert(job.id, job.clone());
        Ok(Some(job))
    }

    /// Runs `fut`, the job's import, in a task of its own: the job is
    /// stored as it progresses, and this process stops tracking it at the
    /// end. The task is aborted when the server stops ([`Jobs::stop`]).
    pub fn spawn(
        self: &Arc<Self>,
        job: Arc<Job>,
        fut: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let me = self.clone();
        let j = job.clone();
        let task = tokio::spawn(async move {
            // About once a second: the bytes read (the counts are stored
            // with each batch). In the same task as the import, so that
            // aborting it stops both.
            let ticker = async {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    j.save().await;
                }
            };
            tokio::select! {
                () = fut => {}
                () = ticker => {}
            }
            me.running.lock().expect("jobs lock").remove(&j.id);
        });
        let mut tasks = self.tasks.lock().expect("jobs lock");
        tasks.retain(|t| !t.is_finished());
        tasks.push(task.abort_handle());
    }

    /// Aborts the imports this process runs (the server is stopping): their
    /// records stay `running` until the next start (or another instance)
    /// marks them interrupted.
    pub fn stop(&self) {
        for t in self.tasks.lock().expect("jobs lock").drain(..) {
            t.abort();
        }
    }

    /// The user's job; None for another user's (as for a missing one).
    pub async fn get(&self, user_id: Uuid, id: Uuid) -> StoreResult<Option<JobView>> {
        let live = self
            .running
            .lock()
            .expect("jobs lock")
            .get(&id)
            .filter(|j| j.user_id == user_id)
            .cloned();
        if let Some(j) = live {
            return Ok(Some(j.view()));
        }
        self.sweep().await?;
        match self.store.import_job(user_id, id).await {
            Ok(r) => Ok(Some(JobView::of(r))),
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The user's jobs, newest first.
    pub async fn list(&self, user_id: Uuid) -> StoreResult<Vec<JobView>> {
        self.sweep().await?;
        let stored = self.store.list_import_jobs(user_id).await?;
        let live = self.running.lock().expect("jobs lock").clone();
        Ok(stored
            .into_iter()
            .map(|r| match live.get(&r.id) {
                Some(j) => j.view(),
                None => JobView::of(r),
            })
            .collect())
    }
}
