//! Signs webhook bodies the way the vendors do: ready-to-paste `curl` commands for `make run`,
//! and the signed API Gateway events in `fixtures/events/`.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use tests::events::{activity_event, crm_event};
use tests::signing::{fresh_activity_body, sign_crm};

#[derive(Parser)]
#[command(about = "Sign CRM webhook and activity callback bodies")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a curl that posts a CRM body with its HMAC-SHA1 signature header.
    CrmCurl {
        #[arg(long)]
        url: String,
        #[arg(long)]
        secret: String,
        #[arg(long, default_value = "X-Signature")]
        header: String,
        #[arg(long)]
        body_file: PathBuf,
    },
    /// Print a curl that posts an activity body with a fresh nonce, timestamp and sign.
    ActivityCurl {
        #[arg(long)]
        url: String,
        #[arg(long)]
        secret: String,
        #[arg(long)]
        body_file: PathBuf,
    },
    /// Write one signed API Gateway HTTP API event per payload fixture.
    Events {
        #[arg(long, default_value = "fixtures")]
        fixtures: PathBuf,
        #[arg(long, default_value = "dev-crm-secret")]
        crm_secret: String,
        #[arg(long, default_value = "X-Signature")]
        header: String,
    },
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    match Cli::parse().command {
        Command::CrmCurl {
            url,
            secret,
            header,
            body_file,
        } => {
            let body = std::fs::read_to_string(&body_file)?;
            let compact = serde_json::from_str::<serde_json::Value>(&body)?.to_string();
            let signature = sign_crm(compact.as_bytes(), &secret);
            println!(
                "curl -sS -X POST '{url}' -H 'Content-Type: application/json' -H '{header}: {signature}' --data-binary {}",
                shell_quote(&compact)
            );
        }
        Command::ActivityCurl { url, secret, body_file } => {
            let body = std::fs::read_to_string(&body_file)?;
            let fresh = fresh_activity_body(&body, &secret)?;
            println!(
                "curl -sS -X POST '{url}' -H 'Content-Type: application/json' --data-binary {}",
                shell_quote(&fresh)
            );
        }
        Command::Events {
            fixtures,
            crm_secret,
            header,
        } => write_events(&fixtures, &crm_secret, &header)?,
    }
    Ok(())
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

/// Single-quotes a string for POSIX shells.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}
