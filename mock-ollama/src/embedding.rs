//! Deterministic embedding vectors: the same model and input always give the same unit vector.
//!
//! Determinism lets tests compare answers across nodes and runs; unit length (L2 norm 1) is what
//! Ollama returns and what clients computing cosine similarity assume.

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

/// 64-bit FNV-1a: a stable hash (unlike `DefaultHasher`, whose algorithm may change).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The L2-normalised vector of length `dim` for `input` under `model`.
pub fn embed(model: &str, input: &str, dim: usize) -> Vec<f32> {
    let seed = fnv1a(model.as_bytes()) ^ fnv1a(input.as_bytes()).rotate_left(17);
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut vector: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|x| *x /= norm);
    }
    vector
}

/// Ollama-like token estimate: about four characters a token, at least one for non-empty text.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_deterministic_and_normalised() {
        let a = embed("all-minilm:latest", "hello", 384);
        assert_eq!(a.len(), 384);
        assert_eq!(a, embed("all-minilm:latest", "hello", 384));
        assert_ne!(a, embed("all-minilm:latest", "hello!", 384));
        assert_ne!(a, embed("nomic-embed-text:latest", "hello", 384));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }

    #[test]
    fn tokens_are_estimated_from_length() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abc"), 1);
        assert_eq!(estimate_tokens(&"test".repeat(100)), 100);
    }
}
