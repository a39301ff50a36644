//! Usage reports: `GET /api/usage` (the caller's own, with today's quota)
//! and `GET /api/admin/usage` (everyone, grouped by user, model or day).
//! Both answer CSV for `?format=csv` or `Accept: text/csv`.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use std::collections::HashMap;

use super::{Json, Query};
use crate::auth::{Admin, CurrentUser};
use crate::clock::day_number;
use crate::error::{AppError, AppResult};
use crate::limits::usage::{self, AdminReport, GroupBy, QuotaStatus, UserReport};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/usage", get(own_usage))
        .route("/admin/usage", get(admin_usage))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// First day, YYYY-MM-DD (UTC); default 29 days before `to`.
    pub from: Option<String>,
    /// Last day, inclusive; default today.
    pub to: Option<String>,
    /// `csv` for a CSV file (or send `Accept: text/csv`).
    pub format: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AdminUsageQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    /// user | model | day | key (default day); key: usage made with each
    /// API key (`/v1` calls).
    pub group_by: Option<String>,
    pub format: Option<String>,
}

fn wants_csv(format: Option<&str>, headers: &HeaderMap) -> AppResult<bool> {
    match format {
        Some("csv") => Ok(true),
        Some("json") => Ok(false),
        Some(other) if !other.is_empty() => Err(AppError::Validation(format!(
            "format must be json or csv, got {other:?}"
        ))),
        _ => Ok(headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/csv"))),
    }
}

fn csv_response(body: String, name: &str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

/// The caller's messages, tokens and cost per day and model, the part made
/// with each of their API keys, and what is left of today's quota.
#[utoipa::path(get, path = "/api/usage", tag = "usage", params(UsageQuery),
    responses((status = 200, body = UserReport, description = "JSON, or text/csv with one line per day, provider and model"),
    (status = 400, body = crate::error::ErrorBody)))]
pub async fn own_usage(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    Query(q): Query<UsageQuery>,
) -> AppResult<Response> {
    let csv = wants_csv(q.format.as_deref(), &headers)?;
    let (from, to) =
        usage::parse_range(q.from.as_deref(), q.to.as_deref()).map_err(AppError::Validation)?;
    let uid = user.id();
    let (a, b) = (day_number(from), day_number(to));
    let rows = state.store.usage_of_user(uid, a, b).await?;
    let key_rows = state.store.usage_by_key(Some(uid), a, b).await?;
    let names: HashMap<uuid::Uuid, String> = state
        .store
        .list_api_keys(uid)
        .await?
        .into_iter()
        .map(|k| (k.id, k.name))
        .collect();
    let me = user.user.username.clone();
    let keys = usage::by_key(&key_rows, |k| names.get(&k).cloned(), |_| Some(me.clone()));
    let limits = &state.limits;
    let today = limits.quotas.today(&state.store, uid).await?;
    let merged = crate::groups::with_group_quotas(&state.store, &user.user).await?;
    let quota = QuotaStatus::new(limits.quota_of(&merged), today);
    let report = usage::user_report(&rows, keys, from, to, quota);
    if csv {
        let name = format!("confab-usage-{}-{}.csv", report.from, report.to);
        return Ok(csv_response(usage::user_csv(&report), &name));
    }
    Ok(Json(report).into_response())
}

/// Everyone's usage, grouped by user (top users first), model, day (each
/// day with its models, for stacked charts) or API key.
#[utoipa::path(get, path = "/api/admin/usage", tag = "usage", params(AdminUsageQuery),
    responses((status = 200, body = AdminReport, description = "JSON, or text/csv"),
    (status = 400, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub async fn admin_usage(
    State(state): State<AppState>,
    _admin: Admin,
    headers: HeaderMap,
    Query(q): Query<AdminUsageQuery>,
) -> AppResult<Response> {
    let csv = wants_csv(q.format.as_deref(), &headers)?;
    let group = GroupBy::parse(q.group_by.as_deref()).map_err(AppError::Validation)?;
    let (from, to) =
        usage::parse_range(q.from.as_deref(), q.to.as_deref()).map_err(AppError::Validation)?;
    let (a, b) = (day_number(from), day_number(to));
    let rows = state.store.usage_between(a, b).await?;
    let names: HashMap<uuid::Uuid, String> = if matches!(group, GroupBy::User | GroupBy::Key) {
        state
            .store
            .list_users(None, usize::MAX)
            .await?
            .into_iter()
            .map(|u| (u.id, u.username))
            .collect()
    } else {
        HashMap::new()
    };
    let keys = if group == GroupBy::Key {
        let key_rows = state.store.usage_by_key(None, a, b).await?;
        let owners: std::collections::BTreeSet<uuid::Uuid> =
            key_rows.iter().map(|r| r.user_id).collect();
        let mut key_names: HashMap<uuid::Uuid, String> = HashMap::new();
        for owner in owners {
            for k in state.store.list_api_keys(owner).await? {
                key_names.insert(k.id, k.name);
            }
        }
        Some(usage::by_key(
            &key_rows,
            |k| key_names.get(&k).cloned(),
            |u| names.get(&u).cloned(),
        ))
    } else {
        None
    };
    let report = usage::admin_report(&rows, keys, from, to, group, |id| names.get(&id).cloned());
    if csv {
        let name = format!(
            "confab-usage-by-{}-{}-{}.csv",
            report.group_by, report.from, report.to
        );
        return Ok(csv_response(usage::admin_csv(&report), &name));
    }
    Ok(Json(report).into_response())
}

// ---- admin views of quotas and audit filters (used by `admin.rs`) -------

/// A user as admins see them: the public shape plus the daily quota.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct AdminUserView {
    #[serde(flatten)]
    pub user: super::auth::UserView,
    /// The per-user override; null = the server default (`[quota]`) applies.
    pub quota: Option<crate::store::QuotaOverride>,
    /// The limits in force (null = unlimited): the override, else the
    /// most generous of the user's groups', else the server default.
    pub effective_quota: EffectiveQuota,
    /// The groups the user is in, by name.
    pub groups: Vec<GroupRef>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct EffectiveQuota {
    pub messages_per_day: Option<u64>,
    pub tokens_per_day: Option<u64>,
    /// Bytes of uploaded files the user may keep (null = unlimited).
    pub storage_bytes: Option<u64>,
}

/// `u` as admins see it, its limits with its groups' quota defaults.
pub async fn admin_user_view(state: &AppState, u: &crate::store::User) -> AppResult<AdminUserView> {
    let groups = state.store.user_groups(u.id).await?;
    let mut merged = u.clone();
    merged.quota = crate::groups::effective_override(u.quota.as_ref(), &groups);
    let q = state.limits.quota_of(&merged);
    Ok(AdminUserView {
        user: u.into(),
        quota: u.quota.clone(),
        effective_quota: EffectiveQuota {
            messages_per_day: q.messages_per_day,
            tokens_per_day: q.tokens_per_day,
            storage_bytes: crate::files::storage_quota(&state.settings().files, &merged),
        },
        groups: groups
            .iter()
            .map(|g| GroupRef {
                id: g.id.to_string(),
                name: g.name.clone(),
            })
            .collect(),
    })
}

/// A group a user is in.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct GroupRef {
    pub id: String,
    pub name: String,
}

/// `"quota"` in `PATCH /api/admin/users/{id}`: each limit a whole number,
/// or null/absent for the server default.
#[derive(Deserialize, utoipa::ToSchema, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct QuotaInput {
    #[serde(default)]
    pub messages_per_day: Option<u64>,
    #[serde(default)]
    pub tokens_per_day: Option<u64>,
    /// Bytes of uploaded files (0 = no limit).
    #[serde(default)]
    pub storage_bytes: Option<u64>,
}

/// Absent → None (leave as is); null → Some(None) (server default).
pub fn present_quota<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<QuotaInput>>, D::Error> {
    Option::<QuotaInput>::deserialize(d).map(Some)
}

const MAX_QUOTA: u64 = 1_000_000_000_000;

/// The override to store: None when nothing is overridden.
pub fn quota_override(q: Option<QuotaInput>) -> AppResult<Option<crate::store::QuotaOverride>> {
    let Some(q) = q else { return Ok(None) };
    for (name, v) in [
        ("messages_per_day", q.messages_per_day),
        ("tokens_per_day", q.tokens_per_day),
        ("storage_bytes", q.storage_bytes),
    ] {
        if v.is_some_and(|v| v > MAX_QUOTA) {
            return Err(AppError::Validation(format!(
                "quota.{name} must be between 0 and {MAX_QUOTA}"
            )));
        }
    }
    if q.messages_per_day.is_none() && q.tokens_per_day.is_none() && q.storage_bytes.is_none() {
        return Ok(None);
    }
    Ok(Some(crate::store::QuotaOverride {
        messages_per_day: q.messages_per_day,
        tokens_per_day: q.tokens_per_day,
        storage_bytes: q.storage_bytes,
    }))
}

/// `GET /api/admin/audit` query: paging plus filters.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    pub cursor: Option<String>,
    pub limit: Option<usize>,
    /// The actor's username or id.
    pub actor: Option<String>,
    /// An action (`login`), or a prefix ending in `.` or `*` (`admin.`, `provider*`).
    pub action: Option<String>,
    /// From this day (YYYY-MM-DD, UTC) or time (RFC 3339), inclusive.
    pub from: Option<String>,
    /// Up to this day (inclusive) or time (exclusive).
    pub to: Option<String>,
}

fn parse_when(name: &str, s: &str, end_of_day: bool) -> AppResult<i64> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t.unix_timestamp());
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(s, &fmt).map_err(|_| {
        AppError::Validation(format!(
            "{name} must be a date like 2025-01-31 or a time like 2025-01-31T12:00:00Z"
        ))
    })?;
    let d = if end_of_day {
        d + time::Duration::days(1)
    } else {
        d
    };
    Ok(d.midnight().assume_utc().unix_timestamp())
}

impl AuditQuery {
    pub fn filter(&self) -> AppResult<crate::store::audit_query::AuditFilter> {
        let clean = |s: &Option<String>| {
            s.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        Ok(crate::store::audit_query::AuditFilter {
            actor: clean(&self.actor),
            action: clean(&self.action),
            from: clean(&self.from)
                .map(|s| parse_when("from", &s, false))
                .transpose()?,
            to: clean(&self.to)
                .map(|s| parse_when("to", &s, true))
                .transpose()?,
        })
    }
}
