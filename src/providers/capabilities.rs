//! What each model can do: chat, read images (vision), call tools, make
//! embeddings or images, and its context and output limits. Providers say
//! some of it (context windows from OpenRouter, LM Studio and Ollama;
//! Anthropic's output limits come from its own table in `anthropic.rs`);
//! for the rest this is the one maintained table, by model-id prefix.
//!
//! Keep entries in the order they must be tried: the first prefix that
//! matches wins, so longer (more specific) prefixes come first.

use serde::Serialize;
use utoipa::ToSchema;

use super::{ModelKind, ProviderKind, model_kind_from_id};

/// What a model is for, as the picker and the admin page show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelUse {
    Chat,
    Embedding,
    /// Makes images (`gpt-image-*`, `dall-e-*`): never a chat model.
    Image,
    /// Speech, transcription or moderation: never a chat model.
    Other,
}

/// The capabilities of one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Capabilities {
    /// chat | embedding | image | other; only `chat` models are offered in
    /// the chat's model picker.
    #[serde(rename = "use")]
    pub model_use: ModelUse,
    /// Accepts images in messages.
    pub vision: bool,
    /// Can call tools (functions).
    pub tools: bool,
    /// Tokens of context, from the provider when it says, else the table.
    pub context_window: Option<u32>,
    /// Longest answer in tokens, from the provider when it says, else the table.
    pub max_output_tokens: Option<u32>,
}

impl Capabilities {
    pub fn chat(&self) -> bool {
        self.model_use == ModelUse::Chat
    }
}

/// One row of the table: (id prefix, use, vision, tools, context, output).
type Row = (&'static str, ModelUse, bool, bool, Option<u32>, Option<u32>);

use ModelUse::{Chat, Embedding, Image, Other};

/// Known model families. Sources: each vendor's model overview pages.
const TABLE: &[Row] = &[
    // OpenAI
    ("gpt-image", Image, false, false, None, None),
    ("dall-e", Image, false, false, None, None),
    ("tts-", Other, false, false, None, None),
    ("whisper", Other, false, false, None, None),
    ("omni-moderation", Other, false, false, None, None),
    ("text-moderation", Other, false, false, None, None),
    ("gpt-4o-mini-tts", Other, false, false, None, None),
    ("gpt-4o-transcribe", Other, false, false, None, None),
    ("gpt-4o-mini-transcribe", Other, false, false, None, None),
    ("gpt-4o-realtime", Other, false, false, None, None),
    ("gpt-4o-audio", Other, false, false, None, None),
    (
        "text-embedding-3-large",
        Embedding,
        false,
        false,
        Some(8_191),
        None,
    ),
    (
        "text-embedding-3-small",
        Embedding,
        false,
        false,
        Some(8_191),
        None,
    ),
    (
        "text-embedding-ada-002",
        Embedding,
        false,
        false,
        Some(8_191),
        None,
    ),
    ("gpt-4.1", Chat, true, true, Some(1_047_576), Some(32_768)),
    ("gpt-4o-mini", Chat, true, true, Some(128_000), Some(16_384)),
    ("gpt-4o", Chat, true, true, Some(128_000), Some(16_384)),
    ("gpt-4-turbo", Chat, true, true, Some(128_000), Some(4_096)),
    ("gpt-4", Chat, false, true, Some(8_192), Some(8_192)),
    (
        "gpt-3.5-turbo",
        Chat,
        false,
        true,
        Some(16_385),
        Some(4_096),
    ),
    ("gpt-5", Chat, true, true, Some(400_000), Some(128_000)),
    ("o4-mini", Chat, true, true, Some(200_000), Some(100_000)),
    ("o3-mini", Chat, false, true, Some(200_000), Some(100_000)),
    ("o3", Chat, true, true, Some(200_000), Some(100_000)),
    ("o1-mini", Chat, false, false, Some(128_000), Some(65_536)),
    ("o1", Chat, true, true, Some(200_000), Some(100_000)),
    // Anthropic (output limits: `anthropic::claude_max_output_tokens`)
    ("claude-3-5-haiku", Chat, false, true, Some(200_000), None),
    ("claude", Chat, true, true, Some(200_000), None),
    // Local families (Ollama, LM Studio, vLLM)
    ("llama3.2-vision", Chat, true, false, Some(131_072), None),
    ("llama3.2", Chat, false, true, Some(131_072), None),
    ("llama3.1", Chat, false, true, Some(131_072), None),
    ("llama3", Chat, false, false, Some(8_192), None),
    ("llava", Chat, true, false, Some(4_096), None),
    ("qwen2.5-coder", Chat, false, true, Some(32_768), None),
    ("qwen2.5vl", Chat, true, false, Some(128_000), None),
    ("qwen2.5", Chat, false, true, Some(32_768), None),
    ("qwen3", Chat, false, true, Some(40_960), None),
    ("mistral-small", Chat, true, true, Some(128_000), None),
    ("mistral", Chat, false, true, Some(32_768), None),
    ("gemma3", Chat, true, false, Some(131_072), None),
    ("gemma2", Chat, false, false, Some(8_192), None),
    ("phi4", Chat, false, false, Some(16_384), None),
    ("deepseek-r1", Chat, false, false, Some(131_072), None),
    ("minicpm-v", Chat, true, false, Some(32_768), None),
];

/// The part of an id the table knows: without a vendor path
/// (`openai/gpt-4o` on OpenRouter) and lowercase.
fn base_id(id: &str) -> String {
    let id = id.to_ascii_lowercase();
    id.rsplit('/').next().unwrap_or(&id).to_string()
}

/// The capabilities of `id` served by a provider of `kind`, with what the
/// provider itself said (`kind_said`, `context_window`, `max_output_tokens`)
/// taking precedence over the table.
pub fn capabilities(
    id: &str,
    provider: ProviderKind,
    kind_said: ModelKind,
    context_window: Option<u32>,
    max_output_tokens: Option<u32>,
) -> Capabilities {
    let base = base_id(id);
    let row = TABLE.iter().find(|r| base.starts_with(r.0));
    let model_use = match (kind_said, row) {
        (ModelKind::Embedding, _) => Embedding,
        (_, Some(r)) => r.1,
        (ModelKind::Chat, None) => match model_kind_from_id(id) {
            ModelKind::Embedding => Embedding,
            ModelKind::Chat => Chat,
        },
    };
    let table_output = row.and_then(|r| r.5).or_else(|| {
        (provider == ProviderKind::Anthropic || base.starts_with("claude"))
            .then(|| super::anthropic::claude_max_output_tokens(&base))
            .flatten()
    });
    Capabilities {
        model_use,
        vision: row.is_some_and(|r| r.2),
        tools: row.is_some_and(|r| r.3),
        context_window: context_window.or(row.and_then(|r| r.4)),
        max_output_tokens: max_output_tokens.or(table_output),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(id: &str) -> Capabilities {
        capabilities(id, ProviderKind::Openai, model_kind_from_id(id), None, None)
    }

    #[test]
    fn image_and_embedding_models_are_not_chat_models() {
        assert_eq!(caps("gpt-image-1").model_use, ModelUse::Image);
        assert_eq!(caps("dall-e-3").model_use, ModelUse::Image);
        assert_eq!(
            caps("text-embedding-3-small").model_use,
            ModelUse::Embedding
        );
        assert_eq!(
            caps("nomic-embed-text:latest").model_use,
            ModelUse::Embedding
        );
        assert_eq!(caps("whisper-1").model_use, ModelUse::Other);
        assert!(caps("gpt-4o").chat());
        assert!(caps("some-new-model").chat());
    }

    #[test]
    fn longer_prefixes_win_and_the_provider_overrides_the_table() {
        let mini = caps("gpt-4o-mini");
        assert_eq!(mini.max_output_tokens, Some(16_384));
        assert!(mini.vision && mini.tools);
        assert!(!caps("gpt-4").vision);
        assert!(caps("openai/gpt-4o").vision);
        let said = capabilities(
            "gpt-4o",
            ProviderKind::Openai,
            ModelKind::Chat,
            Some(1),
            Some(2),
        );
        assert_eq!(
            (said.context_window, said.max_output_tokens),
            (Some(1), Some(2))
        );
        let claude = capabilities(
            "claude-sonnet-4-5",
            ProviderKind::Anthropic,
            ModelKind::Chat,
            None,
            None,
        );
        assert_eq!(claude.max_output_tokens, Some(64_000));
        assert!(claude.vision);
        assert!(!caps("llama3.2:latest").vision);
        assert!(caps("llama3.2-vision:11b").vision);
    }
}
