//! HTML to text: the words a reader sees, one block per paragraph-like
//! element under its nearest heading; no scripts, styles or markup. The
//! tokenizer (html5gum, WHATWG-conformant) decodes character references
//! and treats script and style contents as raw text.

use html5gum::{DefaultEmitter, Token, Tokenizer};

use super::{Block, Budget, DocKind, Extracted, Limits, Loc};

/// Elements whose contents are never shown as text.
const HIDDEN: &[&[u8]] = &[
    b"script",
    b"style",
    b"noscript",
    b"template",
    b"head",
    b"svg",
    b"math",
    b"iframe",
    b"object",
    b"select",
];

/// Elements that end a paragraph.
const BLOCKS: &[&[u8]] = &[
    b"p",
    b"div",
    b"br",
    b"li",
    b"tr",
    b"td",
    b"th",
    b"section",
    b"article",
    b"header",
    b"footer",
    b"main",
    b"aside",
    b"nav",
    b"pre",
    b"blockquote",
    b"table",
    b"ul",
    b"ol",
    b"dl",
    b"dt",
    b"dd",
    b"figure",
    b"figcaption",
    b"hr",
    b"form",
    b"fieldset",
    b"address",
    b"details",
    b"summary",
    b"caption",
    b"body",
    b"html",
    b"title",
];

fn heading_level(name: &[u8]) -> Option<u8> {
    match name {
        [b'h', d @ b'1'..=b'6'] => Some(d - b'0'),
        _ => None,
    }
}

struct Builder {
    blocks: Vec<Block>,
    current: String,
    heading: Option<String>,
    in_heading: bool,
    budget: Budget,
    full: bool,
}

impl Builder {
    fn end_block(&mut self) {
        let text = collapse(&self.current);
        self.current.clear();
        if text.is_empty() || self.full {
            return;
        }
        if self.in_heading {
            self.heading = Some(text.chars().take(200).collect());
        }
        let Some(text) = self.budget.take(text) else {
            self.full = true;
            return;
        };
        self.blocks.push(Block {
            text,
            at: Loc::Paragraph {
                index: self.blocks.len() as u32 + 1,
                heading: self.heading.clone(),
            },
        });
    }
}

/// Runs of whitespace as one space, trimmed.
fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub fn extract(html: &str, limits: &Limits) -> Extracted {
    let mut emitter = DefaultEmitter::default();
    emitter.naively_switch_states(true);
    let mut b = Builder {
        blocks: Vec::new(),
        current: String::new(),
        heading: None,
        in_heading: false,
        budget: Budget::new(limits),
        full: false,
    };
    // How many hidden elements are open (they may nest, e.g. svg in svg).
    let mut hidden = 0usize;
    for token in Tokenizer::new_with_emitter(html, emitter).flatten() {
        if b.full {
            break;
        }
        match token {
            Token::StartTag(t) => {
                let name = t.name.as_slice();
                if HIDDEN.contains(&name) {
                    if !t.self_closing {
                        hidden += 1;
                    }
                } else if let Some(_level) = heading_level(name) {
                    b.end_block();
                    b.in_heading = true;
                } else if BLOCKS.contains(&name) {
                    b.end_block();
                } else if name == b"img"
                    && hidden == 0
                    && let Some(alt) = t.attributes.get(b"alt".as_slice())
                {
                    b.current.push(' ');
                    b.current.push_str(&String::from_utf8_lossy(&alt.value));
                    b.current.push(' ');
                }
            }
            Token::EndTag(t) => {
                let name = t.name.as_slice();
                if HIDDEN.contains(&name) {
                    hidden = hidden.saturating_sub(1);
                } else if heading_level(name).is_some() {
                    b.end_block();
                    b.in_heading = false;
                } else if BLOCKS.contains(&name) {
                    b.end_block();
                } else {
                    // Inline elements separate words only where the source does.
                }
            }
            Token::String(s) if hidden == 0 => {
                b.current.push_str(&String::from_utf8_lossy(&s.value));
            }
            _ => {}
        }
    }
    b.end_block();
    Extracted {
        kind: DocKind::Html,
        pages: None,
        truncated: b.budget.truncated.then(|| {
            format!(
                "only the first {} MB of text were read",
                limits.max_text_bytes / (1024 * 1024)
            )
        }),
        blocks: b.blocks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_only_with_headings() {
        let html = r#"<!doctype html><html><head><title>T</title>
            <style>p { color: red }</style><script>var x = "<p>not text</p>";</script></head>
            <body><h1>Intro &amp; scope</h1><p>First <b>bold</b> words.</p>
            <noscript>enable js</noscript><div>Second<br>line</div>
            <h2>Details</h2><ul><li>one</li><li>two</li></ul><img alt="a chart"></body></html>"#;
        let e = extract(html, &Limits::default());
        let texts: Vec<&str> = e.blocks.iter().map(|b| b.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "Intro & scope",
                "First bold words.",
                "Second",
                "line",
                "Details",
                "one",
                "two",
                "a chart"
            ]
        );
        assert!(
            !texts
                .iter()
                .any(|t| t.contains("color") || t.contains("not text") || t.contains("enable"))
        );
        match &e.blocks[1].at {
            Loc::Paragraph { index, heading } => {
                assert_eq!(*index, 2);
                assert_eq!(heading.as_deref(), Some("Intro & scope"));
            }
            other => panic!("{other:?}"),
        }
        match &e.blocks[5].at {
            Loc::Paragraph { heading, .. } => assert_eq!(heading.as_deref(), Some("Details")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn broken_markup_still_gives_text() {
        let e = extract("<p>open <b>never closed <script>x", &Limits::default());
        assert_eq!(e.blocks[0].text, "open never closed");
    }
}
