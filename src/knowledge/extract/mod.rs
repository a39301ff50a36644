//! Text out of documents: PDF (per page), DOCX (per paragraph, with the
//! heading it falls under), HTML (text only), Markdown, plain text, CSV and
//! source code (per line). Pure Rust, no external program.
//!
//! Every extraction runs on a thread of its own with a large stack, under
//! `catch_unwind`, within [`Limits`]: pages, output text, time, and (for
//! the compressed formats) how far compressed data may expand. A file that
//! breaks a parser gives a clear [`ExtractError`], never a crash.

mod docx;
mod html;
mod pdf;
mod text;

/// Documents made in memory (a PDF written with `lopdf`, a DOCX with
/// `zip`): for tests and benches, which need real files of a known shape.
pub mod samples {
    pub use super::docx::build as docx;
    pub use super::pdf::build as pdf;
}

use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// What kind of document a file is, decided from its content first and its
/// name second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocKind {
    Pdf,
    Docx,
    Html,
    Markdown,
    Csv,
    Code,
    Text,
}

impl DocKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Pdf => "pdf",
            DocKind::Docx => "docx",
            DocKind::Html => "html",
            DocKind::Markdown => "markdown",
            DocKind::Csv => "csv",
            DocKind::Code => "code",
            DocKind::Text => "text",
        }
    }
}

/// Source code extensions read line by line.
const CODE_EXTENSIONS: &[&str] = &[
    "rs",
    "py",
    "js",
    "mjs",
    "cjs",
    "ts",
    "tsx",
    "jsx",
    "go",
    "java",
    "kt",
    "kts",
    "c",
    "h",
    "cc",
    "cpp",
    "cxx",
    "hpp",
    "hh",
    "cs",
    "rb",
    "php",
    "swift",
    "scala",
    "sh",
    "bash",
    "zsh",
    "fish",
    "ps1",
    "sql",
    "lua",
    "pl",
    "pm",
    "r",
    "m",
    "mm",
    "dart",
    "ex",
    "exs",
    "erl",
    "hs",
    "ml",
    "mli",
    "clj",
    "cljs",
    "el",
    "vim",
    "toml",
    "yaml",
    "yml",
    "ini",
    "cfg",
    "conf",
    "json",
    "xml",
    "css",
    "scss",
    "less",
    "vue",
    "svelte",
    "zig",
    "nim",
    "jl",
    "proto",
    "graphql",
    "tf",
    "gradle",
    "cmake",
    "mk",
    "dockerfile",
    "makefile",
];

fn extension(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let lower = base.to_ascii_lowercase();
    if lower == "dockerfile" || lower == "makefile" {
        return lower;
    }
    match lower.rsplit_once('.') {
        Some((_, e)) => e.to_string(),
        None => String::new(),
    }
}

/// The kind of a file from its first bytes, its detected type and its
/// name; None for what is not a document (images, archives, binaries).
pub fn detect(bytes: &[u8], mime: &str, name: &str) -> Option<DocKind> {
    let head = &bytes[..bytes.len().min(1024)];
    if find(head, b"%PDF-").is_some() {
        return Some(DocKind::Pdf);
    }
    let mime = mime.to_ascii_lowercase();
    let ext = extension(name);
    if bytes.starts_with(b"PK\x03\x04") {
        return (ext == "docx" || mime.contains("wordprocessingml")).then_some(DocKind::Docx);
    }
    if mime.starts_with("image/") || mime.starts_with("audio/") || mime.starts_with("video/") {
        return None;
    }
    if !looks_like_text(bytes) {
        return None;
    }
    Some(match ext.as_str() {
        "html" | "htm" | "xhtml" => DocKind::Html,
        "md" | "markdown" | "mdown" | "mkd" => DocKind::Markdown,
        "csv" | "tsv" => DocKind::Csv,
        e if CODE_EXTENSIONS.contains(&e) => DocKind::Code,
        _ if mime.contains("html") => DocKind::Html,
        _ if mime.contains("markdown") => DocKind::Markdown,
        _ if mime.contains("csv") => DocKind::Csv,
        _ => DocKind::Text,
    })
}

/// Text (in UTF-8, UTF-16 with a BOM, or a legacy 8-bit encoding) has no
/// NUL bytes in its first 8 KiB, unless it is UTF-16.
fn looks_like_text(bytes: &[u8]) -> bool {
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return true;
    }
    !bytes[..bytes.len().min(8192)].contains(&0)
}

pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Where a block of text is in its document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loc {
    /// A PDF page, from 1.
    Page(u32),
    /// A line of a text file, from 1.
    Line(u32),
    /// A paragraph (DOCX, HTML), from 1, under its nearest heading.
    Paragraph { index: u32, heading: Option<String> },
}

/// A piece of a document's text and where it is.
#[derive(Debug, Clone)]
pub struct Block {
    pub text: String,
    pub at: Loc,
}

/// A document's text.
#[derive(Debug, Clone)]
pub struct Extracted {
    pub kind: DocKind,
    pub blocks: Vec<Block>,
    /// Pages of a PDF (all of them, also those past the page limit).
    pub pages: Option<u32>,
    /// Why only part of the text was taken (a limit was reached).
    pub truncated: Option<String>,
}

impl Extracted {
    pub fn chars(&self) -> u64 {
        self.blocks
            .iter()
            .map(|b| b.text.chars().count() as u64)
            .sum()
    }
}

/// What one extraction may use.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// PDF pages read; later pages are left out (and the result says so).
    pub max_pages: u32,
    /// Text kept, in bytes; the rest is left out.
    pub max_text_bytes: usize,
    /// What compressed data (PDF streams, DOCX parts) may expand to, all
    /// together; a file past it is refused as a decompression bomb.
    pub max_inflated_bytes: u64,
    /// Wall time; the pages read by then are kept.
    pub max_time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pages: 2000,
            max_text_bytes: 8 * 1024 * 1024,
            max_inflated_bytes: 256 * 1024 * 1024,
            max_time: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    #[error("the file is empty")]
    Empty,
    #[error("this kind of file has no text confab can read")]
    Unsupported,
    #[error("the {0} could not be read: {1}")]
    Unreadable(&'static str, String),
    #[error("the PDF is encrypted with a password")]
    Encrypted,
    #[error("{0}")]
    Bomb(String),
    #[error(
        "no text was found in the document (a scanned PDF needs OCR, which confab does not do)"
    )]
    NoText,
    #[error("reading the document took longer than {0} seconds")]
    TimedOut(u64),
    #[error("the document made the reader fail")]
    Crashed,
}

/// Stack of the extraction thread: parsers recurse over nested objects,
/// and a thread of tokio's blocking pool has 2 MiB.
const STACK_BYTES: usize = 64 * 1024 * 1024;

/// Extracts on a thread of its own with a large stack, under
/// `catch_unwind`; waits at most `limits.max_time` (plus a grace second),
/// after which the thread is left to finish (its result is dropped) and
/// the call answers [`ExtractError::TimedOut`]. Every parser also checks
/// the deadline itself between pages or parts, so such a thread is rare.
pub async fn extract(
    bytes: std::sync::Arc<Vec<u8>>,
    kind: DocKind,
    limits: Limits,
) -> Result<Extracted, ExtractError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("confab-extract".into())
        .stack_size(STACK_BYTES)
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                extract_now(&bytes, kind, &limits)
            }))
            .unwrap_or(Err(ExtractError::Crashed));
            let _ = tx.send(r);
        });
    if spawned.is_err() {
        return Err(ExtractError::Crashed);
    }
    let wait = limits.max_time + Duration::from_secs(1);
    match tokio::time::timeout(wait, rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(ExtractError::Crashed),
        Err(_) => Err(ExtractError::TimedOut(limits.max_time.as_secs())),
    }
}

/// Extracts on the calling thread (tests, benches; [`extract`] wraps it).
pub fn extract_now(
    bytes: &[u8],
    kind: DocKind,
    limits: &Limits,
) -> Result<Extracted, ExtractError> {
    if bytes.is_empty() {
        return Err(ExtractError::Empty);
    }
    let deadline = Instant::now() + limits.max_time;
    let mut out = match kind {
        DocKind::Pdf => pdf::extract(bytes, limits, deadline)?,
        DocKind::Docx => docx::extract(bytes, limits, deadline)?,
        DocKind::Html => html::extract(&text::decode(bytes), limits),
        DocKind::Csv => text::csv(bytes, limits),
        DocKind::Markdown | DocKind::Code | DocKind::Text => {
            text::lines(&text::decode(bytes), kind, limits)
        }
    };
    out.blocks.retain(|b| !b.text.trim().is_empty());
    if out.blocks.is_empty() {
        return Err(ExtractError::NoText);
    }
    Ok(out)
}

/// Keeps adding text while under the byte limit.
pub(crate) struct Budget {
    left: usize,
    pub truncated: bool,
}

impl Budget {
    pub fn new(limits: &Limits) -> Budget {
        Budget {
            left: limits.max_text_bytes,
            truncated: false,
        }
    }

    /// `text`, cut (at a character boundary) to what is left; None once
    /// nothing is.
    pub fn take(&mut self, mut text: String) -> Option<String> {
        if self.left == 0 {
            self.truncated = true;
            return None;
        }
        if text.len() > self.left {
            let mut cut = self.left;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            self.truncated = true;
        }
        self.left -= text.len();
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_kinds() {
        assert_eq!(
            detect(b"%PDF-1.7\n...", "application/pdf", "a.pdf"),
            Some(DocKind::Pdf)
        );
        assert_eq!(
            detect(b"PK\x03\x04....", "application/zip", "a.docx"),
            Some(DocKind::Docx)
        );
        assert_eq!(detect(b"PK\x03\x04....", "application/zip", "a.zip"), None);
        assert_eq!(
            detect(b"# Title\n", "text/plain", "notes.md"),
            Some(DocKind::Markdown)
        );
        assert_eq!(
            detect(b"a,b\n1,2\n", "text/plain", "t.csv"),
            Some(DocKind::Csv)
        );
        assert_eq!(
            detect(b"fn main() {}\n", "text/plain", "src/main.rs"),
            Some(DocKind::Code)
        );
        assert_eq!(
            detect(b"<p>hi</p>", "text/html", "page"),
            Some(DocKind::Html)
        );
        assert_eq!(detect(b"hello", "text/plain", "x"), Some(DocKind::Text));
        assert_eq!(detect(b"\x89PNG\r\n\x1a\n\0\0", "image/png", "x.png"), None);
        assert_eq!(detect(b"ab\0cd", "application/octet-stream", "x.bin"), None);
    }

    #[test]
    fn empty_is_an_error() {
        assert_eq!(
            extract_now(b"", DocKind::Text, &Limits::default()).unwrap_err(),
            ExtractError::Empty
        );
        assert_eq!(
            extract_now(b"  \n\n ", DocKind::Text, &Limits::default()).unwrap_err(),
            ExtractError::NoText
        );
    }

    #[test]
    fn budget_cuts_at_char_boundaries() {
        let mut b = Budget {
            left: 5,
            truncated: false,
        };
        assert_eq!(b.take("ééé".into()).as_deref(), Some("éé"));
        assert!(b.truncated);
        assert_eq!(b.take("xy".into()).as_deref(), Some("x"));
        assert_eq!(b.take("z".into()), None);
    }
}
