//! DOCX: the paragraphs of `word/document.xml`, each under the nearest
//! heading (a paragraph styled `Heading…` or `Title`). The archive is read
//! with `zip` and the XML with `quick-xml` (which expands no custom
//! entities, so no "billion laughs").
//!
//! Zip bombs: the archive may hold at most [`MAX_ENTRIES`] entries, the
//! document part's declared size must be under the inflation limit, and
//! reading stops as soon as the bytes actually inflated pass it (a
//! declared size can lie).

use quick_xml::Reader;
use quick_xml::events::Event;
use std::io::Read;
use std::time::Instant;

use super::{Block, Budget, DocKind, ExtractError, Extracted, Limits, Loc};

pub const MAX_ENTRIES: usize = 10_000;
const PART: &str = "word/document.xml";

fn bad(why: impl std::fmt::Display) -> ExtractError {
    ExtractError::Unreadable("DOCX file", why.to_string())
}

/// The document part, inflated within `cap` bytes.
fn document_xml(bytes: &[u8], cap: u64) -> Result<Vec<u8>, ExtractError> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(bad)?;
    if zip.len() > MAX_ENTRIES {
        return Err(ExtractError::Bomb(format!(
            "the DOCX archive holds {} parts, more than {MAX_ENTRIES}",
            zip.len()
        )));
    }
    let part = zip
        .by_name(PART)
        .map_err(|_| bad("it has no word/document.xml (is it a Word document?)"))?;
    let too_big = || {
        ExtractError::Bomb(format!(
            "the DOCX text part expands to more than {} MB",
            cap / (1024 * 1024)
        ))
    };
    if part.size() > cap {
        return Err(too_big());
    }
    let mut out = Vec::with_capacity(part.size().min(cap) as usize);
    part.take(cap + 1).read_to_end(&mut out).map_err(bad)?;
    if out.len() as u64 > cap {
        return Err(too_big());
    }
    Ok(out)
}

pub fn extract(
    bytes: &[u8],
    limits: &Limits,
    deadline: Instant,
) -> Result<Extracted, ExtractError> {
    let xml = document_xml(bytes, limits.max_inflated_bytes)?;
    let mut reader = Reader::from_reader(xml.as_slice());
    let mut buf = Vec::new();
    let mut budget = Budget::new(limits);
    let mut blocks: Vec<Block> = Vec::new();
    let mut paragraph = String::new();
    let mut style_heading = false;
    let mut heading: Option<String> = None;
    let mut in_text = false;
    let mut index = 0u32;
    let mut events = 0u64;
    loop {
        events += 1;
        if events.is_multiple_of(4096) && Instant::now() > deadline {
            return Err(ExtractError::TimedOut(limits.max_time.as_secs()));
        }
        let ev = reader.read_event_into(&mut buf).map_err(bad)?;
        match ev {
            Event::Start(e) | Event::Empty(e) => match e.local_name().as_ref() {
                "p" => {
                    paragraph.clear();
                    style_heading = false;
                }
                "t" => in_text = true,
                "tab" => paragraph.push('\t'),
                "br" | "cr" => paragraph.push('\n'),
                "pStyle" => {
                    for a in e.attributes().flatten() {
                        if a.key.local_name().as_ref() == "val" {
                            let v = a.value.to_ascii_lowercase();
                            style_heading = v.starts_with("heading") || v == "title";
                        }
                    }
                }
                _ => {}
            },
            Event::End(e) => match e.local_name().as_ref() {
                "t" => in_text = false,
                "p" => {
                    let text = paragraph.trim().to_string();
                    paragraph.clear();
                    if text.is_empty() {
                        continue;
                    }
                    index += 1;
                    if style_heading {
                        heading = Some(text.chars().take(200).collect());
                    }
                    let Some(text) = budget.take(text) else {
                        break;
                    };
                    blocks.push(Block {
                        text,
                        at: Loc::Paragraph {
                            index,
                            heading: heading.clone(),
                        },
                    });
                }
                _ => {}
            },
            Event::Text(t) if in_text => paragraph.push_str(&t.xml10_content()),
            Event::GeneralRef(r) if in_text => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    paragraph.push(c);
                } else if let Some(s) =
                    quick_xml::escape::resolve_predefined_entity(&r.xml10_content())
                {
                    paragraph.push_str(s);
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Ok(Extracted {
        kind: DocKind::Docx,
        blocks,
        pages: None,
        truncated: budget.truncated.then(|| {
            format!(
                "only the first {} MB of text were read",
                limits.max_text_bytes / (1024 * 1024)
            )
        }),
    })
}

/// A minimal DOCX with `paragraphs` (style, text): for tests and benches.
pub fn build(paragraphs: &[(Option<&str>, &str)]) -> Vec<u8> {
    use std::io::Write;
    let mut body = String::new();
    for (style, text) in paragraphs {
        body.push_str("<w:p>");
        if let Some(s) = style {
            body.push_str(&format!("<w:pPr><w:pStyle w:val=\"{s}\"/></w:pPr>"));
        }
        body.push_str(&format!(
            "<w:r><w:t xml:space=\"preserve\">{}</w:t></w:r></w:p>",
            quick_xml::escape::escape(*text)
        ));
    }
    let doc = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>{body}</w:body></w:document>"#
    );
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut out);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        let files = [
            ("[Content_Types].xml", CONTENT_TYPES),
            ("_rels/.rels", RELS),
            (PART, doc.as_str()),
        ];
        for (name, data) in files {
            if zip.start_file(name, opts).is_ok() {
                let _ = zip.write_all(data.as_bytes());
            }
        }
        let _ = zip.finish();
    }
    out.into_inner()
}

const CONTENT_TYPES: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#;
const RELS: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>"#;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn paragraphs_under_headings() {
        let bytes = build(&[
            (Some("Title"), "Quarterly report"),
            (None, "Sales grew & costs fell."),
            (Some("Heading1"), "Risks"),
            (None, "Supply of <widgets> is short."),
        ]);
        let e = super::super::extract_now(&bytes, DocKind::Docx, &Limits::default()).unwrap();
        let texts: Vec<&str> = e.blocks.iter().map(|b| b.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "Quarterly report",
                "Sales grew & costs fell.",
                "Risks",
                "Supply of <widgets> is short."
            ]
        );
        assert_eq!(
            e.blocks[3].at,
            Loc::Paragraph {
                index: 4,
                heading: Some("Risks".into())
            }
        );
    }

    #[test]
    fn zip_bombs_are_refused() {
        // 300 MB of zeros deflate to about 300 KB: past the 256 MB limit.
        let mut out = std::io::Cursor::new(Vec::new());
        {
            let mut zip = zip::ZipWriter::new(&mut out);
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .large_file(true);
            zip.start_file(PART, opts).unwrap();
            let zeros = vec![b' '; 1024 * 1024];
            for _ in 0..300 {
                zip.write_all(&zeros).unwrap();
            }
            zip.finish().unwrap();
        }
        let bytes = out.into_inner();
        assert!(bytes.len() < 2 * 1024 * 1024, "{}", bytes.len());
        let err = super::super::extract_now(&bytes, DocKind::Docx, &Limits::default()).unwrap_err();
        assert!(matches!(err, ExtractError::Bomb(_)), "{err:?}");
        // Under a smaller limit, an ordinary document is past it too.
        let small = Limits {
            max_inflated_bytes: 1024,
            ..Limits::default()
        };
        let doc = build(&[(None, &"word ".repeat(1000))]);
        let err = super::super::extract_now(&doc, DocKind::Docx, &small).unwrap_err();
        assert!(matches!(err, ExtractError::Bomb(_)), "{err:?}");
    }

    #[test]
    fn not_a_docx() {
        let err = super::super::extract_now(b"PK\x03\x04junk", DocKind::Docx, &Limits::default())
            .unwrap_err();
        assert!(matches!(err, ExtractError::Unreadable(..)), "{err:?}");
    }
}
