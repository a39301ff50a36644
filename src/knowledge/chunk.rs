//! Splitting a document's text into overlapping chunks of about
//! [`CHUNK_TOKENS`] tokens (estimated as the chat context is, about four
//! characters a token), at line, then sentence, then word boundaries, and
//! never inside a UTF-8 character. Each chunk keeps the pages, lines or
//! paragraphs it spans.

use crate::store::knowledge::ChunkSpan;

use super::extract::{Block, Extracted, Loc};

/// Target size of a chunk.
pub const CHUNK_TOKENS: usize = 350;
/// How much of the end of a chunk the next one repeats, so a fact cut at a
/// boundary is whole in one of them.
pub const OVERLAP_TOKENS: usize = 50;
const CHARS_PER_TOKEN: usize = 4;

/// A chunk before it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub text: String,
    pub span: ChunkSpan,
}

/// A run of text inside one block.
struct Part<'a> {
    text: &'a str,
    block: usize,
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Cuts `text` into parts of at most `max` characters: at line ends, then
/// sentence ends, then spaces, then anywhere (at a character boundary).
fn split<'a>(text: &'a str, max: usize, out: &mut Vec<&'a str>) {
    for line in text.split_inclusive('\n') {
        if chars(line) <= max {
            out.push(line);
            continue;
        }
        let mut rest = line;
        while chars(rest) > max {
            // Byte index of the max-th character.
            let limit = rest
                .char_indices()
                .nth(max)
                .map(|(i, _)| i)
                .unwrap_or(rest.len());
            let window = &rest[..limit];
            let cut = window
                .rfind(". ")
                .map(|i| i + 2)
                .filter(|&i| i > limit / 2)
                .or_else(|| {
                    window
                        .rfind(char::is_whitespace)
                        .map(|i| i + 1)
                        .filter(|&i| i > limit / 4)
                })
                .unwrap_or(limit);
            // rfind gives char boundaries; `+1`/`+2` skip ASCII characters.
            out.push(&rest[..cut]);
            rest = &rest[cut..];
        }
        if !rest.is_empty() {
            out.push(rest);
        }
    }
}

fn span_of(blocks: &[Block], parts: &[Part<'_>]) -> ChunkSpan {
    let mut span = ChunkSpan::default();
    let widen = |lo: &mut Option<u32>, hi: &mut Option<u32>, v: u32| {
        *lo = Some(lo.map_or(v, |l| l.min(v)));
        *hi = Some(hi.map_or(v, |h| h.max(v)));
    };
    for p in parts {
        match &blocks[p.block].at {
            Loc::Page(n) => widen(&mut span.page_start, &mut span.page_end, *n),
            Loc::Line(n) => widen(&mut span.line_start, &mut span.line_end, *n),
            Loc::Paragraph { index, heading } => {
                if span.paragraph_start.is_none() {
                    span.heading = heading.clone();
                }
                widen(&mut span.paragraph_start, &mut span.paragraph_end, *index)
            }
        }
    }
    span
}

fn text_of(parts: &[Part<'_>]) -> String {
    let mut s = String::new();
    let mut last_block = None;
    for p in parts {
        if last_block.is_some_and(|b| b != p.block) {
            // A new block (page, paragraph, line) starts on its own line.
            if !s.ends_with('\n') {
                s.push('\n');
            }
        }
        s.push_str(p.text);
        last_block = Some(p.block);
    }
    s.trim().to_string()
}

/// The chunks of a document, in order.
pub fn chunk(doc: &Extracted) -> Vec<Piece> {
    chunk_with(doc, CHUNK_TOKENS, OVERLAP_TOKENS)
}

pub fn chunk_with(doc: &Extracted, tokens: usize, overlap: usize) -> Vec<Piece> {
    let max = tokens * CHARS_PER_TOKEN;
    let keep = overlap * CHARS_PER_TOKEN;
    let mut parts: Vec<Part<'_>> = Vec::new();
    for (i, b) in doc.blocks.iter().enumerate() {
        let mut texts = Vec::new();
        split(&b.text, max, &mut texts);
        for t in texts {
            parts.push(Part { text: t, block: i });
        }
    }
    let mut out = Vec::new();
    let mut current: Vec<Part<'_>> = Vec::new();
    let mut size = 0usize;
    // Index in `current` where the parts not yet emitted begin (after an
    // overlap carried over).
    let mut fresh = 0usize;
    for p in parts {
        let c = chars(p.text) + 1;
        if size + c > max && current.len() > fresh {
            out.push(Piece {
                text: text_of(&current),
                span: span_of(&doc.blocks, &current),
            });
            // Carry the tail (at most `keep` characters, whole parts).
            let mut tail = 0;
            let mut from = current.len();
            while from > 0 && tail + chars(current[from - 1].text) < keep {
                from -= 1;
                tail += chars(current[from].text) + 1;
            }
            // Never carry everything: the next chunk must move forward.
            if from == 0 {
                from = current.len();
                tail = 0;
            }
            current.drain(..from);
            fresh = current.len();
            size = tail;
        }
        size += c;
        current.push(p);
    }
    if current.len() > fresh {
        out.push(Piece {
            text: text_of(&current),
            span: span_of(&doc.blocks, &current),
        });
    }
    out.retain(|p| !p.text.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knowledge::extract::{DocKind, Extracted};

    fn doc(blocks: Vec<(String, Loc)>) -> Extracted {
        Extracted {
            kind: DocKind::Text,
            blocks: blocks
                .into_iter()
                .map(|(text, at)| Block { text, at })
                .collect(),
            pages: None,
            truncated: None,
        }
    }

    #[test]
    fn small_documents_are_one_chunk() {
        let d = doc(vec![
            ("hello".into(), Loc::Line(1)),
            ("world".into(), Loc::Line(2)),
        ]);
        let c = chunk(&d);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].text, "hello\nworld");
        assert_eq!(
            (c[0].span.line_start, c[0].span.line_end),
            (Some(1), Some(2))
        );
    }

    #[test]
    fn chunks_overlap_and_cover_everything() {
        let lines: Vec<(String, Loc)> = (1..=400)
            .map(|i| {
                (
                    format!("line {i} says something about item {i}."),
                    Loc::Line(i),
                )
            })
            .collect();
        let c = chunk_with(&doc(lines), 100, 20);
        assert!(c.len() > 10, "{}", c.len());
        for p in &c {
            assert!(p.text.chars().count() <= 100 * 4 + 40, "{}", p.text.len());
        }
        for w in c.windows(2) {
            // Each chunk starts at or before the line after the previous end.
            assert!(w[1].span.line_start.unwrap() <= w[0].span.line_end.unwrap());
            assert!(w[1].span.line_end > w[0].span.line_end);
        }
        for i in 1..=400 {
            let needle = format!("line {i} says");
            assert!(c.iter().any(|p| p.text.contains(&needle)), "{i}");
        }
        assert_eq!(c.last().unwrap().span.line_end, Some(400));
    }

    #[test]
    fn long_lines_split_without_breaking_characters() {
        let text = "é".repeat(5000) + " and then words. " + &"ü".repeat(3000);
        let d = doc(vec![(text.clone(), Loc::Page(3))]);
        let c = chunk_with(&d, 100, 10);
        assert!(c.len() > 10);
        assert!(
            c.iter()
                .all(|p| p.span.page_start == Some(3) && p.span.page_end == Some(3))
        );
        let joined: usize = c.iter().map(|p| p.text.chars().count()).sum();
        assert!(joined >= text.chars().count() - 10);
    }

    #[test]
    fn pages_and_headings() {
        let d = doc(vec![
            ("a ".repeat(300), Loc::Page(1)),
            ("b ".repeat(300), Loc::Page(2)),
            (
                "para".into(),
                Loc::Paragraph {
                    index: 1,
                    heading: Some("Intro".into()),
                },
            ),
        ]);
        let c = chunk_with(&d, 200, 0);
        assert_eq!(c[0].span.page_start, Some(1));
        let last = c.last().unwrap();
        assert_eq!(last.span.heading.as_deref(), Some("Intro"));
    }
}
