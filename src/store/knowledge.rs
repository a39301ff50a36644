//! Documents read for retrieval (the text of a user's uploaded files, in
//! chunks), their vectors, and knowledge collections (named sets of a
//! user's files). A document is its owner's only: another user's file id
//! is `NotFound`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a chunk is in its document: the pages (PDF), lines (text, code,
/// CSV) or paragraphs (DOCX, HTML) it spans, from 1, and the heading the
/// first paragraph is under.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChunkSpan {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_start: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_end: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_start: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_end: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paragraph_start: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paragraph_end: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heading: Option<String>,
}

/// One piece of a document's text, about a few hundred tokens, overlapping
/// its neighbours a little.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    pub file_id: Uuid,
    /// Its place in the document, from 0.
    pub ordinal: u32,
    pub text: String,
    #[serde(default)]
    pub span: ChunkSpan,
}

impl std::fmt::Debug for Chunk {
    // Document text never goes to logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunk")
            .field("file_id", &self.file_id)
            .field("ordinal", &self.ordinal)
            .field("chars", &self.text.chars().count())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DocumentStatus {
    /// Read and chunked.
    Ready,
    /// Could not be read; `error` says why.
    Failed,
}

/// What confab read of one uploaded file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentRecord {
    pub file_id: Uuid,
    pub owner: Uuid,
    /// The file's name when it was read.
    pub name: String,
    /// pdf | docx | html | markdown | csv | code | text
    pub kind: String,
    pub status: DocumentStatus,
    #[serde(default)]
    pub error: Option<String>,
    /// Pages of a PDF.
    #[serde(default)]
    pub pages: Option<u32>,
    pub chars: u64,
    /// Estimated tokens of the whole text.
    pub tokens: u64,
    pub chunks: u32,
    /// Why only part of the text was read.
    #[serde(default)]
    pub truncated: Option<String>,
    /// The embedding model the chunks' vectors come from, when they have some.
    #[serde(default)]
    pub embedding_model: Option<String>,
    pub created_at: i64,
}

/// The vectors of a document's chunks, by one embedding model: each
/// quantized to i8 with its own scale (value ≈ byte × scale), which keeps
/// a 1536-dimension vector in 1.5 KB instead of 6.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkVectors {
    pub file_id: Uuid,
    pub model: String,
    pub dims: u32,
    /// One per chunk, by ordinal.
    pub scales: Vec<f32>,
    /// `dims` bytes per chunk, base64 in the stored JSON.
    #[serde(with = "b64")]
    pub data: Vec<u8>,
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

/// A named set of a user's files, attachable to conversations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Collection {
    pub id: Uuid,
    pub owner: Uuid,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// In the order they were added; each at most once.
    #[serde(default)]
    pub file_ids: Vec<Uuid>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A change to a collection: each field set replaces the stored one.
#[derive(Debug, Clone, Default)]
pub struct CollectionPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    /// Files to add (ignored when already in).
    pub add: Vec<Uuid>,
    /// Files to take out (ignored when not in).
    pub remove: Vec<Uuid>,
}

/// The most files one collection may hold.
pub const MAX_COLLECTION_FILES: usize = 10_000;
