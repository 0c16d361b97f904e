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
    let mut text = String::with_capacity(tokens as usize * CHARS_PER_TOKEN + id.len() + 8);
    let mut written = 0u64;
    for &block in &request.blocks {
        let take = block_tokens.min(tokens - written);
        words(&mut text, splitmix64(block ^ 0xb10c), take);
        written += take;
        if written == tokens {
            break;
        }
    }
    words(
        &mut text,
        splitmix64(fnv1a(id.as_bytes())),
        tokens - written,
    );
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
