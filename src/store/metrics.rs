//! The store's own metrics hook: commit latency of every write, kept here
//! so the store depends on no metrics owner; whoever exports metrics
//! registers [`commit_histogram`].

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use std::sync::LazyLock;
use std::time::Duration;

/// Commit latency of every store write; one process-wide histogram (the
/// store has no handle on the registry), registered in every registry.
static COMMIT: LazyLock<Histogram> =
    LazyLock::new(|| Histogram::new(exponential_buckets(0.0001, 2.0, 16)));

/// Records one commit that took `d`.
pub fn observe_commit(d: Duration) {
    COMMIT.observe(d.as_secs_f64());
}

/// The histogram, to register with a metrics registry (a shared handle).
pub fn commit_histogram() -> Histogram {
    COMMIT.clone()
}
