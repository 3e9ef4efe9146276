//! The AWS clients of the operator commands (`webhookctl`): the functions' own clients (region,
//! credentials and endpoints from the environment), with the patience of a command line. The
//! functions' short timeouts exist for the senders' 5 s; an operator's listing of a large table,
//! or a put of a secret document, may take longer.

use std::time::Duration;

use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use shared::config::Env;

/// Timeouts for one operator command: long enough for a page of a large table.
pub fn patient_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(Duration::from_secs(30))
        .operation_attempt_timeout(Duration::from_secs(30))
        .operation_timeout(Duration::from_secs(60))
        .build()
}

/// The functions' DynamoDB client, patient.
pub fn dynamodb_client(env: &Env) -> aws_sdk_dynamodb::Client {
    let functions_client = shared::dynamo::client_for(&env.aws());
    let config = functions_client
        .config()
        .to_builder()
        .timeout_config(patient_timeouts())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// The functions' Secrets Manager client, patient.
pub fn secrets_manager_client(env: &Env) -> aws_sdk_secretsmanager::Client {
    let functions_client = shared::secrets_manager::client_for(&env.aws());
    let config = functions_client
        .config()
        .to_builder()
        .timeout_config(patient_timeouts())
        .build();
    aws_sdk_secretsmanager::Client::from_conf(config)
}
