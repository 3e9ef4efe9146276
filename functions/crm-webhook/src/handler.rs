//! `POST /crm/webhook`: method → size → JSON object → mid → signature → fields → write
//! (SPEC 2.3), so that nothing unauthenticated is ever acted on.

use lambda_http::{Body, Request, Response};
use serde_json::json;
use webhook_model::config::CrmConfig;
use webhook_model::crm;
use webhook_model::error::ApiError;
use webhook_model::http::{header_text, json_response, post_body, respond};
use webhook_model::merge::Delivery;
use webhook_model::store::CrmStore;

/// Everything a request needs, built once at start-up.
pub struct App<S> {
    pub config: CrmConfig,
    pub store: S,
}

impl<S: CrmStore> App<S> {
    /// Answers one request; every failure becomes its documented response, never an `Err`.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        respond(self.accept(&request).await)
    }

    async fn accept(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        let body = post_body(request)?;
        let header_name = &self.config.signature_header;
        let event = crm::verified_event(
            body,
            header_name,
            header_text(request, header_name),
            &self.config.secrets,
            self.config.offset,
        )?;
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
