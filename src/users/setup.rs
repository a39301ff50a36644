//! The one-time setup token: while no account exists, a random token is
//! printed as the setup link, and `POST /api/setup` with it creates the
//! first admin.
//!
//! One process keeps its token in memory. Several instances on one
//! database each print their own and record its SHA-256 there, so a link
//! printed by any instance works on every one; creating the first admin is
//! one transaction that fails once any user exists, so only one setup ever
//! succeeds, and it forgets every token.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use subtle::ConstantTimeEq;

use crate::auth::tokens;
use crate::store::cluster::ClusterStore;
use crate::store::{SharedStore, StoreResult};

pub struct SetupGate {
    /// The token this instance printed, while setup is pending.
    token: Mutex<Option<String>>,
    /// The tokens every instance printed, as hashes.
    shared: Option<Arc<dyn ClusterStore>>,
    /// Setup is known to be done (no query needed any more).
    done: AtomicBool,
}

impl SetupGate {
    /// A token when no user exists yet (recorded in the database when
    /// `shared`), none otherwise.
    pub async fn new(
        store: &SharedStore,
        shared: Option<Arc<dyn ClusterStore>>,
    ) -> StoreResult<SetupGate> {
        let token = if store.user_count().await? == 0 {
            let t = tokens::random_token();
            if let Some(s) = &shared {
                s.add_setup_token(&tokens::hash_token(&t)).await?;
            }
            Some(t)
        } else {
            None
        };
        Ok(SetupGate {
            done: AtomicBool::new(token.is_none()),
            token: Mutex::new(token),
            shared,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.token.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The token to print in the setup link, while setup is pending here.
    pub fn token(&self) -> Option<String> {
        self.lock().clone()
    }

    /// Whether setup still has to be done. Shared: until this instance
    /// sees a user (setup may have been done on another instance).
    pub async fn pending(&self, store: &SharedStore) -> bool {
        if self.done.load(Ordering::SeqCst) {
            return false;
        }
        if self.shared.is_none() {
            return self.lock().is_some();
        }
        match store.user_count().await {
            Ok(0) => true,
            Ok(_) => {
                self.done.store(true, Ordering::SeqCst);
                *self.lock() = None;
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell whether setup is done");
                true
            }
        }
    }

    /// Whether `token` is a valid setup token.
    pub async fn check(&self, token: &str) -> StoreResult<bool> {
        if self.done.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let local = self
            .lock()
            .as_ref()
            .is_some_and(|t| bool::from(t.as_bytes().ct_eq(token.as_bytes())));
        if local {
            return Ok(true);
        }
        match &self.shared {
            // A lookup by hash: the hash of a guess reveals nothing.
            Some(s) => s.setup_token_valid(&tokens::hash_token(token)).await,
            None => Ok(false),
        }
    }

    /// Setup is done: no token works any more.
    pub async fn finish(&self) {
        self.done.store(true, Ordering::SeqCst);
        *self.lock() = None;
        if let Some(s) = &self.shared
            && let Err(e) = s.clear_setup_tokens().await
        {
            // Harmless: a user exists, so no setup can succeed again.
            tracing::warn!(error = %e, "cannot forget the setup tokens");
        }
    }
}
