//! Run by `make test` after `cargo test`: every answer the test clients received (the ledger)
//! must be counted in the functions' EMF metrics (`requests` by `source` and `outcome`), and no
//! request may be counted that no client received. Zero requests is a failure, not a pass.
//!
//! The function log is read from `--offset` (where the stack's readiness probes end). Log lines
//! reach it a moment after the answers, so it is read again for up to `--settle` seconds until
//! the counts agree.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use tests::metrics_check::{compare, emf_requests, ledger_tally, Tally};

#[derive(Parser)]
#[command(about = "Compare the test clients' answers with the functions' EMF metrics")]
struct Cli {
    /// Directory of the ledger files (`*.jsonl`).
    #[arg(long)]
    ledger: PathBuf,
    /// The functions' log (cargo lambda watch's output).
    #[arg(long)]
    log: PathBuf,
    /// Byte offset in the log where the checked requests begin.
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// How long to wait for late log lines.
    #[arg(long, default_value_t = 30)]
    settle: u64,
}

fn read_ledger(dir: &Path) -> Result<Tally, String> {
    let mut all = String::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_some_and(|ext| ext == "jsonl") {
            all.push_str(&std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?);
        }
    }
    ledger_tally(&all)
}

fn read_log(path: &Path, offset: u64) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
    Ok(String::from_utf8_lossy(&bytes[start..]).into_owned())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match check(&cli) {
        Ok(summary) => {
            println!("check-metrics: {summary}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("check-metrics: FAILED: {error}");
            ExitCode::FAILURE
        }
    }
}

fn check(cli: &Cli) -> Result<String, String> {
    let answered = read_ledger(&cli.ledger)?;
    let total: u64 = answered.values().sum();
    if total == 0 {
        return Err(format!("the ledger in {} holds no answer", cli.ledger.display()));
    }
    for source in ["crm", "activity"] {
        // Both functions must have answered something, or the check proves little.
        if !answered.keys().any(|(s, _)| s == source) {
            return Err(format!("the ledger holds no answer from the {source} function"));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(cli.settle);
    loop {
        let found = emf_requests(&read_log(&cli.log, cli.offset)?);
        let differences = compare(&answered, &found.tally);
        let settled = differences.is_empty() || Instant::now() >= deadline;
        if settled {
            if !differences.is_empty() {
                return Err(format!(
                    "{} answers received, {} requests in the metrics:\n  {}",
                    total,
                    found.tally.values().sum::<u64>(),
                    differences.join("\n  ")
                ));
            }
            if found.without_latency > 0 {
                return Err(format!(
                    "{} request documents carry no handler_latency_ms: a request's metrics were split",
                    found.without_latency
                ));
            }
            let classes: Vec<String> = answered
                .iter()
                .map(|((source, class), n)| format!("{source}/{class}={n}"))
                .collect();
            return Ok(format!(
                "{total} answers, {} EMF request documents, all matching ({} cold starts): {}",
                found.documents,
                found.cold_starts,
                classes.join(" ")
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
