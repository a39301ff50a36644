//! Export and import of conversations, independent of any front end: the
//! document formats, the import's checks and id remapping, and the
//! Markdown and file-name rendering of a download. `http::export` serves
//! them.

pub mod filename;
pub mod import;
pub mod markdown;

/// `format` of a single-conversation export.
pub const CONVERSATION_FORMAT: &str = "confab.conversation.v1";
/// `format` of a full export.
pub const EXPORT_FORMAT: &str = "confab.export.v1";
