//! Groups and their memberships, in PostgreSQL. The unique `name_key`
//! holds the name rule; memberships are rows of `group_members`, removed
//! with their group by the foreign key.

use async_trait::async_trait;
use uuid::Uuid;

use super::{PgStore, Sql, dec, json};
use crate::store::groups::{Group, GroupStore, name_key};
use crate::store::{StoreError, StoreResult};

fn taken(e: StoreError) -> StoreError {
    match e {
        StoreError::Conflict(_) => {
            StoreError::Conflict("a group with this name exists already".into())
        }
        e => e,
    }
}

#[async_trait]
impl GroupStore for PgStore {
    async fn create_group(&self, group: &Group) -> StoreResult<()> {
        let c = self.client().await?;
        c.exec(
            "INSERT INTO groups (id, name_key, data) VALUES ($1, $2, $3)",
            &[&group.id, &name_key(&group.name), &json(group)],
        )
        .await
        .map_err(taken)?;
        Ok(())
    }

    async fn update_group(&self, group: &Group) -> StoreResult<()> {
        let c = self.client().await?;
        let n = c
            .exec(
                "UPDATE groups SET name_key = $2, data = $3 WHERE id = $1",
                &[&group.id, &name_key(&group.name), &json(group)],
            )
            .await
            .map_err(taken)?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn delete_group(&self, id: Uuid) -> StoreResult<Group> {
        let c = self.client().await?;
        match c
            .opt("DELETE FROM groups WHERE id = $1 RETURNING data", &[&id])
            .await?
        {
            Some(r) => dec(&r, 0),
            None => Err(StoreError::NotFound),
        }
    }

    async fn get_group(&self, id: Uuid) -> StoreResult<Group> {
        let c = self.client().await?;
        match c
            .opt("SELECT data FROM groups WHERE id = $1", &[&id])
            .await?
        {
            Some(r) => dec(&r, 0),
            None => Err(StoreError::NotFound),
        }
    }

    async fn list_groups(&self) -> StoreResult<Vec<Group>> {
        let c = self.client().await?;
        let rows = c
            .rows(
                "SELECT data FROM groups ORDER BY name_key COLLATE \"C\"",
                &[],
            )
            .await?;
        rows.iter().map(|r| dec(r, 0)).collect()
    }

    async fn add_group_member(&self, group: Uuid, user: Uuid) -> StoreResult<bool> {
        let c = self.client().await?;
        // One statement: the group and the user must both exist.
        let row = c
            .one(
                "WITH ok AS (
                    SELECT g.id AS g, u.id AS u FROM groups g, users u WHERE g.id = $1 AND u.id = $2
                 ), ins AS (
                    INSERT INTO group_members (group_id, user_id) SELECT g, u FROM ok
                    ON CONFLICT DO NOTHING RETURNING 1
                 )
                 SELECT (SELECT count(*) FROM ok), (SELECT count(*) FROM ins)",
                &[&group, &user],
            )
            .await?;
        let (found, added): (i64, i64) = (row.get(0), row.get(1));
        if found == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(added > 0)
    }

    async fn remove_group_member(&self, group: Uuid, user: Uuid) -> StoreResult<bool> {
        let c = self.client().await?;
        let row = c
            .one(
                "WITH del AS (
                    DELETE FROM group_members WHERE group_id = $1 AND user_id = $2 RETURNING 1
                 )
                 SELECT EXISTS (SELECT 1 FROM groups WHERE id = $1), (SELECT count(*) FROM del)",
                &[&group, &user],
            )
            .await?;
        let (found, removed): (bool, i64) = (row.get(0), row.get(1));
        if !found {
            return Err(StoreError::NotFound);
        }
        Ok(removed > 0)
    }

    async fn group_members(&self, group: Uuid) -> StoreResult<Vec<Uuid>> {
        let c = self.client().await?;
        if c.opt("SELECT 1 FROM groups WHERE id = $1", &[&group])
            .await?
            .is_none()
        {
            return Err(StoreError::NotFound);
        }
        let rows = c
            .rows(
                "SELECT user_id FROM group_members WHERE group_id = $1 ORDER BY user_id",
                &[&group],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn user_groups(&self, user: Uuid) -> StoreResult<Vec<Group>> {
        let c = self.client().await?;
        let rows = c
            .rows(
                "SELECT g.data FROM group_members m JOIN groups g ON g.id = m.group_id
                 WHERE m.user_id = $1 ORDER BY g.name_key COLLATE \"C\"",
                &[&user],
            )
            .await?;
        rows.iter().map(|r| dec(r, 0)).collect()
    }
}
