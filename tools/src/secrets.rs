//! `webhookctl secrets`: the tenant-secret documents the functions read from AWS Secrets Manager
//! (contract 5), shown and changed without a secret value ever being printed.
//!
//! - `show` prints which version the functions use, the default list and each tenant's list as
//!   counts and fingerprints: the first 8 hex digits of a SHA-256 of the secret (32 bits, far too
//!   few to recover a secret of any strength, enough to tell two secrets apart);
//! - `set-tenant` and `remove-tenant` read the current document, change one tenant's entry and put
//!   the whole document back, checked first with the functions' own parser;
//! - `validate` checks a document file with that parser, and `--put` puts it only if it passes.
//!
//! The secret values of `set-tenant` come from `WEBHOOKCTL_SECRETS` or standard input, never from
//! the command line (shell history, the process list). Region, credentials and endpoint
//! (`AWS_ENDPOINT_URL_SECRETS_MANAGER`, else `AWS_ENDPOINT_URL`) come from the environment, as for
//! the functions.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use aws_sdk_secretsmanager::error::DisplayErrorContext;
use aws_sdk_secretsmanager::Client;
use clap::{Args, Subcommand, ValueEnum};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::{Digest, Sha256};
use shared::config::Env;
use shared::secret::{Secret, SecretSet, TenantSecrets};
use shared::secrets_manager::{fetch, resolve};

type Failure = Box<dyn std::error::Error>;

/// The variable `set-tenant` reads the tenant's secrets from (comma-separated, newest first).
pub const SECRETS_VARIABLE: &str = "WEBHOOKCTL_SECRETS";

#[derive(Args)]
pub struct SecretsArgs {
    #[command(subcommand)]
    command: SecretsCommand,
}

/// Whose document.
#[derive(Clone, Copy, ValueEnum)]
enum Function {
    Crm,
    Activity,
}

impl Function {
    fn id_variable(self) -> &'static str {
        match self {
            Self::Crm => "CRM_SECRETS_MANAGER_ID",
            Self::Activity => "ACTIVITY_SECRETS_MANAGER_ID",
        }
    }
}

#[derive(Args)]
struct Document {
    /// Which function's document
    #[arg(value_enum)]
    function: Function,
    /// The secret's name or ARN (default: CRM_SECRETS_MANAGER_ID or ACTIVITY_SECRETS_MANAGER_ID)
    #[arg(long)]
    secret_id: Option<String>,
}

impl Document {
    fn secret_id(&self) -> Result<String, Failure> {
        let variable = self.function.id_variable();
        self.secret_id
            .clone()
            .or_else(|| std::env::var(variable).ok().filter(|id| !id.trim().is_empty()))
            .map(|id| id.trim().to_owned())
            .ok_or_else(|| format!("give --secret-id or set {variable}").into())
    }
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Which version the functions use, the default list and each tenant's list: how many
    /// secrets and their fingerprints, never a value.
    Show {
        #[command(flatten)]
        document: Document,
    },
    /// Give one tenant its own list (read from WEBHOOKCTL_SECRETS, else standard input:
    /// comma-separated, newest first), or block it with --block (an empty list: refused
    /// `no_secret`, whatever the default). Read, change, check, put.
    SetTenant {
        #[command(flatten)]
        document: Document,
        /// The tenant (mid)
        mid: String,
        /// List the tenant with no secret: every request for it is refused
        #[arg(long)]
        block: bool,
    },
    /// Remove one tenant's entry: it falls back to the default list, or is refused if there is
    /// none. Read, change, check, put.
    RemoveTenant {
        #[command(flatten)]
        document: Document,
        /// The tenant (mid)
        mid: String,
    },
    /// Check a document (a file, or `-` for standard input) with the functions' own parser;
    /// exits 0 when they would read it. With --put, put it as the new current version of the
    /// function's secret, only if it passes.
    Validate {
        /// The document
        file: PathBuf,
        /// Put it into this function's secret once it passes
        #[arg(long, value_enum, value_name = "FUNCTION")]
        put: Option<Function>,
        /// The secret's name or ARN for --put (default: CRM_SECRETS_MANAGER_ID or
        /// ACTIVITY_SECRETS_MANAGER_ID)
        #[arg(long, requires = "put")]
        secret_id: Option<String>,
    },
}

/// The first 8 hex digits of SHA-256 over a fixed label and the secret.
pub fn fingerprint(secret: &Secret) -> String {
    let digest = Sha256::new()
        .chain_update(b"webhookctl secret fingerprint\0")
        .chain_update(secret.expose())
        .finalize();
    hex::encode(&digest[..4])
}

/// `N secret(s) [fp, fp]` for a list.
fn describe_set(set: &SecretSet) -> String {
    let fingerprints: Vec<String> = set.iter().map(fingerprint).collect();
    let noun = if set.count() == 1 { "secret" } else { "secrets" };
    format!("{} {noun} [{}]", set.count(), fingerprints.join(", "))
}

/// The operator's client: the functions' one, with the patience of a command line.
fn client() -> Client {
    crate::operator::secrets_manager_client(&Env::from_process())
}

pub async fn run(args: SecretsArgs) -> Result<ExitCode, Failure> {
    match args.command {
        SecretsCommand::Show { document } => show(&client(), &document.secret_id()?).await,
        SecretsCommand::SetTenant { document, mid, block } => {
            let list = if block { Vec::new() } else { secrets_given()? };
            change_tenant(&client(), &document.secret_id()?, &mid, Some(list)).await
        }
        SecretsCommand::RemoveTenant { document, mid } => {
            change_tenant(&client(), &document.secret_id()?, &mid, None).await
        }
        SecretsCommand::Validate { file, put, secret_id } => {
            let text = read_document(&file)?;
            let secrets = match TenantSecrets::from_json(text.expose_secret()) {
                Ok(secrets) => secrets,
                Err(error) => {
                    println!("invalid: {error}");
                    if put.is_some() {
                        println!("nothing was put");
                    }
                    return Ok(ExitCode::FAILURE);
                }
            };
            println!("valid: {}", summary(&secrets));
            if let Some(function) = put {
                let id = Document { function, secret_id }.secret_id()?;
                let version = put_document(&client(), &id, text.expose_secret()).await?;
                println!("put {id}: version {version} is now AWSCURRENT");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A document file, or standard input for `-`.
fn read_document(file: &PathBuf) -> Result<SecretString, Failure> {
    let mut text = String::new();
    if file.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    }
    Ok(SecretString::from(text))
}

/// The secrets for `set-tenant`, from `WEBHOOKCTL_SECRETS` or standard input, in order.
fn secrets_given() -> Result<Vec<String>, Failure> {
    let text = match std::env::var(SECRETS_VARIABLE) {
        Ok(text) => SecretString::from(text),
        Err(_) => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            SecretString::from(text)
        }
    };
    let list: Vec<String> = text
        .expose_secret()
        .split(',')
        .map(str::trim)
        .filter(|secret| !secret.is_empty())
        .map(str::to_owned)
        .collect();
    if list.is_empty() {
        return Err(format!(
            "no secret given in {SECRETS_VARIABLE} or on standard input (to refuse the tenant, use --block)"
        )
        .into());
    }
    Ok(list)
}

/// One line about a document: the default list and how many tenants.
fn summary(secrets: &TenantSecrets) -> String {
    let default = secrets.default_set().map_or_else(
        || "no default list (strict: only the tenants listed are accepted)".to_owned(),
        |set| format!("a default list of {} secret(s)", set.count()),
    );
    format!(
        "{default}; {} tenant lists, {} tenants blocked",
        secrets.tenant_count(),
        secrets.blocked_count()
    )
}

/// The current version: its id and text.
async fn current(client: &Client, secret_id: &str) -> Result<(String, SecretString), Failure> {
    let output = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| format!("reading {secret_id}: {}", DisplayErrorContext(&e)))?;
    let version = output.version_id().unwrap_or("?").to_owned();
    let text = output
        .secret_string()
        .ok_or_else(|| format!("{secret_id} has no string value"))?;
    Ok((version, SecretString::from(text)))
}

async fn put_document(client: &Client, secret_id: &str, text: &str) -> Result<String, Failure> {
    let output = client
        .put_secret_value()
        .secret_id(secret_id)
        .secret_string(text)
        .send()
        .await
        .map_err(|e| format!("putting {secret_id}: {}", DisplayErrorContext(&e)))?;
    Ok(output.version_id().unwrap_or("?").to_owned())
}

async fn show(client: &Client, secret_id: &str) -> Result<ExitCode, Failure> {
    let resolved = resolve(|stage| fetch(client, secret_id, stage))
        .await
        .map_err(|failure| format!("{secret_id}: {failure}"))?;
    let (version, _) = current(client, secret_id).await?;
    match &resolved.current_malformed {
        None => println!("secret {secret_id}: AWSCURRENT (version {version}), the version the functions use"),
        Some(reason) => println!(
            "secret {secret_id}: AWSCURRENT (version {version}) is not a valid document ({reason}); \
             the functions use AWSPREVIOUS, shown below. Put a valid document: webhookctl secrets validate FILE --put"
        ),
    }
    let secrets = &resolved.secrets;
    match secrets.default_set() {
        Some(set) => println!("default\t{}", describe_set(set)),
        None => println!("default\tnone (strict: only the tenants listed are accepted)"),
    }
    for (mid, set) in secrets.tenants() {
        match set {
            Some(set) => println!("tenant {mid}\t{}", describe_set(set)),
            None => println!("tenant {mid}\tblocked (listed with no secret: refused no_secret)"),
        }
    }
    eprintln!(
        "{} tenant lists, {} tenants blocked (version read: {})",
        secrets.tenant_count(),
        secrets.blocked_count(),
        resolved.stage.label()
    );
    Ok(ExitCode::SUCCESS)
}

/// Read, change one tenant's entry (`Some(list)`: set it, possibly empty; `None`: remove it),
/// check, put. The current version must itself be a valid document: a change on top of a broken
/// one would be a guess.
async fn change_tenant(
    client: &Client,
    secret_id: &str,
    mid: &str,
    list: Option<Vec<String>>,
) -> Result<ExitCode, Failure> {
    let mid = mid.trim();
    if mid.is_empty() {
        return Err("the tenant id is empty".into());
    }
    let (version, text) = current(client, secret_id).await?;
    let before = TenantSecrets::from_json(text.expose_secret()).map_err(|error| {
        format!(
            "{secret_id}: the current version {version} is not a valid document ({error}); nothing was put. \
             Put a valid document first: webhookctl secrets validate FILE --put"
        )
    })?;
    let mut document: Value = serde_json::from_str(text.expose_secret()).expect("a valid document is JSON");
    let tenants = document
        .as_object_mut()
        .expect("a valid document is an object")
        .entry("tenants")
        .or_insert_with(|| Value::Object(serde_json::Map::new()))
        .as_object_mut()
        .expect("a valid document's tenants are an object");
    let was_listed = tenants.contains_key(mid);
    match &list {
        Some(list) => {
            tenants.insert(mid.to_owned(), list.iter().cloned().map(Value::String).collect());
        }
        None if was_listed => {
            tenants.remove(mid);
        }
        None => {
            println!("tenant {mid} is not listed in {secret_id}; nothing was put");
            return Ok(ExitCode::FAILURE);
        }
    }
    let changed = SecretString::from(document.to_string());
    let after = TenantSecrets::from_json(changed.expose_secret())
        .map_err(|error| format!("the changed document does not pass ({error}); nothing was put"))?;
    // A put since the read would be overwritten: read again, as late as possible.
    let (still, _) = current(client, secret_id).await?;
    if still != version {
        return Err(format!(
            "{secret_id} changed while this ran (version {version}, now {still}); nothing was put: run again"
        )
        .into());
    }
    let new_version = put_document(client, secret_id, changed.expose_secret()).await?;
    let describe = |secrets: &TenantSecrets| match (
        secrets.tenants().iter().any(|(m, _)| *m == mid),
        secrets.for_tenant(mid),
    ) {
        (true, Some(set)) => format!("own list of {}", describe_set(set)),
        (true, None) => "blocked (refused no_secret)".to_owned(),
        (false, Some(set)) => format!("the default list ({})", describe_set(set)),
        (false, None) => "refused no_secret (no default list)".to_owned(),
    };
    println!("tenant {mid}: {}; before: {}", describe(&after), describe(&before));
    println!(
        "put {secret_id}: version {new_version} is now AWSCURRENT; the functions read it within SECRETS_REFRESH_SECONDS"
    );
    Ok(ExitCode::SUCCESS)
}
