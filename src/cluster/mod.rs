//! Several confab instances on one database: this instance's identity and
//! lease, the notices between instances, and the check that every
//! instance signs and encrypts with the same keys.
//!
//! With a store that only one process can open (redb) there is no
//! [`Cluster`]: everything it coordinates stays in that process. With a
//! database server ([`crate::store::Store::cluster`]) each instance joins
//! with a fresh id and a lease it renews every [`RENEW_EVERY`]; an instance
//! whose lease runs out is dead to the others, which end its running
//! answers (see `chat::shared`).

use std::sync::Arc;
use std::time::Duration;

use ring::hmac;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use crate::store::StoreResult;
use crate::store::cluster::{ClusterStore, Notice};

/// How often the lease is renewed.
pub const RENEW_EVERY: Duration = Duration::from_secs(2);

/// This instance among the others on the database.
pub struct Cluster {
    pub store: Arc<dyn ClusterStore>,
    /// Fresh at every start: a restarted instance is a new one, and the
    /// answers its previous run left are ended by whoever sees its lease
    /// run out.
    pub id: Uuid,
    /// How long a lease holds without renewal.
    pub lease: Duration,
    host: String,
    /// Counts the times this instance found itself declared dead (its lease
    /// ran out while it could not reach the database) and joined again.
    fenced: watch::Sender<u64>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("id", &self.id).finish()
    }
}

impl Cluster {
    /// Joins the database's instances.
    pub async fn join(store: Arc<dyn ClusterStore>, lease: Duration) -> StoreResult<Arc<Cluster>> {
        let id = Uuid::now_v7();
        let host = hostname();
        store.join(id, &host, lease).await?;
        let (fenced, _) = watch::channel(0);
        Ok(Arc::new(Cluster {
            store,
            id,
            lease,
            host,
            fenced,
        }))
    }

    /// Renews the lease every [`RENEW_EVERY`] for as long as the returned
    /// task runs. When the database says this instance was declared dead
    /// (it could not renew for longer than the lease), it joins again and
    /// tells [`Self::fenced`] watchers, whose answers were already ended
    /// by another instance.
    pub fn spawn_upkeep(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RENEW_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tick.tick().await;
                let Some(c) = me.upgrade() else { return };
                match c.store.renew(c.id, c.lease).await {
                    Ok(true) => {
                        if failing {
                            tracing::info!("the database is reachable again; lease renewed");
                            failing = false;
                        }
                    }
                    Ok(false) => {
                        tracing::warn!(
                            instance = %c.id,
                            "this instance's lease ran out while the database was unreachable; the other instances ended its running answers. Joining again"
                        );
                        if let Err(e) = c.store.join(c.id, &c.host, c.lease).await {
                            tracing::error!(error = %e, "cannot join the other instances again");
                        }
                        c.fenced.send_modify(|n| *n += 1);
                        failing = false;
                    }
                    Err(e) => {
                        if !failing {
                            tracing::error!(error = %e, "cannot renew this instance's lease");
                        }
                        failing = true;
                    }
                }
            }
        })
    }

    /// Gives the lease up (on a clean shutdown, after the answers ended).
    pub async fn leave(&self) {
        if let Err(e) = self.store.leave(self.id).await {
            tracing::warn!(error = %e, "cannot give up this instance's lease");
        }
    }

    /// Notices from every instance from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.store.subscribe()
    }

    /// Changes each time this instance was found declared dead.
    pub fn fenced(&self) -> watch::Receiver<u64> {
        self.fenced.subscribe()
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// A key every instance must share, and what to do when it differs.
pub struct SharedKey {
    /// As recorded in the database: `jwt`, `device`, `provider`.
    pub name: &'static str,
    pub bytes: Vec<u8>,
    /// The sentence's end: which file to copy or which setting to set.
    pub remedy: String,
}

/// A fingerprint of `key` that says nothing about it: the first 16 bytes
/// of an HMAC-SHA-256 keyed with it over a fixed label, hex.
pub fn fingerprint(key: &[u8]) -> String {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    let tag = hmac::sign(&k, b"confab key fingerprint v1");
    hex::encode(&tag.as_ref()[..16])
}

/// Records each key's fingerprint the first time an instance starts on the
/// database and refuses to start (with a sentence naming what to copy)
/// when this instance's key differs from the one recorded: tokens signed
/// or keys sealed by one instance must open on every other.
pub async fn check_keys(store: &dyn ClusterStore, keys: &[SharedKey]) -> anyhow::Result<()> {
    for k in keys {
        let mine = fingerprint(&k.bytes);
        let recorded = store.claim_key(k.name, &mine).await?;
        if recorded != mine {
            anyhow::bail!(
                "this instance's {} key (fingerprint {mine}) differs from the one the other instances on this database use (fingerprint {recorded}): {}",
                k.name,
                k.remedy
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_differ_per_key_and_hide_it() {
        let a = fingerprint(&[1u8; 32]);
        assert_eq!(a.len(), 32);
        assert_eq!(a, fingerprint(&[1u8; 32]));
        assert_ne!(a, fingerprint(&[2u8; 32]));
        assert!(!a.contains(&hex::encode([1u8; 16])));
    }
}
