//! `POST /crm/webhook`: method → size → JSON object → mid → signature → fields → write
//! (SPEC 2.3), so that nothing unauthenticated is ever acted on.

use std::sync::Arc;

use lambda_http::{Body, Request, Response};
use serde_json::json;
use shared::clock::SystemClock;
use shared::config::{ConfigError, CrmConfig, Env};
use shared::dynamo::{client_from_env, DynamoCrmStore};
use shared::error::ApiError;
use shared::http::{header_text, json_response, post_body, respond, Handler};
use shared::merge::Delivery;
use shared::store::CrmStore;

/// Everything a request needs, built once at start-up.
pub struct App<S> {
    pub config: CrmConfig,
    pub store: S,
}

impl App<DynamoCrmStore> {
    /// The function as deployed: configuration from `env`, the DynamoDB store.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let config = CrmConfig::from_env(env).inspect_err(|error| {
            tracing::error!(%error, "configuration is incomplete; not starting");
        })?;
        if config.intake.secrets.is_empty() {
            tracing::warn!("no CRM_WEBHOOK_SECRET configured: every request will be refused (401 no_secret)");
        }
        let store = DynamoCrmStore::new(client_from_env(env), config.table_name.clone(), Arc::new(SystemClock));
        Ok(Self { config, store })
    }
}

impl<S: CrmStore + 'static> Handler for App<S> {
    async fn handle(&self, request: Request) -> Response<Body> {
        respond(self.accept(&request).await)
    }
}

impl<S: CrmStore> App<S> {
    async fn accept(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        let body = post_body(request)?;
        let intake = &self.config.intake;
        let event = intake.verified_event(body, header_text(request, &intake.signature_header))?;
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
        Ok(json_response(&json!({
            "status": status,
            "mid": event.mid,
            "entity_id": event.entity_id,
        })))
    }
}
