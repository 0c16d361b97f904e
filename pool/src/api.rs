//! The typed inputs and answers of the three inference calls a pool forwards.
//!
//! Only the fields the pool needs are decoded; serialisation of every input is infallible by
//! construction (strings and string lists only), so no caller value can make a request fail
//! before it is sent.

use serde::{Deserialize, Serialize};

use crate::node::NodeAddr;

/// An answer and the node that gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply<T> {
    /// The decoded answer.
    pub value: T,
    /// The node that answered.
    pub node: NodeAddr,
}

/// `/api/embed`'s `input`: one text or a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum EmbedInput {
    /// One text, one vector.
    One(String),
    /// Several texts, one vector each, in order.
    Batch(Vec<String>),
}

impl From<&str> for EmbedInput {
    fn from(text: &str) -> Self {
        EmbedInput::One(text.to_owned())
    }
}

impl From<String> for EmbedInput {
    fn from(text: String) -> Self {
        EmbedInput::One(text)
    }
}

impl From<Vec<String>> for EmbedInput {
    fn from(texts: Vec<String>) -> Self {
        EmbedInput::Batch(texts)
    }
}

impl From<&[&str]> for EmbedInput {
    fn from(texts: &[&str]) -> Self {
        EmbedInput::Batch(texts.iter().map(|t| (*t).to_owned()).collect())
    }
}

impl<const N: usize> From<[&str; N]> for EmbedInput {
    fn from(texts: [&str; N]) -> Self {
        EmbedInput::Batch(texts.iter().map(|t| (*t).to_owned()).collect())
    }
}

/// `/api/embed`'s answer (the fields the pool needs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EmbedResponse {
    /// One vector per input.
    pub embeddings: Vec<Vec<f32>>,
}

/// `/api/generate`'s non-streaming answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GenerateResponse {
    /// The generated text.
    pub response: String,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// `/api/chat`'s non-streaming answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ChatResponse {
    /// The assistant's message.
    pub message: ChatMessage,
}

/// The bodies the pool sends: typed, so serialising them cannot fail.
#[derive(Debug, Serialize)]
pub(crate) struct EmbedRequest<'a> {
    pub(crate) model: &'a str,
    pub(crate) input: &'a EmbedInput,
}

#[derive(Debug, Serialize)]
pub(crate) struct GenerateRequest<'a> {
    pub(crate) model: &'a str,
    pub(crate) prompt: &'a str,
    pub(crate) stream: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct ChatRequest<'a> {
    pub(crate) model: &'a str,
    pub(crate) messages: &'a [ChatMessage],
    pub(crate) stream: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_serialise_as_ollama_expects() {
        let one = EmbedRequest {
            model: "m",
            input: &"a".into(),
        };
        assert_eq!(
            serde_json::to_string(&one).unwrap(),
            r#"{"model":"m","input":"a"}"#
        );
        let batch = EmbedRequest {
            model: "m",
            input: &["a", "b"].into(),
        };
        assert_eq!(
            serde_json::to_string(&batch).unwrap(),
            r#"{"model":"m","input":["a","b"]}"#
        );
    }
}
