//! The one table of `make bench`: per-event cost (criterion), arm64 bootstrap sizes, cold start,
//! invocation latency and peak RSS (cold-start harness), each against its target. Printed, and
//! written as Markdown with the per-fixture criterion medians below it. Exits non-zero when an
//! input is missing (a target that is not met is reported, not an error).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde_json::Value;
use tests::stats::{summarize, Summary};

const MB: f64 = 1e6;

#[derive(Parser)]
#[command(about = "Print the make bench table")]
struct Cli {
    /// criterion's output directory.
    #[arg(long, default_value = "target/criterion")]
    criterion: PathBuf,
    /// `cargo lambda build --release --arm64` output: <dir>/<function>/bootstrap.
    #[arg(long, default_value = "target/lambda")]
    lambda_dir: PathBuf,
    /// JSON written by `cold-start`, one per function.
    #[arg(long, required = true)]
    coldstart: Vec<PathBuf>,
    /// Where the Markdown table goes.
    #[arg(long)]
    output: PathBuf,
}

const FUNCTIONS: [&str; 2] = ["crm-webhook", "activity-callback"];

/// One criterion benchmark: its full id and its per-iteration times (ns), one per sample.
struct Benchmark {
    id: String,
    median_ns: f64,
    per_iteration_ns: Vec<f64>,
}

impl Benchmark {
    fn p90_ns(&self) -> Option<f64> {
        summarize(&self.per_iteration_ns).map(|summary| summary.p90)
    }
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Every benchmark of the latest criterion run (`<id>/new/{benchmark,estimates,sample}.json`).
fn criterion_benchmarks(root: &Path) -> Vec<Benchmark> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.file_name().is_some_and(|name| name == "new") {
                if let Some(benchmark) = read_benchmark(&path) {
                    found.push(benchmark);
                }
            } else if path.is_dir() {
                pending.push(path);
            }
        }
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    found
}

fn read_benchmark(new: &Path) -> Option<Benchmark> {
    let id = read_json(&new.join("benchmark.json")).ok()?["full_id"]
        .as_str()?
        .to_owned();
    let median_ns = read_json(&new.join("estimates.json")).ok()?["median"]["point_estimate"].as_f64()?;
    let sample = read_json(&new.join("sample.json")).ok()?;
    let numbers = |key: &str| -> Vec<f64> {
        sample[key]
            .as_array()
            .map(|values| values.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    let per_iteration_ns = numbers("times")
        .iter()
        .zip(numbers("iters"))
        .map(|(time, iterations)| time / iterations)
        .collect();
    Some(Benchmark {
        id,
        median_ns,
        per_iteration_ns,
    })
}

/// A row of the table; `None` figures are inputs that were missing.
struct Row {
    figure: String,
    median: Option<f64>,
    p90: Option<f64>,
    unit: &'static str,
    decimals: usize,
    target: Option<f64>,
}

impl Row {
    fn new(figure: impl Into<String>, unit: &'static str, decimals: usize) -> Self {
        Self {
            figure: figure.into(),
            median: None,
            p90: None,
            unit,
            decimals,
            target: None,
        }
    }

    fn values(mut self, median: Option<f64>, p90: Option<f64>) -> Self {
        self.median = median;
        self.p90 = p90;
        self
    }

    fn summary(self, summary: Option<Summary>) -> Self {
        self.values(summary.map(|s| s.median), summary.map(|s| s.p90))
    }

    fn at_most(mut self, target: f64) -> Self {
        self.target = Some(target);
        self
    }

    fn format(&self, value: Option<f64>) -> String {
        value.map_or_else(|| "—".to_owned(), |v| format!("{v:.*} {}", self.decimals, self.unit))
    }

    fn cells(&self) -> [String; 5] {
        let median = match self.median {
            Some(_) => self.format(self.median),
            None => "missing".to_owned(),
        };
        let target = self
            .target
            .map_or_else(|| "—".to_owned(), |t| format!("≤ {}", self.format(Some(t))));
        let met = match (self.median, self.target) {
            (Some(value), Some(target)) if value <= target => "yes",
            (Some(_), Some(_)) => "**no**",
            _ => "—",
        };
        [
            self.figure.clone(),
            median,
            self.format(self.p90),
            target,
            met.to_owned(),
        ]
    }
}

fn table(rows: &[Row]) -> String {
    let header = ["figure", "median", "p90", "target", "met?"];
    let cells: Vec<[String; 5]> = rows.iter().map(Row::cells).collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |row: &[String]| {
        let padded: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell}{}", " ".repeat(width - cell.chars().count())))
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut out = line(&header.map(str::to_owned));
    out += &line(&widths.map(|w| "-".repeat(w)));
    for row in &cells {
        out += &line(row);
    }
    out
}

fn criterion_rows(benchmarks: &[Benchmark], rows: &mut Vec<Row>) {
    let find = |id: &str| benchmarks.iter().find(|b| b.id == id);
    let micros = |b: Option<&Benchmark>| {
        (
            b.map(|b| b.median_ns / 1e3),
            b.and_then(Benchmark::p90_ns).map(|ns| ns / 1e3),
        )
    };
    let (median, p90) = micros(find("ingest/crm/seed_124_object_create"));
    rows.push(
        Row::new("per event: CRM seed_124_object_create", "µs", 1)
            .values(median, p90)
            .at_most(10.0),
    );
    let (median, p90) = micros(find("ingest/activity/event_add"));
    rows.push(Row::new("per event: activity event/add", "µs", 1).values(median, p90));
    for group in ["crm_fixtures", "activity_fixtures"] {
        let members: Vec<&Benchmark> = benchmarks
            .iter()
            .filter(|b| b.id.starts_with(&format!("{group}/")))
            .collect();
        let slowest = members
            .iter()
            .copied()
            .max_by(|a, b| a.median_ns.total_cmp(&b.median_ns));
        let name = slowest.map_or("", |b| &b.id[group.len() + 1..]);
        let (median, p90) = micros(slowest);
        rows.push(
            Row::new(
                format!("per event: slowest of {} {group} ({name})", members.len()),
                "µs",
                1,
            )
            .values(median, p90),
        );
    }
}

fn harness_rows(coldstart: &[Value], rows: &mut Vec<Row>) {
    let samples = |report: &Value, key: &str| -> Vec<f64> {
        report[key]
            .as_array()
            .map(|values| values.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    for function in FUNCTIONS {
        let report = coldstart
            .iter()
            .find(|r| r["function"] == function)
            .unwrap_or(&Value::Null);
        let starts = report["cold_starts"].as_u64().unwrap_or(0);
        rows.push(
            Row::new(format!("{function}: exec → first next (n = {starts})"), "ms", 2)
                .summary(summarize(&samples(report, "init_ms")))
                .at_most(15.0),
        );
        rows.push(
            Row::new(format!("{function}: … CPU time of the process"), "ms", 2)
                .summary(summarize(&samples(report, "init_cpu_ms"))),
        );
        rows.push(
            Row::new(format!("{function}: first invocation, local DynamoDB"), "ms", 2)
                .summary(summarize(&samples(report, "first_invocation_ms"))),
        );
        rows.push(
            Row::new(format!("{function}: … CPU time of the process"), "ms", 2)
                .summary(summarize(&samples(report, "first_invocation_cpu_ms"))),
        );
        let warm = samples(report, "warm_invocation_ms");
        rows.push(
            Row::new(format!("{function}: warm invocation (n = {})", warm.len()), "ms", 2).summary(summarize(&warm)),
        );
        let invocations = report["sequential_invocations"].as_u64().unwrap_or(0);
        let peak = report["peak_rss_kib"].as_f64().map(|kib| kib * 1024.0 / MB);
        rows.push(
            Row::new(format!("{function}: peak RSS over {invocations} invocations"), "MB", 1)
                .values(peak, None)
                .at_most(25.0),
        );
    }
}

fn details(benchmarks: &[Benchmark]) -> String {
    let mut out = String::from("\nPer-event criterion medians (verify + parse + normalize + item build):\n\n");
    for benchmark in benchmarks {
        let _ = writeln!(out, "- `{}`: {:.1} µs", benchmark.id, benchmark.median_ns / 1e3);
    }
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    let benchmarks = criterion_benchmarks(&cli.criterion);
    let coldstart = cli
        .coldstart
        .iter()
        .map(|path| read_json(path))
        .collect::<Result<Vec<_>, _>>()?;
    let mut rows = Vec::new();
    criterion_rows(&benchmarks, &mut rows);
    for function in FUNCTIONS {
        let size = std::fs::metadata(cli.lambda_dir.join(function).join("bootstrap"))
            .ok()
            .map(|meta| meta.len() as f64 / MB);
        rows.push(
            Row::new(format!("{function}: arm64 bootstrap size"), "MB", 2)
                .values(size, None)
                .at_most(8.0),
        );
    }
    harness_rows(&coldstart, &mut rows);

    let table = table(&rows);
    print!("{table}");
    let units = "\nMB = 10^6 bytes; RSS is VmHWM of the process after its last invocation.\n";
    std::fs::write(&cli.output, format!("{table}{units}{}", details(&benchmarks)))?;
    let missing: Vec<&str> = rows
        .iter()
        .filter(|r| r.median.is_none())
        .map(|r| r.figure.as_str())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("missing figures: {}", missing.join("; ")).into())
    }
}
