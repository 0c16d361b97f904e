//! Real LLM serving traces, read and shaped for replay: when each request arrives, how long its
//! prompt and answer are, and (Mooncake) which 512-token prefix blocks it shares with others.
//!
//! Two formats, told apart by the file's first line (`parse.rs`): the Azure LLM inference traces'
//! CSV (`TIMESTAMP,ContextTokens,GeneratedTokens`, any column order, timestamps as
//! `2023-11-16 18:15:46.6805900`) and the Mooncake release's JSON lines (`timestamp` in ms,
//! `input_length`, `output_length`, `hash_ids`). Copies of one trace of each, with their
//! attribution, are in `data/traces/`. A bad row is an error naming the file and line; a file is
//! read whole only up to [`MAX_FILE_BYTES`].
//!
//! Shaping ([`Trace::window`], [`Trace::at_speed`], [`Trace::fit_context`]) keeps arrivals as open
//! loop, and [`prompt`] builds prompt texts in which requests that share prefix blocks share
//! their text, so a prompt cache can find them.

mod parse;
mod prompt;

pub use prompt::{Block, prompt, text_of};

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest trace file read (the 2024 Azure week-long traces are about 1 GB; cut them first).
pub const MAX_FILE_BYTES: u64 = 256 << 20;

/// Tokens per prefix block in the Mooncake release.
pub const MOONCAKE_BLOCK_TOKENS: u64 = 512;

/// One request of a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRequest {
    /// When it arrives, from the trace's first request.
    pub at: Duration,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Tokens of the answer (forced with `num_predict` / `max_tokens` on replay).
    pub output_tokens: u64,
    /// Its prompt's prefix blocks, in order (empty where the trace has none); equal ids are
    /// equal text.
    pub blocks: Vec<u64>,
}

/// Which format a trace came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Azure LLM inference traces' CSV.
    AzureCsv,
    /// The Mooncake release's JSON lines.
    MooncakeJsonl,
}

/// A trace, shaped for replay.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// Where it was read from.
    pub source: PathBuf,
    /// Its format.
    pub format: Format,
    /// Its requests in arrival order.
    pub requests: Vec<TraceRequest>,
    /// Tokens per prefix block (scaled with the token counts by [`Trace::fit_context`]).
    pub block_tokens: u64,
    /// What token counts were multiplied by to fit a context (1 when untouched).
    pub token_scale: f64,
}

/// Why a trace could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("{path}: {bytes} bytes, more than the {MAX_FILE_BYTES} a trace may have; cut it first")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// A line that is not a request of the file's format.
    #[error("{path}:{line}: {problem}")]
    Row {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// No requests at all.
    #[error("{0}: no requests")]
    Empty(PathBuf),
}

impl Trace {
    /// Reads the trace at `path`, in either format.
    pub fn load(path: &Path) -> Result<Self, TraceError> {
        let io = |source| TraceError::Io {
            path: path.to_owned(),
            source,
        };
        let bytes = std::fs::metadata(path).map_err(io)?.len();
        if bytes > MAX_FILE_BYTES {
            return Err(TraceError::TooLarge {
                path: path.to_owned(),
                bytes,
            });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Self::parse(path, &text)
    }

    /// Reads a trace from `text`, naming `path` in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, TraceError> {
        let (format, requests) = parse::requests(path, text)?;
        if requests.is_empty() {
            return Err(TraceError::Empty(path.to_owned()));
        }
        Ok(Self {
            source: path.to_owned(),
            format,
            requests,
            block_tokens: MOONCAKE_BLOCK_TOKENS,
            token_scale: 1.0,
        })
    }

    /// The requests that arrive in the first `window` (the default is 5 minutes).
    pub fn window(mut self, window: Duration) -> Self {
        self.requests.retain(|r| r.at < window);
        self
    }

    /// Arrivals `speed` times as fast (2.0: twice the rate); a speed that is not a positive
    /// number leaves them as they are.
    pub fn at_speed(mut self, speed: f64) -> Self {
        if speed.is_finite() && speed > 0.0 {
            for request in &mut self.requests {
                request.at = request.at.div_f64(speed);
            }
        }
        self
    }

    /// Scales every request's token counts down by one factor, so that the longest prompt plus
    /// its answer fits `context` tokens, and the prefix block size with them, so that shared
    /// prefixes stay shared and proportions stay as traced. Returns the factor (1.0 when all
    /// fit already); it is also kept in [`Trace::token_scale`] so a result can say it.
    pub fn fit_context(&mut self, context: u64) -> f64 {
        let longest = self
            .requests
            .iter()
            .map(|r| r.input_tokens + r.output_tokens)
            .max()
            .unwrap_or(0);
        if longest <= context || context == 0 {
            return 1.0;
        }
        let scale = context as f64 / longest as f64;
        let scaled = |tokens: u64| ((tokens as f64 * scale).floor() as u64).max(1);
        for request in &mut self.requests {
            request.input_tokens = scaled(request.input_tokens);
            request.output_tokens = scaled(request.output_tokens);
        }
        self.block_tokens = scaled(self.block_tokens);
        self.token_scale *= scale;
        scale
    }
}

#[cfg(test)]
mod tests;
