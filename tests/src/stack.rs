//! Where the local stack started by `make test` (scripts/stack.sh) is, read from the
//! environment. The suites that need it are `#[ignore]`d, so that `cargo test` passes without
//! it; `make test` runs them (`--include-ignored`). Run without the stack, they fail saying so
//! rather than pass vacuously.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

fn required(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: these tests need the local stack; run them with `make test`"))
}

pub fn dynamodb_endpoint() -> String {
    required("TEST_DYNAMODB_ENDPOINT")
}

pub fn functions_url() -> String {
    required("TEST_FUNCTIONS_URL")
}

/// The table name in `variable`, as the stack gives the functions; else its local default
/// (scripts/local.env).
pub fn table(variable: &str) -> String {
    std::env::var(variable)
        .ok()
        .filter(|name| !name.trim().is_empty())
        .unwrap_or_else(|| crate::local::value(variable).to_owned())
}

pub fn crm_table() -> String {
    table("CRM_TABLE_NAME")
}

pub fn activity_table() -> String {
    table("ACTIVITY_TABLE_NAME")
}

pub fn activity_nonces_table() -> String {
    table("ACTIVITY_NONCES_TABLE_NAME")
}

/// A real SDK client for the local DynamoDB (dummy credentials), configured as the functions
/// configure theirs: what the store tests give the adapters.
pub fn dynamodb_client() -> Client {
    client_for(&dynamodb_endpoint())
}

/// The item `(mid, entity_id)` of an entity table, read consistently from the local DynamoDB.
pub async fn entity_item(table: &str, mid: &str, entity_id: &str) -> Option<HashMap<String, AttributeValue>> {
    dynamodb_client()
        .get_item()
        .table_name(table)
        .key("mid", AttributeValue::S(mid.into()))
        .key("entity_id", AttributeValue::S(entity_id.into()))
        .consistent_read(true)
        .send()
        .await
        .expect("the local DynamoDB answers")
        .item
}

pub fn client_for(endpoint: &str) -> Client {
    client_with(endpoint, shared::dynamo::timeout_config())
}

/// A client for reading back and cleaning up whole tenants: reading 10,000 records from the
/// local server takes longer than the functions' 3 s budget for one operation.
pub fn inspection_client() -> Client {
    let patient = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_timeout(Duration::from_secs(120))
        .build();
    client_with(&dynamodb_endpoint(), patient)
}

fn client_with(endpoint: &str, timeouts: TimeoutConfig) -> Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(crate::local::value("AWS_REGION")))
        .credentials_provider(Credentials::new(
            crate::local::value("AWS_ACCESS_KEY_ID"),
            crate::local::value("AWS_SECRET_ACCESS_KEY"),
            None,
            None,
            "scripts/local.env",
        ))
        .endpoint_url(endpoint)
        .timeout_config(timeouts)
        .retry_config(shared::dynamo::retry_config())
        .build();
    Client::from_conf(config)
}

/// A tenant id no other test run uses, so tests share tables without seeing each other.
pub fn unique_mid(label: &str) -> String {
    format!("{label}-{}", crate::signing::unique_nonce())
}

/// Whether the suites run at full size (`make soak` sets `SOAK=1`); `make test` runs them small.
pub fn soak() -> bool {
    std::env::var("SOAK").is_ok_and(|value| value == "1")
}

/// How far in the past the functions accept an activity timestamp, as the stack configures it
/// (`ACTIVITY_MAX_AGE_SECONDS`, default 300).
pub fn activity_window_seconds() -> i64 {
    std::env::var("ACTIVITY_MAX_AGE_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

/// A random seed, or the one the environment variable `variable` gives to replay a run. It is
/// printed (on stderr, which the test harness shows when the test fails) with the variable's name,
/// so that every failure says how to replay it.
pub fn seed(variable: &str) -> u64 {
    let seed = match std::env::var(variable) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{variable}={text} is not a number")),
        Err(_) => rand::random(),
    };
    eprintln!("replay with {variable}={seed}");
    seed
}
