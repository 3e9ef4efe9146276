//! Handler tests on real API Gateway events from `fixtures/events/` (signed with the
//! development secret), against the in-memory store and a fixed clock.

use std::path::PathBuf;
use std::sync::Arc;

use lambda_http::{Body, Request};
use serde_json::Value;
use shared::activity::verify::sign;
use shared::clock::FixedClock;
use shared::config::{ActivityConfig, Env};
use shared::http::Handler;
use shared::quarantine::{MemoryQuarantine, QuarantineStore};
use shared::secret::Secret;
use shared::source::Source;
use shared::store::MemoryStore;

use shared::secret::{FixedSecrets, SecretSource, TenantSecrets};
use shared::secrets_manager::TenantSecretSource;
use shared::SecretsError;

use crate::handler::App;

const ENTITY: &str = "b80bb752931811eeaeb42ef5b77e53xx";

fn event_json(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/events")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn app_with(vars: &[(&str, &str)], now: i64) -> App<MemoryStore> {
    app_with_quarantine(vars, now).0
}

/// An app whose quarantine keeps its records in memory, and that memory.
fn app_with_quarantine(vars: &[(&str, &str)], now: i64) -> (App<MemoryStore>, Arc<MemoryQuarantine>) {
    let mut all = vec![
        ("REFUSED_DELIVERIES_TABLE_NAME", "refused_deliveries"),
        ("ACTIVITY_TABLE_NAME", "activities"),
        ("ACTIVITY_NONCES_TABLE_NAME", "activity_nonces"),
        ("ACTIVITY_CALLBACK_SECRET", "dev-activity-secret"),
        // The fixtures' timestamps are from 2023: freshness waived as on the local stack.
        ("LOCAL_STACK_SKIP_FRESHNESS", "1"),
        ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000"),
    ];
    all.extend_from_slice(vars);
    let mut config = ActivityConfig::from_env(&all.into_iter().collect::<Env>()).unwrap();
    config.intake.clock = Arc::new(FixedClock(now));
    let kept = Arc::new(MemoryQuarantine::default());
    let quarantine = App::<MemoryStore>::quarantine(
        &config,
        Some(Arc::clone(&kept) as Arc<dyn QuarantineStore>),
        Arc::new(FixedClock(now)),
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
    app_with(&[], 0)
}

async fn call(app: &App<MemoryStore>, event: &Value) -> (u16, String, Option<String>) {
    let request: Request = lambda_http::request::from_str(&event.to_string()).expect("a valid API Gateway event");
    let response = app.handle(request).await;
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = match response.body() {
        Body::Text(text) => text.clone(),
        Body::Binary(bytes) => String::from_utf8(bytes.clone()).unwrap(),
        _ => String::new(),
    };
    (response.status().as_u16(), body, content_type)
}

fn code(answer: &(u16, String, Option<String>)) -> (u16, String) {
    let body: Value = serde_json::from_str(&answer.1).unwrap_or_default();
    (answer.0, body["error"]["code"].as_str().unwrap_or("<none>").to_owned())
}

/// `event` with its body replaced by `body` re-signed with a fresh nonce and `timestamp`.
fn resigned(event: &Value, body: Value, nonce: &str, timestamp: i64, secret: &str) -> Value {
    let mut body = body;
    body["nonce"] = nonce.into();
    body["timestamp"] = timestamp.into();
    body["sign"] = sign(nonce, &Secret::new(secret), timestamp).into();
    let mut event = event.clone();
    event["body"] = body.to_string().into();
    event
}

fn body_of(event: &Value) -> Value {
    serde_json::from_str(event["body"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn add_edit_delete_and_unmodelled_actions_answer_plain_success() {
    let app = dev_app();
    for name in [
        "activity_event_add.json",
        "activity_event_edit.json",
        "activity_event_delete.json",
        "activity_doc_add.json",
    ] {
        let answer = call(&app, &event_json(name)).await;
        assert_eq!(
            (answer.0, answer.1.as_str(), answer.2.as_deref()),
            (200, "success", Some("text/plain")),
            "{name}"
        );
    }
    let state = app.store.activity_state("124", ENTITY).unwrap();
    assert!(state.deleted());
    assert_eq!(
        state.content.unwrap().value.title.as_deref().map(|t| !t.is_empty()),
        Some(true)
    );
    assert_eq!(app.store.nonce_count(), 4);
    let doc = event_json("activity_doc_add.json");
    assert_eq!(
        app.store.unmodelled(),
        [(
            "124".to_owned(),
            "doc/add".to_owned(),
            doc["body"].as_str().unwrap().to_owned()
        )],
        "the unmodelled action's body is kept, the others are merged"
    );
}

#[tokio::test]
async fn delete_then_late_edit_stays_deleted() {
    let app = dev_app();
    assert_eq!(call(&app, &event_json("activity_event_delete.json")).await.0, 200);
    assert_eq!(call(&app, &event_json("activity_event_edit.json")).await.0, 200);
    assert!(app.store.activity_state("124", ENTITY).unwrap().deleted());
}

#[tokio::test]
async fn same_nonce_same_body_is_a_duplicate_and_another_body_a_replay() {
    let app = dev_app();
    let event = event_json("activity_event_add.json");
    assert_eq!(call(&app, &event).await.1, "success");
    assert_eq!(call(&app, &event).await.1, "success");
    let mut body = body_of(&event);
    body["attributes"]["title"] = "changed".into();
    let replay = resigned(
        &event,
        body.clone(),
        body["nonce"].as_str().unwrap(),
        body["timestamp"].as_i64().unwrap(),
        "dev-activity-secret",
    );
    assert_eq!(code(&call(&app, &replay).await), (401, "replayed_nonce".into()));
    assert_ne!(
        app.store
            .activity_state("124", ENTITY)
            .unwrap()
            .content
            .unwrap()
            .value
            .title
            .as_deref(),
        Some("changed")
    );
}

#[tokio::test]
async fn tenant_comes_from_path_parameter_path_query_or_default() {
    let event = event_json("activity_event_add.json");
    let app = dev_app();
    let mut no_parameters = event.clone();
    no_parameters.as_object_mut().unwrap().remove("pathParameters");
    no_parameters["rawPath"] = "/activity/777".into();
    no_parameters["requestContext"]["http"]["path"] = "/activity/777".into();
    assert_eq!(call(&app, &no_parameters).await.0, 200);
    assert!(app.store.activity_state("777", ENTITY).is_some());

    let app = dev_app();
    let mut query = no_parameters.clone();
    query["rawPath"] = "/callback".into();
    query["requestContext"]["http"]["path"] = "/callback".into();
    query["rawQueryString"] = "mid=555".into();
    query["queryStringParameters"] = serde_json::json!({"mid": "555"});
    assert_eq!(call(&app, &query).await.0, 200);
    assert!(app.store.activity_state("555", ENTITY).is_some());

    let mut bare = query.clone();
    bare["rawQueryString"] = "".into();
    bare.as_object_mut().unwrap().remove("queryStringParameters");
    assert_eq!(code(&call(&dev_app(), &bare).await), (400, "missing_mid".into()));
    let with_default = app_with(&[("ACTIVITY_DEFAULT_MID", "999")], 0);
    assert_eq!(call(&with_default, &bare).await.0, 200);
    assert!(with_default.store.activity_state("999", ENTITY).is_some());
}

#[tokio::test]
async fn freshness_is_300_s_back_and_30_s_ahead() {
    let event = event_json("activity_event_add.json");
    let timestamp = body_of(&event)["timestamp"].as_i64().unwrap();
    let strict = |now| app_with(&[("LOCAL_STACK_SKIP_FRESHNESS", "0")], now);
    assert_eq!(call(&strict(timestamp + 300), &event).await.0, 200);
    assert_eq!(call(&strict(timestamp - 30), &event).await.0, 200);
    for now in [timestamp + 301, timestamp - 31, timestamp - 120] {
        assert_eq!(
            code(&call(&strict(now), &event).await),
            (401, "stale_timestamp".into()),
            "{} s ahead",
            timestamp - now
        );
    }
}

/// `event` sent to tenant `mid`'s path, body unchanged.
fn to_tenant(event: &Value, mid: &str) -> Value {
    let mut event = event.clone();
    event["pathParameters"]["mid"] = mid.into();
    event["rawPath"] = format!("/activity/{mid}").into();
    event["requestContext"]["http"]["path"] = format!("/activity/{mid}").into();
    event
}

#[tokio::test]
async fn a_callback_is_accepted_at_one_tenant_of_its_secret_only() {
    let (app, kept) = app_with_quarantine(&[("ACTIVITY_CALLBACK_SECRET_777", "own-secret")], 0);
    let event = event_json("activity_event_add.json");
    assert_eq!(call(&app, &event).await.0, 200);
    // Tenant 941 shares the default secret: the same bytes to its path are a replay, not kept
    // (the original was applied), and nothing is written for 941.
    let replayed = call(&app, &to_tenant(&event, "941")).await;
    assert_eq!(code(&replayed), (401, "replayed_nonce".into()));
    assert!(replayed.1.contains("another tenant"), "{}", replayed.1);
    assert!(app.store.activity_state("941", ENTITY).is_none());
    assert!(kept.records().is_empty());
    // Tenant 777 has a secret of its own, which does not verify the default's sign.
    assert_eq!(
        code(&call(&app, &to_tenant(&event, "777")).await),
        (401, "invalid_signature".into())
    );
    // At its own tenant it is still a duplicate; one nonce record in all.
    assert_eq!(call(&app, &event).await.1, "success");
    assert_eq!(app.store.nonce_count(), 1);
}

#[tokio::test]
async fn authenticity_failures_are_401_and_write_nothing() {
    let app = dev_app();
    let event = event_json("activity_event_add.json");
    let body = body_of(&event);
    let forged = resigned(&event, body.clone(), "n-1", 1_701_744_489, "wrong-secret");
    assert_eq!(code(&call(&app, &forged).await), (401, "invalid_signature".into()));
    let mut unsigned = body.clone();
    unsigned.as_object_mut().unwrap().remove("sign");
    let mut unsigned_event = event.clone();
    unsigned_event["body"] = unsigned.to_string().into();
    assert_eq!(
        code(&call(&app, &unsigned_event).await),
        (401, "missing_signature".into())
    );
    let per_tenant_only = app_with(
        &[("ACTIVITY_CALLBACK_SECRET", ""), ("ACTIVITY_CALLBACK_SECRET_941", "x")],
        0,
    );
    assert_eq!(code(&call(&per_tenant_only, &event).await), (401, "no_secret".into()));
    assert!(app.store.activity_state("124", ENTITY).is_none());
    assert_eq!(app.store.nonce_count(), 0);
}

#[tokio::test]
async fn fields_are_checked_after_authenticity() {
    let app = dev_app();
    let event = event_json("activity_event_edit.json");
    let mut body = body_of(&event);
    body["attributes"].as_object_mut().unwrap().remove("event_id");
    let answer = call(
        &app,
        &resigned(&event, body, "n-2", 1_701_762_177, "dev-activity-secret"),
    )
    .await;
    assert_eq!(code(&answer), (400, "missing_field".into()));
    assert!(answer.1.contains("attributes.event_id"));
    assert_eq!(app.store.nonce_count(), 0);
}

#[tokio::test]
async fn refusals_are_quarantined_with_their_tenant_stale_and_conflicting_ones_too() {
    let event = event_json("activity_event_add.json");
    let body = body_of(&event);
    let (app, kept) = app_with_quarantine(&[], 0);
    let forged = resigned(&event, body.clone(), "n-9", 1_701_744_489, "wrong-secret");
    assert_eq!(code(&call(&app, &forged).await), (401, "invalid_signature".into()));
    let records = kept.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].source, Source::Activity);
    assert_eq!(records[0].tenant.as_deref(), Some("124"), "from the path");
    assert_eq!(records[0].body, forged["body"].as_str().unwrap());
    assert!(app.store.activity_state("124", ENTITY).is_none());

    // A nonce seen before with another body: the genuine delivery may be this one. Kept.
    assert_eq!(call(&app, &event).await.0, 200);
    let mut changed = body.clone();
    changed["attributes"]["title"] = "changed".into();
    let replay = resigned(
        &event,
        changed,
        body["nonce"].as_str().unwrap(),
        body["timestamp"].as_i64().unwrap(),
        "dev-activity-secret",
    );
    assert_eq!(code(&call(&app, &replay).await), (401, "replayed_nonce".into()));
    let records = kept.records();
    assert_eq!(records.len(), 2);
    assert_eq!((records[1].code.as_str(), records[1].status), ("replayed_nonce", 401));
    assert_eq!(records[1].body, replay["body"].as_str().unwrap());
    assert_eq!(records[1].tenant.as_deref(), Some("124"));
    // Correctly signed but stale: a vendor clock or a long retry. Kept for an operator.
    let timestamp = body["timestamp"].as_i64().unwrap();
    let (strict, strict_kept) = app_with_quarantine(&[("LOCAL_STACK_SKIP_FRESHNESS", "0")], timestamp + 301);
    assert_eq!(code(&call(&strict, &event).await), (401, "stale_timestamp".into()));
    let stale = strict_kept.records();
    assert_eq!(stale.len(), 1);
    assert_eq!(
        (stale[0].code.as_str(), stale[0].body.as_str()),
        ("stale_timestamp", event["body"].as_str().unwrap())
    );
    assert!(strict.store.activity_state("124", ENTITY).is_none());
}

#[tokio::test]
async fn drifted_attributes_are_accepted() {
    let app = dev_app();
    let event = event_json("activity_event_add.json");
    let mut body = body_of(&event);
    body["attributes"]["privilege_type"] = 7.into();
    body["attributes"]["started_at"] = "tomorrow".into();
    let answer = call(
        &app,
        &resigned(&event, body, "n-drift", 1_701_744_489, "dev-activity-secret"),
    )
    .await;
    assert_eq!(answer.1, "success");
    let state = app.store.activity_state("124", ENTITY).unwrap();
    let content = state.content.unwrap().value;
    assert_eq!((content.privilege_type, content.started_at), (None, None));
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
    let event = event_json("activity_event_add.json");
    let request: Request = lambda_http::request::from_str(&event.to_string()).unwrap();
    let response = app.handle(request).await;
    assert_eq!(response.status().as_u16(), 503);
    let body: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
    assert_eq!(body["error"]["code"], "secrets_unavailable");
    assert_eq!(app.store.nonce_count(), 0);
}
