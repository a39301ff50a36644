//! The Prometheus metrics registry (prometheus-client, OpenMetrics text).
//!
//! Counters and histograms are updated where things happen; values that
//! are cheap to read on demand (index lag, store size, RSS, limiter sizes)
//! are sampled when `/metrics` is scraped.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The matched route template (`/api/conversations/:id`), never the raw path.
    pub route: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GenLabels {
    pub provider: String,
    pub model: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub provider: String,
    pub model: String,
    /// input | output
    pub direction: String,
    /// answer | title
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct V1Labels {
    /// chat | embeddings
    pub endpoint: String,
    pub provider: String,
    pub model: String,
    /// complete | stopped | failed
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub provider: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimiterLabels {
    pub limiter: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QuotaLabels {
    /// messages | tokens
    pub limit: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms … ~65 s
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram>,
    pub sse_streams: Gauge,
    pub generations_running: Gauge,
    pub generations: Family<GenLabels, Counter>,
    pub v1_calls: Family<V1Labels, Counter>,
    pub first_token: Family<ProviderLabels, Histogram>,
    pub tokens: Family<TokenLabels, Counter>,
    pub provider_errors: Family<ErrorLabels, Counter>,
    pub rate_limited: Family<LimiterLabels, Counter>,
    pub quota_rejections: Family<QuotaLabels, Counter>,
    pub login_failures: Counter,
    pub limiter_keys: Family<LimiterLabels, Gauge>,
    pub search_lag: Gauge,
    pub search_docs: Gauge,
    pub search_index_bytes: Gauge,
    pub store_bytes: Gauge,
    pub rss_bytes: Gauge,
    pub quota_users: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("confab");
        let m = Metrics {
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_histogram),
            sse_streams: Gauge::default(),
            generations_running: Gauge::default(),
            generations: Family::default(),
            v1_calls: Family::default(),
            first_token: Family::new_with_constructor(latency_histogram),
            tokens: Family::default(),
            provider_errors: Family::default(),
            rate_limited: Family::default(),
            quota_rejections: Family::default(),
            login_failures: Counter::default(),
            limiter_keys: Family::default(),
            search_lag: Gauge::default(),
            search_docs: Gauge::default(),
            search_index_bytes: Gauge::default(),
            store_bytes: Gauge::default(),
            rss_bytes: Gauge::default(),
            quota_users: Gauge::default(),
            registry: Registry::default(),
        };
        r.register(
            "build",
            "Version of the running binary",
            Info::new(vec![("version".to_string(), crate::VERSION.to_string())]),
        );
        r.register(
            "http_requests",
            "HTTP requests by method, route template and status",
            m.http_requests.clone(),
        );
        r.register_with_unit(
            "http_request_duration",
            "Time to the response head, by method and route template",
            Unit::Seconds,
            m.http_duration.clone(),
        );
        r.register(
            "sse_streams_active",
            "Server-sent event streams open now",
            m.sse_streams.clone(),
        );
        r.register(
            "generations_running",
            "Answers being generated now",
            m.generations_running.clone(),
        );
        r.register(
            "generations",
            "Finished answers by provider, model and outcome (complete, stopped, failed)",
            m.generations.clone(),
        );
        r.register(
            "v1_calls",
            "Finished /v1 calls (stateless, made with an API key) by endpoint, provider, model and outcome",
            m.v1_calls.clone(),
        );
        r.register_with_unit(
            "time_to_first_token",
            "From the chat request to the first streamed text",
            Unit::Seconds,
            m.first_token.clone(),
        );
        r.register(
            "tokens",
            "Tokens charged, by provider, model, direction and kind (answer, title, v1)",
            m.tokens.clone(),
        );
        r.register(
            "provider_errors",
            "Answers that failed, by provider and stable error code",
            m.provider_errors.clone(),
        );
        r.register(
            "rate_limited",
            "Requests refused by a rate limiter (anon, auth, api, chat, concurrency)",
            m.rate_limited.clone(),
        );
        r.register(
            "quota_rejections",
            "Answers refused because a daily quota was used up",
            m.quota_rejections.clone(),
        );
        r.register(
            "login_failures",
            "Failed sign-ins (login and token) with wrong credentials",
            m.login_failures.clone(),
        );
        r.register(
            "rate_limiter_keys",
            "Keys (addresses or users) a rate limiter tracks",
            m.limiter_keys.clone(),
        );
        r.register(
            "search_index_lag",
            "Changes written to the store and not yet in the search index",
            m.search_lag.clone(),
        );
        r.register(
            "search_documents",
            "Documents in the search index",
            m.search_docs.clone(),
        );
        r.register_with_unit(
            "search_index_size",
            "Size of the search index on disk",
            Unit::Bytes,
            m.search_index_bytes.clone(),
        );
        r.register_with_unit(
            "store_size",
            "Size of the database file",
            Unit::Bytes,
            m.store_bytes.clone(),
        );
        r.register_with_unit(
            "store_commit_duration",
            "Store write transactions, time to commit (fsync included)",
            Unit::Seconds,
            crate::store::metrics::commit_histogram(),
        );
        r.register_with_unit(
            "process_resident_memory",
            "Resident set size of this process",
            Unit::Bytes,
            m.rss_bytes.clone(),
        );
        r.register(
            "quota_users_tracked",
            "Users whose daily totals are held in memory",
            m.quota_users.clone(),
        );
        Metrics { registry: r, ..m }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }

    pub fn rate_limited(&self, limiter: &str) {
        self.rate_limited
            .get_or_create(&LimiterLabels {
                limiter: limiter.into(),
            })
            .inc();
    }

    pub fn quota_rejected(&self, limit: &str) {
        self.quota_rejections
            .get_or_create(&QuotaLabels {
                limit: limit.into(),
            })
            .inc();
    }

    pub fn tokens(&self, provider: &str, model: &str, kind: &str, input: u64, output: u64) {
        for (direction, n) in [("input", input), ("output", output)] {
            if n > 0 {
                self.tokens
                    .get_or_create(&TokenLabels {
                        provider: provider.into(),
                        model: model.into(),
                        direction: direction.into(),
                        kind: kind.into(),
                    })
                    .inc_by(n);
            }
        }
    }
}

/// Resident set size from /proc (0 where there is none).
pub fn rss_bytes() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
