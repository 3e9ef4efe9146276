//! Handler tests on real API Gateway events from `fixtures/events/` (signed with the
//! development secret), against the in-memory store: what is particular to the CRM source. The
//! harness (`shared::pipeline::harness`) holds what every source shares.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use base64::Engine;
use serde_json::Value;
use shared::config::{CrmConfig, Env};
use shared::crm::verify::{sign, Algorithm, Encoding, SignatureScheme};
use shared::pipeline::harness::{self, body_of, call, event_json, Answer, TestPipeline};
use shared::quarantine::MemoryQuarantine;
use shared::secret::Secret;
use shared::source::Source;

use crate::Crm;

const MID: &str = "124";
const ENTITY: &str = "NttdW4NoJfD2cX6f7rg52f";
const SEED: &str = "crm_seed_124_object_create.json";

/// The quarantine's clock in these tests: fixed, so that its per-minute and per-hour windows
/// never turn during a test and the caps give exact counts (2023-11-14 22:13:20 UTC, well inside
/// a minute and an hour).
const QUARANTINE_NOW: i64 = 1_700_000_000;

/// A CRM pipeline configured by `vars`, whose quarantine keeps its records in memory, and that
/// memory.
fn app_with_quarantine(vars: &[(&str, &str)]) -> (TestPipeline<Crm>, Arc<MemoryQuarantine>) {
    let base = [
        ("CRM_TABLE_NAME", "crm_entities"),
        ("REFUSED_DELIVERIES_TABLE_NAME", "refused_deliveries"),
    ];
    let config = CrmConfig::from_env(&base.iter().chain(vars).copied().collect::<Env>()).unwrap();
    let secrets = config.intake.secrets.clone();
    harness::pipeline(
        Crm(config.intake),
        &secrets,
        &config.function.quarantine,
        QUARANTINE_NOW,
    )
}

fn app(vars: &[(&str, &str)]) -> TestPipeline<Crm> {
    app_with_quarantine(vars).0
}

fn dev_app() -> TestPipeline<Crm> {
    app(&[("CRM_WEBHOOK_SECRET", "dev-crm-secret")])
}

/// `event` with `body` in place of its own, signed with `secret`.
fn signed(event: &Value, body: &str, secret: &str) -> Value {
    let mut event = event.clone();
    event["body"] = body.into();
    event["headers"]["x-signature"] = sign(body.as_bytes(), &Secret::new(secret)).into();
    event
}

/// `answer` acknowledges `event` with `status`, and the store holds the event's entity with the
/// event's body as its newest, after `events` distinct events.
fn assert_stored(app: &TestPipeline<Crm>, event: &Value, answer: &Answer, status: &str, events: u64) {
    let payload = body_of(event);
    let entity_id = payload["extra_data"]["entity_id"].as_str().unwrap();
    let mid = payload["mid"].to_string().trim_matches('"').to_owned();
    assert_eq!(answer.status, 200, "{}", answer.body);
    let expected = serde_json::json!({"status": status, "mid": mid, "entity_id": entity_id});
    assert_eq!(answer.json(), expected);
    let state = app.store.memory.crm_state(&mid, entity_id).expect("stored");
    assert_eq!(
        state.last_raw.as_ref(),
        event["body"].as_str().unwrap(),
        "the newest body"
    );
    assert_eq!(state.event_count, events);
    let object_name = payload["extra_data"]["object_name"].as_str();
    assert_eq!(state.object_name.map(|held| held.value).as_deref(), object_name);
}

#[tokio::test]
async fn every_crm_fixture_is_accepted_and_stored() {
    let mut names: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/events"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("crm_"))
        .collect();
    names.sort();
    assert!(names.len() >= 18, "{names:?}");
    for name in &names {
        let app = dev_app();
        let event = event_json(name);
        assert_stored(&app, &event, &call(&app, &event).await, "accepted", 1);
        assert_eq!(app.store.outcomes(), ["accepted"], "{name}");
    }
}

#[tokio::test]
async fn a_second_delivery_is_a_duplicate_and_changes_nothing() {
    let app = dev_app();
    let event = event_json("crm_lead_object_update.json");
    assert_stored(&app, &event, &call(&app, &event).await, "accepted", 1);
    let before = app.store.memory.crm_state(MID, ENTITY).unwrap();
    assert_stored(&app, &event, &call(&app, &event).await, "duplicate", 1);
    assert_eq!(app.store.memory.crm_state(MID, ENTITY).unwrap(), before);
    assert_eq!(app.store.outcomes(), ["accepted", "duplicate"]);
}

#[tokio::test]
async fn refusals_have_their_documented_status_and_write_nothing() {
    let app = dev_app();
    let good = event_json(SEED);

    let mut wrong_signature = good.clone();
    wrong_signature["headers"]["x-signature"] = "0".repeat(40).into();
    let answer = call(&app, &wrong_signature).await;
    assert_eq!(answer.refusal(), (401, "invalid_signature".into()));

    let mut unsigned = good.clone();
    unsigned["headers"].as_object_mut().unwrap().remove("x-signature");
    assert_eq!(call(&app, &unsigned).await.refusal(), (401, "missing_signature".into()));

    let mut get = good.clone();
    get["requestContext"]["http"]["method"] = "GET".into();
    assert_eq!(call(&app, &get).await.refusal(), (405, "method_not_allowed".into()));

    let mut huge = good.clone();
    huge["body"] = format!("{{\"pad\":\"{}\"}}", "x".repeat(256 * 1024)).into();
    assert_eq!(call(&app, &huge).await.refusal(), (413, "payload_too_large".into()));

    let mut not_json = good.clone();
    not_json["body"] = "mid=124".into();
    assert_eq!(call(&app, &not_json).await.refusal(), (400, "invalid_json".into()));

    assert!(app.store.writes().is_empty());
}

#[tokio::test]
async fn mid_is_checked_before_the_signature_and_fields_after_it() {
    let app = dev_app();
    let mut event = event_json(SEED);

    event["body"] = r#"{"event_type":"object_create"}"#.into();
    let answer = call(&app, &event).await;
    assert_eq!(answer.refusal(), (400, "missing_field".into()));
    assert!(answer.json()["error"]["message"].as_str().unwrap().contains("mid"));

    let unsigned_bad_fields = r#"{"mid":"124","create_time":"soon"}"#;
    event["body"] = unsigned_bad_fields.into();
    assert_eq!(call(&app, &event).await.refusal(), (401, "invalid_signature".into()));

    let answer = call(&app, &signed(&event, unsigned_bad_fields, "dev-crm-secret")).await;
    assert_eq!(answer.refusal(), (400, "missing_field".into()));
    assert!(answer.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("event_type"));
}

#[tokio::test]
async fn a_tenant_without_a_secret_is_refused_even_when_others_have_one() {
    let app = app(&[("CRM_WEBHOOK_SECRET_941", "only-941")]);
    let answer = call(&app, &event_json(SEED)).await;
    assert_eq!(answer.refusal(), (401, "no_secret".into()));
}

#[tokio::test]
async fn a_tenant_variable_set_empty_blocks_the_tenant_despite_the_default() {
    let event = event_json(SEED);
    let blocked = app(&[("CRM_WEBHOOK_SECRET", "dev-crm-secret"), ("CRM_WEBHOOK_SECRET_124", "")]);
    assert_eq!(call(&blocked, &event).await.refusal(), (401, "no_secret".into()));
    assert!(blocked.store.writes().is_empty());
    let open = app(&[("CRM_WEBHOOK_SECRET", "dev-crm-secret"), ("CRM_WEBHOOK_SECRET_941", "")]);
    assert_stored(&open, &event, &call(&open, &event).await, "accepted", 1);
}

#[tokio::test]
async fn a_per_tenant_secret_overrides_the_default_and_rotation_keeps_old_senders_working() {
    let overridden = app(&[
        ("CRM_WEBHOOK_SECRET", "dev-crm-secret"),
        ("CRM_WEBHOOK_SECRET_124", "tenant-124"),
    ]);
    let event = event_json(SEED);
    assert_eq!(
        call(&overridden, &event).await.refusal(),
        (401, "invalid_signature".into())
    );
    let rotating = app(&[("CRM_WEBHOOK_SECRET_124", "new-secret, dev-crm-secret")]);
    assert_stored(&rotating, &event, &call(&rotating, &event).await, "accepted", 1);
}

#[tokio::test]
async fn a_base64_body_from_api_gateway_is_verified_on_its_decoded_bytes() {
    let app = dev_app();
    let plain = event_json("crm_seed_941_object_create.json");
    let mut event = plain.clone();
    let body = event["body"].as_str().unwrap().to_owned();
    event["body"] = base64::engine::general_purpose::STANDARD.encode(body.as_bytes()).into();
    event["isBase64Encoded"] = true.into();
    assert_stored(&app, &plain, &call(&app, &event).await, "accepted", 1);
}

#[tokio::test]
async fn storage_outage_is_503_storage_unavailable() {
    let app = dev_app();
    app.store.memory.unavailable.store(true, Ordering::SeqCst);
    let answer = call(&app, &event_json(SEED)).await;
    assert_eq!(answer.refusal(), (503, "storage_unavailable".into()));
    assert_eq!(app.store.outcomes(), ["storage_unavailable"]);
}

#[tokio::test]
async fn a_custom_signature_header_is_honoured() {
    let app = app(&[
        ("CRM_WEBHOOK_SECRET", "dev-crm-secret"),
        ("CRM_SIGNATURE_HEADER", "X-Jing-Signature"),
    ]);
    let mut event = event_json(SEED);
    let signature = event["headers"].as_object_mut().unwrap().remove("x-signature").unwrap();
    assert_eq!(call(&app, &event).await.refusal(), (401, "missing_signature".into()));
    event["headers"]["x-jing-signature"] = signature;
    assert_stored(&app, &event, &call(&app, &event).await, "accepted", 1);
}

#[tokio::test]
async fn a_configured_sha256_base64_scheme_is_honoured_and_the_default_refused() {
    let app = app(&[
        ("CRM_WEBHOOK_SECRET", "dev-crm-secret"),
        ("CRM_SIGNATURE_ALGORITHM", "hmac-sha256"),
        ("CRM_SIGNATURE_ENCODING", "base64"),
    ]);
    let mut event = event_json(SEED);
    assert_eq!(call(&app, &event).await.refusal(), (401, "invalid_signature".into()));
    let scheme = SignatureScheme {
        algorithm: Algorithm::HmacSha256,
        encoding: Encoding::Base64,
    };
    let body = event["body"].as_str().unwrap().to_owned();
    event["headers"]["x-signature"] = scheme.sign(body.as_bytes(), &Secret::new("dev-crm-secret")).into();
    assert_stored(&app, &event, &call(&app, &event).await, "accepted", 1);
}

#[tokio::test]
async fn a_refused_authentic_looking_delivery_is_quarantined_and_never_applied() {
    let (app, kept) = app_with_quarantine(&[("CRM_WEBHOOK_SECRET", "a-secret-the-sender-does-not-use")]);
    let mut event = event_json(SEED);
    event["headers"]["authorization"] = "Bearer not-to-be-kept".into();
    let answer = call(&app, &event).await;
    assert_eq!(
        answer.refusal(),
        (401, "invalid_signature".into()),
        "the answer is unchanged"
    );
    assert!(app.store.writes().is_empty());
    let records = kept.records();
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.source, Source::Crm);
    assert_eq!((record.status, record.code.as_str()), (401, "invalid_signature"));
    assert_eq!(record.tenant.as_deref(), Some(MID));
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
    let good = event_json(SEED);
    assert_stored(&app, &good, &call(&app, &good).await, "accepted", 1);
    let mut probe = good.clone();
    probe["body"] = "{}".into();
    assert_eq!(call(&app, &probe).await.refusal(), (400, "missing_field".into()));
    let mut not_json = good.clone();
    not_json["body"] = "mid=124".into();
    assert_eq!(call(&app, &not_json).await.refusal(), (400, "invalid_json".into()));
    let mut get = good.clone();
    get["requestContext"]["http"]["method"] = "GET".into();
    assert_eq!(call(&app, &get).await.status, 405);
    assert!(kept.records().is_empty(), "{:?}", kept.records());
    let body = r#"{"mid":"124","event_type":"object_update","create_time":"soon","extra_data":{"entity_id":"E"}}"#;
    let bad_field = signed(&good, body, "dev-crm-secret");
    assert_eq!(call(&app, &bad_field).await.refusal(), (400, "invalid_field".into()));
    assert_eq!(kept.records().len(), 1);
    assert_eq!(kept.records()[0].code, "invalid_field");
}

#[tokio::test]
async fn a_failing_quarantine_changes_no_answer() {
    let (app, kept) = app_with_quarantine(&[("CRM_WEBHOOK_SECRET", "other")]);
    kept.unavailable.store(true, Ordering::SeqCst);
    let answer = call(&app, &event_json(SEED)).await;
    assert_eq!(answer.refusal(), (401, "invalid_signature".into()));
    assert!(kept.records().is_empty());
}

/// Posts the seed event 20 times to `app`, whose secret is not the one it is signed with: each
/// is refused the same way, whatever the quarantine does.
async fn twenty_forged(app: &TestPipeline<Crm>) {
    let event = event_json(SEED);
    for _ in 0..20 {
        assert_eq!(call(app, &event).await.refusal(), (401, "invalid_signature".into()));
    }
}

#[tokio::test]
async fn the_quarantine_caps_hold_per_instance() {
    let (app, kept) = app_with_quarantine(&[("CRM_WEBHOOK_SECRET", "other"), ("QUARANTINE_MAX_PER_MINUTE", "3")]);
    twenty_forged(&app).await;
    assert_eq!(kept.records().len(), 3, "the cap of one minute: 3 of 20 kept");

    let (app, kept) = app_with_quarantine(&[("CRM_WEBHOOK_SECRET", "other"), ("QUARANTINE_MAX_BODY_BYTES", "100")]);
    assert_eq!(
        call(&app, &event_json(SEED)).await.refusal(),
        (401, "invalid_signature".into())
    );
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
    assert_eq!(
        call(&app, &event_json(SEED)).await.refusal(),
        (401, "invalid_signature".into())
    );
    assert!(kept.records().is_empty(), "no slot, no record");
}

#[tokio::test]
async fn drifted_fields_are_accepted() {
    let app = dev_app();
    let event = event_json(SEED);
    let mut body = body_of(&event);
    body["extra_data"]["notes"] = serde_json::json!({"text": "an object"});
    body["extra_data"]["mapping_data_text"]["name"] = serde_json::json!({"zh": "名"});
    let event = signed(&event, &body.to_string(), "dev-crm-secret");
    // The drifted values stay in last_raw.
    assert_stored(&app, &event, &call(&app, &event).await, "accepted", 1);
}

#[tokio::test(start_paused = true)]
async fn the_secrets_are_waited_for_within_the_request_deadline() {
    let app = harness::secrets_are_waited_for_within_the_deadline(dev_app, &event_json(SEED)).await;
    assert_eq!(app.store.memory.crm_state(MID, ENTITY).unwrap().event_count, 1);
}
