//! Handler tests on real API Gateway events from `fixtures/events/` (signed with the
//! development secret), against the in-memory store.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use base64::Engine;
use lambda_http::{Body, Request};
use serde_json::Value;
use shared::clock::FixedClock;
use shared::config::{CrmConfig, Env};
use shared::crm::verify::{Algorithm, Encoding, SignatureScheme};
use shared::crm::CrmEvent;
use shared::http::Handler;
use shared::merge::Delivery;
use shared::quarantine::{MemoryQuarantine, QuarantineStore};
use shared::secret::Secret;
use shared::source::Source;
use shared::store::{CrmStore, MemoryStore, REQUEST_DEADLINE};
use shared::StoreError;

use shared::secret::{FixedSecrets, SecretSource, TenantSecrets};
use shared::secrets_manager::TenantSecretSource;
use shared::SecretsError;

use crate::handler::App;

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/events")
}

fn app(secrets: &[(&str, &str)]) -> App<MemoryStore> {
    app_with_quarantine(secrets).0
}

/// The quarantine's clock in these tests: fixed, so that its per-minute and per-hour windows
/// never turn during a test and the caps give exact counts (2023-11-14 22:13:20 UTC, well inside
/// a minute and an hour).
const QUARANTINE_NOW: i64 = 1_700_000_000;

/// An app whose quarantine keeps its records in memory, and that memory.
fn app_with_quarantine(vars: &[(&str, &str)]) -> (App<MemoryStore>, Arc<MemoryQuarantine>) {
    let mut all = vec![
        ("CRM_TABLE_NAME", "crm_entities"),
        ("REFUSED_DELIVERIES_TABLE_NAME", "refused_deliveries"),
    ];
    all.extend_from_slice(vars);
    let config = CrmConfig::from_env(&all.into_iter().collect::<Env>()).unwrap();
    let kept = Arc::new(MemoryQuarantine::default());
    let quarantine = App::<MemoryStore>::quarantine(
        &config,
        Some(Arc::clone(&kept) as Arc<dyn QuarantineStore>),
        Arc::new(FixedClock(QUARANTINE_NOW)),
    );
    let secrets = TenantSecretSource::Fixed(FixedSecrets(Arc::new(config.intake.secrets.clone())));
    let app = App {
        config,
        store: MemoryStore::default(),
        quarantine,
        secrets,
    };
    (app, kept)
}

fn dev_app() -> App<MemoryStore> {
    app(&[("CRM_WEBHOOK_SECRET", "dev-crm-secret")])
}

fn event_json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(events_dir().join(name)).unwrap()).unwrap()
}

fn request(event: &Value) -> Request {
    lambda_http::request::from_str(&event.to_string()).expect("a valid API Gateway event")
}

async fn call(app: &App<MemoryStore>, event: &Value) -> (u16, Value) {
    let response = app.handle(request(event)).await;
    let status = response.status().as_u16();
    let body = match response.body() {
        Body::Text(text) => text.clone(),
        Body::Binary(bytes) => String::from_utf8(bytes.clone()).unwrap(),
        Body::Empty => String::new(),
        _ => unreachable!("only text, binary and empty bodies exist"),
    };
    (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

fn error_code(answer: &(u16, Value)) -> (u16, &str) {
    (answer.0, answer.1["error"]["code"].as_str().unwrap_or("<no code>"))
}

#[tokio::test]
async fn every_crm_fixture_is_accepted_and_stored() {
    let mut names: Vec<String> = std::fs::read_dir(events_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("crm_"))
        .collect();
    names.sort();
    assert!(names.len() >= 18, "{names:?}");
    let app = dev_app();
    for name in &names {
        let event = event_json(name);
        let payload: Value = serde_json::from_str(event["body"].as_str().unwrap()).unwrap();
        let (status, body) = call(&app, &event).await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(body["status"], "accepted", "{name}");
        let mid = body["mid"].as_str().unwrap();
        let entity_id = payload["extra_data"]["entity_id"].as_str().unwrap();
        assert_eq!(body["entity_id"], entity_id, "{name}");
        assert!(app.store.crm_state(mid, entity_id).is_some(), "{name}");
    }
}

#[tokio::test]
async fn a_second_delivery_is_a_duplicate_and_changes_nothing() {
    let app = dev_app();
    let event = event_json("crm_lead_object_update.json");
    assert_eq!(call(&app, &event).await.1["status"], "accepted");
    let before = app.store.crm_state("124", "NttdW4NoJfD2cX6f7rg52f").unwrap();
    assert_eq!(call(&app, &event).await.1["status"], "duplicate");
    assert_eq!(app.store.crm_state("124", "NttdW4NoJfD2cX6f7rg52f").unwrap(), before);
    assert_eq!(before.event_count, 1);
}

#[tokio::test]
async fn refusals_have_their_documented_status_and_write_nothing() {
    let app = dev_app();
    let good = event_json("crm_seed_124_object_create.json");

    let mut wrong_signature = good.clone();
    wrong_signature["headers"]["x-signature"] = "0".repeat(40).into();
    assert_eq!(
        error_code(&call(&app, &wrong_signature).await),
        (401, "invalid_signature")
    );

    let mut unsigned = good.clone();
    unsigned["headers"].as_object_mut().unwrap().remove("x-signature");
    assert_eq!(error_code(&call(&app, &unsigned).await), (401, "missing_signature"));

    let mut get = good.clone();
    get["requestContext"]["http"]["method"] = "GET".into();
    assert_eq!(error_code(&call(&app, &get).await), (405, "method_not_allowed"));

    let mut huge = good.clone();
    huge["body"] = format!("{{\"pad\":\"{}\"}}", "x".repeat(256 * 1024)).into();
    assert_eq!(error_code(&call(&app, &huge).await), (413, "payload_too_large"));

    let mut not_json = good.clone();
    not_json["body"] = "mid=124".into();
    assert_eq!(error_code(&call(&app, &not_json).await), (400, "invalid_json"));

    assert!(app.store.crm_state("124", "NttdW4NoJfD2cX6f7rg52f").is_none());
}

#[tokio::test]
async fn mid_is_checked_before_the_signature_and_fields_after_it() {
    let app = dev_app();
    let sign = |body: &str| shared::crm::verify::sign(body.as_bytes(), &shared::secret::Secret::new("dev-crm-secret"));
    let mut event = event_json("crm_seed_124_object_create.json");

    event["body"] = r#"{"event_type":"object_create"}"#.into();
    let answer = call(&app, &event).await;
    assert_eq!(error_code(&answer), (400, "missing_field"));
    assert!(answer.1["error"]["message"].as_str().unwrap().contains("mid"));

    let unsigned_bad_fields = r#"{"mid":"124","create_time":"soon"}"#;
    event["body"] = unsigned_bad_fields.into();
    assert_eq!(error_code(&call(&app, &event).await), (401, "invalid_signature"));

    event["headers"]["x-signature"] = sign(unsigned_bad_fields).into();
    let answer = call(&app, &event).await;
    assert_eq!(error_code(&answer), (400, "missing_field"));
    assert!(answer.1["error"]["message"].as_str().unwrap().contains("event_type"));
}

#[tokio::test]
async fn a_tenant_without_a_secret_is_refused_even_when_others_have_one() {
    let app = app(&[("CRM_WEBHOOK_SECRET_941", "only-941")]);
    let answer = call(&app, &event_json("crm_seed_124_object_create.json")).await;
    assert_eq!(error_code(&answer), (401, "no_secret"));
}

#[tokio::test]
async fn a_tenant_variable_set_empty_blocks_the_tenant_despite_the_default() {
    let event = event_json("crm_seed_124_object_create.json");
    let blocked = app(&[("CRM_WEBHOOK_SECRET", "dev-crm-secret"), ("CRM_WEBHOOK_SECRET_124", "")]);
    assert_eq!(error_code(&call(&blocked, &event).await), (401, "no_secret"));
    assert!(blocked.store.crm_state("124", "NttdW4NoJfD2cX6f7rg52f").is_none());
    let open = app(&[("CRM_WEBHOOK_SECRET", "dev-crm-secret"), ("CRM_WEBHOOK_SECRET_941", "")]);
    assert_eq!(call(&open, &event).await.0, 200, "only the tenant named is blocked");
    assert!(open.store.crm_state("124", "NttdW4NoJfD2cX6f7rg52f").is_some());
}

#[tokio::test]
async fn a_per_tenant_secret_overrides_the_default_and_rotation_keeps_old_senders_working() {
    let overridden = app(&[
        ("CRM_WEBHOOK_SECRET", "dev-crm-secret"),
        ("CRM_WEBHOOK_SECRET_124", "tenant-124"),
    ]);
    let event = event_json("crm_seed_124_object_create.json");
    assert_eq!(error_code(&call(&overridden, &event).await), (401, "invalid_signature"));
    let rotating = app(&[("CRM_WEBHOOK_SECRET_124", "new-secret, dev-crm-secret")]);
    assert_eq!(call(&rotating, &event).await.0, 200);
}

#[tokio::test]
async fn a_base64_body_from_api_gateway_is_verified_on_its_decoded_bytes() {
    let app = dev_app();
    let mut event = event_json("crm_seed_941_object_create.json");
    let body = event["body"].as_str().unwrap().to_owned();
    event["body"] = base64::engine::general_purpose::STANDARD.encode(body.as_bytes()).into();
    event["isBase64Encoded"] = true.into();
    let (status, answer) = call(&app, &event).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")), "{answer}");
}

#[tokio::test]
async fn storage_outage_is_503_storage_unavailable() {
    let app = dev_app();
    app.store.unavailable.store(true, Ordering::SeqCst);
    let answer = call(&app, &event_json("crm_seed_124_object_create.json")).await;
    assert_eq!(error_code(&answer), (503, "storage_unavailable"));
}

#[tokio::test]
async fn a_custom_signature_header_is_honoured() {
    let app = app(&[
        ("CRM_WEBHOOK_SECRET", "dev-crm-secret"),
        ("CRM_SIGNATURE_HEADER", "X-Jing-Signature"),
    ]);
    let mut event = event_json("crm_seed_124_object_create.json");
    let signature = event["headers"].as_object_mut().unwrap().remove("x-signature").unwrap();
    assert_eq!(error_code(&call(&app, &event).await), (401, "missing_signature"));
    event["headers"]["x-jing-signature"] = signature;
    assert_eq!(call(&app, &event).await.0, 200);
}

#[tokio::test]
async fn a_configured_sha256_base64_scheme_is_honoured_and_the_default_refused() {
    let (app, _) = app_with_quarantine(&[
        ("CRM_WEBHOOK_SECRET", "dev-crm-secret"),
        ("CRM_SIGNATURE_ALGORITHM", "hmac-sha256"),
        ("CRM_SIGNATURE_ENCODING", "base64"),
    ]);
    let mut event = event_json("crm_seed_124_object_create.json");
    assert_eq!(error_code(&call(&app, &event).await), (401, "invalid_signature"));
    let scheme = SignatureScheme {
        algorithm: Algorithm::HmacSha256,
        encoding: Encoding::Base64,
    };
    let body = event["body"].as_str().unwrap().to_owned();
    event["headers"]["x-signature"] = scheme.sign(body.as_bytes(), &Secret::new("dev-crm-secret")).into();
    assert_eq!(call(&app, &event).await.1["status"], "accepted");
}

#[tokio::test]
async fn a_refused_authentic_looking_delivery_is_quarantined_and_never_applied() {
    let (app, kept) = app_with_quarantine(&[("CRM_WEBHOOK_SECRET", "a-secret-the-sender-does-not-use")]);
    let mut event = event_json("crm_seed_124_object_create.json");
    event["headers"]["authorization"] = "Bearer not-to-be-kept".into();
    let answer = call(&app, &event).await;
    assert_eq!(
        error_code(&answer),
        (401, "invalid_signature"),
        "the answer is unchanged"
    );
    assert!(app.store.crm_state("124", "NttdW4NoJfD2cX6f7rg52f").is_none());
    let records = kept.records();
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.source, Source::Crm);
    assert_eq!((record.status, record.code.as_str()), (401, "invalid_signature"));
    assert_eq!(record.tenant.as_deref(), Some("124"));
    assert_eq!(record.body, event["body"].as_str().unwrap());
    assert!(record.header_names.contains(&"authorization".to_owned()));
    assert_eq!(
        record.signature_headers.keys().collect::<Vec<_>>(),
        ["x-signature"],
        "only the signature header's value is kept"
    );
    assert_eq!(record.signature_headers["x-signature"], event["headers"]["x-signature"]);
}

#[tokio::test]
async fn only_eligible_refusals_are_quarantined() {
    let (app, kept) = app_with_quarantine(&[("CRM_WEBHOOK_SECRET", "dev-crm-secret")]);
    let good = event_json("crm_seed_124_object_create.json");
    assert_eq!(call(&app, &good).await.0, 200);
    let mut probe = good.clone();
    probe["body"] = "{}".into();
    assert_eq!(error_code(&call(&app, &probe).await), (400, "missing_field"));
    let mut not_json = good.clone();
    not_json["body"] = "mid=124".into();
    assert_eq!(error_code(&call(&app, &not_json).await), (400, "invalid_json"));
    let mut get = good.clone();
    get["requestContext"]["http"]["method"] = "GET".into();
    assert_eq!(call(&app, &get).await.0, 405);
    assert!(kept.records().is_empty(), "{:?}", kept.records());
    let mut bad_field = good.clone();
    let body = r#"{"mid":"124","event_type":"object_update","create_time":"soon","extra_data":{"entity_id":"E"}}"#;
    bad_field["body"] = body.into();
    bad_field["headers"]["x-signature"] =
        shared::crm::verify::sign(body.as_bytes(), &Secret::new("dev-crm-secret")).into();
    assert_eq!(error_code(&call(&app, &bad_field).await), (400, "invalid_field"));
    assert_eq!(kept.records().len(), 1);
    assert_eq!(kept.records()[0].code, "invalid_field");
}

#[tokio::test]
async fn a_failing_quarantine_changes_no_answer() {
    let (app, kept) = app_with_quarantine(&[("CRM_WEBHOOK_SECRET", "other")]);
    kept.unavailable.store(true, Ordering::SeqCst);
    let answer = call(&app, &event_json("crm_seed_124_object_create.json")).await;
    assert_eq!(error_code(&answer), (401, "invalid_signature"));
    assert!(kept.records().is_empty());
}

/// Posts the seed event 20 times to `app`, whose secret is not the one it is signed with: each
/// is refused the same way, whatever the quarantine does.
async fn twenty_forged(app: &App<MemoryStore>) {
    let event = event_json("crm_seed_124_object_create.json");
    for _ in 0..20 {
        assert_eq!(error_code(&call(app, &event).await), (401, "invalid_signature"));
    }
}

#[tokio::test]
async fn the_quarantine_caps_hold_per_instance() {
    let (app, kept) = app_with_quarantine(&[("CRM_WEBHOOK_SECRET", "other"), ("QUARANTINE_MAX_PER_MINUTE", "3")]);
    twenty_forged(&app).await;
    assert_eq!(kept.records().len(), 3, "the cap of one minute: 3 of 20 kept");

    let (app, kept) = app_with_quarantine(&[("CRM_WEBHOOK_SECRET", "other"), ("QUARANTINE_MAX_BODY_BYTES", "100")]);
    let event = event_json("crm_seed_124_object_create.json");
    assert_eq!(error_code(&call(&app, &event).await), (401, "invalid_signature"));
    assert!(kept.records().is_empty(), "over the body cap");
}

#[tokio::test]
async fn the_global_cap_is_configuration_and_a_failing_counter_changes_no_answer() {
    let (app, kept) = app_with_quarantine(&[("CRM_WEBHOOK_SECRET", "other"), ("QUARANTINE_GLOBAL_MAX", "2")]);
    twenty_forged(&app).await;
    assert_eq!(kept.records().len(), 2, "the global cap of one window: 2 of 20 kept");
    assert_eq!(
        kept.slot_calls(),
        3,
        "two granted, one full; no counter call once the window is known to be full"
    );

    let (app, kept) = app_with_quarantine(&[("CRM_WEBHOOK_SECRET", "other")]);
    kept.counter_unavailable.store(true, Ordering::SeqCst);
    let event = event_json("crm_seed_124_object_create.json");
    assert_eq!(error_code(&call(&app, &event).await), (401, "invalid_signature"));
    assert!(kept.records().is_empty(), "no slot, no record");
}

#[tokio::test]
async fn drifted_fields_are_accepted() {
    let app = dev_app();
    let mut event = event_json("crm_seed_124_object_create.json");
    let mut body: Value = serde_json::from_str(event["body"].as_str().unwrap()).unwrap();
    body["extra_data"]["notes"] = serde_json::json!({"text": "an object"});
    body["extra_data"]["mapping_data_text"]["name"] = serde_json::json!({"zh": "名"});
    let body = body.to_string();
    event["body"] = body.clone().into();
    event["headers"]["x-signature"] = shared::crm::verify::sign(body.as_bytes(), &Secret::new("dev-crm-secret")).into();
    let (status, answer) = call(&app, &event).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")), "{answer}");
    let state = app.store.crm_state("124", "NttdW4NoJfD2cX6f7rg52f").unwrap();
    assert_eq!(state.last_raw.as_ref(), body, "the drifted values stay in last_raw");
}

/// A secret store that cannot be read (Secrets Manager down, nothing cached).
struct UnreadableSecrets;

impl SecretSource for UnreadableSecrets {
    async fn current(&self) -> Result<Arc<TenantSecrets>, SecretsError> {
        Err(SecretsError::Unavailable("connection refused".into()))
    }
}

#[tokio::test]
async fn unreadable_secrets_are_503_secrets_unavailable_never_401_and_nothing_is_written() {
    let App {
        config,
        store,
        quarantine,
        ..
    } = dev_app();
    let app = App {
        config,
        store,
        quarantine,
        secrets: UnreadableSecrets,
    };
    let event = event_json("crm_seed_124_object_create.json");
    let request: Request = lambda_http::request::from_str(&event.to_string()).unwrap();
    let response = app.handle(request).await;
    assert_eq!(response.status().as_u16(), 503);
    let body: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
    assert_eq!(body["error"]["code"], "secrets_unavailable");
    assert!(app.store.crm_state("124", "NttdW4NoJfD2cX6f7rg52f").is_none());
}

/// Secrets that take `delay` to read (the first read of an instance on a slow network), on
/// tokio's clock: paused in these tests, so the delay is logic, not waiting.
struct SlowSecrets {
    delay: std::time::Duration,
    secrets: Arc<TenantSecrets>,
}

impl SecretSource for SlowSecrets {
    async fn current(&self) -> Result<Arc<TenantSecrets>, SecretsError> {
        tokio::time::sleep(self.delay).await;
        Ok(Arc::clone(&self.secrets))
    }
}

/// The in-memory store, remembering the budget each delivery was given.
#[derive(Default)]
struct BudgetRecorder {
    store: MemoryStore,
    budgets: std::sync::Mutex<Vec<std::time::Duration>>,
}

impl CrmStore for BudgetRecorder {
    async fn apply_within(&self, event: &CrmEvent, budget: std::time::Duration) -> Result<Delivery, StoreError> {
        self.budgets.lock().unwrap().push(budget);
        self.store.apply_within(event, budget).await
    }
}

fn slow_secrets_app(delay: std::time::Duration) -> App<BudgetRecorder, SlowSecrets> {
    let App { config, quarantine, .. } = dev_app();
    let secrets = Arc::new(config.intake.secrets.clone());
    App {
        config,
        store: BudgetRecorder::default(),
        quarantine,
        secrets: SlowSecrets { delay, secrets },
    }
}

#[tokio::test(start_paused = true)]
async fn the_store_gets_what_the_first_secret_read_left_of_the_request_deadline() {
    let app = slow_secrets_app(std::time::Duration::from_millis(2_500));
    let event = event_json("crm_seed_124_object_create.json");
    let response = app.handle(request(&event)).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        *app.store.budgets.lock().unwrap(),
        [REQUEST_DEADLINE - std::time::Duration::from_millis(2_500)],
        "one store call, with the 1.5 s the secrets left"
    );
    assert_eq!(
        app.store
            .store
            .crm_state("124", "NttdW4NoJfD2cX6f7rg52f")
            .unwrap()
            .event_count,
        1
    );
}

#[tokio::test(start_paused = true)]
async fn a_secret_read_that_outlasts_the_request_deadline_is_503_at_the_deadline_and_writes_nothing() {
    let app = slow_secrets_app(std::time::Duration::from_secs(3_600));
    let event = event_json("crm_seed_124_object_create.json");
    let started = tokio::time::Instant::now();
    let response = app.handle(request(&event)).await;
    assert_eq!(
        started.elapsed(),
        REQUEST_DEADLINE,
        "answered at the deadline, not after the read"
    );
    assert_eq!(response.status().as_u16(), 503);
    let body: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
    assert_eq!(body["error"]["code"], "secrets_unavailable");
    assert!(
        app.store.budgets.lock().unwrap().is_empty(),
        "the store is never called"
    );
    assert!(app.store.store.crm_state("124", "NttdW4NoJfD2cX6f7rg52f").is_none());
}
