//! Second factors, one-time tokens and the two-factor policy in redb.

use redb::{ReadableTable, ReadableTableMetadata};
use uuid::Uuid;

use super::{Db, META, ONE_TIME_TOKENS, StoreResult, TWO_FACTOR, dec, enc};
use crate::store::security::{
    OneTimeKind, OneTimeToken, POLICY_KEY, TwoFactor, TwoFactorPolicy, TwoFactorUpdate,
};

impl Db {
    pub fn get_two_factor(&self, user_id: Uuid) -> StoreResult<Option<TwoFactor>> {
        let tx = self.read()?;
        let t = tx.open_table(TWO_FACTOR)?;
        t.get(user_id.as_u128())?
            .map(|v| dec(v.value()))
            .transpose()
    }

    pub fn put_two_factor(&self, r: &TwoFactor) -> StoreResult<()> {
        let tx = self.write()?;
        tx.open_table(TWO_FACTOR)?
            .insert(r.user_id.as_u128(), enc(r).as_slice())?;
        tx.commit()?;
        Ok(())
    }

    pub fn delete_two_factor(&self, user_id: Uuid) -> StoreResult<bool> {
        let tx = self.write()?;
        let had = tx
            .open_table(TWO_FACTOR)?
            .remove(user_id.as_u128())?
            .is_some();
        tx.commit()?;
        Ok(had)
    }

    pub fn update_two_factor(
        &self,
        user_id: Uuid,
        f: TwoFactorUpdate,
    ) -> StoreResult<Option<(TwoFactor, bool)>> {
        let tx = self.write()?;
        let out = {
            let mut t = tx.open_table(TWO_FACTOR)?;
            let found: Option<TwoFactor> = t
                .get(user_id.as_u128())?
                .map(|v| dec(v.value()))
                .transpose()?;
            match found {
                None => None,
                Some(mut r) => {
                    let changed = f(&mut r);
                    if changed {
                        t.insert(user_id.as_u128(), enc(&r).as_slice())?;
                    }
                    Some((r, changed))
                }
            }
        };
        if matches!(out, Some((_, true))) {
            tx.commit()?;
        }
        Ok(out)
    }

    pub fn put_one_time(&self, hash: &[u8], r: &OneTimeToken) -> StoreResult<()> {
        let tx = self.write()?;
        tx.open_table(ONE_TIME_TOKENS)?
            .insert(hash, enc(r).as_slice())?;
        tx.commit()?;
        Ok(())
    }

    pub fn take_one_time(
        &self,
        kind: OneTimeKind,
        hash: &[u8],
        now: i64,
    ) -> StoreResult<Option<OneTimeToken>> {
        let tx = self.write()?;
        let out = {
            let mut t = tx.open_table(ONE_TIME_TOKENS)?;
            let found: Option<OneTimeToken> = t.get(hash)?.map(|v| dec(v.value())).transpose()?;
            match found {
                Some(r) if r.kind == kind => {
                    t.remove(hash)?;
                    (r.expires_at > now).then_some(r)
                }
                _ => None,
            }
        };
        tx.commit()?;
        Ok(out)
    }

    pub fn delete_one_time_of_user(&self, user_id: Uuid, kind: OneTimeKind) -> StoreResult<usize> {
        let tx = self.write()?;
        let n = {
            let mut t = tx.open_table(ONE_TIME_TOKENS)?;
            let before = t.len()?;
            t.retain(|_, v| {
                dec::<OneTimeToken>(v)
                    .map(|r| !(r.user_id == user_id && r.kind == kind))
                    .unwrap_or(true)
            })?;
            (before - t.len()?) as usize
        };
        tx.commit()?;
        Ok(n)
    }

    pub fn prune_one_time(&self, now: i64) -> StoreResult<usize> {
        let tx = self.write()?;
        let n = {
            let mut t = tx.open_table(ONE_TIME_TOKENS)?;
            let before = t.len()?;
            t.retain(|_, v| {
                dec::<OneTimeToken>(v)
                    .map(|r| r.expires_at > now)
                    .unwrap_or(true)
            })?;
            (before - t.len()?) as usize
        };
        tx.commit()?;
        Ok(n)
    }

    pub fn two_factor_policy(&self) -> StoreResult<TwoFactorPolicy> {
        let tx = self.read()?;
        let t = tx.open_table(META)?;
        Ok(t.get(POLICY_KEY)?
            .map(|v| dec(v.value()))
            .transpose()?
            .unwrap_or_default())
    }

    pub fn set_two_factor_policy(&self, p: TwoFactorPolicy) -> StoreResult<()> {
        let tx = self.write()?;
        tx.open_table(META)?
            .insert(POLICY_KEY, enc(&p).as_slice())?;
        tx.commit()?;
        Ok(())
    }
}
