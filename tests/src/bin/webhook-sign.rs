//! Writes the signed API Gateway events of `fixtures/events/`, one per payload fixture, signed
//! with the development secrets of `scripts/local.env` (what `make invoke`, `make invoke-check`
//! and the cold-start harness send).

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use tests::events::{activity_event, crm_event};
use tests::local::{crm_signature_header, dev_crm_secret};
use tests::signing::sign_crm;

#[derive(Parser)]
#[command(about = "Write the signed API Gateway events of fixtures/events/")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write one signed API Gateway HTTP API event per payload fixture.
    Events {
        #[arg(long, default_value = "fixtures")]
        fixtures: PathBuf,
        /// The CRM secret (default: the development secret of scripts/local.env)
        #[arg(long)]
        crm_secret: Option<String>,
        /// The CRM signature header (default: the one of scripts/local.env)
        #[arg(long)]
        header: Option<String>,
    },
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    match Cli::parse().command {
        Command::Events {
            fixtures,
            crm_secret,
            header,
        } => write_events(
            &fixtures,
            &crm_secret.unwrap_or_else(|| dev_crm_secret().to_owned()),
            &header.unwrap_or_else(|| crm_signature_header().to_owned()),
        ),
    }
}

fn write_events(fixtures: &Path, crm_secret: &str, header: &str) -> Result<(), Box<dyn std::error::Error>> {
    let out = fixtures.join("events");
    std::fs::create_dir_all(&out)?;
    for (source, build) in [("crm", true), ("activity", false)] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures.join(source))?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        files.sort();
        for file in files.iter().filter(|f| f.extension().is_some_and(|e| e == "json")) {
            let body = std::fs::read_to_string(file)?;
            let event = if build {
                crm_event(&body, &sign_crm(body.as_bytes(), crm_secret), header)
            } else {
                activity_event(&body, "124")
            };
            let name = format!("{source}_{}", file.file_name().unwrap().to_string_lossy());
            std::fs::write(out.join(&name), serde_json::to_string_pretty(&event)? + "\n")?;
            println!("wrote {}", out.join(name).display());
        }
    }
    Ok(())
}
