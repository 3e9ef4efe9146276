//! `webhookctl quarantine apply`: an operator's replay of one quarantined activity callback
//! (contract 2.4), without the endpoint. The record is verified again with the current secrets (the
//! function's own configuration, read from this environment: Secrets Manager or variables),
//! freshness is waived for this record alone, and the event goes through the same store code as
//! a delivery, with the operator's own AWS credentials: the nonce rule still applies, so a second
//! apply is a duplicate and a callback already accepted elsewhere is refused `replayed_nonce`.
//! Nothing here reopens old signatures for anyone else: the function's windows do not change.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use shared::activity::verify::FreshnessCheck;
use shared::clock::SystemClock;
use shared::config::{ActivityConfig, Env};
use shared::dynamo::{client_for, DynamoActivityStore, DynamoQuarantineStore, UnmodelledTable};
use shared::secret::SecretSource;
use shared::secrets_manager::TenantSecretSource;
use shared::source::Source;
use shared::store::{ActivityStore, NonceOutcome};

type Failure = Box<dyn std::error::Error>;

#[derive(Args)]
pub struct ApplyArgs {
    /// The quarantine table
    #[arg(long, env = "REFUSED_DELIVERIES_TABLE_NAME", default_value = "refused_deliveries")]
    pub table: String,
    /// The activity delivery id, as `quarantine list --source activity` prints it
    pub delivery_id: String,
}

/// What applying the record gave: `accepted`, `duplicate`, or the refusal's code.
fn outcome_of(applied: NonceOutcome) -> &'static str {
    match applied {
        NonceOutcome::Accepted => "accepted",
        NonceOutcome::Duplicate => "duplicate",
        NonceOutcome::Replayed(_) => "replayed_nonce",
    }
}

pub async fn run(args: ApplyArgs) -> Result<ExitCode, Failure> {
    let env = Env::from_process();
    let config = ActivityConfig::from_env(&env)?;
    let quarantine = DynamoQuarantineStore::new(crate::operator::dynamodb_client(&env), args.table.clone());
    let record = quarantine
        .get(Source::Activity, &args.delivery_id)
        .await?
        .ok_or_else(|| format!("no refused activity delivery {} in {}", args.delivery_id, args.table))?;
    let secrets = TenantSecretSource::new(
        &config.function.secret_location,
        &config.intake.secrets,
        &config.function.aws,
        "activity",
    )
    .current()
    .await?;
    let tenant = record.tenant.as_deref().or(config.default_mid.as_deref());
    let verified =
        config
            .intake
            .verified_event_checking(&secrets, record.body.as_bytes(), tenant, FreshnessCheck::Waived);
    let outcome = match verified {
        Err(refused) => refused.code(),
        Ok(event) => {
            // Remembered as long as the quarantine keeps records that could be applied again.
            let retention_seconds = i64::from(config.function.quarantine.retention_days) * 24 * 3600;
            let store = DynamoActivityStore::new(
                client_for(&config.function.aws),
                config.table_name.clone(),
                config.nonces_table_name.clone(),
                u64::try_from(retention_seconds)?.max(config.nonce_retention_seconds()),
                Arc::new(SystemClock),
            )
            .keeping_unmodelled(Some(UnmodelledTable {
                table: args.table.clone(),
                retention_seconds,
            }));
            outcome_of(store.apply(&event).await?)
        }
    };
    println!("activity\t{}\t{}\t{outcome}", record.delivery_id, tenant.unwrap_or("-"));
    let now = shared::timefmt::utc_rfc3339(shared::clock::Clock::now_unix(&SystemClock));
    quarantine
        .record_replay(Source::Activity, &record.delivery_id, outcome, &now)
        .await?;
    Ok(if matches!(outcome, "accepted" | "duplicate") {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
