//! `webhookctl unmodelled list`: the Lexiang actions the service does not model, acknowledged
//! and kept (contract 2.3), one JSON object a line (delivery id, time, tenant, action, nonce, raw
//! body), oldest first. They are no refused deliveries: `quarantine` never lists or replays them.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use shared::config::Env;
use shared::dynamo::DynamoQuarantineStore;

type Failure = Box<dyn std::error::Error>;

#[derive(Args)]
pub struct UnmodelledArgs {
    #[command(subcommand)]
    pub command: UnmodelledCommand,
}

#[derive(Subcommand)]
pub enum UnmodelledCommand {
    /// One JSON object a line per kept action, oldest first.
    List {
        /// The table they are kept in (the quarantine's)
        #[arg(long, env = "REFUSED_DELIVERIES_TABLE_NAME", default_value = "refused_deliveries")]
        table: String,
        /// Only this tenant
        #[arg(long)]
        tenant: Option<String>,
        /// Only this action (e.g. doc/add)
        #[arg(long)]
        action: Option<String>,
    },
}

pub async fn run(args: UnmodelledArgs) -> Result<ExitCode, Failure> {
    let UnmodelledCommand::List { table, tenant, action } = args.command;
    let store = DynamoQuarantineStore::new(crate::operator::dynamodb_client(&Env::from_process()), table);
    let mut records = store.list_unmodelled().await?;
    records.retain(|record| {
        tenant.as_deref().is_none_or(|tenant| record.tenant == tenant)
            && action.as_deref().is_none_or(|action| record.action == action)
    });
    for record in &records {
        println!("{}", serde_json::to_string(record)?);
    }
    eprintln!("{} unmodelled actions in {}", records.len(), store.table());
    Ok(ExitCode::SUCCESS)
}
