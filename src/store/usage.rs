//! Usage per user, day, provider and model.
//!
//! Two tables hold the same counts, written in one transaction:
//! `usage_daily` keyed (user, yyyymmdd, provider, model) for one user's days
//! (quota checks, `/api/usage`), and `usage_by_day` keyed (yyyymmdd, user,
//! provider, model) for reports across users by day, model or user. Calls
//! made with an API key are also counted per key, in two more tables keyed
//! the same ways with the key id after the user. Each
//! read is a single key range; nothing scans outside the dates asked for.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest provider or model name kept in a key.
pub const MAX_NAME: usize = 200;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UsageCounts {
    pub messages: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Billionths of the price table's currency unit.
    pub cost_nanos: u64,
}

impl UsageCounts {
    pub fn add(&mut self, o: &UsageCounts) {
        self.messages += o.messages;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.cost_nanos += o.cost_nanos;
    }
}

/// One row: a user's use of one model on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub day: u32,
    pub user_id: Uuid,
    pub provider: String,
    pub model: String,
    pub counts: UsageCounts,
}

/// One row of usage by API key: a user's use of one model with one key on
/// one day (calls to `/v1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUsageRow {
    pub day: u32,
    pub user_id: Uuid,
    pub api_key_id: Uuid,
    pub provider: String,
    pub model: String,
    pub counts: UsageCounts,
}

/// One charge to a user's usage: an answer (`messages` = 1) or a title.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Charge {
    pub provider: String,
    pub model: String,
    pub messages: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Billionths of the price table's currency unit.
    pub cost_nanos: u64,
    /// The API key the call was made with (`/v1`); its usage is also
    /// recorded per key.
    pub api_key: Option<Uuid>,
}

impl Charge {
    pub fn is_empty(&self) -> bool {
        self.messages == 0 && self.input_tokens == 0 && self.output_tokens == 0
    }

    pub fn counts(&self) -> UsageCounts {
        UsageCounts {
            messages: self.messages,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cost_nanos: self.cost_nanos,
        }
    }
}
