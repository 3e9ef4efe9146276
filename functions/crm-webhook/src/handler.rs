//! `POST /crm/webhook`: method → size → JSON object → mid → signature → fields → write
//! (SPEC 2.3), so that nothing unauthenticated is ever acted on.

use std::sync::Arc;
use std::time::Instant;

use lambda_http::{Body, Request, Response};
use serde_json::json;
use shared::clock::SystemClock;
use shared::config::{ConfigError, CrmConfig, Env};
use shared::crm::tenant_of;
use shared::dynamo::{client_from_env, DynamoCrmStore};
use shared::envelope::Envelope;
use shared::error::ApiError;
use shared::http::{header_text, json_response, post_body, Handler};
use shared::merge::Delivery;
use shared::observe::{answer, Applied, Source};
use shared::secret::SecretSource;
use shared::secrets_manager::TenantSecretSource;
use shared::store::CrmStore;

/// Everything a request needs, built once at start-up.
pub struct App<S, K = TenantSecretSource> {
    pub config: CrmConfig,
    pub store: S,
    /// The tenant secrets of the moment (environment, or AWS Secrets Manager refreshed).
    pub secrets: K,
}

impl App<DynamoCrmStore> {
    /// The function as deployed: configuration from `env`, the DynamoDB store.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let config = CrmConfig::from_env(env).inspect_err(|error| {
            tracing::error!(%error, "configuration is incomplete; not starting");
        })?;
        let secrets = TenantSecretSource::new(&config.secret_location, &config.intake.secrets, env, "crm");
        let store = DynamoCrmStore::new(
            client_from_env(env),
            config.table_name.clone(),
            config.deliveries_table_name.clone(),
            Arc::new(SystemClock),
        );
        Ok(Self { config, store, secrets })
    }
}

impl<S: CrmStore + 'static, K: SecretSource + 'static> Handler for App<S, K> {
    async fn handle(&self, request: Request) -> Response<Body> {
        let started = Instant::now();
        let result = self.accept(&request).await;
        answer(Source::Crm, &request, started, result, || mid_of(request.body()))
    }
}

/// The tenant a refused body names, if it names one (for the refusal's log line).
fn mid_of(body: &[u8]) -> Option<String> {
    tenant_of(&Envelope::parse(body).ok()?.object).ok()
}

impl<S: CrmStore, K: SecretSource> App<S, K> {
    async fn accept(&self, request: &Request) -> Result<Applied, ApiError> {
        let body = post_body(request)?;
        let secrets = self.secrets.current().await?;
        let intake = &self.config.intake;
        let event = intake.verified_event_with(&secrets, body, header_text(request, &intake.signature_header))?;
        if !event.event_type.is_known() {
            tracing::warn!(
                mid = %event.mid,
                entity_id = %event.entity_id,
                event_type = event.event_type.as_str(),
                raw = %event.raw,
                "event type not modelled; merging its mapping_data generically"
            );
        }
        let delivery = self.store.apply(&event).await?;
        let status = match delivery {
            Delivery::Accepted => "accepted",
            Delivery::Duplicate => "duplicate",
        };
        tracing::info!(mid = %event.mid, entity_id = %event.entity_id, event_type = event.event_type.as_str(), status, "event applied");
        Ok(Applied {
            delivery,
            response: json_response(&json!({
                "status": status,
                "mid": event.mid,
                "entity_id": event.entity_id,
            })),
            mid: event.mid.to_string(),
            entity_id: Some(event.entity_id.to_string()),
        })
    }
}
