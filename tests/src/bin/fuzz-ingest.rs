//! The long fuzzing run (`make fuzz`, part of `make soak`): millions of mutated webhook bodies
//! through the pure ingest path of both sources. Exits 1 at the first panic or broken invariant,
//! with the input saved under `target/fuzz-findings/`.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use tests::fuzz::Fuzzer;

#[derive(Parser)]
#[command(about = "Fuzz verification, parsing, normalization and item building of both sources")]
struct Cli {
    /// How many inputs to run.
    #[arg(long, default_value_t = 10_000_000)]
    execs: u64,
    /// Seed of the mutations (random when absent; printed either way, to replay a run).
    #[arg(long)]
    seed: Option<u64>,
    /// Progress is printed after every this many inputs.
    #[arg(long, default_value_t = 1_000_000)]
    report_every: u64,
}

fn main() {
    let cli = Cli::parse();
    let seed = cli.seed.unwrap_or_else(rand::random);
    println!("fuzz-ingest: seed {seed}, {} inputs", cli.execs);
    // Panics are caught and reported as findings; the default hook would print each one first.
    std::panic::set_hook(Box::new(|_| {}));
    let mut fuzzer = Fuzzer::new(seed);
    let started = Instant::now();
    let mut remaining = cli.execs;
    while remaining > 0 {
        let batch = remaining.min(cli.report_every.max(1));
        if let Err(finding) = fuzzer.run(batch) {
            let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/fuzz-findings"));
            std::fs::create_dir_all(&dir).expect("create target/fuzz-findings");
            let path = dir.join(format!(
                "{:?}-seed{seed}-exec{}.bin",
                finding.target, fuzzer.stats.execs
            ));
            std::fs::write(&path, &finding.input).expect("save the input");
            eprintln!(
                "FINDING after {} inputs ({:?}): {}\n  input saved to {}\n  as text: {}",
                fuzzer.stats.execs,
                finding.target,
                finding.problem,
                path.display(),
                String::from_utf8_lossy(&finding.input)
                    .chars()
                    .take(2_000)
                    .collect::<String>()
            );
            std::process::exit(1);
        }
        remaining -= batch;
        let elapsed = started.elapsed().as_secs_f64();
        let stats = &fuzzer.stats;
        println!(
            "{:>12} inputs  {:>8.0}/s  items: crm {} activity {}  refusals: {:?}",
            stats.execs,
            stats.execs as f64 / elapsed,
            stats.crm_items,
            stats.activity_items,
            stats.refusals
        );
    }
    println!(
        "fuzz-ingest: {} inputs in {:.1} s, no panic, no broken invariant",
        fuzzer.stats.execs,
        started.elapsed().as_secs_f64()
    );
}
