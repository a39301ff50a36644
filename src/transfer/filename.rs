//! Download file names made from a conversation title (RFC 6266).

/// `Content-Disposition: attachment` with an ASCII-safe `filename` and the
/// exact title in `filename*`.
pub fn content_disposition(title: &str, fallback: &str, ext: &str) -> String {
    let ascii = ascii_file_stem(title, fallback);
    let utf8 = utf8_file_stem(title, fallback);
    format!(
        "attachment; filename=\"{ascii}.{ext}\"; filename*=UTF-8''{}.{ext}",
        percent_encode(&utf8)
    )
}

/// A file name made of the title's ASCII letters, digits, spaces and `-_.()`
/// (anything else becomes `_`), at most 80 characters, never starting with
/// a dot; `fallback` when nothing readable is left.
pub fn ascii_file_stem(title: &str, fallback: &str) -> String {
    let mut out = String::new();
    for ch in title.chars() {
        let c = if ch.is_ascii_alphanumeric() || matches!(ch, ' ' | '-' | '_' | '.' | '(' | ')') {
            ch
        } else {
            '_'
        };
        // No runs of replacement characters.
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    let out: String = out
        .trim_matches(|c: char| c == ' ' || c == '.' || c == '_')
        .chars()
        .take(80)
        .collect();
    let out = out.trim_end_matches([' ', '.']).to_string();
    if out.chars().any(|c| c.is_ascii_alphanumeric()) {
        out
    } else {
        fallback.to_string()
    }
}

/// The title with path separators, quotes and control characters replaced,
/// at most 80 characters.
pub fn utf8_file_stem(title: &str, fallback: &str) -> String {
    let out: String = title
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let out: String = out
        .trim_matches(|c: char| c.is_whitespace() || c == '.')
        .chars()
        .take(80)
        .collect();
    if out.trim().is_empty() {
        fallback.to_string()
    } else {
        out
    }
}

/// RFC 5987 `attr-char` encoding.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
