//! `POST /activity/{mid}`: method → size → JSON object → tenant → nonce/timestamp/sign present →
//! sign → freshness → fields → replay → write (SPEC 2.3).

use std::sync::Arc;

use lambda_http::{Body, Request, RequestExt, Response};
use shared::clock::SystemClock;
use shared::config::{ActivityConfig, ConfigError, Env};
use shared::dynamo::{client_from_env, DynamoActivityStore};
use shared::error::{ApiError, AuthError};
use shared::http::{post_body, respond, text_response, Handler};
use shared::store::{ActivityStore, NonceOutcome};

/// Everything a request needs, built once at start-up.
pub struct App<S> {
    pub config: ActivityConfig,
    pub store: S,
}

impl App<DynamoActivityStore> {
    /// The function as deployed: configuration from `env`, the DynamoDB store.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let config = ActivityConfig::from_env(env).inspect_err(|error| {
            tracing::error!(%error, "configuration is incomplete; not starting");
        })?;
        if config.intake.secrets.is_empty() {
            tracing::warn!("no ACTIVITY_CALLBACK_SECRET configured: every request will be refused (401 no_secret)");
        }
        let store = DynamoActivityStore::new(
            client_from_env(env),
            config.table_name.clone(),
            config.nonces_table_name.clone(),
            config.nonce_retention_seconds(),
            Arc::new(SystemClock),
        );
        Ok(Self { config, store })
    }
}

impl<S: ActivityStore + 'static> Handler for App<S> {
    async fn handle(&self, request: Request) -> Response<Body> {
        respond(self.accept(&request).await)
    }
}

impl<S: ActivityStore> App<S> {
    async fn accept(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        let body = post_body(request)?;
        let event = self
            .config
            .intake
            .verified_event(body, self.tenant(request).as_deref())?;
        let mid = &event.mid;
        if event.activity_id().is_none() {
            tracing::warn!(mid = %mid, action = event.action.as_str(), raw = %event.raw, "action not modelled; acknowledged without a write");
        }
        match self.store.apply(&event).await? {
            NonceOutcome::Replayed => Err(AuthError::ReplayedNonce.into()),
            outcome => {
                tracing::info!(mid = %mid, entity_id = ?event.entity_id, action = event.action.as_str(), ?outcome, "callback applied");
                Ok(text_response("success"))
            }
        }
    }

    /// The tenant (SPEC 2.2): path parameter, else the segment after `/activity/` in the path
    /// (function URLs, the local emulator), else the `mid` query parameter, else the default.
    fn tenant(&self, request: &Request) -> Option<String> {
        let from_path_parameter = || request.path_parameters().first("mid").map(str::to_owned);
        let from_path = || {
            let path = request.uri().path();
            let (_, rest) = path.split_once("/activity/")?;
            rest.split('/').next().map(str::to_owned)
        };
        let from_query = || request.query_string_parameters().first("mid").map(str::to_owned);
        [
            from_path_parameter(),
            from_path(),
            from_query(),
            self.config.default_mid.clone(),
        ]
        .into_iter()
        .flatten()
        .map(|mid| mid.trim().to_owned())
        .find(|mid| !mid.is_empty())
    }
}
