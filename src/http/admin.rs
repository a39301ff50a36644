//! Admin routes: users, invites and the audit log.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, patch};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::{UserView, actor, audit, users};
use super::{Json, Query, created, parse_id};
use crate::auth::{Admin, ClientInfo};
use crate::clock::rfc3339;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::store::{Invite, Role, UserStatus};
use crate::users::invites::Invites;
use crate::users::invites::invite_url;
use crate::users::{NewUser, UserChange};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/users", get(list_users).post(create_user))
        .route("/admin/users/{id}", patch(update_user))
        .route("/admin/invites", get(list_invites).post(create_invite))
        .route("/admin/invites/{code}", delete(revoke_invite))
        .route("/admin/audit", get(list_audit))
        .route("/admin/backup", get(backup))
}

#[derive(Deserialize, ToSchema, utoipa::IntoParams)]
pub struct Page {
    pub cursor: Option<String>,
    pub limit: Option<usize>,
}

fn limit(p: &Page) -> AppResult<usize> {
    match p.limit {
        None => Ok(50),
        Some(n) if (1..=200).contains(&n) => Ok(n),
        Some(_) => Err(AppError::validation("limit must be between 1 and 200")),
    }
}

fn cursor(p: &Page) -> AppResult<Option<Uuid>> {
    p.cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(|c| Uuid::parse_str(c).map_err(|_| AppError::validation("cursor is not valid")))
        .transpose()
}

#[derive(Serialize, ToSchema)]
pub struct UserList {
    pub items: Vec<super::usage::AdminUserView>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/admin/users", tag = "admin", params(Page),
    responses((status = 200, body = UserList), (status = 403, body = crate::error::ErrorBody)))]
pub async fn list_users(
    State(state): State<AppState>,
    _admin: Admin,
    Query(page): Query<Page>,
) -> AppResult<Json<UserList>> {
    let n = limit(&page)?;
    let users = state.store.list_users(cursor(&page)?, n + 1).await?;
    let more = users.len() > n;
    let mut items = Vec::with_capacity(n);
    for u in users.iter().take(n) {
        items.push(super::usage::admin_user_view(&state, u).await?);
    }
    let next_cursor = more
        .then(|| items.last().map(|u| u.user.id.clone()))
        .flatten();
    Ok(Json(UserList { items, next_cursor }))
}

#[derive(Deserialize, ToSchema)]
pub struct CreateUser {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub role: Option<Role>,
}

/// Lets admins create accounts directly (useful when registration is closed).
#[utoipa::path(post, path = "/api/admin/users", tag = "admin", request_body = CreateUser,
    responses((status = 201, body = UserView), (status = 409, body = crate::error::ErrorBody)))]
pub async fn create_user(
    State(state): State<AppState>,
    client: ClientInfo,
    Admin(admin): Admin,
    Json(req): Json<CreateUser>,
) -> AppResult<Response> {
    let new = NewUser {
        username: req.username,
        password: req.password,
        email: req.email,
        role: req.role.unwrap_or(Role::User),
    };
    let user = users(&state)
        .create_user(&actor(&client, Some(&admin.user)), new)
        .await?;
    Ok(created(UserView::from(&user)))
}

#[derive(Deserialize, ToSchema)]
pub struct UpdateUser {
    #[serde(default)]
    pub role: Option<Role>,
    #[serde(default)]
    pub status: Option<UserStatus>,
    /// Sets a new password and signs the user out everywhere: sessions,
    /// refresh tokens and API keys.
    #[serde(default)]
    pub password: Option<String>,
    /// Daily limits for this user; null = the server default (`[quota]`).
    #[serde(default, deserialize_with = "super::usage::present_quota")]
    #[schema(value_type = Option<super::usage::QuotaInput>)]
    pub quota: Option<Option<super::usage::QuotaInput>>,
    /// Refused (400): which models a user may use is set through groups
    /// (`/api/admin/groups`), never per user.
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub allowed_models: Option<serde_json::Value>,
}

/// The user after an update, and what the update signed out.
#[derive(Serialize, ToSchema)]
pub struct UpdatedUser {
    #[serde(flatten)]
    pub user: super::usage::AdminUserView,
    /// Set when a new password (sessions, refresh tokens and API keys) or
    /// disabling (sessions and refresh tokens) signed the user out; else null.
    pub revoked: Option<crate::store::Revoked>,
}

#[utoipa::path(patch, path = "/api/admin/users/{id}", tag = "admin", request_body = UpdateUser,
    responses((status = 200, body = UpdatedUser), (status = 404, body = crate::error::ErrorBody)))]
pub async fn update_user(
    State(state): State<AppState>,
    client: ClientInfo,
    Admin(admin): Admin,
    Path(id): Path<String>,
    Json(req): Json<UpdateUser>,
) -> AppResult<Json<UpdatedUser>> {
    let uid = parse_id(&id, "user")?;
    if req.allowed_models.is_some() {
        return Err(AppError::validation(
            "allowed_models is not set per user: put the user in a group that allows those models (Admin → Groups, or /api/admin/groups).",
        ));
    }
    let change = UserChange {
        role: req.role,
        status: req.status,
        password: req.password,
        quota: req.quota.map(super::usage::quota_override).transpose()?,
    };
    let (u, revoked) = users(&state)
        .update_user(&actor(&client, Some(&admin.user)), uid, change)
        .await?;
    Ok(Json(UpdatedUser {
        user: super::usage::admin_user_view(&state, &u).await?,
        revoked,
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct CreateInvite {
    /// How many accounts the code may create (default 1).
    #[serde(default)]
    pub uses: Option<u32>,
    /// Default 168 (one week).
    #[serde(default)]
    pub expires_in_hours: Option<u32>,
    #[serde(default)]
    pub role: Option<Role>,
}

#[derive(Serialize, ToSchema)]
pub struct InviteView {
    pub code: String,
    /// A registration link carrying the code.
    pub url: String,
    pub role: Role,
    pub uses_left: u32,
    pub expires_at: String,
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct InviteList {
    pub items: Vec<InviteView>,
    pub next_cursor: Option<String>,
}

pub fn invite_view(base: &str, i: &Invite) -> InviteView {
    InviteView {
        code: i.code.clone(),
        url: invite_url(base, &i.code),
        role: i.role,
        uses_left: i.uses_left,
        expires_at: rfc3339(i.expires_at),
        created_at: rfc3339(i.created_at),
    }
}

#[utoipa::path(post, path = "/api/admin/invites", tag = "admin", request_body = CreateInvite,
    responses((status = 201, body = InviteView)))]
pub async fn create_invite(
    State(state): State<AppState>,
    client: ClientInfo,
    Admin(admin): Admin,
    Json(req): Json<CreateInvite>,
) -> AppResult<Response> {
    let inv = Invites {
        store: &state.store,
    }
    .create_invite(
        &actor(&client, Some(&admin.user)),
        req.uses,
        req.expires_in_hours,
        req.role,
    )
    .await?;
    Ok(created(invite_view(&state.public_base, &inv)))
}

/// The caller's own invites (and the command line's) that can still be used.
#[utoipa::path(get, path = "/api/admin/invites", tag = "admin", responses((status = 200, body = InviteList)))]
pub async fn list_invites(
    State(state): State<AppState>,
    client: ClientInfo,
    Admin(admin): Admin,
) -> AppResult<Json<InviteList>> {
    let items = Invites {
        store: &state.store,
    }
    .usable_invites(&actor(&client, Some(&admin.user)))
    .await?
    .iter()
    .map(|i| invite_view(&state.public_base, i))
    .collect();
    Ok(Json(InviteList {
        items,
        next_cursor: None,
    }))
}

#[utoipa::path(delete, path = "/api/admin/invites/{code}", tag = "admin",
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn revoke_invite(
    State(state): State<AppState>,
    client: ClientInfo,
    Admin(admin): Admin,
    Path(code): Path<String>,
) -> AppResult<StatusCode> {
    Invites {
        store: &state.store,
    }
    .revoke_invite(&actor(&client, Some(&admin.user)), &code)
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct AuditView {
    pub id: String,
    pub at: String,
    pub actor_id: Option<String>,
    pub actor: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub outcome: String,
}

#[derive(Serialize, ToSchema)]
pub struct AuditList {
    pub items: Vec<AuditView>,
    pub next_cursor: Option<String>,
}

/// Newest first; pass `next_cursor` back as `cursor` for older entries.
/// Filters: `actor` (username or id), `action` (exact, or a prefix ending
/// in `.` or `*`), `from` / `to` (dates or RFC 3339 times).
#[utoipa::path(get, path = "/api/admin/audit", tag = "admin", params(super::usage::AuditQuery),
    responses((status = 200, body = AuditList)))]
pub async fn list_audit(
    State(state): State<AppState>,
    _admin: Admin,
    Query(q): Query<super::usage::AuditQuery>,
) -> AppResult<Json<AuditList>> {
    let page = Page {
        cursor: q.cursor.clone(),
        limit: q.limit,
    };
    let n = limit(&page)?;
    let filter = q.filter()?;
    let (entries, resume) = if filter.is_empty() {
        (state.store.list_audit(cursor(&page)?, n + 1).await?, None)
    } else {
        state
            .store
            .list_audit_filtered(cursor(&page)?, n + 1, &filter)
            .await?
    };
    let more = entries.len() > n;
    let items: Vec<AuditView> = entries
        .into_iter()
        .take(n)
        .map(|e| AuditView {
            id: e.id.to_string(),
            at: rfc3339(e.at),
            actor_id: e.actor.map(|a| a.to_string()),
            actor: e.actor_name,
            action: e.action,
            target: e.target,
            ip: e.ip,
            user_agent: e.user_agent,
            outcome: e.outcome,
        })
        .collect();
    let next_cursor = if more {
        items.last().map(|e| e.id.clone())
    } else {
        // A filtered scan that stopped early continues from where it stopped.
        resume.map(|r| r.to_string())
    };
    Ok(Json(AuditList { items, next_cursor }))
}

/// A consistent backup of the whole store (one read transaction, taken
/// while the server keeps serving) plus `provider.key` (never the JWT
/// signing key: see `ops::backup`), as a redb file. Restore it with `confab restore FILE` on a stopped server.
/// One backup runs at a time (409 while another is being taken); 409 too
/// when the store is PostgreSQL (back it up with pg_dump).
#[utoipa::path(get, path = "/api/admin/backup", tag = "admin",
    responses(
        (status = 200, description = "The backup file (`application/octet-stream`; `X-Confab-Schema-Version` and `X-Confab-Backup-Records` describe it)", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 403, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
pub async fn backup(
    State(state): State<AppState>,
    client: ClientInfo,
    Admin(admin): Admin,
) -> AppResult<Response> {
    use crate::ops::backup::{SnapshotError, snapshot};
    if state.store.file().is_none() {
        let e = crate::store::BackupError::NotAFile;
        return Err(AppError::Conflict(e.to_string()));
    }
    let data_dir = state.cfg.data_dir.clone();
    let store = state.store.clone();
    // Files deleted while the blobs are copied keep their blobs until the
    // backup is written (the next garbage collection removes them).
    let pause = state.files.pause_deletes();
    let blobs = state.files.blob_source(tokio::runtime::Handle::current());
    let taken = tokio::task::spawn_blocking(move || snapshot(&store, &data_dir, &blobs))
        .await
        .map_err(|e| AppError::internal(anyhow::anyhow!("backup task failed: {e}")))?;
    drop(pause);
    // A refusal while another backup runs is not audited.
    if !matches!(taken, Err(SnapshotError::Busy)) {
        let outcome = if taken.is_ok() { "ok" } else { "error" };
        audit(
            &state,
            &client,
            Some(&admin.user),
            None,
            "admin.backup",
            None,
            outcome,
        )
        .await;
    }
    let snap = match taken {
        Ok(s) => s,
        Err(SnapshotError::Busy) => {
            return Err(AppError::Conflict(SnapshotError::Busy.to_string()));
        }
        Err(SnapshotError::Backup(e)) => return Err(AppError::internal(anyhow::anyhow!(e))),
    };
    tracing::info!(
        records = snap.header.rows(),
        bytes = snap.len,
        "backup taken for download"
    );
    download(snap)
}

/// A backup file as an attachment, its header described in headers.
fn download(snap: crate::ops::backup::Snapshot) -> AppResult<Response> {
    use axum::http::header;
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(
        tokio::fs::File::from_std(snap.file),
    ));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, snap.len)
        .header(
            header::CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"{}\"",
                crate::ops::backup::default_file_name()
            ),
        )
        .header("x-confab-schema-version", snap.header.schema_version)
        .header("x-confab-backup-records", snap.header.rows())
        .body(body)
        .map_err(|e| AppError::internal(anyhow::anyhow!(e)))
}
