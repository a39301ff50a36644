//! Linked identities and sign-ins under way at a provider, in redb.

use redb::ReadableTable;
use uuid::Uuid;

use super::{
    Db, IDENTITIES, IDENTITIES_BY_SUBJECT, IDENTITIES_BY_USER, SSO_STATES, StoreError, StoreResult,
    USERS, USERS_BY_NAME, dec, enc,
};
use crate::store::User;
use crate::store::identities::{IdentityLink, SsoState};

/// Sign-ins under way examined per write for expiry (they are few, and
/// each lives minutes).
const PRUNE_SCAN: usize = 256;

impl Db {
    pub fn link_identity(&self, link: &IdentityLink, new_user: Option<&User>) -> StoreResult<()> {
        let tx = self.write()?;
        {
            let mut by_subject = tx.open_table(IDENTITIES_BY_SUBJECT)?;
            let key = (link.issuer.as_str(), link.subject.as_str());
            if by_subject.get(key)?.is_some() {
                return Err(StoreError::Conflict(
                    "this identity is already linked to an account".into(),
                ));
            }
            if let Some(user) = new_user {
                let mut names = tx.open_table(USERS_BY_NAME)?;
                let name = crate::username::key(&user.username);
                if names.get(name.as_str())?.is_some() {
                    return Err(StoreError::Conflict("username already taken".into()));
                }
                names.insert(name.as_str(), user.id.as_u128())?;
                tx.open_table(USERS)?
                    .insert(user.id.as_u128(), enc(user).as_slice())?;
            } else if tx.open_table(USERS)?.get(link.user_id.as_u128())?.is_none() {
                return Err(StoreError::NotFound);
            }
            by_subject.insert(key, link.id.as_u128())?;
            tx.open_table(IDENTITIES_BY_USER)?
                .insert((link.user_id.as_u128(), link.id.as_u128()), ())?;
            tx.open_table(IDENTITIES)?
                .insert(link.id.as_u128(), enc(link).as_slice())?;
        }
        tx.commit()
    }

    pub fn find_identity(&self, issuer: &str, subject: &str) -> StoreResult<Option<IdentityLink>> {
        let tx = self.read()?;
        let Some(id) = tx
            .open_table(IDENTITIES_BY_SUBJECT)?
            .get((issuer, subject))?
            .map(|v| v.value())
        else {
            return Ok(None);
        };
        let t = tx.open_table(IDENTITIES)?;
        t.get(id)?.map(|v| dec(v.value())).transpose()
    }

    pub fn list_identities(&self, user_id: Uuid) -> StoreResult<Vec<IdentityLink>> {
        let tx = self.read()?;
        let by_user = tx.open_table(IDENTITIES_BY_USER)?;
        let t = tx.open_table(IDENTITIES)?;
        let u = user_id.as_u128();
        let mut out = Vec::new();
        for r in by_user.range((u, 0)..=(u, u128::MAX))? {
            let (k, _) = r?;
            if let Some(v) = t.get(k.value().1)? {
                out.push(dec(v.value())?);
            }
        }
        Ok(out)
    }

    pub fn unlink_identity(&self, user_id: Uuid, id: Uuid) -> StoreResult<IdentityLink> {
        let tx = self.write()?;
        let link: IdentityLink = {
            let mut t = tx.open_table(IDENTITIES)?;
            let link: IdentityLink = match t.get(id.as_u128())? {
                Some(v) => dec(v.value())?,
                None => return Err(StoreError::NotFound),
            };
            if link.user_id != user_id {
                return Err(StoreError::NotFound);
            }
            t.remove(id.as_u128())?;
            tx.open_table(IDENTITIES_BY_USER)?
                .remove((user_id.as_u128(), id.as_u128()))?;
            tx.open_table(IDENTITIES_BY_SUBJECT)?
                .remove((link.issuer.as_str(), link.subject.as_str()))?;
            link
        };
        tx.commit()?;
        Ok(link)
    }

    pub fn put_sso_state(&self, key: &[u8], s: &SsoState) -> StoreResult<()> {
        let tx = self.write()?;
        {
            let mut t = tx.open_table(SSO_STATES)?;
            let mut expired = Vec::new();
            for r in t.iter()?.take(PRUNE_SCAN) {
                let (k, v) = r?;
                let old: SsoState = dec(v.value())?;
                if old.expires_at <= s.created_at {
                    expired.push(k.value().to_vec());
                }
            }
            for k in expired {
                t.remove(k.as_slice())?;
            }
            t.insert(key, enc(s).as_slice())?;
        }
        tx.commit()
    }

    pub fn take_sso_state(&self, key: &[u8], now: i64) -> StoreResult<Option<SsoState>> {
        let tx = self.write()?;
        let found = {
            let mut t = tx.open_table(SSO_STATES)?;
            let v = t.remove(key)?.map(|v| dec::<SsoState>(v.value()));
            v.transpose()?
        };
        tx.commit()?;
        Ok(found.filter(|s| s.expires_at > now))
    }
}
