//! The `crm-webhook` Lambda function (`POST /crm/webhook`, contract 2.1): the CRM source's wiring
//! into the request pipeline (`shared::pipeline`), and its start-up.

use std::sync::Arc;
use std::time::Duration;

use lambda_http::{Body, Request, Response};
use shared::crm::{tenant_of, CrmEvent, CrmIntake};
use shared::http::{header_text, json_response};
use shared::{clock::SystemClock, config::CrmConfig, dynamo::DynamoCrmStore, envelope::Envelope, merge::Delivery};
use shared::{pipeline::Webhook, secret::TenantSecrets, source::Source, store::CrmStore, ApiError};

/// The CRM source: the body names the tenant, and a header signs the body.
struct Crm(CrmIntake);

impl<S: CrmStore + 'static> Webhook<S> for Crm {
    type Event = CrmEvent;
    const SOURCE: Source = Source::Crm;
    const UNMODELLED: &'static str = "its mapping_data merged generically (the body is the item's last_raw)";

    fn signature_header(&self) -> Option<&str> {
        Some(&self.0.signature_header)
    }

    fn tenant(&self, _: &Request, envelope: &Envelope<'_>) -> Result<String, ApiError> {
        Ok(tenant_of(&envelope.object)?)
    }

    fn verify(
        &self,
        request: &Request,
        keys: &TenantSecrets,
        mid: &str,
        body: &Envelope,
    ) -> Result<Self::Event, ApiError> {
        self.0
            .verify(keys, mid, body, header_text(request, &self.0.signature_header))
    }

    async fn write(&self, store: &S, event: &CrmEvent, budget: Duration) -> Result<Delivery, ApiError> {
        Ok(store.apply_within(event, budget).await?)
    }

    fn answer(&self, event: &CrmEvent, delivery: Delivery) -> Response<Body> {
        json_response(&serde_json::json!({"status": delivery.as_str(), "mid": event.mid, "entity_id": event.entity_id}))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    shared::pipeline::run(CrmConfig::from_env, |config, client| {
        let store = DynamoCrmStore::new(client.clone(), config.table_name, Arc::new(SystemClock));
        (Crm(config.intake), store)
    })
    .await
}

#[cfg(test)]
mod tests;
