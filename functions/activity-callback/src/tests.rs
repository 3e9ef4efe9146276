//! Handler tests on real API Gateway events from `fixtures/events/` (signed with the
//! development secret), against the in-memory store and a fixed clock: what is particular to the
//! activity source. The harness (`shared::pipeline::harness`) holds what every source shares.

use std::sync::Arc;

use serde_json::Value;
use shared::activity::verify::sign;
use shared::clock::FixedClock;
use shared::config::{ActivityConfig, Env};
use shared::pipeline::harness::{self, body_of, call, event_json, Answer, TestPipeline};
use shared::quarantine::MemoryQuarantine;
use shared::secret::Secret;
use shared::source::Source;

use crate::Activity;

const ENTITY: &str = "b80bb752931811eeaeb42ef5b77e53xx";
const ADD: &str = "activity_event_add.json";

/// An activity pipeline configured by `vars` on a clock stopped at `now`, whose quarantine keeps
/// its records in memory, and that memory.
fn app_with_quarantine(vars: &[(&str, &str)], now: i64) -> (TestPipeline<Activity>, Arc<MemoryQuarantine>) {
    let base = [
        ("REFUSED_DELIVERIES_TABLE_NAME", "refused_deliveries"),
        ("ACTIVITY_TABLE_NAME", "activities"),
        ("ACTIVITY_NONCES_TABLE_NAME", "activity_nonces"),
        ("ACTIVITY_CALLBACK_SECRET", "dev-activity-secret"),
        // The fixtures' timestamps are from 2023: freshness waived as on the local stack.
        ("LOCAL_STACK_SKIP_FRESHNESS", "1"),
        ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000"),
    ];
    let mut config = ActivityConfig::from_env(&base.iter().chain(vars).copied().collect::<Env>()).unwrap();
    config.intake.clock = Arc::new(FixedClock(now));
    let secrets = config.intake.secrets.clone();
    let source = Activity {
        intake: config.intake,
        default_mid: config.default_mid,
    };
    harness::pipeline(source, &secrets, &config.function.quarantine, now)
}

fn app_with(vars: &[(&str, &str)], now: i64) -> TestPipeline<Activity> {
    app_with_quarantine(vars, now).0
}

fn dev_app() -> TestPipeline<Activity> {
    app_with(&[], 0)
}

/// `answer` is the plain-text success, and the store answered `outcomes` so far.
fn assert_success(app: &TestPipeline<Activity>, answer: &Answer, outcomes: &[&str]) {
    let plain = (answer.status, answer.body.as_str(), answer.content_type.as_deref());
    assert_eq!(plain, (200, "success", Some("text/plain")));
    assert_eq!(app.store.outcomes(), outcomes);
}

/// The stored activity `mid`/[`ENTITY`] holds `event`'s body as its newest, with its title.
fn assert_stored<K>(app: &TestPipeline<Activity, K>, mid: &str, event: &Value) {
    let state = app.store.memory.activity_state(mid, ENTITY).expect("stored");
    assert_eq!(
        state.last_raw.as_ref(),
        event["body"].as_str().unwrap(),
        "the newest body"
    );
    let title = body_of(event)["attributes"]["title"].as_str().map(str::to_owned);
    assert_eq!(state.content.unwrap().value.title, title);
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

/// `event`'s body with `edit` applied, signed again with `event`'s own nonce and timestamp.
fn same_nonce(event: &Value, edit: impl FnOnce(&mut Value)) -> Value {
    let mut body = body_of(event);
    let (nonce, timestamp) = (
        body["nonce"].as_str().unwrap().to_owned(),
        body["timestamp"].as_i64().unwrap(),
    );
    edit(&mut body);
    resigned(event, body, &nonce, timestamp, "dev-activity-secret")
}

#[tokio::test]
async fn add_edit_delete_and_unmodelled_actions_answer_plain_success_and_are_stored() {
    let app = dev_app();
    let add = event_json(ADD);
    assert_success(&app, &call(&app, &add).await, &["accepted"]);
    assert_stored(&app, "124", &add);
    let edit = event_json("activity_event_edit.json");
    assert_success(&app, &call(&app, &edit).await, &["accepted"; 2]);
    assert_stored(&app, "124", &edit);
    let delete = event_json("activity_event_delete.json");
    assert_success(&app, &call(&app, &delete).await, &["accepted"; 3]);
    let state = app.store.memory.activity_state("124", ENTITY).unwrap();
    assert!(state.deleted());
    assert_eq!(state.last_raw.as_ref(), delete["body"].as_str().unwrap());
    assert_eq!(
        state.content.unwrap().value.title,
        body_of(&edit)["attributes"]["title"].as_str().map(str::to_owned),
        "a delete keeps what was deleted"
    );
    let doc = event_json("activity_doc_add.json");
    assert_success(&app, &call(&app, &doc).await, &["accepted"; 4]);
    assert_eq!(app.store.memory.nonce_count(), 4);
    assert_eq!(
        app.store.memory.unmodelled(),
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
    let delete = event_json("activity_event_delete.json");
    assert_success(&app, &call(&app, &delete).await, &["accepted"]);
    let edit = event_json("activity_event_edit.json");
    assert_success(&app, &call(&app, &edit).await, &["accepted"; 2]);
    let state = app.store.memory.activity_state("124", ENTITY).unwrap();
    assert!(state.deleted());
    assert_eq!(
        state.last_raw.as_ref(),
        delete["body"].as_str().unwrap(),
        "the delete is the newest"
    );
}

#[tokio::test]
async fn same_nonce_same_body_is_a_duplicate_and_another_body_a_replay() {
    let app = dev_app();
    let event = event_json(ADD);
    assert_success(&app, &call(&app, &event).await, &["accepted"]);
    assert_success(&app, &call(&app, &event).await, &["accepted", "duplicate"]);
    let replay = same_nonce(&event, |body| body["attributes"]["title"] = "changed".into());
    assert_eq!(call(&app, &replay).await.refusal(), (401, "replayed_nonce".into()));
    assert_eq!(app.store.outcomes(), ["accepted", "duplicate", "replayed_nonce"]);
    assert_stored(&app, "124", &event);
}

/// `event` without path parameters, at `path` with `query`.
fn at(event: &Value, path: &str, query: Option<&str>) -> Value {
    let mut event = event.clone();
    event.as_object_mut().unwrap().remove("pathParameters");
    event["rawPath"] = path.into();
    event["requestContext"]["http"]["path"] = path.into();
    event["rawQueryString"] = query.map_or(String::new(), |mid| format!("mid={mid}")).into();
    match query {
        Some(mid) => event["queryStringParameters"] = serde_json::json!({ "mid": mid }),
        None => drop(event.as_object_mut().unwrap().remove("queryStringParameters")),
    }
    event
}

#[tokio::test]
async fn tenant_comes_from_path_parameter_path_query_or_default() {
    let event = event_json(ADD);
    for (request, mid) in [
        (at(&event, "/activity/777", None), "777"),
        (at(&event, "/callback", Some("555")), "555"),
    ] {
        let app = dev_app();
        assert_success(&app, &call(&app, &request).await, &["accepted"]);
        assert_stored(&app, mid, &event);
    }
    let bare = at(&event, "/callback", None);
    let app = dev_app();
    assert_eq!(call(&app, &bare).await.refusal(), (400, "missing_mid".into()));
    assert!(app.store.writes().is_empty());
    let with_default = app_with(&[("ACTIVITY_DEFAULT_MID", "999")], 0);
    assert_success(&with_default, &call(&with_default, &bare).await, &["accepted"]);
    assert_stored(&with_default, "999", &event);
}

#[tokio::test]
async fn freshness_is_300_s_back_and_30_s_ahead() {
    let event = event_json(ADD);
    let timestamp = body_of(&event)["timestamp"].as_i64().unwrap();
    let strict = |now| app_with(&[("LOCAL_STACK_SKIP_FRESHNESS", "0")], now);
    for now in [timestamp + 300, timestamp - 30] {
        let app = strict(now);
        assert_success(&app, &call(&app, &event).await, &["accepted"]);
        assert_stored(&app, "124", &event);
    }
    for now in [timestamp + 301, timestamp - 31, timestamp - 120] {
        let app = strict(now);
        let answer = call(&app, &event).await;
        assert_eq!(
            answer.refusal(),
            (401, "stale_timestamp".into()),
            "{} s ahead",
            timestamp - now
        );
        assert!(app.store.writes().is_empty());
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
    let event = event_json(ADD);
    assert_success(&app, &call(&app, &event).await, &["accepted"]);
    assert_stored(&app, "124", &event);
    // Tenant 941 shares the default secret: the same bytes to its path are a replay, not kept
    // (the original was applied), and nothing is written for 941.
    let replayed = call(&app, &to_tenant(&event, "941")).await;
    assert_eq!(replayed.refusal(), (401, "replayed_nonce".into()));
    assert!(replayed.body.contains("another tenant"), "{}", replayed.body);
    assert!(app.store.memory.activity_state("941", ENTITY).is_none());
    assert!(kept.records().is_empty());
    // Tenant 777 has a secret of its own, which does not verify the default's sign.
    let answer = call(&app, &to_tenant(&event, "777")).await;
    assert_eq!(answer.refusal(), (401, "invalid_signature".into()));
    // At its own tenant it is still a duplicate; one nonce record in all.
    let answer = call(&app, &event).await;
    assert_success(&app, &answer, &["accepted", "replayed_nonce", "duplicate"]);
    assert_eq!(app.store.memory.nonce_count(), 1);
}

#[tokio::test]
async fn authenticity_failures_are_401_and_write_nothing() {
    let app = dev_app();
    let event = event_json(ADD);
    let body = body_of(&event);
    let forged = resigned(&event, body.clone(), "n-1", 1_701_744_489, "wrong-secret");
    assert_eq!(call(&app, &forged).await.refusal(), (401, "invalid_signature".into()));
    let mut unsigned = body.clone();
    unsigned.as_object_mut().unwrap().remove("sign");
    let mut unsigned_event = event.clone();
    unsigned_event["body"] = unsigned.to_string().into();
    assert_eq!(
        call(&app, &unsigned_event).await.refusal(),
        (401, "missing_signature".into())
    );
    let per_tenant_only = app_with(
        &[("ACTIVITY_CALLBACK_SECRET", ""), ("ACTIVITY_CALLBACK_SECRET_941", "x")],
        0,
    );
    assert_eq!(
        call(&per_tenant_only, &event).await.refusal(),
        (401, "no_secret".into())
    );
    assert!(app.store.writes().is_empty() && per_tenant_only.store.writes().is_empty());
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
    assert_eq!(answer.refusal(), (400, "missing_field".into()));
    assert!(answer.body.contains("attributes.event_id"));
    assert!(app.store.writes().is_empty());
}

#[tokio::test]
async fn refusals_are_quarantined_with_their_tenant_stale_and_conflicting_ones_too() {
    let event = event_json(ADD);
    let body = body_of(&event);
    let (app, kept) = app_with_quarantine(&[], 0);
    let forged = resigned(&event, body.clone(), "n-9", 1_701_744_489, "wrong-secret");
    assert_eq!(call(&app, &forged).await.refusal(), (401, "invalid_signature".into()));
    let records = kept.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].source, Source::Activity);
    assert_eq!(records[0].tenant.as_deref(), Some("124"), "from the path");
    assert_eq!(records[0].body, forged["body"].as_str().unwrap());
    assert!(app.store.writes().is_empty());

    // A nonce seen before with another body: the genuine delivery may be this one. Kept.
    assert_success(&app, &call(&app, &event).await, &["accepted"]);
    let replay = same_nonce(&event, |body| body["attributes"]["title"] = "changed".into());
    assert_eq!(call(&app, &replay).await.refusal(), (401, "replayed_nonce".into()));
    let records = kept.records();
    assert_eq!(records.len(), 2);
    assert_eq!((records[1].code.as_str(), records[1].status), ("replayed_nonce", 401));
    assert_eq!(records[1].body, replay["body"].as_str().unwrap());
    assert_eq!(records[1].tenant.as_deref(), Some("124"));
    assert_stored(&app, "124", &event);
    // Correctly signed but stale: a vendor clock or a long retry. Kept for an operator.
    let timestamp = body["timestamp"].as_i64().unwrap();
    let (strict, strict_kept) = app_with_quarantine(&[("LOCAL_STACK_SKIP_FRESHNESS", "0")], timestamp + 301);
    assert_eq!(call(&strict, &event).await.refusal(), (401, "stale_timestamp".into()));
    let stale = strict_kept.records();
    assert_eq!(stale.len(), 1);
    assert_eq!(
        (stale[0].code.as_str(), stale[0].body.as_str()),
        ("stale_timestamp", event["body"].as_str().unwrap())
    );
    assert!(strict.store.writes().is_empty());
}

#[tokio::test]
async fn drifted_attributes_are_accepted() {
    let app = dev_app();
    let event = event_json(ADD);
    let mut body = body_of(&event);
    body["attributes"]["privilege_type"] = 7.into();
    body["attributes"]["started_at"] = "tomorrow".into();
    let drifted = resigned(&event, body, "n-drift", 1_701_744_489, "dev-activity-secret");
    assert_success(&app, &call(&app, &drifted).await, &["accepted"]);
    assert_stored(&app, "124", &drifted);
    let state = app.store.memory.activity_state("124", ENTITY).unwrap();
    let content = state.content.unwrap().value;
    assert_eq!((content.privilege_type, content.started_at), (None, None));
}

#[tokio::test(start_paused = true)]
async fn the_secrets_are_waited_for_within_the_request_deadline() {
    let app = harness::secrets_are_waited_for_within_the_deadline(dev_app, &event_json(ADD)).await;
    assert_stored(&app, "124", &event_json(ADD));
}
