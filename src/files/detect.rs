//! What a file is, from its content: the allow-list of types confab keeps,
//! and the display name made safe. The name's extension is only a hint, and
//! only for text (to tell Markdown, CSV and HTML from plain text).

/// The kinds of file confab accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// png, jpeg, gif, webp: may go to vision models.
    Image,
    Pdf,
    Docx,
    /// UTF-8 text: plain, Markdown, CSV, HTML, source code.
    Text,
}

/// A detected type: its kind and MIME type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub kind: FileKind,
    pub mime: &'static str,
}

pub const DOCX_MIME: &str =
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document";

/// Images that may be shown inline and sent to vision models.
pub const IMAGE_MIMES: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp"];

pub fn is_image_mime(mime: &str) -> bool {
    IMAGE_MIMES.contains(&mime)
}

/// The type of a file from its first bytes (`head`; `complete` when it is
/// the whole file) and its name as a hint for text. None: not a type
/// confab keeps.
pub fn detect(head: &[u8], name: &str, complete: bool) -> Option<Detected> {
    if let Some(t) = infer::get(head) {
        let found = match t.mime_type() {
            "image/png" => Some((FileKind::Image, "image/png")),
            "image/jpeg" => Some((FileKind::Image, "image/jpeg")),
            "image/gif" => Some((FileKind::Image, "image/gif")),
            "image/webp" => Some((FileKind::Image, "image/webp")),
            "application/pdf" => Some((FileKind::Pdf, "application/pdf")),
            DOCX_MIME => Some((FileKind::Docx, DOCX_MIME)),
            _ => None,
        };
        if let Some((kind, mime)) = found {
            return Some(Detected { kind, mime });
        }
        // infer also names some text (HTML, XML, shell scripts): those go
        // through the text check below; any other type is refused.
        if t.matcher_type() != infer::MatcherType::Text {
            return None;
        }
    }
    if !is_text(head, complete) {
        return None;
    }
    Some(Detected {
        kind: FileKind::Text,
        mime: text_mime(name),
    })
}

/// UTF-8 without NUL bytes (a character cut at the end of an incomplete
/// head is fine).
fn is_text(head: &[u8], complete: bool) -> bool {
    if head.contains(&0) {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => !complete && e.error_len().is_none() && head.len() - e.valid_up_to() < 4,
    }
}

fn extension(name: &str) -> String {
    name.rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default()
}

fn text_mime(name: &str) -> &'static str {
    match extension(name).as_str() {
        "md" | "markdown" | "mdown" => "text/markdown",
        "csv" => "text/csv",
        "html" | "htm" | "xhtml" => "text/html",
        _ => "text/plain",
    }
}

/// Longest display name kept, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// A display name from what the client sent: its last path component,
/// without control and direction-override characters, path separators or
/// leading dots, NFC-normalised, at most [`MAX_NAME_CHARS`] characters;
/// `fallback` when nothing is left. It is only ever shown, never used as
/// a path.
pub fn sanitize_name(raw: &str, fallback: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .nfc()
        .filter(|c| {
            !c.is_control()
                && !matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
        })
        .map(|c| {
            if matches!(c, ':' | '*' | '?' | '"' | '<' | '>' | '|') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let trimmed = cleaned.trim().trim_start_matches('.').trim();
    let out: String = trimmed.chars().take(MAX_NAME_CHARS).collect();
    let out = out.trim_end().to_string();
    if out.is_empty() || out.chars().all(|c| c == '.') {
        fallback.to_string()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_safe() {
        assert_eq!(sanitize_name("../../etc/passwd", "file"), "passwd");
        assert_eq!(sanitize_name("..\\..\\boot.ini", "file"), "boot.ini");
        assert_eq!(sanitize_name("/", "file"), "file");
        assert_eq!(sanitize_name("..", "file"), "file");
        assert_eq!(sanitize_name(".htaccess", "file"), "htaccess");
        assert_eq!(sanitize_name("a\u{202E}gpj.exe", "file"), "agpj.exe");
        assert_eq!(sanitize_name("re:port?.txt", "file"), "re_port_.txt");
        assert_eq!(sanitize_name("line\nbreak.md", "file"), "linebreak.md");
        assert_eq!(sanitize_name(&"x".repeat(500), "file").chars().count(), 200);
        assert_eq!(sanitize_name("Café.png", "file"), "Café.png");
    }

    #[test]
    fn types_come_from_the_content() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert_eq!(detect(png, "notes.txt", false).unwrap().mime, "image/png");
        assert_eq!(
            detect(b"%PDF-1.7\n", "x.png", false).unwrap().kind,
            FileKind::Pdf
        );
        assert_eq!(
            detect(b"# Title\n", "a.md", true).unwrap().mime,
            "text/markdown"
        );
        assert_eq!(
            detect(b"a,b\n1,2\n", "a.csv", true).unwrap().mime,
            "text/csv"
        );
        assert_eq!(
            detect(b"<!DOCTYPE html><html></html>", "a.html", true)
                .unwrap()
                .mime,
            "text/html"
        );
        assert_eq!(
            detect(b"fn main() {}\n", "main.rs", true).unwrap().mime,
            "text/plain"
        );
        // An executable, a zip, binary junk: refused whatever the name.
        assert!(detect(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0", "a.txt", false).is_none());
        assert!(detect(b"PK\x03\x04\x14\0\0\0\0\0", "a.txt", false).is_none());
        assert!(detect(b"\0\x01\x02\x03", "a.txt", true).is_none());
        // A multi-byte character cut at the end of the head is still text.
        let cut = "héllo".as_bytes();
        assert!(detect(&cut[..2], "a.txt", false).is_some());
        assert!(detect(&cut[..2], "a.txt", true).is_none());
    }
}
