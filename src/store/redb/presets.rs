//! Presets, saved prompts, user settings and branding in redb. Listings
//! walk the whole table: a server has tens of these, not millions.

use redb::ReadableTable;
use uuid::Uuid;

use super::{
    Db, PRESETS, PROMPTS, SERVER_SETTINGS, StoreError, StoreResult, USER_SETTINGS, dec, enc,
};
use crate::store::presets::*;

const BRANDING_KEY: &str = "branding";

fn visible(owner: Option<Uuid>, viewer: Uuid) -> bool {
    owner.is_none_or(|o| o == viewer)
}

impl Db {
    pub fn put_preset(&self, p: &Preset) -> StoreResult<()> {
        let tx = self.write()?;
        tx.open_table(PRESETS)?
            .insert(p.id.as_u128(), enc(p).as_slice())?;
        tx.commit()?;
        Ok(())
    }

    pub fn get_preset(&self, viewer: Uuid, id: Uuid) -> StoreResult<Preset> {
        let tx = self.read()?;
        let t = tx.open_table(PRESETS)?;
        let p: Preset = match t.get(id.as_u128())? {
            Some(v) => dec(v.value())?,
            None => return Err(StoreError::NotFound),
        };
        if !visible(p.owner, viewer) {
            return Err(StoreError::NotFound);
        }
        Ok(p)
    }

    pub fn list_presets(&self, viewer: Uuid) -> StoreResult<Vec<Preset>> {
        let tx = self.read()?;
        let t = tx.open_table(PRESETS)?;
        let mut out = Vec::new();
        for r in t.iter()? {
            let (_, v) = r?;
            let p: Preset = dec(v.value())?;
            if visible(p.owner, viewer) {
                out.push(p);
            }
        }
        out.sort_by_key(|p| (p.name.to_lowercase(), p.id));
        Ok(out)
    }

    pub fn delete_preset(&self, id: Uuid) -> StoreResult<()> {
        let tx = self.write()?;
        if tx.open_table(PRESETS)?.remove(id.as_u128())?.is_none() {
            return Err(StoreError::NotFound);
        }
        tx.commit()?;
        Ok(())
    }

    pub fn put_prompt(&self, p: &SavedPrompt) -> StoreResult<()> {
        let tx = self.write()?;
        {
            let mut t = tx.open_table(PROMPTS)?;
            for r in t.iter()? {
                let (_, v) = r?;
                let o: SavedPrompt = dec(v.value())?;
                if o.id != p.id && o.owner == p.owner && o.command == p.command {
                    return Err(StoreError::Conflict(format!(
                        "a prompt with the command /{} already exists",
                        p.command
                    )));
                }
            }
            t.insert(p.id.as_u128(), enc(p).as_slice())?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn get_prompt(&self, viewer: Uuid, id: Uuid) -> StoreResult<SavedPrompt> {
        let tx = self.read()?;
        let t = tx.open_table(PROMPTS)?;
        let p: SavedPrompt = match t.get(id.as_u128())? {
            Some(v) => dec(v.value())?,
            None => return Err(StoreError::NotFound),
        };
        if !visible(p.owner, viewer) {
            return Err(StoreError::NotFound);
        }
        Ok(p)
    }

    pub fn list_prompts(&self, viewer: Uuid) -> StoreResult<Vec<SavedPrompt>> {
        let tx = self.read()?;
        let t = tx.open_table(PROMPTS)?;
        let mut out = Vec::new();
        for r in t.iter()? {
            let (_, v) = r?;
            let p: SavedPrompt = dec(v.value())?;
            if visible(p.owner, viewer) {
                out.push(p);
            }
        }
        // Own before shared for the same command: the user's wins in menus.
        out.sort_by(|a, b| {
            (&a.command, a.owner.is_none(), a.id).cmp(&(&b.command, b.owner.is_none(), b.id))
        });
        Ok(out)
    }

    pub fn delete_prompt(&self, id: Uuid) -> StoreResult<()> {
        let tx = self.write()?;
        if tx.open_table(PROMPTS)?.remove(id.as_u128())?.is_none() {
            return Err(StoreError::NotFound);
        }
        tx.commit()?;
        Ok(())
    }

    pub fn get_user_settings(&self, user_id: Uuid) -> StoreResult<UserSettings> {
        let tx = self.read()?;
        let t = tx.open_table(USER_SETTINGS)?;
        match t.get(user_id.as_u128())? {
            Some(v) => dec(v.value()),
            None => Ok(UserSettings::default()),
        }
    }

    pub fn put_user_settings(&self, user_id: Uuid, s: &UserSettings) -> StoreResult<()> {
        let tx = self.write()?;
        tx.open_table(USER_SETTINGS)?
            .insert(user_id.as_u128(), enc(s).as_slice())?;
        tx.commit()?;
        Ok(())
    }

    pub fn get_branding(&self) -> StoreResult<Branding> {
        let tx = self.read()?;
        let t = tx.open_table(SERVER_SETTINGS)?;
        match t.get(BRANDING_KEY)? {
            Some(v) => dec(v.value()),
            None => Ok(Branding::default()),
        }
    }

    pub fn put_branding(&self, b: &Branding) -> StoreResult<()> {
        let tx = self.write()?;
        tx.open_table(SERVER_SETTINGS)?
            .insert(BRANDING_KEY, enc(b).as_slice())?;
        tx.commit()?;
        Ok(())
    }
}
