//! Second factors, one-time tokens and the two-factor policy in
//! PostgreSQL.

use async_trait::async_trait;
use uuid::Uuid;

use super::{PgStore, Sql, begin, commit, dec, json};
use crate::store::security::{
    OneTimeKind, OneTimeToken, POLICY_KEY, TwoFactor, TwoFactorPolicy, TwoFactorUpdate,
};
use crate::store::{SecurityStore, StoreResult};

#[async_trait]
impl SecurityStore for PgStore {
    async fn get_two_factor(&self, user_id: Uuid) -> StoreResult<Option<TwoFactor>> {
        let c = self.client().await?;
        c.opt(
            "SELECT data FROM two_factor WHERE user_id = $1",
            &[&user_id],
        )
        .await?
        .map(|r| dec(&r, 0))
        .transpose()
    }

    async fn put_two_factor(&self, t: &TwoFactor) -> StoreResult<()> {
        let c = self.client().await?;
        c.exec(
            "INSERT INTO two_factor (user_id, data) VALUES ($1, $2)
             ON CONFLICT (user_id) DO UPDATE SET data = excluded.data",
            &[&t.user_id, &json(t)],
        )
        .await?;
        Ok(())
    }

    async fn delete_two_factor(&self, user_id: Uuid) -> StoreResult<bool> {
        let c = self.client().await?;
        let n = c
            .exec("DELETE FROM two_factor WHERE user_id = $1", &[&user_id])
            .await?;
        Ok(n > 0)
    }

    async fn update_two_factor(
        &self,
        user_id: Uuid,
        f: TwoFactorUpdate,
    ) -> StoreResult<Option<(TwoFactor, bool)>> {
        let mut c = self.client().await?;
        let tx = begin(&mut c).await?;
        let mut r: TwoFactor = match tx
            .opt(
                "SELECT data FROM two_factor WHERE user_id = $1 FOR UPDATE",
                &[&user_id],
            )
            .await?
        {
            Some(row) => dec(&row, 0)?,
            None => return Ok(None),
        };
        let changed = f(&mut r);
        if changed {
            tx.exec(
                "UPDATE two_factor SET data = $2 WHERE user_id = $1",
                &[&user_id, &json(&r)],
            )
            .await?;
            commit(tx).await?;
        }
        Ok(Some((r, changed)))
    }

    async fn put_one_time(&self, hash: &[u8], t: &OneTimeToken) -> StoreResult<()> {
        let c = self.client().await?;
        c.exec(
            "INSERT INTO one_time_tokens (token_hash, kind, user_id, expires_at, data)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (token_hash) DO UPDATE SET kind = excluded.kind,
                user_id = excluded.user_id, expires_at = excluded.expires_at, data = excluded.data",
            &[&hash, &t.kind.as_str(), &t.user_id, &t.expires_at, &json(t)],
        )
        .await?;
        Ok(())
    }

    async fn take_one_time(
        &self,
        kind: OneTimeKind,
        hash: &[u8],
        now: i64,
    ) -> StoreResult<Option<OneTimeToken>> {
        let c = self.client().await?;
        // One statement: of two takers at the same time, one gets it.
        let row = c
            .opt(
                "DELETE FROM one_time_tokens WHERE token_hash = $1 AND kind = $2 RETURNING data",
                &[&hash, &kind.as_str()],
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let t: OneTimeToken = dec(&row, 0)?;
        Ok((t.expires_at > now).then_some(t))
    }

    async fn delete_one_time_of_user(
        &self,
        user_id: Uuid,
        kind: OneTimeKind,
    ) -> StoreResult<usize> {
        let c = self.client().await?;
        let n = c
            .exec(
                "DELETE FROM one_time_tokens WHERE user_id = $1 AND kind = $2",
                &[&user_id, &kind.as_str()],
            )
            .await?;
        Ok(n as usize)
    }

    async fn prune_one_time(&self, now: i64) -> StoreResult<usize> {
        let c = self.client().await?;
        let n = c
            .exec(
                "DELETE FROM one_time_tokens WHERE expires_at <= $1",
                &[&now],
            )
            .await?;
        Ok(n as usize)
    }

    async fn two_factor_policy(&self) -> StoreResult<TwoFactorPolicy> {
        let c = self.client().await?;
        Ok(
            c.opt("SELECT value FROM meta WHERE key = $1", &[&POLICY_KEY])
                .await?
                .map(|r| dec(&r, 0))
                .transpose()?
                .unwrap_or_default(),
        )
    }

    async fn set_two_factor_policy(&self, p: TwoFactorPolicy) -> StoreResult<()> {
        let c = self.client().await?;
        c.exec(
            "INSERT INTO meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&POLICY_KEY, &json(&p)],
        )
        .await?;
        Ok(())
    }
}
