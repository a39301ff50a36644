//! Providers added by admins at runtime, keyed by name. The API key is stored
//! only sealed (`providers::secrets`); this module never sees it in clear.

use serde::{Deserialize, Serialize};

use crate::providers::ProviderKind;

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredProvider {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    /// Allowlist; `None` offers every model the provider lists.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// `nonce || ciphertext` of the API key, base64 in the record.
    #[serde(default, with = "sealed_b64")]
    pub encrypted_key: Option<Vec<u8>>,
    pub created_at: i64,
    #[serde(default)]
    pub updated_at: i64,
    /// Order among providers of the same model (higher first); records
    /// written before routing existed read as 0.
    #[serde(default)]
    pub priority: i32,
    /// Users may bring their own key to it; records written before this
    /// setting existed read as true (the behaviour they had).
    #[serde(default = "enabled_by_default")]
    pub allow_user_keys: bool,
}

impl std::fmt::Debug for StoredProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredProvider")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("models", &self.models)
            .field("enabled", &self.enabled)
            .field("has_key", &self.encrypted_key.is_some())
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field("priority", &self.priority)
            .field("allow_user_keys", &self.allow_user_keys)
            .finish()
    }
}

mod sealed_b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&STANDARD.encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| STANDARD.decode(t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

fn enabled_by_default() -> bool {
    true
}
