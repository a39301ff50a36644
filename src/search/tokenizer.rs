//! A tokenizer for chat text that also keeps code findable.
//!
//! Words are runs of letters, digits and `_`, joined across `.`, `/`, `:`,
//! `-` and `\` when those sit between word characters, so `snake_case`,
//! `parseHttpRequest`, `src/main.rs` and `std::io::Read` each become one
//! token. Such an identifier is emitted whole *and* as its parts (split at
//! separators and camelCase humps) at the same position, so both
//! `parseHttpRequest` and `http` find it. Lower-casing and English stemming
//! follow as filters (see [`analyzer`]).

use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, Stemmer, TextAnalyzer, Token, TokenStream, Tokenizer,
};

pub const NAME: &str = "confab";

/// The analyzer used for indexing, queries and snippets alike.
pub fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(CodeTokenizer::default())
        .filter(RemoveLongFilter::limit(80))
        .filter(LowerCaser)
        .filter(Stemmer::new(Language::English))
        .build()
}

#[derive(Clone, Default)]
pub struct CodeTokenizer {
    tokens: Vec<Token>,
}

pub struct CodeTokenStream<'a> {
    tokens: &'a mut Vec<Token>,
    next: usize,
}

impl TokenStream for CodeTokenStream<'_> {
    fn advance(&mut self) -> bool {
        if self.next < self.tokens.len() {
            self.next += 1;
            true
        } else {
            false
        }
    }
    fn token(&self) -> &Token {
        &self.tokens[self.next - 1]
    }
    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.next - 1]
    }
}

impl Tokenizer for CodeTokenizer {
    type TokenStream<'a> = CodeTokenStream<'a>;
    fn token_stream<'a>(&'a mut self, text: &'a str) -> CodeTokenStream<'a> {
        self.tokens.clear();
        tokenize(text, &mut self.tokens);
        CodeTokenStream {
            tokens: &mut self.tokens,
            next: 0,
        }
    }
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn is_joiner(c: char) -> bool {
    matches!(c, '.' | '/' | ':' | '-' | '\\')
}

fn push(out: &mut Vec<Token>, text: &str, from: usize, to: usize, position: usize) {
    out.push(Token {
        offset_from: from,
        offset_to: to,
        position,
        text: text[from..to].to_string(),
        position_length: 1,
    });
}

/// Splits an identifier into parts: at non-alphanumerics and camelCase
/// humps (`parseHTTPRequest` → parse, HTTP, Request). Byte ranges.
fn parts(word: &str, base: usize, out: &mut Vec<(usize, usize)>) {
    let chars: Vec<(usize, char)> = word.char_indices().collect();
    let mut start: Option<usize> = None;
    for (i, &(off, c)) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if let Some(s) = start.take() {
                out.push((base + s, base + off));
            }
            continue;
        }
        if let Some(s) = start {
            let prev = chars[i - 1].1;
            let next = chars.get(i + 1).map(|x| x.1);
            let hump = (prev.is_lowercase() && c.is_uppercase())
                || (prev.is_uppercase()
                    && c.is_uppercase()
                    && next.is_some_and(char::is_lowercase))
                || (prev.is_alphabetic() && c.is_numeric())
                || (prev.is_numeric() && c.is_alphabetic());
            if hump {
                out.push((base + s, base + off));
                start = Some(off);
            }
        } else {
            start = Some(off);
        }
    }
    if let Some(s) = start {
        out.push((base + s, base + word.len()));
    }
}

pub fn tokenize(text: &str, out: &mut Vec<Token>) {
    let mut position = 0;
    let mut iter = text.char_indices().peekable();
    let mut pieces = Vec::new();
    while let Some((start, c)) = iter.next() {
        if !is_word(c) {
            continue;
        }
        let mut end = start + c.len_utf8();
        while let Some(&(i, c)) = iter.peek() {
            if is_word(c) {
                end = i + c.len_utf8();
                iter.next();
            } else if is_joiner(c) {
                // Join across one or two joiners (`.`, `::`) only when a
                // word character follows them.
                let mut look = iter.clone();
                let mut n = 0;
                while let Some(&(_, j)) = look.peek() {
                    if is_joiner(j) && n < 2 {
                        look.next();
                        n += 1;
                    } else {
                        break;
                    }
                }
                match look.peek() {
                    Some(&(_, w)) if is_word(w) => {
                        for _ in 0..n {
                            iter.next();
                        }
                    }
                    _ => break,
                }
            } else {
                break;
            }
        }
        let word = &text[start..end];
        pieces.clear();
        parts(word, start, &mut pieces);
        if pieces.len() > 1 {
            push(out, text, start, end, position);
            for &(a, b) in &pieces {
                push(out, text, a, b, position);
            }
        } else if let Some(&(a, b)) = pieces.first() {
            push(out, text, a, b, position);
        }
        position += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<(String, usize)> {
        let mut a = analyzer();
        let mut s = a.token_stream(text);
        let mut v = Vec::new();
        while s.advance() {
            v.push((s.token().text.clone(), s.token().position));
        }
        v
    }

    #[test]
    fn words_are_stemmed_and_lowercased() {
        let t = toks("Running dogs, quickly!");
        assert_eq!(
            t,
            vec![("run".into(), 0), ("dog".into(), 1), ("quick".into(), 2)]
        );
    }

    #[test]
    fn identifiers_are_kept_whole_and_split() {
        let t = toks("call parseHttpRequest in src/main.rs with my_var_name");
        let texts: Vec<&str> = t.iter().map(|x| x.0.as_str()).collect();
        assert!(texts.contains(&"parsehttprequest"));
        assert!(texts.contains(&"pars") || texts.contains(&"parse"));
        assert!(texts.contains(&"http"));
        assert!(texts.contains(&"src/main.r") || texts.contains(&"src/main.rs"));
        assert!(texts.contains(&"main"));
        assert!(texts.contains(&"my_var_nam") || texts.contains(&"my_var_name"));
        assert!(texts.contains(&"var"));
        // Parts share the identifier's position; the next word moves on.
        let pos_of = |w: &str| t.iter().find(|x| x.0 == w).unwrap().1;
        assert_eq!(pos_of("http"), pos_of("parsehttprequest"));
        assert_eq!(pos_of("with"), pos_of("http") + 3);
    }

    #[test]
    fn punctuation_is_not_joined_at_word_edges() {
        let t = toks("end. -start path/ x::y");
        let texts: Vec<&str> = t.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(texts[0], "end");
        assert_eq!(texts[1], "start");
        assert_eq!(texts[2], "path");
        assert!(texts.iter().any(|t| t.starts_with("x::")), "{texts:?}");
    }

    #[test]
    fn unicode_text() {
        let t = toks("Crème brûlée — 日本語 テキスト");
        assert!(t.len() >= 3);
    }
}
