//! The DynamoDB adapter against a real DynamoDB-compatible server (moto, started by
//! `make test`) through the real aws-sdk-dynamodb client. Stored items are compared, `version`
//! and `event_count` included, with the independent oracle (`tests::oracle`); the calls each
//! delivery costs are counted through the store's own `store_calls` metric.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
use shared::activity::verify::ReplayScope;
use shared::activity::ActivityEvent;
use shared::clock::FixedClock;
use shared::crm::{CrmEvent, CrmState};
use shared::dynamo::{read_entity, DynamoActivityStore, DynamoCrmStore, FORMAT, MERGE};
use shared::dynamo::{UnmodelledTable, CLAIM_SORT_KEY};
use shared::error::NonceReuse;
use shared::merge::Delivery;
use shared::secret::Secret;
use shared::store::{ActivityStore, CrmStore, NonceOutcome};
use shared::StoreError;
use tests::history::{parse_activity, parse_crm, Source};
use tests::oracle::{Answer, Oracle};
use tests::stack::{self, unique_mid};
use tests::tables::visible;

const NOW: i64 = 1_800_000_000;
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures");

fn crm_store() -> DynamoCrmStore {
    DynamoCrmStore::new(stack::dynamodb_client(), stack::crm_table(), Arc::new(FixedClock(NOW)))
}

fn activity_store() -> DynamoActivityStore {
    DynamoActivityStore::new(
        stack::dynamodb_client(),
        stack::activity_table(),
        stack::activity_nonces_table(),
        660,
        Arc::new(FixedClock(NOW)),
    )
}

/// A fixture body moved to tenant `mid`, parsed as the function would after verification.
fn crm_event(file: &str, mid: &str) -> CrmEvent {
    let mut value: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/crm/{file}")).unwrap()).unwrap();
    value["mid"] = mid.into();
    parse_crm(&value.to_string())
}

fn activity_event(file: &str, mid: &str) -> ActivityEvent {
    let body = std::fs::read_to_string(format!("{FIXTURES}/activity/{file}")).unwrap();
    parse_activity(&body, mid)
}

async fn get(table: &str, key: &[(&str, &str)]) -> Option<HashMap<String, AttributeValue>> {
    let key = key
        .iter()
        .map(|(k, v)| (k.to_string(), AttributeValue::S(v.to_string())))
        .collect();
    let output = stack::dynamodb_client()
        .get_item()
        .table_name(table)
        .set_key(Some(key))
        .consistent_read(true)
        .send()
        .await
        .expect("the local DynamoDB answers");
    output.item
}

/// The oracle's item of one entity.
fn expected(oracle: &Oracle, source: Source, entity_id: &str) -> HashMap<String, AttributeValue> {
    oracle.items()[&(source, entity_id.to_owned())].clone()
}

fn n(item: &HashMap<String, AttributeValue>, name: &str) -> i64 {
    item[name].as_n().unwrap().parse().unwrap()
}

/// Update `i` of `base`'s lead: at `create_time` 1_677_500_000 + `i`, setting `field_<i>` only.
fn numbered_update(base: &CrmEvent, i: i64) -> CrmEvent {
    let mut value: Value = serde_json::from_str(&base.raw).unwrap();
    value["create_time"] = (1_677_500_000 + i).into();
    value["extra_data"]["mapping_data"] = serde_json::json!({ format!("field_{i}"): [null, i] });
    parse_crm(&value.to_string())
}

fn crm_fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("{FIXTURES}/crm"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn every_crm_fixture_produces_exactly_the_pure_item() {
    let store = crm_store();
    let mid = unique_mid("fixture");
    let mut oracle = Oracle::new(&mid);
    for name in crm_fixture_names() {
        let event = crm_event(&name, &mid);
        assert_eq!(store.apply(&event).await, Ok(Delivery::Accepted), "{name}");
        assert_eq!(oracle.deliver(Source::Crm, &event.raw), Answer::Accepted, "{name}");
        let stored = get(&stack::crm_table(), &[("mid", &mid), ("entity_id", &event.entity_id)])
            .await
            .unwrap();
        assert_eq!(
            stored["updated_at"],
            AttributeValue::S("2027-01-15T08:00:00Z".into()),
            "updated_at is the write time, UTC"
        );
        assert_eq!(
            visible(stored.clone()),
            expected(&oracle, Source::Crm, &event.entity_id),
            "{name}"
        );
        let record: Vec<String> = read_entity::<CrmState>(&stored)
            .unwrap()
            .applied
            .stamps()
            .iter()
            .map(tests::tables::stamp_key)
            .collect();
        let want: Vec<String> = oracle
            .crm_record(&event.entity_id)
            .iter()
            .map(|s| s.record_key())
            .collect();
        assert_eq!(record, want, "{name}: the item's record of applied events");
    }
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn duplicates_leave_the_item_and_event_count_unchanged() {
    let store = crm_store();
    let mid = unique_mid("dup");
    let create = crm_event("seed_124_object_create.json", &mid);
    let update = crm_event("lead_object_update.json", &mid);
    let key = [("mid", mid.as_str()), ("entity_id", create.entity_id.as_str())];
    assert_eq!(store.apply(&create).await, Ok(Delivery::Accepted));
    assert_eq!(store.apply(&update).await, Ok(Delivery::Accepted));
    let before = get(&stack::crm_table(), &key).await.unwrap();
    assert_eq!(n(&before, "event_count"), 2);
    assert_eq!(store.apply(&update).await, Ok(Delivery::Duplicate));
    assert_eq!(store.apply(&create).await, Ok(Delivery::Duplicate));
    assert_eq!(
        get(&stack::crm_table(), &key).await.unwrap(),
        before,
        "nothing changed, not even the version"
    );
    let stored = read_entity::<CrmState>(&before).unwrap();
    assert_eq!(
        stored.applied.stamps(),
        &[create.stamp(), update.stamp()],
        "the item records each applied event once, in stamp order"
    );
    assert_eq!(
        crm_store().apply(&update).await,
        Ok(Delivery::Duplicate),
        "another instance reads the record from the item"
    );
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn the_seed_item_is_compact_and_carries_its_format() {
    let store = crm_store();
    let mid = unique_mid("size");
    let create = crm_event("seed_124_object_create.json", &mid);
    assert_eq!(store.apply(&create).await, Ok(Delivery::Accepted));
    let item = get(&stack::crm_table(), &[("mid", &mid), ("entity_id", &create.entity_id)])
        .await
        .unwrap();
    assert_eq!(n(&item, FORMAT), i64::from(shared::bookkeeping::FORMAT_VERSION));
    let merge = item[MERGE].as_b().unwrap().as_ref().len();
    assert!(merge <= 64, "one event and its registers: {merge} bytes of bookkeeping");
    // DynamoDB's size rules: attribute names plus values (README/docs/items.md).
    let size: usize = item
        .iter()
        .map(|(name, value)| name.len() + attribute_size(value))
        .sum();
    assert!(size <= 3_000, "the seed item is {size} bytes");
}

fn attribute_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => n.len().div_ceil(2) + 1,
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Ss(set) => set.iter().map(String::len).sum(),
        AttributeValue::L(items) => 3 + items.iter().map(|v| 1 + attribute_size(v)).sum::<usize>(),
        AttributeValue::M(map) => 3 + map.iter().map(|(k, v)| 1 + k.len() + attribute_size(v)).sum::<usize>(),
        _ => 1,
    }
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn interleaved_instances_lose_no_update_and_a_deleted_item_is_written_anew() {
    // Two instances of the function, writing one entity in turn.
    let (a, b) = (crm_store(), crm_store());
    let mid = unique_mid("stale");
    let base = crm_event("lead_object_update.json", &mid);
    let event = |i: i64| numbered_update(&base, i);
    assert_eq!(a.apply(&event(1)).await, Ok(Delivery::Accepted));
    assert_eq!(b.apply(&event(2)).await, Ok(Delivery::Accepted));
    assert_eq!(
        a.apply(&event(3)).await,
        Ok(Delivery::Accepted),
        "a's last write is no longer the item"
    );
    assert_eq!(b.apply(&event(1)).await, Ok(Delivery::Duplicate));
    let key = [("mid", mid.as_str()), ("entity_id", base.entity_id.as_str())];
    let item = get(&stack::crm_table(), &key).await.unwrap();
    assert_eq!(item["fields"].as_m().unwrap().len(), 3, "every writer's field survived");
    assert_eq!(n(&item, "version"), 3);

    // An item deleted between deliveries (an operator, a test's clean-up) is written anew.
    stack::dynamodb_client()
        .delete_item()
        .table_name(stack::crm_table())
        .set_key(Some(
            key.iter()
                .map(|(k, v)| (k.to_string(), AttributeValue::S(v.to_string())))
                .collect(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(a.apply(&event(3)).await, Ok(Delivery::Accepted));
    let item = get(&stack::crm_table(), &key).await.unwrap();
    assert_eq!(n(&item, "event_count"), 1);
    assert_eq!(n(&item, "version"), 1);
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn a_late_older_event_fills_gaps_but_never_rolls_a_field_back() {
    let store = crm_store();
    let mid = unique_mid("late");
    let create = crm_event("seed_124_object_create.json", &mid);
    let update = crm_event("lead_object_update.json", &mid);
    assert_eq!(store.apply(&update).await, Ok(Delivery::Accepted));
    assert_eq!(store.apply(&create).await, Ok(Delivery::Accepted));
    let item = get(&stack::crm_table(), &[("mid", &mid), ("entity_id", &create.entity_id)])
        .await
        .unwrap();
    let fields = item["fields"].as_m().unwrap();
    assert_eq!(
        fields["name"].as_s().unwrap(),
        "ceshi-webhook-002",
        "the newer update keeps name"
    );
    assert!(
        !fields.contains_key("mobile"),
        "cleared by the newer update, not restored by the create"
    );
    assert_eq!(
        fields["lead_pool"].as_s().unwrap(),
        "market",
        "filled by the older create"
    );
    assert_eq!(item["last_event_type"].as_s().unwrap(), "object_update");
    assert_eq!(item["created_at"].as_s().unwrap(), "2023-02-27T15:02:25+08:00");
    let mut oracle = Oracle::new(&mid);
    oracle.deliver(Source::Crm, &update.raw);
    oracle.deliver(Source::Crm, &create.raw);
    assert_eq!(visible(item), expected(&oracle, Source::Crm, &create.entity_id));
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn concurrent_writers_on_one_entity_lose_no_update() {
    let store = Arc::new(crm_store());
    let mid = unique_mid("race");
    let base = crm_event("lead_object_update.json", &mid);
    let events: Vec<CrmEvent> = (0..12).map(|i| numbered_update(&base, i)).collect();
    let tasks: Vec<_> = events
        .iter()
        .cloned()
        .map(|event| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.apply(&event).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), Ok(Delivery::Accepted));
    }
    let item = get(&stack::crm_table(), &[("mid", &mid), ("entity_id", &base.entity_id)])
        .await
        .unwrap();
    assert_eq!(n(&item, "event_count"), 12);
    assert_eq!(
        item["fields"].as_m().unwrap().len(),
        12,
        "every writer's field survived"
    );
    assert_eq!(
        n(&item, "version"),
        12,
        "one version per write: conflicts were retried, not merged blindly"
    );
    let mut oracle = Oracle::new(&mid);
    for event in &events {
        oracle.deliver(Source::Crm, &event.raw);
    }
    assert_eq!(visible(item), expected(&oracle, Source::Crm, &base.entity_id));
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn concurrent_callbacks_on_one_activity_lose_no_update_and_copies_are_duplicates() {
    // A lost race is retried from the item its cancelled transaction returned, without a read:
    // that must still merge every callback once, and still see a copy's nonce recorded meanwhile.
    let store = Arc::new(activity_store());
    let mid = unique_mid("activity-race");
    let base: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/activity/event_edit.json")).unwrap())
            .unwrap();
    const CALLBACKS: i64 = 8;
    let callbacks: Vec<ActivityEvent> = (0..CALLBACKS)
        .map(|i| {
            let mut value = base.clone();
            value["nonce"] = format!("race-nonce-{i}").into();
            value["timestamp"] = (value["timestamp"].as_i64().unwrap() + i).into();
            value["attributes"]["title"] = format!("title {i}").into();
            parse_activity(&value.to_string(), &mid)
        })
        .collect();
    let tasks: Vec<_> = callbacks
        .iter()
        .chain(&callbacks)
        .cloned()
        .map(|event| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { (event.nonce.clone(), store.apply(&event).await) })
        })
        .collect();
    let mut answers: HashMap<String, Vec<NonceOutcome>> = HashMap::new();
    for task in tasks {
        let (nonce, answer) = task.await.unwrap();
        answers.entry(nonce).or_default().push(answer.unwrap());
    }
    for (nonce, mut outcomes) in answers {
        outcomes.sort_by_key(|outcome| format!("{outcome:?}"));
        assert_eq!(
            outcomes,
            [NonceOutcome::Accepted, NonceOutcome::Duplicate],
            "{nonce}: one copy accepted, the other a duplicate"
        );
    }
    let entity_id = callbacks[0].activity_id().unwrap();
    let item = get(&stack::activity_table(), &[("mid", &mid), ("entity_id", entity_id)])
        .await
        .unwrap();
    assert_eq!(
        item["title"].as_s().unwrap(),
        &format!("title {}", CALLBACKS - 1),
        "the newest callback"
    );
    assert_eq!(
        n(&item, "version"),
        CALLBACKS,
        "one version per accepted callback: conflicts were retried, not merged blindly"
    );
    let mut oracle = Oracle::new(&mid);
    for callback in callbacks.iter().chain(&callbacks) {
        oracle.deliver(Source::Activity, &callback.raw);
    }
    assert_eq!(visible(item), expected(&oracle, Source::Activity, entity_id));
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn activity_nonces_distinguish_duplicates_from_replays() {
    let store = activity_store();
    let mid = unique_mid("nonce");
    let add = activity_event("event_add.json", &mid);
    assert_eq!(store.apply(&add).await, Ok(NonceOutcome::Accepted));
    let key = [("mid", mid.as_str()), ("entity_id", "b80bb752931811eeaeb42ef5b77e53xx")];
    let before = get(&stack::activity_table(), &key).await.unwrap();
    assert_eq!(store.apply(&add).await, Ok(NonceOutcome::Duplicate));
    let tampered = add.raw.replace("新建活动回调", "篡改");
    assert_eq!(
        store.apply(&parse_activity(&tampered, &mid)).await,
        Ok(NonceOutcome::Replayed(NonceReuse::OtherBody))
    );
    assert_eq!(get(&stack::activity_table(), &key).await.unwrap(), before);
    // The sign does not cover the body: the same nonce naming another activity is a replay too.
    let elsewhere = add.raw.replace("b80bb752931811eeaeb42ef5b77e53xx", "another-activity");
    assert_eq!(
        store.apply(&parse_activity(&elsewhere, &mid)).await,
        Ok(NonceOutcome::Replayed(NonceReuse::OtherBody))
    );
    assert!(get(
        &stack::activity_table(),
        &[("mid", mid.as_str()), ("entity_id", "another-activity")]
    )
    .await
    .is_none());
    let other_tenant = unique_mid("nonce-other");
    assert_eq!(
        store.apply(&activity_event("event_add.json", &other_tenant)).await,
        Ok(NonceOutcome::Accepted),
        "an event no secret verified is scoped by its tenant"
    );
    let record = get(&stack::activity_nonces_table(), &[("mid", &mid), ("nonce", &add.nonce)])
        .await
        .unwrap();
    assert_eq!(n(&record, "expires_at"), NOW + 660);
}

/// `event_add.json` for `mid`, with a fresh nonce, as the intake hands it over after the
/// default secret verified it.
fn verified_by_default_secret(mid: &str, nonce: &str) -> ActivityEvent {
    let mut value: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/activity/event_add.json")).unwrap()).unwrap();
    value["nonce"] = nonce.into();
    let mut event = parse_activity(&value.to_string(), mid);
    event.replay_scope = ReplayScope::of_secret(&Secret::new(tests::local::dev_activity_secret()));
    event
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn a_nonce_is_accepted_once_per_secret_and_both_records_are_written_with_the_item() {
    let store = activity_store();
    let (first, second) = (unique_mid("scope-first"), unique_mid("scope-second"));
    let nonce = tests::signing::unique_nonce();
    let event = verified_by_default_secret(&first, &nonce);
    assert_eq!(store.apply(&event).await, Ok(NonceOutcome::Accepted));
    let tenant_record = get(&stack::activity_nonces_table(), &[("mid", &first), ("nonce", &nonce)])
        .await
        .expect("the tenant record");
    let claim_partition = format!("{}/{nonce}", event.replay_scope.as_str());
    let claim = get(
        &stack::activity_nonces_table(),
        &[("mid", &claim_partition), ("nonce", CLAIM_SORT_KEY)],
    )
    .await
    .expect("the scope claim");
    for record in [&tenant_record, &claim] {
        assert_eq!(record["tenant"].as_s().unwrap(), &first);
        assert_eq!(record["replay_scope"].as_s().unwrap(), event.replay_scope.as_str());
        assert_eq!(record["body_digest"].as_s().unwrap(), event.digest.as_str());
        assert_eq!(n(record, "expires_at"), NOW + 660);
    }
    assert!(!claim_partition.contains(tests::local::dev_activity_secret()));

    // The same callback for another tenant of the same secret: refused, nothing written.
    let elsewhere = verified_by_default_secret(&second, &nonce);
    assert_eq!(
        store.apply(&elsewhere).await,
        Ok(NonceOutcome::Replayed(NonceReuse::OtherTenant))
    );
    let key = [
        ("mid", second.as_str()),
        ("entity_id", "b80bb752931811eeaeb42ef5b77e53xx"),
    ];
    assert!(get(&stack::activity_table(), &key).await.is_none());
    assert!(
        get(&stack::activity_nonces_table(), &[("mid", &second), ("nonce", &nonce)])
            .await
            .is_none()
    );
    assert_eq!(store.apply(&event).await, Ok(NonceOutcome::Duplicate));
    let item = get(&stack::activity_table(), &[("mid", first.as_str()), key[1]])
        .await
        .unwrap();
    assert_eq!(n(&item, "version"), 1);
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn an_unmodelled_action_is_kept_in_the_transaction_of_its_nonce() {
    let quarantine = tests::quarantine::store();
    let store = activity_store().keeping_unmodelled(Some(UnmodelledTable {
        table: quarantine.table().to_owned(),
        retention_seconds: 86_400,
    }));
    let mid = unique_mid("unmodelled");
    let doc = activity_event("doc_add.json", &mid);
    assert_eq!(store.apply(&doc).await, Ok(NonceOutcome::Accepted));
    assert_eq!(store.apply(&doc).await, Ok(NonceOutcome::Duplicate));
    let kept: Vec<_> = quarantine
        .list_unmodelled()
        .await
        .unwrap()
        .into_iter()
        .filter(|record| record.tenant == mid)
        .collect();
    assert_eq!(kept.len(), 1, "kept once: {kept:?}");
    assert_eq!(kept[0].body, &*doc.raw);
    assert_eq!(
        (kept[0].action.as_str(), kept[0].nonce.as_str()),
        ("doc/add", doc.nonce.as_str())
    );
    assert_eq!(kept[0].expires_at, NOW + 86_400);
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn delete_is_a_tombstone_that_a_late_edit_cannot_undo() {
    let store = activity_store();
    let mid = unique_mid("tomb");
    let key = [("mid", mid.as_str()), ("entity_id", "b80bb752931811eeaeb42ef5b77e53xx")];
    assert_eq!(
        store.apply(&activity_event("event_delete.json", &mid)).await,
        Ok(NonceOutcome::Accepted)
    );
    let tombstone = get(&stack::activity_table(), &key).await.unwrap();
    assert_eq!(
        tombstone["deleted"].as_bool().unwrap(),
        &true,
        "a delete for an unknown activity creates the tombstone"
    );
    assert_eq!(
        store.apply(&activity_event("event_edit.json", &mid)).await,
        Ok(NonceOutcome::Accepted)
    );
    assert_eq!(
        store.apply(&activity_event("event_add.json", &mid)).await,
        Ok(NonceOutcome::Accepted)
    );
    let item = get(&stack::activity_table(), &key).await.unwrap();
    assert_eq!(item["deleted"].as_bool().unwrap(), &true);
    assert_eq!(item["last_action"].as_s().unwrap(), "event/delete");
    let mut oracle = Oracle::new(&mid);
    for file in ["event_delete.json", "event_edit.json", "event_add.json"] {
        oracle.deliver(Source::Activity, &activity_event(file, &mid).raw);
    }
    assert_eq!(
        visible(item),
        expected(&oracle, Source::Activity, "b80bb752931811eeaeb42ef5b77e53xx")
    );
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn an_unmodelled_action_records_its_nonce_and_no_item() {
    let store = activity_store();
    let mid = unique_mid("doc");
    let doc = activity_event("doc_add.json", &mid);
    assert_eq!(store.apply(&doc).await, Ok(NonceOutcome::Accepted));
    assert!(
        get(&stack::activity_nonces_table(), &[("mid", &mid), ("nonce", &doc.nonce)])
            .await
            .is_some()
    );
    assert_eq!(store.apply(&doc).await, Ok(NonceOutcome::Duplicate));
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn an_unreachable_dynamodb_fails_fast_and_cleanly() {
    // Nothing listens on port 9 (discard) on the loopback interface.
    let client = stack::client_for("http://127.0.0.1:9");
    let store = DynamoCrmStore::new(client, stack::crm_table(), Arc::new(FixedClock(NOW)));
    let mid = unique_mid("down");
    let started = Instant::now();
    let result = store.apply(&crm_event("seed_124_object_create.json", &mid)).await;
    assert!(
        matches!(result, Err(StoreError::Unavailable(_) | StoreError::Timeout(_))),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "contract 2.3: every answer within 5 s"
    );
    assert!(get(
        &stack::crm_table(),
        &[("mid", &mid), ("entity_id", "NttdW4NoJfD2cX6f7rg52f")]
    )
    .await
    .is_none());
}

/// The store's calls by kind (the `call` label of its `store_calls` metric), counted on this
/// thread only: [`StoreCalls::run`] drives a test on a runtime of the calling thread, so other
/// tests of the binary, on other threads, are not counted.
#[derive(Default)]
struct StoreCalls {
    counted: Arc<Mutex<BTreeMap<String, u64>>>,
}

/// One `store_calls` counter, one kind of call.
struct CallCounter {
    call: String,
    counted: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl metrics::CounterFn for CallCounter {
    fn increment(&self, value: u64) {
        *self.counted.lock().unwrap().entry(self.call.clone()).or_default() += value;
    }

    fn absolute(&self, value: u64) {
        self.counted.lock().unwrap().insert(self.call.clone(), value);
    }
}

impl metrics::Recorder for StoreCalls {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}

    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let call = key.labels().find(|label| label.key() == "call");
        match call {
            Some(call) if key.name() == "store_calls" => metrics::Counter::from_arc(Arc::new(CallCounter {
                call: call.value().to_owned(),
                counted: Arc::clone(&self.counted),
            })),
            _ => metrics::Counter::noop(),
        }
    }

    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }

    fn register_histogram(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

impl StoreCalls {
    /// Runs `test` to completion on a runtime of this thread, with this recorder counting.
    fn run<T>(&self, test: impl Future<Output = T>) -> T {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        metrics::with_local_recorder(self, || runtime.block_on(test))
    }

    /// The calls counted since the last take.
    fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.counted.lock().unwrap())
    }
}

/// The calls counted, as [`StoreCalls::take`] gives them (kinds not called left out).
fn calls(counts: &[(&str, u64)]) -> BTreeMap<String, u64> {
    counts
        .iter()
        .filter(|(_, count)| *count > 0)
        .map(|(call, count)| (call.to_string(), *count))
        .collect()
}

#[test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
fn each_delivery_costs_one_write_call_unless_another_instance_wrote_its_entity_since() {
    let counter = StoreCalls::default();
    counter.run(crm_calls_by_case(&counter));
    counter.run(activity_calls_by_case(&counter));
}

/// Two instances of the CRM function, taking turns on one lead.
async fn crm_calls_by_case(counter: &StoreCalls) {
    let (a, b) = (crm_store(), crm_store());
    let mid = unique_mid("calls");
    let base = crm_event("lead_object_update.json", &mid);
    let mut oracle = Oracle::new(&mid);
    // (instance, event, answer, PutItem calls, GetItem calls)
    let steps = [
        // A new entity: one put, conditional on no item.
        (&a, 1, Delivery::Accepted, 1, 0),
        // a wrote it last: one put, conditional on what a wrote.
        (&a, 2, Delivery::Accepted, 1, 0),
        // a remembers the event applied: one read confirms it.
        (&a, 2, Delivery::Duplicate, 0, 1),
        // b has not seen the entity: its put fails and returns the item, which holds it.
        (&b, 2, Delivery::Duplicate, 1, 0),
        // b remembers the item its failed put returned.
        (&b, 3, Delivery::Accepted, 1, 0),
        // b wrote in between: a's put fails and returns b's item, into which a merges.
        (&a, 4, Delivery::Accepted, 2, 0),
    ];
    for (step, (store, i, want, puts, gets)) in steps.into_iter().enumerate() {
        let event = numbered_update(&base, i);
        assert_eq!(store.apply(&event).await, Ok(want), "CRM step {step}");
        assert_eq!(
            counter.take(),
            calls(&[("PutItem", puts), ("GetItem", gets)]),
            "CRM step {step}"
        );
        oracle.deliver(Source::Crm, &event.raw);
    }
    let key = [("mid", mid.as_str()), ("entity_id", base.entity_id.as_str())];
    let item = get(&stack::crm_table(), &key).await.unwrap();
    assert_eq!((n(&item, "event_count"), n(&item, "version")), (4, 4));
    assert_eq!(visible(item), expected(&oracle, Source::Crm, &base.entity_id));
}

/// Two instances of the activity function, taking turns on one activity.
async fn activity_calls_by_case(counter: &StoreCalls) {
    let (a, b) = (activity_store(), activity_store());
    let mid = unique_mid("calls-activity");
    let add = activity_event("event_add.json", &mid);
    let edit = activity_event("event_edit.json", &mid);
    let mut later: Value = serde_json::from_str(&edit.raw).unwrap();
    later["nonce"] = tests::signing::unique_nonce().into();
    later["timestamp"] = (later["timestamp"].as_i64().unwrap() + 60).into();
    later["attributes"]["title"] = "later".into();
    let later = parse_activity(&later.to_string(), &mid);
    // (instance, callback, answer, TransactWriteItems calls)
    let steps = [
        // A new activity: one transaction.
        (&a, &add, NonceOutcome::Accepted, 1),
        // a wrote it last: one transaction.
        (&a, &edit, NonceOutcome::Accepted, 1),
        // The cancelled transaction returns the nonce record.
        (&b, &edit, NonceOutcome::Duplicate, 1),
        // b has not seen the activity: the first transaction returns it.
        (&b, &later, NonceOutcome::Accepted, 2),
    ];
    let mut oracle = Oracle::new(&mid);
    for (step, (store, event, want, transactions)) in steps.into_iter().enumerate() {
        assert_eq!(store.apply(event).await, Ok(want), "activity step {step}");
        assert_eq!(
            counter.take(),
            calls(&[("TransactWriteItems", transactions)]),
            "activity step {step}: no read"
        );
        oracle.deliver(Source::Activity, &event.raw);
    }
    let entity_id = add.activity_id().unwrap();
    let item = get(&stack::activity_table(), &[("mid", &mid), ("entity_id", entity_id)])
        .await
        .unwrap();
    assert_eq!(n(&item, "version"), 3);
    assert_eq!(visible(item), expected(&oracle, Source::Activity, entity_id));
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn the_store_answers_within_the_budget_it_is_given() {
    // A server that accepts connections and never answers: every call waits for the budget.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((connection, _)) = listener.accept().await {
            held.push(connection);
        }
    });
    let client = stack::client_for(&endpoint);
    let crm = DynamoCrmStore::new(client.clone(), stack::crm_table(), Arc::new(FixedClock(NOW)));
    let activities = DynamoActivityStore::new(
        client,
        stack::activity_table(),
        stack::activity_nonces_table(),
        660,
        Arc::new(FixedClock(NOW)),
    );
    let mid = unique_mid("budget");
    // What a slow first read of the secrets left of the request's 4 s: the store gets that much,
    // not its own 3 s operation timeout.
    for budget_ms in [300, 700] {
        let budget = Duration::from_millis(budget_ms);
        let event = crm_event("seed_124_object_create.json", &mid);
        assert_eq!(
            crm.apply_within(&event, budget).await,
            Err(StoreError::Timeout(budget_ms))
        );
        let callback = activity_event("event_add.json", &mid);
        assert_eq!(
            activities.apply_within(&callback, budget).await,
            Err(StoreError::Timeout(budget_ms))
        );
    }
    silent.abort();
}
