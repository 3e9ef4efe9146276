//! Tenant secrets from AWS Secrets Manager, cached in process and read again every refresh
//! interval, so that a rotation or a new tenant takes effect without a redeploy.
//!
//! The SDK's own client, with a small cache, rather than `aws_secretsmanager_caching`: that crate
//! builds its client through aws-config's default chains (profiles, SSO, IMDS, a TLS connector
//! with the system's roots) at start-up, which is what `dynamo::client` avoids to keep the cold
//! start short. Nothing here touches the network, or reads the root certificates
//! ([`crate::lazy_https`]), before the first request.
//!
//! Reading rules:
//! - the first request of an instance waits for the first read (at most [`FIRST_READ_WAIT`]);
//!   if it fails, the request gets `503 secrets_unavailable` and the next request tries again;
//! - once the interval has passed, the next request reads again but waits at most
//!   [`REFRESH_WAIT`]; a read that takes longer carries on in the background, and the request
//!   goes on with the secrets it has;
//! - a failed refresh keeps the secrets already read (logged, counted in
//!   `secrets_refresh_failures`) and is retried after [`RETRY_AFTER_FAILURE`]: an outage of
//!   Secrets Manager does not refuse authentic events.
//!
//! Which version is read ([`resolve`]): every instance must verify with the same document, so
//! the choice depends on what Secrets Manager holds, never on what one instance read before:
//! - the current version (`AWSCURRENT`) when it reads as a document;
//! - else (malformed JSON, a wrong shape, no string value) the previous version (`AWSPREVIOUS`,
//!   which Secrets Manager keeps on every put), logged at ERROR and counted in
//!   `secrets_malformed_current`: the put that broke the document changes nothing;
//! - when neither reads as a document, there is no document every instance agrees on: an
//!   instance keeps the one it read before (a version that was in force), an instance that has
//!   none answers `503 secrets_unavailable` (the sender retries; nothing authentic is refused as
//!   unauthenticated), each refresh counting in `secrets_malformed_current` and
//!   `secrets_refresh_failures` until a valid document is put;
//! - Secrets Manager unreachable or denying the read: as for any failed read above.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_secretsmanager::config::Region;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use aws_sdk_secretsmanager::Client;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::config::{AwsConfig, SecretLocation};
use crate::error::SecretsError;
use crate::secret::{FixedSecrets, SecretSource, TenantSecrets};

/// The longest the first request of an instance waits for the secrets.
pub const FIRST_READ_WAIT: Duration = Duration::from_millis(2_500);
/// The longest a request waits for a refresh when it already has secrets.
pub const REFRESH_WAIT: Duration = Duration::from_millis(100);
/// After a failed read, how long the secrets already read are used before trying again.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// A client for the region and endpoint of `aws` ([`crate::config::Env::aws`]) and the
/// credentials of the environment, with timeouts inside [`FIRST_READ_WAIT`].
pub fn client_for(aws: &AwsConfig) -> Client {
    let mut config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .credentials_provider(EnvironmentVariableCredentialsProvider::new())
        .http_client(crate::lazy_https::https_client())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_millis(500))
                .operation_attempt_timeout(Duration::from_millis(1_000))
                .operation_timeout(Duration::from_millis(2_000))
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(2));
    config.set_region(aws.region.clone().map(Region::new));
    config.set_endpoint_url(aws.secrets_manager_endpoint.clone());
    Client::from_conf(config.build())
}

/// The secrets of one source, as configured: fixed (environment) or from Secrets Manager.
pub enum TenantSecretSource {
    Fixed(FixedSecrets),
    Managed(CachedSecret),
}

impl TenantSecretSource {
    /// `source` (`crm`, `activity`) labels the metrics and logs; `env_secrets` are used when
    /// `location` is the environment, `aws` to reach Secrets Manager otherwise.
    pub fn new(location: &SecretLocation, env_secrets: &TenantSecrets, aws: &AwsConfig, source: &'static str) -> Self {
        match location {
            SecretLocation::Environment => {
                if env_secrets.is_empty() {
                    tracing::warn!(
                        source,
                        "no secret configured: every request will be refused (401 no_secret)"
                    );
                }
                Self::Fixed(FixedSecrets(Arc::new(env_secrets.clone())))
            }
            SecretLocation::SecretsManager { secret_id, refresh } => {
                if !env_secrets.is_empty() {
                    tracing::warn!(
                        source,
                        "secrets are read from AWS Secrets Manager; the secret environment variables are ignored"
                    );
                }
                Self::Managed(CachedSecret::new(client_for(aws), secret_id, *refresh, source))
            }
        }
    }
}

impl SecretSource for TenantSecretSource {
    async fn current(&self) -> Result<Arc<TenantSecrets>, SecretsError> {
        match self {
            Self::Fixed(fixed) => fixed.current().await,
            Self::Managed(cached) => cached.current().await,
        }
    }
}

/// One Secrets Manager secret, cached.
pub struct CachedSecret {
    client: Client,
    secret_id: Arc<str>,
    refresh: Duration,
    source: &'static str,
    state: Mutex<State>,
}

struct State {
    value: Option<Arc<TenantSecrets>>,
    /// When the value is to be read again.
    next_read: Instant,
    /// A read that outlived the wait of the request that started it.
    in_flight: Option<JoinHandle<Result<Resolved, ReadFailure>>>,
}

impl CachedSecret {
    pub fn new(client: Client, secret_id: &str, refresh: Duration, source: &'static str) -> Self {
        Self {
            client,
            secret_id: secret_id.into(),
            refresh,
            source,
            state: Mutex::new(State {
                value: None,
                next_read: Instant::now(),
                in_flight: None,
            }),
        }
    }

    /// The secrets to verify the current request with (see the module's reading rules).
    pub async fn current(&self) -> Result<Arc<TenantSecrets>, SecretsError> {
        // Lambda runs one request per instance at a time; the lock only orders the rare
        // concurrent callers (tests, a local server) behind one read.
        let mut state = self.state.lock().await;
        if let Some(value) = &state.value {
            if Instant::now() < state.next_read {
                return Ok(Arc::clone(value));
            }
        }
        let (mut read, wait) = match (state.in_flight.take(), &state.value) {
            // A refresh already under way: only take its result if it is there.
            (Some(read), Some(_)) => (read, Duration::ZERO),
            (Some(read), None) => (read, FIRST_READ_WAIT),
            (None, value) => {
                let read = tokio::spawn(read_secret(self.client.clone(), Arc::clone(&self.secret_id)));
                (read, if value.is_some() { REFRESH_WAIT } else { FIRST_READ_WAIT })
            }
        };
        let outcome = match tokio::time::timeout(wait, &mut read).await {
            Err(_) => {
                state.in_flight = Some(read);
                Err(ReadFailure::Unreachable(format!(
                    "no answer within {} ms",
                    wait.as_millis()
                )))
            }
            Ok(Err(join_error)) => Err(ReadFailure::Unreachable(format!("the read task failed: {join_error}"))),
            Ok(Ok(result)) => result,
        };
        let current_malformed = match &outcome {
            Ok(resolved) => resolved.current_malformed.as_deref(),
            Err(ReadFailure::Malformed { current, .. }) => Some(current.as_str()),
            Err(ReadFailure::Unreachable(_)) => None,
        };
        if let Some(reason) = current_malformed {
            metrics::counter!("secrets_malformed_current", "source" => self.source).increment(1);
            tracing::error!(
                source = self.source,
                secret_id = %self.secret_id,
                reason,
                "the current version of the tenant secrets is not a valid document; put a valid one (webhookctl secrets validate)"
            );
        }
        match outcome {
            Ok(resolved) => {
                let secrets = resolved.secrets;
                tracing::info!(
                    source = self.source,
                    version = resolved.stage.label(),
                    default_list = secrets.default_set().is_some(),
                    tenants = secrets.tenant_count(),
                    blocked_tenants = secrets.blocked_count(),
                    refresh_seconds = self.refresh.as_secs(),
                    "tenant secrets read from AWS Secrets Manager"
                );
                let secrets = Arc::new(secrets);
                state.value = Some(Arc::clone(&secrets));
                state.next_read = Instant::now() + self.refresh;
                Ok(secrets)
            }
            Err(failure) => {
                metrics::counter!("secrets_refresh_failures", "source" => self.source).increment(1);
                let reason = failure.to_string();
                match state.value.clone() {
                    Some(value) => {
                        if state.in_flight.is_none() {
                            state.next_read = Instant::now() + RETRY_AFTER_FAILURE;
                        }
                        tracing::error!(source = self.source, secret_id = %self.secret_id, %reason, "tenant secrets could not be refreshed; using those read before");
                        Ok(value)
                    }
                    None => {
                        tracing::error!(source = self.source, secret_id = %self.secret_id, %reason, "tenant secrets could not be read");
                        Err(SecretsError::Unavailable(reason))
                    }
                }
            }
        }
    }
}

/// A version of the secret, by its staging label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Current,
    Previous,
}

impl Stage {
    pub fn label(self) -> &'static str {
        match self {
            Self::Current => "AWSCURRENT",
            Self::Previous => "AWSPREVIOUS",
        }
    }
}

/// What a read of one version gave, when Secrets Manager answered.
pub enum Fetched {
    /// The version's string value: the document, unparsed.
    Text(SecretString),
    /// The version cannot hold a document: why (no string value, no such version).
    Unusable(String),
}

/// The document every instance agrees on, and where it came from.
#[derive(Debug)]
pub struct Resolved {
    pub secrets: TenantSecrets,
    pub stage: Stage,
    /// Why the current version was passed over, when it was.
    pub current_malformed: Option<String>,
}

/// Why no document was resolved. Messages name keys and versions, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadFailure {
    /// Secrets Manager did not answer, or refused the read.
    #[error("{0}")]
    Unreachable(String),
    /// Neither version reads as a document.
    #[error("neither version is a valid document: AWSCURRENT: {current}; AWSPREVIOUS: {previous}")]
    Malformed { current: String, previous: String },
}

/// The document of the secret (see the module's rules): the current version when it reads as
/// one, else the previous one. `read` fetches one version.
pub async fn resolve<F, Fut>(read: F) -> Result<Resolved, ReadFailure>
where
    F: Fn(Stage) -> Fut,
    Fut: Future<Output = Result<Fetched, String>>,
{
    let document = |fetched: Fetched| match fetched {
        Fetched::Text(text) => TenantSecrets::from_json(text.expose_secret()).map_err(|error| error.to_string()),
        Fetched::Unusable(reason) => Err(reason),
    };
    let current = match document(read(Stage::Current).await.map_err(ReadFailure::Unreachable)?) {
        Ok(secrets) => {
            return Ok(Resolved {
                secrets,
                stage: Stage::Current,
                current_malformed: None,
            })
        }
        Err(reason) => reason,
    };
    match document(read(Stage::Previous).await.map_err(ReadFailure::Unreachable)?) {
        Ok(secrets) => Ok(Resolved {
            secrets,
            stage: Stage::Previous,
            current_malformed: Some(current),
        }),
        Err(previous) => Err(ReadFailure::Malformed { current, previous }),
    }
}

/// One `GetSecretValue` of `stage`. Errors name the failure, never the value.
pub async fn fetch(client: &Client, secret_id: &str, stage: Stage) -> Result<Fetched, String> {
    match client
        .get_secret_value()
        .secret_id(secret_id)
        .version_stage(stage.label())
        .send()
        .await
    {
        Ok(output) => Ok(match output.secret_string() {
            Some(text) => Fetched::Text(SecretString::from(text)),
            None => Fetched::Unusable("the version has no string value".to_owned()),
        }),
        // The secret exists (its current version was just read) but has never been put twice.
        Err(error)
            if stage == Stage::Previous
                && error
                    .as_service_error()
                    .is_some_and(|service| service.is_resource_not_found_exception()) =>
        {
            Ok(Fetched::Unusable("there is no previous version".to_owned()))
        }
        Err(error) => Err(format!(
            "GetSecretValue ({}) failed: {}",
            stage.label(),
            DisplayErrorContext(&error)
        )),
    }
}

async fn read_secret(client: Client, secret_id: Arc<str>) -> Result<Resolved, ReadFailure> {
    resolve(|stage| fetch(&client, &secret_id, stage)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_gets_the_region_it_is_given() {
        let aws = AwsConfig {
            region: Some("eu-west-1".into()),
            ..AwsConfig::default()
        };
        assert_eq!(client_for(&aws).config().region(), Some(&Region::new("eu-west-1")));
    }

    /// A secret whose versions are `current` and `previous` (`None`: Secrets Manager does not
    /// answer), and the stages read, in order.
    async fn resolved(
        current: Option<Fetched>,
        previous: Option<Fetched>,
    ) -> (Result<Resolved, ReadFailure>, Vec<Stage>) {
        let versions = std::sync::Mutex::new((Some(current), Some(previous)));
        let reads = std::sync::Mutex::new(Vec::new());
        let result = resolve(|stage| {
            reads.lock().unwrap().push(stage);
            let mut versions = versions.lock().unwrap();
            let version = match stage {
                Stage::Current => versions.0.take(),
                Stage::Previous => versions.1.take(),
            }
            .expect("each version is read at most once");
            std::future::ready(version.ok_or_else(|| "connection refused".to_owned()))
        })
        .await;
        (result, reads.into_inner().unwrap())
    }

    fn text(document: &str) -> Option<Fetched> {
        Some(Fetched::Text(SecretString::from(document)))
    }

    const GOOD: &str = r#"{"default": ["hunter2"], "tenants": {"124": ["tenant-secret"]}}"#;

    #[tokio::test]
    async fn a_valid_current_version_is_used_and_the_previous_one_is_not_read() {
        let (result, reads) = resolved(text(GOOD), None).await;
        let resolved = result.unwrap();
        assert_eq!((resolved.stage, resolved.current_malformed), (Stage::Current, None));
        assert_eq!(resolved.secrets.tenant_count(), 1);
        assert_eq!(reads, [Stage::Current]);
    }

    #[tokio::test]
    async fn a_current_version_that_is_no_document_gives_way_to_the_previous_one() {
        for current in [
            text("{not json hunter3"),
            text(r#"{"tenants": {"124": 7}}"#),
            text(r#"["hunter3"]"#),
            Some(Fetched::Unusable("the version has no string value".into())),
        ] {
            let (result, reads) = resolved(current, text(GOOD)).await;
            let resolved = result.unwrap();
            assert_eq!(resolved.stage, Stage::Previous);
            let reason = resolved
                .current_malformed
                .expect("why the current version was passed over");
            assert!(!reason.contains("hunter3"), "{reason}");
            let tenant = resolved.secrets.for_tenant("124").unwrap();
            assert_eq!(tenant.primary().expose(), b"tenant-secret");
            assert_eq!(reads, [Stage::Current, Stage::Previous]);
        }
    }

    #[tokio::test]
    async fn no_valid_version_is_a_failure_that_quotes_no_value() {
        for previous in [
            text("hunter3"),
            Some(Fetched::Unusable("there is no previous version".into())),
        ] {
            let (result, _) = resolved(text(r#"{"default": 7, "x": "hunter2"}"#), previous).await;
            let failure = result.unwrap_err();
            assert!(matches!(failure, ReadFailure::Malformed { .. }), "{failure:?}");
            let message = failure.to_string();
            assert!(
                message.contains("AWSCURRENT") && message.contains("AWSPREVIOUS"),
                "{message}"
            );
            assert!(!message.contains("hunter"), "{message}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_store_is_not_a_malformed_document() {
        let (result, reads) = resolved(None, text(GOOD)).await;
        assert!(matches!(result.unwrap_err(), ReadFailure::Unreachable(_)));
        assert_eq!(
            reads,
            [Stage::Current],
            "the previous version is no fallback for an outage"
        );
        let (result, reads) = resolved(text("{"), None).await;
        assert!(matches!(result.unwrap_err(), ReadFailure::Unreachable(_)));
        assert_eq!(reads, [Stage::Current, Stage::Previous]);
    }

    #[tokio::test]
    async fn an_unreachable_store_with_nothing_cached_is_unavailable_not_unauthenticated() {
        // Port 9 (discard) on the loopback: nothing listens, the connection is refused at once.
        let client = client_for(&AwsConfig {
            region: Some("us-east-1".into()),
            secrets_manager_endpoint: Some("http://127.0.0.1:9".into()),
            ..AwsConfig::default()
        });
        let cached = CachedSecret::new(client, "webhook/crm", Duration::from_secs(60), "crm");
        let error = cached.current().await.unwrap_err();
        assert!(matches!(error, SecretsError::Unavailable(_)), "{error:?}");
        assert_eq!(crate::ApiError::from(error).code(), "secrets_unavailable");
    }
}
