//! `peak`: how fast can each client go at zero service time, and what does a request cost it?
//!
//! Each pool variant on each HTTP client (`atomic` is the default per-caller client,
//! `atomic/blocking` reqwest's; `--http-client` picks one) and the load engine
//! ([`crate::engine`]) run a closed loop at 1 to 100 workers against one node with zero service
//! time and a slot per worker, so nothing but the client and the node's own HTTP handling limits
//! them. The engine runs twice: dropping each answer, and decoding it into the pool's
//! `EmbedResponse` (`engine+decode`), which is the same work a pool does with an answer, and a
//! third time on one blocking OS thread per worker (`threads+decode`: a pool's I/O model
//! without the pool), which splits a pool's cost into the model's and its own. Per
//! run: requests/s, and CPU time per request split by layer: the node's (its runtime's
//! `mock-ollama` threads and the `mock-timer` thread, while they live in this process) and the
//! client's (the whole process minus those). With `--node URL` (a node in another process:
//! `examples/peak-out-of-process.sh`) the node's CPU is not in this process and the process's
//! CPU is the client's alone. Blocking-client runs also report the CPU of `reqwest::blocking`'s
//! internal I/O thread per request: one such thread drives every request of a client, so it
//! bounds the pool's rate on any number of cores.
//!
//! Reading it: a client whose requests/s stops growing while the node's threads are busy less
//! than their cores is the limit; the engine's row is what the node allows.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{Ctx, Findings};
use crate::engine::{Decoder, Engine, Schedule, Target, Template};
use crate::load::{Workload, closed_loop};
use crate::machine::{cpu_time, threads_cpu};
use crate::measure::measure_with;
use crate::nodes::{ClusterSpec, Nodes};
use crate::results::{Accounting, Row};
use crate::summary::Summary;
use crate::variant::{PoolOptions, Variant};
use pool::HttpClient;

/// Workers of each run, unless `--workers` names one count.
const WORKERS: [usize; 5] = [1, 4, 12, 32, 100];

/// The pools' HTTP clients, each measured.
const HTTP_CLIENTS: [HttpClient; 2] = [HttpClient::Blocking, HttpClient::PerCaller];

/// Who sends the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Client {
    Pool(Variant, HttpClient),
    Engine,
    /// The engine decoding each answer into the pool's `EmbedResponse`, as a pool does.
    EngineDecoding,
    /// The engine's connections and decoding on one blocking OS thread per worker, each with a
    /// runtime of its own: the per-caller pool's I/O model without the pool.
    Threads,
}

impl Client {
    /// The client whose [`Client::name`] is `name`.
    fn named(name: &str) -> Option<Self> {
        let pools = Variant::ALL
            .into_iter()
            .flat_map(|v| HTTP_CLIENTS.map(|http| Client::Pool(v, http)));
        pools
            .chain([Client::Engine, Client::EngineDecoding, Client::Threads])
            .find(|c| c.name() == name)
    }

    /// The variant's name on the default client (the name other scenarios use), with the
    /// client's name appended on the other.
    fn name(self) -> String {
        match self {
            Client::Pool(v, http) if http == HttpClient::default() => v.name().to_owned(),
            Client::Pool(v, http) => format!("{}/{}", v.name(), http.name()),
            Client::Engine => "engine".to_owned(),
            Client::EngineDecoding => "engine+decode".to_owned(),
            Client::Threads => "threads+decode".to_owned(),
        }
    }
}

/// One run's figures.
#[derive(Debug, Clone, Copy)]
struct Sample {
    throughput: f64,
    client_us: f64,
    node_us: f64,
    /// Cores the node's threads kept busy on average.
    node_cores: f64,
    /// Of the client's CPU, what reqwest's blocking client's one I/O thread spent, per request.
    io_thread_us: f64,
}

/// Whether a thread belongs to the in-process node.
fn node_thread(name: &str) -> bool {
    name == "mock-ollama" || name == "mock-timer"
}

/// Whether a thread is a `reqwest::blocking` client's internal runtime (`reqwest-internal-sync-
/// runtime`, cut to 15 bytes by the kernel): every request of that client is driven there.
fn io_thread(name: &str) -> bool {
    name.starts_with("reqwest-intern")
}

/// One pool run, checked like every other scenario's; returns the answers, the run's length and
/// the CPU its client I/O thread used (read while the pool, and that thread, are alive).
fn pool_run(
    (variant, http_client): (Variant, HttpClient),
    cluster: &Nodes,
    ctx: &Ctx,
    workload: &Workload,
    accounting: &mut Accounting,
) -> anyhow::Result<(u64, Duration, Duration)> {
    let mut io = Duration::ZERO;
    let options = PoolOptions {
        http_client,
        ..ctx.pool_options()
    };
    let m = measure_with(variant, cluster, options, accounting, |pool| {
        let before = threads_cpu(io_thread);
        let run = closed_loop(pool, workload);
        io = threads_cpu(io_thread).saturating_sub(before);
        Ok(run?)
    })?;
    Ok((m.run.ok(), m.run.elapsed, io))
}

/// What a pool does with an `/api/embed` answer.
fn decode_embed(body: &[u8]) -> bool {
    serde_json::from_slice::<pool::EmbedResponse>(body).is_ok()
}

/// Runs `client` once with `workers`, measuring CPU by layer around it.
fn sample(
    client: Client,
    cluster: &Nodes,
    ctx: &Ctx,
    workers: usize,
    requests: usize,
    accounting: &mut Accounting,
) -> anyhow::Result<Sample> {
    let (process_before, node_before) = (cpu_time(), threads_cpu(node_thread));
    let started = Instant::now();
    let (ok, elapsed, io) = match client {
        Client::Pool(variant, http) => {
            let workload = Workload {
                workers,
                requests,
                cap: None,
                model: "all-minilm".into(),
                text: None,
            };
            pool_run((variant, http), cluster, ctx, &workload, accounting)?
        }
        Client::Engine | Client::EngineDecoding | Client::Threads => {
            let url = cluster.urls().first().cloned().unwrap_or_default();
            let target = Target {
                url: format!("{url}/api/embed"),
                bodies: Template::new(r#"{"model":"all-minilm","input":"peak {rid}"}"#).into(),
                read: crate::engine::Read::Whole,
                decode: (client != Client::Engine).then_some(decode_embed as Decoder),
                headers: Default::default(),
            };
            let requests = requests as u64;
            let engine = Engine::default();
            let run = if client == Client::Threads {
                engine.run_on_threads(&target, workers, requests, "peak")?
            } else {
                let schedule = Schedule::Closed {
                    workers,
                    requests,
                    cap: None,
                };
                engine.run(&target, schedule, "peak")?
            };
            anyhow::ensure!(run.failed() == 0, "{} engine requests failed", run.failed());
            (run.ok(), run.elapsed, Duration::ZERO)
        }
    };
    let wall = started.elapsed();
    let node = threads_cpu(node_thread).saturating_sub(node_before);
    let client_cpu = cpu_time()
        .saturating_sub(process_before)
        .saturating_sub(node);
    let per_request = |d: Duration| d.as_secs_f64() * 1e6 / ok.max(1) as f64;
    Ok(Sample {
        throughput: ok as f64 / elapsed.as_secs_f64().max(1e-9),
        client_us: per_request(client_cpu),
        node_us: per_request(node),
        node_cores: node.as_secs_f64() / wall.as_secs_f64().max(1e-9),
        io_thread_us: per_request(io),
    })
}

/// The scenario, as the registry ([`super::SCENARIOS`]) lists it.
pub struct Peak;

impl super::ScenarioSpec for Peak {
    fn name(&self) -> &'static str {
        "peak"
    }
    fn title(&self) -> &'static str {
        "Peak rate and CPU per request of each client, by layer"
    }
    fn question(&self) -> &'static str {
        "At zero service time, how many requests/s does each pool variant and the load engine reach from 1 to 100 workers, and which layer (node, client, pool) sets the ceiling?"
    }
    fn measure(&self, ctx: &Ctx) -> anyhow::Result<Findings> {
        run(ctx)
    }
    fn reword(&self, result: &crate::results::ScenarioResult) -> Option<Vec<String>> {
        Some(verdicts(&result.rows, &result.params))
    }
}

/// Runs the scenario.
fn run(ctx: &Ctx) -> anyhow::Result<Findings> {
    let o = &ctx.opts;
    let workers: Vec<usize> = o.workers.map_or(WORKERS.to_vec(), |w| vec![w]);
    let requests = o.requests.unwrap_or(4_000);
    let slots = o.slots.unwrap_or(*WORKERS.iter().max().unwrap_or(&100));
    let spec = ClusterSpec::uniform(1, slots, Duration::ZERO);
    let cluster = Nodes::start(&spec, &o.external)?;
    let embedded = matches!(cluster, Nodes::Owned(_));
    let clients: Vec<Client> = o
        .variants
        .iter()
        .flat_map(|&v| {
            let http: &[HttpClient] = o.http_client.as_slice();
            let http = if http.is_empty() { &HTTP_CLIENTS } else { http };
            http.iter().map(move |&http| Client::Pool(v, http))
        })
        .chain([Client::Engine, Client::EngineDecoding, Client::Threads])
        .collect();
    let mut accounting = Accounting::default();
    let mut samples: std::collections::BTreeMap<(Client, usize), Vec<Sample>> = Default::default();
    let bar = ctx.progress("peak", o.repeats * clients.len() * workers.len());
    // Warm the node and the connection paths once, unmeasured.
    sample(Client::Engine, &cluster, ctx, 4, 500, &mut accounting)?;
    for _ in 0..o.repeats {
        for &w in &workers {
            for &client in &clients {
                bar.set_message(format!("{} x{w}", client.name()));
                let s = sample(client, &cluster, ctx, w, requests, &mut accounting)?;
                samples.entry((client, w)).or_default().push(s);
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    let rows = rows(&samples, embedded);
    let params = json!({
            "workers": workers,
            "requests": requests,
            "node_slots": slots,
            "service_ms": 0,
            "nodes": if embedded { "one in-process mock node" } else { "--node (out of process)" },
            "http_clients": o.http_clients,
            "http_client": o.http_client.map_or("both", pool::HttpClient::name),
    });
    Ok(Findings {
        repeats: o.repeats,
        verdicts: verdicts(&rows, &params),
        params,
        rows,
        accounting,
    })
}

type Samples = std::collections::BTreeMap<(Client, usize), Vec<Sample>>;

fn summary(samples: &[Sample], field: fn(&Sample) -> f64) -> Summary {
    Summary::of(samples.iter().map(field).collect())
}

/// A figure of every run, reported as one row per client and worker count.
struct Figure {
    metric: &'static str,
    unit: &'static str,
    field: fn(&Sample) -> f64,
    /// Only pools on the blocking client have reqwest's I/O thread.
    pools_only: bool,
    /// The node's CPU is only visible when it runs in this process.
    in_process_only: bool,
}

const FIGURES: [Figure; 4] = [
    Figure {
        metric: "throughput",
        unit: "req/s",
        field: |s| s.throughput,
        pools_only: false,
        in_process_only: false,
    },
    Figure {
        metric: "client CPU per request",
        unit: "us",
        field: |s| s.client_us,
        pools_only: false,
        in_process_only: false,
    },
    Figure {
        metric: "client I/O thread CPU per request",
        unit: "us",
        field: |s| s.io_thread_us,
        pools_only: true,
        in_process_only: false,
    },
    Figure {
        metric: "node CPU per request",
        unit: "us",
        field: |s| s.node_us,
        pools_only: false,
        in_process_only: true,
    },
];

fn rows(samples: &Samples, embedded: bool) -> Vec<Row> {
    let mut rows = Vec::new();
    for ((client, w), runs) in samples {
        let blocking_pool = matches!(client, Client::Pool(_, HttpClient::Blocking));
        for f in &FIGURES {
            if (f.pools_only && !blocking_pool) || (f.in_process_only && !embedded) {
                continue;
            }
            let value = summary(runs, f.field);
            let row = Row::new(
                client.name(),
                format!("workers={w}"),
                f.metric,
                f.unit,
                value,
            );
            rows.push(if f.in_process_only {
                let cores = summary(runs, |s| s.node_cores).median;
                row.note(format!("{NODE_CORES}{cores:.2} cores"))
            } else {
                row
            });
        }
    }
    rows
}

/// The median of one figure (a row's metric, or `node_cores`) of one client at one worker
/// count (NaN when not measured).
type MedianOf<'a> = dyn Fn(Client, usize, &str) -> f64 + 'a;

/// The note that carries the node's busy cores on its CPU row.
const NODE_CORES: &str = "node threads busy ";

/// One sentence per layer of the peak comparison, from the rows and the parameters alone (so
/// `harness report` rewords them).
fn verdicts(rows: &[Row], params: &serde_json::Value) -> Vec<String> {
    let workers: Vec<usize> = params["workers"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|v| v.as_u64())
                .map(|v| v as usize)
                .collect()
        })
        .unwrap_or_default();
    let embedded = params["nodes"].as_str() == Some("one in-process mock node");
    let http_clients = params["http_clients"].as_u64().unwrap_or(1).max(1) as usize;
    let median = |c: Client, w: usize, metric: &str| {
        let (name, case) = (c.name(), format!("workers={w}"));
        let at = |m: &str| {
            rows.iter()
                .find(|r| r.variant == name && r.case == case && r.metric == m)
        };
        match metric {
            "node_cores" => at("node CPU per request")
                .and_then(|r| {
                    r.note
                        .as_deref()?
                        .strip_prefix(NODE_CORES)?
                        .strip_suffix(" cores")?
                        .parse()
                        .ok()
                })
                .unwrap_or(f64::NAN),
            _ => at(metric).map_or(f64::NAN, |r| r.value.median),
        }
    };
    let mut names: Vec<&str> = rows.iter().map(|r| r.variant.as_str()).collect();
    names.dedup();
    let mut out: Vec<String> = names
        .iter()
        .filter_map(|name| Client::named(name))
        .map(|client| peak_of(client, &workers, embedded, &median))
        .collect();
    out.extend(io_thread_cap(&workers, http_clients, &median));
    let at = workers
        .iter()
        .copied()
        .find(|&w| w == 12)
        .or(workers.last().copied());
    for (w, http) in at
        .into_iter()
        .flat_map(|w| HTTP_CLIENTS.map(|http| (w, http)))
    {
        out.extend(client_cpu(w, http, &median));
    }
    out
}

/// A client's peak throughput, where it was reached, and the CPU it cost there.
fn peak_of(client: Client, workers: &[usize], embedded: bool, median: &MedianOf) -> String {
    let (best_w, best) = workers
        .iter()
        .map(|&w| (w, median(client, w, "throughput")))
        .fold(
            (0, f64::NAN),
            |a, b| if b.1 > a.1 || a.1.is_nan() { b } else { a },
        );
    let mut line = format!(
        "{}: peak {best:.0} req/s at {best_w} workers, client CPU {:.1} us per request there",
        client.name(),
        median(client, best_w, "client CPU per request"),
    );
    if embedded {
        line.push_str(&format!(
            ", the node {:.1} us per request and {:.2} cores busy",
            median(client, best_w, "node CPU per request"),
            median(client, best_w, "node_cores"),
        ));
    }
    line.push('.');
    line
}

/// The cap reqwest::blocking's one I/O thread per client puts on a pool.
fn io_thread_cap(workers: &[usize], http_clients: usize, median: &MedianOf) -> Option<String> {
    let blocking = Client::Pool(Variant::Atomic, HttpClient::Blocking);
    let (w, io) = workers
        .iter()
        .map(|&w| (w, median(blocking, w, "client I/O thread CPU per request")))
        .filter(|(_, io)| io.is_finite() && *io > 0.0)
        .min_by(|a, b| a.1.total_cmp(&b.1))?;
    Some(format!(
        "Each reqwest::blocking client drives all of its requests on one internal thread: {io:.1} us of those threads' CPU per request at best (atomic on the blocking client, {w} workers), so {http_clients} client(s) (--http-clients) cap the pool at about {:.0} req/s however many cores the machine has.",
        http_clients as f64 * 1e6 / io
    ))
}

/// The atomic pool's client CPU per request against the engine's and plain threads' at `w`.
fn client_cpu(w: usize, http: HttpClient, median: &MedianOf) -> Option<String> {
    let cpu = "client CPU per request";
    let atomic = median(Client::Pool(Variant::Atomic, http), w, cpu);
    let engine = median(Client::Engine, w, cpu);
    let decoding = median(Client::EngineDecoding, w, cpu);
    let threads = median(Client::Threads, w, cpu);
    (engine.is_finite() && decoding.is_finite() && atomic.is_finite()).then(|| format!(
        "At {w} workers the atomic pool on the {} client spends {atomic:.1} us of client CPU per request: {:.2}x the engine decoding the same answers ({decoding:.1} us; issue 14 asks for at most 1.5x), {:.2}x the engine dropping them ({engine:.1} us), {:.2}x blocking threads doing the engine's exchange and decoding without a pool ({threads:.1} us).",
        http.name(),
        atomic / decoding,
        atomic / engine,
        atomic / threads,
    ))
}
