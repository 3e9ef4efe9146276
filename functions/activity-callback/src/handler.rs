//! `POST /activity/{mid}`: method → size → JSON object → tenant → nonce/timestamp/sign present →
//! sign → freshness → fields → replay → write (SPEC 2.3).

use lambda_http::{Body, Request, RequestExt, Response};
use webhook_model::activity;
use webhook_model::clock::Clock;
use webhook_model::config::ActivityConfig;
use webhook_model::error::{ApiError, AuthError};
use webhook_model::http::{post_body, respond, text_response};
use webhook_model::store::{ActivityStore, NonceOutcome};

/// Everything a request needs, built once at start-up.
pub struct App<S> {
    pub config: ActivityConfig,
    pub store: S,
    pub clock: Box<dyn Clock>,
}

impl<S: ActivityStore> App<S> {
    /// Answers one request; every failure becomes its documented response, never an `Err`.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        respond(self.accept(&request).await)
    }

    async fn accept(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        let body = post_body(request)?;
        let event = activity::verified_event(
            body,
            self.tenant(request).as_deref(),
            &self.config.secrets,
            self.clock.as_ref(),
            self.config.max_skew_seconds,
            self.config.offset,
        )?;
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
