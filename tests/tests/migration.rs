//! A table written by storage format 1, after the upgrade: items that format 1 stored (as the
//! format-1 code wrote them, fixtures/format1/) are put into the local DynamoDB as they were,
//! then new deliveries go through the functions over HTTP. The first write of each entity
//! stores it as format 2 with every event merged (compared, `version` and `event_count`
//! included, with the independent oracle `tests::oracle`); redeliveries are still recognised.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use shared::crm::CrmState;
use shared::dynamo::{item_to_sdk, read_entity, FORMAT, MERGE, MERGE_STATE, VERSION};
use shared::item::Item;
use tests::history::{parse_crm, Source};
use tests::http::{activity_url, client, dev_activity_secret, dev_crm_secret, post, post_crm, signed_activity};
use tests::oracle::Oracle;
use tests::signing::{now_unix, unique_nonce};
use tests::stack;
use tests::tables::visible;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/format1");

type SdkItem = HashMap<String, AttributeValue>;

/// One entity's history (fixtures/format1/README.md): events in delivery order, and the item
/// format 1 stored after the first `events_applied` of them.
struct History {
    mid: String,
    events: Vec<String>,
    snapshots: Vec<Snapshot>,
}

struct Snapshot {
    events_applied: usize,
    item: Item,
}

fn history(file: &str) -> History {
    let mut data: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{DATA}/{file}")).unwrap()).unwrap();
    let snapshots = data["snapshots"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .map(|snapshot| Snapshot {
            events_applied: snapshot["events_applied"].as_u64().unwrap() as usize,
            item: serde_json::from_value(snapshot["item"].take()).unwrap(),
        })
        .collect();
    History {
        mid: data["mid"].as_str().unwrap().to_owned(),
        events: serde_json::from_value(data["events"].take()).unwrap(),
        snapshots,
    }
}

/// Puts the format-1 item as it was stored, replacing whatever an earlier run left.
async fn put_format1(table: &str, item: &Item) -> SdkItem {
    let item = item_to_sdk(item.clone());
    assert!(item.contains_key(MERGE_STATE) && !item.contains_key(FORMAT));
    stack::dynamodb_client()
        .put_item()
        .table_name(table)
        .set_item(Some(item.clone()))
        .send()
        .await
        .expect("the local DynamoDB answers");
    item
}

/// The entity's item, which the test has written.
async fn get(table: &str, mid: &str, entity_id: &str) -> SdkItem {
    stack::entity_item(table, mid, entity_id)
        .await
        .expect("the item exists")
}

fn number(item: &SdkItem, name: &str) -> u64 {
    item[name].as_n().unwrap().parse().unwrap()
}

/// The stored item (`merge` and `updated_at` aside) against the oracle's after `bodies`.
fn assert_shows(stored: &SdkItem, mid: &str, source: Source, bodies: &[&String], what: &str) {
    let mut oracle = Oracle::new(mid);
    for body in bodies {
        oracle.deliver(source, body);
    }
    let entity_id = stored["entity_id"].as_s().unwrap().clone();
    assert_eq!(visible(stored.clone()), oracle.items()[&(source, entity_id)], "{what}");
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn a_format_1_lead_becomes_format_2_at_its_next_event_and_knows_its_visible_events() {
    let history = history("crm_lead.json");
    let snapshot = &history.snapshots[1];
    let applied = snapshot.events_applied;
    let table = stack::crm_table();
    let format1 = put_format1(&table, &snapshot.item).await;
    let entity_id = format1["entity_id"].as_s().unwrap().clone();
    let http = client();

    // The next event of the history, new to the item: merged, and the item is format 2.
    let answer = post_crm(&http, &history.events[applied], dev_crm_secret()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["status"], "accepted", "{}", answer.body);
    let stored = get(&table, &history.mid, &entity_id).await;
    assert_eq!(stored[FORMAT].as_n().unwrap(), "2");
    assert!(stored.contains_key(MERGE));
    assert!(!stored.contains_key(MERGE_STATE), "format 1's merge_state is gone");
    assert_eq!(number(&stored, VERSION), applied as u64 + 1);
    assert_shows(
        &stored,
        &history.mid,
        Source::Crm,
        &history.events[..=applied].iter().collect::<Vec<_>>(),
        "every event merged, each counted once",
    );

    // An event from before the upgrade whose values the item still shows is a duplicate.
    let record = read_entity::<CrmState>(&stored).unwrap().applied;
    let visible_event = history.events[..applied]
        .iter()
        .find(|body| record.contains(&parse_crm(body).stamp()))
        .expect("the migrated record holds the events the item's values come from");
    let answer = post_crm(&http, visible_event, dev_crm_secret()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["status"], "duplicate", "{}", answer.body);
    let answer = post_crm(&http, &history.events[applied], dev_crm_secret()).await;
    assert_eq!(answer.json()["status"], "duplicate", "{}", answer.body);
    assert_eq!(
        get(&table, &history.mid, &entity_id).await,
        stored,
        "duplicates write nothing"
    );
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn a_format_1_activity_becomes_format_2_at_its_next_callback() {
    let history = history("activity.json");
    let snapshot = history.snapshots.last().unwrap();
    let table = stack::activity_table();
    let format1 = put_format1(&table, &snapshot.item).await;
    let entity_id = format1["entity_id"].as_s().unwrap().clone();
    assert_eq!(format1["deleted"], AttributeValue::Bool(true));

    // An edit newer than the delete, sent now: it revives the activity. (Activity callbacks are
    // answered `success` whether new or duplicate.)
    let edit: serde_json::Value = serde_json::from_str(&history.events[1]).unwrap();
    let body = signed_activity(&edit, &unique_nonce(), now_unix(), dev_activity_secret());
    let http = client();
    let url = activity_url(&history.mid);
    let answer = post(&http, &url, &[], body.clone()).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "success"));
    let stored = get(&table, &history.mid, &entity_id).await;
    assert_eq!(stored[FORMAT].as_n().unwrap(), "2");
    assert!(!stored.contains_key(MERGE_STATE), "format 1's merge_state is gone");
    assert_eq!(number(&stored, VERSION), snapshot.events_applied as u64 + 1);
    assert_eq!(stored["deleted"], AttributeValue::Bool(false));
    assert_shows(
        &stored,
        &history.mid,
        Source::Activity,
        &history.events.iter().chain([&body]).collect::<Vec<_>>(),
        "every callback merged, each counted once",
    );

    // The same callback again: its nonce record makes it a duplicate, which writes nothing.
    let again = post(&http, &url, &[], body).await;
    assert_eq!((again.status, again.body.as_str()), (200, "success"));
    assert_eq!(get(&table, &history.mid, &entity_id).await, stored);
}
