//! `POST /crm/webhook`: method → size → JSON object → mid → signature → fields → write
//! (contract 2.3), so that nothing unauthenticated is ever acted on.

use std::sync::Arc;
use std::time::Instant;

use lambda_http::{Body, Request, Response};
use serde_json::json;
use shared::bounded::bounded;
use shared::clock::{Clock, SystemClock};
use shared::config::{ConfigError, CrmConfig, Env};
use shared::crm::tenant_of;
use shared::dynamo::{client_from_env, DynamoCrmStore, DynamoQuarantineStore};
use shared::envelope::Envelope;
use shared::error::ApiError;
use shared::http::{header_text, json_response, post_body, Handler, RequestDeadline};
use shared::merge::Delivery;
use shared::observe::{answer, Applied};
use shared::quarantine::{Quarantine, QuarantinePolicy, QuarantineStore};
use shared::secret::SecretSource;
use shared::secrets_manager::TenantSecretSource;
use shared::signals::report_drift;
use shared::source::Source;
use shared::store::CrmStore;

/// Everything a request needs, built once at start-up.
pub struct App<S, K = TenantSecretSource> {
    pub config: CrmConfig,
    pub store: S,
    /// Where refused deliveries are kept (contract 2.4).
    pub quarantine: Quarantine,
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
        let client = client_from_env(env);
        let quarantine_store = DynamoQuarantineStore::from_config(&client, &config.quarantine);
        let store = DynamoCrmStore::new(client, config.table_name.clone(), Arc::new(SystemClock));
        let quarantine = App::<DynamoCrmStore>::quarantine(&config, quarantine_store, Arc::new(SystemClock));
        Ok(Self {
            config,
            store,
            quarantine,
            secrets,
        })
    }
}

impl<S: CrmStore + 'static, K: SecretSource + 'static> Handler for App<S, K> {
    async fn handle(&self, request: Request) -> Response<Body> {
        let started = Instant::now();
        let mut parsed = None;
        let result = self.accept(&request, &mut parsed).await;
        if let Err(error) = &result {
            self.quarantine.consider(&request, error, parsed.as_ref(), None).await;
        }
        // The tenant a refused body names, if it names one (for the refusal's log line).
        let mid = || tenant_of(&parsed.as_ref()?.object).ok();
        answer(Source::Crm, &request, started, result, mid)
    }
}

impl<S: CrmStore> App<S> {
    /// The quarantine of this function: its policy over `config`, writing to `store`.
    pub fn quarantine(
        config: &CrmConfig,
        store: Option<Arc<dyn QuarantineStore>>,
        clock: Arc<dyn Clock>,
    ) -> Quarantine {
        let policy = QuarantinePolicy::new(
            Source::Crm,
            Some(&config.intake.signature_header),
            config.quarantine.clone(),
            clock,
        );
        Quarantine::new(policy, store)
    }
}

impl<S: CrmStore, K: SecretSource> App<S, K> {
    /// Applies the delivery of `request`; `parsed` keeps its body once parsed, for the quarantine.
    async fn accept<'r>(&self, request: &'r Request, parsed: &mut Option<Envelope<'r>>) -> Result<Applied, ApiError> {
        let deadline = RequestDeadline::start();
        let body = post_body(request)?;
        let secrets = deadline.secrets(&self.secrets).await?;
        let envelope = parsed.insert(Envelope::parse(body)?);
        let intake = &self.config.intake;
        let event = intake.verified_event_with(&secrets, envelope, header_text(request, &intake.signature_header))?;
        report_drift(Source::Crm, &event.mid, &event.drift);
        if !event.event_type.is_known() {
            tracing::warn!(
                mid = %bounded(&event.mid),
                entity_id = %bounded(&event.entity_id),
                event_type = %bounded(event.event_type.as_str()),
                raw = %bounded(&event.raw),
                "event type not modelled; merging its mapping_data generically (the whole body is the item's last_raw)"
            );
        }
        let delivery = self.store.apply_within(&event, deadline.remaining()).await?;
        let status = match delivery {
            Delivery::Accepted => "accepted",
            Delivery::Duplicate => "duplicate",
        };
        tracing::info!(mid = %bounded(&event.mid), entity_id = %bounded(&event.entity_id), event_type = %bounded(event.event_type.as_str()), status, "event applied");
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
