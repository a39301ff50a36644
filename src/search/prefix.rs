//! `word*`: documents with any term that starts with a prefix.
//!
//! tantivy's own range query unions the postings of every matching term of
//! the whole segment into a bitset before anything else runs, so a short
//! prefix costs the same for every user (all users' matches are visited
//! first) and again for every window of the newest-first search
//! ([`super::collect`]). This query instead expands the prefix per segment
//! and unions the terms' postings lazily, one window of [`WINDOW`] documents
//! at a time, starting wherever the rest of the query asks (`seek`): the
//! work follows the documents the user filter and the other words let
//! through. A prefix with very many terms in a segment (more than
//! [`LAZY_TERMS`]) is cheaper as one bitset over the segment, built once per
//! query and shared by every window.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tantivy::index::SegmentId;
use tantivy::postings::SegmentPostings;
use tantivy::query::{EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocId, DocSet, Score, SegmentReader, TERMINATED};

/// Documents per lazily filled window (64 words of 64 bits).
const WINDOW: u32 = 4096;
/// Above this many terms in a segment, one bitset for the whole segment.
const LAZY_TERMS: usize = 256;

#[derive(Clone, Debug)]
pub struct PrefixQuery {
    field: Field,
    prefix: String,
}

impl PrefixQuery {
    pub fn new(field: Field, prefix: String) -> PrefixQuery {
        PrefixQuery { field, prefix }
    }
}

impl Query for PrefixQuery {
    fn weight(&self, _: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(PrefixWeight {
            field: self.field,
            prefix: self.prefix.clone(),
            dense: Mutex::new(HashMap::new()),
        }))
    }
}

struct PrefixWeight {
    field: Field,
    prefix: String,
    /// Whole-segment bitsets of prefixes with many terms, per segment.
    dense: Mutex<HashMap<SegmentId, Arc<Vec<u64>>>>,
}

/// The smallest string greater than every string that starts with `p`
/// (None when there is none: `p` is all 0xFF bytes, impossible in UTF-8).
fn upper_bound(p: &[u8]) -> Option<Vec<u8>> {
    let mut u = p.to_vec();
    while let Some(last) = u.pop() {
        if last < 0xFF {
            u.push(last + 1);
            return Some(u);
        }
    }
    None
}

impl PrefixWeight {
    fn postings(&self, reader: &SegmentReader) -> tantivy::Result<Vec<SegmentPostings>> {
        let inv = reader.inverted_index(self.field)?;
        let dict = inv.terms();
        let p = self.prefix.as_bytes();
        let mut range = dict.range().ge(p);
        if let Some(u) = upper_bound(p) {
            range = range.lt(u);
        }
        let mut stream = range.into_stream()?;
        let mut out = Vec::new();
        while let Some((_, info)) = stream.next() {
            let postings = inv.read_postings_from_terminfo(info, IndexRecordOption::Basic)?;
            if postings.doc() != TERMINATED {
                out.push(postings);
            }
        }
        Ok(out)
    }
}

impl Weight for PrefixWeight {
    fn scorer(&self, reader: &SegmentReader, _boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let max_doc = reader.max_doc();
        let cached = self
            .dense
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&reader.segment_id())
            .cloned();
        if let Some(bits) = cached {
            return Ok(Box::new(DenseDocSet::new(bits, max_doc)));
        }
        let postings = self.postings(reader)?;
        if postings.len() <= LAZY_TERMS {
            return Ok(Box::new(LazyUnion::new(postings)));
        }
        let mut bits = vec![0u64; (max_doc as usize).div_ceil(64)];
        for mut p in postings {
            let mut d = p.doc();
            while d != TERMINATED {
                bits[(d / 64) as usize] |= 1 << (d % 64);
                d = p.advance();
            }
        }
        let bits = Arc::new(bits);
        self.dense
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(reader.segment_id(), bits.clone());
        Ok(Box::new(DenseDocSet::new(bits, max_doc)))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut s = self.scorer(reader, 1.0)?;
        if s.seek(doc) == doc {
            Ok(Explanation::new("prefix", 1.0))
        } else {
            Err(tantivy::TantivyError::InvalidArgument(
                "document does not match".into(),
            ))
        }
    }
}

/// Union of term postings, materialised one window at a time.
struct LazyUnion {
    postings: Vec<SegmentPostings>,
    /// First doc of the current window.
    start: DocId,
    bits: [u64; (WINDOW / 64) as usize],
    doc: DocId,
    size_hint: u32,
}

impl LazyUnion {
    fn new(postings: Vec<SegmentPostings>) -> LazyUnion {
        let size_hint = postings
            .iter()
            .map(|p| p.size_hint())
            .fold(0u32, u32::saturating_add);
        let mut u = LazyUnion {
            postings,
            start: 0,
            bits: [0; (WINDOW / 64) as usize],
            doc: 0,
            size_hint,
        };
        u.fill_from(0);
        u
    }

    /// Fills the window that starts at the first match at or after `target`
    /// and moves to that match.
    fn fill_from(&mut self, target: DocId) {
        self.postings.retain_mut(|p| {
            if p.doc() < target {
                p.seek(target);
            }
            p.doc() != TERMINATED
        });
        let Some(first) = self.postings.iter().map(|p| p.doc()).min() else {
            self.doc = TERMINATED;
            return;
        };
        self.start = first;
        let end = first.saturating_add(WINDOW);
        self.bits = [0; (WINDOW / 64) as usize];
        for p in &mut self.postings {
            let mut d = p.doc();
            while d < end {
                let i = d - first;
                self.bits[(i / 64) as usize] |= 1 << (i % 64);
                d = p.advance();
            }
        }
        self.doc = first;
    }

    /// The first set bit at or after window offset `from`, if any.
    fn next_in_window(&self, from: u32) -> Option<DocId> {
        let mut w = (from / 64) as usize;
        if w >= self.bits.len() {
            return None;
        }
        let mut word = self.bits[w] & (u64::MAX << (from % 64));
        loop {
            if word != 0 {
                return Some(self.start + w as u32 * 64 + word.trailing_zeros());
            }
            w += 1;
            if w >= self.bits.len() {
                return None;
            }
            word = self.bits[w];
        }
    }
}

impl DocSet for LazyUnion {
    fn advance(&mut self) -> DocId {
        if self.doc == TERMINATED {
            return TERMINATED;
        }
        let target = self.doc + 1;
        self.seek(target)
    }

    fn seek(&mut self, target: DocId) -> DocId {
        if self.doc == TERMINATED || target <= self.doc {
            return self.doc;
        }
        if target < self.start.saturating_add(WINDOW)
            && let Some(d) = self.next_in_window(target - self.start)
        {
            self.doc = d;
            return d;
        }
        // Past this window: the postings are all at or after its end.
        self.fill_from(target.max(self.start.saturating_add(WINDOW)));
        self.doc
    }

    fn doc(&self) -> DocId {
        self.doc
    }

    fn size_hint(&self) -> u32 {
        self.size_hint
    }
}

impl Scorer for LazyUnion {
    fn score(&mut self) -> Score {
        1.0
    }
}

/// A whole-segment bitset as a docset.
struct DenseDocSet {
    bits: Arc<Vec<u64>>,
    max_doc: DocId,
    doc: DocId,
    size_hint: u32,
}

impl DenseDocSet {
    fn new(bits: Arc<Vec<u64>>, max_doc: DocId) -> DenseDocSet {
        let size_hint = bits.iter().map(|w| w.count_ones()).sum();
        let mut d = DenseDocSet {
            bits,
            max_doc,
            doc: 0,
            size_hint,
        };
        d.doc = d.next_from(0);
        d
    }

    fn next_from(&self, from: DocId) -> DocId {
        if from >= self.max_doc {
            return TERMINATED;
        }
        let mut w = (from / 64) as usize;
        let mut word = self.bits[w] & (u64::MAX << (from % 64));
        loop {
            if word != 0 {
                let d = w as u32 * 64 + word.trailing_zeros();
                return if d < self.max_doc { d } else { TERMINATED };
            }
            w += 1;
            if w >= self.bits.len() {
                return TERMINATED;
            }
            word = self.bits[w];
        }
    }
}

impl DocSet for DenseDocSet {
    fn advance(&mut self) -> DocId {
        if self.doc != TERMINATED {
            self.doc = self.next_from(self.doc + 1);
        }
        self.doc
    }

    fn seek(&mut self, target: DocId) -> DocId {
        if self.doc != TERMINATED && target > self.doc {
            self.doc = self.next_from(target);
        }
        self.doc
    }

    fn doc(&self) -> DocId {
        self.doc
    }

    fn size_hint(&self) -> u32 {
        self.size_hint
    }
}

impl Scorer for DenseDocSet {
    fn score(&mut self) -> Score {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::collector::DocSetCollector;
    use tantivy::schema::{STRING, Schema};
    use tantivy::{Index, TantivyDocument};

    /// Every way through the docsets (advance, short and long seeks, many
    /// and few terms) gives what a plain scan of the documents gives.
    #[test]
    fn lazy_and_dense_unions_match_a_scan() {
        let mut b = Schema::builder();
        let f = b.add_text_field("w", STRING);
        let index = Index::create_in_ram(b.build());
        let mut w = index.writer_with_num_threads(1, 15_000_000).unwrap();
        let mut words = Vec::new();
        let mut x: u64 = 7;
        for _ in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // "ab" + 0..600 (many terms), "cd" + 0..5 (few), "zz" rare.
            let word = match x % 100 {
                0..=59 => format!("ab{}", x % 600),
                60..=98 => format!("cd{}", x % 5),
                _ => "zz".to_string(),
            };
            let mut d = TantivyDocument::new();
            d.add_text(f, &word);
            w.add_document(d).unwrap();
            words.push(word);
        }
        w.commit().unwrap();
        let searcher = index.reader().unwrap().searcher();
        let seg = searcher.segment_reader(0);
        for prefix in ["ab", "ab1", "cd", "c", "zz", "q"] {
            let want: Vec<DocId> = words
                .iter()
                .enumerate()
                .filter(|(_, w)| w.starts_with(prefix))
                .map(|(i, _)| i as DocId)
                .collect();
            let q = PrefixQuery::new(f, prefix.to_string());
            let got = searcher.search(&q, &DocSetCollector).unwrap();
            assert_eq!(got.len(), want.len(), "{prefix}");
            let weight = q
                .weight(EnableScoring::disabled_from_searcher(&searcher))
                .unwrap();
            // advance all the way
            let mut s = weight.scorer(seg, 1.0).unwrap();
            let mut all = Vec::new();
            while s.doc() != TERMINATED {
                all.push(s.doc());
                s.advance();
            }
            assert_eq!(all, want, "{prefix}: advance");
            // seeks of every stride, as an intersection would do
            for stride in [1u32, 63, 64, 65, 4095, 4096, 4097, 9000] {
                let mut s = weight.scorer(seg, 1.0).unwrap();
                let mut t = 0;
                while t < 20_000 {
                    let got = s.seek(t.max(s.doc()));
                    let want_next = want.iter().copied().find(|&d| d >= t);
                    if got == TERMINATED {
                        assert!(
                            want.iter().all(|&d| d < t),
                            "{prefix} stride {stride} at {t}"
                        );
                        break;
                    }
                    assert_eq!(Some(got), want_next, "{prefix} stride {stride} at {t}");
                    t += stride;
                }
            }
        }
    }

    #[test]
    fn upper_bounds() {
        assert_eq!(upper_bound(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(upper_bound(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(upper_bound(b"\xff\xff"), None);
    }
}
