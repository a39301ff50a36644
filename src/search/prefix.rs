//! `word*`: documents with any term that starts with a prefix.
//!
//! tantivy's own range query unions the postings of every matching term of
//! the whole segment into a bitset before anything else runs, so a short
//! prefix costs every user the postings of all users (`th*` is `the`, `that`,
//! `this` and a thousand rarer words), and the newest-first search
//! ([`super::collect`]) would pay it again for every batch. Here the prefix
//! is expanded per segment and split by document frequency:
//!
//! - the few **frequent** terms (in at least 1/[`FREQUENT_FRACTION`] of the
//!   segment's documents) stay postings, most frequent first, and are
//!   unioned lazily: a seek (another clause, such as the user filter, drives)
//!   moves them to the target and stops at the first that holds it; an
//!   advance (the union drives) fills a bitset window of [`WINDOW`]
//!   documents;
//! - the many **rare** ones are folded into one bitset for the segment, built
//!   once per query (their postings are short by definition) and shared by
//!   every batch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tantivy::index::SegmentId;
use tantivy::postings::SegmentPostings;
use tantivy::query::{EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocId, DocSet, Score, SegmentReader, TERMINATED};

/// Documents per window when the union drives (64 words of 64 bits).
const WINDOW: u32 = 4096;
/// A term in at least 1/this of a segment's documents is "frequent".
const FREQUENT_FRACTION: u32 = 256;

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
            rare: Mutex::new(HashMap::new()),
        }))
    }
}

struct PrefixWeight {
    field: Field,
    prefix: String,
    /// Per segment: the rare terms' documents as a bitset (None: no rare
    /// term), built by the first scorer of this query for the segment.
    rare: Mutex<HashMap<SegmentId, Option<Arc<Vec<u64>>>>>,
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

impl Weight for PrefixWeight {
    fn scorer(&self, reader: &SegmentReader, _boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let max_doc = reader.max_doc();
        let inv = reader.inverted_index(self.field)?;
        let p = self.prefix.as_bytes();
        let mut range = inv.terms().range().ge(p);
        if let Some(u) = upper_bound(p) {
            range = range.lt(u);
        }
        let mut stream = range.into_stream()?;
        let cached = self
            .rare
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&reader.segment_id())
            .cloned();
        let mut rare_bits = match &cached {
            Some(_) => None,
            None => Some(vec![0u64; (max_doc as usize).div_ceil(64)]),
        };
        let mut any_rare = false;
        let mut frequent: Vec<SegmentPostings> = Vec::new();
        while let Some((_, info)) = stream.next() {
            if info.doc_freq.saturating_mul(FREQUENT_FRACTION) >= max_doc {
                let postings = inv.read_postings_from_terminfo(info, IndexRecordOption::Basic)?;
                if postings.doc() != TERMINATED {
                    frequent.push(postings);
                }
            } else if let Some(bits) = &mut rare_bits {
                let mut postings =
                    inv.read_postings_from_terminfo(info, IndexRecordOption::Basic)?;
                let mut d = postings.doc();
                while d != TERMINATED {
                    bits[(d / 64) as usize] |= 1 << (d % 64);
                    any_rare = true;
                    d = postings.advance();
                }
            }
        }
        let rare = match cached {
            Some(r) => r,
            None => {
                let r = rare_bits.filter(|_| any_rare).map(Arc::new);
                self.rare
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(reader.segment_id(), r.clone());
                r
            }
        };
        frequent.sort_by_key(|p| std::cmp::Reverse(p.size_hint()));
        let mut members: Vec<Member> = frequent
            .into_iter()
            .map(|p| Member::Postings(Box::new(p)))
            .collect();
        if let Some(bits) = rare {
            members.push(Member::Bits(DenseDocSet::new(bits, max_doc)));
        }
        Ok(Box::new(LazyUnion::new(members)))
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

/// One member of the union.
enum Member {
    Postings(Box<SegmentPostings>),
    Bits(DenseDocSet),
}

impl Member {
    fn doc(&self) -> DocId {
        match self {
            Member::Postings(p) => p.doc(),
            Member::Bits(b) => b.doc(),
        }
    }
    fn seek(&mut self, target: DocId) -> DocId {
        match self {
            Member::Postings(p) => p.seek(target),
            Member::Bits(b) => b.seek(target),
        }
    }
    fn advance(&mut self) -> DocId {
        match self {
            Member::Postings(p) => p.advance(),
            Member::Bits(b) => b.advance(),
        }
    }
    fn size_hint(&self) -> u32 {
        match self {
            Member::Postings(p) => p.size_hint(),
            Member::Bits(b) => b.size_hint(),
        }
    }
}

/// Union of the members. Seeking moves members to the target, most
/// frequent first, and stops at the first that holds it (the others catch
/// up on a later call); advancing fills a bitset window of [`WINDOW`]
/// documents from every member.
struct LazyUnion {
    members: Vec<Member>,
    /// First doc of the current window, when `windowed`.
    start: DocId,
    windowed: bool,
    bits: [u64; (WINDOW / 64) as usize],
    doc: DocId,
    size_hint: u32,
}

impl LazyUnion {
    fn new(members: Vec<Member>) -> LazyUnion {
        let size_hint = members
            .iter()
            .map(Member::size_hint)
            .fold(0u32, u32::saturating_add);
        let mut u = LazyUnion {
            members,
            start: 0,
            windowed: false,
            bits: [0; (WINDOW / 64) as usize],
            doc: 0,
            size_hint,
        };
        u.point(0);
        u
    }

    /// Lands on the first document at or after `target` that a member
    /// holds. Members found exactly at `target` end the search early; the
    /// rest may stay behind `target`.
    fn point(&mut self, target: DocId) {
        self.windowed = false;
        let mut min = TERMINATED;
        let mut i = 0;
        while i < self.members.len() {
            let m = &mut self.members[i];
            let d = if m.doc() < target {
                m.seek(target)
            } else {
                m.doc()
            };
            if d == TERMINATED {
                self.members.swap_remove(i);
                continue;
            }
            if d == target {
                self.doc = target;
                return;
            }
            min = min.min(d);
            i += 1;
        }
        self.doc = min;
    }

    /// Fills the window that starts at the first match at or after `target`
    /// and moves to that match.
    fn fill_from(&mut self, target: DocId) {
        self.point(target);
        if self.doc == TERMINATED {
            return;
        }
        let first = self.doc;
        self.start = first;
        self.windowed = true;
        let end = first.saturating_add(WINDOW);
        self.bits = [0; (WINDOW / 64) as usize];
        for m in &mut self.members {
            let mut d = if m.doc() < first {
                m.seek(first)
            } else {
                m.doc()
            };
            while d < end {
                let i = d - first;
                self.bits[(i / 64) as usize] |= 1 << (i % 64);
                d = m.advance();
            }
        }
        self.members.retain(|m| m.doc() != TERMINATED);
    }

    fn window_end(&self) -> DocId {
        self.start.saturating_add(WINDOW)
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
        if self.windowed {
            if target < self.window_end()
                && let Some(d) = self.next_in_window(target - self.start)
            {
                self.doc = d;
                return d;
            }
            // Every term is at or past the window's end already.
            self.fill_from(self.window_end());
        } else {
            self.fill_from(target);
        }
        self.doc
    }

    fn seek(&mut self, target: DocId) -> DocId {
        if self.doc == TERMINATED || target <= self.doc {
            return self.doc;
        }
        if self.windowed {
            if target < self.window_end()
                && let Some(d) = self.next_in_window(target - self.start)
            {
                self.doc = d;
                return d;
            }
            self.point(target.max(self.window_end()));
        } else {
            self.point(target);
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

    /// Seeks and advances interleaved (window and point modes alternate).
    #[test]
    fn mixed_seek_and_advance() {
        let mut b = Schema::builder();
        let f = b.add_text_field("w", STRING);
        let index = Index::create_in_ram(b.build());
        let mut w = index.writer_with_num_threads(1, 15_000_000).unwrap();
        let mut words = Vec::new();
        for i in 0..30_000u32 {
            let word = format!("p{}", (i * 7919) % 50);
            let mut d = TantivyDocument::new();
            d.add_text(f, if i % 3 == 0 { word.as_str() } else { "other" });
            w.add_document(d).unwrap();
            words.push(if i % 3 == 0 { word } else { "other".into() });
        }
        w.commit().unwrap();
        let searcher = index.reader().unwrap().searcher();
        let seg = searcher.segment_reader(0);
        let want: Vec<DocId> = (0..30_000u32)
            .filter(|&i| words[i as usize].starts_with('p'))
            .collect();
        let q = PrefixQuery::new(f, "p".into());
        let weight = q
            .weight(EnableScoring::disabled_from_searcher(&searcher))
            .unwrap();
        let mut s = weight.scorer(seg, 1.0).unwrap();
        let mut x: u64 = 3;
        let mut got = vec![s.doc()];
        while s.doc() != TERMINATED {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let d = if x.is_multiple_of(2) {
                s.advance()
            } else {
                let t = s.doc() + 1 + (x % 9000) as u32;
                let d = s.seek(t);
                assert_eq!(
                    d,
                    want.iter().copied().find(|&w| w >= t).unwrap_or(TERMINATED)
                );
                // what was skipped is not compared below
                got.retain(|&g| g < t);
                d
            };
            if d != TERMINATED {
                got.push(d);
            }
        }
        for g in &got {
            assert!(want.binary_search(g).is_ok(), "{g}");
        }
        let mut sorted = got.clone();
        sorted.dedup();
        assert_eq!(sorted, got, "no doc twice, in order");
    }

    #[test]
    fn upper_bounds() {
        assert_eq!(upper_bound(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(upper_bound(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(upper_bound(b"\xff\xff"), None);
    }
}
