//! Providers, model settings, presets and prompts, user settings and
//! branding in PostgreSQL: small tables, JSONB records keyed by id or name.

use async_trait::async_trait;
use uuid::Uuid;

use super::{PgStore, Sql, dec, json};
use crate::store::import_jobs::{ImportJobRecord, ImportJobStatus};
use crate::store::model_settings::ModelSetting;
use crate::store::presets::*;
use crate::store::provider_records::StoredProvider;
use crate::store::shares::Share;
use crate::store::{
    ImportJobStore, ModelSettingsStore, PresetStore, ProviderStore, SettingsStore, ShareStore,
    StoreError, StoreResult,
};

const BRANDING_KEY: &str = "branding";
const DEFAULT_MODEL_KEY: &str = "default_model";

#[async_trait]
impl ProviderStore for PgStore {
    async fn put_provider(&self, p: &StoredProvider) -> StoreResult<()> {
        let c = self.client().await?;
        c.exec(
            "INSERT INTO providers (name, data) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET data = excluded.data",
            &[&p.name, &json(p)],
        )
        .await?;
        Ok(())
    }

    async fn create_provider(&self, p: &StoredProvider) -> StoreResult<()> {
        let c = self.client().await?;
        match c
            .exec(
                "INSERT INTO providers (name, data) VALUES ($1, $2)",
                &[&p.name, &json(p)],
            )
            .await
        {
            Err(StoreError::Conflict(_)) => Err(StoreError::Conflict(format!(
                "a provider named \"{}\" already exists",
                p.name
            ))),
            r => r.map(|_| ()),
        }
    }

    async fn get_provider(&self, name: &str) -> StoreResult<Option<StoredProvider>> {
        let c = self.client().await?;
        c.opt("SELECT data FROM providers WHERE name = $1", &[&name])
            .await?
            .map(|r| dec(&r, 0))
            .transpose()
    }

    async fn list_providers(&self) -> StoreResult<Vec<StoredProvider>> {
        let c = self.client().await?;
        let rows = c.rows("SELECT data FROM providers", &[]).await?;
        let mut out: Vec<StoredProvider> =
            rows.iter().map(|r| dec(r, 0)).collect::<StoreResult<_>>()?;
        out.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
        Ok(out)
    }

    async fn delete_provider(&self, name: &str) -> StoreResult<()> {
        let c = self.client().await?;
        if c.exec("DELETE FROM providers WHERE name = $1", &[&name])
            .await?
            == 0
        {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

#[async_trait]
impl ModelSettingsStore for PgStore {
    async fn list_model_settings(&self) -> StoreResult<Vec<ModelSetting>> {
        let c = self.client().await?;
        let rows = c
            .rows(
                "SELECT data FROM model_settings ORDER BY model COLLATE \"C\"",
                &[],
            )
            .await?;
        rows.iter().map(|r| dec(r, 0)).collect()
    }

    async fn put_model_setting(&self, s: &ModelSetting) -> StoreResult<()> {
        let c = self.client().await?;
        if s.is_default() {
            c.exec("DELETE FROM model_settings WHERE model = $1", &[&s.model])
                .await?;
        } else {
            c.exec(
                "INSERT INTO model_settings (model, data) VALUES ($1, $2)
                 ON CONFLICT (model) DO UPDATE SET data = excluded.data",
                &[&s.model, &json(s)],
            )
            .await?;
        }
        Ok(())
    }

    async fn default_model(&self) -> StoreResult<Option<String>> {
        let c = self.client().await?;
        c.opt(
            "SELECT value FROM meta WHERE key = $1",
            &[&DEFAULT_MODEL_KEY],
        )
        .await?
        .map(|r| dec(&r, 0))
        .transpose()
    }

    async fn set_default_model(&self, model: Option<&str>) -> StoreResult<()> {
        let c = self.client().await?;
        match model {
            Some(m) => {
                c.exec(
                    "INSERT INTO meta (key, value) VALUES ($1, $2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    &[&DEFAULT_MODEL_KEY, &json(&m)],
                )
                .await?;
            }
            None => {
                c.exec("DELETE FROM meta WHERE key = $1", &[&DEFAULT_MODEL_KEY])
                    .await?;
            }
        }
        Ok(())
    }
}

/// A record its viewer may see: their own, or shared (`owner` NULL).
const VISIBLE: &str = "(owner IS NULL OR owner = $2)";

#[async_trait]
impl PresetStore for PgStore {
    async fn put_preset(&self, p: &Preset) -> StoreResult<()> {
        let c = self.client().await?;
        c.exec(
            "INSERT INTO presets (id, owner, data) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, data = excluded.data",
            &[&p.id, &p.owner, &json(p)],
        )
        .await?;
        Ok(())
    }

    async fn get_preset(&self, viewer: Uuid, id: Uuid) -> StoreResult<Preset> {
        let c = self.client().await?;
        match c
            .opt(
                &format!("SELECT data FROM presets WHERE id = $1 AND {VISIBLE}"),
                &[&id, &viewer],
            )
            .await?
        {
            Some(r) => dec(&r, 0),
            None => Err(StoreError::NotFound),
        }
    }

    async fn list_presets(&self, viewer: Uuid) -> StoreResult<Vec<Preset>> {
        let c = self.client().await?;
        let rows = c
            .rows(
                "SELECT data FROM presets WHERE owner IS NULL OR owner = $1",
                &[&viewer],
            )
            .await?;
        let mut out: Vec<Preset> = rows.iter().map(|r| dec(r, 0)).collect::<StoreResult<_>>()?;
        out.sort_by_key(|p| (p.name.to_lowercase(), p.id));
        Ok(out)
    }

    async fn delete_preset(&self, id: Uuid) -> StoreResult<()> {
        let c = self.client().await?;
        if c.exec("DELETE FROM presets WHERE id = $1", &[&id]).await? == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn put_prompt(&self, p: &SavedPrompt) -> StoreResult<()> {
        let c = self.client().await?;
        // The unique index on (owner, command) holds the rule, also against
        // a concurrent writer.
        match c
            .exec(
                "INSERT INTO prompts (id, owner, command, data) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET owner = excluded.owner,
                    command = excluded.command, data = excluded.data",
                &[&p.id, &p.owner, &p.command, &json(p)],
            )
            .await
        {
            Err(StoreError::Conflict(_)) => Err(StoreError::Conflict(format!(
                "a prompt with the command /{} already exists",
                p.command
            ))),
            r => r.map(|_| ()),
        }
    }

    async fn get_prompt(&self, viewer: Uuid, id: Uuid) -> StoreResult<SavedPrompt> {
        let c = self.client().await?;
        match c
            .opt(
                &format!("SELECT data FROM prompts WHERE id = $1 AND {VISIBLE}"),
                &[&id, &viewer],
            )
            .await?
        {
            Some(r) => dec(&r, 0),
            None => Err(StoreError::NotFound),
        }
    }

    async fn list_prompts(&self, viewer: Uuid) -> StoreResult<Vec<SavedPrompt>> {
        let c = self.client().await?;
        let rows = c
            .rows(
                "SELECT data FROM prompts WHERE owner IS NULL OR owner = $1",
                &[&viewer],
            )
            .await?;
        let mut out: Vec<SavedPrompt> =
            rows.iter().map(|r| dec(r, 0)).collect::<StoreResult<_>>()?;
        // Own before shared for the same command: the user's wins in menus.
        out.sort_by(|a, b| {
            (&a.command, a.owner.is_none(), a.id).cmp(&(&b.command, b.owner.is_none(), b.id))
        });
        Ok(out)
    }

    async fn delete_prompt(&self, id: Uuid) -> StoreResult<()> {
        let c = self.client().await?;
        if c.exec("DELETE FROM prompts WHERE id = $1", &[&id]).await? == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

#[async_trait]
impl SettingsStore for PgStore {
    async fn get_user_settings(&self, user_id: Uuid) -> StoreResult<UserSettings> {
        let c = self.client().await?;
        match c
            .opt(
                "SELECT data FROM user_settings WHERE user_id = $1",
                &[&user_id],
            )
            .await?
        {
            Some(r) => dec(&r, 0),
            None => Ok(UserSettings::default()),
        }
    }

    async fn put_user_settings(&self, user_id: Uuid, s: &UserSettings) -> StoreResult<()> {
        let c = self.client().await?;
        c.exec(
            "INSERT INTO user_settings (user_id, data) VALUES ($1, $2)
             ON CONFLICT (user_id) DO UPDATE SET data = excluded.data",
            &[&user_id, &json(s)],
        )
        .await?;
        Ok(())
    }

    async fn get_branding(&self) -> StoreResult<Branding> {
        let c = self.client().await?;
        match c
            .opt(
                "SELECT data FROM server_settings WHERE key = $1",
                &[&BRANDING_KEY],
            )
            .await?
        {
            Some(r) => dec(&r, 0),
            None => Ok(Branding::default()),
        }
    }

    async fn put_branding(&self, b: &Branding) -> StoreResult<()> {
        let c = self.client().await?;
        c.exec(
            "INSERT INTO server_settings (key, data) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET data = excluded.data",
            &[&BRANDING_KEY, &json(b)],
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl ShareStore for PgStore {
    async fn create_share(&self, s: &Share) -> StoreResult<()> {
        let c = self.client().await?;
        c.exec(
            "INSERT INTO shares (token, id, user_id, data) VALUES ($1, $2, $3, $4)",
            &[&s.token, &s.id, &s.user_id, &json(s)],
        )
        .await?;
        Ok(())
    }

    async fn share_by_token(&self, token: &str) -> StoreResult<Share> {
        let c = self.client().await?;
        match c
            .opt("SELECT data FROM shares WHERE token = $1", &[&token])
            .await?
        {
            Some(r) => dec(&r, 0),
            None => Err(StoreError::NotFound),
        }
    }

    async fn list_shares(&self, user_id: Uuid) -> StoreResult<Vec<Share>> {
        let c = self.client().await?;
        let rows = c
            .rows(
                "SELECT data - 'messages' FROM shares WHERE user_id = $1 ORDER BY id DESC",
                &[&user_id],
            )
            .await?;
        rows.iter().map(|r| dec(r, 0)).collect()
    }

    async fn delete_share(&self, user_id: Uuid, id: Uuid) -> StoreResult<()> {
        let c = self.client().await?;
        if c.exec(
            "DELETE FROM shares WHERE id = $1 AND user_id = $2",
            &[&id, &user_id],
        )
        .await?
            == 0
        {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

fn status_str(s: ImportJobStatus) -> &'static str {
    match s {
        ImportJobStatus::Running => "running",
        ImportJobStatus::Done => "done",
        ImportJobStatus::Failed => "failed",
        ImportJobStatus::Interrupted => "interrupted",
    }
}

#[async_trait]
impl ImportJobStore for PgStore {
    async fn put_import_job(&self, j: &ImportJobRecord) -> StoreResult<()> {
        let c = self.client().await?;
        let n = c
            .exec(
                "INSERT INTO import_jobs (id, user_id, status, runner, data) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, runner = EXCLUDED.runner,
                     data = EXCLUDED.data
                 WHERE import_jobs.user_id = EXCLUDED.user_id",
                &[&j.id, &j.user_id, &status_str(j.status), &j.runner, &json(j)],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::Conflict("the import job id exists".into()));
        }
        Ok(())
    }

    async fn import_job(&self, user_id: Uuid, id: Uuid) -> StoreResult<ImportJobRecord> {
        let c = self.client().await?;
        match c
            .opt(
                "SELECT data FROM import_jobs WHERE id = $1 AND user_id = $2",
                &[&id, &user_id],
            )
            .await?
        {
            Some(r) => dec(&r, 0),
            None => Err(StoreError::NotFound),
        }
    }

    async fn list_import_jobs(&self, user_id: Uuid) -> StoreResult<Vec<ImportJobRecord>> {
        let c = self.client().await?;
        let rows = c
            .rows(
                "SELECT data FROM import_jobs WHERE user_id = $1 ORDER BY id DESC",
                &[&user_id],
            )
            .await?;
        rows.iter().map(|r| dec(r, 0)).collect()
    }

    async fn delete_import_job(&self, user_id: Uuid, id: Uuid) -> StoreResult<()> {
        let c = self.client().await?;
        if c.exec(
            "DELETE FROM import_jobs WHERE id = $1 AND user_id = $2",
            &[&id, &user_id],
        )
        .await?
            == 0
        {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn interrupt_import_jobs(
        &self,
        alive: &[Uuid],
        error: &str,
        now: i64,
    ) -> StoreResult<u64> {
        let c = self.client().await?;
        let alive = alive.to_vec();
        let n = c
            .exec(
                "UPDATE import_jobs SET status = 'interrupted',
                     data = data || jsonb_build_object('status', 'interrupted', 'error', $2::text,
                                                       'updated_at', $3::bigint)
                 WHERE status = 'running' AND (runner IS NULL OR NOT (runner = ANY($1)))",
                &[&alive, &error, &now],
            )
            .await?;
        Ok(n)
    }
}
