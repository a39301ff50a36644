//! Accounts, sessions, refresh tokens, API keys, invites, the audit log and
//! the store's health in PostgreSQL.

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use uuid::Uuid;

use super::{PgStore, Sql, begin, commit, dec, json};
use crate::store::audit_query::{AuditFilter, MAX_SCAN};
use crate::store::*;

/// Held (transaction-scoped) by every `update_user`, so two admins demoting
/// each other at once cannot both see the other still active.
const USERS_LOCK: i64 = 0x636f_6e66_6162_0002;

pub(super) fn role(r: Role) -> &'static str {
    match r {
        Role::Admin => "admin",
        Role::User => "user",
    }
}

pub(super) fn status(s: UserStatus) -> &'static str {
    match s {
        UserStatus::Active => "active",
        UserStatus::Disabled => "disabled",
    }
}

async fn save_user(tx: &Transaction<'_>, u: &User) -> StoreResult<()> {
    tx.exec(
        "UPDATE users SET role = $2, status = $3, data = $4 WHERE id = $1",
        &[&u.id, &role(u.role), &status(u.status), &json(u)],
    )
    .await?;
    Ok(())
}

async fn delete_sessions_in(
    tx: &Transaction<'_>,
    user_id: Uuid,
    keep: Option<Uuid>,
) -> StoreResult<usize> {
    let n = tx
        .exec(
            "DELETE FROM sessions WHERE user_id = $1 AND id IS DISTINCT FROM $2",
            &[&user_id, &keep],
        )
        .await?;
    Ok(n as usize)
}

#[async_trait]
impl UserStore for PgStore {
    async fn user_count(&self) -> StoreResult<u64> {
        let c = self.client().await?;
        let n: i64 = c.one("SELECT count(*) FROM users", &[]).await?.get(0);
        Ok(n as u64)
    }

    async fn get_user(&self, id: Uuid) -> StoreResult<User> {
        let c = self.client().await?;
        match c
            .opt("SELECT data FROM users WHERE id = $1", &[&id])
            .await?
        {
            Some(r) => dec(&r, 0),
            None => Err(StoreError::NotFound),
        }
    }

    async fn find_user_by_name(&self, username: &str) -> StoreResult<Option<User>> {
        let key = crate::username::key(username);
        let c = self.client().await?;
        c.opt("SELECT data FROM users WHERE name_key = $1", &[&key])
            .await?
            .map(|r| dec(&r, 0))
            .transpose()
    }

    async fn create_user(
        &self,
        user: &User,
        only_if_empty: bool,
        invite: Option<&str>,
        now: i64,
    ) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = begin(&mut c).await?;
        if only_if_empty {
            // Two setups at once: the second waits here, then sees a user.
            tx.exec("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE", &[])
                .await?;
            if tx.opt("SELECT 1 FROM users LIMIT 1", &[]).await?.is_some() {
                return Err(StoreError::Conflict(
                    "setup has already been completed".into(),
                ));
            }
        }
        let key = crate::username::key(&user.username);
        let taken = || StoreError::Conflict("username already taken".into());
        if tx
            .opt("SELECT 1 FROM users WHERE name_key = $1", &[&key])
            .await?
            .is_some()
        {
            return Err(taken());
        }
        if let Some(code) = invite {
            // The row lock serializes concurrent registrations on one
            // invite; each re-checks `uses_left` after the wait.
            let spent = tx
                .exec(
                    "UPDATE invites SET uses_left = uses_left - 1,
                        data = jsonb_set(data, '{uses_left}', to_jsonb(uses_left - 1))
                     WHERE code = $1 AND uses_left > 0 AND expires_at > $2",
                    &[&code, &now],
                )
                .await?;
            if spent == 0 {
                return Err(StoreError::NotFound);
            }
        }
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
            Err(StoreError::Conflict(_)) => return Err(taken()),
            r => r?,
        };
        commit(tx).await
    }

    async fn update_user(
        &self,
        id: Uuid,
        patch: UserPatch,
        sign_out: Option<SignOut>,
    ) -> StoreResult<(User, Option<Revoked>)> {
        let mut c = self.client().await?;
        let tx = begin(&mut c).await?;
        tx.exec("SELECT pg_advisory_xact_lock($1)", &[&USERS_LOCK])
            .await?;
        let mut user: User = match tx
            .opt("SELECT data FROM users WHERE id = $1 FOR UPDATE", &[&id])
            .await?
        {
            Some(r) => dec(&r, 0)?,
            None => return Err(StoreError::NotFound),
        };
        patch.apply(&mut user);
        if !(user.role == Role::Admin && user.status == UserStatus::Active) {
            let others: i64 = tx
                .one(
                    "SELECT count(*) FROM users WHERE role = 'admin' AND status = 'active' AND id <> $1",
                    &[&id],
                )
                .await?
                .get(0);
            if others == 0 {
                return Err(StoreError::Conflict(
                    "this change would leave no active administrator".into(),
                ));
            }
        }
        save_user(&tx, &user).await?;
        let revoked = match sign_out {
            Some(end) => {
                let sessions = delete_sessions_in(&tx, id, end.keep_session).await?;
                let api_keys = if end.api_keys {
                    tx.exec("DELETE FROM api_keys WHERE user_id = $1", &[&id])
                        .await? as usize
                } else {
                    0
                };
                tx.exec(
                    "UPDATE refresh_families SET revoked = true,
                        data = jsonb_set(data, '{revoked}', 'true')
                     WHERE user_id = $1 AND NOT revoked",
                    &[&id],
                )
                .await?;
                Some(Revoked { sessions, api_keys })
            }
            None => None,
        };
        commit(tx).await?;
        Ok((user, revoked))
    }

    async fn list_users(&self, cursor: Option<Uuid>, limit: usize) -> StoreResult<Vec<User>> {
        let c = self.client().await?;
        let rows = c
            .rows(
                "SELECT data FROM users WHERE $1::uuid IS NULL OR id > $1 ORDER BY id LIMIT $2",
                &[&cursor, &(limit as i64)],
            )
            .await?;
        rows.iter().map(|r| dec(r, 0)).collect()
    }
}

#[async_trait]
impl SessionStore for PgStore {
    async fn put_session(&self, token_hash: &[u8], s: &Session) -> StoreResult<()> {
        let c = self.client().await?;
        c.exec(
            "INSERT INTO sessions (token_hash, id, user_id, expires_at, last_seen, data)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (token_hash) DO UPDATE SET id = excluded.id, user_id = excluded.user_id,
                expires_at = excluded.expires_at, last_seen = excluded.last_seen, data = excluded.data",
            &[
                &token_hash,
                &s.id,
                &s.user_id,
                &s.expires_at,
                &s.last_seen,
                &json(s),
            ],
        )
        .await?;
        Ok(())
    }

    async fn get_session(&self, token_hash: &[u8]) -> StoreResult<Option<Session>> {
        let c = self.client().await?;
        c.opt(
            "SELECT data FROM sessions WHERE token_hash = $1",
            &[&token_hash],
        )
        .await?
        .map(|r| dec(&r, 0))
        .transpose()
    }

    async fn touch_session(&self, token_hash: &[u8], now: i64) -> StoreResult<()> {
        let c = self.client().await?;
        c.exec(
            "UPDATE sessions SET last_seen = $2, data = jsonb_set(data, '{last_seen}', to_jsonb($2::bigint))
             WHERE token_hash = $1 AND last_seen < $2",
            &[&token_hash, &now],
        )
        .await?;
        Ok(())
    }

    async fn list_sessions(&self, user_id: Uuid) -> StoreResult<Vec<Session>> {
        let c = self.client().await?;
        let rows = c
            .rows(
                "SELECT data FROM sessions WHERE user_id = $1 ORDER BY id",
                &[&user_id],
            )
            .await?;
        rows.iter().map(|r| dec(r, 0)).collect()
    }

    async fn delete_session(&self, user_id: Uuid, session_id: Uuid) -> StoreResult<()> {
        let c = self.client().await?;
        let n = c
            .exec(
                "DELETE FROM sessions WHERE user_id = $1 AND id = $2",
                &[&user_id, &session_id],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn delete_sessions_except(
        &self,
        user_id: Uuid,
        keep: Option<Uuid>,
    ) -> StoreResult<usize> {
        let mut c = self.client().await?;
        let tx = begin(&mut c).await?;
        let n = delete_sessions_in(&tx, user_id, keep).await?;
        commit(tx).await?;
        Ok(n)
    }

    async fn prune_sessions(&self, now: i64, idle_secs: i64) -> StoreResult<usize> {
        let c = self.client().await?;
        let n = c
            .exec(
                "DELETE FROM sessions WHERE expires_at <= $1 OR last_seen + $2 <= $1",
                &[&now, &idle_secs],
            )
            .await?;
        Ok(n as usize)
    }

    async fn prune_tokens(&self, now: i64) -> StoreResult<usize> {
        let mut c = self.client().await?;
        let tx = begin(&mut c).await?;
        let a = tx
            .exec("DELETE FROM refresh_tokens WHERE expires_at <= $1", &[&now])
            .await?;
        let b = tx
            .exec(
                "DELETE FROM invites WHERE uses_left <= 0 OR expires_at <= $1",
                &[&now],
            )
            .await?;
        commit(tx).await?;
        Ok((a + b) as usize)
    }

    async fn put_refresh(&self, hash: &[u8], r: &RefreshToken) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = begin(&mut c).await?;
        let fam = RefreshFamily {
            user_id: r.user_id,
            revoked: false,
        };
        tx.exec(
            "INSERT INTO refresh_families (id, user_id, revoked, data) VALUES ($1, $2, false, $3)
             ON CONFLICT (id) DO NOTHING",
            &[&r.family_id, &r.user_id, &json(&fam)],
        )
        .await?;
        tx.exec(
            "INSERT INTO refresh_tokens (token_hash, family_id, expires_at, data) VALUES ($1, $2, $3, $4)
             ON CONFLICT (token_hash) DO UPDATE SET family_id = excluded.family_id,
                expires_at = excluded.expires_at, data = excluded.data",
            &[&hash, &r.family_id, &r.expires_at, &json(r)],
        )
        .await?;
        commit(tx).await
    }

    async fn rotate_refresh(
        &self,
        old_hash: &[u8],
        new_hash: &[u8],
        now: i64,
        new_expires_at: i64,
    ) -> StoreResult<RefreshOutcome> {
        let mut c = self.client().await?;
        let tx = begin(&mut c).await?;
        let old: Option<RefreshToken> = tx
            .opt(
                "SELECT data FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE",
                &[&old_hash],
            )
            .await?
            .map(|r| dec(&r, 0))
            .transpose()?;
        let Some(mut old) = old else {
            return Ok(RefreshOutcome::Invalid);
        };
        let revoked: Option<bool> = tx
            .opt(
                "SELECT revoked FROM refresh_families WHERE id = $1 FOR UPDATE",
                &[&old.family_id],
            )
            .await?
            .map(|r| r.get(0));
        let outcome = if revoked.unwrap_or(true) {
            RefreshOutcome::Invalid
        } else if old.used {
            let f = RefreshFamily {
                user_id: old.user_id,
                revoked: true,
            };
            tx.exec(
                "UPDATE refresh_families SET revoked = true, data = $2 WHERE id = $1",
                &[&old.family_id, &json(&f)],
            )
            .await?;
            RefreshOutcome::Reused {
                user_id: old.user_id,
            }
        } else if old.expires_at <= now {
            RefreshOutcome::Invalid
        } else {
            old.used = true;
            tx.exec(
                "UPDATE refresh_tokens SET data = $2 WHERE token_hash = $1",
                &[&old_hash, &json(&old)],
            )
            .await?;
            let new = RefreshToken {
                user_id: old.user_id,
                family_id: old.family_id,
                expires_at: new_expires_at,
                used: false,
                created_at: now,
            };
            tx.exec(
                "INSERT INTO refresh_tokens (token_hash, family_id, expires_at, data) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (token_hash) DO UPDATE SET family_id = excluded.family_id,
                    expires_at = excluded.expires_at, data = excluded.data",
                &[&new_hash, &new.family_id, &new.expires_at, &json(&new)],
            )
            .await?;
            RefreshOutcome::Rotated {
                user_id: old.user_id,
            }
        };
        commit(tx).await?;
        Ok(outcome)
    }
}

#[async_trait]
impl ApiKeyStore for PgStore {
    async fn put_api_key(&self, hash: &[u8], k: &ApiKey) -> StoreResult<()> {
        let c = self.client().await?;
        c.exec(
            "INSERT INTO api_keys (key_hash, id, user_id, data) VALUES ($1, $2, $3, $4)
             ON CONFLICT (key_hash) DO UPDATE SET id = excluded.id, user_id = excluded.user_id,
                data = excluded.data",
            &[&hash, &k.id, &k.user_id, &json(k)],
        )
        .await?;
        Ok(())
    }

    async fn get_api_key(&self, hash: &[u8]) -> StoreResult<Option<ApiKey>> {
        let c = self.client().await?;
        c.opt("SELECT data FROM api_keys WHERE key_hash = $1", &[&hash])
            .await?
            .map(|r| dec(&r, 0))
            .transpose()
    }

    async fn touch_api_key(&self, hash: &[u8], now: i64) -> StoreResult<()> {
        let c = self.client().await?;
        c.exec(
            "UPDATE api_keys SET data = jsonb_set(data, '{last_used_at}', to_jsonb($2::bigint))
             WHERE key_hash = $1",
            &[&hash, &now],
        )
        .await?;
        Ok(())
    }

    async fn list_api_keys(&self, user_id: Uuid) -> StoreResult<Vec<ApiKey>> {
        let c = self.client().await?;
        let rows = c
            .rows(
                "SELECT data FROM api_keys WHERE user_id = $1 ORDER BY id",
                &[&user_id],
            )
            .await?;
        rows.iter().map(|r| dec(r, 0)).collect()
    }

    async fn delete_api_key(&self, user_id: Uuid, key_id: Uuid) -> StoreResult<ApiKey> {
        let c = self.client().await?;
        match c
            .opt(
                "DELETE FROM api_keys WHERE user_id = $1 AND id = $2 RETURNING data",
                &[&user_id, &key_id],
            )
            .await?
        {
            Some(r) => dec(&r, 0),
            None => Err(StoreError::NotFound),
        }
    }
}

#[async_trait]
impl InviteStore for PgStore {
    async fn put_invite(&self, inv: &Invite) -> StoreResult<()> {
        let c = self.client().await?;
        c.exec(
            "INSERT INTO invites (code, created_at, expires_at, uses_left, data) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (code) DO UPDATE SET created_at = excluded.created_at,
                expires_at = excluded.expires_at, uses_left = excluded.uses_left, data = excluded.data",
            &[
                &inv.code,
                &inv.created_at,
                &inv.expires_at,
                &i64::from(inv.uses_left),
                &json(inv),
            ],
        )
        .await?;
        Ok(())
    }

    async fn get_invite(&self, code: &str) -> StoreResult<Option<Invite>> {
        let c = self.client().await?;
        c.opt("SELECT data FROM invites WHERE code = $1", &[&code])
            .await?
            .map(|r| dec(&r, 0))
            .transpose()
    }

    async fn list_invites(&self) -> StoreResult<Vec<Invite>> {
        let c = self.client().await?;
        let rows = c
            .rows(
                "SELECT data FROM invites ORDER BY created_at DESC, code COLLATE \"C\"",
                &[],
            )
            .await?;
        rows.iter().map(|r| dec(r, 0)).collect()
    }

    async fn delete_invite(&self, code: &str, owner: Option<Uuid>) -> StoreResult<()> {
        let c = self.client().await?;
        // Another admin's invite answers as a missing one; one made from
        // the command line (no creator) may be deleted by anyone.
        let n = c
            .exec(
                "DELETE FROM invites WHERE code = $1
                   AND ($2::uuid IS NULL OR data->>'created_by' IS NULL OR (data->>'created_by')::uuid = $2)",
                &[&code, &owner],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

/// Audit pages are read in chunks of this many entries.
const AUDIT_CHUNK: usize = 1000;

/// The smallest UUIDv7 at or after `secs` (as the redb backend computes it).
fn uuid_at(secs: i64) -> Uuid {
    let ms = (secs.max(0) as u128) * 1000;
    Uuid::from_u128((ms & ((1 << 48) - 1)) << 80)
}

#[async_trait]
impl AuditStore for PgStore {
    async fn append_audit(&self, e: &AuditEntry) -> StoreResult<()> {
        let c = self.client().await?;
        c.exec(
            "INSERT INTO audit (id, data) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET data = excluded.data",
            &[&e.id, &json(e)],
        )
        .await?;
        Ok(())
    }

    async fn list_audit(&self, before: Option<Uuid>, limit: usize) -> StoreResult<Vec<AuditEntry>> {
        let c = self.client().await?;
        let rows = c
            .rows(
                "SELECT data FROM audit WHERE $1::uuid IS NULL OR id < $1 ORDER BY id DESC LIMIT $2",
                &[&before, &(limit as i64)],
            )
            .await?;
        rows.iter().map(|r| dec(r, 0)).collect()
    }

    /// The same scan as redb's: newest first within the time range, the
    /// filter applied here (so both answer alike), at most `MAX_SCAN`
    /// entries examined per call.
    async fn list_audit_filtered(
        &self,
        before: Option<Uuid>,
        limit: usize,
        f: &AuditFilter,
    ) -> StoreResult<(Vec<AuditEntry>, Option<Uuid>)> {
        let c = self.client().await?;
        let mut end = before.unwrap_or(Uuid::max());
        if let Some(to) = f.to {
            end = end.min(uuid_at(to));
        }
        let start = f.from.map(uuid_at).unwrap_or(Uuid::nil());
        let mut out = Vec::new();
        let mut scanned = 0;
        loop {
            let rows = c
                .rows(
                    "SELECT id, data FROM audit WHERE id >= $1 AND id < $2 ORDER BY id DESC LIMIT $3",
                    &[&start, &end, &(AUDIT_CHUNK as i64)],
                )
                .await?;
            let full = rows.len() == AUDIT_CHUNK;
            for r in &rows {
                let id: Uuid = r.get(0);
                let e: AuditEntry = dec(r, 1)?;
                if f.matches(&e) {
                    out.push(e);
                    if out.len() >= limit {
                        return Ok((out, None));
                    }
                }
                scanned += 1;
                if scanned >= MAX_SCAN {
                    return Ok((out, Some(id)));
                }
                end = id;
            }
            if !full {
                return Ok((out, None));
            }
        }
    }
}

#[async_trait]
impl StoreHealth for PgStore {
    async fn schema_version(&self) -> StoreResult<u64> {
        self.current_schema().await
    }

    async fn probe(&self, now: i64) -> StoreResult<()> {
        let c = self.client().await?;
        let back: i64 = c
            .one(
                "INSERT INTO meta (key, value) VALUES ('health_probe', to_jsonb($1::bigint))
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value
                 RETURNING (value #>> '{}')::bigint",
                &[&now],
            )
            .await?
            .get(0);
        if back != now {
            return Err(StoreError::Conflict(
                "health probe read back a different value".into(),
            ));
        }
        Ok(())
    }
}
