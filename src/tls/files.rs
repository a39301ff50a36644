//! Static certificate files (`tls.cert`, `tls.key`): loaded at start-up and
//! loaded again on every configuration reload (SIGHUP) and whenever either
//! file changes (checked every `tls.reload_check_secs`). A file that does not load (half-written, key
//! and certificate not matching yet) leaves the previous certificate in
//! service; connections already open are never touched.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::Tls;
use super::certs::{self, CertSource, Loaded};

pub fn load(cert: &Path, key: &Path) -> Result<Loaded, String> {
    let c =
        std::fs::read(cert).map_err(|e| format!("cannot read tls.cert {}: {e}", cert.display()))?;
    let k =
        std::fs::read(key).map_err(|e| format!("cannot read tls.key {}: {e}", key.display()))?;
    certs::from_pem(
        &c,
        &k,
        CertSource::Files,
        &format!("tls.cert {}", cert.display()),
        &format!("tls.key {}", key.display()),
    )
}

/// What changes when a file is rewritten or replaced (also through a
/// symlink swap, as certbot and Kubernetes secrets do).
type Fingerprint = Vec<Option<(SystemTime, u64, u64)>>;

fn fingerprint(paths: &[&Path]) -> Fingerprint {
    paths
        .iter()
        .map(|p| {
            let m = std::fs::metadata(p).ok()?;
            #[cfg(unix)]
            let ino = std::os::unix::fs::MetadataExt::ino(&m);
            #[cfg(not(unix))]
            let ino = 0;
            Some((m.modified().ok()?, m.len(), ino))
        })
        .collect()
}

/// Reloads on every configuration reload (SIGHUP, see `ops::reload`: the
/// paths may have changed too) and when the files change.
pub async fn watch(
    tls: Arc<Tls>,
    mut cert: PathBuf,
    mut key: PathBuf,
    every: Duration,
    mut live: tokio::sync::watch::Receiver<Arc<crate::config::Config>>,
    cancel: CancellationToken,
) {
    let mut last = fingerprint(&[&cert, &key]);
    let mut live_open = true;
    // Files cannot renew themselves: remind once a day when they expire soon.
    let day = Duration::from_secs(86_400);
    let mut daily = tokio::time::interval_at(tokio::time::Instant::now() + day, day);
    let mut tick = (!every.is_zero()).then(|| {
        let mut t = tokio::time::interval(every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    loop {
        let reason = tokio::select! {
            _ = cancel.cancelled() => return,
            changed = live.changed(), if live_open => {
                if changed.is_err() {
                    live_open = false;
                    continue;
                }
                let cfg = live.borrow_and_update().clone();
                match (&cfg.tls.cert, &cfg.tls.key) {
                    (Some(c), Some(k)) => {
                        cert = c.clone();
                        key = k.clone();
                    }
                    _ => tracing::warn!(
                        "the reloaded configuration no longer names tls.cert and tls.key; \
                         switching TLS off or to automatic certificates takes a restart"
                    ),
                }
                "configuration reload (SIGHUP)"
            }
            _ = daily.tick() => {
                super::warn_if_expiring(&tls.certificate());
                continue;
            }
            _ = next_tick(&mut tick) => {
                let now = fingerprint(&[&cert, &key]);
                if now == last {
                    continue;
                }
                // Let a writer finish the second file before reading both.
                tokio::time::sleep(Duration::from_millis(200)).await;
                "the files changed"
            }
        };
        last = fingerprint(&[&cert, &key]);
        let (c, k) = (cert.clone(), key.clone());
        let loaded = tokio::task::spawn_blocking(move || load(&c, &k))
            .await
            .unwrap_or_else(|e| Err(format!("reload task failed: {e}")));
        match loaded {
            Ok(l) => {
                tracing::info!(
                    reason,
                    names = ?l.info.names,
                    not_after = %l.info.not_after,
                    days_left = l.info.days_left,
                    "reloaded the TLS certificate"
                );
                super::warn_if_expiring(&l.info);
                tls.install(l, None);
            }
            Err(e) => {
                tracing::error!(
                    reason,
                    error = %e,
                    "could not reload the TLS certificate; still serving the previous one"
                );
                tls.record_error(e, None, None);
            }
        }
    }
}

async fn next_tick(t: &mut Option<tokio::time::Interval>) {
    match t {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending::<()>().await,
    }
}
