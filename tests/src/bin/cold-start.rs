//! Measures a function's release `bootstrap` as Lambda would run it (see `tests::coldstart`):
//! `--cold-starts` processes, each given `--warm + 1` events, then one process given
//! `--sequential` events for the peak RSS. Prints a summary and writes every sample as JSON.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde_json::json;
use tests::coldstart::accounting::Accounting;
use tests::coldstart::cleanup::TenantCleaner;
use tests::coldstart::environment::{lambda_environment, Function};
use tests::coldstart::events::EventSource;
use tests::coldstart::process::truncate_log;
use tests::coldstart::runtime_api::RuntimeApi;
use tests::coldstart::scenarios::run_scenarios;
use tests::coldstart::{run_process, Launch};
use tests::stack::client_for;
use tests::stats::summarize;

#[derive(Parser)]
#[command(about = "Cold start, invocation latency and peak RSS of a function bootstrap")]
struct Cli {
    #[arg(long, value_enum)]
    function: Function,
    /// The function's release binary (x86_64 or whatever runs natively here).
    #[arg(long)]
    bootstrap: PathBuf,
    /// The local DynamoDB (moto with the tables created), e.g. http://127.0.0.1:28000.
    #[arg(long)]
    dynamodb_endpoint: String,
    /// Where the Runtime API stand-in listens (127.0.0.1 only).
    #[arg(long, default_value = "127.0.0.1:29001")]
    runtime_api: SocketAddr,
    #[arg(long, default_value = "fixtures")]
    fixtures: PathBuf,
    #[arg(long, default_value_t = 20)]
    cold_starts: usize,
    /// Events after the first in each cold-started process.
    #[arg(long, default_value_t = 5)]
    warm: usize,
    /// Events given to the one process whose peak RSS is reported (0: no such run).
    #[arg(long, default_value_t = 1000)]
    sequential: usize,
    /// Rounds of the per-event scenarios (`tests::coldstart::scenarios`, CRM only; 0: none),
    /// which need the local DynamoDB of `scripts/dynamodb_local.py --accounting`.
    #[arg(long, default_value_t = 0)]
    scenario_rounds: usize,
    /// Where the scenarios' counts go, as JSON.
    #[arg(long)]
    scenarios_output: Option<PathBuf>,
    /// Extra NAME=VALUE variables for the function (e.g. SSL_CERT_FILE for a TLS endpoint).
    #[arg(long = "env", value_parser = parse_variable)]
    extra_environment: Vec<(String, String)>,
    /// The functions' stdout and stderr (appended; truncated at start).
    #[arg(long)]
    log: PathBuf,
    /// Every sample, as JSON.
    #[arg(long)]
    output: PathBuf,
}

fn parse_variable(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("`{text}` is not NAME=VALUE"))
}

fn milliseconds(durations: impl IntoIterator<Item = Duration>) -> Vec<f64> {
    durations.into_iter().map(|d| d.as_secs_f64() * 1e3).collect()
}

fn describe(label: &str, samples: &[f64]) {
    if let Some(summary) = summarize(samples) {
        println!(
            "  {label:<22} median {:>8.3} ms   p90 {:>8.3} ms   (n = {})",
            summary.median, summary.p90, summary.count
        );
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    if !cli.runtime_api.ip().is_loopback() {
        return Err("--runtime-api must be a 127.0.0.1 address".into());
    }
    let bootstrap = std::path::absolute(&cli.bootstrap)?;
    let fixture = std::fs::read_to_string(cli.fixtures.join(cli.function.event_fixture()))?;
    let mut events = EventSource::new(cli.function, &fixture)?;
    let cleaner = TenantCleaner::new(client_for(&cli.dynamodb_endpoint), cli.function, events.mid());
    let mut api = RuntimeApi::bind(cli.runtime_api).await?;
    let mut environment = lambda_environment(
        cli.function,
        api.address(),
        bootstrap.parent().unwrap_or(Path::new("/")),
        &cli.dynamodb_endpoint,
    );
    environment.extend(cli.extra_environment.iter().cloned());
    truncate_log(&cli.log)?;
    let launch = Launch {
        function: cli.function,
        bootstrap: bootstrap.clone(),
        environment,
        log: cli.log.clone(),
    };

    let mut init = Vec::new();
    let mut init_cpu = Vec::new();
    let mut first = Vec::new();
    let mut first_cpu = Vec::new();
    let mut warm = Vec::new();
    let mut warm_cpu = Vec::new();
    for _ in 0..cli.cold_starts {
        let run = run_process(&mut api, &launch, &mut events, &cleaner, cli.warm + 1).await?;
        init.push(run.init);
        init_cpu.push(run.init_cpu);
        first.push(run.first);
        first_cpu.push(run.first_cpu);
        warm.extend(run.warm);
        warm_cpu.extend(run.warm_cpu);
    }
    let sequential = if cli.sequential > 0 {
        Some(run_process(&mut api, &launch, &mut events, &cleaner, cli.sequential).await?)
    } else {
        None
    };
    if let Some(run) = &sequential {
        warm.extend(run.warm.iter().copied());
        warm_cpu.extend(run.warm_cpu.iter().copied());
    }

    let (init, first, warm) = (milliseconds(init), milliseconds(first), milliseconds(warm));
    let (init_cpu, first_cpu, warm_cpu) = (milliseconds(init_cpu), milliseconds(first_cpu), milliseconds(warm_cpu));
    println!("{} ({})", cli.function.name(), bootstrap.display());
    describe("exec -> first next", &init);
    describe("  CPU time", &init_cpu);
    describe("first invocation", &first);
    describe("  CPU time", &first_cpu);
    describe("warm invocation", &warm);
    describe("  CPU time", &warm_cpu);
    if let Some(run) = &sequential {
        println!(
            "  peak RSS (VmHWM)       {} KiB after {} sequential invocations",
            run.peak_rss_kib, cli.sequential
        );
    }
    let report = json!({
        "function": cli.function.name(),
        "bootstrap": bootstrap.display().to_string(),
        "bootstrap_bytes": std::fs::metadata(&bootstrap)?.len(),
        "cold_starts": cli.cold_starts,
        "init_ms": init,
        "init_cpu_ms": init_cpu,
        "first_invocation_ms": first,
        "first_invocation_cpu_ms": first_cpu,
        "warm_invocation_ms": warm,
        "warm_invocation_cpu_ms": warm_cpu,
        "sequential_invocations": cli.sequential,
        "peak_rss_kib": sequential.map(|run| run.peak_rss_kib),
    });
    std::fs::write(&cli.output, serde_json::to_vec_pretty(&report)?)?;

    if cli.scenario_rounds > 0 {
        let output = cli.scenarios_output.as_ref().ok_or("--scenarios-output is required")?;
        if cli.function != Function::CrmWebhook {
            return Err("the scenarios are CRM events: --function crm-webhook".into());
        }
        let accounting = Accounting::new(&cli.dynamodb_endpoint);
        let (table, _) = cli.function.tables()[0];
        let mut scenarios =
            run_scenarios(&mut api, &launch, &mut events, &accounting, table, cli.scenario_rounds).await?;
        cleaner.clear().await?;
        scenarios["function"] = cli.function.name().into();
        println!("per-event scenarios: {scenarios}");
        std::fs::write(output, serde_json::to_vec_pretty(&scenarios)?)?;
    }
    Ok(())
}
