//! The server state every handler receives: configuration, store, and the
//! services built on them. It is built by `app` ([`AppState::new`] lives
//! there, since it wires the HTTP-side provider registry) and read by
//! `http`; nothing here imports either.

use std::ops::Deref;
use std::sync::Arc;

use crate::assets::Assets;
use crate::auth::password::Hasher;
use crate::auth::throttle::LoginThrottle;
use crate::auth::tokens::JwtKeys;
use crate::config::Config;
use crate::store::{AuditEntry, SharedStore};

pub struct AppInner {
    pub cfg: Config,
    pub store: SharedStore,
    pub hasher: Arc<Hasher>,
    pub jwt: JwtKeys,
    pub throttle: LoginThrottle,
    /// The one-time setup token, present while no user exists.
    pub setup: crate::users::setup::SetupGate,
    /// This instance among others on the same database; None with a store
    /// only one process opens (everything it coordinates stays in memory).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// e.g. `http://127.0.0.1:8080`, without a trailing slash.
    pub public_base: String,
    /// Origins whose browser requests are accepted (own + cors_origins).
    pub allowed_origins: Vec<String>,
    pub assets: &'static Assets,
    /// Every LLM provider the server can route to.
    pub providers: Arc<crate::providers::registry::Registry>,
    /// Running and recently finished generations.
    pub generations: Arc<crate::chat::generation::Manager>,
    /// The full-text index of every user's history.
    pub search: Arc<crate::search::Search>,
    /// Documents read from uploaded files, retrieval and collections.
    pub knowledge: Arc<crate::knowledge::Knowledge>,
    /// Rate limits, quotas, usage accounting and metrics.
    pub limits: Arc<crate::limits::Limits>,
    /// The configuration in force now: `cfg` as reloaded by SIGHUP (see
    /// `ops::reload`); read live settings through [`AppState::settings`].
    pub live: crate::ops::reload::LiveConfig,
    /// HTTPS: the certificate served and its upkeep; `None` for plain HTTP.
    pub tls: Option<Arc<crate::tls::Tls>>,
    /// What admins set per model, and their default model (Admin → Models).
    pub models: Arc<crate::model_settings::ModelSettings>,
    /// Uploaded files: records in the store, bytes in the blob store.
    pub files: Arc<crate::files::Files>,
    /// Single sign-on: OpenID Connect providers and the LDAP directory.
    pub sso: Arc<crate::sso::Sso>,
    /// Sends reset and verification mail; None without `[smtp]`.
    pub mailer: Option<Arc<crate::mail::Mailer>>,
    /// Who must use a second factor, as admins set it (cached briefly).
    pub two_factor_policy: PolicyCache,
    /// Imports running or recently finished.
    pub imports: Arc<crate::transfer::jobs::Jobs>,
}

/// The two-factor policy, read from the store at most every few seconds
/// (another instance may change it; this one sees its own change at once).
#[derive(Default)]
pub struct PolicyCache {
    cached: std::sync::Mutex<Option<(crate::store::security::TwoFactorPolicy, std::time::Instant)>>,
}

impl PolicyCache {
    const FRESH: std::time::Duration = std::time::Duration::from_secs(5);

    pub async fn get(
        &self,
        store: &SharedStore,
    ) -> Result<crate::store::security::TwoFactorPolicy, crate::store::StoreError> {
        if let Some((p, at)) = *self.cached.lock().expect("policy cache lock")
            && at.elapsed() < Self::FRESH
        {
            return Ok(p);
        }
        let p = store.two_factor_policy().await?;
        self.set(p);
        Ok(p)
    }

    pub fn set(&self, p: crate::store::security::TwoFactorPolicy) {
        *self.cached.lock().expect("policy cache lock") = Some((p, std::time::Instant::now()));
    }
}

#[derive(Clone)]
pub struct AppState(pub Arc<AppInner>);

impl Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl AppState {
    /// Checks credentials against this server's store, keys and settings.
    pub fn verifier(&self) -> crate::auth::Verifier<'_> {
        crate::auth::Verifier {
            store: &self.store,
            jwt: &self.jwt,
            session_idle_secs: self.cfg.auth.session_idle_hours as i64 * 3600,
        }
    }

    /// The configuration in force now (changes on SIGHUP for the settings
    /// in `ops::reload::LIVE_SETTINGS`, e.g. `registration`).
    pub fn settings(&self) -> Arc<Config> {
        let cfg = self.live.get();
        // The default model an admin chose replaces the config file's.
        match self.models.default_model() {
            Some(m) if cfg.default_model.as_deref() != Some(m.as_str()) => {
                let mut c = (*cfg).clone();
                c.default_model = Some(m);
                Arc::new(c)
            }
            _ => cfg,
        }
    }

    /// The setup link to print, while setup is pending.
    pub fn setup_url(&self) -> Option<String> {
        self.setup
            .token()
            .map(|t| format!("{}/setup?token={t}", self.public_base))
    }

    /// Stores an audit entry. A failure to audit is logged, not surfaced:
    /// the action itself already happened.
    pub async fn audit(&self, e: AuditEntry) {
        let action = e.action.clone();
        if let Err(err) = self.store.append_audit(&e).await {
            tracing::error!(%action, error = %err, "failed to write audit entry");
        }
    }
}
