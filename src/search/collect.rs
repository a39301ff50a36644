//! The newest hits of a query without visiting every match.
//!
//! Hits are ordered by the `sort` fast field (time, newest first). tantivy's
//! own top-k by a fast field reads the value of every matching document, so
//! a frequent word of a user with 100,000 messages cost 66,000 reads for 20
//! hits. Documents arrive in the index roughly in time order (the outbox is
//! drained in write order, a rebuild walks conversations by their time-ordered
//! ids), so documents close in id are close in time. Each segment is cut
//! into blocks of [`BLOCK`] documents whose largest `sort` value is computed
//! once per segment ([`BlockMaxima`]); blocks are visited in order of that
//! maximum, in batches that double in size, and the search stops as soon as
//! the k-th best hit is at least as new as the newest document any unvisited
//! block could hold. The sort values returned are exactly what a full scan
//! gives, whatever the order of the documents (among documents with equal
//! sort keys, a different one may fill the last place); the order only
//! decides how early it stops.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};

use tantivy::columnar::ColumnValues;
use tantivy::index::SegmentId;
use tantivy::query::{EnableScoring, Query};
use tantivy::{DocAddress, DocId, DocSet, Searcher, SegmentReader, TERMINATED};

/// Documents per block.
pub const BLOCK: u32 = 2048;

/// Largest `sort` value of each block of each segment seen, by segment id.
/// Segments never change (deletes only hide documents, and a maximum stays
/// an upper bound), so an entry is computed once and dropped when its
/// segment is merged away.
#[derive(Default)]
pub struct BlockMaxima {
    by_segment: Mutex<HashMap<SegmentId, Arc<[i64]>>>,
}

impl BlockMaxima {
    fn get(&self, reader: &SegmentReader, col: &dyn ColumnValues<i64>) -> Arc<[i64]> {
        let id = reader.segment_id();
        if let Some(m) = self
            .by_segment
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            return m.clone();
        }
        let max_doc = reader.max_doc();
        let mut buf = vec![0i64; BLOCK as usize];
        let maxima: Arc<[i64]> = (0..max_doc.div_ceil(BLOCK))
            .map(|b| {
                let start = b * BLOCK;
                let n = (max_doc - start).min(BLOCK) as usize;
                col.get_range(start as u64, &mut buf[..n]);
                buf[..n].iter().copied().max().unwrap_or(i64::MIN)
            })
            .collect();
        self.by_segment
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, maxima.clone());
        maxima
    }

    /// Forgets segments that are no longer in the index.
    fn keep_only(&self, searcher: &Searcher) {
        let mut map = self.by_segment.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > searcher.segment_readers().len() {
            let live: std::collections::HashSet<SegmentId> = searcher
                .segment_readers()
                .iter()
                .map(|r| r.segment_id())
                .collect();
            map.retain(|id, _| live.contains(id));
        }
    }
}

/// The `k` matches of `query` with the largest `sort_field` values, largest
/// first (ties: lower segment, then lower doc first).
///
/// `candidates`: how many documents at most can match (the doc count of the
/// query's most selective required term, e.g. the user filter). It sizes the
/// first batch, so that a user with few documents spread over a big index
/// starts with enough blocks to fill a page instead of doubling up to them
/// one scorer at a time. It affects speed only, never the result.
pub fn newest_first(
    searcher: &Searcher,
    query: &dyn Query,
    sort_field: &str,
    k: usize,
    candidates: u64,
    maxima: &BlockMaxima,
) -> tantivy::Result<Vec<(i64, DocAddress)>> {
    if k == 0 {
        return Ok(Vec::new());
    }
    let weight = query.weight(EnableScoring::disabled_from_searcher(searcher))?;
    let readers = searcher.segment_readers();
    let mut cols: Vec<Arc<dyn ColumnValues<i64>>> = Vec::with_capacity(readers.len());
    // (block maximum, segment, block), newest first.
    let mut blocks: Vec<(i64, u32, u32)> = Vec::new();
    for (s, reader) in readers.iter().enumerate() {
        let col = reader
            .fast_fields()
            .i64(sort_field)?
            .first_or_default_col(i64::MIN);
        let m = maxima.get(reader, col.as_ref());
        blocks.extend(m.iter().enumerate().map(|(b, &v)| (v, s as u32, b as u32)));
        cols.push(col);
    }
    maxima.keep_only(searcher);
    blocks.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));

    // Min-heap of the best k so far: (sort, Reverse(segment), Reverse(doc)),
    // so that among equal values the earlier document ranks higher.
    type Entry = Reverse<(i64, Reverse<u32>, Reverse<DocId>)>;
    let mut heap: BinaryHeap<Entry> = BinaryHeap::with_capacity(k + 1);
    let floor = |heap: &BinaryHeap<Entry>| -> Option<i64> {
        (heap.len() >= k)
            .then(|| heap.peek().map(|e| e.0.0))
            .flatten()
    };
    let mut i = 0;
    let mut batch = first_batch(k, candidates, searcher);
    let mut chunk: Vec<(u32, u32, i64)> = Vec::new();
    while i < blocks.len() {
        if floor(&heap).is_some_and(|f| f >= blocks[i].0) {
            break;
        }
        let end = (i + batch).min(blocks.len());
        chunk.clear();
        chunk.extend(blocks[i..end].iter().map(|&(m, s, b)| (s, b, m)));
        chunk.sort_unstable();
        let mut at = 0;
        while at < chunk.len() {
            let seg = chunk[at].0;
            let reader = &readers[seg as usize];
            let col = &cols[seg as usize];
            let alive = reader.alive_bitset();
            let max_doc = reader.max_doc();
            let mut scorer = weight.scorer(reader, 1.0)?;
            while at < chunk.len() && chunk[at].0 == seg {
                let (_, b, block_max) = chunk[at];
                at += 1;
                if floor(&heap).is_some_and(|f| f >= block_max) {
                    continue;
                }
                let start = b * BLOCK;
                let stop = (start + BLOCK).min(max_doc);
                let mut doc = scorer.doc();
                if doc < start {
                    doc = scorer.seek(start);
                }
                while doc < stop {
                    if alive.is_none_or(|a| a.is_alive(doc)) {
                        let v = col.get_val(doc);
                        let e = Reverse((v, Reverse(seg), Reverse(doc)));
                        if heap.len() < k {
                            heap.push(e);
                        } else if heap.peek().is_some_and(|min| e < *min) {
                            heap.pop();
                            heap.push(e);
                        }
                    }
                    doc = scorer.advance();
                }
                if doc == TERMINATED {
                    // Nothing further in this segment.
                    while at < chunk.len() && chunk[at].0 == seg {
                        at += 1;
                    }
                }
            }
        }
        i = end;
        batch *= 2;
    }
    let mut out: Vec<(i64, DocAddress)> = heap
        .into_sorted_vec()
        .into_iter()
        .map(|Reverse((v, Reverse(s), Reverse(d)))| (v, DocAddress::new(s, d)))
        .collect();
    // into_sorted_vec of Reverse entries is best first already.
    out.truncate(k);
    Ok(out)
}

/// Blocks for the first batch: enough that the candidates they hold, if
/// spread evenly, fill `k` hits; a power of two from 1 to 64.
fn first_batch(k: usize, candidates: u64, searcher: &Searcher) -> usize {
    let docs: u64 = searcher
        .segment_readers()
        .iter()
        .map(|r| u64::from(r.max_doc()))
        .sum();
    if docs == 0 || candidates == 0 {
        return 1;
    }
    let per_block = candidates as f64 * f64::from(BLOCK) / docs as f64;
    let blocks = (k as f64 / per_block).ceil().clamp(1.0, 64.0) as usize;
    blocks.next_power_of_two().min(64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::collector::TopDocs;
    use tantivy::query::{AllQuery, TermQuery};
    use tantivy::schema::{FAST, IndexRecordOption, STRING, Schema};
    use tantivy::{Index, Order, TantivyDocument, Term};

    /// Same hits as tantivy's full top-k by the fast field, for documents
    /// in time order, in reverse order, shuffled, with deletes and ties, in
    /// several segments, for every k.
    #[test]
    fn equals_a_full_scan() {
        for layout in ["ascending", "descending", "shuffled", "ties"] {
            let mut b = Schema::builder();
            let w = b.add_text_field("w", STRING);
            let id = b.add_text_field("id", STRING);
            let sort = b.add_i64_field("sort", FAST);
            let index = Index::create_in_ram(b.build());
            let mut writer = index.writer_with_num_threads(1, 15_000_000).unwrap();
            let n = 30_000i64;
            let mut x: u64 = 99;
            for i in 0..n {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let v = match layout {
                    "ascending" => i,
                    "descending" => n - i,
                    "shuffled" => (x % 1_000_000) as i64,
                    _ => i / 100,
                };
                let mut d = TantivyDocument::new();
                d.add_text(w, if x.is_multiple_of(3) { "a" } else { "b" });
                d.add_text(id, i.to_string());
                d.add_i64(sort, v);
                writer.add_document(d).unwrap();
                if i % 9_000 == 8_999 {
                    writer.commit().unwrap();
                }
            }
            writer.commit().unwrap();
            for i in (0..n).step_by(7) {
                writer.delete_term(Term::from_field_text(id, &i.to_string()));
            }
            writer.commit().unwrap();
            let searcher = index.reader().unwrap().searcher();
            assert!(searcher.segment_readers().len() > 1);
            let maxima = BlockMaxima::default();
            let queries: Vec<Box<dyn Query>> = vec![
                Box::new(TermQuery::new(
                    Term::from_field_text(w, "a"),
                    IndexRecordOption::Basic,
                )),
                Box::new(AllQuery),
            ];
            for q in &queries {
                for k in [1, 2, 21, 500, 40_000] {
                    let candidates = if k == 1 { 0 } else { n as u64 / 3 };
                    let got = newest_first(&searcher, q.as_ref(), "sort", k, candidates, &maxima)
                        .unwrap();
                    let want: Vec<(i64, DocAddress)> = searcher
                        .search(
                            q.as_ref(),
                            &TopDocs::with_limit(k).order_by_fast_field::<i64>("sort", Order::Desc),
                        )
                        .unwrap();
                    let vals = |v: &[(i64, DocAddress)]| v.iter().map(|x| x.0).collect::<Vec<_>>();
                    assert_eq!(vals(&got), vals(&want), "{layout} k={k}");
                    if layout != "ties" {
                        assert_eq!(got, want, "{layout} k={k}");
                    }
                }
            }
        }
    }
}
