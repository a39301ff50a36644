//! Documents answered with sources: reading uploaded files (`extract`),
//! cutting their text into chunks (`chunk`), and the knowledge service
//! that stores and indexes them, retrieves the chunks a question needs for
//! the chat context, and keeps knowledge collections.

pub mod chunk;
pub mod extract;
