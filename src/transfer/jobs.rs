//! Import jobs: an import runs in its own task, not in the request that
//! uploaded the file, so the app can poll its progress (and find it again
//! after a page reload). Jobs live in this process's memory: a finished
//! job's report is kept for [`KEEP_SECS`], and at most [`KEEP_PER_USER`]
//! jobs per user; a server restart forgets them (what was imported stays
//! imported, and importing the file again adds only what is missing).

use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use utoipa::ToSchema;
use uuid::Uuid;

use super::import::ImportReport;
use super::stream::Counter;

/// How long a finished job is kept.
pub const KEEP_SECS: i64 = 24 * 3600;
/// Jobs kept per user (the oldest finished ones go first).
pub const KEEP_PER_USER: usize = 10;
/// Imports one user may run at once.
pub const RUNNING_PER_USER: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Running,
    Done,
    Failed,
}

pub struct Job {
    pub id: Uuid,
    pub user_id: Uuid,
    pub created_at: i64,
    pub file_name: Option<String>,
    /// Size of the JSON being read (in a zip, of its conversations.json).
    pub bytes_total: AtomicU64,
    pub counter: Counter,
    /// How many passes over the file (2 for a confab export: files first).
    pub passes: AtomicU8,
    pub pass_done: AtomicU8,
    pub imported: AtomicUsize,
    pub skipped: AtomicUsize,
    end: Mutex<Option<End>>,
}

struct End {
    at: i64,
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
    pub report: Option<ImportReport>,
}

impl Job {
    /// A job of its own (a synchronous import), not listed anywhere.
    pub fn new(user_id: Uuid, file_name: Option<String>) -> Job {
        Job {
            id: Uuid::now_v7(),
            user_id,
            created_at: crate::clock::now(),
            file_name,
            bytes_total: AtomicU64::new(0),
            counter: Counter::default(),
            passes: AtomicU8::new(1),
            pass_done: AtomicU8::new(0),
            imported: AtomicUsize::new(0),
            skipped: AtomicUsize::new(0),
            end: Mutex::new(None),
        }
    }

    pub fn view(&self) -> JobView {
        let end = self.end.lock().expect("job lock");
        let total = self.bytes_total.load(Ordering::Relaxed).max(1);
        let passes = self.passes.load(Ordering::Relaxed).max(1) as f64;
        let done = self.pass_done.load(Ordering::Relaxed) as f64;
        let read = (self.counter.bytes.load(Ordering::Relaxed) as f64 / total as f64).min(1.0);
        let status = match &*end {
            None => JobStatus::Running,
            Some(e) if e.error.is_some() => JobStatus::Failed,
            Some(_) => JobStatus::Done,
        };
        JobView {
            id: self.id.to_string(),
            status,
            file_name: self.file_name.clone(),
            created_at: crate::clock::rfc3339(self.created_at),
            progress: if end.is_some() {
                1.0
            } else {
                ((done + read) / passes).min(0.99)
            },
            bytes_total: self.bytes_total.load(Ordering::Relaxed),
            imported: self.imported.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            error: end.as_ref().and_then(|e| e.error.clone()),
            report: end.as_ref().map(|e| e.report.clone()),
        }
    }

    pub fn running(&self) -> bool {
        self.end.lock().expect("job lock").is_none()
    }

    /// Records the outcome.
    pub fn finish(&self, report: ImportReport, error: Option<String>) {
        *self.end.lock().expect("job lock") = Some(End {
            at: crate::clock::now(),
            report,
            error,
        });
    }
}

#[derive(Default)]
pub struct Jobs {
    jobs: Mutex<HashMap<Uuid, Arc<Job>>>,
}

impl Jobs {
    /// A new running job for `user_id`; None when the user already runs
    /// [`RUNNING_PER_USER`] imports.
    pub fn start(&self, user_id: Uuid, file_name: Option<String>) -> Option<Arc<Job>> {
        let mut jobs = self.jobs.lock().expect("jobs lock");
        let now = crate::clock::now();
        jobs.retain(|_, j| {
            j.end
                .lock()
                .expect("job lock")
                .as_ref()
                .is_none_or(|e| now - e.at < KEEP_SECS)
        });
        let mine: Vec<Arc<Job>> = jobs
            .values()
            .filter(|j| j.user_id == user_id)
            .cloned()
            .collect();
        if mine.iter().filter(|j| j.running()).count() >= RUNNING_PER_USER {
            return None;
        }
        if mine.len() >= KEEP_PER_USER {
            let mut done: Vec<&Arc<Job>> = mine.iter().filter(|j| !j.running()).collect();
            done.sort_by_key(|j| j.id);
            for j in done.iter().take(mine.len() + 1 - KEEP_PER_USER) {
                jobs.remove(&j.id);
            }
        }
        let job = Arc::new(Job::new(user_id, file_name));
        jobs.insert(job.id, job.clone());
        Some(job)
    }

    /// The user's job; None for another user's (as for a missing one).
    pub fn get(&self, user_id: Uuid, id: Uuid) -> Option<Arc<Job>> {
        let jobs = self.jobs.lock().expect("jobs lock");
        jobs.get(&id).filter(|j| j.user_id == user_id).cloned()
    }

    /// The user's jobs, newest first.
    pub fn list(&self, user_id: Uuid) -> Vec<Arc<Job>> {
        let jobs = self.jobs.lock().expect("jobs lock");
        let mut out: Vec<Arc<Job>> = jobs
            .values()
            .filter(|j| j.user_id == user_id)
            .cloned()
            .collect();
        out.sort_by_key(|j| std::cmp::Reverse(j.id));
        out
    }
}
