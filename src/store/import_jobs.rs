//! Import jobs as stored: what `GET /api/imports/{id}` answers, kept in the
//! store so that a job outlives the process that ran it (a restart shows it
//! `interrupted` with what it had imported) and any instance on a shared
//! database can answer for it. The process running a job writes its
//! progress after every batch it stores and about once a second.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImportJobStatus {
    Running,
    Done,
    Failed,
    /// The process running it stopped before it finished: what it had
    /// imported stays, and importing the same file again adds the rest.
    Interrupted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportJobRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub status: ImportJobStatus,
    /// The process running it (a cluster instance's id, or an id the
    /// process chose at start): while it runs, only that process writes it.
    #[serde(default)]
    pub runner: Option<Uuid>,
    #[serde(default)]
    pub file_name: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// From 0 to 1.
    #[serde(default)]
    pub progress: f64,
    #[serde(default)]
    pub bytes_total: u64,
    /// Conversations imported and skipped so far.
    #[serde(default)]
    pub imported: u64,
    #[serde(default)]
    pub skipped: u64,
    #[serde(default)]
    pub error: Option<String>,
    /// Once finished: the report (`transfer::import::ImportReport`) as JSON.
    #[serde(default)]
    pub report: Option<serde_json::Value>,
}
