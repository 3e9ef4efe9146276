//! The DynamoDB client, built once at start-up with timeouts that keep every answer (503
//! included) within the sender's 5 s.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::Client;

/// Upper bound on one store operation, all retries included. The sender waits 5 s; this
/// leaves room for parsing, verification and the Lambda runtime round trip.
pub const DEADLINE: Duration = Duration::from_millis(4_000);

/// Timeouts well inside [`DEADLINE`]: a dead endpoint fails in about a second.
pub fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_millis(500))
        .read_timeout(Duration::from_millis(1_500))
        .operation_attempt_timeout(Duration::from_millis(1_500))
        .operation_timeout(Duration::from_millis(3_000))
        .build()
}

/// Few, short retries: the sender retries too, and an answer within 5 s matters more.
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(25))
        .with_max_backoff(Duration::from_millis(250))
}

/// A client from the standard environment (region, credentials, `AWS_ENDPOINT_URL_DYNAMODB`).
pub async fn client_from_env() -> Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeout_config())
        .retry_config(retry_config())
        .load()
        .await;
    Client::new(&config)
}
