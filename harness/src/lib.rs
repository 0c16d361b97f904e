//! The harness: scenarios that measure, explain and guard the performance of Ollama pools.
//!
//! `cargo run --release -p harness` starts in-process mock Ollama nodes, drives every pool variant
//! with real threads over real HTTP, and writes `results/` (JSON per scenario, `REPORT.md`, SVG
//! charts). `harness gate` is the CI check.
//!
//! Layout, in the order a measurement flows:
//! - [`nodes`]: the nodes, one type whatever they are (mock nodes here or elsewhere, or the
//!   user's Ollama with `--node`);
//! - [`variant`]: the pools under comparison behind one type;
//! - [`load`]: the one load model (closed and open schedules, a record per request) and its thread
//!   executor (per-worker tallies, no shared hot-path state); the engine is its task executor;
//! - [`measure`]: one run plus the accounting check (client vs pool vs nodes);
//! - [`scenarios`]: the questions, each producing a [`results::ScenarioResult`];
//! - [`results`], [`report`], [`charts`], [`printer`]: JSON, Markdown, SVG and the terminal summary;
//! - [`gateway`] and [`client`]: a gateway at a URL, or a client library run by a driver
//!   program, measured through the same cells against the capacity ideal and audited per request;
//! - [`bounds`]: the one bounds grammar (`EXPERIMENT.CELL.MEASURE op value`) of the gate and
//!   `harness gateway --bounds`;
//! - [`gate`]: the CI's metrics, baseline and verdict;
//! - [`wording`]: numbers in verdicts (ratios, counts, comparisons) worded one way everywhere.
#![forbid(unsafe_code)]

pub mod bounds;
pub mod charts;
pub mod cli;
pub mod client;
pub mod cost;
pub mod engine;
pub mod gate;
pub mod gateway;
pub mod load;
pub mod machine;
pub mod measure;
pub mod nodes;
pub mod printer;
pub mod report;
pub mod results;
pub mod routing;
pub mod scenarios;
pub mod self_test;
pub mod spread;
pub mod summary;
pub mod trace;
pub mod variant;
pub mod wording;
pub mod workload;
