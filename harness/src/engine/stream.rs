//! Reading a streamed answer as it arrives: the bytes cut into lines, every line parsed, the
//! time of each token kept as gaps, and whether the stream was whole.
//!
//! A token is a line that carries text: Ollama's `message.content` (chat) or `response`
//! (generate), OpenAI's `choices[0].delta.content` or `choices[0].text`. Time to first token is
//! taken at the first such line, as vLLM's `bench serve` does; the gaps between token lines are
//! the inter-token latencies. A stream is whole when every line parses and none carries an
//! `error`, the last is the final one (Ollama: `"done": true`; OpenAI: `data: [DONE]`), and no
//! line but a blank one (or an SSE comment, `event:`, `id:` or `retry:` field) follows it. A line
//! longer than [`MAX_LINE_BYTES`] breaks the stream, and the reader stops.

use std::borrow::Cow;
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Deserialize;

use crate::workload::Api;

/// The longest line kept while waiting for its end: a stream line is a token's JSON, a few
/// hundred bytes; a server that never ends its line is not let grow the buffer further.
pub(crate) const MAX_LINE_BYTES: usize = 1 << 20;

/// One streamed answer being read.
#[derive(Debug)]
pub(crate) struct StreamReader {
    api: Api,
    /// Bytes of a line not yet ended.
    pending: Vec<u8>,
    /// When the first token line arrived.
    pub(crate) first_token: Option<Instant>,
    last_token: Option<Instant>,
    /// Token lines read.
    pub(crate) tokens: u32,
    /// The final line was read (and nothing after it so far).
    done: bool,
    /// A line did not parse or carried an error, a line followed the final one, or a line
    /// grew past [`MAX_LINE_BYTES`].
    broken: bool,
    /// A line grew past [`MAX_LINE_BYTES`]: read no further.
    pub(crate) overflowed: bool,
}

/// What one line was.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// Carries text.
    Token,
    /// Parses, carries no text, is not the final line (a role chunk).
    Other,
    /// Carries nothing at all: a blank line, an SSE comment or a field other than `data:`.
    Blank,
    /// The final line.
    Done,
    /// Not a line of this dialect.
    Bad,
}

impl StreamReader {
    pub(crate) fn new(api: Api) -> Self {
        Self {
            api,
            pending: Vec::new(),
            first_token: None,
            last_token: None,
            tokens: 0,
            done: false,
            broken: false,
            overflowed: false,
        }
    }

    /// Reads one piece of the body that arrived at `now`; each gap between two token lines goes
    /// into `gaps` (us).
    pub(crate) fn feed(&mut self, data: &[u8], now: Instant, gaps: &mut Histogram<u64>) {
        let mut rest = data;
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            let (head, tail) = rest.split_at(end);
            rest = &tail[1..];
            let kind = if self.pending.is_empty() {
                classify(self.api, head)
            } else {
                self.pending.extend_from_slice(head);
                let line = std::mem::take(&mut self.pending);
                classify(self.api, &line)
            };
            self.take(kind, now, gaps);
        }
        if self.pending.len() + rest.len() > MAX_LINE_BYTES {
            self.broken = true;
            self.overflowed = true;
            self.pending.clear();
            return;
        }
        self.pending.extend_from_slice(rest);
    }

    fn take(&mut self, kind: Line, now: Instant, gaps: &mut Histogram<u64>) {
        if self.done && kind != Line::Blank {
            self.broken = true;
        }
        match kind {
            Line::Token => {
                if let Some(last) = self.last_token {
                    gaps.saturating_record(now.duration_since(last).as_micros() as u64);
                }
                self.first_token.get_or_insert(now);
                self.last_token = Some(now);
                self.tokens += 1;
            }
            Line::Done => self.done = true,
            Line::Bad => self.broken = true,
            Line::Other | Line::Blank => {}
        }
    }

    /// Every line parsed, the final one arrived last, nothing was left unended.
    pub(crate) fn whole(&self) -> bool {
        self.done && !self.broken && self.pending.iter().all(u8::is_ascii_whitespace)
    }
}

fn classify(api: Api, line: &[u8]) -> Line {
    let line = line.trim_ascii();
    match api {
        Api::Ollama if line.is_empty() => Line::Blank,
        Api::Ollama => native(line),
        // Server-sent events separate events with a blank line; `:` lines are comments, and
        // `event:`, `id:` and `retry:` fields carry no data.
        Api::Openai if line.is_empty() || line.starts_with(b":") => Line::Blank,
        Api::Openai => match line.strip_prefix(b"data:").map(<[u8]>::trim_ascii) {
            Some(b"[DONE]") => Line::Done,
            Some(event) => openai(event),
            None if [&b"event:"[..], b"id:", b"retry:"]
                .iter()
                .any(|field| line.starts_with(field)) =>
            {
                Line::Blank
            }
            None => Line::Bad,
        },
    }
}

/// An Ollama NDJSON line (chat or generate).
fn native(line: &[u8]) -> Line {
    #[derive(Deserialize)]
    struct Native<'a> {
        #[serde(default)]
        done: bool,
        #[serde(default)]
        error: Option<serde::de::IgnoredAny>,
        #[serde(borrow, default)]
        message: Option<Message<'a>>,
        #[serde(borrow, default)]
        response: Option<Cow<'a, str>>,
    }
    #[derive(Deserialize)]
    struct Message<'a> {
        #[serde(borrow, default)]
        content: Option<Cow<'a, str>>,
    }
    let Ok(parsed) = serde_json::from_slice::<Native>(line) else {
        return Line::Bad;
    };
    if parsed.error.is_some() {
        return Line::Bad;
    }
    let text = parsed.message.and_then(|m| m.content).or(parsed.response);
    match (parsed.done, text.is_some_and(|t| !t.is_empty())) {
        (true, _) => Line::Done,
        (false, true) => Line::Token,
        (false, false) => Line::Other,
    }
}

/// One OpenAI streaming event's JSON (chat or completions).
fn openai(event: &[u8]) -> Line {
    #[derive(Deserialize)]
    struct Event<'a> {
        #[serde(borrow, default)]
        choices: Vec<Choice<'a>>,
        #[serde(default)]
        error: Option<serde::de::IgnoredAny>,
    }
    #[derive(Deserialize)]
    struct Choice<'a> {
        #[serde(borrow, default)]
        delta: Option<Delta<'a>>,
        #[serde(borrow, default)]
        text: Option<Cow<'a, str>>,
    }
    #[derive(Deserialize)]
    struct Delta<'a> {
        #[serde(borrow, default)]
        content: Option<Cow<'a, str>>,
    }
    let Ok(parsed) = serde_json::from_slice::<Event>(event) else {
        return Line::Bad;
    };
    if parsed.error.is_some() {
        return Line::Bad;
    }
    let text = parsed
        .choices
        .into_iter()
        .next()
        .and_then(|c| c.delta.and_then(|d| d.content).or(c.text));
    if text.is_some_and(|t| !t.is_empty()) {
        Line::Token
    } else {
        Line::Other
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::summary::new_histogram;

    fn read(api: Api, pieces: &[&str]) -> (StreamReader, Histogram<u64>) {
        let (mut reader, mut gaps) = (StreamReader::new(api), new_histogram());
        let start = Instant::now();
        for (i, piece) in pieces.iter().enumerate() {
            let at = start + Duration::from_millis(10 * i as u64);
            reader.feed(piece.as_bytes(), at, &mut gaps);
        }
        (reader, gaps)
    }

    const TOKEN: &str =
        "{\"message\":{\"role\":\"assistant\",\"content\":\"ab\"},\"done\":false}\n";
    const DONE: &str = "{\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true}\n";

    #[test]
    fn native_tokens_gaps_and_the_final_line() {
        let (r, gaps) = read(Api::Ollama, &[TOKEN, TOKEN, TOKEN, DONE]);
        assert_eq!(r.tokens, 3);
        assert!(r.whole());
        assert_eq!(gaps.len(), 2, "two gaps between three tokens");
        assert_eq!(gaps.max() / 1000, 10, "each 10 ms");
    }

    #[test]
    fn lines_cut_across_pieces_are_joined() {
        let (head, tail) = TOKEN.split_at(17);
        let (r, _) = read(Api::Ollama, &[head, tail, &DONE[..5], &DONE[5..]]);
        assert_eq!(r.tokens, 1);
        assert!(r.whole());
        let generate = "{\"response\":\"x\",\"done\":false}\n{\"response\":\"\",\"done\":true}\n";
        let (r, _) = read(Api::Ollama, &[generate]);
        assert_eq!((r.tokens, r.whole()), (1, true), "/api/generate lines");
    }

    /// Each case, read in `api`'s dialect, is whole or not as it says.
    fn judge(api: Api, cases: &[(&[&str], bool, &str)]) {
        for (pieces, whole, why) in cases {
            assert_eq!(read(api, pieces).0.whole(), *whole, "{api:?}: {why}");
        }
    }

    #[test]
    fn a_stream_is_broken_when_cut_unparsable_or_continued_after_the_end() {
        let no_text = "{\"done\":false}\n";
        let error = "{\"error\":\"model unloaded\"}\n";
        judge(
            Api::Ollama,
            &[
                (&[TOKEN, TOKEN], false, "no final line"),
                (&[TOKEN, DONE, TOKEN], false, "a line after the final one"),
                (&[TOKEN, DONE, DONE], false, "two final lines"),
                (&["{\"done\":fa\n", DONE], false, "a line not JSON"),
                (
                    &[TOKEN, DONE, "{\"do"],
                    false,
                    "an unended line after the end",
                ),
                (&[], false, "nothing"),
                (
                    &[TOKEN, DONE, no_text],
                    false,
                    "a line without text after the end",
                ),
                (&[TOKEN, error, DONE], false, "an error line"),
                (&[TOKEN, DONE, "\n"], true, "a blank line after the end"),
            ],
        );
    }

    #[test]
    fn an_endless_line_breaks_the_stream_and_stops_the_reader() {
        let (mut reader, mut gaps) = (StreamReader::new(Api::Ollama), new_histogram());
        let chunk = vec![b'x'; 64 << 10];
        for _ in 0..((MAX_LINE_BYTES >> 16) + 1) {
            reader.feed(&chunk, Instant::now(), &mut gaps);
        }
        assert!(reader.overflowed && !reader.whole());
        assert!(reader.pending.len() <= MAX_LINE_BYTES);
    }

    #[test]
    fn event_streams_count_content_and_end_at_done() {
        let role =
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n";
        let token = "data: {\"choices\":[{\"delta\":{\"content\":\"ab\"}}]}\n\n";
        let last = "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
        let end = "data: [DONE]\n\n";
        let (r, gaps) = read(Api::Openai, &[role, token, token, last, end]);
        assert_eq!((r.tokens, r.whole(), gaps.len()), (2, true, 1));
        let completion = "data: {\"choices\":[{\"text\":\"ab\"}]}\n\n";
        assert_eq!(read(Api::Openai, &[completion, end]).0.tokens, 1);
        let error = "data: {\"error\":{\"message\":\"overloaded\"}}\n\n";
        let fields = "event: message\nid: 7\nretry: 100\n";
        let empty = "data: {\"choices\":[]}\n";
        judge(
            Api::Openai,
            &[
                (&[token, last], false, "no [DONE]"),
                (&[token, end, token], false, "an event after [DONE]"),
                (&[token, end, end], false, "two [DONE]"),
                (&["data: {\"choi\n\n", end], false, "a cut event"),
                (&["{\"choices\":[]}\n", end], false, "not an event"),
                (&[token, error, end], false, "an error event"),
                (&[fields, token, end], true, "SSE fields"),
                (&[token, end, empty], false, "an empty event after [DONE]"),
                (&[], false, "nothing"),
            ],
        );
    }
}
