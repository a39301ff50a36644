//! Presets, the prompt library, users' custom instructions and the server's
//! branding: who may see and change what, what a valid one is, and how a
//! preset and custom instructions shape a chat.
//!
//! Visibility: a user sees their own presets and prompts and the shared
//! ones; another user's is not found. Only an admin shares one (creates it
//! shared, or changes or deletes a shared one).
//!
//! The system prompt of an answer is, in this order: the conversation's
//! system prompt (which a preset sets when the chat starts with it), then,
//! after a blank line, the user's custom instructions. Custom instructions
//! are read at every answer, so a change applies from the next answer on.

use uuid::Uuid;

use crate::auth::CurrentUser;
use crate::error::{AppError, AppResult};
use crate::store::chat::Conversation;
use crate::store::presets::{Branding, Logo, Preset, PresetParams, SavedPrompt, UserSettings};
use crate::store::{SharedStore, StoreError};

pub const MAX_NAME: usize = 80;
pub const MAX_DESCRIPTION: usize = 500;
pub const MAX_SYSTEM_PROMPT: usize = 20_000;
pub const MAX_PROMPT_TEXT: usize = 20_000;
pub const MAX_COMMAND: usize = 32;
pub const MAX_INSTRUCTIONS: usize = 4_000;
/// The largest `max_tokens` a preset may ask for: above every model's
/// output limit today, low enough to catch a typo.
pub const MAX_MAX_TOKENS: u32 = 1_000_000;
pub const MAX_SERVER_NAME: usize = 60;
pub const MAX_SIGN_IN_MESSAGE: usize = 1_000;
/// Logos are small: a header icon, not a photo.
pub const MAX_LOGO_BYTES: usize = 256 * 1024;

/// A preset as asked for (create or full replace).
#[derive(Debug, Clone, Default)]
pub struct PresetInput {
    pub name: String,
    pub description: Option<String>,
    pub model: Option<String>,
    pub system_prompt: Option<String>,
    pub params: PresetParams,
    pub shared: bool,
}

/// A saved prompt as asked for.
#[derive(Debug, Clone, Default)]
pub struct PromptInput {
    pub title: String,
    pub command: String,
    pub text: String,
    pub shared: bool,
}

/// A change to the branding: each `Some` replaces the stored value,
/// `Some(None)` (or blank) clears it.
#[derive(Debug, Clone, Default)]
pub struct BrandingPatch {
    pub server_name: Option<Option<String>>,
    pub accent_color: Option<Option<String>>,
    pub sign_in_message: Option<Option<String>>,
}

/// What a preset and the user's settings add to one answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TurnSettings {
    /// The system prompt to send (conversation's, then custom instructions).
    pub system: Option<String>,
    /// Sampling settings of the conversation's preset.
    pub params: PresetParams,
}

fn not_found(e: StoreError, what: &str) -> AppError {
    match e {
        StoreError::NotFound => AppError::not_found(what),
        o => o.into(),
    }
}

/// Trimmed text, None when blank; Validation when longer than `max`
/// characters or holding control characters other than newlines and tabs.
fn optional_text(v: Option<String>, field: &str, max: usize) -> AppResult<Option<String>> {
    let Some(v) = v else { return Ok(None) };
    let t = v.trim();
    if t.is_empty() {
        return Ok(None);
    }
    if t.chars().count() > max {
        return Err(AppError::Validation(format!(
            "{field} must be at most {max} characters"
        )));
    }
    if t.chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(AppError::Validation(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(Some(t.to_string()))
}

/// A one-line name: 1 to `max` characters, no control characters.
fn required_line(v: &str, field: &str, max: usize) -> AppResult<String> {
    let t = v.trim();
    if t.is_empty() || t.chars().count() > max {
        return Err(AppError::Validation(format!(
            "{field} must be 1 to {max} characters"
        )));
    }
    if t.chars().any(char::is_control) {
        return Err(AppError::Validation(format!(
            "{field} must be one line without control characters"
        )));
    }
    Ok(t.to_string())
}

/// Sampling settings in range: temperature 0–2, top_p 0–1, max_tokens
/// 1–[`MAX_MAX_TOKENS`].
pub fn validate_params(p: &PresetParams) -> AppResult<()> {
    if let Some(t) = p.temperature
        && !(t.is_finite() && (0.0..=2.0).contains(&t))
    {
        return Err(AppError::validation(
            "temperature must be a number from 0 to 2",
        ));
    }
    if let Some(t) = p.top_p
        && !(t.is_finite() && (0.0..=1.0).contains(&t))
    {
        return Err(AppError::validation("top_p must be a number from 0 to 1"));
    }
    if let Some(m) = p.max_tokens
        && !(1..=MAX_MAX_TOKENS).contains(&m)
    {
        return Err(AppError::Validation(format!(
            "max_tokens must be a whole number from 1 to {MAX_MAX_TOKENS}"
        )));
    }
    Ok(())
}

/// A `/command` name: 1 to 32 of `a-z 0-9 - _`, starting with a letter or
/// digit; a leading `/` is dropped and letters are lowercased.
pub fn normalize_command(raw: &str) -> AppResult<String> {
    let c = raw.trim().trim_start_matches('/').to_lowercase();
    let ok = !c.is_empty()
        && c.len() <= MAX_COMMAND
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && c.as_bytes()[0].is_ascii_alphanumeric();
    if !ok {
        return Err(AppError::Validation(format!(
            "command must be 1 to {MAX_COMMAND} letters, digits, - or _, starting with a letter or digit (like /summarize)"
        )));
    }
    Ok(c)
}

/// `#rrggbb` (or `#rgb`), lowercased and expanded to six digits.
pub fn normalize_color(raw: &str) -> AppResult<String> {
    let t = raw.trim();
    let hex = t.strip_prefix('#').unwrap_or("");
    let ok = matches!(hex.len(), 3 | 6) && hex.bytes().all(|b| b.is_ascii_hexdigit());
    if !ok {
        return Err(AppError::validation(
            "accent_color must be a hex colour like #3b82f6",
        ));
    }
    let hex = hex.to_ascii_lowercase();
    Ok(if hex.len() == 3 {
        let mut s = String::from("#");
        for c in hex.chars() {
            s.push(c);
            s.push(c);
        }
        s
    } else {
        format!("#{hex}")
    })
}

/// The image type of `bytes`, from their content alone (the name or the
/// declared type do not count): PNG, JPEG, GIF or WebP. SVG is refused: it
/// can carry script.
pub fn sniff_image(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// The presets service over the store.
#[derive(Clone)]
pub struct Presets {
    pub store: SharedStore,
}

impl Presets {
    fn check_share(user: &CurrentUser, shared: bool, what: &str) -> AppResult<()> {
        if shared && !user.is_admin() {
            return Err(AppError::Forbidden(format!(
                "only an administrator can share a {what} with everyone"
            )));
        }
        Ok(())
    }

    /// Only the owner changes a private record; only an admin a shared one.
    fn check_change(user: &CurrentUser, owner: Option<Uuid>, what: &str) -> AppResult<()> {
        match owner {
            Some(o) if o == user.id() => Ok(()),
            Some(_) => Err(AppError::not_found(what)),
            None if user.is_admin() => Ok(()),
            None => Err(AppError::Forbidden(format!(
                "this {what} is shared by an administrator: only an administrator can change it"
            ))),
        }
    }

    fn preset_fields(p: &mut Preset, input: PresetInput) -> AppResult<()> {
        p.name = required_line(&input.name, "name", MAX_NAME)?;
        p.description =
            optional_text(input.description, "description", MAX_DESCRIPTION)?.unwrap_or_default();
        p.model = match input.model.map(|m| m.trim().to_string()) {
            Some(m) if m.is_empty() => None,
            Some(m) if m.len() > 200 || m.chars().any(char::is_control) => {
                return Err(AppError::validation(
                    "model must be 1 to 200 characters without control characters",
                ));
            }
            other => other,
        };
        p.system_prompt = optional_text(input.system_prompt, "system_prompt", MAX_SYSTEM_PROMPT)?;
        validate_params(&input.params)?;
        p.params = input.params;
        Ok(())
    }

    pub async fn create_preset(&self, user: &CurrentUser, input: PresetInput) -> AppResult<Preset> {
        Self::check_share(user, input.shared, "preset")?;
        let now = crate::clock::now();
        let mut p = Preset {
            id: Uuid::now_v7(),
            owner: (!input.shared).then(|| user.id()),
            name: String::new(),
            description: String::new(),
            model: None,
            system_prompt: None,
            params: PresetParams::default(),
            created_by: user.id(),
            created_at: now,
            updated_at: now,
        };
        Self::preset_fields(&mut p, input)?;
        self.store.put_preset(&p).await?;
        Ok(p)
    }

    pub async fn get_preset(&self, user: &CurrentUser, id: Uuid) -> AppResult<Preset> {
        self.store
            .get_preset(user.id(), id)
            .await
            .map_err(|e| not_found(e, "preset"))
    }

    pub async fn list_presets(&self, user: &CurrentUser) -> AppResult<Vec<Preset>> {
        Ok(self.store.list_presets(user.id()).await?)
    }

    /// Replaces every field; `shared` may move a preset between private and
    /// shared (admins only; a shared preset made private becomes the
    /// admin's own).
    pub async fn update_preset(
        &self,
        user: &CurrentUser,
        id: Uuid,
        input: PresetInput,
    ) -> AppResult<Preset> {
        let mut p = self.get_preset(user, id).await?;
        Self::check_change(user, p.owner, "preset")?;
        if input.shared != p.owner.is_none() {
            Self::check_share(user, true, "preset")?;
            p.owner = (!input.shared).then(|| user.id());
        }
        Self::preset_fields(&mut p, input)?;
        p.updated_at = crate::clock::now();
        self.store.put_preset(&p).await?;
        Ok(p)
    }

    pub async fn delete_preset(&self, user: &CurrentUser, id: Uuid) -> AppResult<()> {
        let p = self.get_preset(user, id).await?;
        Self::check_change(user, p.owner, "preset")?;
        self.store
            .delete_preset(id)
            .await
            .map_err(|e| not_found(e, "preset"))
    }

    fn prompt_fields(p: &mut SavedPrompt, input: PromptInput) -> AppResult<()> {
        p.title = required_line(&input.title, "title", MAX_NAME)?;
        p.command = normalize_command(&input.command)?;
        p.text = optional_text(Some(input.text), "text", MAX_PROMPT_TEXT)?
            .ok_or_else(|| AppError::validation("text must not be empty"))?;
        Ok(())
    }

    pub async fn create_prompt(
        &self,
        user: &CurrentUser,
        input: PromptInput,
    ) -> AppResult<SavedPrompt> {
        Self::check_share(user, input.shared, "prompt")?;
        let now = crate::clock::now();
        let mut p = SavedPrompt {
            id: Uuid::now_v7(),
            owner: (!input.shared).then(|| user.id()),
            title: String::new(),
            command: String::new(),
            text: String::new(),
            created_by: user.id(),
            created_at: now,
            updated_at: now,
        };
        Self::prompt_fields(&mut p, input)?;
        self.store.put_prompt(&p).await?;
        Ok(p)
    }

    pub async fn get_prompt(&self, user: &CurrentUser, id: Uuid) -> AppResult<SavedPrompt> {
        self.store
            .get_prompt(user.id(), id)
            .await
            .map_err(|e| not_found(e, "prompt"))
    }

    pub async fn list_prompts(&self, user: &CurrentUser) -> AppResult<Vec<SavedPrompt>> {
        Ok(self.store.list_prompts(user.id()).await?)
    }

    pub async fn update_prompt(
        &self,
        user: &CurrentUser,
        id: Uuid,
        input: PromptInput,
    ) -> AppResult<SavedPrompt> {
        let mut p = self.get_prompt(user, id).await?;
        Self::check_change(user, p.owner, "prompt")?;
        if input.shared != p.owner.is_none() {
            Self::check_share(user, true, "prompt")?;
            p.owner = (!input.shared).then(|| user.id());
        }
        Self::prompt_fields(&mut p, input)?;
        p.updated_at = crate::clock::now();
        self.store.put_prompt(&p).await?;
        Ok(p)
    }

    pub async fn delete_prompt(&self, user: &CurrentUser, id: Uuid) -> AppResult<()> {
        let p = self.get_prompt(user, id).await?;
        Self::check_change(user, p.owner, "prompt")?;
        self.store
            .delete_prompt(id)
            .await
            .map_err(|e| not_found(e, "prompt"))
    }

    pub async fn settings(&self, user: &CurrentUser) -> AppResult<UserSettings> {
        Ok(self.store.get_user_settings(user.id()).await?)
    }

    /// Sets (or, blank, clears) the custom instructions.
    pub async fn set_instructions(
        &self,
        user: &CurrentUser,
        text: Option<String>,
    ) -> AppResult<UserSettings> {
        let mut s = self.store.get_user_settings(user.id()).await?;
        s.custom_instructions = optional_text(text, "custom_instructions", MAX_INSTRUCTIONS)?;
        s.updated_at = crate::clock::now();
        self.store.put_user_settings(user.id(), &s).await?;
        Ok(s)
    }

    pub async fn branding(&self) -> AppResult<Branding> {
        Ok(self.store.get_branding().await?)
    }

    pub async fn update_branding(&self, patch: BrandingPatch) -> AppResult<Branding> {
        let mut b = self.store.get_branding().await?;
        if let Some(v) = patch.server_name {
            b.server_name = match v.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(n) => Some(required_line(n, "server_name", MAX_SERVER_NAME)?),
            };
        }
        if let Some(v) = patch.accent_color {
            b.accent_color = match v.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(c) => Some(normalize_color(c)?),
            };
        }
        if let Some(v) = patch.sign_in_message {
            b.sign_in_message = optional_text(v, "sign_in_message", MAX_SIGN_IN_MESSAGE)?;
        }
        b.updated_at = crate::clock::now();
        self.store.put_branding(&b).await?;
        Ok(b)
    }

    /// Stores `bytes` as the logo once its content is a known image type
    /// within [`MAX_LOGO_BYTES`].
    pub async fn set_logo(&self, bytes: &[u8]) -> AppResult<Branding> {
        if bytes.is_empty() {
            return Err(AppError::validation("the logo file is empty"));
        }
        if bytes.len() > MAX_LOGO_BYTES {
            return Err(AppError::Validation(format!(
                "the logo must be at most {} KiB",
                MAX_LOGO_BYTES / 1024
            )));
        }
        let content_type = sniff_image(bytes).ok_or_else(|| {
            AppError::validation("the logo must be a PNG, JPEG, GIF or WebP image")
        })?;
        use sha2::Digest;
        let etag = hex::encode(&sha2::Sha256::digest(bytes)[..12]);
        let mut b = self.store.get_branding().await?;
        b.logo = Some(Logo {
            content_type: content_type.to_string(),
            bytes: bytes.to_vec(),
            etag,
        });
        b.updated_at = crate::clock::now();
        self.store.put_branding(&b).await?;
        Ok(b)
    }

    /// Removes the logo (confab's own shows again).
    pub async fn clear_logo(&self) -> AppResult<Branding> {
        let mut b = self.store.get_branding().await?;
        b.logo = None;
        b.updated_at = crate::clock::now();
        self.store.put_branding(&b).await?;
        Ok(b)
    }

    /// Applies a preset to a conversation being started (`is_new`): its
    /// model (unless the request named one), its system prompt, and the
    /// preset remembered for its sampling settings. Then the settings of
    /// this answer: the system prompt (see the module docs for the order)
    /// and the preset's parameters. A preset for an existing conversation
    /// is refused.
    pub async fn for_turn(
        &self,
        user: &CurrentUser,
        conv: &mut Conversation,
        is_new: bool,
        preset_id: Option<&str>,
        model_asked: bool,
    ) -> AppResult<TurnSettings> {
        let mut preset = None;
        if let Some(raw) = preset_id.filter(|s| !s.is_empty()) {
            if !is_new {
                return Err(AppError::validation(
                    "preset_id applies only when starting a conversation (leave out conversation_id)",
                ));
            }
            let id = Uuid::parse_str(raw).map_err(|_| AppError::not_found("preset"))?;
            let p = self.get_preset(user, id).await?;
            if !model_asked && p.model.is_some() {
                conv.model = p.model.clone();
            }
            conv.system_prompt = p.system_prompt.clone();
            conv.preset_id = Some(p.id);
            preset = Some(p);
        } else if let Some(id) = conv.preset_id {
            // A preset deleted (or no longer shared) since leaves the
            // provider's defaults.
            preset = self.store.get_preset(user.id(), id).await.ok();
        }
        let instructions = self
            .store
            .get_user_settings(user.id())
            .await?
            .custom_instructions;
        Ok(TurnSettings {
            system: combine(conv.system_prompt.as_deref(), instructions.as_deref()),
            params: preset.map(|p| p.params).unwrap_or_default(),
        })
    }
}

/// The conversation's system prompt, then the custom instructions, a blank
/// line apart; None when both are blank.
pub fn combine(system: Option<&str>, instructions: Option<&str>) -> Option<String> {
    let parts: Vec<&str> = [system, instructions]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join("\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(normalize_command("/Summarize").unwrap(), "summarize");
        assert_eq!(normalize_command("fix-bug_2").unwrap(), "fix-bug_2");
        for bad in ["", "/", "-x", "a b", "é", &"a".repeat(33)] {
            assert!(normalize_command(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn colors() {
        assert_eq!(normalize_color("#ABC").unwrap(), "#aabbcc");
        assert_eq!(normalize_color(" #3B82F6 ").unwrap(), "#3b82f6");
        for bad in ["3b82f6", "#3b82f", "#ggg", "red", "#3b82f6;x"] {
            assert!(normalize_color(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sniffing() {
        assert_eq!(sniff_image(b"\x89PNG\r\n\x1a\nrest"), Some("image/png"));
        assert_eq!(sniff_image(&[0xff, 0xd8, 0xff, 0xe0]), Some("image/jpeg"));
        assert_eq!(sniff_image(b"GIF89a..."), Some("image/gif"));
        assert_eq!(sniff_image(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(
            sniff_image(b"<svg xmlns='http://www.w3.org/2000/svg'/>"),
            None
        );
        assert_eq!(sniff_image(b"<html>"), None);
    }

    #[test]
    fn params() {
        let ok = PresetParams {
            temperature: Some(2.0),
            max_tokens: Some(1),
            top_p: Some(0.0),
        };
        assert!(validate_params(&ok).is_ok());
        for bad in [
            PresetParams {
                temperature: Some(2.1),
                ..Default::default()
            },
            PresetParams {
                temperature: Some(f32::NAN),
                ..Default::default()
            },
            PresetParams {
                top_p: Some(1.5),
                ..Default::default()
            },
            PresetParams {
                max_tokens: Some(0),
                ..Default::default()
            },
        ] {
            assert!(validate_params(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn system_prompt_order() {
        assert_eq!(combine(None, None), None);
        assert_eq!(combine(Some("  "), Some("")), None);
        assert_eq!(combine(Some("Be a pirate."), None).unwrap(), "Be a pirate.");
        assert_eq!(
            combine(None, Some("I use metric.")).unwrap(),
            "I use metric."
        );
        assert_eq!(
            combine(Some("Be a pirate."), Some("I use metric.")).unwrap(),
            "Be a pirate.\n\nI use metric."
        );
    }
}
