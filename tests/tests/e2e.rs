//! End to end: HTTP requests to both functions served by `cargo lambda watch`, items read back
//! from the local DynamoDB through the real SDK client.

use std::collections::HashMap;

use serde_json::Value;
use tests::history::Source;
use tests::http::{activity_url, client, dev_activity_secret, dev_crm_secret, post, post_crm, signed_activity};
use tests::oracle::{self, Oracle};
use tests::signing::{now_unix, unique_nonce};
use tests::stack::{self, unique_mid};
use tests::tables;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures");
const ACTIVITY_ID: &str = "b80bb752931811eeaeb42ef5b77e53xx";

fn fixture(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/{path}")).unwrap()).unwrap()
}

fn crm_fixtures() -> Vec<(String, Value)> {
    let mut names: Vec<String> = std::fs::read_dir(format!("{FIXTURES}/crm"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut fixtures: Vec<(String, Value)> = names
        .into_iter()
        .map(|name| (name.clone(), fixture(&format!("crm/{name}"))))
        .collect();
    // Sent in time order, so that each answer can be checked against the newest event.
    fixtures.sort_by_key(|(_, payload)| match &payload["create_time"] {
        Value::String(text) => text.parse::<i64>().unwrap(),
        number => number.as_i64().unwrap(),
    });
    fixtures
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn every_crm_fixture_is_accepted_and_stored() {
    let http = client();
    let mid = unique_mid("e2e");
    let mut oracle = Oracle::new(&mid);
    let mut counts: HashMap<String, i64> = HashMap::new();
    for (name, mut payload) in crm_fixtures() {
        payload["mid"] = mid.clone().into();
        assert_eq!(
            oracle.deliver(Source::Crm, &payload.to_string()),
            oracle::Answer::Accepted,
            "{name}"
        );
        let entity_id = payload["extra_data"]["entity_id"].as_str().unwrap().to_owned();
        let answer = post_crm(&http, &payload.to_string(), dev_crm_secret()).await;
        assert_eq!(answer.status, 200, "{name}: {}", answer.body);
        assert_eq!(
            answer.json(),
            serde_json::json!({"status": "accepted", "mid": mid, "entity_id": entity_id}),
            "{name}"
        );
        let count = counts.entry(entity_id.clone()).or_default();
        *count += 1;
        let stored = stack::entity_item(&stack::crm_table(), &mid, &entity_id)
            .await
            .expect("the item exists");
        assert_eq!(stored["event_count"].as_n().unwrap(), &count.to_string(), "{name}");
        assert_eq!(
            stored["last_raw"].as_s().unwrap(),
            &payload.to_string(),
            "{name}: events arrive in time order"
        );
        let event_type = payload["event_type"].as_str().unwrap();
        assert_eq!(stored["last_event_type"].as_s().unwrap(), event_type, "{name}");
    }
    let lead = stack::entity_item(&stack::crm_table(), &mid, "NttdW4NoJfD2cX6f7rg52f")
        .await
        .unwrap();
    assert_eq!(lead["voided"].as_bool().unwrap(), &false, "voided, then restored");
    assert_eq!(lead["lead_pool"].as_s().unwrap(), "sales");
    assert_eq!(lead["team_members"].as_ss().unwrap().len(), 1);
    assert_eq!(lead["created_at"].as_s().unwrap(), "2023-02-27T15:02:25+08:00");
    // Every attribute of every item, and each item's record of applied events, as the oracle.
    let db = stack::dynamodb_client();
    let wrong = tables::mismatches(&oracle.items(), &tables::entity_items(&db, &mid).await);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(tables::record_keys(&db, &mid).await, oracle.record_keys());
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn a_second_delivery_is_a_duplicate() {
    let http = client();
    let mut payload = fixture("crm/lead_object_update.json");
    let mid = unique_mid("e2e-dup");
    payload["mid"] = mid.clone().into();
    let body = payload.to_string();
    assert_eq!(
        post_crm(&http, &body, dev_crm_secret()).await.json()["status"],
        "accepted"
    );
    let before = stack::entity_item(&stack::crm_table(), &mid, "NttdW4NoJfD2cX6f7rg52f")
        .await
        .unwrap();
    let again = post_crm(&http, &body, dev_crm_secret()).await;
    assert_eq!(
        (again.status, again.json()["status"].as_str()),
        (200, Some("duplicate"))
    );
    assert_eq!(
        stack::entity_item(&stack::crm_table(), &mid, "NttdW4NoJfD2cX6f7rg52f")
            .await
            .unwrap(),
        before
    );
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn a_wrong_signature_is_401_and_writes_nothing() {
    let http = client();
    let mut payload = fixture("crm/seed_124_object_create.json");
    let mid = unique_mid("e2e-forged");
    payload["mid"] = mid.clone().into();
    let answer = post_crm(&http, &payload.to_string(), "not-the-secret").await;
    assert_eq!(answer.refusal(), (401, "invalid_signature".into()));
    let unsigned = post(&http, &tests::http::crm_url(), &[], payload.to_string()).await;
    assert_eq!(unsigned.refusal(), (401, "missing_signature".into()));
    assert!(stack::entity_item(&stack::crm_table(), &mid, "NttdW4NoJfD2cX6f7rg52f")
        .await
        .is_none());
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn a_tenant_with_its_own_secret_refuses_the_default_one() {
    let own = std::env::var("CRM_WEBHOOK_SECRET_900").expect("make test configures tenant 900 with its own secret");
    let http = client();
    let mut payload = fixture("crm/lead_create_numeric_mid.json");
    payload["mid"] = 900.into();
    payload["extra_data"]["entity_id"] = unique_nonce().into();
    let body = payload.to_string();
    assert_eq!(
        post_crm(&http, &body, dev_crm_secret()).await.refusal(),
        (401, "invalid_signature".into())
    );
    let entity_id = payload["extra_data"]["entity_id"].as_str().unwrap();
    assert!(stack::entity_item(&stack::crm_table(), "900", entity_id)
        .await
        .is_none());
    let accepted = post_crm(&http, &body, own.split(',').next().unwrap()).await;
    assert_eq!(
        (accepted.status, accepted.json()["mid"].as_str()),
        (200, Some("900")),
        "{}",
        accepted.body
    );
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn activity_tenant_comes_from_the_path_and_the_answer_is_plain_success() {
    let http = client();
    let mid = unique_mid("e2e-act");
    let body = signed_activity(
        &fixture("activity/event_add.json"),
        &unique_nonce(),
        now_unix(),
        dev_activity_secret(),
    );
    let answer = post(&http, &activity_url(&mid), &[], body.clone()).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "success"));
    let stored = stack::entity_item(&stack::activity_table(), &mid, ACTIVITY_ID)
        .await
        .expect("stored under the path's tenant");
    assert_eq!(stored["title"].as_s().unwrap(), "新建活动回调");
    assert_eq!(stored["team_id"].as_s().unwrap(), "30fff19ebae611ecad5bee5022d7cxxx");
    assert_eq!(stored["privilege_type"].as_s().unwrap(), "private");
    assert_eq!(stored["started_at"].as_s().unwrap(), "2023-12-05T10:47:00+08:00");
    assert!(!stored.contains_key("roadmap_id") && !stored.contains_key("logo"));
    let again = post(&http, &activity_url(&mid), &[], body.clone()).await;
    assert_eq!(
        (again.status, again.body.as_str()),
        (200, "success"),
        "a duplicate delivery"
    );
    let mut replay: Value = serde_json::from_str(&body).unwrap();
    replay["attributes"]["title"] = "replayed".into();
    let refused = post(&http, &activity_url(&mid), &[], replay.to_string()).await;
    assert_eq!(refused.refusal(), (401, "replayed_nonce".into()));
    assert_eq!(
        stack::entity_item(&stack::activity_table(), &mid, ACTIVITY_ID)
            .await
            .unwrap(),
        stored
    );
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn delete_then_late_edit_is_still_deleted() {
    let http = client();
    let mid = unique_mid("e2e-del");
    let now = now_unix();
    let delete = signed_activity(
        &fixture("activity/event_delete.json"),
        &unique_nonce(),
        now,
        dev_activity_secret(),
    );
    let late_edit = signed_activity(
        &fixture("activity/event_edit.json"),
        &unique_nonce(),
        now - 60,
        dev_activity_secret(),
    );
    for body in [delete, late_edit] {
        let answer = post(&http, &activity_url(&mid), &[], body).await;
        assert_eq!((answer.status, answer.body.as_str()), (200, "success"));
    }
    let stored = stack::entity_item(&stack::activity_table(), &mid, ACTIVITY_ID)
        .await
        .unwrap();
    assert_eq!(stored["deleted"].as_bool().unwrap(), &true);
    assert_eq!(stored["last_action"].as_s().unwrap(), "event/delete");
    // The tombstone still says what was deleted: the content of the newest add or edit.
    assert_eq!(stored["title"].as_s().unwrap(), "新建活动回调（地点已变更）");
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn a_forged_activity_sign_is_401_and_writes_nothing() {
    let http = client();
    let mid = unique_mid("e2e-act-forged");
    let body = signed_activity(
        &fixture("activity/event_add.json"),
        &unique_nonce(),
        now_unix(),
        "wrong",
    );
    assert_eq!(
        post(&http, &activity_url(&mid), &[], body).await.refusal(),
        (401, "invalid_signature".into())
    );
    assert!(stack::entity_item(&stack::activity_table(), &mid, ACTIVITY_ID)
        .await
        .is_none());
}
