//! `POST /activity/{mid}`: method → size → JSON object → tenant → nonce/timestamp/sign present →
//! sign → freshness → fields → replay → write (contract 2.3).

use std::sync::Arc;
use std::time::Instant;

use lambda_http::{Body, Request, RequestExt, Response};
use shared::bounded::{bounded, bounded_opt};
use shared::clock::{Clock, SystemClock};
use shared::config::{ActivityConfig, ConfigError, Env};
use shared::dynamo::{client_from_env, DynamoActivityStore, DynamoQuarantineStore, UnmodelledTable};
use shared::envelope::Envelope;
use shared::error::{ApiError, AuthError, NonceReuse};
use shared::http::{post_body, text_response, Handler, RequestDeadline};
use shared::merge::Delivery;
use shared::observe::{answer, Applied};
use shared::quarantine::{Quarantine, QuarantinePolicy, QuarantineStore};
use shared::secret::SecretSource;
use shared::secrets_manager::TenantSecretSource;
use shared::signals::{report_drift, report_nonce_conflict};
use shared::source::Source;
use shared::store::{ActivityStore, NonceOutcome};

/// Everything a request needs, built once at start-up.
pub struct App<S, K = TenantSecretSource> {
    pub config: ActivityConfig,
    pub store: S,
    /// Where refused deliveries are kept (contract 2.4).
    pub quarantine: Quarantine,
    /// The tenant secrets of the moment (environment, or AWS Secrets Manager refreshed).
    pub secrets: K,
}

impl App<DynamoActivityStore> {
    /// The function as deployed: configuration from `env`, the DynamoDB store.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let config = ActivityConfig::from_env(env).inspect_err(|error| {
            tracing::error!(%error, "configuration is incomplete; not starting");
        })?;
        let secrets = TenantSecretSource::new(&config.secret_location, &config.intake.secrets, env, "activity");
        let client = client_from_env(env);
        let quarantine_store = DynamoQuarantineStore::from_config(&client, &config.quarantine);
        let quarantine = App::<DynamoActivityStore>::quarantine(&config, quarantine_store, Arc::new(SystemClock));
        let unmodelled = config.quarantine.table_name.clone().map(|table| UnmodelledTable {
            table,
            retention_seconds: i64::from(config.quarantine.retention_days) * 24 * 3600,
        });
        if unmodelled.is_none() {
            tracing::warn!("no REFUSED_DELIVERIES_TABLE_NAME configured: unmodelled actions are only logged");
        }
        let store = DynamoActivityStore::new(
            client,
            config.table_name.clone(),
            config.nonces_table_name.clone(),
            config.nonce_retention_seconds(),
            Arc::new(SystemClock),
        )
        .keeping_unmodelled(unmodelled);
        Ok(Self {
            config,
            store,
            quarantine,
            secrets,
        })
    }
}

impl<S: ActivityStore + 'static, K: SecretSource + 'static> Handler for App<S, K> {
    async fn handle(&self, request: Request) -> Response<Body> {
        let started = Instant::now();
        let mut parsed = None;
        let result = self.accept(&request, &mut parsed).await;
        if let Err(error) = &result {
            let tenant = self.tenant(&request);
            self.quarantine
                .consider(&request, error, parsed.as_ref(), tenant.as_deref())
                .await;
        }
        answer(Source::Activity, &request, started, result, || self.tenant(&request))
    }
}

impl<S: ActivityStore> App<S> {
    /// The quarantine of this function: its policy over `config`, writing to `store`.
    pub fn quarantine(
        config: &ActivityConfig,
        store: Option<Arc<dyn QuarantineStore>>,
        clock: Arc<dyn Clock>,
    ) -> Quarantine {
        let policy = QuarantinePolicy::new(Source::Activity, None, config.quarantine.clone(), clock);
        Quarantine::new(policy, store)
    }
}

impl<S: ActivityStore, K: SecretSource> App<S, K> {
    /// Applies the delivery of `request`; `parsed` keeps its body once parsed, for the quarantine.
    async fn accept<'r>(&self, request: &'r Request, parsed: &mut Option<Envelope<'r>>) -> Result<Applied, ApiError> {
        let deadline = RequestDeadline::start();
        let body = post_body(request)?;
        let secrets = deadline.secrets(&self.secrets).await?;
        let envelope = parsed.insert(Envelope::parse(body)?);
        let event = self
            .config
            .intake
            .verified_event_with(&secrets, envelope, self.tenant(request).as_deref())?;
        let mid = &event.mid;
        report_drift(Source::Activity, mid, &event.drift);
        if event.activity_id().is_none() {
            // Not the raw body: it carries the request's `sign`.
            tracing::warn!(mid = %bounded(mid), action = %bounded(event.action.as_str()), "action not modelled; acknowledged and its body kept (webhookctl unmodelled list)");
        }
        let delivery = match self.store.apply_within(&event, deadline.remaining()).await? {
            NonceOutcome::Replayed(NonceReuse::OtherBody) => {
                report_nonce_conflict(mid);
                return Err(AuthError::ReplayedNonce(NonceReuse::OtherBody).into());
            }
            NonceOutcome::Replayed(reuse) => return Err(AuthError::ReplayedNonce(reuse).into()),
            NonceOutcome::Accepted => Delivery::Accepted,
            NonceOutcome::Duplicate => Delivery::Duplicate,
        };
        tracing::info!(mid = %bounded(mid), entity_id = bounded_opt(event.entity_id.as_deref()).as_deref(), action = %bounded(event.action.as_str()), ?delivery, "callback applied");
        Ok(Applied {
            delivery,
            mid: mid.to_string(),
            entity_id: event.entity_id.as_ref().map(ToString::to_string),
            response: text_response("success"),
        })
    }

    /// The tenant (contract 2.2): path parameter, else the segment after `/activity/` in the path
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
