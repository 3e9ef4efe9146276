//! The HTTPS client of the AWS SDK clients (DynamoDB, Secrets Manager), which reads the system's
//! root certificates at the first call rather than at start-up.
//!
//! The SDK's default client builds its TLS connector, and so reads every root certificate, when
//! a service client is built (its `validate_base_client_config`): here that is before the first
//! `/next` of the Lambda runtime, on every cold start, although the first request may never need
//! storage (a refusal) and waits for the runtime anyway. This is the same client (rustls with
//! aws-lc, as the SDK's default), whose connector is built when the first call asks for it.

use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector};
use aws_smithy_runtime_api::client::runtime_components::{RuntimeComponents, RuntimeComponentsBuilder};
use aws_smithy_types::config_bag::ConfigBag;

/// The SDK's HTTPS client, with nothing built before its first call.
#[derive(Debug)]
struct OnFirstCall(SharedHttpClient);

impl HttpClient for OnFirstCall {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        // Built (and cached) by the wrapped client on the first call with these settings.
        self.0.http_connector(settings, components)
    }

    /// Nothing to check, and above all nothing to build, when the service client is built.
    fn validate_base_client_config(&self, _: &RuntimeComponentsBuilder, _: &ConfigBag) -> Result<(), BoxError> {
        Ok(())
    }
}

/// An HTTPS client for an SDK service client's config (`.http_client(..)`).
pub fn https_client() -> SharedHttpClient {
    let inner = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .build_https();
    SharedHttpClient::new(OnFirstCall(inner))
}
