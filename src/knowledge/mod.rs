//! Documents answered with sources: reading uploaded files (`extract`),
//! cutting their text into chunks (`chunk`), vectors for hybrid retrieval
//! (`vectors`), and the knowledge service (`service`) that stores and
//! indexes documents, retrieves the passages a question needs for the chat
//! context, and keeps knowledge collections.

pub mod chunk;
pub mod extract;
pub mod service;
pub mod uploads;
pub mod vectors;

pub use service::{FileMeta, FileSource, Knowledge, Retrieved};
