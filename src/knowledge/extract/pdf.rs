//! PDF text per page, with `pdf-extract` (text placement, font encodings,
//! ToUnicode maps) over `lopdf`, and `lopdf`'s own simpler reader for a
//! page the first one fails on.
//!
//! Neither library bounds what it inflates, and `pdf-extract` recurses
//! without a limit through form XObjects and the page tree's `Parent`
//! links. So before either sees the file:
//! - [`scan`] inflates every Flate stream it finds in the raw bytes (and
//!   streams nested in those, as a chain of filters would), counting and
//!   discarding the output, and refuses the file when the total passes
//!   `max_inflated_bytes`. It also refuses LZW and ASCII85 streams, the two
//!   other filters `lopdf` decodes without a bound (names are decoded, so
//!   `/LZW#44ecode` is caught too).
//! - after loading, [`check_structure`] refuses `Parent` chains that loop or
//!   run deeper than [`MAX_DEPTH`], and form XObjects that draw themselves
//!   (directly or through others) or nest deeper than [`MAX_DEPTH`].
//!
//! Pages past `max_pages` and text past `max_text_bytes` are left out, and
//! the deadline is checked between pages.

use flate2::read::{DeflateDecoder, ZlibDecoder};
use lopdf::{Dictionary, Document, Object, ObjectId};
use std::collections::HashSet;
use std::io::Read;
use std::time::Instant;

use super::{Block, Budget, DocKind, ExtractError, Extracted, Limits, Loc, find};

/// How deep `Parent` chains and form XObjects may nest.
pub const MAX_DEPTH: usize = 32;
/// Streams in one file.
const MAX_STREAMS: usize = 200_000;
/// Flate layers of one stream the scan follows (a filter chain may repeat
/// FlateDecode; `lopdf` would inflate each).
const MAX_LAYERS: usize = 4;

fn unreadable(why: impl std::fmt::Display) -> ExtractError {
    ExtractError::Unreadable("PDF", why.to_string())
}

pub fn extract(
    bytes: &[u8],
    limits: &Limits,
    deadline: Instant,
) -> Result<Extracted, ExtractError> {
    if find(&bytes[..bytes.len().min(1024)], b"%PDF-").is_none() {
        return Err(unreadable("it does not start like a PDF"));
    }
    scan(bytes, limits)?;
    let mut doc = Document::load_mem(bytes).map_err(unreadable)?;
    if doc.is_encrypted() {
        // Many PDFs are "encrypted" with an empty password only to set
        // permissions; those open. Others need the password.
        doc.decrypt("").map_err(|_| ExtractError::Encrypted)?;
    }
    let pages = doc.get_pages();
    if pages.is_empty() {
        return Err(unreadable("it has no pages"));
    }
    check_structure(&doc, &pages)?;
    let total = pages.len() as u32;
    let mut budget = Budget::new(limits);
    let mut blocks = Vec::new();
    let mut truncated = None;
    for &n in pages.keys() {
        if n > limits.max_pages {
            truncated = Some(format!(
                "only the first {} of {total} pages were read",
                limits.max_pages
            ));
            break;
        }
        if Instant::now() > deadline {
            truncated = Some(format!(
                "only the first {} of {total} pages were read in the {} seconds allowed",
                n - 1,
                limits.max_time.as_secs()
            ));
            break;
        }
        let text = page_text(&doc, n);
        let Some(text) = budget.take(tidy(&text)) else {
            break;
        };
        blocks.push(Block {
            text,
            at: Loc::Page(n),
        });
    }
    if budget.truncated && truncated.is_none() {
        truncated = Some(format!(
            "only the first {} MB of text were read",
            limits.max_text_bytes / (1024 * 1024)
        ));
    }
    Ok(Extracted {
        kind: DocKind::Pdf,
        blocks,
        pages: Some(total),
        truncated,
    })
}

/// One page's text: `pdf-extract`, or `lopdf`'s reader when that fails or
/// panics; empty when both do.
fn page_text(doc: &Document, n: u32) -> String {
    let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut s = String::new();
        let mut out = pdf_extract::PlainTextOutput::new(&mut s);
        pdf_extract::output_doc_page(doc, &mut out, n).map(|_| s)
    }));
    if let Ok(Ok(s)) = first
        && !s.trim().is_empty()
    {
        return s;
    }
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| doc.extract_text(&[n])))
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default()
}

/// Lines trimmed, runs of blank lines as one.
fn tidy(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut blank = false;
    for line in s.lines() {
        let l = line.trim_end();
        if l.trim().is_empty() {
            blank = !out.is_empty();
            continue;
        }
        if blank {
            out.push('\n');
            blank = false;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(l);
    }
    out
}

/// Filter names that `lopdf` decodes without bounding the output.
const UNBOUNDED_FILTERS: &[&[u8]] = &[b"LZWDecode", b"LZW", b"ASCII85Decode", b"A85"];

/// Finds PDF names (`/Name`, `#xx` escapes decoded) in bytes fed piece by
/// piece, and remembers whether one of [`UNBOUNDED_FILTERS`] came by.
#[derive(Default)]
struct Names {
    name: Option<Vec<u8>>,
    hex: Option<(u8, u8)>,
    found: bool,
}

impl Names {
    fn end_name(&mut self) {
        if let Some(n) = self.name.take()
            && UNBOUNDED_FILTERS.contains(&n.as_slice())
        {
            self.found = true;
        }
        self.hex = None;
    }

    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if let Some(name) = &mut self.name {
                let delimiter = b.is_ascii_whitespace()
                    || matches!(
                        b,
                        b'/' | b'[' | b']' | b'<' | b'>' | b'(' | b')' | b'{' | b'}' | b'%' | 0
                    );
                if delimiter {
                    self.end_name();
                } else if let Some((digits, v)) = self.hex {
                    let Some(d) = (b as char).to_digit(16) else {
                        self.end_name();
                        continue;
                    };
                    let v = v * 16 + d as u8;
                    if digits == 1 {
                        name.push(v);
                        self.hex = None;
                    } else {
                        self.hex = Some((1, v));
                    }
                    continue;
                } else if b == b'#' {
                    self.hex = Some((0, 0));
                    continue;
                } else {
                    // Names this long are no filter name.
                    if name.len() < 32 {
                        name.push(b);
                    }
                    continue;
                }
            }
            if b == b'/' {
                self.name = Some(Vec::new());
            }
        }
    }
}

/// Inflates every Flate stream of the file (see the module docs), counting
/// against one budget; refuses bombs and unbounded filters.
pub fn scan(bytes: &[u8], limits: &Limits) -> Result<(), ExtractError> {
    let mut names = Names::default();
    names.feed(bytes);
    names.end_name();
    let mut left = limits.max_inflated_bytes;
    let mut pos = 0;
    let mut streams = 0usize;
    while let Some(i) = find(&bytes[pos..], b"stream") {
        let kw = pos + i;
        pos = kw + 6;
        if kw >= 3 && &bytes[kw - 3..kw] == b"end" {
            continue;
        }
        let start = match (bytes.get(pos), bytes.get(pos + 1)) {
            (Some(b'\r'), Some(b'\n')) => pos + 2,
            (Some(b'\n' | b'\r'), _) => pos + 1,
            _ => continue,
        };
        streams += 1;
        if streams > MAX_STREAMS {
            return Err(ExtractError::Bomb(format!(
                "the PDF has more than {MAX_STREAMS} streams"
            )));
        }
        measure(&bytes[start..], &mut left, &mut names, limits)?;
    }
    if names.found {
        return Err(unreadable(
            "it uses LZW or ASCII85 stream encoding, which confab does not read",
        ));
    }
    Ok(())
}

/// Counts what a stream starting at `data` inflates to, layer after
/// layer as a filter chain would be decoded: each layer zlib, else raw
/// deflate after two bytes (`lopdf`'s fallback). A stream still
/// compressed after [`MAX_LAYERS`] layers is refused.
fn measure(
    data: &[u8],
    left: &mut u64,
    names: &mut Names,
    limits: &Limits,
) -> Result<(), ExtractError> {
    let mut raws: Vec<bool> = Vec::new();
    loop {
        let mut found = None;
        for raw in [false, true] {
            let mut chain = raws.clone();
            chain.push(raw);
            let (total, head) = count(layers(data, &chain), left, names, limits)?;
            if total > 0 {
                found = Some((raw, total, head));
                break;
            }
        }
        let Some((raw, total, head)) = found else {
            return Ok(());
        };
        raws.push(raw);
        if total < 2 || !looks_like_zlib(&head) {
            return Ok(());
        }
        if raws.len() >= MAX_LAYERS {
            return Err(ExtractError::Bomb(format!(
                "the PDF nests compressed data more than {MAX_LAYERS} layers deep"
            )));
        }
    }
}

/// `data` decoded through one inflater per layer.
fn layers<'a>(data: &'a [u8], raws: &[bool]) -> Box<dyn Read + 'a> {
    let mut r: Box<dyn Read + 'a> = Box::new(data);
    for &raw in raws {
        r = if raw {
            let mut two = [0u8; 2];
            let _ = r.read_exact(&mut two);
            Box::new(DeflateDecoder::new(r))
        } else {
            Box::new(ZlibDecoder::new(r))
        };
    }
    r
}

fn looks_like_zlib(head: &[u8]) -> bool {
    head.len() >= 2
        && head[0] & 0x0f == 8
        && (u16::from(head[0]) << 8 | u16::from(head[1])) % 31 == 0
}

/// Reads `r` to its end or first error, feeding the name scanner;
/// returns the bytes read and the first two.
fn count(
    mut r: Box<dyn Read + '_>,
    left: &mut u64,
    names: &mut Names,
    limits: &Limits,
) -> Result<(u64, Vec<u8>), ExtractError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    let mut head = Vec::new();
    loop {
        let k = match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => k,
        };
        if head.len() < 2 {
            head.extend_from_slice(&buf[..k.min(2 - head.len())]);
        }
        total += k as u64;
        if k as u64 > *left {
            return Err(ExtractError::Bomb(format!(
                "the PDF's compressed streams expand to more than {} MB",
                limits.max_inflated_bytes / (1024 * 1024)
            )));
        }
        *left -= k as u64;
        names.feed(&buf[..k]);
    }
    names.end_name();
    Ok((total, head))
}

/// Refuses loops and deep nesting that `pdf-extract` would recurse into.
fn check_structure(
    doc: &Document,
    pages: &std::collections::BTreeMap<u32, ObjectId>,
) -> Result<(), ExtractError> {
    let looped = |what: &str| unreadable(format!("its {what} loop or nest too deeply"));
    let mut safe_forms: HashSet<(ObjectId, usize)> = HashSet::new();
    for &id in pages.values() {
        // The page tree upwards.
        let mut seen = HashSet::new();
        let mut cur = doc.get_dictionary(id).ok();
        while let Some(d) = cur {
            let Ok(parent) = d.get(b"Parent").and_then(Object::as_reference) else {
                break;
            };
            if !seen.insert(parent) || seen.len() > MAX_DEPTH {
                return Err(looped("page tree's parents"));
            }
            cur = doc.get_dictionary(parent).ok();
        }
        // The form XObjects a page draws.
        if let Some(res) = inherited_resources(doc, id) {
            let mut path = Vec::new();
            forms(doc, res, &mut path, &mut safe_forms)
                .map_err(|_| looped("drawings (form XObjects)"))?;
        }
    }
    Ok(())
}

fn inherited_resources(doc: &Document, page: ObjectId) -> Option<&Dictionary> {
    let mut cur = doc.get_dictionary(page).ok();
    let mut hops = 0;
    while let Some(d) = cur {
        if let Ok(r) = d.get(b"Resources") {
            return deref(doc, r).and_then(|o| o.as_dict().ok());
        }
        hops += 1;
        if hops > MAX_DEPTH {
            return None;
        }
        cur = d
            .get(b"Parent")
            .and_then(Object::as_reference)
            .and_then(|p| doc.get_dictionary(p))
            .ok();
    }
    None
}

fn deref<'a>(doc: &'a Document, o: &'a Object) -> Option<&'a Object> {
    let mut o = o;
    for _ in 0..MAX_DEPTH {
        match o {
            Object::Reference(id) => o = doc.get_object(*id).ok()?,
            other => return Some(other),
        }
    }
    None
}

/// Walks the form XObjects reachable from `res`; Err on a cycle or when
/// deeper than [`MAX_DEPTH`]. A form without resources of its own uses its
/// caller's, so what it may draw depends on them: forms are remembered as
/// safe per (form, resources) pair.
fn forms(
    doc: &Document,
    res: &Dictionary,
    path: &mut Vec<ObjectId>,
    safe: &mut HashSet<(ObjectId, usize)>,
) -> Result<(), ()> {
    let Some(xobjects) = res
        .get(b"XObject")
        .ok()
        .and_then(|o| deref(doc, o))
        .and_then(|o| o.as_dict().ok())
    else {
        return Ok(());
    };
    for (_, v) in xobjects.iter() {
        let Ok(id) = v.as_reference() else { continue };
        let Ok(Object::Stream(s)) = doc.get_object(id) else {
            continue;
        };
        if s.dict.get(b"Subtype").and_then(Object::as_name).ok() != Some(b"Form".as_slice()) {
            continue;
        }
        let own = s
            .dict
            .get(b"Resources")
            .ok()
            .and_then(|o| deref(doc, o))
            .and_then(|o| o.as_dict().ok());
        let inner = own.unwrap_or(res);
        let key = (id, inner as *const Dictionary as usize);
        if safe.contains(&key) {
            continue;
        }
        if path.contains(&id) || path.len() >= MAX_DEPTH {
            return Err(());
        }
        path.push(id);
        forms(doc, inner, path, safe)?;
        path.pop();
        safe.insert(key);
    }
    Ok(())
}

/// A PDF of `pages` (one text each, lines split at `\n`), written with
/// `lopdf`: for tests and benches.
pub fn build(pages: &[String]) -> Vec<u8> {
    use lopdf::content::{Content, Operation};
    use lopdf::{Stream, dictionary};
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font",
        "Subtype" => "Type1",
        "BaseFont" => "Helvetica",
        "Encoding" => "WinAnsiEncoding",
    });
    let resources_id = doc.add_object(dictionary! {
        "Font" => dictionary! { "F1" => font_id },
    });
    let mut kids = Vec::new();
    for text in pages {
        let mut ops = vec![
            Operation::new("BT", vec![]),
            Operation::new("Tf", vec!["F1".into(), 11.into()]),
            Operation::new("TL", vec![14.into()]),
            Operation::new("Td", vec![50.into(), 780.into()]),
        ];
        for line in text.lines() {
            ops.push(Operation::new("Tj", vec![Object::string_literal(line)]));
            ops.push(Operation::new("T*", vec![]));
        }
        ops.push(Operation::new("ET", vec![]));
        let content = Content { operations: ops };
        let mut stream = Stream::new(dictionary! {}, content.encode().unwrap_or_default());
        let _ = stream.compress();
        let content_id = doc.add_object(stream);
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => pages_id,
            "Contents" => content_id,
        });
        kids.push(page_id.into());
    }
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => kids,
            "Count" => count,
            "Resources" => resources_id,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        }),
    );
    let catalog_id = doc.add_object(dictionary! {
        "Type" => "Catalog",
        "Pages" => pages_id,
    });
    doc.trailer.set("Root", catalog_id);
    let mut out = Vec::new();
    let _ = doc.save_to(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knowledge::extract::extract_now;

    fn pages(n: usize) -> Vec<String> {
        (1..=n)
            .map(|i| format!("Page {i} heading\nThe value on page {i} is {}.", i * 7))
            .collect()
    }

    #[test]
    fn text_per_page() {
        let bytes = build(&pages(3));
        let e = extract_now(&bytes, DocKind::Pdf, &Limits::default()).unwrap();
        assert_eq!(e.pages, Some(3));
        assert_eq!(e.blocks.len(), 3);
        assert_eq!(e.blocks[2].at, Loc::Page(3));
        assert!(
            e.blocks[2].text.contains("The value on page 3 is 21."),
            "{:?}",
            e.blocks[2].text
        );
        assert!(e.truncated.is_none());
    }

    #[test]
    fn pages_past_the_limit_are_left_out() {
        let bytes = build(&pages(12));
        let limits = Limits {
            max_pages: 5,
            ..Limits::default()
        };
        let e = extract_now(&bytes, DocKind::Pdf, &limits).unwrap();
        assert_eq!(e.blocks.len(), 5);
        assert_eq!(e.pages, Some(12));
        assert!(e.truncated.unwrap().contains("first 5 of 12"));
    }

    #[test]
    fn truncated_and_junk_files_are_errors() {
        let bytes = build(&pages(3));
        for cut in [10, bytes.len() / 3, bytes.len() / 2] {
            // Either an error or whatever text survived; never a panic.
            let _ = extract_now(&bytes[..cut], DocKind::Pdf, &Limits::default());
        }
        let err = extract_now(b"%PDF-1.4\n garbage", DocKind::Pdf, &Limits::default()).unwrap_err();
        assert!(matches!(err, ExtractError::Unreadable(..)), "{err:?}");
        let err = extract_now(b"hello", DocKind::Pdf, &Limits::default()).unwrap_err();
        assert!(matches!(err, ExtractError::Unreadable(..)), "{err:?}");
    }

    /// A stream of `n` zero bytes, deflated, inside a minimal PDF body.
    fn with_stream(inner: &[u8]) -> Vec<u8> {
        let mut out = b"%PDF-1.5\n1 0 obj\n<< /Length 1 /Filter /FlateDecode >>\nstream\n".to_vec();
        out.extend_from_slice(inner);
        out.extend_from_slice(b"\nendstream\nendobj\n%%EOF\n");
        out
    }

    fn deflate(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn flate_bombs_are_refused_before_parsing() {
        let limits = Limits {
            max_inflated_bytes: 8 * 1024 * 1024,
            ..Limits::default()
        };
        let bomb = deflate(&vec![0u8; 16 * 1024 * 1024]);
        let err = scan(&with_stream(&bomb), &limits).unwrap_err();
        assert!(matches!(err, ExtractError::Bomb(_)), "{err:?}");
        // Nested: 1 MB that inflates to 1 MB that inflates to 16 MB.
        let twice = deflate(&bomb);
        let err = scan(&with_stream(&twice), &limits).unwrap_err();
        assert!(matches!(err, ExtractError::Bomb(_)), "{err:?}");
        // Raw deflate after two junk bytes (lopdf's fallback).
        let raw = {
            use std::io::Write;
            let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(&vec![0u8; 16 * 1024 * 1024]).unwrap();
            let mut v = b"xx".to_vec();
            v.extend(e.finish().unwrap());
            v
        };
        let err = scan(&with_stream(&raw), &limits).unwrap_err();
        assert!(matches!(err, ExtractError::Bomb(_)), "{err:?}");
        // Small streams pass.
        scan(&with_stream(&deflate(b"BT (hi) Tj ET")), &limits).unwrap();
    }

    #[test]
    fn unbounded_filters_are_refused_even_escaped() {
        for name in ["/LZWDecode", "/LZW#44ecode", "/ASCII85Decode"] {
            let pdf = format!("%PDF-1.4\n1 0 obj << /Filter {name} >> endobj");
            let err = scan(pdf.as_bytes(), &Limits::default()).unwrap_err();
            assert!(
                matches!(err, ExtractError::Unreadable(..)),
                "{name}: {err:?}"
            );
        }
        scan(
            b"%PDF-1.4\n1 0 obj << /Filter /FlateDecode >> endobj",
            &Limits::default(),
        )
        .unwrap();
    }

    #[test]
    fn self_drawing_forms_and_parent_loops_are_refused() {
        use lopdf::dictionary;
        let bytes = build(&pages(1));
        let mut doc = Document::load_mem(&bytes).unwrap();
        // A form that draws itself through the page's resources.
        let form_id = doc.new_object_id();
        let mut form = lopdf::Stream::new(
            dictionary! { "Type" => "XObject", "Subtype" => "Form", "BBox" => vec![0.into(), 0.into(), 10.into(), 10.into()] },
            b"/X1 Do".to_vec(),
        );
        form.dict.set(
            "Resources",
            dictionary! { "XObject" => dictionary! { "X1" => form_id } },
        );
        doc.objects.insert(form_id, Object::Stream(form));
        let page_id = *doc.get_pages().get(&1).unwrap();
        let page = doc.get_dictionary_mut(page_id).unwrap();
        page.set(
            "Resources",
            dictionary! { "XObject" => dictionary! { "X1" => form_id } },
        );
        let mut out = Vec::new();
        doc.save_to(&mut out).unwrap();
        let err = extract_now(&out, DocKind::Pdf, &Limits::default()).unwrap_err();
        assert!(err.to_string().contains("loop"), "{err}");

        // A page whose parent is itself.
        let mut doc = Document::load_mem(&bytes).unwrap();
        let page_id = *doc.get_pages().get(&1).unwrap();
        let pages_id = doc
            .get_dictionary(page_id)
            .unwrap()
            .get(b"Parent")
            .unwrap()
            .as_reference()
            .unwrap();
        doc.get_dictionary_mut(pages_id)
            .unwrap()
            .set("Parent", pages_id);
        let mut out = Vec::new();
        doc.save_to(&mut out).unwrap();
        let r = extract_now(&out, DocKind::Pdf, &Limits::default());
        assert!(r.is_err(), "{:?}", r.map(|e| e.blocks.len()));
    }
}
