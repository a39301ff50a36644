//! Plain text, Markdown and source code (one block per line, numbered from
//! 1), and CSV (one block per record, each field named by its column).

use super::{Block, Budget, DocKind, Extracted, Limits, Loc};

/// Bytes as text: UTF-8 (a BOM dropped), UTF-16 with a BOM, else
/// Windows-1252 (what most 8-bit text that is not UTF-8 turns out to be).
pub fn decode(bytes: &[u8]) -> String {
    if let Some((enc, bom)) = encoding_rs::Encoding::for_bom(bytes) {
        let (text, _) = enc.decode_without_bom_handling(&bytes[bom..]);
        return text.into_owned();
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => encoding_rs::WINDOWS_1252.decode(bytes).0.into_owned(),
    }
}

pub fn lines(text: &str, kind: DocKind, limits: &Limits) -> Extracted {
    let mut budget = Budget::new(limits);
    let mut blocks = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(t) = budget.take(line.to_string()) else {
            break;
        };
        blocks.push(Block {
            text: t,
            at: Loc::Line(i as u32 + 1),
        });
    }
    Extracted {
        kind,
        blocks,
        pages: None,
        truncated: budget
            .truncated
            .then(|| format!("only the first {} MB of text were read", mb(limits))),
    }
}

fn mb(limits: &Limits) -> usize {
    limits.max_text_bytes / (1024 * 1024)
}

/// Each record becomes `column: value; column: value`, so a chunk of rows
/// still says what each number is; the location is the record's line.
pub fn csv(bytes: &[u8], limits: &Limits) -> Extracted {
    let text = decode(bytes);
    let first = text.lines().next().unwrap_or("");
    let delimiter = if first.matches('\t').count() > first.matches(',').count() {
        b'\t'
    } else if first.matches(';').count() > first.matches(',').count() {
        b';'
    } else {
        b','
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .has_headers(true)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map(|h| h.iter().map(str::to_string).collect())
        .unwrap_or_default();
    let mut budget = Budget::new(limits);
    let mut blocks = vec![];
    if !headers.is_empty() {
        blocks.push(Block {
            text: format!("Columns: {}", headers.join(", ")),
            at: Loc::Line(1),
        });
    }
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            // A malformed record (bad quoting): skip it, keep the rest.
            Err(_) => continue,
        }
        let line = record.position().map(|p| p.line() as u32).unwrap_or(0);
        let row: Vec<String> = record
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(i, v)| match headers.get(i).filter(|h| !h.is_empty()) {
                Some(h) => format!("{h}: {v}"),
                None => v.to_string(),
            })
            .collect();
        let Some(t) = budget.take(row.join("; ")) else {
            break;
        };
        blocks.push(Block {
            text: t,
            at: Loc::Line(line),
        });
    }
    Extracted {
        kind: DocKind::Csv,
        blocks,
        pages: None,
        truncated: budget
            .truncated
            .then(|| format!("only the first {} MB of text were read", mb(limits))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_boms_and_legacy_text() {
        assert_eq!(decode(b"\xEF\xBB\xBFhi"), "hi");
        assert_eq!(decode(&[0xFF, 0xFE, b'h', 0, b'i', 0]), "hi");
        assert_eq!(decode(b"caf\xE9"), "café");
    }

    #[test]
    fn lines_are_numbered() {
        let e = lines("a\nb\n\nc", DocKind::Code, &Limits::default());
        assert_eq!(e.blocks.len(), 4);
        assert_eq!(e.blocks[3].at, Loc::Line(4));
        assert!(e.truncated.is_none());
    }

    #[test]
    fn csv_rows_name_their_columns() {
        let e = csv(b"name,age\nAda,36\n\"Bob, Jr\",7\n", &Limits::default());
        let texts: Vec<&str> = e.blocks.iter().map(|b| b.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "Columns: name, age",
                "name: Ada; age: 36",
                "name: Bob, Jr; age: 7"
            ]
        );
        assert_eq!(e.blocks[2].at, Loc::Line(3));
        let t = csv(b"a\tb\n1\t2\n", &Limits::default());
        assert_eq!(t.blocks[1].text, "a: 1; b: 2");
    }

    #[test]
    fn text_past_the_limit_is_cut() {
        let limits = Limits {
            max_text_bytes: 10,
            ..Limits::default()
        };
        let e = lines("0123456\n0123456\n0123456", DocKind::Text, &limits);
        assert_eq!(e.blocks.iter().map(|b| b.text.len()).sum::<usize>(), 10);
        assert!(e.truncated.is_some());
    }
}
