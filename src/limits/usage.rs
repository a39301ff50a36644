//! Usage accounting: what an answer costs, UTC days, and the reports
//! behind `GET /api/usage` and `GET /api/admin/usage` (JSON and CSV).

use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use time::{Date, Duration as TimeDuration, OffsetDateTime};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::clock::{day_number, format_rfc3339, iso};
use crate::config::Price;
use crate::store::usage::{Charge, KeyUsageRow, UsageCounts, UsageRow};

/// The longest range one report covers.
pub const MAX_DAYS: i64 = 366;

/// The `[[prices]]` table, and the per-model prices admins set
/// (Admin → Models), which come first.
#[derive(Debug, Clone, Default)]
pub struct Prices(Vec<Price>, Arc<RwLock<HashMap<String, Price>>>);

impl Prices {
    pub fn new(p: &[Price]) -> Prices {
        Prices(p.to_vec(), Arc::default())
    }

    /// Replaces every admin-set price: model id → price (any provider).
    pub fn set_overrides(&self, list: impl IntoIterator<Item = (String, f64, f64)>) {
        let map = list
            .into_iter()
            .map(|(model, i, o)| {
                let p = Price {
                    provider: None,
                    model: model.clone(),
                    input_per_million: i,
                    output_per_million: o,
                };
                (model, p)
            })
            .collect();
        *self.1.write().expect("lock not poisoned") = map;
    }

    /// The price that applies to `model` from `provider`: an admin-set one,
    /// else the table's ([`Prices::find`]).
    pub fn effective(&self, provider: &str, model: &str) -> Option<Price> {
        if let Some(p) = self.1.read().expect("lock not poisoned").get(model) {
            return Some(p.clone());
        }
        self.find(provider, model).cloned()
    }

    /// The entry for `model` from `provider`: exact ids before prefixes
    /// (`gpt-4o*`), entries naming the provider before those that do not.
    pub fn find(&self, provider: &str, model: &str) -> Option<&Price> {
        let matches = |p: &&Price| {
            p.provider.as_deref().is_none_or(|x| x == provider)
                && match p.model.strip_suffix('*') {
                    Some(prefix) => model.starts_with(prefix),
                    None => p.model == model,
                }
        };
        let rank = |p: &Price| {
            (
                p.model.ends_with('*'),
                p.provider.is_none(),
                std::cmp::Reverse(p.model.len()),
            )
        };
        self.0.iter().filter(matches).min_by_key(|p| rank(p))
    }

    /// Cost in billionths: price per million tokens × tokens × 1000.
    pub fn cost_nanos(&self, provider: &str, model: &str, input: u64, output: u64) -> u64 {
        self.effective(provider, model).map_or(0, |p| {
            let c = (input as f64 * p.input_per_million + output as f64 * p.output_per_million)
                * 1000.0;
            c.round().max(0.0) as u64
        })
    }

    pub fn charge(
        &self,
        provider: &str,
        model: &str,
        messages: u64,
        input: u64,
        output: u64,
    ) -> Charge {
        Charge {
            provider: provider.to_string(),
            model: model.to_string(),
            messages,
            input_tokens: input,
            output_tokens: output,
            cost_nanos: self.cost_nanos(provider, model, input, output),
            api_key: None,
        }
    }
}

/// The next UTC midnight, when daily quotas reset.
pub fn next_reset() -> OffsetDateTime {
    let tomorrow = OffsetDateTime::now_utc().date() + TimeDuration::days(1);
    tomorrow.midnight().assume_utc()
}

/// Whole seconds until the next reset (at least 1).
pub fn secs_until_reset() -> u64 {
    let d = next_reset() - OffsetDateTime::now_utc();
    (d.whole_seconds() + i64::from(d.subsec_nanoseconds() > 0)).max(1) as u64
}

/// `from`/`to` (YYYY-MM-DD, inclusive): default the last 30 days.
pub fn parse_range(from: Option<&str>, to: Option<&str>) -> Result<(Date, Date), String> {
    let parse = |name: &str, s: &str| {
        let fmt = time::macros::format_description!("[year]-[month]-[day]");
        Date::parse(s.trim(), &fmt)
            .map_err(|_| format!("{name} must be a date like 2025-01-31, got {s:?}"))
    };
    let to = match to.filter(|s| !s.is_empty()) {
        Some(s) => parse("to", s)?,
        None => OffsetDateTime::now_utc().date(),
    };
    let from = match from.filter(|s| !s.is_empty()) {
        Some(s) => parse("from", s)?,
        None => to - TimeDuration::days(29),
    };
    if from > to {
        return Err("from must not be after to".into());
    }
    if (to - from).whole_days() >= MAX_DAYS {
        return Err(format!("a report covers at most {MAX_DAYS} days"));
    }
    Ok((from, to))
}

/// Counts as the API shows them.
#[derive(Debug, Clone, Copy, Default, Serialize, ToSchema, PartialEq)]
pub struct Totals {
    pub messages: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// input + output.
    pub tokens: u64,
    /// In the currency of the `[[prices]]` table; 0 for unpriced models.
    pub cost: f64,
    /// The exact sum behind `cost`, in billionths.
    #[serde(skip)]
    pub cost_nanos: u64,
}

impl Totals {
    fn add(&mut self, c: &UsageCounts) {
        self.messages += c.messages;
        self.input_tokens += c.input_tokens;
        self.output_tokens += c.output_tokens;
        self.tokens += c.input_tokens + c.output_tokens;
        self.cost_nanos += c.cost_nanos;
        self.cost = self.cost_nanos as f64 / 1e9;
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelUsage {
    pub provider: String,
    pub model: String,
    #[serde(flatten)]
    pub totals: Totals,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DayUsage {
    /// YYYY-MM-DD (UTC).
    pub date: String,
    #[serde(flatten)]
    pub totals: Totals,
    /// The same day by provider and model.
    pub models: Vec<ModelUsage>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserUsage {
    pub user_id: String,
    pub username: Option<String>,
    #[serde(flatten)]
    pub totals: Totals,
}

/// The calls made with one API key (`/v1`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeyUsage {
    pub api_key_id: String,
    /// The key's name; null once the key has been deleted.
    pub name: Option<String>,
    pub user_id: String,
    pub username: Option<String>,
    #[serde(flatten)]
    pub totals: Totals,
}

/// Usage per API key, most tokens first.
pub fn by_key(
    rows: &[KeyUsageRow],
    key_name: impl Fn(Uuid) -> Option<String>,
    username: impl Fn(Uuid) -> Option<String>,
) -> Vec<KeyUsage> {
    let mut m: BTreeMap<(Uuid, Uuid), Totals> = BTreeMap::new();
    for r in rows {
        m.entry((r.user_id, r.api_key_id))
            .or_default()
            .add(&r.counts);
    }
    let mut v: Vec<KeyUsage> = m
        .into_iter()
        .map(|((user, key), totals)| KeyUsage {
            api_key_id: key.to_string(),
            name: key_name(key),
            user_id: user.to_string(),
            username: username(user),
            totals,
        })
        .collect();
    v.sort_by_key(|x| std::cmp::Reverse(x.totals.tokens));
    v
}

/// Today's limits and what is left of them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QuotaStatus {
    /// None: unlimited.
    pub messages_per_day: Option<u64>,
    pub tokens_per_day: Option<u64>,
    pub messages_used: u64,
    pub tokens_used: u64,
    pub messages_remaining: Option<u64>,
    pub tokens_remaining: Option<u64>,
    /// Answers running now (each holds one message of the quota).
    pub running: u32,
    /// Next UTC midnight.
    pub resets_at: String,
}

impl QuotaStatus {
    pub fn new(q: super::quota::Effective, t: super::quota::Today) -> QuotaStatus {
        let held = t.messages + u64::from(t.running);
        QuotaStatus {
            messages_per_day: q.messages_per_day,
            tokens_per_day: q.tokens_per_day,
            messages_used: t.messages,
            tokens_used: t.tokens,
            messages_remaining: q.messages_per_day.map(|m| m.saturating_sub(held)),
            tokens_remaining: q.tokens_per_day.map(|m| m.saturating_sub(t.tokens)),
            running: t.running,
            resets_at: format_rfc3339(next_reset()),
        }
    }
}

/// `GET /api/usage`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserReport {
    pub from: String,
    pub to: String,
    pub totals: Totals,
    /// Every day of the range, oldest first (days without use are zeros).
    pub days: Vec<DayUsage>,
    /// Most tokens first.
    pub models: Vec<ModelUsage>,
    /// The part of the usage made with each API key (`/v1` calls), most
    /// tokens first; app use through the browser is in the totals only.
    pub keys: Vec<KeyUsage>,
    pub quota: QuotaStatus,
}

/// `GET /api/admin/usage`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AdminReport {
    pub from: String,
    pub to: String,
    /// user | model | day | key
    pub group_by: String,
    pub totals: Totals,
    /// group_by=day: every day of the range, with its models.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days: Option<Vec<DayUsage>>,
    /// group_by=model: most tokens first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<ModelUsage>>,
    /// group_by=user: most tokens first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<UserUsage>>,
    /// group_by=key: usage made with each API key (`/v1` calls), most
    /// tokens first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<KeyUsage>>,
}

fn total_of(rows: &[UsageRow]) -> Totals {
    let mut t = Totals::default();
    for r in rows {
        t.add(&r.counts);
    }
    t
}

fn by_model(rows: &[UsageRow]) -> Vec<ModelUsage> {
    let mut m: BTreeMap<(String, String), Totals> = BTreeMap::new();
    for r in rows {
        m.entry((r.provider.clone(), r.model.clone()))
            .or_default()
            .add(&r.counts);
    }
    let mut v: Vec<ModelUsage> = m
        .into_iter()
        .map(|((provider, model), totals)| ModelUsage {
            provider,
            model,
            totals,
        })
        .collect();
    v.sort_by_key(|x| std::cmp::Reverse(x.totals.tokens));
    v
}

fn by_day(rows: &[UsageRow], from: Date, to: Date) -> Vec<DayUsage> {
    let mut out = Vec::new();
    let mut d = from;
    while d <= to {
        let n = day_number(d);
        let day_rows: Vec<UsageRow> = rows.iter().filter(|r| r.day == n).cloned().collect();
        out.push(DayUsage {
            date: iso(d),
            totals: total_of(&day_rows),
            models: by_model(&day_rows),
        });
        d += TimeDuration::days(1);
    }
    out
}

pub fn user_report(
    rows: &[UsageRow],
    keys: Vec<KeyUsage>,
    from: Date,
    to: Date,
    quota: QuotaStatus,
) -> UserReport {
    UserReport {
        from: iso(from),
        to: iso(to),
        totals: total_of(rows),
        days: by_day(rows, from, to),
        models: by_model(rows),
        keys,
        quota,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    User,
    Model,
    Day,
    Key,
}

impl GroupBy {
    pub fn parse(s: Option<&str>) -> Result<GroupBy, String> {
        match s.unwrap_or("day") {
            "user" => Ok(GroupBy::User),
            "model" => Ok(GroupBy::Model),
            "day" | "" => Ok(GroupBy::Day),
            "key" => Ok(GroupBy::Key),
            other => Err(format!(
                "group_by must be user, model, day or key, got {other:?}"
            )),
        }
    }
    fn name(self) -> &'static str {
        match self {
            GroupBy::User => "user",
            GroupBy::Model => "model",
            GroupBy::Day => "day",
            GroupBy::Key => "key",
        }
    }
}

/// `keys`: the usage per API key, for `group_by=key`.
pub fn admin_report(
    rows: &[UsageRow],
    keys: Option<Vec<KeyUsage>>,
    from: Date,
    to: Date,
    group: GroupBy,
    username: impl Fn(Uuid) -> Option<String>,
) -> AdminReport {
    let mut r = AdminReport {
        from: iso(from),
        to: iso(to),
        group_by: group.name().into(),
        totals: total_of(rows),
        days: None,
        models: None,
        users: None,
        keys: None,
    };
    match group {
        GroupBy::Key => r.keys = Some(keys.unwrap_or_default()),
        GroupBy::Day => r.days = Some(by_day(rows, from, to)),
        GroupBy::Model => r.models = Some(by_model(rows)),
        GroupBy::User => {
            let mut m: BTreeMap<Uuid, Totals> = BTreeMap::new();
            for row in rows {
                m.entry(row.user_id).or_default().add(&row.counts);
            }
            let mut v: Vec<UserUsage> = m
                .into_iter()
                .map(|(id, totals)| UserUsage {
                    user_id: id.to_string(),
                    username: username(id),
                    totals,
                })
                .collect();
            v.sort_by_key(|x| std::cmp::Reverse(x.totals.tokens));
            r.users = Some(v);
        }
    }
    r
}

/// A spreadsheet would run a field that starts with `= + - @` as a formula:
/// such a field gets a leading `'`. (Quoting is the csv writer's job.)
fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}").into()
    } else {
        s.into()
    }
}

const CSV_COUNTS: [&str; 5] = [
    "messages",
    "input_tokens",
    "output_tokens",
    "tokens",
    "cost",
];

/// Rows of several shapes (the admin export puts one table after another).
struct Csv(csv::Writer<Vec<u8>>);

impl Csv {
    fn new() -> Csv {
        Csv(csv::WriterBuilder::new()
            .flexible(true)
            .from_writer(Vec::new()))
    }

    fn header(&mut self, leading: &[&str]) {
        let row: Vec<&str> = leading.iter().chain(CSV_COUNTS.iter()).copied().collect();
        // Writing to a Vec cannot fail.
        let _ = self.0.write_record(&row);
    }

    fn row(&mut self, leading: &[&str], t: &Totals) {
        let counts = [
            t.messages.to_string(),
            t.input_tokens.to_string(),
            t.output_tokens.to_string(),
            t.tokens.to_string(),
            format!("{:.9}", t.cost),
        ];
        let row: Vec<std::borrow::Cow<'_, str>> = leading
            .iter()
            .map(|f| csv_field(f))
            .chain(counts.iter().map(|c| c.as_str().into()))
            .collect();
        let _ = self.0.write_record(row.iter().map(|f| f.as_bytes()));
    }

    fn finish(self) -> String {
        let bytes = self.0.into_inner().unwrap_or_default();
        String::from_utf8(bytes).unwrap_or_default()
    }
}

/// One line per day, provider and model (days without use are left out).
pub fn user_csv(r: &UserReport) -> String {
    let mut out = Csv::new();
    out.header(&["date", "provider", "model"]);
    for d in &r.days {
        for m in &d.models {
            out.row(&[&d.date, &m.provider, &m.model], &m.totals);
        }
    }
    out.finish()
}

pub fn admin_csv(r: &AdminReport) -> String {
    let mut out = Csv::new();
    if let Some(days) = &r.days {
        out.header(&["date", "provider", "model"]);
        for d in days {
            for m in &d.models {
                out.row(&[&d.date, &m.provider, &m.model], &m.totals);
            }
        }
    }
    if let Some(models) = &r.models {
        out.header(&["provider", "model"]);
        for m in models {
            out.row(&[&m.provider, &m.model], &m.totals);
        }
    }
    if let Some(users) = &r.users {
        out.header(&["user_id", "username"]);
        for u in users {
            let id = u.user_id.to_string();
            out.row(&[&id, u.username.as_deref().unwrap_or("")], &u.totals);
        }
    }
    if let Some(keys) = &r.keys {
        out.header(&["api_key_id", "name", "user_id", "username"]);
        for k in keys {
            out.row(
                &[
                    &k.api_key_id,
                    k.name.as_deref().unwrap_or(""),
                    &k.user_id,
                    k.username.as_deref().unwrap_or(""),
                ],
                &k.totals,
            );
        }
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::date_of;

    fn price(provider: Option<&str>, model: &str, i: f64, o: f64) -> Price {
        Price {
            provider: provider.map(str::to_string),
            model: model.into(),
            input_per_million: i,
            output_per_million: o,
        }
    }

    #[test]
    fn prices_match_exact_then_prefix() {
        let p = Prices::new(&[
            price(None, "gpt-4o*", 2.5, 10.0),
            price(None, "gpt-4o-mini", 0.15, 0.6),
            price(Some("groq"), "gpt-4o-mini", 0.0, 0.0),
        ]);
        // 1M input at 0.15 + 1M output at 0.6 = 0.75 = 750,000,000 nanos.
        assert_eq!(
            p.cost_nanos("openai", "gpt-4o-mini", 1_000_000, 1_000_000),
            750_000_000
        );
        assert_eq!(p.cost_nanos("groq", "gpt-4o-mini", 1_000_000, 1_000_000), 0);
        assert_eq!(p.cost_nanos("openai", "gpt-4o-2024", 1000, 0), 2_500_000);
        assert_eq!(p.cost_nanos("openai", "llama", 1000, 1000), 0);
        // 12 tokens at 0.15 per million: 1800 nanos, not rounded away.
        assert_eq!(p.cost_nanos("x", "gpt-4o-mini", 12, 0), 1800);
        // An admin-set price replaces the table's, for any provider.
        p.set_overrides([("gpt-4o-mini".to_string(), 1.0, 2.0)]);
        assert_eq!(
            p.cost_nanos("groq", "gpt-4o-mini", 1_000_000, 0),
            1_000_000_000
        );
        assert_eq!(p.cost_nanos("openai", "gpt-4o-2024", 1000, 0), 2_500_000);
        p.set_overrides([]);
        assert_eq!(p.cost_nanos("groq", "gpt-4o-mini", 1_000_000, 1_000_000), 0);
    }

    #[test]
    fn days_and_ranges() {
        let d = date_of(20240229).unwrap();
        assert_eq!(day_number(d), 20240229);
        assert_eq!(iso(d), "2024-02-29");
        assert!(date_of(20230229).is_none());
        let (f, t) = parse_range(Some("2024-01-01"), Some("2024-01-31")).unwrap();
        assert_eq!((t - f).whole_days(), 30);
        let (f, t) = parse_range(None, None).unwrap();
        assert_eq!((t - f).whole_days(), 29);
        assert!(parse_range(Some("2024-02-01"), Some("2024-01-01")).is_err());
        assert!(parse_range(Some("2020-01-01"), Some("2024-01-01")).is_err());
        assert!(
            parse_range(Some("yesterday"), None)
                .unwrap_err()
                .contains("from")
        );
        assert!(secs_until_reset() <= 86_400);
    }

    #[test]
    fn csv_is_safe() {
        let t = Totals {
            messages: 1,
            input_tokens: 2,
            output_tokens: 3,
            tokens: 5,
            cost: 0.5,
            ..Default::default()
        };
        let mut c = Csv::new();
        c.header(&["provider", "model"]);
        c.row(&["a,b", "=cmd()"], &t);
        c.row(&["say \"hi\"", "line\nbreak"], &t);
        assert_eq!(
            c.finish(),
            "provider,model,messages,input_tokens,output_tokens,tokens,cost\n\
             \"a,b\",'=cmd(),1,2,3,5,0.500000000\n\
             \"say \"\"hi\"\"\",\"line\nbreak\",1,2,3,5,0.500000000\n"
        );
    }
}
