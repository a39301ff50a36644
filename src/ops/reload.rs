//! Live configuration and SIGHUP.
//!
//! The server keeps its start-up [`Config`] in `AppState::cfg`, and the
//! *current* one in a [`LiveConfig`]: a `tokio::sync::watch` cell that
//! SIGHUP replaces after re-reading every layer (file, the unchanged
//! environment, the original flags) and validating the result. An invalid
//! file is logged and changes nothing.
//!
//! Settings in [`LIVE_SETTINGS`] take effect at once (code reads them through
//! `AppState::settings()`); any other changed setting is logged as needing a
//! restart. Other modules react to a reload by subscribing:
//!
//! ```ignore
//! let mut rx = state.live.subscribe();
//! tokio::spawn(async move {
//!     while rx.changed().await.is_ok() {
//!         let cfg = rx.borrow_and_update().clone();
//!         // re-read certificate files, rebuild limiters, ...
//!     }
//! });
//! ```
//!
//! Every SIGHUP publishes, even when nothing in the file changed, so a
//! subscriber also hears "reload requested" (e.g. renewed TLS files at
//! unchanged paths).

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;

use crate::config::{Config, ConfigError};

/// Top-level settings (or sections) applied without a restart. Modules that
/// subscribe to reloads add the settings they apply live here.
pub const LIVE_SETTINGS: &[&str] = &[
    "log_level",
    "registration",
    "allow_user_keys",
    "default_model",
    "tls",
];

/// The current configuration, replaced on reload.
#[derive(Clone)]
pub struct LiveConfig {
    tx: Arc<watch::Sender<Arc<Config>>>,
}

impl std::fmt::Debug for LiveConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveConfig")
    }
}

impl LiveConfig {
    pub fn new(cfg: Config) -> LiveConfig {
        LiveConfig {
            tx: Arc::new(watch::Sender::new(Arc::new(cfg))),
        }
    }

    /// The configuration in force now.
    pub fn get(&self) -> Arc<Config> {
        self.tx.borrow().clone()
    }

    /// A receiver that wakes on every reload (see the module docs).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Config>> {
        self.tx.subscribe()
    }

    /// Replaces the configuration and wakes every subscriber.
    pub fn publish(&self, cfg: Config) {
        self.tx.send_replace(Arc::new(cfg));
    }
}

/// What a reload changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// Changed settings now in force.
    pub applied: Vec<String>,
    /// Changed settings that keep their old value until a restart.
    pub restart_needed: Vec<String>,
}

fn flatten(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, toml::Value>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

fn settings(cfg: &Config) -> BTreeMap<String, toml::Value> {
    let mut out = BTreeMap::new();
    if let Ok(v) = toml::Value::try_from(cfg) {
        flatten("", &v, &mut out);
    }
    out
}

fn is_live(key: &str) -> bool {
    LIVE_SETTINGS
        .iter()
        .any(|l| key == *l || key.strip_prefix(l).is_some_and(|r| r.starts_with('.')))
}

/// The settings that differ between `old` and `new`, split by whether they
/// apply live. Only names are reported, never values (they may be secrets).
pub fn diff(old: &Config, new: &Config) -> ReloadOutcome {
    let (a, b) = (settings(old), settings(new));
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = ReloadOutcome::default();
    for k in keys {
        if a.get(k) != b.get(k) {
            if is_live(k) {
                out.applied.push(k.clone());
            } else {
                out.restart_needed.push(k.clone());
            }
        }
    }
    out
}

/// Puts `new` in force: the log level now, the rest through `live`.
/// Settings that need a restart keep their old value in the published
/// config too, so what the server reports is what it does.
pub fn apply(live: &LiveConfig, new: Config) -> ReloadOutcome {
    let old = live.get();
    let outcome = diff(&old, &new);
    let mut effective = (*old).clone();
    effective.log_level = new.log_level.clone();
    effective.registration = new.registration;
    effective.allow_user_keys = new.allow_user_keys;
    effective.default_model = new.default_model.clone();
    if let Err(e) = crate::logging::set_level(&effective.log_level) {
        tracing::warn!(error = %e, "could not apply log_level");
    }
    // Sections other modules apply themselves (e.g. tls) travel as read.
    merge_live_sections(&mut effective, &new);
    live.publish(effective);
    outcome
}

/// Copies the live top-level settings not handled by name in [`apply`]
/// from `new` into `effective`, through their TOML form (so a section
/// added to `Config` later and to [`LIVE_SETTINGS`] needs no code here).
fn merge_live_sections(effective: &mut Config, new: &Config) {
    let (Ok(toml::Value::Table(mut e)), Ok(toml::Value::Table(n))) = (
        toml::Value::try_from(&*effective),
        toml::Value::try_from(new),
    ) else {
        return;
    };
    for key in LIVE_SETTINGS {
        match n.get(*key) {
            Some(v) => {
                e.insert(key.to_string(), v.clone());
            }
            None => {
                e.remove(*key);
            }
        }
    }
    match toml::Value::Table(e).try_into::<Config>() {
        Ok(c) => *effective = c,
        Err(err) => tracing::warn!(error = %err, "could not merge reloaded settings"),
    }
}

/// Reloads on every SIGHUP: `load` re-reads all layers; the outcome is
/// logged and reported to systemd (`RELOADING=1`, then `READY=1`).
pub fn spawn_sighup<F>(live: LiveConfig, load: F) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Result<Config, ConfigError> + Send + 'static,
{
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP; configuration reload is unavailable");
            return;
        };
        while hup.recv().await.is_some() {
            crate::ops::systemd::reloading();
            match load() {
                Ok(new) => {
                    let out = apply(&live, new);
                    tracing::info!(
                        applied = ?out.applied,
                        restart_needed = ?out.restart_needed,
                        "configuration reloaded"
                    );
                    if !out.restart_needed.is_empty() {
                        tracing::warn!(
                            settings = ?out.restart_needed,
                            "these changed settings take effect only after a restart"
                        );
                    }
                    crate::ops::systemd::ready("configuration reloaded");
                }
                Err(e) => {
                    tracing::error!(error = %e, "configuration reload failed; keeping the running configuration");
                    crate::ops::systemd::ready("configuration reload failed; see the log");
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RegistrationMode;

    #[test]
    fn diff_splits_live_and_restart_settings() {
        let old = Config::default();
        let mut new = old.clone();
        new.registration = RegistrationMode::Closed;
        new.log_level = "debug".into();
        new.max_body_bytes = 4096;
        new.auth.session_idle_hours = 1;
        let out = diff(&old, &new);
        assert_eq!(out.applied, vec!["log_level", "registration"]);
        assert_eq!(
            out.restart_needed,
            vec!["auth.session_idle_hours", "max_body_bytes"]
        );
        assert_eq!(diff(&old, &old), ReloadOutcome::default());
    }

    #[tokio::test]
    async fn apply_publishes_live_values_only() {
        let live = LiveConfig::new(Config::default());
        let mut rx = live.subscribe();
        let new = Config {
            registration: RegistrationMode::Open,
            max_body_bytes: 4096,
            default_model: Some("m".into()),
            ..Config::default()
        };
        apply(&live, new);
        assert!(rx.has_changed().unwrap());
        let now = rx.borrow_and_update().clone();
        assert_eq!(now.registration, RegistrationMode::Open);
        assert_eq!(now.default_model.as_deref(), Some("m"));
        assert_eq!(now.max_body_bytes, Config::default().max_body_bytes);
        // A reload with nothing changed still wakes subscribers.
        apply(&live, (*live.get()).clone());
        assert!(rx.has_changed().unwrap());
    }
}
