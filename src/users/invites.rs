//! Invites: single- or multi-use registration codes made by administrators
//! (API or command line).

use uuid::Uuid;

use super::{Actor, UserError, UserResult, audit};
use crate::auth::tokens;
use crate::store::{Invite, Role, SharedStore, StoreError};

/// A registration link carrying the code.
pub fn invite_url(base: &str, code: &str) -> String {
    format!("{base}/register?invite={code}")
}

/// Builds a new invite record after validating the inputs: `uses` default
/// 1 (1..=10000), `hours` default 168 (1..=8760), role default user.
pub fn new_invite(
    uses: Option<u32>,
    hours: Option<u32>,
    role: Option<Role>,
    created_by: Option<Uuid>,
) -> UserResult<Invite> {
    let uses = uses.unwrap_or(1);
    if !(1..=10_000).contains(&uses) {
        return Err(UserError::Validation(
            "uses must be between 1 and 10000".into(),
        ));
    }
    let hours = hours.unwrap_or(168);
    if !(1..=24 * 365).contains(&hours) {
        return Err(UserError::Validation(
            "expires_in_hours must be between 1 and 8760".into(),
        ));
    }
    let now = crate::clock::now();
    Ok(Invite {
        code: tokens::random_code(),
        created_by,
        created_at: now,
        expires_at: now + i64::from(hours) * 3600,
        uses_left: uses,
        role: role.unwrap_or(Role::User),
    })
}

/// The invites service.
pub struct Invites<'a> {
    pub store: &'a SharedStore,
}

impl Invites<'_> {
    /// Creates and stores an invite owned by `actor` (none: the command
    /// line's, shared by all admins).
    pub async fn create_invite(
        &self,
        actor: &Actor,
        uses: Option<u32>,
        hours: Option<u32>,
        role: Option<Role>,
    ) -> UserResult<Invite> {
        let inv = new_invite(uses, hours, role, actor.id)?;
        let i2 = inv.clone();
        self.store.put_invite(&i2).await?;
        let target = format!("role={:?} uses={}", inv.role, inv.uses_left).to_lowercase();
        audit(self.store, actor.entry("invite.create", Some(target), "ok")).await;
        Ok(inv)
    }

    /// The invites `actor` may see that can still be used: their own and
    /// the command line's (`actor.id` none: every one).
    pub async fn usable_invites(&self, actor: &Actor) -> UserResult<Vec<Invite>> {
        let now = crate::clock::now();
        Ok(self
            .store
            .list_invites()
            .await?
            .into_iter()
            .filter(|i| {
                (actor.id.is_none() || i.created_by == actor.id || i.created_by.is_none())
                    && i.uses_left > 0
                    && i.expires_at > now
            })
            .collect())
    }

    /// Deletes an invite `actor` owns (the command line: any invite).
    pub async fn revoke_invite(&self, actor: &Actor, code: &str) -> UserResult<()> {
        let (c2, owner) = (code.to_string(), actor.id);
        let res = self.store.delete_invite(&c2, owner).await;
        let outcome = if res.is_ok() { "ok" } else { "NOT_FOUND" };
        audit(self.store, actor.entry("invite.revoke", None, outcome)).await;
        match res {
            Ok(()) => Ok(()),
            Err(StoreError::NotFound) => Err(UserError::NotFound("invite")),
            Err(e) => Err(e.into()),
        }
    }
}
