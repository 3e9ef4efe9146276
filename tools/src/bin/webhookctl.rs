//! `webhookctl`: the command-line tool for integrators and operators of the webhook service.
//!
//! Sign and send deliveries as the vendors do, inspect and replay the deliveries the service
//! refused and kept (contract 2.4), and find which CRM signature scheme a captured request uses.
//! Walkthrough: docs/refused-deliveries.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use shared::activity::verify as activity_verify;
use shared::clock::{Clock, SystemClock};
use shared::config::Env;
use shared::crm::verify::{Algorithm, Encoding, SignatureScheme};
use shared::dynamo::DynamoQuarantineStore;
use shared::quarantine::{RefusedDelivery, REPLAY_HEADER};
use shared::secret::Secret;
use shared::source::Source;
use tools::probe::probe;

type Failure = Box<dyn std::error::Error>;

#[derive(Parser)]
#[command(
    name = "webhookctl",
    version,
    about = "Sign, send, inspect and replay webhook deliveries; find a sender's CRM signature scheme",
    long_about = "Sign, send, inspect and replay webhook deliveries for the CRM webhook and the \
                  Lexiang activity callback, and find which CRM signature scheme a captured request \
                  uses.\n\nThe quarantine commands read the refused_deliveries table through the AWS \
                  SDK: region, credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, \
                  AWS_SESSION_TOKEN) and endpoint (AWS_ENDPOINT_URL_DYNAMODB, e.g. the local \
                  stack's moto) come from the environment.\n\nWalkthrough: docs/refused-deliveries.md"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the signature of a CRM body (the header value), or an activity body with a fresh
    /// nonce, timestamp and sign.
    Sign(SignArgs),
    /// Sign a body and POST it to a URL (the local stack or a deployed stage); print the status
    /// and the answer. Exits 0 on a 2xx answer, 1 otherwise.
    Send(SendArgs),
    /// List, show and replay refused deliveries kept in the quarantine table.
    Quarantine(QuarantineArgs),
    /// List the Lexiang actions the service does not model, acknowledged and kept.
    Unmodelled(tools::unmodelled::UnmodelledArgs),
    /// Find which CRM signature scheme a captured request was signed with, given a candidate
    /// secret: tries HMAC-SHA1 and HMAC-SHA256, hex and base64, each header, with and without a
    /// `sha1=`/`sha256=` prefix, and prints the configuration that selects the match. Exits 0
    /// when something matches, 1 otherwise.
    Probe(ProbeArgs),
    /// Show, list and export the stored leads, accounts and activities of a tenant.
    Entity(tools::entity::EntityArgs),
    /// Show and change the tenant-secret documents in AWS Secrets Manager (never printing a
    /// secret value); check a document before it is put.
    Secrets(tools::secrets::SecretsArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum SourceArg {
    Crm,
    Activity,
}

impl From<SourceArg> for Source {
    fn from(source: SourceArg) -> Self {
        match source {
            SourceArg::Crm => Source::Crm,
            SourceArg::Activity => Source::Activity,
        }
    }
}

#[derive(Args)]
struct BodyArgs {
    /// The body to sign, from a file (sent byte for byte)
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "fixture",
        required_unless_present = "fixture"
    )]
    body_file: Option<PathBuf>,
    /// The body to sign, from fixtures/<source>/<NAME>.json (e.g. seed_124_object_create)
    #[arg(long, value_name = "NAME")]
    fixture: Option<String>,
}

#[derive(Args)]
struct CrmSchemeArgs {
    /// HMAC algorithm of the CRM signature
    #[arg(long, default_value = "hmac-sha1", value_parser = parse_algorithm)]
    algorithm: Algorithm,
    /// How the CRM signature is written
    #[arg(long, default_value = "hex", value_parser = parse_encoding)]
    encoding: Encoding,
    /// Write the algorithm's prefix (`sha1=` / `sha256=`) before the signature
    #[arg(long)]
    prefix: bool,
}

#[derive(Args)]
struct SignArgs {
    /// Which sender's signature to make
    #[arg(value_enum)]
    source: SourceArg,
    #[command(flatten)]
    body: BodyArgs,
    /// The shared secret to sign with
    #[arg(long, env = "WEBHOOKCTL_SECRET", hide_env_values = true)]
    secret: String,
    #[command(flatten)]
    scheme: CrmSchemeArgs,
    /// Activity: the nonce to sign (default: a fresh unique one)
    #[arg(long)]
    nonce: Option<String>,
    /// Activity: the Unix timestamp to sign (default: now)
    #[arg(long)]
    timestamp: Option<i64>,
}

#[derive(Args)]
struct SendArgs {
    /// Which sender to play
    #[arg(value_enum)]
    source: SourceArg,
    /// Where to POST: the CRM webhook URL, or the activity callback URL with its tenant
    /// (e.g. http://127.0.0.1:9000/lambda-url/activity-callback/activity/124)
    #[arg(long)]
    url: String,
    #[command(flatten)]
    body: BodyArgs,
    /// The shared secret to sign with
    #[arg(long, env = "WEBHOOKCTL_SECRET", hide_env_values = true)]
    secret: String,
    /// CRM: the header that carries the signature
    #[arg(long, default_value = "X-Signature")]
    header: String,
    #[command(flatten)]
    scheme: CrmSchemeArgs,
    /// Print a ready-to-paste curl command that makes this request, instead of sending it. The
    /// body is written on one line: a CRM body is compacted first, and signed as compacted.
    #[arg(long)]
    curl: bool,
}

#[derive(Args)]
struct TableArgs {
    /// The quarantine table
    #[arg(long, env = "REFUSED_DELIVERIES_TABLE_NAME", default_value = "refused_deliveries")]
    table: String,
}

#[derive(Args)]
struct QuarantineArgs {
    #[command(subcommand)]
    command: QuarantineCommand,
}

#[derive(Subcommand)]
enum QuarantineCommand {
    /// One line per kept delivery, oldest first: source, id, tenant, status, code, last replay.
    List {
        #[command(flatten)]
        table: TableArgs,
        /// Only this source (default: both)
        #[arg(long, value_enum)]
        source: Option<SourceArg>,
        /// Only this tenant
        #[arg(long)]
        tenant: Option<String>,
    },
    /// One kept delivery as JSON (body, header names, signature header values, code, tenant,
    /// time): the input `probe --request` reads.
    Show {
        #[command(flatten)]
        table: TableArgs,
        #[arg(value_enum)]
        source: SourceArg,
        /// The delivery id, as `list` prints it
        delivery_id: String,
    },
    /// Re-submit kept deliveries to the endpoints, oldest first, so that each is verified again
    /// under the current configuration; print each answer and a summary. Exits 1 if any replay
    /// was refused or failed.
    Replay {
        #[command(flatten)]
        table: TableArgs,
        /// Only this source (default: both)
        #[arg(long, value_enum)]
        source: Option<SourceArg>,
        /// Only this tenant
        #[arg(long)]
        tenant: Option<String>,
        /// Only these deliveries (repeatable)
        #[arg(long = "id", value_name = "DELIVERY_ID")]
        ids: Vec<String>,
        /// The CRM webhook URL
        #[arg(long, default_value = "http://127.0.0.1:9000/lambda-url/crm-webhook/crm/webhook")]
        crm_url: String,
        /// The activity callback URL; `{mid}` is replaced by the delivery's tenant
        #[arg(
            long,
            default_value = "http://127.0.0.1:9000/lambda-url/activity-callback/activity/{mid}"
        )]
        activity_url: String,
        /// Post nothing: verify each delivery locally against the configuration in this
        /// environment (CRM_WEBHOOK_SECRET[_<mid>], CRM_SIGNATURE_HEADER/ALGORITHM/ENCODING,
        /// ACTIVITY_CALLBACK_SECRET[_<mid>], ACTIVITY_MAX_AGE_SECONDS, ACTIVITY_MAX_FUTURE_SECONDS)
        /// and print what it gives
        #[arg(long)]
        dry_run: bool,
    },
    /// Apply one kept activity callback through the store with your own AWS credentials, after
    /// verifying it again with the current secrets; its freshness is waived for this record
    /// alone and the nonce rule still applies (a second apply is a duplicate). Reads the
    /// function's configuration from this environment (ACTIVITY_TABLE_NAME,
    /// ACTIVITY_NONCES_TABLE_NAME, ACTIVITY_SECRETS_MANAGER_ID or ACTIVITY_CALLBACK_SECRET[_<mid>]).
    /// Exits 1 unless accepted or duplicate.
    Apply(tools::replay::ApplyArgs),
}

#[derive(Args)]
struct ProbeArgs {
    /// A captured request as JSON: the output of `quarantine show` (body, signature_headers),
    /// or {"body": "...", "headers": {"Name": "value"}}
    #[arg(long, value_name = "FILE", conflicts_with = "body_file")]
    request: Option<PathBuf>,
    /// The captured body (byte for byte), with --header
    #[arg(long, value_name = "FILE", required_unless_present = "request")]
    body_file: Option<PathBuf>,
    /// A captured header, `Name: value` (repeatable)
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// A candidate secret (repeatable)
    #[arg(long = "secret", required = true, env = "WEBHOOKCTL_SECRET", hide_env_values = true)]
    secrets: Vec<String>,
}

fn parse_algorithm(text: &str) -> Result<Algorithm, String> {
    text.parse()
}

fn parse_encoding(text: &str) -> Result<Encoding, String> {
    text.parse()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("webhookctl: {error}");
            ExitCode::from(2)
        }
    }
}

async fn run(command: Command) -> Result<ExitCode, Failure> {
    match command {
        Command::Sign(args) => sign(&args),
        Command::Send(args) => send(&args).await,
        Command::Quarantine(args) => quarantine(args.command).await,
        Command::Probe(args) => probe_command(&args),
        Command::Entity(args) => tools::entity::run(args).await,
        Command::Secrets(args) => tools::secrets::run(args).await,
        Command::Unmodelled(args) => tools::unmodelled::run(args).await,
    }
}

// ---------------------------------------------------------------------------------------------
// sign, send

/// The bytes of `--body-file`, or of `fixtures/<source>/<name>.json`.
fn read_body(source: SourceArg, body: &BodyArgs) -> Result<Vec<u8>, Failure> {
    let path = match (&body.body_file, &body.fixture) {
        (Some(path), _) => path.clone(),
        (None, Some(name)) => fixture_path(source, name)?,
        (None, None) => return Err("give --body-file or --fixture".into()),
    };
    std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()).into())
}

/// `fixtures/<source>/<name>.json` under the current directory or the repository this tool was
/// built from.
fn fixture_path(source: SourceArg, name: &str) -> Result<PathBuf, Failure> {
    let dir = match source {
        SourceArg::Crm => "crm",
        SourceArg::Activity => "activity",
    };
    let file = if name.ends_with(".json") {
        name.to_owned()
    } else {
        format!("{name}.json")
    };
    let roots = [PathBuf::from("."), Path::new(env!("CARGO_MANIFEST_DIR")).join("..")];
    roots
        .iter()
        .map(|root| root.join("fixtures").join(dir).join(&file))
        .find(|path| path.is_file())
        .ok_or_else(|| format!("no fixture fixtures/{dir}/{file}").into())
}

fn crm_signature(body: &[u8], secret: &str, scheme: &CrmSchemeArgs) -> String {
    let algorithm = scheme.algorithm;
    let value = SignatureScheme {
        algorithm,
        encoding: scheme.encoding,
    }
    .sign(body, &Secret::new(secret));
    if scheme.prefix {
        format!("{}{value}", algorithm.prefix())
    } else {
        value
    }
}

/// An activity body with `nonce`, `timestamp` (by default a fresh random nonce and now) and the
/// matching `sign` set.
fn signed_activity_body(
    body: &[u8],
    secret: &str,
    nonce: Option<&str>,
    timestamp: Option<i64>,
) -> Result<String, Failure> {
    let nonce = nonce.map_or_else(fresh_nonce, str::to_owned);
    let timestamp = timestamp.unwrap_or_else(|| SystemClock.now_unix());
    Ok(activity_verify::signed_body(
        body,
        &Secret::new(secret),
        &nonce,
        timestamp,
    )?)
}

/// 128 random bits in hex: a nonce the sender has not used before.
fn fresh_nonce() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn sign(args: &SignArgs) -> Result<ExitCode, Failure> {
    let body = read_body(args.source, &args.body)?;
    match args.source {
        SourceArg::Crm => println!("{}", crm_signature(&body, &args.secret, &args.scheme)),
        SourceArg::Activity => println!(
            "{}",
            signed_activity_body(&body, &args.secret, args.nonce.as_deref(), args.timestamp)?
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("a plain HTTP client")
}

/// POSTs `body` with `headers`; the status and the answer's text.
async fn post(
    client: &reqwest::Client,
    url: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Result<(u16, String), Failure> {
    let mut request = client.post(url).header("content-type", "application/json").body(body);
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request.send().await.map_err(|e| format!("POST {url}: {e}"))?;
    let status = response.status().as_u16();
    Ok((status, response.text().await.unwrap_or_default()))
}

async fn send(args: &SendArgs) -> Result<ExitCode, Failure> {
    let mut body = read_body(args.source, &args.body)?;
    if args.curl && matches!(args.source, SourceArg::Crm) {
        let value: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| format!("the body is not JSON: {e}"))?;
        body = value.to_string().into_bytes();
    }
    let (body, headers) = match args.source {
        SourceArg::Crm => {
            let signature = crm_signature(&body, &args.secret, &args.scheme);
            (body, vec![(args.header.clone(), signature)])
        }
        SourceArg::Activity => (
            signed_activity_body(&body, &args.secret, None, None)?.into_bytes(),
            Vec::new(),
        ),
    };
    if args.curl {
        println!("{}", curl_command(&args.url, &headers, &String::from_utf8(body)?));
        return Ok(ExitCode::SUCCESS);
    }
    let (status, answer) = post(&http_client(), &args.url, &headers, body).await?;
    println!("{status}");
    println!("{answer}");
    Ok(if (200..300).contains(&status) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The curl command that POSTs `body` as JSON with `headers` to `url`, quoted for POSIX shells.
fn curl_command(url: &str, headers: &[(String, String)], body: &str) -> String {
    let mut words = vec!["curl".to_owned(), "-sS".to_owned(), "-X".to_owned(), "POST".to_owned()];
    words.push(shell_quote(url));
    for header in std::iter::once("Content-Type: application/json".to_owned())
        .chain(headers.iter().map(|(name, value)| format!("{name}: {value}")))
    {
        words.push("-H".to_owned());
        words.push(shell_quote(&header));
    }
    words.push("--data-binary".to_owned());
    words.push(shell_quote(body));
    words.join(" ")
}

/// `text` in single quotes, each quote inside written as `'\''`.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

// ---------------------------------------------------------------------------------------------
// quarantine

/// The quarantine table, through the operator's patient client.
fn quarantine_store(table: &TableArgs) -> DynamoQuarantineStore {
    DynamoQuarantineStore::new(
        tools::operator::dynamodb_client(&Env::from_process()),
        table.table.clone(),
    )
}

/// The kept deliveries of `source` (or both), oldest first, for `tenant` (or all).
async fn kept(
    store: &DynamoQuarantineStore,
    source: Option<SourceArg>,
    tenant: Option<&str>,
) -> Result<Vec<RefusedDelivery>, Failure> {
    let sources = match source {
        Some(source) => vec![Source::from(source)],
        None => vec![Source::Crm, Source::Activity],
    };
    let mut records = Vec::new();
    for source in sources {
        records.extend(store.list(source).await?);
    }
    records.retain(|record| tenant.is_none_or(|tenant| record.tenant.as_deref() == Some(tenant)));
    // Time order across sources (ids start with the RFC 3339 time).
    records.sort_by(|a, b| a.delivery_id.cmp(&b.delivery_id).then(a.source.cmp(&b.source)));
    Ok(records)
}

async fn quarantine(command: QuarantineCommand) -> Result<ExitCode, Failure> {
    match command {
        QuarantineCommand::Apply(args) => tools::replay::run(args).await,
        QuarantineCommand::List { table, source, tenant } => {
            let store = quarantine_store(&table);
            let records = kept(&store, source, tenant.as_deref()).await?;
            for record in &records {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    record.source.as_str(),
                    record.delivery_id,
                    record.tenant.as_deref().unwrap_or("-"),
                    record.status,
                    record.code,
                    record
                        .last_replay
                        .as_deref()
                        .map_or_else(|| "not replayed".to_owned(), |outcome| format!("replayed: {outcome}")),
                );
            }
            eprintln!("{} refused deliveries in {}", records.len(), store.table());
            Ok(ExitCode::SUCCESS)
        }
        QuarantineCommand::Show {
            table,
            source,
            delivery_id,
        } => {
            let store = quarantine_store(&table);
            match store.get(source.into(), &delivery_id).await? {
                Some(record) => {
                    println!("{}", serde_json::to_string_pretty(&record)?);
                    Ok(ExitCode::SUCCESS)
                }
                None => Err(format!("no refused delivery {delivery_id} in {}", store.table()).into()),
            }
        }
        QuarantineCommand::Replay {
            table,
            source,
            tenant,
            ids,
            crm_url,
            activity_url,
            dry_run,
        } => {
            let store = quarantine_store(&table);
            let mut records = kept(&store, source, tenant.as_deref()).await?;
            if !ids.is_empty() {
                records.retain(|record| ids.contains(&record.delivery_id));
            }
            let outcomes = if dry_run {
                verify_locally(&records)?
            } else {
                replay(&store, &records, &crm_url, &activity_url).await?
            };
            let mut summary: BTreeMap<&str, usize> = BTreeMap::new();
            for outcome in &outcomes {
                *summary.entry(outcome.as_str()).or_default() += 1;
            }
            let line: Vec<String> = summary.iter().map(|(outcome, n)| format!("{n} {outcome}")).collect();
            println!(
                "{} {} deliveries: {}",
                if dry_run { "verified" } else { "replayed" },
                outcomes.len(),
                if line.is_empty() {
                    "none".to_owned()
                } else {
                    line.join(", ")
                }
            );
            let all_good = outcomes
                .iter()
                .all(|o| matches!(o.as_str(), "accepted" | "duplicate" | "success" | "verifies"));
            Ok(if all_good { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}

/// What an answer says: `accepted` / `duplicate` (CRM), `success` (activity), or the refusal
/// code (`http <status>` when the answer has none).
fn outcome_of(status: u16, answer: &str) -> String {
    let json: Option<serde_json::Value> = serde_json::from_str(answer).ok();
    if (200..300).contains(&status) {
        return json
            .as_ref()
            .and_then(|v| v["status"].as_str())
            .map_or_else(|| answer.trim().to_owned(), str::to_owned);
    }
    json.as_ref()
        .and_then(|v| v["error"]["code"].as_str())
        .map_or_else(|| format!("http {status}"), str::to_owned)
}

async fn replay(
    store: &DynamoQuarantineStore,
    records: &[RefusedDelivery],
    crm_url: &str,
    activity_url: &str,
) -> Result<Vec<String>, Failure> {
    let client = http_client();
    let mut outcomes = Vec::new();
    for record in records {
        let url = match (record.source, record.tenant.as_deref()) {
            (Source::Crm, _) => crm_url.to_owned(),
            (Source::Activity, Some(tenant)) => activity_url.replace("{mid}", tenant),
            (Source::Activity, None) => activity_url.replace("/{mid}", "").replace("{mid}", ""),
        };
        // The headers that may carry the signature, as received: the endpoint verifies again.
        let mut headers: Vec<(String, String)> = record
            .signature_headers
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        // Refused again, it is not kept a second time: its record is here.
        headers.push((REPLAY_HEADER.to_owned(), record.delivery_id.clone()));
        let outcome = match post(&client, &url, &headers, record.body.clone().into_bytes()).await {
            Ok((status, answer)) => outcome_of(status, &answer),
            Err(error) => {
                eprintln!("{error}");
                "unreachable".to_owned()
            }
        };
        println!(
            "{}\t{}\t{}\t{outcome}",
            record.source.as_str(),
            record.delivery_id,
            record.tenant.as_deref().unwrap_or("-")
        );
        let now = shared::timefmt::utc_rfc3339(SystemClock.now_unix());
        if let Err(error) = store
            .record_replay(record.source, &record.delivery_id, &outcome, &now)
            .await
        {
            eprintln!("could not note the replay of {}: {error}", record.delivery_id);
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// `--dry-run`: each delivery through the intake this environment configures; nothing is posted
/// or written.
fn verify_locally(records: &[RefusedDelivery]) -> Result<Vec<String>, Failure> {
    let env = Env::from_process();
    let crm = env.crm_intake()?;
    let activity = env.activity_intake()?;
    let mut outcomes = Vec::new();
    for record in records {
        let body = record.body.as_bytes();
        let result = match record.source {
            Source::Crm => {
                let signature = record
                    .signature_headers
                    .get(&crm.signature_header.to_ascii_lowercase())
                    .map(String::as_str);
                crm.verified_event(body, signature).map(drop)
            }
            Source::Activity => activity.verified_event(body, record.tenant.as_deref()).map(drop),
        };
        let outcome = match result {
            Ok(()) => "verifies".to_owned(),
            Err(error) => error.code().to_owned(),
        };
        println!(
            "{}\t{}\t{}\t{outcome}",
            record.source.as_str(),
            record.delivery_id,
            record.tenant.as_deref().unwrap_or("-")
        );
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

// ---------------------------------------------------------------------------------------------
// probe

/// Header (name, value) pairs as captured.
type Headers = Vec<(String, String)>;

/// A captured request: its body and its headers.
fn captured_request(args: &ProbeArgs) -> Result<(Vec<u8>, Headers), Failure> {
    let mut headers: Vec<(String, String)> = Vec::new();
    let body = match (&args.request, &args.body_file) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let request: serde_json::Value = serde_json::from_str(&text)?;
            let body = request["body"]
                .as_str()
                .ok_or("the request file has no \"body\" string")?
                .to_owned();
            for key in ["signature_headers", "headers"] {
                if let Some(map) = request[key].as_object() {
                    for (name, value) in map {
                        if let Some(value) = value.as_str() {
                            headers.push((name.clone(), value.to_owned()));
                        }
                    }
                }
            }
            body.into_bytes()
        }
        (None, Some(path)) => std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        (None, None) => return Err("give --request or --body-file".into()),
    };
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| format!("--header `{header}` is not `Name: value`"))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    Ok((body, headers))
}

fn probe_command(args: &ProbeArgs) -> Result<ExitCode, Failure> {
    let (body, headers) = captured_request(args)?;
    let matches = probe(&body, &headers, &args.secrets);
    if matches.is_empty() {
        println!(
            "no match: none of {} header(s) holds HMAC-SHA1 or HMAC-SHA256 (hex or base64, with or \
             without prefix) of this body under the {} candidate secret(s)",
            headers.len(),
            args.secrets.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    for found in &matches {
        println!(
            "match: header {}, {}{}, candidate secret #{}",
            found.header,
            found.scheme,
            found
                .prefix
                .as_deref()
                .map_or_else(String::new, |prefix| format!(", with prefix {prefix}")),
            found.secret_index + 1
        );
        println!("configuration that selects it:");
        for (name, value) in found.configuration() {
            println!("  {name}={value}");
        }
        if found.prefix.is_some() {
            println!("  (the prefix needs no configuration: it is accepted with or without)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_curl_command_quotes_every_word_that_text_comes_from() {
        let headers = [("X-Signature".to_owned(), "abc".to_owned())];
        assert_eq!(
            curl_command("http://h/crm/webhook", &headers, r#"{"name":"O'Brien"}"#),
            r#"curl -sS -X POST 'http://h/crm/webhook' -H 'Content-Type: application/json' -H 'X-Signature: abc' --data-binary '{"name":"O'\''Brien"}'"#
        );
    }
}
