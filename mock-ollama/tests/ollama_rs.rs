//! Wire compatibility: the `ollama-rs` client talks to the mock as it would to Ollama.

use std::time::Duration;

use mock_ollama::{MockNode, NodeConfig};
use ollama_rs::Ollama;
use ollama_rs::generation::chat::ChatMessage;
use ollama_rs::generation::chat::request::ChatMessageRequest;
use ollama_rs::generation::completion::request::GenerationRequest;
use ollama_rs::generation::embeddings::request::GenerateEmbeddingsRequest;
use tokio_stream::StreamExt as _;

async fn client() -> (MockNode, Ollama) {
    let node = MockNode::spawn(NodeConfig::with_latency(Duration::from_millis(1)))
        .await
        .unwrap();
    let ollama = Ollama::builder()
        .host("http://127.0.0.1")
        .port(node.addr().port())
        .build();
    (node, ollama)
}

#[tokio::test]
async fn embed_and_list_and_show() {
    let (_node, ollama) = client().await;
    let request = GenerateEmbeddingsRequest::new("mxbai-embed-large".into(), vec!["a", "b"].into());
    let response = ollama.generate_embeddings(request).await.unwrap();
    assert_eq!(response.embeddings.len(), 2);
    assert_eq!(response.embeddings[0].len(), 1024);
    let models = ollama.list_local_models().await.unwrap();
    assert!(models.iter().any(|m| m.name == "llama3.2:latest"));
    let info = ollama
        .show_model_info("nomic-embed-text".into())
        .await
        .unwrap();
    assert_eq!(info.capabilities, ["embedding"]);
    let err = ollama.show_model_info("ghost".into()).await.unwrap_err();
    assert!(err.to_string().contains("model 'ghost' not found"), "{err}");
}

#[tokio::test]
async fn generate_and_stream() {
    let (_node, ollama) = client().await;
    let response = ollama
        .generate(GenerationRequest::new("llama3.2".into(), "hello"))
        .await
        .unwrap();
    assert!(response.done);
    assert!(!response.response.is_empty());
    assert!(response.eval_count.unwrap() > 0);
    let mut stream = ollama
        .generate_stream(GenerationRequest::new("llama3.2".into(), "hello"))
        .await
        .unwrap();
    let mut pieces = 0;
    let mut done = false;
    while let Some(batch) = stream.next().await {
        for piece in batch.unwrap() {
            pieces += 1;
            done |= piece.done;
        }
    }
    assert!(done && pieces > 1, "{pieces} pieces, done={done}");
}

#[tokio::test]
async fn chat_streaming_has_final_data() {
    let (_node, ollama) = client().await;
    let request = ChatMessageRequest::new("llama3.2".into(), vec![ChatMessage::user("hi".into())]);
    let mut stream = ollama.send_chat_messages_stream(request).await.unwrap();
    let mut last = None;
    let mut count = 0;
    while let Some(item) = stream.next().await {
        count += 1;
        last = Some(item.expect("every line parses"));
    }
    let last = last.unwrap();
    assert!(last.done);
    let final_data = last
        .final_data
        .expect("all six metrics present on the final line");
    assert!(final_data.eval_count > 0 && final_data.total_duration > 0);
    assert!(count > 1);
    let request = ChatMessageRequest::new("llama3.2".into(), vec![ChatMessage::user("hi".into())]);
    let single = ollama.send_chat_messages(request).await.unwrap();
    assert!(!single.message.content.is_empty());
}
