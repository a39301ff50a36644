//! Share links in redb: the record under its token, and the owner's list.

use redb::ReadableTable;
use uuid::Uuid;

use super::{Db, SHARES, SHARES_BY_USER, StoreError, StoreResult, dec, enc};
use crate::store::shares::Share;

impl Db {
    pub fn create_share(&self, s: &Share) -> StoreResult<()> {
        let tx = self.write()?;
        {
            let mut t = tx.open_table(SHARES)?;
            if t.get(s.token.as_str())?.is_some() {
                return Err(StoreError::Conflict("the share token exists".into()));
            }
            let mut by = tx.open_table(SHARES_BY_USER)?;
            let k = (s.user_id.as_u128(), s.id.as_u128());
            if by.get(k)?.is_some() {
                return Err(StoreError::Conflict("the share id exists".into()));
            }
            t.insert(s.token.as_str(), enc(s).as_slice())?;
            by.insert(k, s.token.as_str())?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn share_by_token(&self, token: &str) -> StoreResult<Share> {
        let tx = self.read()?;
        let t = tx.open_table(SHARES)?;
        match t.get(token)? {
            Some(v) => dec(v.value()),
            None => Err(StoreError::NotFound),
        }
    }

    pub fn list_shares(&self, user_id: Uuid) -> StoreResult<Vec<Share>> {
        let tx = self.read()?;
        let by = tx.open_table(SHARES_BY_USER)?;
        let t = tx.open_table(SHARES)?;
        let u = user_id.as_u128();
        let mut out = Vec::new();
        for r in by.range((u, 0)..=(u, u128::MAX))?.rev() {
            let (_, token) = r?;
            if let Some(v) = t.get(token.value())? {
                let mut s: Share = dec(v.value())?;
                s.messages = Vec::new();
                out.push(s);
            }
        }
        Ok(out)
    }

    pub fn delete_share(&self, user_id: Uuid, id: Uuid) -> StoreResult<()> {
        let tx = self.write()?;
        {
            let mut by = tx.open_table(SHARES_BY_USER)?;
            let token = match by.remove((user_id.as_u128(), id.as_u128()))? {
                Some(t) => t.value().to_string(),
                None => return Err(StoreError::NotFound),
            };
            tx.open_table(SHARES)?.remove(token.as_str())?;
        }
        tx.commit()?;
        Ok(())
    }
}
