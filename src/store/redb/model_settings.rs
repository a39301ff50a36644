//! Model settings in redb: one record per model id, and the server-wide
//! default model in `meta`.

use redb::ReadableTable;

use super::{Db, META, MODEL_SETTINGS, StoreError, StoreResult, dec, enc};
use crate::store::model_settings::ModelSetting;

const DEFAULT_MODEL_KEY: &str = "default_model";

impl Db {
    /// Every record, by model id.
    pub fn list_model_settings(&self) -> StoreResult<Vec<ModelSetting>> {
        let tx = self.read()?;
        let t = tx.open_table(MODEL_SETTINGS)?;
        t.iter()?
            .map(|r| {
                r.map_err(StoreError::from)
                    .and_then(|(_, v)| dec(v.value()))
            })
            .collect()
    }

    /// Inserts or replaces the record of `s.model`; a record that changes
    /// nothing is removed instead.
    pub fn put_model_setting(&self, s: &ModelSetting) -> StoreResult<()> {
        let tx = self.write()?;
        {
            let mut t = tx.open_table(MODEL_SETTINGS)?;
            if s.is_default() {
                t.remove(s.model.as_str())?;
            } else {
                t.insert(s.model.as_str(), enc(s).as_slice())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn default_model(&self) -> StoreResult<Option<String>> {
        let tx = self.read()?;
        let t = tx.open_table(META)?;
        t.get(DEFAULT_MODEL_KEY)?
            .map(|v| dec(v.value()))
            .transpose()
    }

    /// None removes the default (the config file's applies again).
    pub fn set_default_model(&self, model: Option<&str>) -> StoreResult<()> {
        let tx = self.write()?;
        {
            let mut t = tx.open_table(META)?;
            match model {
                Some(m) => {
                    t.insert(DEFAULT_MODEL_KEY, enc(&m).as_slice())?;
                }
                None => {
                    t.remove(DEFAULT_MODEL_KEY)?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}
