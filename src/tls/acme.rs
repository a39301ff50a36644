//! Automatic certificates from an ACME CA (Let's Encrypt unless told
//! otherwise) with instant-acme.
//!
//! - The account and every certificate and key live in the store (`acme`
//!   table); a restart serves the stored certificate and orders nothing
//!   while it is valid.
//! - Issuance answers HTTP-01 on the plain-HTTP listener or TLS-ALPN-01 in
//!   the certificate resolver; when validation fails in a way the other
//!   method might not (a blocked port, a proxy in front), the other one is
//!   tried at once with a fresh order. The method that worked is tried first
//!   next time.
//! - Renewal: the task wakes at least every few hours and renews once a
//!   third of the lifetime is left, or earlier when the CA's ACME Renewal
//!   Information (RFC 9773) window says so (and then tells the CA which
//!   certificate the order replaces). Failures retry with exponential
//!   backoff capped at a day, or at the time the CA names.
//! - Every failure becomes a sentence with what to do about it, in the log
//!   and in the status (`/health/deep`, `GET /api/admin/tls`).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse,
    CertificateIdentifier, ChallengeType, HttpClient, Identifier, NewAccount, NewOrder, Order,
    OrderStatus, Problem, RetryPolicy,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_util::sync::CancellationToken;

use super::Tls;
use super::certs::{self, CertSource};
use crate::config::Config;
use crate::config::tls::LETS_ENCRYPT;
use crate::store::acme::{AcmeAccountRecord, AcmeCertRecord};
use crate::store::cluster::NoticeKind;
use crate::store::{SharedStore, WeakStore};

/// The renewal task wakes at least this often.
const CHECK_EVERY: Duration = Duration::from_secs(4 * 3600);
const MAX_BACKOFF: Duration = Duration::from_secs(24 * 3600);
/// First retry after a failure that is probably over soon (network, CA hiccup).
const TRANSIENT_BACKOFF: Duration = Duration::from_secs(30);
/// First retry after any other failure: slow enough that an operator's
/// mistake does not use up the CA's failed-validation limit.
const BACKOFF: Duration = Duration::from_secs(5 * 60);
/// How long the CA may take to validate (Pebble alone waits up to 15 s).
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(150);
/// One whole attempt: account, order, validation, certificate.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Clone, Debug)]
pub struct AcmeSettings {
    /// Lowercase; the first is the primary name.
    pub domains: Vec<String>,
    pub email: Option<String>,
    pub directory: String,
    pub ca_root: Option<PathBuf>,
    /// A plain-HTTP listener runs, so HTTP-01 can be answered.
    pub http01: bool,
}

impl AcmeSettings {
    pub fn from_config(cfg: &Config) -> AcmeSettings {
        let t = &cfg.tls;
        AcmeSettings {
            domains: t
                .domains
                .iter()
                .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
            email: t.acme_email.clone().filter(|e| !e.trim().is_empty()),
            directory: t.acme_directory_url(),
            ca_root: t.acme_ca_root.clone(),
            http01: !matches!(t.http_listen(), crate::config::HttpListen::Off),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Http01,
    TlsAlpn01,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Http01 => "http-01",
            Method::TlsAlpn01 => "tls-alpn-01",
        }
    }

    fn parse(s: &str) -> Option<Method> {
        match s {
            "http-01" => Some(Method::Http01),
            "tls-alpn-01" => Some(Method::TlsAlpn01),
            _ => None,
        }
    }

    fn acme(self) -> ChallengeType {
        match self {
            Method::Http01 => ChallengeType::Http01,
            Method::TlsAlpn01 => ChallengeType::TlsAlpn01,
        }
    }

    fn other(self) -> Method {
        match self {
            Method::Http01 => Method::TlsAlpn01,
            Method::TlsAlpn01 => Method::Http01,
        }
    }

    fn port(self) -> u16 {
        match self {
            Method::Http01 => 80,
            Method::TlsAlpn01 => 443,
        }
    }
}

/// Why an attempt failed, in words for the operator.
#[derive(Clone, Debug, Default)]
struct Failure {
    message: String,
    hint: Option<String>,
    /// The CA said not before this time (unix seconds).
    retry_at: Option<i64>,
    /// Validation failed in a way the other challenge type might not.
    try_other: bool,
    /// Probably over soon (network, bad nonce, CA hiccup): retry sooner.
    transient: bool,
    /// The CA no longer knows the stored account: make a new one.
    reset_account: bool,
}

impl Failure {
    fn new(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            ..Default::default()
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Failure {
        self.hint = Some(hint.into());
        self
    }

    fn transient(mut self) -> Failure {
        self.transient = true;
        self
    }
}

/// Keeps the ACME certificate valid until `cancel`.
pub async fn run(tls: Arc<Tls>, s: AcmeSettings, store: WeakStore, cancel: CancellationToken) {
    let mut account: Option<Account> = None;
    let mut failures: u32 = 0;
    let mut ari = AriState::default();
    loop {
        let now = crate::clock::now();
        let current = tls.acme_cert();
        let mut due = current.as_ref().map_or(now, renew_by_lifetime);
        let mut replaces = None;
        if let Some(c) = &current
            && let Some((at, id)) = ari.due(&s, &store, &mut account, c).await
        {
            due = due.min(at);
            replaces = Some(id);
        }
        tls.set_renew_at(current.as_ref().map(|_| due));
        if due > now {
            let wait = Duration::from_secs((due - now) as u64).min(CHECK_EVERY);
            if let Some(c) = &current {
                tracing::info!(
                    domains = ?s.domains,
                    not_after = %crate::clock::rfc3339(c.not_after),
                    days_left = (c.not_after - now).div_euclid(86_400),
                    renew_at = %crate::clock::rfc3339(due),
                    "certificate checked"
                );
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => continue,
            }
        }

        let Some(st) = store.upgrade() else { return };
        // Several instances: one renews at a time (the lock ends with its
        // session should it die); the others serve what it stores.
        let renewing = match &tls.shared {
            None => None,
            Some(shared) => match shared.try_lock_renewal().await {
                Ok(Some(lock)) => {
                    // Another instance may have renewed a moment ago.
                    if let Some((rec, loaded)) = newer_stored(&tls, &s, &st).await {
                        tracing::info!(not_after = %loaded.info.not_after, "serving the certificate another instance stored");
                        tls.install(loaded, Some(rec));
                        continue;
                    }
                    Some(lock)
                }
                Ok(None) => {
                    tracing::info!(domains = ?s.domains, "another instance is renewing the certificate; waiting for it");
                    drop(st);
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(LOCK_WAIT) => continue,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take the certificate renewal lock; trying again");
                    drop(st);
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(TRANSIENT_BACKOFF) => continue,
                    }
                }
            },
        };
        tls.set_issuing(true);
        match &current {
            None => {
                tracing::info!(domains = ?s.domains, directory = %s.directory, "requesting a certificate")
            }
            Some(c) => tracing::info!(
                domains = ?s.domains,
                days_left = (c.not_after - now).div_euclid(86_400),
                "renewing the certificate"
            ),
        }
        let attempt = tokio::time::timeout(
            ATTEMPT_TIMEOUT,
            obtain(&tls, &s, &st, &mut account, current.as_ref(), replaces),
        );
        let result = tokio::select! {
            _ = cancel.cancelled() => {
                tls.clear_challenges();
                tls.set_issuing(false);
                return;
            }
            r = attempt => r.unwrap_or_else(|_| Err(Failure::new(format!(
                "obtaining the certificate took longer than {} minutes", ATTEMPT_TIMEOUT.as_secs() / 60
            )).transient())),
        };
        tls.set_issuing(false);
        match result {
            Ok((rec, loaded)) => {
                failures = 0;
                ari = AriState::default();
                tracing::info!(
                    domains = ?rec.domains,
                    challenge = rec.challenge.as_deref().unwrap_or("?"),
                    issuer = %loaded.info.issuer,
                    not_after = %loaded.info.not_after,
                    days_left = loaded.info.days_left,
                    "{}",
                    if current.is_some() { "certificate renewed" } else { "certificate issued" }
                );
                let r = rec.clone();
                if let Err(e) = st.put_acme_cert(&r).await {
                    tracing::error!(error = %e, "could not store the new certificate; it is in use but will be requested again after a restart");
                } else if let Some(shared) = &tls.shared
                    && let Err(e) = shared.certificate_stored().await
                {
                    tracing::warn!(error = %e, "cannot tell the other instances about the new certificate; they find it at their next look");
                }
                // Stored: another instance taking the lock now finds it.
                drop(renewing);
                tls.install(loaded, Some(rec));
            }
            Err(f) => {
                // Not held through the backoff: another instance may try.
                drop(renewing);
                failures += 1;
                if f.reset_account {
                    account = None;
                    let dir = s.directory.clone();
                    let _ = st.delete_acme_account(&dir).await;
                }
                let delay = retry_delay(failures, f.transient, f.retry_at, crate::clock::now());
                let retry_at = crate::clock::now() + delay.as_secs() as i64;
                tracing::error!(
                    domains = ?s.domains,
                    error = %f.message,
                    hint = f.hint.as_deref().unwrap_or(""),
                    attempt = failures,
                    retry_at = %crate::clock::rfc3339(retry_at),
                    "could not obtain a certificate"
                );
                tls.record_error(f.message, f.hint, Some(retry_at));
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
        drop(st);
    }
}

/// How long an instance waits while another holds the renewal lock.
const LOCK_WAIT: Duration = Duration::from_secs(60);
/// How often an instance looks for a certificate another one stored,
/// besides being told.
const STORED_POLL: Duration = Duration::from_secs(60);

/// Several instances: serves the certificate another instance stored as
/// soon as it is told (or finds it at its next look), without a restart.
pub async fn follow_stored(
    tls: Arc<Tls>,
    s: AcmeSettings,
    store: WeakStore,
    cancel: CancellationToken,
) {
    let Some(shared) = tls.shared.clone() else {
        return;
    };
    let mut notices = shared.subscribe();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            n = notices.recv() => match n {
                Ok(n) if matches!(n.kind, NoticeKind::Certificate | NoticeKind::Reconnected) => {}
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    notices = shared.subscribe();
                }
            },
            _ = tokio::time::sleep(STORED_POLL) => {}
        }
        let Some(st) = store.upgrade() else { return };
        if let Some((rec, loaded)) = newer_stored(&tls, &s, &st).await {
            tracing::info!(
                domains = ?rec.domains,
                not_after = %loaded.info.not_after,
                "serving the certificate another instance stored"
            );
            tls.install(loaded, Some(rec));
        }
    }
}

/// The stored certificate, when it is newer than the one served.
async fn newer_stored(
    tls: &Tls,
    s: &AcmeSettings,
    st: &SharedStore,
) -> Option<(AcmeCertRecord, certs::Loaded)> {
    let rec = st.get_acme_cert(&s.directory, &s.domains).await.ok()??;
    let current = tls.acme_cert();
    if current
        .as_ref()
        .is_some_and(|c| c.chain_pem == rec.chain_pem || c.not_after > rec.not_after)
    {
        return None;
    }
    match certs::from_pem(
        rec.chain_pem.as_bytes(),
        rec.key_pem.as_bytes(),
        CertSource::Acme,
        "stored certificate",
        "stored key",
    ) {
        Ok(l) => Some((rec, l)),
        Err(e) => {
            tracing::warn!(error = %e, "the certificate another instance stored cannot be used");
            None
        }
    }
}

/// How long to wait after the `failures`-th failure in a row: 5 minutes
/// (30 s for trouble that is probably over soon), doubling with every
/// further failure up to a day; never before the time the CA named.
fn retry_delay(failures: u32, transient: bool, ca_retry_at: Option<i64>, now: i64) -> Duration {
    let base = if transient {
        TRANSIENT_BACKOFF
    } else {
        BACKOFF
    };
    let mut delay = base
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    if let Some(at) = ca_retry_at {
        delay = delay.max(Duration::from_secs((at - now).max(0) as u64));
    }
    delay
}

/// When a third of the lifetime is left.
fn renew_by_lifetime(c: &AcmeCertRecord) -> i64 {
    c.not_after - (c.not_after - c.not_before) / 3
}

/// The CA's renewal window for the current certificate, when it offers ARI.
#[derive(Default)]
struct AriState {
    /// (serial, window start, window end, chosen time, fetch again at)
    cached: Option<(String, i64, i64, i64, i64)>,
}

impl AriState {
    async fn due(
        &mut self,
        s: &AcmeSettings,
        store: &WeakStore,
        account: &mut Option<Account>,
        cert: &AcmeCertRecord,
    ) -> Option<(i64, CertificateIdentifier<'static>)> {
        let now = crate::clock::now();
        let der = CertificateDer::pem_slice_iter(cert.chain_pem.as_bytes())
            .next()?
            .ok()?;
        let id = CertificateIdentifier::try_from(&der).ok()?.into_owned();
        let serial = id.serial.to_string();
        if let Some((sn, _, _, chosen, refetch)) = &self.cached
            && *sn == serial
            && now < *refetch
        {
            return Some((*chosen, id));
        }
        let st = store.upgrade()?;
        let acct = match ensure_account(s, &st, account).await {
            Ok(a) => a,
            Err(f) => {
                tracing::debug!(error = %f.message, "no ACME account for a renewal-information check");
                return None;
            }
        };
        drop(st);
        match acct.renewal_info(&id).await {
            Ok((info, retry)) => {
                let (start, end) = (
                    info.suggested_window.start.unix_timestamp(),
                    info.suggested_window.end.unix_timestamp(),
                );
                // Keep the chosen moment while the window stays the same.
                let chosen = match &self.cached {
                    Some((sn, a, b, c, _)) if *sn == serial && *a == start && *b == end => *c,
                    _ if start <= now => now,
                    _ => {
                        start
                            + rand::Rng::gen_range(
                                &mut rand::thread_rng(),
                                0..=(end - start).max(0),
                            )
                    }
                };
                let refetch = now
                    + retry
                        .as_secs()
                        .clamp(3600, CHECK_EVERY.as_secs())
                        .min(i64::MAX as u64) as i64;
                self.cached = Some((serial, start, end, chosen, refetch));
                tracing::debug!(
                    window_start = start,
                    window_end = end,
                    chosen,
                    "ACME renewal information"
                );
                Some((chosen, id))
            }
            Err(instant_acme::Error::Unsupported(_)) => None,
            Err(e) => {
                tracing::debug!(error = %e, "ACME renewal information unavailable");
                None
            }
        }
    }
}

/// Orders, validates and downloads a certificate, trying the other
/// challenge type when the first fails in a way it might not.
async fn obtain(
    tls: &Tls,
    s: &AcmeSettings,
    store: &SharedStore,
    account: &mut Option<Account>,
    current: Option<&AcmeCertRecord>,
    replaces: Option<CertificateIdentifier<'static>>,
) -> Result<(AcmeCertRecord, certs::Loaded), Failure> {
    let acct = ensure_account(s, store, account).await?;
    let default = if s.http01 {
        Method::Http01
    } else {
        Method::TlsAlpn01
    };
    let first = current
        .and_then(|c| c.challenge.as_deref())
        .and_then(Method::parse)
        .filter(|m| s.http01 || *m == Method::TlsAlpn01)
        .unwrap_or(default);
    let mut methods = vec![first];
    if s.http01 {
        methods.push(first.other());
    }
    let mut earlier: Option<(Method, Failure)> = None;
    for (i, m) in methods.iter().copied().enumerate() {
        let result = match order_with(tls, &acct, s, m, replaces.clone()).await {
            Err(f) if replaces.is_some() && f.message.contains("replace") => {
                // The CA would not take this as a replacement (already
                // replaced, say): a plain order then.
                order_with(tls, &acct, s, m, None).await
            }
            r => r,
        };
        match result {
            Ok((chain, key)) => {
                let loaded = certs::from_pem(
                    chain.as_bytes(),
                    key.as_bytes(),
                    CertSource::Acme,
                    "the issued certificate",
                    "its key",
                )
                .map_err(|e| {
                    Failure::new(format!("the CA sent a certificate confab cannot use: {e}"))
                })?;
                let rec = AcmeCertRecord {
                    directory: s.directory.clone(),
                    domains: s.domains.clone(),
                    chain_pem: chain,
                    key_pem: key,
                    not_before: loaded.info.not_before_ts,
                    not_after: loaded.info.not_after_ts,
                    issued_at: crate::clock::now(),
                    challenge: Some(m.name().to_string()),
                };
                if let Some((em, ef)) = earlier {
                    tracing::warn!(
                        failed = em.name(),
                        worked = m.name(),
                        error = %ef.message,
                        "one challenge type failed and the other worked; the working one is tried first from now on"
                    );
                }
                return Ok((rec, loaded));
            }
            Err(f) => {
                if f.try_other && i + 1 < methods.len() {
                    tracing::warn!(
                        method = m.name(),
                        error = %f.message,
                        hint = f.hint.as_deref().unwrap_or(""),
                        "validation failed; trying {} instead",
                        m.other().name()
                    );
                    earlier = Some((m, f));
                    continue;
                }
                return Err(match earlier {
                    Some((em, ef)) => Failure {
                        message: format!(
                            "{}: {}; {}: {}",
                            em.name(),
                            ef.message,
                            m.name(),
                            f.message
                        ),
                        hint: match (ef.hint, f.hint) {
                            (Some(a), Some(b)) if a != b => Some(format!("{a}; {b}")),
                            (a, b) => a.or(b),
                        },
                        ..f
                    },
                    None => f,
                });
            }
        }
    }
    Err(Failure::new("no challenge type to try"))
}

/// Removes every challenge answer when an order is done, however it ended.
struct ChallengeGuard<'a>(&'a Tls);

impl Drop for ChallengeGuard<'_> {
    fn drop(&mut self) {
        self.0.clear_challenges();
    }
}

/// One order with one challenge type: (PEM chain, PEM key).
async fn order_with(
    tls: &Tls,
    acct: &Account,
    s: &AcmeSettings,
    m: Method,
    replaces: Option<CertificateIdentifier<'static>>,
) -> Result<(String, String), Failure> {
    let ids: Vec<Identifier> = s
        .domains
        .iter()
        .map(|d| Identifier::Dns(d.clone()))
        .collect();
    let mut new = NewOrder::new(&ids);
    if let Some(r) = replaces {
        new = new.replaces(r);
    }
    let mut order = acct
        .new_order(&new)
        .await
        .map_err(|e| explain(e, s, Stage::Order))?;
    let _guard = ChallengeGuard(tls);
    {
        let mut auths = order.authorizations();
        while let Some(a) = auths.next().await {
            let mut a = a.map_err(|e| explain(e, s, Stage::Order))?;
            let domain = a.identifier().to_string();
            match a.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(Failure::new(format!(
                        "the CA's authorization for {domain} is {other:?}"
                    ))
                    .transient());
                }
            }
            let mut ch = a.challenge(m.acme()).ok_or_else(|| Failure {
                message: format!("the CA offers no {} challenge for {domain}", m.name()),
                try_other: true,
                ..Default::default()
            })?;
            let answer = ch.key_authorization();
            match m {
                Method::Http01 => tls
                    .set_http01(ch.token.clone(), answer.as_str().to_string())
                    .await
                    .map_err(|e| Failure::new(e).transient())?,
                Method::TlsAlpn01 => {
                    let cert =
                        certs::alpn_challenge(&domain, answer.digest().as_ref()).map_err(|e| {
                            Failure::new(format!("cannot make the TLS-ALPN-01 certificate: {e}"))
                        })?;
                    tls.resolver.set_alpn_challenge(&domain, cert);
                }
            }
            ch.set_ready()
                .await
                .map_err(|e| explain(e, s, Stage::Validation(m, &domain)))?;
        }
    }
    let poll = RetryPolicy::new()
        .initial_delay(Duration::from_millis(500))
        .backoff(1.5)
        .timeout(VALIDATION_TIMEOUT);
    match order.poll_ready(&poll).await {
        Ok(OrderStatus::Ready) => {}
        Ok(_) => return Err(validation_failure(&mut order, s, m, None).await),
        Err(instant_acme::Error::Api(p)) => {
            return Err(validation_failure(&mut order, s, m, Some(p)).await);
        }
        Err(instant_acme::Error::Timeout(_)) => {
            return Err(Failure {
                message: format!(
                    "the CA did not finish {} validation within {} s",
                    m.name(),
                    VALIDATION_TIMEOUT.as_secs()
                ),
                try_other: true,
                transient: true,
                ..Default::default()
            });
        }
        Err(e) => return Err(explain(e, s, Stage::Order)),
    }
    let key = order
        .finalize()
        .await
        .map_err(|e| explain(e, s, Stage::Order))?;
    let chain = order
        .poll_certificate(&poll)
        .await
        .map_err(|e| explain(e, s, Stage::Order))?;
    Ok((chain, key))
}

/// What the CA said about each name that did not validate.
async fn validation_failure(
    order: &mut Order,
    s: &AcmeSettings,
    m: Method,
    order_problem: Option<Problem>,
) -> Failure {
    let mut found: Vec<Failure> = Vec::new();
    let mut auths = order.authorizations();
    while let Some(Ok(mut a)) = auths.next().await {
        if a.refresh().await.is_err() || a.status == AuthorizationStatus::Valid {
            continue;
        }
        let domain = a.identifier().to_string();
        let problem = a
            .challenges
            .iter()
            .find(|c| c.r#type == m.acme())
            .and_then(|c| c.error.clone());
        if let Some(p) = problem {
            found.push(explain_problem(&p, s, Stage::Validation(m, &domain)));
        }
    }
    if found.is_empty() {
        return match order_problem {
            Some(p) => explain_problem(&p, s, Stage::Validation(m, &s.domains[0])),
            None => Failure {
                message: format!("{} validation failed and the CA gave no reason", m.name()),
                try_other: true,
                ..Default::default()
            },
        };
    }
    let mut first = found.remove(0);
    for f in found {
        first.message = format!("{}; {}", first.message, f.message);
        first.try_other &= f.try_other;
        if first.hint.is_none() {
            first.hint = f.hint;
        }
    }
    first
}

#[derive(Clone, Copy)]
enum Stage<'a> {
    Account,
    Order,
    Validation(Method, &'a str),
}

/// An instant-acme error in operator words.
fn explain(e: instant_acme::Error, s: &AcmeSettings, stage: Stage<'_>) -> Failure {
    match e {
        instant_acme::Error::Api(p) => explain_problem(&p, s, stage),
        instant_acme::Error::Timeout(_) => Failure::new(format!(
            "the ACME server at {} did not answer in time",
            s.directory
        ))
        .hint("a temporary problem at the CA or on the network; confab retries by itself")
        .transient(),
        instant_acme::Error::Json(e) => Failure::new(format!(
            "the server at {} does not speak ACME: {e}",
            s.directory
        ))
        .hint(format!(
            "check --acme-directory (tls.acme_directory): it must be an ACME directory URL such as {LETS_ENCRYPT}"
        )),
        instant_acme::Error::Other(e) => Failure::new(format!(
            "cannot reach the ACME server at {}: {}",
            s.directory,
            error_chain(e.as_ref())
        ))
        .hint(
            "check that this machine can make outbound HTTPS connections and resolve names \
             (try `curl -sI <directory URL>`); a firewall must allow outbound TCP 443",
        )
        .transient(),
        other => Failure::new(format!("ACME: {other}")).transient(),
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = c.source();
    }
    out
}

/// An ACME problem document in operator words, by its type.
fn explain_problem(p: &Problem, s: &AcmeSettings, stage: Stage<'_>) -> Failure {
    let kind = p
        .r#type
        .as_deref()
        .and_then(|t| t.rsplit(':').next())
        .unwrap_or("");
    let detail = p.detail.clone().unwrap_or_else(|| p.to_string());
    let (method, domain) = match stage {
        Stage::Validation(m, d) => (Some(m), d.to_string()),
        _ => (None, s.domains[0].clone()),
    };
    let ca_reach = |m: Method| {
        format!(
            "the CA could not get an answer from {domain} on port {}: open TCP port {} in this \
             server's firewall (e.g. `ufw allow {}/tcp`) and in any cloud firewall or security \
             group, make sure port {} reaches confab, and that the A/AAAA records of {domain} \
             point at this server",
            m.port(),
            m.port(),
            m.port(),
            m.port()
        )
    };
    match kind {
        "rateLimited" => Failure {
            retry_at: retry_after(&detail),
            ..Failure::new(format!("the CA's rate limit was reached: {detail}")).hint(
                "confab waits and tries again by itself (at the time the CA names, when it names \
                 one). Restarting repeatedly with different domain lists uses the limits up; try \
                 changes with --acme-staging first. See https://letsencrypt.org/docs/rate-limits/",
            )
        },
        "invalidContact" | "unsupportedContact" => Failure::new(format!(
            "the CA rejected the contact e-mail {}: {detail}",
            s.email.as_deref().unwrap_or("(none)")
        ))
        .hint(
            "set --acme-email (tls.acme_email) to a working address at a real domain, or leave \
             it out, and restart confab",
        ),
        "dns" => Failure::new(format!("the CA could not look up {domain} in DNS: {detail}")).hint(
            format!(
                "create an A record (and an AAAA record if this server has IPv6) for {domain} \
                 pointing at this server's public IP address, and wait until `dig +short \
                 {domain}` shows it; confab retries by itself"
            ),
        ),
        "connection" => Failure {
            try_other: true,
            ..Failure::new(format!("the CA could not connect to {domain}: {detail}"))
                .hint(ca_reach(method.unwrap_or(Method::Http01)))
        },
        "unauthorized" | "incorrectResponse" if method.is_some() => Failure {
            try_other: true,
            ..Failure::new(format!(
                "the CA reached {domain} but not this confab: {detail}"
            ))
            .hint(format!(
                "the DNS records of {domain} (A and AAAA) point at another server, or a proxy or \
                 CDN sits in front (turn off Cloudflare's proxy for this name), or another web \
                 server answers on port {}; point {domain} straight at this server",
                method.map_or(80, Method::port)
            ))
        },
        "tls" => Failure {
            try_other: true,
            ..Failure::new(format!("TLS problem reaching {domain}: {detail}")).hint(format!(
                "something other than confab answers TLS for {domain} (a proxy, CDN or another \
                 web server); point {domain} straight at this server"
            ))
        },
        "caa" => Failure::new(format!(
            "a CAA record of {domain} does not allow this CA: {detail}"
        ))
        .hint(
            "add a CAA record that allows the CA (for Let's Encrypt: 0 issue \"letsencrypt.org\") \
             or remove the CAA records",
        ),
        "rejectedIdentifier" => Failure::new(format!(
            "the CA will not issue a certificate for {}: {detail}",
            s.domains.join(", ")
        ))
        .hint(
            "use public DNS names you control; IP addresses, localhost and internal names cannot \
             get certificates from a public CA",
        ),
        "externalAccountRequired" => Failure::new(format!("the CA requires an external account binding: {detail}"))
            .hint("confab does not support External Account Binding; use Let's Encrypt (the default)"),
        "userActionRequired" => Failure::new(format!("the CA requires an action from you: {detail}"))
            .hint("follow the CA's instructions (usually: accept new terms of service), then restart confab"),
        "accountDoesNotExist" => Failure {
            reset_account: true,
            transient: true,
            ..Failure::new(format!("the CA no longer knows confab's ACME account: {detail}"))
                .hint("a new account is created on the next attempt")
        },
        "unauthorized" if matches!(stage, Stage::Account) => Failure {
            reset_account: true,
            transient: true,
            ..Failure::new(format!("the CA refused confab's ACME account: {detail}"))
                .hint("a new account is created on the next attempt")
        },
        "badNonce" | "serverInternal" => Failure::new(format!("temporary problem at the CA: {detail}"))
            .hint("confab retries by itself")
            .transient(),
        _ => Failure::new(format!("the CA refused: {detail}")),
    }
}

/// Let's Encrypt says "... retry after 2025-01-01 12:00:00 UTC ...".
fn retry_after(detail: &str) -> Option<i64> {
    let at = detail.find("retry after ")? + "retry after ".len();
    let text = detail.get(at..at + 19)?;
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let t = time::PrimitiveDateTime::parse(text, &fmt).ok()?;
    Some(t.assume_utc().unix_timestamp())
}

/// The stored account, or a new one (stored at once).
async fn ensure_account(
    s: &AcmeSettings,
    store: &SharedStore,
    slot: &mut Option<Account>,
) -> Result<Account, Failure> {
    if let Some(a) = slot {
        return Ok(a.clone());
    }
    let dir = s.directory.clone();
    let stored = store
        .get_acme_account(&dir)
        .await
        .map_err(|e| Failure::new(format!("cannot read the ACME account from the store: {e}")))?;
    let contact: Vec<String> = s.email.iter().map(|e| format!("mailto:{e}")).collect();
    let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
    let account = match stored {
        Some(mut rec) => {
            let creds: AccountCredentials = serde_json::from_value(rec.credentials.clone())
                .map_err(|e| Failure::new(format!("the stored ACME account is unreadable: {e}")))?;
            let a = Account::builder_with_http(http_client(s)?)
                .from_credentials(creds)
                .await
                .map_err(|e| explain(e, s, Stage::Account))?;
            if rec.email != s.email {
                a.update_contacts(&contact)
                    .await
                    .map_err(|e| explain(e, s, Stage::Account))?;
                rec.email = s.email.clone();
                store
                    .put_acme_account(&rec)
                    .await
                    .map_err(|e| Failure::new(format!("cannot store the ACME account: {e}")))?;
                tracing::info!(email = ?s.email, "updated the ACME account's contact e-mail");
            }
            a
        }
        None => {
            let (a, creds) = Account::builder_with_http(http_client(s)?)
                .create(
                    &NewAccount {
                        contact: &contact,
                        terms_of_service_agreed: true,
                        only_return_existing: false,
                    },
                    s.directory.clone(),
                    None,
                )
                .await
                .map_err(|e| explain(e, s, Stage::Account))?;
            let rec = AcmeAccountRecord {
                directory: s.directory.clone(),
                credentials: serde_json::to_value(&creds)
                    .map_err(|e| Failure::new(format!("cannot encode the ACME account: {e}")))?,
                email: s.email.clone(),
                created_at: crate::clock::now(),
            };
            store
                .put_acme_account(&rec)
                .await
                .map_err(|e| Failure::new(format!("cannot store the ACME account: {e}")))?;
            tracing::info!(directory = %s.directory, email = ?s.email, "created an ACME account");
            a
        }
    };
    *slot = Some(account.clone());
    Ok(account)
}

/// instant-acme over confab's own HTTP stack (reqwest: rustls with the
/// built-in web PKI roots and hickory DNS, so the static binary needs no
/// system certificate store), trusting `acme_ca_root` too when given.
struct ReqwestHttp(reqwest::Client);

fn http_client(s: &AcmeSettings) -> Result<Box<dyn HttpClient>, Failure> {
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("confab/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(15))
        .timeout(Duration::from_secs(60));
    if let Some(path) = &s.ca_root {
        let pem = std::fs::read(path).map_err(|e| {
            Failure::new(format!(
                "cannot read tls.acme_ca_root {}: {e}",
                path.display()
            ))
        })?;
        let roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            Failure::new(format!(
                "tls.acme_ca_root {} is not a PEM certificate: {e}",
                path.display()
            ))
        })?;
        for r in roots {
            b = b.add_root_certificate(r);
        }
    }
    let client = b
        .build()
        .map_err(|e| Failure::new(format!("cannot build the ACME HTTP client: {e}")))?;
    Ok(Box::new(ReqwestHttp(client)))
}

impl HttpClient for ReqwestHttp {
    fn request(
        &self,
        req: axum::http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let client = self.0.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = match body.collect().await {
                Ok(b) => b.to_bytes(),
                Err(never) => match never {},
            };
            let req = reqwest::Request::try_from(axum::http::Request::from_parts(parts, body))
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            let rsp = client
                .execute(req)
                .await
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            Ok(BytesResponse::from(axum::http::Response::from(rsp)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AcmeSettings {
        AcmeSettings {
            domains: vec!["chat.example.com".into()],
            email: Some("me@example.org".into()),
            directory: LETS_ENCRYPT.into(),
            ca_root: None,
            http01: true,
        }
    }

    fn problem(kind: &str, detail: &str) -> Problem {
        serde_json::from_value(serde_json::json!({
            "type": format!("urn:ietf:params:acme:error:{kind}"),
            "detail": detail,
            "status": 400
        }))
        .unwrap()
    }

    #[test]
    fn usual_mistakes_say_what_to_do() {
        let s = settings();
        let v = Stage::Validation(Method::Http01, "chat.example.com");
        let f = explain_problem(
            &problem("dns", "NXDOMAIN looking up A for chat.example.com"),
            &s,
            v,
        );
        assert!(f.hint.as_deref().unwrap().contains("A record"), "{f:?}");
        assert!(!f.try_other, "DNS fails for both methods alike");

        let f = explain_problem(
            &problem(
                "connection",
                "Timeout during connect (likely firewall problem)",
            ),
            &s,
            v,
        );
        let h = f.hint.unwrap();
        assert!(h.contains("port 80") && h.contains("firewall"), "{h}");
        assert!(f.try_other);

        let f = explain_problem(
            &problem(
                "unauthorized",
                "Invalid response from http://chat.example.com/.well-known/acme-challenge/x: 404",
            ),
            &s,
            v,
        );
        assert!(f.hint.unwrap().contains("point at another server"));
        assert!(f.try_other);

        let f = explain_problem(
            &problem(
                "rateLimited",
                "too many certificates (5) already issued for this exact set of identifiers in the last 168h0m0s, retry after 2031-01-02 03:04:05 UTC: see https://letsencrypt.org/docs/rate-limits/",
            ),
            &s,
            Stage::Order,
        );
        assert!(f.hint.unwrap().contains("staging"));
        assert_eq!(f.retry_at, Some(1_925_089_445));

        let f = explain_problem(
            &problem("invalidContact", "contact email has forbidden domain"),
            &s,
            Stage::Account,
        );
        assert!(f.message.contains("me@example.org"));
        assert!(f.hint.unwrap().contains("--acme-email"));

        let f = explain_problem(
            &problem("accountDoesNotExist", "no account"),
            &s,
            Stage::Account,
        );
        assert!(f.reset_account);
    }

    #[test]
    fn failures_back_off_exponentially_up_to_a_day() {
        let mins = |n: u32, transient| retry_delay(n, transient, None, 0).as_secs() / 60;
        assert_eq!(
            (1..=10).map(|n| mins(n, false)).collect::<Vec<_>>(),
            [5, 10, 20, 40, 80, 160, 320, 640, 1280, 1440]
        );
        assert_eq!(retry_delay(1, true, None, 0), Duration::from_secs(30));
        assert_eq!(retry_delay(2, true, None, 0), Duration::from_secs(60));
        assert_eq!(retry_delay(12, true, None, 0).as_secs(), 30 << 11);
        for n in [13, 17, 100, u32::MAX] {
            assert_eq!(retry_delay(n, false, None, 0), MAX_BACKOFF, "{n}");
            assert_eq!(retry_delay(n, true, None, 0), MAX_BACKOFF, "{n}");
        }
        // A rate limit's "retry after" wins when it is later...
        assert_eq!(
            retry_delay(1, false, Some(1_000 + 3 * 3600), 1_000),
            Duration::from_secs(3 * 3600)
        );
        // ...and the backoff when it is earlier or past.
        assert_eq!(
            retry_delay(3, false, Some(1_000 + 60), 1_000),
            Duration::from_secs(20 * 60)
        );
        assert_eq!(
            retry_delay(1, false, Some(0), 1_000),
            Duration::from_secs(5 * 60)
        );
    }

    #[test]
    fn renewal_at_a_third_of_the_lifetime_left() {
        let rec = AcmeCertRecord {
            directory: LETS_ENCRYPT.into(),
            domains: vec!["a".into()],
            chain_pem: String::new(),
            key_pem: String::new(),
            not_before: 0,
            not_after: 90 * 86_400,
            issued_at: 0,
            challenge: None,
        };
        assert_eq!(renew_by_lifetime(&rec), 60 * 86_400);
    }
}
