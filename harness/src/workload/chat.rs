//! Streamed chat requests: prompt and answer lengths drawn per request number, and optionally
//! conversations (`--sessions N`) whose turns share a growing prefix, as a conversation's
//! history does, so a node's prompt cache (and a router that keeps a session on one node) has
//! something to find.
//!
//! With `N` sessions, request `n` is turn `n / N` of session `n % N`; its prompt is the text of
//! every turn of its conversation so far, each turn `--prompt-tokens` long (drawn per session
//! and turn), then the `[rid:ID]` marker. A conversation holds as many turns as fit the context
//! at the longest lengths (the prompts at their longest plus the longest answer), then starts
//! over with new text. The history is the user's turns only: the mock's answers are not fed back.

use std::num::NonZeroU32;

use mock_ollama::embedding::{fnv1a, splitmix64};

use super::Lengths;
use crate::trace::{Block, text_of};

/// Tokens the `[rid:ID]` marker may take (an id of up to 64 characters at four a token).
const MARKER_TOKENS: u64 = 16;

/// The chat workload's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chat {
    /// Prompt tokens of each request (of each turn, in a session).
    pub prompt: Lengths,
    /// Tokens of each answer (forced with `num_predict` / `max_tokens`).
    pub output: Lengths,
    /// Conversations the requests are spread over, if any.
    pub sessions: Option<NonZeroU32>,
    /// The nodes' context (`num_ctx`), which a conversation's history must fit.
    pub context: u64,
}

impl Chat {
    /// Single-turn requests of these lengths.
    pub fn new(prompt: Lengths, output: Lengths) -> Self {
        Self {
            prompt,
            output,
            sessions: None,
            context: mock_ollama::api::validate::DEFAULT_CONTEXT,
        }
    }

    /// Turns a conversation holds before it starts over (at least one): its history, the
    /// request's `[rid:ID]` marker and the longest answer within the context.
    pub fn turns(&self) -> u64 {
        let room = self
            .context
            .saturating_sub(u64::from(self.output.max) + MARKER_TOKENS);
        (room / u64::from(self.prompt.max).max(1)).max(1)
    }

    /// The answer length of request `n`.
    pub fn output_of(&self, n: u64) -> u32 {
        self.output.of(n, 2)
    }

    /// The prompt of request `n`, whose id is `id`.
    pub fn prompt_of(&self, n: u64, id: &str) -> String {
        let Some(sessions) = self.sessions else {
            return text_of(&[], u64::from(self.prompt.of(n, 1)), id);
        };
        let sessions = u64::from(sessions.get());
        let (session, turn) = (n % sessions, n / sessions);
        let (conversation, turn) = (turn / self.turns(), turn % self.turns());
        // The run's own prefix of the id keeps one run's conversations from being found in
        // the prompt caches another run (an earlier cell) left behind.
        let run = id.rsplit_once('-').map_or(id, |(run, _)| run);
        let key =
            fnv1a(run.as_bytes()) ^ splitmix64(session) ^ splitmix64(conversation).rotate_left(17);
        let blocks: Vec<Block> = (0..=turn)
            .map(|k| {
                let turn_key = splitmix64(key ^ k.rotate_left(40));
                Block {
                    seed: turn_key,
                    tokens: u64::from(self.prompt.of(turn_key, 1)),
                }
            })
            .collect();
        text_of(&blocks, 0, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(count: u32) -> Chat {
        Chat {
            sessions: NonZeroU32::new(count),
            context: 100,
            ..Chat::new(Lengths::fixed(10), Lengths::fixed(20))
        }
    }

    /// The prompt without its marker.
    fn history(chat: &Chat, n: u64) -> String {
        let id = format!("run-{n}");
        let text = chat.prompt_of(n, &id);
        text.strip_suffix(&format!("[rid:{id}]"))
            .unwrap()
            .to_owned()
    }

    #[test]
    fn a_sessions_turns_share_a_growing_prefix_and_sessions_share_none() {
        let chat = sessions(3);
        // Requests 1, 4 and 7 are turns 0, 1 and 2 of session 1.
        let (t0, t1, t2) = (history(&chat, 1), history(&chat, 4), history(&chat, 7));
        assert_eq!(
            (t0.len(), t1.len(), t2.len()),
            (40, 80, 120),
            "10 tokens a turn"
        );
        assert!(
            t1.starts_with(&t0) && t2.starts_with(&t1),
            "each turn extends the last"
        );
        let other = history(&chat, 2);
        assert_ne!(other[..40], t0[..40], "session 2 is another conversation");
    }

    #[test]
    fn a_conversation_starts_over_when_the_next_turn_would_not_fit() {
        let chat = sessions(1);
        // (100 - 20 - 16) / 10 = 6 turns fit with the marker; turn 6 starts a new conversation.
        assert_eq!(chat.turns(), 6);
        let (last, next) = (history(&chat, 5), history(&chat, 6));
        assert_eq!((last.len(), next.len()), (240, 40));
        assert!(
            !last.starts_with(&next),
            "new text, not the old conversation's first turn"
        );
    }

    #[test]
    fn runs_do_not_share_conversations_and_single_turns_share_nothing() {
        let chat = sessions(2);
        let (a, b) = (chat.prompt_of(0, "a-0"), chat.prompt_of(0, "b-0"));
        assert_ne!(a[..40], b[..40]);
        let single = Chat::new(Lengths::fixed(10), Lengths::fixed(5));
        let (x, y) = (single.prompt_of(0, "r-0"), single.prompt_of(1, "r-1"));
        assert_ne!(x[..40], y[..40]);
        assert_eq!(single.output_of(3), 5);
    }
}
