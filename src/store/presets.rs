//! Presets (a model, a system prompt and sampling settings under a name),
//! saved prompts (the composer's `/` commands), each user's settings
//! (custom instructions) and the server's branding.
//!
//! A preset or prompt belongs to one user (`owner` Some), or is shared with
//! everyone on the server (`owner` None, made by an admin). Reads take the
//! viewer's id: a record another user owns is `NotFound`, as a missing one.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PresetParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Preset {
    pub id: Uuid,
    /// None: shared with every user of the server.
    #[serde(default)]
    pub owner: Option<Uuid>,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// None: the conversation's (or the server's default) model.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub system_prompt: Option<String>,
    #[serde(default)]
    pub params: PresetParams,
    pub created_by: Uuid,
    pub created_at: i64,
    pub updated_at: i64,
}

impl std::fmt::Debug for Preset {
    // A system prompt is user text: it never goes to logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preset")
            .field("id", &self.id)
            .field("owner", &self.owner)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPrompt {
    pub id: Uuid,
    /// None: shared with every user of the server.
    #[serde(default)]
    pub owner: Option<Uuid>,
    pub title: String,
    /// The `/command` name, without the slash: lowercase letters, digits,
    /// `-` and `_`.
    pub command: String,
    pub text: String,
    pub created_by: Uuid,
    pub created_at: i64,
    pub updated_at: i64,
}

impl std::fmt::Debug for SavedPrompt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedPrompt")
            .field("id", &self.id)
            .field("owner", &self.owner)
            .field("command", &self.command)
            .finish_non_exhaustive()
    }
}

/// One user's own settings.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserSettings {
    /// Added as system instructions to every new chat of the user.
    #[serde(default)]
    pub custom_instructions: Option<String>,
    #[serde(default)]
    pub updated_at: i64,
}

impl std::fmt::Debug for UserSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserSettings")
            .field(
                "custom_instructions_chars",
                &self
                    .custom_instructions
                    .as_deref()
                    .map(|s| s.chars().count()),
            )
            .finish()
    }
}

/// An uploaded logo, checked when it was stored.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logo {
    /// One of the types the branding service accepts (png, jpeg, gif, webp).
    pub content_type: String,
    #[serde(with = "b64")]
    pub bytes: Vec<u8>,
    /// Content hash, for the ETag and the cache-busting URL.
    pub etag: String,
}

impl std::fmt::Debug for Logo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logo")
            .field("content_type", &self.content_type)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// How the server presents itself; every field optional (confab's own look
/// when unset).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Branding {
    #[serde(default)]
    pub server_name: Option<String>,
    /// `#rrggbb`, lowercase.
    #[serde(default)]
    pub accent_color: Option<String>,
    #[serde(default)]
    pub sign_in_message: Option<String>,
    #[serde(default)]
    pub logo: Option<Logo>,
    #[serde(default)]
    pub updated_at: i64,
}

mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let t = String::deserialize(d)?;
        STANDARD.decode(t).map_err(serde::de::Error::custom)
    }
}
