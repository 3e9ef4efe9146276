//! The one request pipeline of both functions. Each source says how it reads a request (its
//! [`Webhook`]); the pipeline runs every request through the order of checks of contract 2.3:
//! method → size → the tenant secrets of the moment → a JSON object → tenant → the source's own
//! checks → write → answer. The body is parsed once, here, and the envelope travels on to the
//! source's intake and from there, as an event, to the store. The tenant is worked out once, and
//! serves the intake, the logs, the metrics and the quarantine alike.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lambda_http::{service_fn, Body, Request, Response};

use crate::activity::ActivityEvent;
use crate::bounded::{bounded, bounded_opt};
use crate::clock::{Clock, SystemClock};
use crate::config::{ActivityConfig, ConfigError, CrmConfig, Env, FunctionConfig};
use crate::crm::CrmEvent;
use crate::dynamo::DynamoQuarantineStore;
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::http::{error_response, post_body, RequestDeadline};
use crate::json::Drift;
use crate::merge::Delivery;
use crate::observe::{self, Outcome};
use crate::quarantine::{Quarantine, QuarantineConfig, QuarantinePolicy, QuarantineStore};
use crate::secret::{SecretSource, TenantSecrets};
use crate::secrets_manager::TenantSecretSource;
use crate::signals::report_drift;
use crate::source::Source;

#[cfg(feature = "test-harness")]
pub mod harness;

/// One webhook source as the pipeline drives it, over a store of type `S`: which tenant a
/// request is for, how its event is verified and read, how it is written, how it is answered.
pub trait Webhook<S>: Send + Sync + 'static {
    /// The verified, normalized event of this source.
    type Event: VerifiedEvent + Send + Sync;

    /// The `source` of the metrics, the logs and the quarantine.
    const SOURCE: Source;

    /// What becomes of an event of a kind the service does not model, for the WARN line.
    const UNMODELLED: &'static str;

    /// The configured header that carries the signature, kept with a quarantined delivery
    /// whatever its name; `None` when the signature is in the body.
    fn signature_header(&self) -> Option<&str> {
        None
    }

    /// The tenant of `request`, whose body is `envelope`: a refusal when there is none.
    fn tenant(&self, request: &Request, envelope: &Envelope<'_>) -> Result<String, ApiError>;

    /// The checks that follow the tenant (signature, freshness, fields), then the event.
    fn verify(
        &self,
        request: &Request,
        secrets: &TenantSecrets,
        mid: &str,
        envelope: &Envelope<'_>,
    ) -> Result<Self::Event, ApiError>;

    /// Writes `event` to `store` within `budget` (what the request has left of its deadline).
    fn write(
        &self,
        store: &S,
        event: &Self::Event,
        budget: Duration,
    ) -> impl Future<Output = Result<Delivery, ApiError>> + Send;

    /// The success answer to `event`, applied or a duplicate.
    fn answer(&self, event: &Self::Event, delivery: Delivery) -> Response<Body>;
}

/// What the pipeline reads of an event of any source, for its logs and metrics.
pub trait VerifiedEvent {
    fn summary(&self) -> Summary<'_>;
}

/// An event as the logs and metrics tell it.
#[derive(Debug, Clone, Copy)]
pub struct Summary<'a> {
    pub entity_id: Option<&'a str>,
    /// The CRM event type or the Lexiang action.
    pub kind: &'a str,
    pub drift: &'a [Drift],
    /// Whether the service models events of this kind (contract 2.3: the others are verified,
    /// acknowledged and logged at WARN).
    pub modelled: bool,
}

impl<'a> Summary<'a> {
    pub fn new(entity_id: Option<&'a str>, kind: &'a str, drift: &'a [Drift], modelled: bool) -> Self {
        Self {
            entity_id,
            kind,
            drift,
            modelled,
        }
    }
}

impl VerifiedEvent for CrmEvent {
    fn summary(&self) -> Summary<'_> {
        Summary::new(
            Some(&self.entity_id),
            self.event_type.as_str(),
            &self.drift,
            self.event_type.is_known(),
        )
    }
}

impl VerifiedEvent for ActivityEvent {
    fn summary(&self) -> Summary<'_> {
        Summary::new(
            self.entity_id.as_deref(),
            self.action.as_str(),
            &self.drift,
            self.activity_id().is_some(),
        )
    }
}

/// A function: its source, its store, its tenant secrets and its quarantine, built once at
/// start-up and shared by every request.
pub struct Pipeline<W, S, K = TenantSecretSource> {
    pub source: W,
    pub store: S,
    /// The tenant secrets of the moment (environment, or AWS Secrets Manager refreshed).
    pub secrets: K,
    /// Where refused deliveries are kept (contract 2.4).
    pub quarantine: Quarantine,
}

/// What the pipeline has read of a request so far: its body once parsed, its tenant once worked
/// out.
#[derive(Default)]
struct Read<'r> {
    envelope: Option<Envelope<'r>>,
    tenant: Option<String>,
}

/// An event applied, or recognised as a duplicate, with its answer.
struct Acknowledged {
    delivery: Delivery,
    entity_id: Option<String>,
    response: Response<Body>,
}

impl<W: Webhook<S>, S: Send + Sync + 'static> Pipeline<W, S> {
    /// The function as deployed: the secrets where `function` says (`env_secrets` when that is
    /// the environment), refused deliveries kept in the DynamoDB table of `function.quarantine`.
    pub fn deployed(
        source: W,
        store: S,
        env_secrets: &TenantSecrets,
        function: &FunctionConfig,
        client: &aws_sdk_dynamodb::Client,
    ) -> Self {
        let secrets = TenantSecretSource::new(
            &function.secret_location,
            env_secrets,
            &function.aws,
            W::SOURCE.as_str(),
        );
        let quarantine_store = DynamoQuarantineStore::from_config(client, &function.quarantine);
        let quarantine = quarantine_of::<W, S>(&source, &function.quarantine, quarantine_store, Arc::new(SystemClock));
        Self {
            source,
            store,
            secrets,
            quarantine,
        }
    }

    /// Runs the Lambda loop. The metrics each request recorded are written once it is
    /// answered: one EMF flush per request.
    pub async fn serve(self) -> Result<(), lambda_http::Error> {
        let pipeline = Arc::new(self);
        lambda_http::run(service_fn(move |request: Request| {
            let pipeline = Arc::clone(&pipeline);
            async move {
                let response = pipeline.handle(request).await;
                observe::flush();
                Ok::<_, lambda_http::Error>(response)
            }
        }))
        .await
    }
}

/// The quarantine of `source`: its policy over `config`, writing to `store` (`None`: off). The
/// one place a function's quarantine is built.
pub fn quarantine_of<W: Webhook<S>, S>(
    source: &W,
    config: &QuarantineConfig,
    store: Option<Arc<dyn QuarantineStore>>,
    clock: Arc<dyn Clock>,
) -> Quarantine {
    let policy = QuarantinePolicy::new(W::SOURCE, source.signature_header(), config.clone(), clock);
    Quarantine::new(policy, store)
}

/// What a function's configuration gives the pipeline, whatever its source: what every function
/// reads, and the secrets of the environment variables (used when the secrets are not in
/// Secrets Manager).
pub trait SourceConfig {
    fn parts(&self) -> (&FunctionConfig, &TenantSecrets);
}

impl SourceConfig for CrmConfig {
    fn parts(&self) -> (&FunctionConfig, &TenantSecrets) {
        (&self.function, &self.intake.secrets)
    }
}

impl SourceConfig for ActivityConfig {
    fn parts(&self) -> (&FunctionConfig, &TenantSecrets) {
        (&self.function, &self.intake.secrets)
    }
}

/// A function's start-up, then its Lambda loop: logs and metrics, the configuration `read` once
/// from the process environment (incomplete or malformed: logged, and the function does not
/// start), the DynamoDB client; `build` makes the source and its store of that configuration.
pub async fn run<C, W, S>(
    read: fn(&Env) -> Result<C, ConfigError>,
    build: impl FnOnce(C, &aws_sdk_dynamodb::Client) -> (W, S),
) -> Result<(), lambda_http::Error>
where
    C: SourceConfig,
    W: Webhook<S>,
    S: Send + Sync + 'static,
{
    let env = Env::from_process();
    observe::start(&env.telemetry());
    let config = read(&env).inspect_err(|error| {
        tracing::error!(%error, "configuration is incomplete; not starting");
    })?;
    let (function, secrets) = config.parts();
    let (function, secrets) = (function.clone(), secrets.clone());
    let client = crate::dynamo::client_for(&function.aws);
    let (source, store) = build(config, &client);
    Pipeline::deployed(source, store, &secrets, &function, &client)
        .serve()
        .await
}

impl<W: Webhook<S>, S: Sync, K: SecretSource> Pipeline<W, S, K> {
    /// Every request gets its documented answer, never an `Err`. A refusal is offered to the
    /// quarantine before it is answered.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        let started = Instant::now();
        let mut read = Read::default();
        let result = self.accept(&request, &mut read).await;
        let mid = read.tenant.as_deref();
        match result {
            Ok(acknowledged) => {
                let outcome = Outcome::Acknowledged {
                    delivery: acknowledged.delivery,
                    entity_id: acknowledged.entity_id.as_deref(),
                };
                observe::record(W::SOURCE, &request, started, mid, outcome);
                acknowledged.response
            }
            Err(error) => {
                self.quarantine
                    .consider(&request, &error, read.envelope.as_ref(), mid)
                    .await;
                observe::record(W::SOURCE, &request, started, mid, Outcome::Refused(&error));
                error_response(&error)
            }
        }
    }

    /// The request through every check to the store; `read` keeps the body once parsed and the
    /// tenant once worked out, for the quarantine and the logs of a refusal.
    async fn accept<'r>(&self, request: &'r Request, read: &mut Read<'r>) -> Result<Acknowledged, ApiError> {
        let deadline = RequestDeadline::start();
        let body = post_body(request)?;
        let secrets = deadline.secrets(&self.secrets).await?;
        let envelope = read.envelope.insert(Envelope::parse(body)?);
        let mid: &str = read.tenant.insert(self.source.tenant(request, envelope)?);
        let event = self.source.verify(request, &secrets, mid, envelope)?;
        let summary = event.summary();
        report_drift(W::SOURCE, mid, summary.drift);
        let (source, kind) = (W::SOURCE.as_str(), bounded(summary.kind));
        if !summary.modelled {
            tracing::warn!(source, mid = %bounded(mid), %kind, "kind not modelled; {}", W::UNMODELLED);
        }
        let delivery = self.source.write(&self.store, &event, deadline.remaining()).await?;
        let status = delivery.as_str();
        let entity_id = summary.entity_id;
        tracing::info!(source, mid = %bounded(mid), entity_id = bounded_opt(entity_id).as_deref(), %kind, status, "event applied");
        Ok(Acknowledged {
            delivery,
            entity_id: entity_id.map(str::to_owned),
            response: self.source.answer(&event, delivery),
        })
    }
}
