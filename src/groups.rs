//! Groups and model access: admins make groups, put users in them, allow
//! models (catalogue names) and whole providers per group, and give groups
//! quota defaults. This module owns the rules; the records live behind
//! `store::groups::GroupStore`.
//!
//! **Which models a user may use** ([`ModelAccess`], the one check every
//! path that resolves a model name for a user goes through):
//! - an admin may use every model;
//! - a user in no group, or in any group that lists neither models nor
//!   providers (a group that only carries quotas), may use every enabled
//!   model — so installs without groups behave as before;
//! - otherwise the user may use the union of what their groups allow: a
//!   model named by a group (the catalogue's name, its `:latest` alias
//!   included) through any provider serving it, and every model of a
//!   provider a group names.
//!
//! A model a user may not use is answered exactly like one that does not
//! exist (404 `MODEL_NOT_FOUND`).
//!
//! **Quotas**: a user's effective limit is, field by field, their own
//! override when set, else the most generous value among their groups
//! (storage 0 = no limit, the most generous), else the server default.
//!
//! Nothing here is cached: a check is one read of the user's groups (an
//! index range in redb, one indexed join in PostgreSQL), so every instance
//! on a shared database sees a change at its next request.

use std::collections::BTreeSet;

use serde::Serialize;
use uuid::Uuid;

use crate::error::{AppError, AppResult};
use crate::providers::routing::{Candidate, same_model};
use crate::store::groups::Group;
use crate::store::{QuotaOverride, Role, SharedStore, StoreError, StoreResult, User};
use crate::users::Actor;

/// Longest group name.
pub const MAX_NAME_CHARS: usize = 64;
/// Most models or providers one group lists.
pub const MAX_ENTRIES: usize = 500;
/// Longest model or provider name a group lists.
pub const MAX_ENTRY_CHARS: usize = 200;

/// What one user may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelAccess {
    All,
    Only {
        models: Vec<String>,
        providers: BTreeSet<String>,
    },
}

impl ModelAccess {
    /// The access `groups` (the user's) give `user`.
    pub fn of(user: &User, groups: &[Group]) -> ModelAccess {
        if user.role == Role::Admin || groups.is_empty() || groups.iter().any(|g| !g.restricts()) {
            return ModelAccess::All;
        }
        let mut models: Vec<String> = groups.iter().flat_map(|g| g.models.clone()).collect();
        models.sort();
        models.dedup();
        ModelAccess::Only {
            models,
            providers: groups.iter().flat_map(|g| g.providers.clone()).collect(),
        }
    }

    /// Loads `user`'s groups and gives their access.
    pub async fn load(store: &SharedStore, user: &User) -> StoreResult<ModelAccess> {
        if user.role == Role::Admin {
            return Ok(ModelAccess::All);
        }
        Ok(ModelAccess::of(user, &store.user_groups(user.id).await?))
    }

    pub fn is_all(&self) -> bool {
        matches!(self, ModelAccess::All)
    }

    /// Whether `provider` may answer `model` (the provider's or the
    /// catalogue's id) for this user.
    pub fn allows(&self, model: &str, provider: &str) -> bool {
        match self {
            ModelAccess::All => true,
            ModelAccess::Only { models, providers } => {
                providers.contains(provider)
                    || models.iter().any(|m| {
                        same_model(m, model)
                            || m.strip_prefix(provider)
                                .and_then(|r| r.strip_prefix('/'))
                                .is_some_and(|r| same_model(r, model))
                    })
            }
        }
    }

    /// Keeps the entries of a model list this user may use; `f` gives an
    /// entry's (model id, provider name).
    pub fn retain<T>(&self, items: &mut Vec<T>, f: impl Fn(&T) -> (&str, &str)) {
        if !self.is_all() {
            items.retain(|i| {
                let (m, p) = f(i);
                self.allows(m, p)
            });
        }
    }

    /// The candidates (of routing) this user may use, in order, and
    /// whether any was left out: then the request must be pinned to the
    /// one chosen, so that failover cannot reach a provider left out.
    pub fn keep(&self, candidates: Vec<Candidate>) -> (Vec<Candidate>, bool) {
        let before = candidates.len();
        let kept: Vec<Candidate> = candidates
            .into_iter()
            .filter(|c| self.allows(&c.model, &c.provider_name))
            .collect();
        let dropped = kept.len() != before;
        (kept, dropped)
    }
}

/// The quota override that applies to a user: theirs field by field, else
/// the most generous of their groups'. None when nothing is set.
pub fn effective_override(own: Option<&QuotaOverride>, groups: &[Group]) -> Option<QuotaOverride> {
    let most = |f: fn(&QuotaOverride) -> Option<u64>, zero_is_unlimited: bool| {
        groups
            .iter()
            .filter_map(|g| g.quota.as_ref().and_then(f))
            .max_by_key(|&v| {
                if zero_is_unlimited && v == 0 {
                    u64::MAX
                } else {
                    v
                }
            })
    };
    let q = QuotaOverride {
        messages_per_day: own
            .and_then(|q| q.messages_per_day)
            .or_else(|| most(|q| q.messages_per_day, false)),
        tokens_per_day: own
            .and_then(|q| q.tokens_per_day)
            .or_else(|| most(|q| q.tokens_per_day, false)),
        storage_bytes: own
            .and_then(|q| q.storage_bytes)
            .or_else(|| most(|q| q.storage_bytes, true)),
    };
    (q.messages_per_day.is_some() || q.tokens_per_day.is_some() || q.storage_bytes.is_some())
        .then_some(q)
}

/// `user` with the quota override in force (their own merged with their
/// groups'), for the quota code that reads `user.quota`.
pub async fn with_group_quotas(store: &SharedStore, user: &User) -> StoreResult<User> {
    let groups = store.user_groups(user.id).await?;
    let mut u = user.clone();
    u.quota = effective_override(user.quota.as_ref(), &groups);
    Ok(u)
}

/// A group as the admin API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GroupView {
    pub id: String,
    pub name: String,
    /// Model names members may use; with `providers`, empty = every model.
    pub models: Vec<String>,
    /// Providers every model of which members may use.
    pub providers: Vec<String>,
    /// Quota defaults for members (null = none).
    pub quota: Option<QuotaOverride>,
    /// Whether the group limits its members' models (false: it allows
    /// every model and carries quotas only).
    pub restricts_models: bool,
    pub member_count: usize,
    pub created_at: String,
    pub updated_at: String,
}

impl GroupView {
    pub fn of(g: &Group, member_count: usize) -> GroupView {
        GroupView {
            id: g.id.to_string(),
            name: g.name.clone(),
            models: g.models.clone(),
            providers: g.providers.clone(),
            quota: g.quota.clone(),
            restricts_models: g.restricts(),
            member_count,
            created_at: crate::clock::rfc3339(g.created_at),
            updated_at: crate::clock::rfc3339(g.updated_at),
        }
    }
}

/// An admin's change to a group; `None` keeps a field.
#[derive(Debug, Default)]
pub struct GroupChange {
    pub name: Option<String>,
    pub models: Option<Vec<String>>,
    pub providers: Option<Vec<String>>,
    /// `Some(None)` removes the group's quota defaults.
    pub quota: Option<Option<QuotaOverride>>,
}

fn clean_name(name: &str) -> AppResult<String> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > MAX_NAME_CHARS || n.chars().any(char::is_control) {
        return Err(AppError::validation(format!(
            "A group name needs 1 to {MAX_NAME_CHARS} characters, without control characters."
        )));
    }
    Ok(n.to_string())
}

fn clean_list(v: Vec<String>, field: &str) -> AppResult<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(v.len());
    for s in v {
        let s = s.trim().to_string();
        if s.is_empty()
            || s.chars().count() > MAX_ENTRY_CHARS
            || s.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(AppError::validation(format!(
                "Each entry of {field} must be a name of 1 to {MAX_ENTRY_CHARS} characters without spaces."
            )));
        }
        if !out.contains(&s) {
            out.push(s);
        }
    }
    if out.len() > MAX_ENTRIES {
        return Err(AppError::validation(format!(
            "A group lists at most {MAX_ENTRIES} {field}."
        )));
    }
    Ok(out)
}

fn describe_access(g: &Group) -> String {
    if !g.restricts() {
        return "every model".into();
    }
    format!(
        "models=[{}] providers=[{}]",
        g.models.join(","),
        g.providers.join(",")
    )
}

fn store_err(e: StoreError) -> AppError {
    match e {
        StoreError::NotFound => AppError::not_found("group"),
        e => e.into(),
    }
}

/// The groups service: admin changes, each audited.
pub struct Groups<'a> {
    pub store: &'a SharedStore,
}

impl Groups<'_> {
    async fn audit(&self, actor: &Actor, action: &str, target: String, outcome: &str) {
        let e = actor.entry(action, Some(target), outcome);
        if let Err(err) = self.store.append_audit(&e).await {
            tracing::error!(%action, error = %err, "failed to write audit entry");
        }
    }

    pub async fn list(&self) -> AppResult<Vec<GroupView>> {
        let mut out = Vec::new();
        for g in self.store.list_groups().await? {
            let n = self.store.group_members(g.id).await.map_or(0, |m| m.len());
            out.push(GroupView::of(&g, n));
        }
        Ok(out)
    }

    pub async fn get(&self, id: Uuid) -> AppResult<(Group, Vec<Uuid>)> {
        let g = self.store.get_group(id).await.map_err(store_err)?;
        let members = self.store.group_members(id).await.map_err(store_err)?;
        Ok((g, members))
    }

    /// Audited as `admin.group.create` (and `admin.group.access` /
    /// `admin.group.quota` when it starts with models or quotas).
    pub async fn create(&self, actor: &Actor, change: GroupChange) -> AppResult<Group> {
        let now = crate::clock::now();
        let name = clean_name(change.name.as_deref().unwrap_or_default())?;
        let g = Group {
            id: Uuid::now_v7(),
            name,
            models: clean_list(change.models.unwrap_or_default(), "models")?,
            providers: clean_list(change.providers.unwrap_or_default(), "providers")?,
            quota: change.quota.flatten(),
            created_at: now,
            updated_at: now,
        };
        let res = self.store.create_group(&g).await;
        let outcome = outcome(&res);
        self.audit(
            actor,
            "admin.group.create",
            format!("{} {:?}", g.id, g.name),
            outcome,
        )
        .await;
        res.map_err(store_err)?;
        if g.restricts() {
            self.audit(
                actor,
                "admin.group.access",
                format!("{}: {}", g.id, describe_access(&g)),
                "ok",
            )
            .await;
        }
        if g.quota.is_some() {
            let note = crate::users::describe_quota(g.quota.as_ref());
            self.audit(
                actor,
                "admin.group.quota",
                format!("{}: {note}", g.id),
                "ok",
            )
            .await;
        }
        Ok(g)
    }

    /// Audited as `admin.group.rename`, `admin.group.access` and
    /// `admin.group.quota`, one entry for each kind of change.
    pub async fn update(&self, actor: &Actor, id: Uuid, change: GroupChange) -> AppResult<Group> {
        let old = self.store.get_group(id).await.map_err(store_err)?;
        let mut g = old.clone();
        if let Some(n) = change.name.as_deref() {
            g.name = clean_name(n)?;
        }
        if let Some(m) = change.models {
            g.models = clean_list(m, "models")?;
        }
        if let Some(p) = change.providers {
            g.providers = clean_list(p, "providers")?;
        }
        if let Some(q) = change.quota {
            g.quota = q;
        }
        g.updated_at = crate::clock::now();
        let res = self.store.update_group(&g).await;
        let outcome = outcome(&res);
        if g.name != old.name {
            let t = format!("{id}: {:?} -> {:?}", old.name, g.name);
            self.audit(actor, "admin.group.rename", t, outcome).await;
        }
        if g.models != old.models || g.providers != old.providers {
            let t = format!("{id}: {}", describe_access(&g));
            self.audit(actor, "admin.group.access", t, outcome).await;
        }
        if g.quota != old.quota {
            let t = format!("{id}: {}", crate::users::describe_quota(g.quota.as_ref()));
            self.audit(actor, "admin.group.quota", t, outcome).await;
        }
        res.map_err(store_err)?;
        Ok(g)
    }

    /// Audited as `admin.group.delete`.
    pub async fn delete(&self, actor: &Actor, id: Uuid) -> AppResult<()> {
        let res = self.store.delete_group(id).await;
        let target = match &res {
            Ok(g) => format!("{id} {:?}", g.name),
            Err(_) => id.to_string(),
        };
        self.audit(actor, "admin.group.delete", target, outcome(&res))
            .await;
        res.map(|_| ()).map_err(store_err)
    }

    /// Audited as `admin.group.member.add` (when the user was not a member).
    pub async fn add_member(&self, actor: &Actor, group: Uuid, user: Uuid) -> AppResult<()> {
        let res = self.store.add_group_member(group, user).await;
        if !matches!(res, Ok(false)) {
            self.audit(
                actor,
                "admin.group.member.add",
                format!("{group}: {user}"),
                outcome(&res),
            )
            .await;
        }
        match res {
            Ok(_) => Ok(()),
            Err(StoreError::NotFound) => Err(AppError::not_found("group or user")),
            Err(e) => Err(e.into()),
        }
    }

    /// Audited as `admin.group.member.remove` (when the user was a member).
    pub async fn remove_member(&self, actor: &Actor, group: Uuid, user: Uuid) -> AppResult<()> {
        let res = self.store.remove_group_member(group, user).await;
        if !matches!(res, Ok(false)) {
            self.audit(
                actor,
                "admin.group.member.remove",
                format!("{group}: {user}"),
                outcome(&res),
            )
            .await;
        }
        res.map(|_| ()).map_err(store_err)
    }

    /// Single sign-on: makes `user` a member of exactly those of the
    /// `mapped` groups (every confab group the provider's mapping names)
    /// that `granted` lists; other groups are left alone. Groups that do
    /// not exist are skipped (logged). Each change is audited as
    /// `sso.group.add` / `sso.group.remove`.
    pub async fn sync_sso(
        &self,
        actor: &Actor,
        user: Uuid,
        mapped: &BTreeSet<String>,
        granted: &BTreeSet<String>,
    ) -> AppResult<()> {
        if mapped.is_empty() {
            return Ok(());
        }
        let all = self.store.list_groups().await?;
        let key = crate::store::groups::name_key;
        let granted_keys: BTreeSet<String> = granted.iter().map(|n| key(n)).collect();
        for name in mapped {
            let Some(g) = all.iter().find(|g| key(&g.name) == key(name)) else {
                tracing::warn!(group = %name, "single sign-on maps to a group that does not exist; create it in Admin → Groups");
                continue;
            };
            let (changed, action) = if granted_keys.contains(&key(name)) {
                (
                    self.store.add_group_member(g.id, user).await?,
                    "sso.group.add",
                )
            } else {
                (
                    self.store.remove_group_member(g.id, user).await?,
                    "sso.group.remove",
                )
            };
            if changed {
                self.audit(actor, action, format!("{}: {user}", g.id), "ok")
                    .await;
            }
        }
        Ok(())
    }
}

fn outcome<T>(r: &StoreResult<T>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(StoreError::NotFound) => "NOT_FOUND",
        Err(StoreError::Conflict(_)) => "CONFLICT",
        Err(_) => "INTERNAL",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::UserStatus;

    fn user(role: Role) -> User {
        User {
            id: Uuid::now_v7(),
            username: "u".into(),
            email: None,
            email_verified: false,
            password_hash: String::new(),
            role,
            status: UserStatus::Active,
            created_at: 0,
            updated_at: 0,
            quota: None,
        }
    }

    fn group(models: &[&str], providers: &[&str], quota: Option<QuotaOverride>) -> Group {
        Group {
            id: Uuid::now_v7(),
            name: "g".into(),
            models: models.iter().map(|s| s.to_string()).collect(),
            providers: providers.iter().map(|s| s.to_string()).collect(),
            quota,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn access_rules() {
        let u = user(Role::User);
        assert!(ModelAccess::of(&u, &[]).is_all());
        assert!(ModelAccess::of(&u, &[group(&[], &[], None)]).is_all());
        let only = ModelAccess::of(
            &u,
            &[
                group(&["llama3.2"], &[], None),
                group(&[], &["cloud"], None),
            ],
        );
        assert!(only.allows("llama3.2", "local"));
        assert!(only.allows("llama3.2:latest", "local"));
        assert!(only.allows("gpt-4o", "cloud"));
        assert!(!only.allows("gpt-4o", "local"));
        assert!(!only.allows("mistral", "local"));
        let pinned = ModelAccess::of(&u, &[group(&["local/qwen"], &[], None)]);
        assert!(pinned.allows("qwen", "local"));
        assert!(!pinned.allows("qwen", "other"));
        // A quota-only group beside a restricting one allows everything.
        assert!(ModelAccess::of(&u, &[group(&["a"], &[], None), group(&[], &[], None)]).is_all());
        // Admins see everything.
        assert!(ModelAccess::of(&user(Role::Admin), &[group(&["a"], &[], None)]).is_all());
    }

    #[test]
    fn quota_precedence() {
        let q = |m: Option<u64>, s: Option<u64>| QuotaOverride {
            messages_per_day: m,
            tokens_per_day: None,
            storage_bytes: s,
        };
        let groups = [
            group(&[], &[], Some(q(Some(10), Some(100)))),
            group(&[], &[], Some(q(Some(50), Some(0)))),
        ];
        let e = effective_override(None, &groups).unwrap();
        assert_eq!(e.messages_per_day, Some(50));
        assert_eq!(
            e.storage_bytes,
            Some(0),
            "0 (no limit) is the most generous"
        );
        assert_eq!(e.tokens_per_day, None);
        let own = q(Some(3), None);
        let e = effective_override(Some(&own), &groups).unwrap();
        assert_eq!(e.messages_per_day, Some(3), "the user's own override wins");
        assert_eq!(e.storage_bytes, Some(0));
        assert_eq!(effective_override(None, &[]), None);
    }
}
