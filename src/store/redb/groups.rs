//! Groups and their memberships, in redb: the group records, a unique
//! index of their names, and the memberships both ways (group → users for
//! the admin page, user → groups for every access check).

use redb::ReadableTable;
use uuid::Uuid;

use super::{
    Db, GROUP_MEMBERS, GROUPS, GROUPS_BY_NAME, StoreError, StoreResult, USER_GROUPS, USERS, dec,
    enc,
};
use crate::store::groups::{Group, name_key};

fn taken() -> StoreError {
    StoreError::Conflict("a group with this name exists already".into())
}

impl Db {
    pub fn create_group(&self, group: &Group) -> StoreResult<()> {
        let tx = self.write()?;
        {
            let mut names = tx.open_table(GROUPS_BY_NAME)?;
            let key = name_key(&group.name);
            if names.get(key.as_str())?.is_some() {
                return Err(taken());
            }
            names.insert(key.as_str(), group.id.as_u128())?;
            tx.open_table(GROUPS)?
                .insert(group.id.as_u128(), enc(group).as_slice())?;
        }
        tx.commit()
    }

    pub fn update_group(&self, group: &Group) -> StoreResult<()> {
        let tx = self.write()?;
        {
            let mut t = tx.open_table(GROUPS)?;
            let old: Group = match t.get(group.id.as_u128())? {
                Some(v) => dec(v.value())?,
                None => return Err(StoreError::NotFound),
            };
            let (old_key, new_key) = (name_key(&old.name), name_key(&group.name));
            if old_key != new_key {
                let mut names = tx.open_table(GROUPS_BY_NAME)?;
                if names.get(new_key.as_str())?.is_some() {
                    return Err(taken());
                }
                names.remove(old_key.as_str())?;
                names.insert(new_key.as_str(), group.id.as_u128())?;
            }
            t.insert(group.id.as_u128(), enc(group).as_slice())?;
        }
        tx.commit()
    }

    pub fn delete_group(&self, id: Uuid) -> StoreResult<Group> {
        let tx = self.write()?;
        let group: Group = {
            let mut t = tx.open_table(GROUPS)?;
            let group: Group = match t.remove(id.as_u128())? {
                Some(v) => dec(v.value())?,
                None => return Err(StoreError::NotFound),
            };
            tx.open_table(GROUPS_BY_NAME)?
                .remove(name_key(&group.name).as_str())?;
            let g = id.as_u128();
            let mut members = tx.open_table(GROUP_MEMBERS)?;
            let users: Vec<u128> = members
                .range((g, 0)..=(g, u128::MAX))?
                .map(|r| r.map(|(k, _)| k.value().1))
                .collect::<Result<_, _>>()?;
            let mut by_user = tx.open_table(USER_GROUPS)?;
            for u in users {
                members.remove((g, u))?;
                by_user.remove((u, g))?;
            }
            group
        };
        tx.commit()?;
        Ok(group)
    }

    pub fn get_group(&self, id: Uuid) -> StoreResult<Group> {
        let tx = self.read()?;
        let t = tx.open_table(GROUPS)?;
        match t.get(id.as_u128())? {
            Some(v) => dec(v.value()),
            None => Err(StoreError::NotFound),
        }
    }

    pub fn list_groups(&self) -> StoreResult<Vec<Group>> {
        let tx = self.read()?;
        let names = tx.open_table(GROUPS_BY_NAME)?;
        let t = tx.open_table(GROUPS)?;
        let mut out = Vec::new();
        for r in names.iter()? {
            let (_, id) = r?;
            if let Some(v) = t.get(id.value())? {
                out.push(dec(v.value())?);
            }
        }
        Ok(out)
    }

    pub fn add_group_member(&self, group: Uuid, user: Uuid) -> StoreResult<bool> {
        let tx = self.write()?;
        let added = {
            if tx.open_table(GROUPS)?.get(group.as_u128())?.is_none()
                || tx.open_table(USERS)?.get(user.as_u128())?.is_none()
            {
                return Err(StoreError::NotFound);
            }
            let (g, u) = (group.as_u128(), user.as_u128());
            let added = tx.open_table(GROUP_MEMBERS)?.insert((g, u), ())?.is_none();
            tx.open_table(USER_GROUPS)?.insert((u, g), ())?;
            added
        };
        tx.commit()?;
        Ok(added)
    }

    pub fn remove_group_member(&self, group: Uuid, user: Uuid) -> StoreResult<bool> {
        let tx = self.write()?;
        let removed = {
            if tx.open_table(GROUPS)?.get(group.as_u128())?.is_none() {
                return Err(StoreError::NotFound);
            }
            let (g, u) = (group.as_u128(), user.as_u128());
            let removed = tx.open_table(GROUP_MEMBERS)?.remove((g, u))?.is_some();
            tx.open_table(USER_GROUPS)?.remove((u, g))?;
            removed
        };
        tx.commit()?;
        Ok(removed)
    }

    pub fn group_members(&self, group: Uuid) -> StoreResult<Vec<Uuid>> {
        let tx = self.read()?;
        if tx.open_table(GROUPS)?.get(group.as_u128())?.is_none() {
            return Err(StoreError::NotFound);
        }
        let g = group.as_u128();
        let members = tx.open_table(GROUP_MEMBERS)?;
        let mut out = Vec::new();
        for r in members.range((g, 0)..=(g, u128::MAX))? {
            out.push(Uuid::from_u128(r?.0.value().1));
        }
        Ok(out)
    }

    pub fn user_groups(&self, user: Uuid) -> StoreResult<Vec<Group>> {
        let tx = self.read()?;
        let u = user.as_u128();
        let by_user = tx.open_table(USER_GROUPS)?;
        let t = tx.open_table(GROUPS)?;
        let mut out: Vec<Group> = Vec::new();
        for r in by_user.range((u, 0)..=(u, u128::MAX))? {
            if let Some(v) = t.get(r?.0.value().1)? {
                out.push(dec(v.value())?);
            }
        }
        out.sort_by_key(|g| name_key(&g.name));
        Ok(out)
    }
}
