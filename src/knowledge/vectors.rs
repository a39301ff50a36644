//! Vectors for hybrid retrieval, when an embedding model is configured:
//! each chunk's embedding, normalized to length 1 and quantized to i8 with
//! one scale per vector (1 byte per dimension: 1.5 KB for 1,536
//! dimensions instead of 6 KB of f32), stored per document; a question is
//! embedded once and compared with the chunks of the documents in scope by
//! brute force (dot products of i8 against f32), and the ranking is fused
//! with BM25's by reciprocal rank.
//!
//! How it scales: the comparison reads every in-scope chunk's vector from
//! the store, `chunks × dims` multiply-adds. At most
//! [`MAX_SCANNED_CHUNKS`] chunks are compared per question (about 75 MB of
//! vectors at 1,536 dimensions); documents past that in a very large
//! collection are ranked by BM25 alone.

use std::collections::HashMap;
use uuid::Uuid;

use crate::providers::EmbeddingRequest;
use crate::providers::registry::Registry;
use crate::store::SharedStore;
use crate::store::knowledge::{Chunk, ChunkVectors, DocumentRecord};

/// Texts per embeddings request.
const BATCH: usize = 32;
/// Chunks compared with a question, at most.
pub const MAX_SCANNED_CHUNKS: usize = 50_000;
/// The usual constant of reciprocal rank fusion.
const RRF_K: f32 = 60.0;

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// One vector as i8 and its scale.
pub fn quantize(v: &[f32]) -> (Vec<u8>, f32) {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let bytes = v
        .iter()
        .map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8 as u8)
        .collect();
    (bytes, scale)
}

/// The embeddings of a document's chunks, quantized.
pub async fn embed_chunks(
    providers: &Registry,
    model: &str,
    chunks: &[Chunk],
) -> Result<ChunkVectors, String> {
    let Some((_, provider)) = providers.resolve_model(model) else {
        return Err(format!("no provider offers the embedding model {model:?}"));
    };
    let file_id = chunks.first().map(|c| c.file_id).unwrap_or_default();
    let mut out = ChunkVectors {
        file_id,
        model: model.to_string(),
        dims: 0,
        scales: Vec::with_capacity(chunks.len()),
        data: Vec::new(),
    };
    for batch in chunks.chunks(BATCH) {
        let req = EmbeddingRequest {
            model: model.to_string(),
            input: batch.iter().map(|c| c.text.clone()).collect(),
            ..Default::default()
        };
        let e = provider.embed(req).await.map_err(|e| e.to_string())?;
        for mut v in e.vectors {
            if out.dims == 0 {
                out.dims = v.len() as u32;
            }
            if v.len() as u32 != out.dims || v.is_empty() {
                return Err("the embedding model answered vectors of different sizes".into());
            }
            normalize(&mut v);
            let (bytes, scale) = quantize(&v);
            out.data.extend(bytes);
            out.scales.push(scale);
        }
    }
    if out.scales.len() != chunks.len() {
        return Err("the embedding model answered too few vectors".into());
    }
    Ok(out)
}

/// The chunks of `docs` closest to `question`, best first, at most `want`.
pub async fn rank(
    store: &SharedStore,
    providers: &Registry,
    owner: Uuid,
    docs: &[DocumentRecord],
    model: &str,
    question: &str,
    want: usize,
) -> Result<Vec<(Uuid, u32)>, String> {
    let with: Vec<&DocumentRecord> = docs
        .iter()
        .filter(|d| d.embedding_model.as_deref() == Some(model))
        .collect();
    if with.is_empty() {
        return Ok(Vec::new());
    }
    let Some((_, provider)) = providers.resolve_model(model) else {
        return Err(format!("no provider offers the embedding model {model:?}"));
    };
    let req = EmbeddingRequest {
        model: model.to_string(),
        input: vec![question.to_string()],
        ..Default::default()
    };
    let mut q = provider
        .embed(req)
        .await
        .map_err(|e| e.to_string())?
        .vectors
        .into_iter()
        .next()
        .ok_or("no vector for the question")?;
    normalize(&mut q);
    let mut scored: Vec<(f32, Uuid, u32)> = Vec::new();
    let mut scanned = 0usize;
    for d in with {
        if scanned + d.chunks as usize > MAX_SCANNED_CHUNKS {
            break;
        }
        let Ok(Some(v)) = store.get_vectors(owner, d.file_id).await else {
            continue;
        };
        if v.dims as usize != q.len() {
            continue;
        }
        scanned += v.scales.len();
        for (i, (row, scale)) in v.data.chunks(v.dims as usize).zip(&v.scales).enumerate() {
            let dot: f32 = row
                .iter()
                .zip(&q)
                .map(|(b, x)| f32::from(*b as i8) * x)
                .sum();
            scored.push((dot * scale, d.file_id, i as u32));
        }
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    Ok(scored
        .into_iter()
        .take(want)
        .map(|(_, f, o)| (f, o))
        .collect())
}

/// Reciprocal rank fusion of two rankings: each chunk scores
/// `Σ 1 / (60 + rank)` over the lists it is in.
pub fn fuse(a: &[(Uuid, u32)], b: &[(Uuid, u32)]) -> Vec<(Uuid, u32)> {
    let mut score: HashMap<(Uuid, u32), f32> = HashMap::new();
    let mut first_seen: Vec<(Uuid, u32)> = Vec::new();
    for list in [a, b] {
        for (rank, key) in list.iter().enumerate() {
            let e = score.entry(*key).or_insert_with(|| {
                first_seen.push(*key);
                0.0
            });
            *e += 1.0 / (RRF_K + rank as f32 + 1.0);
        }
    }
    first_seen.sort_by(|x, y| score[y].total_cmp(&score[x]));
    first_seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantized_dot_products_keep_their_order() {
        let mut a = vec![0.3, -0.2, 0.9, 0.1];
        let mut b = vec![0.25, -0.1, 0.95, 0.0];
        let mut c = vec![-0.9, 0.4, 0.1, 0.2];
        for v in [&mut a, &mut b, &mut c] {
            normalize(v);
        }
        let dot = |x: &[f32], (bytes, scale): &(Vec<u8>, f32)| -> f32 {
            bytes
                .iter()
                .zip(x)
                .map(|(q, v)| f32::from(*q as i8) * v)
                .sum::<f32>()
                * scale
        };
        let qb = quantize(&b);
        let qc = quantize(&c);
        let exact_b: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &qb) - exact_b).abs() < 0.02);
        assert!(dot(&a, &qb) > dot(&a, &qc));
    }

    #[test]
    fn fusion_rewards_agreement() {
        let f = |n: u128| (Uuid::from_u128(n), 0);
        let fused = fuse(&[f(1), f(2), f(3)], &[f(3), f(4), f(1)]);
        assert_eq!(fused[0], f(1));
        assert_eq!(fused[1], f(3));
        assert_eq!(fused.len(), 4);
    }
}
