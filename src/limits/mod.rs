//! Governance: request rate limits (governor), the client address behind
//! trusted proxies, daily quotas with in-flight reservations, usage and
//! cost accounting, and the metrics registry.
//!
//! [`Limits`] is the one handle the rest of the server holds
//! (`AppState::limits`). The HTTP layers live in `http::limits_layer`; chat calls
//! [`Limits::admit`] before an answer starts and [`Limits::finish`] once it
//! has been stored.

pub mod audit;
pub mod failures;
pub mod ip;
pub mod metrics;
pub mod quota;
pub mod rate;
pub mod usage;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;

use crate::auth::CurrentUser;
use crate::chat::generation::{FirstToken, Outcome};
use crate::config::Config;
use crate::error::AppError;
use crate::store::SharedStore;
use crate::store::chat::Message;
use quota::{Effective, Quotas, Refusal, Reservation};
use rate::{Class, Decision, RateLimits};
use usage::Prices;

/// The client address of a request, resolved once per request by
/// `http::limits_layer::track` (through the trusted proxies).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

pub struct Limits {
    pub rate: RateLimits,
    pub proxies: ip::TrustedProxies,
    pub quotas: Arc<Quotas>,
    pub prices: Prices,
    pub metrics: metrics::Metrics,
    quota_default: crate::config::QuotaConfig,
    max_running: u32,
}

impl Limits {
    /// With `cluster`, rate limits and quota reservations live in the
    /// database every instance shares.
    pub fn new(cfg: &Config, cluster: Option<&crate::cluster::Cluster>) -> Limits {
        Limits {
            rate: RateLimits::new(&cfg.limits, &cfg.auth, cluster.map(|c| c.store.clone())),
            proxies: ip::TrustedProxies::new(&cfg.trusted_proxies),
            quotas: Quotas::new(cluster.map(|c| (c.store.clone(), c.id))),
            prices: Prices::new(&cfg.prices),
            metrics: metrics::Metrics::new(),
            quota_default: cfg.quota.clone(),
            max_running: cfg.limits.max_concurrent_generations.max(1),
        }
    }

    /// The daily limits that apply to `user`.
    pub fn quota_of(&self, user: &crate::store::User) -> Effective {
        Effective::resolve(user.quota.as_ref(), &self.quota_default)
    }

    /// Counts one request of `user` against the per-user API limit, for
    /// what arrives outside the HTTP layer (WebSocket frames).
    pub async fn check_api(&self, user: Uuid) -> Result<(), AppError> {
        if !self.rate.enabled {
            return Ok(());
        }
        let d = self.rate.api.check(&user).await;
        if d.allowed {
            return Ok(());
        }
        self.metrics.rate_limited(Class::Api.label());
        Err(AppError::RateLimited {
            message: format!(
                "too many requests; you may make {} in a burst, try again in {} s",
                d.limit, d.reset_secs
            ),
            retry_after: d.reset_secs,
        })
    }

    /// Admits one new answer of `user`: the per-user chat rate limit, the
    /// cap on running answers and the daily quota (reserving one message
    /// and `estimate` tokens). The reservation is settled by [`Self::finish`].
    pub async fn admit(
        &self,
        store: &SharedStore,
        user: &CurrentUser,
        estimate: u64,
    ) -> Result<Reservation, AppError> {
        if self.rate.enabled {
            let d = self.rate.chat.check(&user.id()).await;
            rate::note_decision(d);
            if !d.allowed {
                self.metrics.rate_limited(Class::Chat.label());
                return Err(AppError::RateLimited {
                    message: format!(
                        "too many new answers; you may start {} in a burst, try again in {} s",
                        d.limit, d.reset_secs
                    ),
                    retry_after: d.reset_secs,
                });
            }
        }
        // Group quota defaults sit beneath the user's own override.
        let merged = crate::groups::with_group_quotas(store, &user.user).await?;
        let quota = self.quota_of(&merged);
        let outcome = self
            .quotas
            .reserve(store, user.id(), quota, self.max_running, estimate)
            .await?;
        match outcome {
            Ok(r) => Ok(r),
            Err(Refusal::Concurrency { limit }) => {
                self.metrics.rate_limited(Class::Concurrency.label());
                rate::note_decision(Decision {
                    allowed: false,
                    limit,
                    remaining: 0,
                    reset_secs: 1,
                });
                Err(AppError::RateLimited {
                    message: format!(
                        "you already have {limit} answers running; wait for one to finish"
                    ),
                    retry_after: 1,
                })
            }
            Err(Refusal::Messages { limit, used }) => {
                self.metrics.quota_rejected("messages");
                Err(quota_exceeded(format!(
                    "daily message quota used up ({used} of {limit} messages today, counting answers still running)"
                )))
            }
            Err(Refusal::Tokens { limit, used }) => {
                self.metrics.quota_rejected("tokens");
                Err(quota_exceeded(format!(
                    "daily token quota used up ({used} of {limit} tokens today)"
                )))
            }
        }
    }

    /// What an ended answer is charged: one message and its tokens when it
    /// consumed any (it completed, produced text, or the provider reported
    /// usage); nothing when it failed before the provider did any work.
    pub fn charge_for(
        &self,
        msg: &Message,
        outcome: Outcome,
    ) -> Option<crate::store::usage::Charge> {
        let u = msg.usage.unwrap_or_default();
        let consumed = outcome == Outcome::Complete || !msg.content.is_empty() || !u.estimated;
        consumed.then(|| {
            self.prices.charge(
                msg.provider.as_deref().unwrap_or(""),
                msg.model.as_deref().unwrap_or(""),
                1,
                u.input_tokens,
                u.output_tokens,
            )
        })
    }

    /// Settles an answer's reservation with what it used (in the
    /// background: called from the generation's finish hook).
    pub fn finish(
        self: &Arc<Self>,
        store: &SharedStore,
        reservation: Reservation,
        msg: &Message,
        outcome: Outcome,
    ) {
        let charge = self.charge_for(msg, outcome);
        let provider = msg.provider.clone().unwrap_or_default();
        let model = msg.model.clone().unwrap_or_default();
        let m = &self.metrics;
        let outcome_label = match outcome {
            Outcome::Complete => "complete",
            Outcome::Stopped => "stopped",
            Outcome::Failed => "failed",
        };
        m.generations
            .get_or_create(&metrics::GenLabels {
                provider: provider.clone(),
                model: model.clone(),
                outcome: outcome_label.into(),
            })
            .inc();
        if let Some(err) = &msg.error {
            m.provider_errors
                .get_or_create(&metrics::ErrorLabels {
                    provider: provider.clone(),
                    code: err.code.clone(),
                })
                .inc();
        }
        if let Some(c) = &charge {
            m.tokens(&provider, &model, "answer", c.input_tokens, c.output_tokens);
        }
        let store = store.clone();
        let user = reservation.user();
        crate::store::background::spawn(async move {
            if let Err(e) = reservation.settle(&store, charge).await {
                tracing::error!(%user, error = %e, "failed to record usage");
            }
        });
    }

    /// Settles a stateless call's reservation (`/v1`): charged one message
    /// and its tokens (the provider's count, else the estimate) when the
    /// provider did work, to the user and to the API key it was made with;
    /// nothing when it failed before. Awaited, so the usage is recorded
    /// before the caller sees the call end.
    pub async fn finish_call(
        &self,
        store: &SharedStore,
        reservation: Reservation,
        end: CallEnd<'_>,
    ) {
        let outcome_label = match end.outcome {
            Outcome::Complete => "complete",
            Outcome::Stopped => "stopped",
            Outcome::Failed => "failed",
        };
        let m = &self.metrics;
        m.v1_calls
            .get_or_create(&metrics::V1Labels {
                endpoint: end.endpoint.into(),
                provider: end.provider.into(),
                model: end.model.into(),
                outcome: outcome_label.into(),
            })
            .inc();
        if let Some(code) = end.error_code {
            m.provider_errors
                .get_or_create(&metrics::ErrorLabels {
                    provider: end.provider.into(),
                    code: code.into(),
                })
                .inc();
        }
        let charge = end.consumed.then(|| {
            let mut c = self.prices.charge(
                end.provider,
                end.model,
                1,
                end.usage.input_tokens,
                end.usage.output_tokens,
            );
            c.api_key = end.api_key;
            c
        });
        if let Some(c) = &charge {
            m.tokens(
                end.provider,
                end.model,
                "v1",
                c.input_tokens,
                c.output_tokens,
            );
        }
        let user = reservation.user();
        if let Err(e) = reservation.settle(store, charge).await {
            tracing::error!(%user, error = %e, "failed to record usage");
        }
    }

    /// Charges the tokens of a title request (no message, no reservation).
    pub async fn charge_title(
        &self,
        store: &SharedStore,
        user: Uuid,
        provider: &str,
        model: &str,
        input: u64,
        output: u64,
    ) {
        let c = self.prices.charge(provider, model, 0, input, output);
        if c.is_empty() {
            return;
        }
        self.metrics.tokens(provider, model, "title", input, output);
        if let Err(e) = self.quotas.charge(store, user, c).await {
            tracing::error!(%user, error = %e, "failed to record title usage");
        }
    }

    /// Records the time to the first streamed text of an answer, measured
    /// from `started` (when the request arrived), under the provider that
    /// answered. The generation calls it at its first delta (no task of its
    /// own per answer).
    pub fn first_token_observer(self: &Arc<Self>, started: Instant) -> FirstToken {
        let me = self.clone();
        Box::new(move |provider: &str| {
            me.metrics
                .first_token
                .get_or_create(&metrics::ProviderLabels {
                    provider: provider.to_string(),
                })
                .observe(started.elapsed().as_secs_f64());
        })
    }

    /// Drops limiter keys and quota slots nobody uses any more.
    pub fn prune(&self) {
        self.rate.prune();
        self.quotas.prune();
    }
}

/// How a stateless call ended (see [`Limits::finish_call`]).
#[derive(Debug, Clone)]
pub struct CallEnd<'a> {
    /// chat | embeddings
    pub endpoint: &'static str,
    pub provider: &'a str,
    pub model: &'a str,
    pub api_key: Option<Uuid>,
    pub usage: crate::store::chat::Usage,
    pub outcome: Outcome,
    /// The provider did work: it answered, wrote text, or reported usage.
    pub consumed: bool,
    pub error_code: Option<&'a str>,
}

fn quota_exceeded(what: String) -> AppError {
    AppError::QuotaExceeded {
        message: format!(
            "{what}; it resets at {} (UTC midnight)",
            crate::clock::format_rfc3339(usage::next_reset())
        ),
        retry_after: Some(usage::secs_until_reset()),
    }
}
