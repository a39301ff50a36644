//! Plain-text snippets with match ranges. Computed from the one message's
//! own text and the query's terms only — never from index-wide statistics,
//! which would let other users' data influence what a caller sees.

use serde::Serialize;
use std::collections::HashSet;
use tantivy::tokenizer::TextAnalyzer;

pub const SNIPPET_CHARS: usize = 180;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Snippet {
    /// Plain text (never HTML); "…" marks cut ends.
    pub text: String,
    /// Matches in `text` as `[start, end)` offsets in UTF-16 code units, the
    /// unit of JavaScript strings.
    pub highlights: Vec<[usize; 2]>,
}

fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i.min(s.len())
}

/// Finds the window of `text` with the most matching tokens and returns it
/// with the matches' ranges.
pub fn make(
    analyzer: &mut TextAnalyzer,
    text: &str,
    terms: &HashSet<String>,
    prefixes: &[String],
) -> Snippet {
    let mut matches: Vec<(usize, usize)> = Vec::new();
    {
        let mut stream = analyzer.token_stream(text);
        while stream.advance() {
            let t = stream.token();
            let hit =
                terms.contains(&t.text) || prefixes.iter().any(|p| t.text.starts_with(p.as_str()));
            if hit && matches.last() != Some(&(t.offset_from, t.offset_to)) {
                matches.push((t.offset_from, t.offset_to));
            }
        }
    }
    // Identifier parts overlap their whole identifier; keep the outermost.
    matches.sort_by_key(|&(a, b)| (a, std::cmp::Reverse(b)));
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for m in matches {
        match merged.last() {
            Some(&(_, e)) if m.0 < e => {}
            _ => merged.push(m),
        }
    }
    // Approximate the window in bytes (4 bytes per char at most is too
    // generous for ASCII, so use chars via char_indices below).
    let window_bytes = |start: usize| -> usize {
        let mut end = start;
        for (n, (i, c)) in text[start..].char_indices().enumerate() {
            if n >= SNIPPET_CHARS {
                break;
            }
            end = start + i + c.len_utf8();
        }
        end
    };
    let (start, end) = if merged.is_empty() {
        (0, window_bytes(0))
    } else {
        let mut best = (0usize, merged[0].0);
        for (i, &(s, _)) in merged.iter().enumerate() {
            let lead = floor_char(text, s.saturating_sub(40));
            let end = window_bytes(lead);
            let count = merged[i..].iter().take_while(|m| m.1 <= end).count();
            if count > best.0 {
                best = (count, lead);
            }
        }
        // Start at a word boundary when the window does not start the text.
        let mut lead = best.1;
        if lead > 0
            && let Some(sp) = text[lead..].find(char::is_whitespace)
            && lead + sp
                < merged
                    .iter()
                    .find(|m| m.0 >= lead)
                    .map(|m| m.0)
                    .unwrap_or(lead)
        {
            lead = ceil_char(text, lead + sp + 1);
        }
        (lead, window_bytes(lead))
    };
    let prefix = if start > 0 { "…" } else { "" };
    let suffix = if end < text.len() { "…" } else { "" };
    let body = &text[start..end];
    let base16 = utf16_len(prefix);
    let highlights = merged
        .iter()
        .filter(|&&(a, b)| a >= start && b <= end)
        .map(|&(a, b)| {
            let s = base16 + utf16_len(&text[start..a]);
            [s, s + utf16_len(&text[a..b])]
        })
        .collect();
    Snippet {
        text: format!("{prefix}{}{suffix}", body.trim_end()).replace(['\n', '\r'], " "),
        highlights,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snip(text: &str, words: &[&str]) -> Snippet {
        let mut a = super::super::tokenizer::analyzer();
        let mut terms = HashSet::new();
        for w in words {
            let mut s = a.token_stream(w);
            while s.advance() {
                terms.insert(s.token().text.clone());
            }
        }
        make(&mut a, text, &terms, &[])
    }

    fn highlighted(s: &Snippet) -> Vec<String> {
        let u: Vec<u16> = s.text.encode_utf16().collect();
        s.highlights
            .iter()
            .map(|[a, b]| String::from_utf16(&u[*a..*b]).unwrap())
            .collect()
    }

    #[test]
    fn highlights_stemmed_matches_in_a_window() {
        let text = format!(
            "{} The dogs were running in the park. {}",
            "filler ".repeat(60),
            "tail ".repeat(60)
        );
        let s = snip(&text, &["run", "dog"]);
        assert!(s.text.starts_with('…') && s.text.ends_with('…'));
        assert_eq!(highlighted(&s), vec!["dogs", "running"]);
        assert!(s.text.chars().count() <= SNIPPET_CHARS + 2);
    }

    #[test]
    fn utf16_offsets_with_emoji_and_accents() {
        let s = snip("🦀 café crème: the crab likes café", &["café"]);
        assert_eq!(highlighted(&s), vec!["café", "café"]);
        assert!(!s.text.contains('<'));
    }

    #[test]
    fn no_match_gives_the_start() {
        let s = snip("hello world", &["absent"]);
        assert_eq!(s.text, "hello world");
        assert!(s.highlights.is_empty());
    }
}
