//! A tokenizer for chat text that also keeps code findable.
//!
//! Words are runs of letters, digits and `_`, joined across `.`, `/`, `:`,
//! `-` and `\` when those sit between word characters, so `snake_case`,
//! `parseHttpRequest`, `src/main.rs` and `std::io::Read` each become one
//! token. Such an identifier is emitted whole *and* as its parts (split at
//! separators and camelCase humps) at the same position, so both
//! `parseHttpRequest` and `http` find it. Every token is then lower-cased
//! and stemmed (English), and tokens of 80 bytes or more are dropped.
//!
//! All of that happens in the one token stream, not in a chain of tantivy
//! filters, and stems come from a per-tokenizer cache: chat text is
//! Zipf-distributed, so nearly every word has been stemmed before, and the
//! Snowball stemmer was a quarter of the CPU of a reindex.

use std::borrow::Cow;
use std::hash::Hasher;

use hashbrown::HashTable;
use rust_stemmers::{Algorithm, Stemmer};
use tantivy::tokenizer::{TextAnalyzer, Token, TokenStream, Tokenizer};

pub const NAME: &str = "confab";
/// Tokens this long (bytes) or longer are not indexed: base64, hashes.
const MAX_TOKEN_LEN: usize = 80;
/// The stem cache starts afresh past this many words or bytes of words.
const STEM_CACHE_MAX: usize = 100_000;
const STEM_CACHE_BYTES: usize = 4 << 20;

/// The analyzer used for indexing, queries and snippets alike.
pub fn analyzer() -> TextAnalyzer {
    TextAnalyzer::from(CodeTokenizer::default())
}

fn word_hash(b: &[u8]) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    h.write(b);
    h.finish()
}

/// A word as it was written → its lower-cased stem. Keyed by the written
/// form, a hit costs one hash of the token's bytes, one probe and one copy:
/// no lower-casing and no stemming. Both strings live one after the other
/// in one arena and a table entry is 8 bytes, so the cache of a whole
/// vocabulary stays in the CPU's cache (with `Box<str>` keys and values,
/// every token paid a cache miss or two, and the lookups were a fifth of a
/// reindex's CPU).
struct StemCache {
    stemmer: Stemmer,
    /// (start in `words`, written length, stem length).
    table: HashTable<(u32, u16, u16)>,
    /// Each cached word as written, then its stem.
    words: String,
    scratch: String,
}

impl Default for StemCache {
    fn default() -> Self {
        StemCache {
            stemmer: Stemmer::create(Algorithm::English),
            table: HashTable::new(),
            words: String::new(),
            scratch: String::new(),
        }
    }
}

fn written<'a>(words: &'a str, &(at, len, _): &(u32, u16, u16)) -> &'a [u8] {
    let at = at as usize;
    words
        .as_bytes()
        .get(at..at + usize::from(len))
        .unwrap_or_default()
}

impl StemCache {
    /// Replaces `text` with its lower-cased stem.
    fn apply(&mut self, text: &mut String) {
        let b = text.as_bytes();
        let h = word_hash(b);
        let words = &self.words;
        if let Some(&(at, len, stem_len)) = self.table.find(h, |e| written(words, e) == b) {
            let from = at as usize + usize::from(len);
            if let Some(stem) = words.get(from..from + usize::from(stem_len)) {
                text.clear();
                text.push_str(stem);
                return;
            }
        }
        if self.table.len() >= STEM_CACHE_MAX || self.words.len() >= STEM_CACHE_BYTES {
            self.table.clear();
            self.words.clear();
        }
        let at = self.words.len();
        self.words.push_str(text);
        self.lower_stem(text);
        self.words.push_str(text);
        let (Ok(at), Ok(len), Ok(stem_len)) = (
            u32::try_from(at),
            u16::try_from(self.words.len() - at - text.len()),
            u16::try_from(text.len()),
        ) else {
            return;
        };
        let words = &self.words;
        self.table
            .insert_unique(h, (at, len, stem_len), |e| word_hash(written(words, e)));
    }

    /// Lower-cases and stems `text` in place, without the cache.
    fn lower_stem(&mut self, text: &mut String) {
        if text.is_ascii() {
            text.make_ascii_lowercase();
        } else {
            self.scratch.clear();
            self.scratch
                .extend(text.chars().flat_map(char::to_lowercase));
            std::mem::swap(text, &mut self.scratch);
        }
        if let Cow::Owned(stem) = self.stemmer.stem(text) {
            text.clear();
            text.push_str(&stem);
        }
    }
}

#[derive(Default)]
pub struct CodeTokenizer {
    /// Reused between texts: only the first `len` are the current text's,
    /// the rest keep their allocations for the next one.
    tokens: Vec<Token>,
    stems: StemCache,
}

/// A copy starts with an empty cache (tantivy clones the analyzer for each
/// indexing thread and segment; the cache refills within a few messages).
impl Clone for CodeTokenizer {
    fn clone(&self) -> Self {
        CodeTokenizer::default()
    }
}

pub struct CodeTokenStream<'a> {
    tokens: &'a mut Vec<Token>,
    len: usize,
    next: usize,
}

impl TokenStream for CodeTokenStream<'_> {
    fn advance(&mut self) -> bool {
        if self.next < self.len {
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
        let mut len = 0;
        tokenize_reusing(text, &mut self.tokens, &mut len);
        for t in &mut self.tokens[..len] {
            self.stems.apply(&mut t.text);
        }
        CodeTokenStream {
            tokens: &mut self.tokens,
            len,
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

/// Writes a token at `out[*len]`, reusing that slot's string if there is one.
fn push(
    out: &mut Vec<Token>,
    len: &mut usize,
    text: &str,
    from: usize,
    to: usize,
    position: usize,
) {
    if to - from >= MAX_TOKEN_LEN {
        return;
    }
    if let Some(t) = out.get_mut(*len) {
        t.offset_from = from;
        t.offset_to = to;
        t.position = position;
        t.position_length = 1;
        t.text.clear();
        t.text.push_str(&text[from..to]);
    } else {
        out.push(Token {
            offset_from: from,
            offset_to: to,
            position,
            text: text[from..to].to_string(),
            position_length: 1,
        });
    }
    *len += 1;
}

/// A word that is a single token as it stands, the common case: ASCII
/// letters with at most a leading capital (`word`, `Word`), or digits.
/// [`parts`] would return it whole.
fn is_plain(word: &str) -> bool {
    match word.as_bytes().split_first() {
        Some((f, rest)) if f.is_ascii_alphabetic() => rest.iter().all(u8::is_ascii_lowercase),
        Some((f, rest)) if f.is_ascii_digit() => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// A part of an identifier starts at `c` (after `prev`, before `next`):
/// `aB`, the `R` of `HTTPRequest`, `a1`, `1a`.
fn is_hump(prev: char, c: char, next: Option<char>) -> bool {
    (prev.is_lowercase() && c.is_uppercase())
        || (prev.is_uppercase() && c.is_uppercase() && next.is_some_and(char::is_lowercase))
        || (prev.is_alphabetic() && c.is_numeric())
        || (prev.is_numeric() && c.is_alphabetic())
}

/// Splits an identifier into parts: at non-alphanumerics and camelCase
/// humps (`parseHTTPRequest` → parse, HTTP, Request). Byte ranges.
fn parts(word: &str, base: usize, out: &mut Vec<(usize, usize)>) {
    let mut start: Option<usize> = None;
    let mut prev = '\0';
    let mut it = word.char_indices().peekable();
    while let Some((off, c)) = it.next() {
        if !c.is_alphanumeric() {
            if let Some(s) = start.take() {
                out.push((base + s, base + off));
            }
        } else if let Some(s) = start {
            let next = it.peek().map(|x| x.1);
            if is_hump(prev, c, next) {
                out.push((base + s, base + off));
                start = Some(off);
            }
        } else {
            start = Some(off);
        }
        prev = c;
    }
    if let Some(s) = start {
        out.push((base + s, base + word.len()));
    }
}

/// ASCII bytes that are word characters (letters, digits, `_`).
const fn ascii_word_table() -> [bool; 128] {
    let mut t = [false; 128];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'_';
        b += 1;
    }
    t
}
static ASCII_WORD: [bool; 128] = ascii_word_table();

/// Is there a word character at byte `i` (and how long is it)?
#[inline]
fn word_at(text: &str, i: usize) -> Option<usize> {
    let b = *text.as_bytes().get(i)?;
    if b < 0x80 {
        return ASCII_WORD[b as usize].then_some(1);
    }
    let c = text[i..].chars().next()?;
    is_word(c).then(|| c.len_utf8())
}

/// Writes the tokens of `text` from `out[*len]` on, reusing the slots
/// already there; `*len` ends past the last one. Works on bytes (ASCII is
/// looked up in a table; other characters are decoded one by one).
fn tokenize_reusing(text: &str, out: &mut Vec<Token>, len: &mut usize) {
    let bytes = text.as_bytes();
    let n = bytes.len();
    let mut position = 0;
    let mut pieces = Vec::new();
    let mut i = 0;
    while i < n {
        let Some(w) = word_at(text, i) else {
            // Skip one character (a whole UTF-8 sequence).
            i += 1;
            while i < n && (bytes[i] & 0xC0) == 0x80 {
                i += 1;
            }
            continue;
        };
        let start = i;
        i += w;
        loop {
            // The common case first: a run of ASCII word bytes.
            while i < n && bytes[i] < 0x80 && ASCII_WORD[bytes[i] as usize] {
                i += 1;
            }
            if let Some(w) = word_at(text, i) {
                i += w;
                continue;
            }
            // Join across one or two joiners (`.`, `::`) only when a word
            // character follows them.
            let mut j = i;
            while j < n && j - i < 2 && is_joiner(bytes[j] as char) {
                j += 1;
            }
            if j > i && word_at(text, j).is_some() {
                i = j;
                continue;
            }
            break;
        }
        emit_word(text, start, i, position, out, len, &mut pieces);
        position += 1;
    }
}

/// Writes the tokens of the word `text[start..end]` at `position`: the word
/// itself if it is plain, else the whole identifier and its parts.
fn emit_word(
    text: &str,
    start: usize,
    end: usize,
    position: usize,
    out: &mut Vec<Token>,
    len: &mut usize,
    pieces: &mut Vec<(usize, usize)>,
) {
    let word = &text[start..end];
    if is_plain(word) {
        push(out, len, text, start, end, position);
        return;
    }
    pieces.clear();
    parts(word, start, pieces);
    if pieces.len() > 1 {
        push(out, len, text, start, end, position);
        for &(a, b) in pieces.iter() {
            push(out, len, text, a, b, position);
        }
    } else if let Some(&(a, b)) = pieces.first() {
        push(out, len, text, a, b, position);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits an identifier into parts: at non-alphanumerics and camelCase
    /// humps (`parseHTTPRequest` → parse, HTTP, Request). Byte ranges.
    fn parts_reference(word: &str, base: usize, out: &mut Vec<(usize, usize)>) {
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
                if is_hump(prev, c, next) {
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

    /// The char-by-char tokenizer the byte one replaced, as the oracle.
    fn tokenize_reference(text: &str, out: &mut Vec<Token>, len: &mut usize) {
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
            emit_word(text, start, end, position, out, len, &mut pieces);
            position += 1;
        }
    }

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

    /// The cache answers exactly what lower-casing and the stemmer do: on a
    /// miss, on a hit, for one word in several cases, for stems that are not
    /// a prefix of their word, for long words, for non-ASCII words, and after
    /// it starts afresh.
    #[test]
    fn stem_cache_gives_the_stemmers_stems() {
        let stemmer = Stemmer::create(Algorithm::English);
        let expect = |w: &str| stemmer.stem(&w.to_lowercase()).into_owned();
        let mut cache = StemCache::default();
        let mut check = |w: &str| {
            let mut t = w.to_string();
            cache.apply(&mut t);
            assert_eq!(t, expect(w), "{w}");
        };
        let fixed = [
            "Running",
            "happy",
            "HAPPY",
            "ponies",
            "generational",
            "yes",
            "Yelling",
            "sky",
            "the",
            "a",
            "42",
            "x1",
            "Crème",
            "brûlées",
            "ÉCOLES",
            "日本語",
            "internationalizations",
            "antidisestablishmentarianism",
            "supercalifragilisticexpialidocious",
            "réinternationalisations",
        ];
        for _ in 0..2 {
            for w in fixed {
                check(w);
            }
        }
        // More distinct words than the cache holds, twice: it starts afresh
        // on the way and still answers right.
        let suffixes = ["", "s", "ing", "ed", "y", "ies", "ational", "ness", "fully"];
        let words: Vec<String> = (0..STEM_CACHE_MAX / suffixes.len() + 2_000)
            .flat_map(|i| {
                let base: String = format!("{i:x}")
                    .chars()
                    .map(|c| (b'g' + (c as u8 % 16)) as char)
                    .collect();
                suffixes.iter().map(move |s| format!("{base}{s}"))
            })
            .collect();
        assert!(words.len() > STEM_CACHE_MAX);
        for w in words.iter().chain(words.iter().take(5_000)) {
            check(w);
        }
        assert!(cache.table.len() <= STEM_CACHE_MAX);
        assert!(cache.words.len() <= STEM_CACHE_BYTES + 2 * MAX_TOKEN_LEN * 4);
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
    fn plain_words_are_what_parts_would_give() {
        for w in [
            "word",
            "Word",
            "a",
            "I",
            "42",
            "x1",
            "HTTP",
            "wOrd",
            "snake_case",
            "é",
        ] {
            let mut p = Vec::new();
            parts(w, 0, &mut p);
            if is_plain(w) {
                assert_eq!(p, vec![(0, w.len())], "{w}");
            }
        }
        assert!(is_plain("Word") && is_plain("42") && !is_plain("HTTP") && !is_plain("x1"));
    }

    #[test]
    fn reused_tokens_do_not_leak_between_texts() {
        let mut a = analyzer();
        let long: Vec<String> = {
            let mut s = a.token_stream("parseHttpRequest running fast");
            let mut v = Vec::new();
            while s.advance() {
                v.push(s.token().text.clone());
            }
            v
        };
        assert!(long.len() >= 5);
        let mut s = a.token_stream("dog");
        let mut v = Vec::new();
        while s.advance() {
            v.push((
                s.token().text.clone(),
                s.token().offset_from,
                s.token().offset_to,
            ));
        }
        assert_eq!(v, vec![("dog".to_string(), 0, 3)]);
    }

    #[test]
    fn unicode_text() {
        let t = toks("Crème brûlée — 日本語 テキスト");
        assert!(t.len() >= 3);
    }

    #[test]
    fn byte_tokenizer_matches_the_char_tokenizer() {
        let alphabet: Vec<char> = "aZ_9 .:/-\\,!(é日ß\u{1F600}\u{300}Xx1 \n\t::..--//"
            .chars()
            .collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let fixed = [
            "parseHttpRequest src/main.rs std::io::Read a..b a...b x:::y end. -start path/ é-é",
            "snake_case_name HTTPServer2Go v1.2.3 ../x ::y z:: __init__ 日本語テキスト",
        ];
        let mut cases: Vec<String> = fixed.iter().map(|s| s.to_string()).collect();
        for _ in 0..3000 {
            let len = (next() % 40) as usize;
            cases.push(
                (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect(),
            );
        }
        for text in &cases {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let (mut la, mut lb) = (0, 0);
            tokenize_reusing(text, &mut a, &mut la);
            tokenize_reference(text, &mut b, &mut lb);
            let view = |v: &[Token]| {
                v.iter()
                    .map(|t| (t.text.clone(), t.offset_from, t.offset_to, t.position))
                    .collect::<Vec<_>>()
            };
            assert_eq!(view(&a[..la]), view(&b[..lb]), "{text:?}");
            let (mut pa, mut pb) = (Vec::new(), Vec::new());
            parts(text, 3, &mut pa);
            parts_reference(text, 3, &mut pb);
            assert_eq!(pa, pb, "{text:?}");
        }
    }
}
