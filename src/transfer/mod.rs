//! Export and import of conversations, independent of any front end: the
//! document formats (confab's own and other apps', `formats.rs`), the
//! streaming reader of an upload (`stream.rs`), the import's checks and id
//! remapping (`import.rs`), import jobs with their progress (`jobs.rs`,
//! `run.rs`), and the Markdown and file-name rendering of a download.
//! `http::export` serves them.

pub mod filename;
pub mod formats;
pub mod import;
pub mod jobs;
pub mod markdown;
pub mod run;
pub mod stream;

/// `format` of a single-conversation export.
pub const CONVERSATION_FORMAT: &str = "confab.conversation.v1";
/// `format` of a full export.
pub const EXPORT_FORMAT: &str = "confab.export.v1";
