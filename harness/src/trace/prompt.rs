//! Prompt texts for replayed requests: the same prefix block is the same text in every request
//! that has it, so a node's prompt cache (and a router that knows about it) can find shared
//! prefixes; everything else is text of the request's own.

use mock_ollama::embedding::{fnv1a, splitmix64};

use super::TraceRequest;

/// Characters per token: the mock counts a prompt's tokens as its characters over four.
const CHARS_PER_TOKEN: usize = 4;

/// The prompt of `request`, `id` being its request id: the text of each of its prefix blocks
/// (`block_tokens` tokens each, the last one cut where the prompt ends), then text of its own
/// up to its prompt tokens, then the `[rid:ID]` marker last (a few tokens more), as the served
/// log's join wants it. Each token is four characters: a three-letter word and a space.
pub fn prompt(request: &TraceRequest, block_tokens: u64, id: &str) -> String {
    let tokens = request.input_tokens;
    let mut written = 0u64;
    let mut blocks = Vec::with_capacity(request.blocks.len());
    for &block in &request.blocks {
        let take = block_tokens.min(tokens - written);
        blocks.push(Block {
            seed: splitmix64(block ^ 0xb10c),
            tokens: take,
        });
        written += take;
        if written == tokens {
            break;
        }
    }
    text_of(&blocks, tokens - written, id)
}

/// A run of prompt text: the same seed and length is the same text in every prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// What the words are drawn from.
    pub seed: u64,
    /// How many four-character tokens.
    pub tokens: u64,
}

/// `blocks` in order, then `own` tokens of text of the request's own (drawn from its id), then
/// the `[rid:ID]` marker last.
pub fn text_of(blocks: &[Block], own: u64, id: &str) -> String {
    let tokens = blocks.iter().map(|b| b.tokens).sum::<u64>() + own;
    let mut text = String::with_capacity(tokens as usize * CHARS_PER_TOKEN + id.len() + 8);
    for block in blocks {
        words(&mut text, block.seed, block.tokens);
    }
    words(&mut text, splitmix64(fnv1a(id.as_bytes())), own);
    text.push_str("[rid:");
    text.push_str(id);
    text.push(']');
    text
}

/// Appends `count` four-character tokens drawn from `seed`.
fn words(text: &mut String, seed: u64, count: u64) {
    for k in 0..count {
        let h = splitmix64(seed ^ k);
        for shift in [0, 8, 16] {
            text.push(char::from(b'a' + ((h >> shift) % 26) as u8));
        }
        text.push(' ');
    }
}
