//! Routing: which provider answers a model name, and failing over to the
//! next one when a provider fails before its answer starts.
//!
//! A model name resolves to candidates in three ways, first match wins:
//! the exact id (or its alias: a name without a tag is the same model as
//! `<name>:latest`, as Ollama treats it) on every enabled provider;
//! `<provider-name>/<model>`, which pins one provider; `<kind>/<model>`
//! (`ollama/llama3.2`), which keeps to providers of that kind. Candidates
//! are ordered by the server's [`Strategy`]; providers cooling down after
//! repeated failures are left out unless nothing else serves the model.
//!
//! [`Registry::open_stream`] is the one entry point for answers: it tries
//! the candidates in order and moves on only while nothing of the answer
//! has arrived (a connect error, a timeout, 429, 5xx, or an error event
//! before the first text), so no text is ever duplicated. A request with
//! a user's own key stays with providers of the kind of the first
//! candidate: the key belongs to that kind.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::registry::{Entry, ProviderStatus, Registry};
use super::{ChatEvent, ChatRequest, ChatStream, Provider, ProviderError, ProviderKind};

/// `[routing] strategy`: how one model served by several providers picks
/// the provider to try first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Highest `priority` first; ties in the order providers were
    /// configured (the config file's order first).
    #[default]
    Priority,
    /// Fewest answers streaming right now first, then as `Priority`.
    LeastBusy,
}

/// Failures in a row that start a cooldown.
pub const FAILURES_TO_COOL: u32 = 3;
/// The first cooldown; each further one (a failure right after a
/// cooldown, with no success between) doubles it up to [`MAX_COOLDOWN`].
pub const FIRST_COOLDOWN: Duration = Duration::from_secs(30);
pub const MAX_COOLDOWN: Duration = Duration::from_secs(300);

/// One provider's recent failures, cooldown and load.
#[derive(Debug, Default)]
pub(super) struct Health {
    failures: u32,
    /// Cooldowns since the last success (doubles the next one).
    strikes: u32,
    until: Option<(Instant, OffsetDateTime)>,
    in_flight: Arc<AtomicUsize>,
}

impl Health {
    /// A request's outcome: a success ends any cooldown; the
    /// [`FAILURES_TO_COOL`]th failure in a row starts one, and after a
    /// cooldown a single failure starts the next, twice as long.
    pub(super) fn record(&mut self, ok: bool, now: Instant) {
        if ok {
            self.failures = 0;
            self.strikes = 0;
            self.until = None;
            return;
        }
        self.failures += 1;
        if self.failures >= FAILURES_TO_COOL || self.strikes > 0 {
            let d = cooldown_for(self.strikes);
            self.until = Some((now + d, OffsetDateTime::now_utc() + d));
            self.strikes = self.strikes.saturating_add(1);
            self.failures = 0;
        }
    }

    pub(super) fn cooling(&self, now: Instant) -> bool {
        self.until.is_some_and(|(until, _)| until > now)
    }

    /// `status` with this health's fields filled in.
    pub(super) fn shown(&self, status: &ProviderStatus) -> ProviderStatus {
        let cooling = self.cooling(Instant::now());
        ProviderStatus {
            cooling_down: cooling,
            cooling_until: self.until.filter(|_| cooling).map(|(_, utc)| utc),
            consecutive_failures: self.failures,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            ..status.clone()
        }
    }
}

/// The length of cooldown number `strikes + 1`.
pub fn cooldown_for(strikes: u32) -> Duration {
    FIRST_COOLDOWN
        .saturating_mul(1u32 << strikes.min(16))
        .min(MAX_COOLDOWN)
}

/// What orders candidates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rank {
    /// Place in the registry: config file order, then the environment,
    /// then detected local servers, then providers added by admins.
    pub position: usize,
    pub priority: i32,
    pub in_flight: usize,
    pub cooling: bool,
}

/// Orders candidates by `strategy` and drops the cooling ones, unless all
/// are cooling (then they are tried all the same, in order).
pub fn order<T>(mut items: Vec<(Rank, T)>, strategy: Strategy) -> Vec<T> {
    items.sort_by(|(a, _), (b, _)| {
        let busy = match strategy {
            Strategy::Priority => std::cmp::Ordering::Equal,
            Strategy::LeastBusy => a.in_flight.cmp(&b.in_flight),
        };
        busy.then(b.priority.cmp(&a.priority))
            .then(a.position.cmp(&b.position))
    });
    if items.iter().any(|(r, _)| !r.cooling) {
        items.retain(|(r, _)| !r.cooling);
    }
    items.into_iter().map(|(_, t)| t).collect()
}

/// True when `a` and `b` name the same model: equal, or equal once a
/// missing tag is read as `:latest`.
pub fn same_model(a: &str, b: &str) -> bool {
    a == b || with_tag(a) == with_tag(b)
}

fn with_tag(id: &str) -> String {
    let base = id.rsplit('/').next().unwrap_or(id);
    if base.contains(':') {
        id.to_string()
    } else {
        format!("{id}:latest")
    }
}

/// The id under which `e` offers `asked`, if it does: its allowlist, or
/// (without one) its last fetched model list; an exact id before an alias.
fn offered(e: &Entry, asked: &str) -> Option<String> {
    let ids: Vec<&str> = match &e.config.models {
        Some(allow) => allow.iter().map(String::as_str).collect(),
        None => e.models.iter().map(|m| m.id.as_str()).collect(),
    };
    ids.iter()
        .find(|id| **id == asked)
        .or_else(|| ids.iter().find(|id| same_model(id, asked)))
        .map(|id| id.to_string())
}

/// One provider that may answer, with the model id it knows the model by.
#[derive(Clone)]
pub struct Candidate {
    pub provider_name: String,
    pub kind: ProviderKind,
    /// The provider's own id for the model (`llama3.2:latest` for
    /// `llama3.2`); what the request it gets names.
    pub model: String,
    pub provider: Arc<dyn Provider>,
    in_flight: Arc<AtomicUsize>,
    /// Its admin lets users bring their own keys to it.
    pub user_keys: bool,
}

/// A request made with a user's own key.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyScope {
    /// The kind the key belongs to, as the caller said.
    pub kind: Option<ProviderKind>,
}

impl std::fmt::Debug for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Candidate")
            .field("provider_name", &self.provider_name)
            .field("model", &self.model)
            .finish()
    }
}

/// A started answer and who gives it.
pub struct Routed {
    pub provider_name: String,
    /// The provider's id of the model.
    pub model: String,
    /// The answer, starting with its first event (text, a tool call or the
    /// end); errors in it came after the answer began and are final.
    pub stream: ChatStream,
}

impl std::fmt::Debug for Routed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routed")
            .field("provider_name", &self.provider_name)
            .field("model", &self.model)
            .finish()
    }
}

/// Errors after which the next provider may be tried: nothing was
/// answered, and another provider may well answer.
pub fn fails_over(e: &ProviderError) -> bool {
    match e {
        ProviderError::Unreachable(_)
        | ProviderError::Timeout(_)
        | ProviderError::RateLimited { .. }
        | ProviderError::Protocol(_) => true,
        ProviderError::Upstream { status, .. } => *status >= 500,
        _ => false,
    }
}

/// Whether a failure counts towards the provider's cooldown: only its own
/// faults. A refused key, an unknown model or a bad request would fail the
/// same way anywhere, and a user's own key may hit that user's rate limit.
pub fn counts_against(e: &ProviderError, own_key: bool) -> bool {
    match e {
        ProviderError::RateLimited { .. } => !own_key,
        other => fails_over(other),
    }
}

/// Counts an answer in its provider's in-flight number while it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(counter: Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        InFlight(counter)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Registry {
    /// The providers that may answer `model`, in the order to try them.
    /// With `own_key`, only those of the first one's kind.
    pub fn candidates(&self, model: &str, own_key: bool) -> Vec<Candidate> {
        let key = own_key.then_some(KeyScope { kind: None });
        self.candidates_for(model, key)
    }

    /// [`Registry::candidates`] for a request made with a user's own key
    /// (`key`): only providers whose admin allows users' keys, never an
    /// Ollama one (own keys are OpenAI-compatible or Anthropic keys), and
    /// only those of the key's kind (or, when the caller did not say, of
    /// the first candidate's).
    pub fn candidates_for(&self, model: &str, key: Option<KeyScope>) -> Vec<Candidate> {
        let now = Instant::now();
        let entries = self.read();
        let enabled = || entries.iter().enumerate().filter(|(_, e)| e.config.enabled);
        let pick = |(position, e): (usize, &Entry), id: String| {
            (
                Rank {
                    position,
                    priority: e.config.priority,
                    in_flight: e.health.in_flight.load(Ordering::Relaxed),
                    cooling: e.health.cooling(now),
                },
                Candidate {
                    provider_name: e.config.name.clone(),
                    kind: e.config.kind,
                    model: id,
                    provider: e.provider.clone(),
                    in_flight: e.health.in_flight.clone(),
                    user_keys: e.config.allow_user_keys,
                },
            )
        };
        let mut found: Vec<(Rank, Candidate)> = enabled()
            .filter_map(|e| offered(e.1, model).map(|id| pick(e, id)))
            .collect();
        if found.is_empty()
            && let Some((prefix, rest)) = model.split_once('/')
            && !rest.is_empty()
        {
            if let Some((i, e)) = enabled().find(|(_, e)| e.config.name == prefix) {
                // A provider whose list is not known yet (down at the last
                // refresh) is asked anyway, under the name given.
                let id = offered(e, rest).or_else(|| {
                    (e.config.models.is_none() && e.models.is_empty()).then(|| rest.to_string())
                });
                found.extend(id.map(|id| pick((i, e), id)));
            } else if let Ok(kind) = prefix.parse::<ProviderKind>()
                && prefix == kind.as_str()
            {
                found = enabled()
                    .filter(|(_, e)| e.config.kind == kind)
                    .filter_map(|e| offered(e.1, rest).map(|id| pick(e, id)))
                    .collect();
            }
        }
        drop(entries);
        let mut ordered = order(found, self.strategy());
        if let Some(key) = key {
            ordered.retain(|c| c.user_keys && c.kind != ProviderKind::Ollama);
            if let Some(kind) = key.kind.or_else(|| ordered.first().map(|c| c.kind)) {
                ordered.retain(|c| c.kind == kind);
            }
        }
        ordered
    }

    /// Starts an answer from the first candidate for `model` that begins
    /// one, failing over as the module docs say. `req.model` is replaced by
    /// each provider's own id. The error is the last candidate's (or
    /// MODEL_NOT_FOUND when nothing serves the model).
    pub async fn open_stream(
        self: &Arc<Self>,
        model: &str,
        req: ChatRequest,
    ) -> Result<Routed, ProviderError> {
        let key = req.api_key_override.is_some().then_some(KeyScope {
            kind: req.api_key_kind,
        });
        let candidates = self.candidates_for(model, key);
        let mut last =
            ProviderError::ModelNotFound(format!("model {model:?} is not offered by any provider"));
        let mut req = Some(req);
        let n = candidates.len();
        for (i, c) in candidates.into_iter().enumerate() {
            // The last candidate takes the request itself: an answer that
            // waits for its first token holds no spare copy of the context.
            let Some(r) = (if i + 1 == n { req.take() } else { req.clone() }) else {
                break;
            };
            match self.try_one(&c, r).await {
                Ok(routed) => return Ok(routed),
                Err(e) => {
                    let next = fails_over(&e);
                    if next {
                        tracing::warn!(
                            provider = %c.provider_name,
                            code = e.code(),
                            "provider failed before answering; trying the next one"
                        );
                    }
                    last = e;
                    if !next {
                        break;
                    }
                }
            }
        }
        Err(last)
    }

    /// One candidate, up to its first event of the answer. Outcomes are
    /// reported, so failures count towards a cooldown.
    async fn try_one(
        self: &Arc<Self>,
        c: &Candidate,
        mut r: ChatRequest,
    ) -> Result<Routed, ProviderError> {
        let own_key = r.api_key_override.is_some();
        let guard = InFlight::new(c.in_flight.clone());
        r.model = c.model.clone();
        let mut stream = match c.provider.stream(r).await {
            Ok(s) => s,
            Err(e) => {
                self.report_as(&c.provider_name, Err(&e), own_key);
                return Err(e);
            }
        };
        // Usage may come before the text (Anthropic's message_start);
        // it is held back until the answer has really begun.
        let mut held = Vec::new();
        loop {
            match stream.next().await {
                Some(Ok(ev)) if !begins_answer(&ev) => held.push(Ok(ev)),
                Some(Ok(ev)) => {
                    held.push(Ok(ev));
                    break;
                }
                Some(Err(e)) => {
                    self.report_as(&c.provider_name, Err(&e), own_key);
                    return Err(e);
                }
                None => {
                    let e = ProviderError::Protocol(super::ENDED_EARLY.into());
                    self.report_as(&c.provider_name, Err(&e), own_key);
                    return Err(e);
                }
            }
        }
        self.report_as(&c.provider_name, Ok(()), own_key);
        let weak: Weak<Registry> = Arc::downgrade(self);
        let name = c.provider_name.clone();
        let rest = stream.map(move |item| {
            // The guard lives as long as the stream.
            let _ = &guard;
            if let Err(e) = &item
                && let Some(reg) = weak.upgrade()
            {
                reg.report_as(&name, Err(e), own_key);
            }
            item
        });
        Ok(Routed {
            provider_name: c.provider_name.clone(),
            model: c.model.clone(),
            stream: futures::stream::iter(held).chain(rest).boxed(),
        })
    }
}

/// An event that shows the answer has begun: text, a tool call, the end.
fn begins_answer(ev: &ChatEvent) -> bool {
    match ev {
        ChatEvent::Delta(t) => !t.is_empty(),
        ChatEvent::ToolCall(_) | ChatEvent::Done { .. } => true,
        ChatEvent::Usage { .. } => false,
    }
}

/// One entry of the model list with what a picker needs to show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogModel {
    pub model: super::RegistryModel,
    /// Every provider serving this model (aliases included), in name order.
    pub providers: Vec<String>,
    /// Another provider lists the same model: show the provider's name.
    pub duplicate: bool,
    /// The provider is not known to be down and is not cooling down.
    pub reachable: bool,
    pub cooling_down: bool,
}

impl Registry {
    /// [`Registry::models`], each with its providers and reachability.
    pub fn catalog(&self) -> Vec<CatalogModel> {
        let models = self.models();
        let statuses: std::collections::HashMap<String, ProviderStatus> = self
            .list()
            .into_iter()
            .map(|p| (p.name, p.status))
            .collect();
        // Providers per model, aliases folded together (one pass, so long
        // lists such as OpenRouter's stay cheap).
        let mut serving: std::collections::HashMap<String, Vec<String>> =
            std::collections::HashMap::new();
        for m in &models {
            serving
                .entry(with_tag(&m.id))
                .or_default()
                .push(m.provider.clone());
        }
        for v in serving.values_mut() {
            v.sort();
            v.dedup();
        }
        models
            .iter()
            .map(|m| {
                let providers = serving.get(&with_tag(&m.id)).cloned().unwrap_or_default();
                let status = statuses.get(&m.provider);
                // Unchecked providers count as reachable: nothing says otherwise.
                let down = status.is_some_and(|s| s.checked_at.is_some() && !s.reachable);
                let cooling_down = status.is_some_and(|s| s.cooling_down);
                CatalogModel {
                    duplicate: providers.len() > 1,
                    providers,
                    reachable: !down && !cooling_down,
                    cooling_down,
                    model: m.clone(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rank(name: &str, priority: i32, in_flight: usize, cooling: bool) -> (Rank, String) {
        (
            Rank {
                // Registered in alphabetical order.
                position: (name.as_bytes()[0] - b'a') as usize,
                priority,
                in_flight,
                cooling,
            },
            name.to_string(),
        )
    }

    #[test]
    fn priority_orders_high_first_then_by_registration() {
        let got = order(
            vec![
                rank("b", 0, 0, false),
                rank("a", 0, 5, false),
                rank("c", 10, 9, false),
                rank("d", -1, 0, false),
            ],
            Strategy::Priority,
        );
        assert_eq!(got, ["c", "a", "b", "d"]);
    }

    #[test]
    fn least_busy_orders_by_load_then_priority() {
        let got = order(
            vec![
                rank("a", 10, 2, false),
                rank("b", 0, 1, false),
                rank("c", 5, 1, false),
                rank("d", 0, 0, false),
            ],
            Strategy::LeastBusy,
        );
        assert_eq!(got, ["d", "c", "b", "a"]);
    }

    #[test]
    fn cooling_providers_are_skipped_unless_nothing_else_serves() {
        let got = order(
            vec![rank("a", 10, 0, true), rank("b", 0, 0, false)],
            Strategy::Priority,
        );
        assert_eq!(got, ["b"]);
        let got = order(
            vec![rank("b", 0, 0, true), rank("a", 0, 0, true)],
            Strategy::Priority,
        );
        assert_eq!(got, ["a", "b"]);
    }

    #[test]
    fn implicit_latest_tag() {
        assert!(same_model("llama3.2", "llama3.2:latest"));
        assert!(same_model("llama3.2:latest", "llama3.2"));
        assert!(same_model("gpt-4o", "gpt-4o"));
        assert!(!same_model("llama3.2", "llama3.2:1b"));
        assert!(!same_model("llama3.2", "llama3.1"));
        assert!(same_model("library/qwen", "library/qwen:latest"));
    }

    #[test]
    fn cooldown_starts_after_repeated_failures_doubles_and_clears() {
        let t0 = Instant::now();
        let mut h = Health::default();
        h.record(false, t0);
        h.record(false, t0);
        assert!(!h.cooling(t0));
        h.record(false, t0);
        assert!(h.cooling(t0));
        assert!(h.cooling(t0 + FIRST_COOLDOWN - Duration::from_secs(1)));
        assert!(!h.cooling(t0 + FIRST_COOLDOWN));
        // Failing again right after the cooldown: twice as long, at once.
        let t1 = t0 + FIRST_COOLDOWN;
        h.record(false, t1);
        assert!(h.cooling(t1 + FIRST_COOLDOWN * 2 - Duration::from_secs(1)));
        assert!(!h.cooling(t1 + FIRST_COOLDOWN * 2));
        h.record(true, t1);
        assert!(!h.cooling(t1));
        h.record(false, t1);
        assert!(!h.cooling(t1), "a success starts the count again");
        assert_eq!(cooldown_for(0), FIRST_COOLDOWN);
        assert_eq!(cooldown_for(1), FIRST_COOLDOWN * 2);
        assert_eq!(cooldown_for(20), MAX_COOLDOWN);
    }

    #[test]
    fn failover_errors() {
        assert!(fails_over(&ProviderError::Unreachable("x".into())));
        assert!(fails_over(&ProviderError::Timeout("x".into())));
        assert!(fails_over(&ProviderError::RateLimited {
            message: "x".into(),
            retry_after_secs: None
        }));
        assert!(fails_over(&ProviderError::Upstream {
            status: 503,
            message: "x".into()
        }));
        assert!(!fails_over(&ProviderError::Upstream {
            status: 400,
            message: "x".into()
        }));
        assert!(!fails_over(&ProviderError::KeyRejected("x".into())));
        let limited = ProviderError::RateLimited {
            message: "x".into(),
            retry_after_secs: None,
        };
        assert!(counts_against(&limited, false));
        assert!(!counts_against(&limited, true), "the user's own limit");
        assert!(!counts_against(
            &ProviderError::KeyRejected("x".into()),
            false
        ));
    }

    fn registry_with(entries: &[(&str, ProviderKind, i32, &[&str])]) -> Registry {
        let r = Registry::new(reqwest::Client::new(), Default::default());
        for (name, kind, priority, models) in entries {
            r.add(
                super::super::ProviderConfig::new(*kind, *name, "http://127.0.0.1:9")
                    .with_priority(*priority)
                    .with_models(models.iter().map(|m| m.to_string()).collect()),
            )
            .unwrap();
        }
        r
    }

    fn names(c: Vec<Candidate>) -> Vec<(String, String)> {
        c.into_iter().map(|c| (c.provider_name, c.model)).collect()
    }

    #[test]
    fn candidates_by_alias_pin_and_kind() {
        let r = registry_with(&[
            ("ol-a", ProviderKind::Ollama, 0, &["llama3.2:latest"]),
            ("ol-b", ProviderKind::Ollama, 0, &["llama3.2:latest"]),
            ("oa", ProviderKind::Openai, 5, &["llama3.2", "gpt-4o"]),
        ]);
        let all = vec![
            ("oa".to_string(), "llama3.2".to_string()),
            ("ol-a".to_string(), "llama3.2:latest".to_string()),
            ("ol-b".to_string(), "llama3.2:latest".to_string()),
        ];
        assert_eq!(names(r.candidates("llama3.2", false)), all);
        assert_eq!(names(r.candidates("llama3.2:latest", false)), all);
        assert_eq!(
            names(r.candidates("ol-b/llama3.2", false)),
            [("ol-b".to_string(), "llama3.2:latest".to_string())]
        );
        assert_eq!(
            names(r.candidates("ollama/llama3.2:latest", false)),
            all[1..]
        );
        assert!(r.candidates("ol-b/gpt-4o", false).is_empty());
        assert!(r.candidates("nope", false).is_empty());
        // An own key stays with the kind of the first candidate.
        assert_eq!(names(r.candidates("llama3.2", true)), all[..1]);
    }

    #[test]
    fn least_busy_strategy_is_a_registry_setting() {
        let r = registry_with(&[
            ("a", ProviderKind::Openai, 1, &["m"]),
            ("b", ProviderKind::Openai, 0, &["m"]),
        ]);
        let first = r.candidates("m", false).remove(0);
        assert_eq!(first.provider_name, "a");
        let _busy = InFlight::new(first.in_flight.clone());
        assert_eq!(r.candidates("m", false)[0].provider_name, "a");
        r.set_strategy(Strategy::LeastBusy);
        assert_eq!(r.candidates("m", false)[0].provider_name, "b");
        assert_eq!(r.list()[0].status.in_flight, 1);
    }
}
