//! The `activity-callback` Lambda function (`POST /activity/{mid}`, contract 2.2): the activity
//! source's wiring into the request pipeline (`shared::pipeline`), and its start-up.

use std::time::Duration;

use lambda_http::{Body, Request, Response};
use shared::activity::{ActivityEvent, ActivityIntake};
use shared::config::ActivityConfig;
use shared::dynamo::DynamoActivityStore;
use shared::error::{ApiError, AuthError, NonceReuse, RequestError};
use shared::http::{tenant_in_url, text_response};
use shared::{envelope::Envelope, merge::Delivery, pipeline::Webhook, secret::TenantSecrets, source::Source};
use shared::{signals::report_nonce_conflict, store::ActivityStore};

/// The Lexiang source: the URL names the tenant, and the body's `sign` signs its nonce.
struct Activity {
    intake: ActivityIntake,
    /// `ACTIVITY_DEFAULT_MID`: the tenant of a request whose URL names none.
    default_mid: Option<String>,
}

impl<S: ActivityStore + 'static> Webhook<S> for Activity {
    type Event = ActivityEvent;
    const SOURCE: Source = Source::Activity;
    const UNMODELLED: &'static str = "acknowledged and its body kept (webhookctl unmodelled list)";

    fn tenant(&self, request: &Request, _: &Envelope<'_>) -> Result<String, ApiError> {
        let mid = tenant_in_url(request, "/activity/").or_else(|| self.default_mid.clone());
        Ok(mid.ok_or(RequestError::MissingMid)?)
    }

    fn verify(&self, _: &Request, keys: &TenantSecrets, mid: &str, body: &Envelope) -> Result<Self::Event, ApiError> {
        self.intake.verify(keys, mid, body)
    }

    async fn write(&self, store: &S, event: &ActivityEvent, budget: Duration) -> Result<Delivery, ApiError> {
        let delivery = store.apply_within(event, budget).await?.delivery();
        if delivery == Err(NonceReuse::OtherBody) {
            report_nonce_conflict(&event.mid);
        }
        Ok(delivery.map_err(AuthError::ReplayedNonce)?)
    }

    fn answer(&self, _: &ActivityEvent, _: Delivery) -> Response<Body> {
        text_response("success")
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    shared::pipeline::run(ActivityConfig::from_env, |config, client| {
        let store = DynamoActivityStore::from_config(client.clone(), &config);
        let (intake, default_mid) = (config.intake, config.default_mid);
        (Activity { intake, default_mid }, store)
    })
    .await
}

#[cfg(test)]
mod tests;
