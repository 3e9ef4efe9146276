//! The harness of the functions' handler tests (feature `test-harness`): a pipeline on the
//! in-memory store, with its quarantine in memory on a fixed clock; the real API Gateway events of
//! `fixtures/events/`; and the cases that every source passes the same way.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lambda_http::{Body, Request};
use serde_json::Value;

use crate::activity::ActivityEvent;
use crate::clock::FixedClock;
use crate::crm::CrmEvent;
use crate::error::{SecretsError, StoreError};
use crate::merge::Delivery;
use crate::pipeline::{quarantine_of, Pipeline, Webhook};
use crate::quarantine::{MemoryQuarantine, QuarantineConfig, QuarantineStore};
use crate::secret::{FixedSecrets, SecretSource, TenantSecrets};
use crate::store::{ActivityStore, CrmStore, MemoryStore, NonceOutcome, REQUEST_DEADLINE};

/// A pipeline of the handler tests: the in-memory store, secrets read at start-up unless a test
/// swaps them ([`Pipeline::with_secrets`]).
pub type TestPipeline<W, K = FixedSecrets> = Pipeline<W, RecordingStore, K>;

/// A pipeline of `source` with `secrets`, whose quarantine (as `quarantine` configures it) keeps
/// its records in the memory returned with it, on a clock stopped at `now`.
pub fn pipeline<W: Webhook<RecordingStore>>(
    source: W,
    secrets: &TenantSecrets,
    quarantine: &QuarantineConfig,
    now: i64,
) -> (TestPipeline<W>, Arc<MemoryQuarantine>) {
    let kept = Arc::new(MemoryQuarantine::default());
    let store = Some(Arc::clone(&kept) as Arc<dyn QuarantineStore>);
    let quarantine = quarantine_of::<W, RecordingStore>(&source, quarantine, store, Arc::new(FixedClock(now)));
    let pipeline = Pipeline {
        source,
        store: RecordingStore::default(),
        secrets: FixedSecrets(Arc::new(secrets.clone())),
        quarantine,
    };
    (pipeline, kept)
}

impl<W, S, K> Pipeline<W, S, K> {
    /// The same pipeline, reading its tenant secrets from `secrets`.
    pub fn with_secrets<N>(self, secrets: N) -> Pipeline<W, S, N> {
        Pipeline {
            source: self.source,
            store: self.store,
            secrets,
            quarantine: self.quarantine,
        }
    }
}

/// The API Gateway event `fixtures/events/<name>`.
pub fn event_json(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/events")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).expect("a fixture")).expect("a JSON fixture")
}

/// The body of an API Gateway event, as JSON.
pub fn body_of(event: &Value) -> Value {
    serde_json::from_str(event["body"].as_str().expect("a text body")).expect("a JSON body")
}

pub fn request(event: &Value) -> Request {
    lambda_http::request::from_str(&event.to_string()).expect("a valid API Gateway event")
}

/// An answer as the sender reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

impl Answer {
    /// The body as JSON (`null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_default()
    }

    /// The status and the refusal's code (`<none>` when the body names none).
    pub fn refusal(&self) -> (u16, String) {
        let code = self.json()["error"]["code"].as_str().unwrap_or("<none>").to_owned();
        (self.status, code)
    }
}

/// Sends `event` through `pipeline`.
pub async fn call<W: Webhook<S>, S: Sync, K: SecretSource>(pipeline: &Pipeline<W, S, K>, event: &Value) -> Answer {
    let response = pipeline.handle(request(event)).await;
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().expect("a visible content type").to_owned());
    let body = match response.body() {
        Body::Text(text) => text.clone(),
        Body::Binary(bytes) => String::from_utf8(bytes.clone()).expect("a UTF-8 answer"),
        _ => String::new(),
    };
    Answer {
        status: response.status().as_u16(),
        content_type,
        body,
    }
}

/// One call of the store: the budget it was given and what it answered (`accepted`,
/// `duplicate`, `replayed_nonce` or the store's failure code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Write {
    pub budget: Duration,
    pub outcome: &'static str,
}

/// The in-memory store, remembering each call it answered.
#[derive(Debug, Default)]
pub struct RecordingStore {
    pub memory: MemoryStore,
    writes: Mutex<Vec<Write>>,
}

impl RecordingStore {
    pub fn writes(&self) -> Vec<Write> {
        self.writes.lock().expect("poisoned").clone()
    }

    /// What each call answered, in order.
    pub fn outcomes(&self) -> Vec<&'static str> {
        self.writes().iter().map(|write| write.outcome).collect()
    }

    fn note<T>(&self, budget: Duration, result: &Result<T, StoreError>, outcome: impl FnOnce(&T) -> &'static str) {
        let outcome = match result {
            Ok(answer) => outcome(answer),
            Err(error) => crate::ApiError::from(error.clone()).code(),
        };
        self.writes.lock().expect("poisoned").push(Write { budget, outcome });
    }
}

impl CrmStore for RecordingStore {
    async fn apply_within(&self, event: &CrmEvent, budget: Duration) -> Result<Delivery, StoreError> {
        let result = CrmStore::apply_within(&self.memory, event, budget).await;
        self.note(budget, &result, |delivery| delivery.as_str());
        result
    }
}

impl ActivityStore for RecordingStore {
    async fn apply_within(&self, event: &ActivityEvent, budget: Duration) -> Result<NonceOutcome, StoreError> {
        let result = ActivityStore::apply_within(&self.memory, event, budget).await;
        self.note(budget, &result, |outcome| match outcome {
            NonceOutcome::Accepted => "accepted",
            NonceOutcome::Duplicate => "duplicate",
            NonceOutcome::Replayed(_) => "replayed_nonce",
        });
        result
    }
}

/// A secret store that cannot be read (Secrets Manager down, nothing cached).
pub struct UnreadableSecrets;

impl SecretSource for UnreadableSecrets {
    async fn current(&self) -> Result<Arc<TenantSecrets>, SecretsError> {
        Err(SecretsError::Unavailable("connection refused".into()))
    }
}

/// Secrets that take `delay` to read (the first read of an instance on a slow network), on
/// tokio's clock: paused in the tests that use them, so the delay is logic, not waiting.
pub struct SlowSecrets {
    pub delay: Duration,
    pub secrets: Arc<TenantSecrets>,
}

impl SecretSource for SlowSecrets {
    async fn current(&self) -> Result<Arc<TenantSecrets>, SecretsError> {
        tokio::time::sleep(self.delay).await;
        Ok(Arc::clone(&self.secrets))
    }
}

/// The tenant secrets are waited for within the request's deadline, whatever their store does,
/// for `event` (authentic, new) sent to a pipeline `app` makes. Needs tokio's paused clock.
///
/// - Unreadable: 503 `secrets_unavailable`, never 401, and the store is never called.
/// - Read past the deadline: 503 `secrets_unavailable` at the deadline, not after the read, and
///   the store is never called.
/// - Read in 2.5 s: accepted, and the store is called once, with the 1.5 s the secrets left of
///   the deadline. That pipeline is returned, for the source's own checks of what it stored.
pub async fn secrets_are_waited_for_within_the_deadline<W: Webhook<RecordingStore>>(
    app: impl Fn() -> TestPipeline<W>,
    event: &Value,
) -> TestPipeline<W, SlowSecrets> {
    let unreadable = app().with_secrets(UnreadableSecrets);
    let answer = call(&unreadable, event).await;
    assert_eq!(answer.refusal(), (503, "secrets_unavailable".to_owned()));
    assert!(unreadable.store.writes().is_empty(), "the store is never called");

    let slow = |pipeline: TestPipeline<W>, delay| {
        let secrets = Arc::clone(&pipeline.secrets.0);
        pipeline.with_secrets(SlowSecrets { delay, secrets })
    };
    let stuck = slow(app(), Duration::from_secs(3_600));
    let started = tokio::time::Instant::now();
    let answer = call(&stuck, event).await;
    assert_eq!(started.elapsed(), REQUEST_DEADLINE, "answered at the deadline");
    assert_eq!(answer.refusal(), (503, "secrets_unavailable".to_owned()));
    assert!(stuck.store.writes().is_empty(), "the store is never called");

    let delay = Duration::from_millis(2_500);
    let late = slow(app(), delay);
    assert_eq!(call(&late, event).await.status, 200);
    let budget = REQUEST_DEADLINE - delay;
    assert_eq!(
        late.store.writes(),
        [Write {
            budget,
            outcome: "accepted"
        }]
    );
    late
}
