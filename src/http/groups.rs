//! Admin → Groups (admins only): groups, their members, the models and
//! providers they allow, and their quota defaults. The rules live in
//! `crate::groups`.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, put};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::actor;
use super::usage::{QuotaInput, present_quota, quota_override};
use super::{Json, created, parse_id};
use crate::auth::{Admin, ClientInfo};
use crate::error::AppResult;
use crate::groups::{GroupChange, GroupView, Groups};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/groups", get(list).post(create))
        .route("/admin/groups/{id}", get(read).patch(update).delete(remove))
        .route(
            "/admin/groups/{id}/members/{user_id}",
            put(add_member).delete(remove_member),
        )
}

fn service(state: &AppState) -> Groups<'_> {
    Groups {
        store: &state.store,
    }
}

#[derive(Serialize, ToSchema)]
pub struct GroupList {
    pub items: Vec<GroupView>,
    /// Always null: the whole list is one page.
    pub next_cursor: Option<String>,
}

/// A member as the group page shows it.
#[derive(Serialize, ToSchema)]
pub struct MemberView {
    pub id: String,
    pub username: String,
}

#[derive(Serialize, ToSchema)]
pub struct GroupDetail {
    #[serde(flatten)]
    pub group: GroupView,
    /// The members, by name.
    pub members: Vec<MemberView>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupBody {
    /// Required when creating; unique among groups, case-insensitively.
    #[serde(default)]
    pub name: Option<String>,
    /// Model names (as `GET /api/models` lists them) members may use.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// Providers (by name) every model of which members may use. With
    /// `models` empty too, the group allows every model.
    #[serde(default)]
    pub providers: Option<Vec<String>>,
    /// Quota defaults for members; null removes them.
    #[serde(default, deserialize_with = "present_quota")]
    #[schema(value_type = Option<QuotaInput>)]
    pub quota: Option<Option<QuotaInput>>,
}

impl GroupBody {
    fn change(self) -> AppResult<GroupChange> {
        Ok(GroupChange {
            name: self.name,
            models: self.models,
            providers: self.providers,
            quota: self.quota.map(quota_override).transpose()?,
        })
    }
}

async fn detail(state: &AppState, id: uuid::Uuid) -> AppResult<GroupDetail> {
    let (g, ids) = service(state).get(id).await?;
    let mut members = Vec::with_capacity(ids.len());
    for uid in &ids {
        if let Ok(u) = state.store.get_user(*uid).await {
            members.push(MemberView {
                id: u.id.to_string(),
                username: u.username,
            });
        }
    }
    members.sort_by_key(|m| m.username.to_lowercase());
    Ok(GroupDetail {
        group: GroupView::of(&g, ids.len()),
        members,
    })
}

/// Every group with its allowed models, quota defaults and member count.
#[utoipa::path(get, path = "/api/admin/groups", tag = "admin", operation_id = "admin_list_groups",
    responses((status = 200, body = GroupList), (status = 403, body = crate::error::ErrorBody)))]
pub async fn list(State(state): State<AppState>, _admin: Admin) -> AppResult<Json<GroupList>> {
    Ok(Json(GroupList {
        items: service(&state).list().await?,
        next_cursor: None,
    }))
}

/// Creates a group (audited as `admin.group.create`).
#[utoipa::path(post, path = "/api/admin/groups", tag = "admin", operation_id = "admin_create_group",
    request_body = GroupBody,
    responses((status = 201, body = GroupDetail), (status = 403, body = crate::error::ErrorBody),
        (status = 409, description = "`CONFLICT`: another group has this name", body = crate::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    client: ClientInfo,
    Admin(admin): Admin,
    Json(body): Json<GroupBody>,
) -> AppResult<Response> {
    let g = service(&state)
        .create(&actor(&client, Some(&admin.user)), body.change()?)
        .await?;
    Ok(created(detail(&state, g.id).await?))
}

/// One group with its members.
#[utoipa::path(get, path = "/api/admin/groups/{id}", tag = "admin", operation_id = "admin_read_group",
    params(("id" = String, Path, description = "The group's id")),
    responses((status = 200, body = GroupDetail), (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
pub async fn read(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> AppResult<Json<GroupDetail>> {
    let id = parse_id(&id, "group")?;
    Ok(Json(detail(&state, id).await?))
}

/// Renames a group, changes what it allows or its quota defaults (fields
/// left out stay as they are; audited as `admin.group.rename`,
/// `admin.group.access`, `admin.group.quota`).
#[utoipa::path(patch, path = "/api/admin/groups/{id}", tag = "admin", operation_id = "admin_update_group",
    params(("id" = String, Path, description = "The group's id")),
    request_body = GroupBody,
    responses((status = 200, body = GroupDetail), (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "`CONFLICT`: another group has this name", body = crate::error::ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    client: ClientInfo,
    Admin(admin): Admin,
    Path(id): Path<String>,
    Json(body): Json<GroupBody>,
) -> AppResult<Json<GroupDetail>> {
    let id = parse_id(&id, "group")?;
    service(&state)
        .update(&actor(&client, Some(&admin.user)), id, body.change()?)
        .await?;
    Ok(Json(detail(&state, id).await?))
}

/// Deletes a group; its members keep their accounts (audited as
/// `admin.group.delete`).
#[utoipa::path(delete, path = "/api/admin/groups/{id}", tag = "admin", operation_id = "admin_delete_group",
    params(("id" = String, Path, description = "The group's id")),
    responses((status = 204), (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    client: ClientInfo,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let id = parse_id(&id, "group")?;
    service(&state)
        .delete(&actor(&client, Some(&admin.user)), id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Adds a user to a group (idempotent; audited as `admin.group.member.add`).
#[utoipa::path(put, path = "/api/admin/groups/{id}/members/{user_id}", tag = "admin",
    operation_id = "admin_add_group_member",
    params(("id" = String, Path, description = "The group's id"),
        ("user_id" = String, Path, description = "The user's id")),
    responses((status = 204), (status = 403, body = crate::error::ErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such group or user", body = crate::error::ErrorBody)))]
pub async fn add_member(
    State(state): State<AppState>,
    client: ClientInfo,
    Admin(admin): Admin,
    Path((id, user_id)): Path<(String, String)>,
) -> AppResult<StatusCode> {
    let (id, uid) = (parse_id(&id, "group")?, parse_id(&user_id, "user")?);
    service(&state)
        .add_member(&actor(&client, Some(&admin.user)), id, uid)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a user from a group (idempotent; audited as
/// `admin.group.member.remove`).
#[utoipa::path(delete, path = "/api/admin/groups/{id}/members/{user_id}", tag = "admin",
    operation_id = "admin_remove_group_member",
    params(("id" = String, Path, description = "The group's id"),
        ("user_id" = String, Path, description = "The user's id")),
    responses((status = 204), (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
pub async fn remove_member(
    State(state): State<AppState>,
    client: ClientInfo,
    Admin(admin): Admin,
    Path((id, user_id)): Path<(String, String)>,
) -> AppResult<StatusCode> {
    let (id, uid) = (parse_id(&id, "group")?, parse_id(&user_id, "user")?);
    service(&state)
        .remove_member(&actor(&client, Some(&admin.user)), id, uid)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
