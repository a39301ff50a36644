//! Linked identities and sign-ins under way at a provider, in PostgreSQL.
//! The unique (issuer, subject) index and the users' unique name key hold
//! the rules; a sign-in under way is taken with `DELETE … RETURNING`, so
//! two instances cannot both finish it.

use async_trait::async_trait;
use uuid::Uuid;

use super::users::{role, status};
use super::{PgStore, Sql, begin, commit, dec, json};
use crate::store::identities::{IdentityLink, IdentityStore, SsoState};
use crate::store::{StoreError, StoreResult, User};

#[async_trait]
impl IdentityStore for PgStore {
    async fn link_identity(&self, link: &IdentityLink, new_user: Option<&User>) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = begin(&mut c).await?;
        if let Some(user) = new_user {
            let key = crate::username::key(&user.username);
            match tx
                .exec(
                    "INSERT INTO users (id, name_key, role, status, data) VALUES ($1, $2, $3, $4, $5)",
                    &[
                        &user.id,
                        &key,
                        &role(user.role),
                        &status(user.status),
                        &json(user),
                    ],
                )
                .await
            {
                Err(StoreError::Conflict(_)) => {
                    return Err(StoreError::Conflict("username already taken".into()));
                }
                r => r?,
            };
        } else if tx
            .opt("SELECT 1 FROM users WHERE id = $1", &[&link.user_id])
            .await?
            .is_none()
        {
            return Err(StoreError::NotFound);
        }
        match tx
            .exec(
                "INSERT INTO identities (id, user_id, issuer, subject, data) VALUES ($1, $2, $3, $4, $5)",
                &[
                    &link.id,
                    &link.user_id,
                    &link.issuer,
                    &link.subject,
                    &json(link),
                ],
            )
            .await
        {
            Err(StoreError::Conflict(_)) => {
                return Err(StoreError::Conflict(
                    "this identity is already linked to an account".into(),
                ));
            }
            r => r?,
        };
        commit(tx).await
    }

    async fn find_identity(
        &self,
        issuer: &str,
        subject: &str,
    ) -> StoreResult<Option<IdentityLink>> {
        let c = self.client().await?;
        c.opt(
            "SELECT data FROM identities WHERE issuer = $1 AND subject = $2",
            &[&issuer, &subject],
        )
        .await?
        .map(|r| dec(&r, 0))
        .transpose()
    }

    async fn list_identities(&self, user_id: Uuid) -> StoreResult<Vec<IdentityLink>> {
        let c = self.client().await?;
        let rows = c
            .rows(
                "SELECT data FROM identities WHERE user_id = $1 ORDER BY id",
                &[&user_id],
            )
            .await?;
        rows.iter().map(|r| dec(r, 0)).collect()
    }

    async fn unlink_identity(&self, user_id: Uuid, id: Uuid) -> StoreResult<IdentityLink> {
        let c = self.client().await?;
        match c
            .opt(
                "DELETE FROM identities WHERE id = $1 AND user_id = $2 RETURNING data",
                &[&id, &user_id],
            )
            .await?
        {
            Some(r) => dec(&r, 0),
            None => Err(StoreError::NotFound),
        }
    }

    async fn put_sso_state(&self, key: &[u8], s: &SsoState) -> StoreResult<()> {
        let c = self.client().await?;
        c.exec(
            "DELETE FROM sso_states WHERE expires_at <= $1",
            &[&s.created_at],
        )
        .await?;
        c.exec(
            "INSERT INTO sso_states (key, expires_at, data) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at, data = excluded.data",
            &[&key, &s.expires_at, &json(s)],
        )
        .await?;
        Ok(())
    }

    async fn take_sso_state(&self, key: &[u8], now: i64) -> StoreResult<Option<SsoState>> {
        let c = self.client().await?;
        let found: Option<SsoState> = c
            .opt(
                "DELETE FROM sso_states WHERE key = $1 RETURNING data",
                &[&key],
            )
            .await?
            .map(|r| dec(&r, 0))
            .transpose()?;
        Ok(found.filter(|s| s.expires_at > now))
    }
}
