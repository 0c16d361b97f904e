//! Deterministic embedding vectors: the same model and input always give the same unit vector,
//! written straight into the response body.
//!
//! Determinism lets tests compare answers across nodes and runs; unit length (L2 norm 1) is what
//! Ollama returns and what clients computing cosine similarity assume.
//!
//! Speed matters here: formatting 1,024 floats per request costs more than everything else a node
//! does, and the mock must never be what limits a benchmark. So each model gets one random unit
//! vector, formatted once ([`EmbeddingTable`]); an input's vector is that vector rotated by an
//! offset and with signs flipped, both derived from a hash of the input. Rotation and sign flips
//! keep the norm at exactly 1, different inputs get nearly orthogonal vectors (random signs), and
//! writing one is a string copy.

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

/// 64-bit FNV-1a: a stable hash (unlike `DefaultHasher`, whose algorithm may change).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// SplitMix64: spreads a seed into a sequence of unrelated 64-bit words.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// One model's base unit vector, with each component formatted once.
#[derive(Debug, Clone)]
pub struct EmbeddingTable {
    base: Vec<f32>,
    /// `base[i]` as JSON text, without its sign.
    magnitude_text: Vec<String>,
}

impl EmbeddingTable {
    /// The table of `model` with vectors of length `dim`.
    pub fn new(model: &str, dim: usize) -> Self {
        let mut rng = SmallRng::seed_from_u64(fnv1a(model.as_bytes()));
        let mut base: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let norm = base.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            base.iter_mut().for_each(|x| *x /= norm);
        }
        let magnitude_text = base.iter().map(|x| x.abs().to_string()).collect();
        Self {
            base,
            magnitude_text,
        }
    }

    /// The table of `model` with vectors of length `dim`, built once per process and shared by
    /// every node that serves the model: a table holds a formatted text per component (tens of
    /// KiB for a 1,024-dimension model), and a process simulating 64 nodes would otherwise hold
    /// 64 copies of identical tables.
    pub fn shared(model: &str, dim: usize) -> std::sync::Arc<Self> {
        use std::collections::HashMap;
        use std::sync::{Arc, Mutex, OnceLock, PoisonError};
        type Tables = Mutex<HashMap<(String, usize), Arc<EmbeddingTable>>>;
        static TABLES: OnceLock<Tables> = OnceLock::new();
        let mut tables = TABLES
            .get_or_init(Tables::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let table = tables
            .entry((model.to_owned(), dim))
            .or_insert_with(|| Arc::new(Self::new(model, dim)));
        Arc::clone(table)
    }

    /// Vector length.
    pub fn dim(&self) -> usize {
        self.base.len()
    }

    /// Rotation offset and sign stream of `input`.
    fn layout(&self, input: &str) -> (usize, u64) {
        let h = splitmix64(fnv1a(input.as_bytes()));
        (
            (h as usize) % self.base.len().max(1),
            splitmix64(h ^ 0x5151),
        )
    }

    /// The vector of `input`.
    pub fn vector(&self, input: &str) -> Vec<f32> {
        let (offset, signs) = self.layout(input);
        let mut word = signs;
        (0..self.base.len())
            .map(|i| {
                if i % 64 == 0 && i > 0 {
                    word = splitmix64(signs ^ (i / 64) as u64);
                }
                let j = (offset + i) % self.base.len();
                let flip = (word >> (i % 64)) & 1 == 1;
                if flip { -self.base[j] } else { self.base[j] }
            })
            .collect()
    }

    /// Appends the vector of `input` to `out` as a JSON array, identical to serialising
    /// [`EmbeddingTable::vector`]'s floats.
    pub fn write_json(&self, input: &str, out: &mut Vec<u8>) {
        let (offset, signs) = self.layout(input);
        let mut word = signs;
        out.push(b'[');
        for i in 0..self.base.len() {
            if i % 64 == 0 && i > 0 {
                word = splitmix64(signs ^ (i / 64) as u64);
            }
            if i > 0 {
                out.push(b',');
            }
            let j = (offset + i) % self.base.len();
            let flip = (word >> (i % 64)) & 1 == 1;
            if (self.base[j] < 0.0) != flip {
                out.push(b'-');
            }
            out.extend_from_slice(self.magnitude_text[j].as_bytes());
        }
        out.push(b']');
    }
}

/// Ollama-like token estimate: about four characters a token, at least one for non-empty text.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_deterministic_normalised_and_distinct() {
        let table = EmbeddingTable::new("all-minilm:latest", 384);
        let a = table.vector("hello");
        assert_eq!(a.len(), 384);
        assert_eq!(
            a,
            EmbeddingTable::new("all-minilm:latest", 384).vector("hello")
        );
        let b = table.vector("hello!");
        assert_ne!(a, b);
        assert_ne!(
            a,
            EmbeddingTable::new("nomic-embed-text:latest", 384).vector("hello")
        );
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
        let cosine: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!(
            cosine.abs() < 0.3,
            "different inputs should be far apart, cosine {cosine}"
        );
    }

    #[test]
    fn json_matches_the_vector() {
        let table = EmbeddingTable::new("mxbai-embed-large:latest", 1024);
        for input in ["", "x", "a longer chunk of text"] {
            let mut out = Vec::new();
            table.write_json(input, &mut out);
            let parsed: Vec<f32> = serde_json::from_slice(&out).unwrap();
            assert_eq!(parsed, table.vector(input), "input {input:?}");
        }
    }

    #[test]
    fn tokens_are_estimated_from_length() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abc"), 1);
        assert_eq!(estimate_tokens(&"test".repeat(100)), 100);
    }
}
