//! What admins set per model (Admin → Models), keyed by model id: shown or
//! hidden in the chat's picker, a display name, a description and a price
//! that replaces the `[[prices]]` table's for that model. The server-wide
//! default model is kept beside them.

use serde::{Deserialize, Serialize};

/// One model's settings; a model without a record has the defaults
/// (shown, the provider's name, no description, the configured price).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSetting {
    /// The model id as providers list it.
    pub model: String,
    /// Left out of the chat's model picker.
    #[serde(default)]
    pub hidden: bool,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Per million tokens, in the currency of the `[[prices]]` table.
    #[serde(default)]
    pub price: Option<ModelPrice>,
    /// Whether the model reads images, when an admin says so (the table
    /// of known models decides otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vision: Option<bool>,
    #[serde(default)]
    pub updated_at: i64,
}

impl ModelSetting {
    /// The settings of a model no admin has changed.
    pub fn unset(model: &str) -> ModelSetting {
        ModelSetting {
            model: model.to_string(),
            hidden: false,
            display_name: None,
            description: None,
            price: None,
            vision: None,
            updated_at: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelPrice {
    pub input_per_million: f64,
    pub output_per_million: f64,
}

impl ModelSetting {
    /// True when the record changes nothing (it can be deleted).
    pub fn is_default(&self) -> bool {
        !self.hidden
            && self.display_name.is_none()
            && self.description.is_none()
            && self.price.is_none()
            && self.vision.is_none()
    }
}
