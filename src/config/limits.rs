//! `[limits]`, `[quota]` and `[[prices]]`.

use serde::{Deserialize, Serialize};

/// `[limits]`: keyed rate limits (GCRA: a bucket of `*_burst` requests that
/// refills at `*_per_minute`) and the cap on answers running at once.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// False turns the request rate limits off (quotas still apply).
    pub enabled: bool,
    /// Unauthenticated API requests per client IP.
    pub anon_per_minute: u32,
    pub anon_burst: u32,
    /// API requests per signed-in user.
    pub api_per_minute: u32,
    pub api_burst: u32,
    /// New answers (chat requests) per user.
    pub chat_per_minute: u32,
    pub chat_burst: u32,
    /// Answers one user may have running at once.
    pub max_concurrent_generations: u32,
    /// Keys a limiter tracks before stale ones are pruned early.
    pub max_tracked_keys: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            enabled: true,
            anon_per_minute: 120,
            anon_burst: 60,
            api_per_minute: 1200,
            api_burst: 300,
            chat_per_minute: 30,
            chat_burst: 10,
            max_concurrent_generations: 4,
            max_tracked_keys: 100_000,
        }
    }
}

/// `[quota]`: daily limits per user (UTC days); unset = unlimited. Admins
/// override them per user.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaConfig {
    pub messages_per_day: Option<u64>,
    /// Input + output tokens.
    pub tokens_per_day: Option<u64>,
}

/// One `[[prices]]` entry: what a million tokens of `model` cost.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Only for this provider name; unset = any provider.
    #[serde(default)]
    pub provider: Option<String>,
    /// The model id; a trailing `*` matches every id with that prefix.
    pub model: String,
    pub input_per_million: f64,
    pub output_per_million: f64,
}
