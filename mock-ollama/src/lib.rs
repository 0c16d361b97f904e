//! A simulated Ollama node for load-balancer benchmarks.
//!
//! Every figure this project reports comes from real HTTP requests sent to these nodes, so the
//! simulation has to be faithful where it matters to a load balancer:
//!
//! - **Wire format.** Ollama's endpoints, JSON field names, nanosecond durations, content types,
//!   NDJSON streaming (one object per flushed chunk) and its exact error texts ([`api`]).
//! - **Concurrency.** Per-model parallel slots with a FIFO wait, embedding models pinned to one slot
//!   as in Ollama, every item of an embed batch taking a slot in turn, and a bounded wait queue that
//!   answers 503 with Ollama's message when full ([`scheduler`]).
//! - **Time.** A service time per request from a base, a per-token cost, a seeded jitter
//!   distribution and a node speed factor; cold starts with keep-alive expiry; a slow control plane
//!   for `/api/tags` and `/api/ps` ([`config`]).
//! - **Faults.** Injected 500s, stalls and aborted connections, by rate or forced per request with
//!   the [`FAULT_HEADER`] header ([`faults`]).
//! - **Ground truth.** Server-side counters (requests by status, TCP connections accepted and
//!   closed), readable from the library ([`MockNode::counters`]) and as Prometheus text at
//!   `GET /metrics` ([`metrics`]); and a per-request served log joined on caller ids
//!   (`GET /mock/served`, [`MockNode::served`], [`served`]). Real Ollama has neither.
//! - **Dialects.** Ollama's native routes and its OpenAI-compatible `/v1/...` routes, the latter
//!   rewritten onto the native path as Ollama's middleware does.
//! - **Control.** Settings and availability changed while it runs ([`control`]), from the
//!   library or over HTTP; [`ControlClient`] is the typed client for a node on another host.
//!
//! # Running nodes
//! In async code, [`MockNode::spawn`] starts one node on the current runtime. Blocking callers (the
//! pool under test, the harness, sync tests) use [`MockCluster::start`], which owns its own runtime.
//!
//! ```no_run
//! use mock_ollama::{MockCluster, NodeConfig};
//! let cluster = MockCluster::start(vec![NodeConfig::default(); 2]).unwrap();
//! println!("{:?}", cluster.urls());
//! ```
#![forbid(unsafe_code)]

pub mod api;
pub mod client;
pub mod config;
pub mod connections;
pub mod control;
pub mod duration;
pub mod embedding;
pub mod faults;
pub mod hold;
pub mod metrics;
pub mod models;
pub mod preset;
pub mod residency;
pub mod scheduler;
pub mod served;
pub mod server;
pub mod timer;

pub use client::{ClientError, ControlClient};
pub use config::{
    FaultConfig, Jitter, LatencyModel, Leave, NodeConfig, NodeSpec, QueueMode, SlotPolicy, Timer,
};
pub use control::{Availability, ControlAccess, Settings as NodeSettings, SettingsPatch};
pub use faults::{FAULT_HEADER, Fault};
pub use hold::{Held, HoldGuard};
pub use metrics::CountersSnapshot;
pub use models::{ModelKind, ModelSpec};
pub use served::{Entry as ServedEntry, Outcome as ServedOutcome, Page as ServedPage};
pub use server::{MockCluster, MockError, MockNode};
