//! Groups: named sets of users that admins make, each allowing a set of
//! models and providers and carrying quota defaults (the rules that use
//! them live in `crate::groups`). A group's record and its memberships
//! are separate, so adding a member never rewrites the group.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{QuotaOverride, StoreResult};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Group {
    pub id: Uuid,
    /// Unique among groups once folded like user names (`Staff` = `staff`).
    pub name: String,
    /// Model names (ids of the model catalogue) members may use.
    #[serde(default)]
    pub models: Vec<String>,
    /// Providers (by name) every model of which members may use.
    #[serde(default)]
    pub providers: Vec<String>,
    /// Quota defaults for members: beneath a user's own override, above
    /// the server's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaOverride>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Group {
    /// Whether the group limits which models its members see: a group with
    /// neither models nor providers listed allows every model (it carries
    /// quotas only).
    pub fn restricts(&self) -> bool {
        !self.models.is_empty() || !self.providers.is_empty()
    }
}

/// The key group names are unique under.
pub fn name_key(name: &str) -> String {
    crate::username::key(name)
}

#[async_trait]
pub trait GroupStore: Send + Sync {
    /// Conflict when the name is taken.
    async fn create_group(&self, group: &Group) -> StoreResult<()>;
    /// Replaces the record of `group.id`: NotFound when there is none,
    /// Conflict when the new name is another group's.
    async fn update_group(&self, group: &Group) -> StoreResult<()>;
    /// Removes the group and its memberships; NotFound when there is none.
    async fn delete_group(&self, id: Uuid) -> StoreResult<Group>;
    /// NotFound when there is no such group.
    async fn get_group(&self, id: Uuid) -> StoreResult<Group>;
    /// Every group, by name.
    async fn list_groups(&self) -> StoreResult<Vec<Group>>;
    /// Adds `user` to the group: false when already a member; NotFound
    /// when the group or the user does not exist.
    async fn add_group_member(&self, group: Uuid, user: Uuid) -> StoreResult<bool>;
    /// False when `user` was not a member; NotFound when the group does not
    /// exist.
    async fn remove_group_member(&self, group: Uuid, user: Uuid) -> StoreResult<bool>;
    /// The members' ids, in id order; NotFound when the group does not exist.
    async fn group_members(&self, group: Uuid) -> StoreResult<Vec<Uuid>>;
    /// The groups `user` is in, by name.
    async fn user_groups(&self, user: Uuid) -> StoreResult<Vec<Group>>;
}

/// One membership, as `confab store copy` moves it between stores.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroupMember {
    pub group_id: Uuid,
    pub user_id: Uuid,
}
