//! Wall-clock time and its text forms, in one leaf module every layer may use.
//!
//! Timestamps are unix seconds (`i64`) in records and on the wire as RFC 3339
//! UTC; days are `yyyymmdd` numbers (`u32`) in the usage tables.

use time::{Date, Month, OffsetDateTime};

/// Now, in unix seconds.
pub fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Now, in unix milliseconds.
pub fn now_ms() -> u64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as u64
}

/// Unix seconds → RFC 3339 UTC.
pub fn rfc3339(ts: i64) -> String {
    format_rfc3339(OffsetDateTime::from_unix_timestamp(ts).unwrap_or(OffsetDateTime::UNIX_EPOCH))
}

/// A point in time → RFC 3339.
pub fn format_rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Unix seconds → RFC 3339 without `-` and `:` (`20261122T013000Z`), for
/// file names.
pub fn compact(ts: i64) -> String {
    rfc3339(ts).replace(['-', ':'], "")
}

/// A date as yyyymmdd.
pub fn day_number(d: Date) -> u32 {
    d.year() as u32 * 10_000 + u32::from(u8::from(d.month())) * 100 + u32::from(d.day())
}

/// yyyymmdd → the date, if it is one.
pub fn date_of(day: u32) -> Option<Date> {
    let month = Month::try_from((day / 100 % 100) as u8).ok()?;
    Date::from_calendar_date((day / 10_000) as i32, month, (day % 100) as u8).ok()
}

/// Today (UTC) as yyyymmdd.
pub fn today() -> u32 {
    day_number(OffsetDateTime::now_utc().date())
}

/// A date as YYYY-MM-DD.
pub fn iso(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}
