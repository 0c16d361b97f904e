//! Which model each request asks for: one, or a weighted mix (`--model llama3.2=3,qwen2.5=1`)
//! drawn per request number, so two runs of a workload ask the same model for the same request.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The models requests ask for, each with its weight. Stored as its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Models(Vec<(String, u32)>);

/// Why a `--model` value was refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0:?}: expected a model name or a mix NAME=WEIGHT,NAME=WEIGHT (weights 1 to 1,000, each name once)"
)]
pub struct ModelsError(String);

impl Models {
    /// Every request asks for `name`.
    pub fn one(name: &str) -> Self {
        Self(vec![(name.to_owned(), 1)])
    }

    /// The model request `n` asks for.
    pub fn pick(&self, n: u64) -> &str {
        let total: u64 = self.0.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut draw = mock_ollama::embedding::splitmix64(n ^ 0x6d6f_6465_6c00) % total.max(1);
        for (name, weight) in &self.0 {
            match draw.checked_sub(u64::from(*weight)) {
                Some(rest) => draw = rest,
                None => return name,
            }
        }
        // The draw is below the total, so a model was returned above; an empty mix cannot be
        // built.
        self.0.first().map_or("", |(name, _)| name)
    }

    /// The first model named.
    pub fn first(&self) -> &str {
        self.0.first().map_or("", |(name, _)| name)
    }
}

impl FromStr for Models {
    type Err = ModelsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || ModelsError(text.to_owned());
        let mut models: Vec<(String, u32)> = Vec::new();
        for part in text.split(',') {
            let (name, weight) = match part.split_once('=') {
                Some((name, weight)) => {
                    let weight = weight.trim().parse::<u32>().map_err(|_| bad())?;
                    (name.trim(), weight)
                }
                None => (part.trim(), 1),
            };
            let taken = models.iter().any(|(n, _)| n == name);
            if name.is_empty() || taken || !(1..=1_000).contains(&weight) {
                return Err(bad());
            }
            models.push((name.to_owned(), weight));
        }
        Ok(Self(models))
    }
}

impl fmt::Display for Models {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [(name, _)] = &self.0[..] {
            return f.write_str(name);
        }
        let parts: Vec<String> = self.0.iter().map(|(n, w)| format!("{n}={w}")).collect();
        f.write_str(&parts.join(","))
    }
}

impl TryFrom<String> for Models {
    type Error = ModelsError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<Models> for String {
    fn from(models: Models) -> String {
        models.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mix_reads_names_and_weights_and_refuses_the_rest() {
        let mix: Models = "llama3.2:3b=3, qwen2.5=1".parse().unwrap();
        assert_eq!(mix.to_string(), "llama3.2:3b=3,qwen2.5=1");
        assert_eq!(mix.to_string().parse::<Models>().unwrap(), mix);
        assert_eq!(
            "llama3.2".parse::<Models>().unwrap(),
            Models::one("llama3.2")
        );
        for bad in ["", "a,", "a=0", "a=x", "a,a", "=3", "a=1001"] {
            assert!(bad.parse::<Models>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn requests_draw_models_by_weight_and_by_number_only() {
        let mix: Models = "a=3,b=1".parse().unwrap();
        let picks: Vec<&str> = (0..4000).map(|n| mix.pick(n)).collect();
        let a = picks.iter().filter(|m| **m == "a").count();
        assert!(
            (2800..=3200).contains(&a),
            "{a} of 4000 for a weight of 3 in 4"
        );
        assert_eq!(picks, (0..4000).map(|n| mix.pick(n)).collect::<Vec<_>>());
        assert!((0..100).all(|n| Models::one("m").pick(n) == "m"));
    }
}
