//! The DynamoDB client, built once at start-up with timeouts that keep every answer (503
//! included) within the sender's 5 s.
//!
//! The client is assembled from the environment Lambda gives every function (the region, read
//! by [`crate::config::Env::aws`], and the credentials) rather than through aws-config's default
//! chains: those also build providers for profiles, SSO, web identity, ECS and IMDS, and an HTTP
//! connector with the system's root certificates, all during start-up and none of it used on
//! Lambda. The HTTPS client
//! ([`crate::lazy_https`]) builds its connector, and reads the root certificates, at the first
//! call: the SDK's default would build it with the client, before the first request.

use std::time::Duration;

use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::config::Region;
use aws_sdk_dynamodb::Client;

use crate::config::AwsConfig;

/// Upper bound on one request, and so on its store operation, all retries included
/// ([`crate::store::REQUEST_DEADLINE`]): the store gets what the request has left of it.
pub const DEADLINE: Duration = crate::store::REQUEST_DEADLINE;

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

/// A client for the region and endpoint of `aws` ([`crate::config::Env::aws`]), with the
/// credentials of the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, read by the SDK's provider when first needed).
pub fn client_for(aws: &AwsConfig) -> Client {
    let mut config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .credentials_provider(EnvironmentVariableCredentialsProvider::new())
        .http_client(crate::lazy_https::https_client())
        .timeout_config(timeout_config())
        .retry_config(retry_config());
    config.set_region(aws.region.clone().map(Region::new));
    config.set_endpoint_url(aws.dynamodb_endpoint.clone());
    Client::from_conf(config.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_gets_the_region_it_is_given() {
        let aws = AwsConfig {
            region: Some("ap-northeast-1".into()),
            ..AwsConfig::default()
        };
        assert_eq!(client_for(&aws).config().region(), Some(&Region::new("ap-northeast-1")));
    }
}
