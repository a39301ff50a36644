//! `GET /api/search`: full-text search over the caller's own history.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Json, Query};
use crate::auth::CurrentUser;
use crate::clock::rfc3339;
use crate::error::{AppError, AppResult};
use crate::search::snippet::Snippet;
use crate::search::{SearchError, SearchRequest};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/search", get(search))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct SearchQuery {
    /// Words (all must match), "exact phrases", prefix*, -exclusion.
    pub q: Option<String>,
    pub conversation_id: Option<String>,
    /// user | assistant | title
    pub role: Option<String>,
    /// RFC 3339; only hits created after this time.
    pub after: Option<String>,
    /// RFC 3339; only hits created before this time.
    pub before: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SearchHit {
    pub conversation_id: String,
    pub conversation_title: String,
    /// Null for a match on the conversation's title.
    pub message_id: Option<String>,
    /// user | assistant | title
    pub role: String,
    pub created_at: String,
    pub snippet: Snippet,
}

#[derive(Serialize, ToSchema)]
pub struct SearchResults {
    pub hits: Vec<SearchHit>,
    pub next_cursor: Option<String>,
    /// True while the index is being rebuilt: some history is not yet searchable.
    pub partial: bool,
}

fn time_param(name: &str, v: Option<&str>) -> AppResult<Option<i64>> {
    match v.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map(|t| Some(t.unix_timestamp()))
            .map_err(|_| {
                AppError::Validation(format!(
                    "{name} must be an RFC 3339 time like 2026-01-31T00:00:00Z"
                ))
            }),
    }
}

/// The index request a query string asks for.
fn request(user_id: Uuid, p: SearchQuery) -> AppResult<SearchRequest> {
    let limit = match p.limit {
        None => 20,
        Some(n) if (1..=100).contains(&n) => n,
        Some(_) => return Err(AppError::validation("limit must be between 1 and 100")),
    };
    let offset = match p.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => 0,
        Some(c) => c
            .parse::<usize>()
            .ok()
            .filter(|o| *o <= 10_000)
            .ok_or_else(|| AppError::validation("cursor is not valid"))?,
    };
    let conversation_id = p
        .conversation_id
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|c| {
            Uuid::parse_str(c)
                .map_err(|_| AppError::validation("conversation_id is not a valid id"))
        })
        .transpose()?;
    let role = match p.role.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(r @ ("user" | "assistant" | "title")) => Some(r.to_string()),
        Some(_) => {
            return Err(AppError::validation(
                "role must be one of user, assistant, title",
            ));
        }
    };
    Ok(SearchRequest {
        user_id,
        q: p.q.unwrap_or_default(),
        conversation_id,
        role,
        after: time_param("after", p.after.as_deref())?,
        before: time_param("before", p.before.as_deref())?,
        limit,
        offset,
    })
}

/// Hits are the caller's own messages and conversation titles, newest
/// first, with plain-text snippets and UTF-16 highlight ranges.
#[utoipa::path(get, path = "/api/search", tag = "search", params(SearchQuery),
    responses((status = 200, body = SearchResults), (status = 400, body = crate::error::ErrorBody)))]
pub async fn search(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(p): Query<SearchQuery>,
) -> AppResult<Json<SearchResults>> {
    let req = request(user.id(), p)?;
    let next = req.offset + req.limit;
    let (search, store) = (state.search.clone(), state.store.clone());
    let partial = search.is_partial();
    let found = search.search_hits(&store, req).await.map_err(|e| match e {
        SearchError::BadQuery(m) => AppError::Validation(format!("q: {m}")),
        other => AppError::internal(other),
    })?;
    let hits = found
        .hits
        .into_iter()
        .map(|h| SearchHit {
            conversation_id: h.conversation_id.to_string(),
            conversation_title: h.conversation_title,
            message_id: h.message_id.map(|m| m.to_string()),
            role: h.role,
            created_at: rfc3339(h.created_at),
            snippet: h.snippet,
        })
        .collect();
    Ok(Json(SearchResults {
        hits,
        next_cursor: found.has_more.then(|| next.to_string()),
        partial,
    }))
}
