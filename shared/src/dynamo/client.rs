//! The DynamoDB client, built once at start-up with timeouts that keep every answer (503
//! included) within the sender's 5 s.
//!
//! The client is assembled from the environment Lambda gives every function (region,
//! credentials) rather than through aws-config's default chains: those also build providers
//! for profiles, SSO, web identity, ECS and IMDS, and an HTTP connector with the system's root
//! certificates, all during start-up and none of it used on Lambda. The HTTPS client
//! ([`crate::lazy_https`]) builds its connector, and reads the root certificates, at the first
//! call: the SDK's default would build it with the client, before the first request.

use std::time::Duration;

use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::config::Region;
use aws_sdk_dynamodb::Client;

use crate::config::Env;

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

/// The region, as the SDK's environment provider reads it: `AWS_REGION`, then `AWS_DEFAULT_REGION`.
fn region(env: &Env) -> Option<Region> {
    env.get("AWS_REGION")
        .or_else(|| env.get("AWS_DEFAULT_REGION"))
        .map(|region| Region::new(region.trim().to_owned()))
}

/// A local or otherwise non-default endpoint (contract 5): the service-specific variable first.
fn endpoint_url(env: &Env) -> Option<String> {
    env.get("AWS_ENDPOINT_URL_DYNAMODB")
        .or_else(|| env.get("AWS_ENDPOINT_URL"))
        .map(|url| url.trim().to_owned())
}

/// A client for the region, credentials (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, read when first needed) and endpoint of the environment.
pub fn client_from_env(env: &Env) -> Client {
    let mut config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .credentials_provider(EnvironmentVariableCredentialsProvider::new())
        .http_client(crate::lazy_https::https_client())
        .timeout_config(timeout_config())
        .retry_config(retry_config());
    config.set_region(region(env));
    config.set_endpoint_url(endpoint_url(env));
    Client::from_conf(config.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_prefers_aws_region_over_the_default_region() {
        let env: Env = [("AWS_REGION", "eu-west-1"), ("AWS_DEFAULT_REGION", "us-east-1")]
            .into_iter()
            .collect();
        assert_eq!(region(&env), Some(Region::new("eu-west-1")));
        let env: Env = [("AWS_REGION", " "), ("AWS_DEFAULT_REGION", "us-east-1")]
            .into_iter()
            .collect();
        assert_eq!(region(&env), Some(Region::new("us-east-1")));
        assert_eq!(region(&Env::default()), None);
    }

    #[test]
    fn the_dynamodb_endpoint_variable_wins_over_the_global_one() {
        let env: Env = [
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
            ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:2"),
        ]
        .into_iter()
        .collect();
        assert_eq!(endpoint_url(&env).as_deref(), Some("http://127.0.0.1:2"));
        let env: Env = [("AWS_ENDPOINT_URL", "http://127.0.0.1:1")].into_iter().collect();
        assert_eq!(endpoint_url(&env).as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(endpoint_url(&Env::default()), None);
    }

    #[test]
    fn the_client_gets_the_region_of_the_environment() {
        let env: Env = [("AWS_REGION", "ap-northeast-1")].into_iter().collect();
        assert_eq!(
            client_from_env(&env).config().region(),
            Some(&Region::new("ap-northeast-1"))
        );
    }
}
