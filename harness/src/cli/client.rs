//! `harness client`: a client library under test, run by the user's driver program against mock
//! nodes this command starts (see [`crate::client`] for the driver's protocol).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::{Output, Sizes};
use crate::client::Driver;
use crate::gateway::{self, CellKind, Nodes, Settings, System};
use mock_ollama::duration::parse_duration;

#[derive(Debug, Args)]
pub(super) struct ClientArgs {
    /// The driver: a shell command run once per run, told the nodes, workers, requests, run id
    /// and report file in OPB_* environment variables (and placeholders {nodes}, {workers},
    /// {requests}, {run_id}, {phase}, {model}, {report}); see docs/clients.md.
    #[arg(long)]
    cmd: String,
    /// Name of the library in the results (results/clients/LABEL.json).
    #[arg(long, default_value = "client")]
    label: String,
    /// The longest one run of the driver may take; then its process group is killed and the
    /// run judged as it stands.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    driver_timeout: Duration,
    /// Port of mock node 0 (node i on PORT+i; 0: free ports).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Cells, after `direct` [default: distribution, heterogeneous, two-node, scaling,
    /// node-refuse, node-errors]; also node-busy, node-hang, node-reset, node-stall.
    #[arg(long, value_delimiter = ',', value_parser = gateway::cells::named)]
    cells: Vec<CellKind>,
    /// Length of each of a fault cell's three phases (a driver's fault run is sized to last
    /// three at the capacity ideal).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    phase: Duration,
    /// How long the node-stall cell holds each request on the stalled node.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    stall: Duration,
    /// Speed factor of each node, e.g. 1,0.25 (missing ones are 1).
    #[arg(long, value_delimiter = ',')]
    speeds: Vec<f64>,
    #[command(flatten)]
    sizes: Sizes,
    #[command(flatten)]
    output: Output,
}

/// Measures the library, writes `results/clients/LABEL.json` and the report.
pub(super) fn run(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let sizes = &args.sizes;
    let out = &args.output.out;
    anyhow::ensure!(
        args.driver_timeout <= Duration::from_secs(24 * 3600),
        "--driver-timeout is at most 24h"
    );
    let label = gateway::safe_label(&args.label);
    let dir: PathBuf = out.join("clients").join(format!("{label}.run"));
    let driver = Driver::new(&args.cmd, args.driver_timeout, &dir);
    let settings = Settings {
        target: format!("driver: {}", args.cmd),
        nodes: sizes.nodes.unwrap_or(2),
        port: args.port,
        api: gateway::Api::Ollama,
        label: args.label.clone(),
        workers: sizes.audit_workers(),
        requests: sizes.audit_requests(),
        service: sizes.audit_service(),
        slots: sizes.slots.unwrap_or(1),
        speeds: args.speeds.clone(),
        error_rates: Vec::new(),
        repeats: sizes.checked_repeats(3)?,
        ready_timeout: Duration::ZERO,
        cells: match args.cells.is_empty() {
            true => gateway::cells::client_defaults(),
            false => args.cells.clone(),
        },
        phase: args.phase,
        repeat_inputs: false,
        stall: args.stall,
        headers: crate::engine::Headers::default(),
        ready: gateway::Readiness::for_api(gateway::Api::Ollama),
        workload: gateway::WorkloadSettings::default(),
        system: System::Driver(driver),
    };
    gateway::check(&settings)?;
    let nodes = gateway::start_nodes(&settings)?;
    eprintln!("mock nodes: {}", nodes.urls().join(" "));
    eprintln!("driver files in {}", dir.display());
    let result = gateway::measure(&settings, &Nodes::Embedded(&nodes));
    nodes.shutdown();
    let result = result?;
    let path = gateway::write_under(out, "clients", &result)?;
    println!("== client {} ({})", result.label, args.cmd);
    for verdict in &result.verdicts {
        println!("  - {verdict}");
    }
    print!("{}", gateway::glance(&result));
    println!("Wrote {}", path.display());
    if let Err(e) = crate::report::regenerate(out) {
        eprintln!("REPORT.md not updated: {e:#}");
    }
    Ok(ExitCode::SUCCESS)
}
