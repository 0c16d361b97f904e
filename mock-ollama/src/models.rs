//! The models a node serves, and Ollama's name resolution (`name` and `name:latest` are the same
//! model).
//!
//! The default set has the three embedding models FlockParser-style workloads use, with their real
//! dimensions, and one small chat model, so both embedding and generation paths can be exercised
//! without configuration.

/// What a model can do; decides which endpoints accept it. On the wire (the control API's
/// catalogue) `"generation"` or `{"embedding": {"dim": 384}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// An embedding model producing vectors of this dimension.
    Embedding {
        /// Vector length.
        dim: usize,
    },
    /// A text-generation model (`/api/generate`, `/api/chat`).
    #[default]
    Generation,
}

/// One model as `/api/tags` and `/api/show` describe it. Over the control API only `name` is
/// required; the rest default to a 1 GiB Q4_K_M llama chat model without a KV cache.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Full name with tag, e.g. `mxbai-embed-large:latest`.
    pub name: String,
    /// Embedding or generation.
    #[serde(default)]
    pub kind: ModelKind,
    /// Architecture family (`bert`, `llama`, ...).
    #[serde(default = "defaults::family")]
    pub family: String,
    /// Parameter count as Ollama prints it (`334M`, `3.2B`).
    #[serde(default = "defaults::parameter_size")]
    pub parameter_size: String,
    /// Quantisation label (`F16`, `Q4_K_M`).
    #[serde(default = "defaults::quantization")]
    pub quantization: String,
    /// Size on disk in bytes (the weights a runner holds in memory).
    #[serde(default = "defaults::size")]
    pub size: u64,
    /// The context it was trained with: a longer `num_ctx` is cut to this.
    #[serde(default = "defaults::context_length")]
    pub context_length: u64,
    /// KV-cache bytes per token of context (the runner's memory is `size` plus this times
    /// `num_ctx` times its slots); 0 leaves the cache out.
    #[serde(default)]
    pub kv_bytes_per_token: u64,
}

/// The control API's defaults for a model described by its name alone.
mod defaults {
    pub fn family() -> String {
        "llama".to_owned()
    }
    pub fn parameter_size() -> String {
        "1B".to_owned()
    }
    pub fn quantization() -> String {
        "Q4_K_M".to_owned()
    }
    pub fn size() -> u64 {
        1 << 30
    }
    pub fn context_length() -> u64 {
        crate::api::validate::MAX_CONTEXT
    }
}

impl ModelSpec {
    /// An embedding model; `name` gets `:latest` when it has no tag.
    pub fn embedding(name: &str, dim: usize, family: &str, params: &str, size: u64) -> Self {
        Self {
            name: with_tag(name),
            kind: ModelKind::Embedding { dim },
            family: family.to_owned(),
            parameter_size: params.to_owned(),
            quantization: "F16".to_owned(),
            size,
            // Not the models' own training contexts: long enough that no `num_ctx` is cut.
            context_length: crate::api::validate::MAX_CONTEXT,
            kv_bytes_per_token: 0,
        }
    }

    /// A generation model; `name` gets `:latest` when it has no tag.
    pub fn generation(name: &str, family: &str, params: &str, size: u64) -> Self {
        Self {
            name: with_tag(name),
            kind: ModelKind::Generation,
            family: family.to_owned(),
            parameter_size: params.to_owned(),
            quantization: "Q4_K_M".to_owned(),
            size,
            context_length: crate::api::validate::MAX_CONTEXT,
            kv_bytes_per_token: 0,
        }
    }

    /// Parses a `--model` flag: `NAME` (a chat model), `NAME=chat` or `NAME=embed:DIM`, then
    /// optionally `,size=BYTES` (weights, `4.9GB`), `,kv=BYTES` (KV cache per token of
    /// context) and `,ctx=TOKENS` (training context), as `llama3.1:8b=chat,size=4.9GB,kv=128KiB`.
    pub fn parse_flag(text: &str) -> Result<Self, String> {
        let (head, extras) = text.split_once(',').unwrap_or((text, ""));
        let (name, kind) = head.split_once('=').unwrap_or((head, "chat"));
        if name.is_empty() {
            return Err(format!("model flag {text:?} has no name"));
        }
        let mut spec = match kind.split_once(':') {
            None if kind == "chat" => Self::generation(name, "llama", "1B", 1 << 30),
            Some(("embed", dim)) => {
                let dim: usize = dim
                    .parse()
                    .ok()
                    .filter(|d| *d > 0)
                    .ok_or_else(|| format!("invalid embedding dimension in {text:?}"))?;
                Self::embedding(name, dim, "bert", "100M", 200 << 20)
            }
            _ => {
                return Err(format!(
                    "invalid model flag {text:?}: expected NAME, NAME=chat or NAME=embed:DIM"
                ));
            }
        };
        for extra in extras.split(',').filter(|e| !e.is_empty()) {
            let (key, value) = extra
                .split_once('=')
                .ok_or_else(|| format!("expected KEY=VALUE in {text:?}, got {extra:?}"))?;
            let bytes = || crate::residency::parse_bytes(value);
            match key {
                "size" => spec.size = bytes()?,
                "kv" => spec.kv_bytes_per_token = bytes()?,
                "ctx" => {
                    spec.context_length =
                        value.parse().ok().filter(|c| *c >= 4).ok_or_else(|| {
                            format!("invalid context length {value:?} in {text:?}")
                        })?
                }
                _ => return Err(format!("unknown model setting {key:?} in {text:?}")),
            }
        }
        Ok(spec)
    }

    /// Whether this is an embedding model.
    pub fn is_embedding(&self) -> bool {
        matches!(self.kind, ModelKind::Embedding { .. })
    }

    /// A stable fake digest (64 hex characters) derived from the name.
    pub fn digest(&self) -> String {
        let h = crate::embedding::fnv1a(self.name.as_bytes());
        format!(
            "{:016x}{:016x}{:016x}{:016x}",
            h,
            h.rotate_left(16),
            h.rotate_left(32),
            h.rotate_left(48)
        )
    }
}

/// Appends `:latest` to a name without a tag.
pub fn with_tag(name: &str) -> String {
    if name.contains(':') {
        name.to_owned()
    } else {
        format!("{name}:latest")
    }
}

/// The models every node serves unless configured otherwise.
pub fn default_models() -> Vec<ModelSpec> {
    vec![
        ModelSpec::embedding("mxbai-embed-large", 1024, "bert", "334M", 669_615_493),
        ModelSpec::embedding("nomic-embed-text", 768, "nomic-bert", "137M", 274_302_450),
        ModelSpec::embedding("all-minilm", 384, "bert", "23M", 45_960_996),
        // 28 layers x 8 KV heads x 128 dimensions x (K and V) x 2 bytes (f16), from the
        // model's GGUF metadata as Ollama's library page lists it.
        ModelSpec {
            kv_bytes_per_token: 28 * 8 * 128 * 2 * 2,
            ..ModelSpec::generation("llama3.2", "llama", "3.2B", 2_019_393_189)
        },
    ]
}

/// Finds `requested` among `models`, with or without its `:latest` tag, as Ollama does.
pub fn resolve<'a>(models: &'a [ModelSpec], requested: &str) -> Option<(usize, &'a ModelSpec)> {
    let full = with_tag(requested);
    models.iter().enumerate().find(|(_, m)| m.name == full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_with_or_without_latest() {
        let models = default_models();
        assert_eq!(
            resolve(&models, "mxbai-embed-large").unwrap().1.name,
            "mxbai-embed-large:latest"
        );
        assert_eq!(resolve(&models, "llama3.2:latest").unwrap().0, 3);
        assert!(resolve(&models, "llama3.2:70b").is_none());
        assert!(resolve(&models, "").is_none());
    }

    #[test]
    fn default_dimensions_are_the_real_ones() {
        let dims: Vec<_> = default_models()
            .iter()
            .filter_map(|m| match m.kind {
                ModelKind::Embedding { dim } => Some(dim),
                ModelKind::Generation => None,
            })
            .collect();
        assert_eq!(dims, [1024, 768, 384]);
    }

    #[test]
    fn model_flags_parse() {
        assert_eq!(
            ModelSpec::parse_flag("qwen3").unwrap().kind,
            ModelKind::Generation
        );
        assert_eq!(
            ModelSpec::parse_flag("bge-m3=embed:1024").unwrap().kind,
            ModelKind::Embedding { dim: 1024 }
        );
        assert!(ModelSpec::parse_flag("x=embed:0").is_err());
        assert!(ModelSpec::parse_flag("=chat").is_err());
        assert!(ModelSpec::parse_flag("x=video").is_err());
        let sized = ModelSpec::parse_flag("llama3.1:8b=chat,size=4.9GB,kv=128KiB,ctx=131072")
            .expect("parses");
        assert_eq!(sized.name, "llama3.1:8b");
        assert_eq!(
            (sized.size, sized.kv_bytes_per_token, sized.context_length),
            (4_900_000_000, 131_072, 131_072)
        );
        assert!(ModelSpec::parse_flag("x,size=lots").is_err());
        assert!(ModelSpec::parse_flag("x,colour=red").is_err());
        assert!(ModelSpec::parse_flag("x,ctx=2").is_err());
    }
}
