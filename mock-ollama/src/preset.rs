//! Named node profiles: a whole set of settings standing for one kind of real machine, each
//! number with where it comes from (or marked as an assumption where no source was found).
//!
//! A preset changes only what it names; everything else keeps the node's settings.

use std::time::Duration;

use crate::config::{Leave, NodeConfig};
use crate::models::ModelSpec;
use crate::residency::Limits;

/// A named node profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// One 16 GiB GPU serving 3B-8B chat models at Q4 (and one embedding model) with Ollama's
    /// scheduler defaults and its own runner (v0.24.0).
    Gpu16,
}

impl std::str::FromStr for Preset {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "gpu16" => Ok(Preset::Gpu16),
            other => Err(format!("unknown preset {other:?}; expected gpu16")),
        }
    }
}

/// KV-cache bytes per token of an f16 cache: layers x KV heads x head size x (K and V) x 2.
const fn kv_f16(layers: u64, kv_heads: u64, head_dim: u64) -> u64 {
    layers * kv_heads * head_dim * 2 * 2
}

/// A Q4_K_M chat model of `size` bytes with the given cache and training context.
fn chat(name: &str, params: &str, size: u64, kv: u64, context: u64) -> ModelSpec {
    ModelSpec {
        kv_bytes_per_token: kv,
        context_length: context,
        ..ModelSpec::generation(name, "llama", params, size)
    }
}

impl Preset {
    /// `config` with this preset's settings.
    pub fn apply(self, config: NodeConfig) -> NodeConfig {
        match self {
            Preset::Gpu16 => gpu16(config),
        }
    }
}

fn gpu16(mut config: NodeConfig) -> NodeConfig {
    // Sizes as ollama.com/library lists the default (Q4_K_M) tags, to the precision it shows
    // (llama3.2's exact bytes are the mock's default model's); caches from each model's
    // published architecture (layers, KV heads, head size); contexts as trained.
    config.models = vec![
        chat(
            "llama3.2:3b",
            "3.2B",
            2_019_393_189,
            kv_f16(28, 8, 128),
            131_072,
        ),
        chat(
            "llama3.1:8b",
            "8.0B",
            4_900_000_000,
            kv_f16(32, 8, 128),
            131_072,
        ),
        chat(
            "qwen2.5:7b",
            "7.6B",
            4_700_000_000,
            kv_f16(28, 4, 128),
            32_768,
        ),
        chat(
            "mistral:7b",
            "7.2B",
            4_100_000_000,
            kv_f16(32, 8, 128),
            32_768,
        ),
        ModelSpec::embedding("nomic-embed-text", 768, "nomic-bert", "137M", 274_302_450),
    ];
    config.residency = Limits {
        // `defaultModelsPerGPU` in server/sched.go (ollama/ollama@000ce02).
        max_loaded: Some(3),
        memory: Some(16 << 30),
    };
    // Ollama's scheduler loads one model at a time on a GPU (`filterGPUsWithoutLoadingModels`).
    config.serial_loads = true;
    // Decode: 20 ms a token (50 tokens/s), inside the 40-60 tokens/s reported for 8B models at
    // Q4_K_M on an RTX 4060 Ti 16 GB (autolearningagents.com/ollama/ollama-performance.php).
    config.latency.per_token = Duration::from_millis(20);
    // Prompt evaluation: 2,000 tokens/s, the order llama.cpp's batched bench measured for a 7B
    // model with 512-token prompts (1,600-2,100 tokens/s, ggml-org/llama.cpp#3776).
    config.latency.prompt_rate = Some(2_000.0);
    // Loads: an assumption, not a measurement (no source found): 1 s to start a runner plus the
    // weights at 1 GB/s from disk; set --load-time/--load-rate from `ollama run --verbose`.
    config.load_time = Duration::from_secs(1);
    config.load_rate = Some(1e9);
    // Ollama's own runner keeps a prompt cache per slot and stops a generation only at its
    // next token (v0.24.0; see `config::Leave`).
    config.prompt_cache = true;
    config.leave = Leave::AtNextToken;
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The preset's three biggest models fit its GPU at the default context, a fourth does
    /// not: the memory limit, not only the runner count, can decide an eviction.
    #[test]
    fn gpu16_holds_three_models_and_evicts_for_a_fourth() {
        let config = Preset::Gpu16.apply(NodeConfig::default());
        config.validate().expect("valid");
        let footprint =
            |m: &ModelSpec| crate::residency::footprint(m.size, m.kv_bytes_per_token, 4096, 1);
        let chat: Vec<u64> = config
            .models
            .iter()
            .filter(|m| !m.is_embedding())
            .map(footprint)
            .collect();
        let memory = config.residency.memory.expect("set");
        let all: u64 = chat.iter().sum();
        assert!(all > memory, "four chat models do not fit");
        assert!(all - chat[0] <= memory, "the three largest do");
        assert_eq!("gpu16".parse::<Preset>(), Ok(Preset::Gpu16));
        assert!("gpu99".parse::<Preset>().is_err());
    }
}
