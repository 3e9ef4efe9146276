//! Replay and freshness of activity callbacks (contract 2.2, 2.4), end to end: signed callbacks
//! posted over HTTP to the local stack, the tables and the quarantine read back from the local
//! DynamoDB through the real SDK, the metrics read from the function log.
//!
//! - a nonce is accepted once per secret that verified it: a captured callback sent byte for
//!   byte to another tenant that shares the secret is refused `replayed_nonce`, and nothing is
//!   written for that tenant;
//! - a correctly signed callback outside the freshness windows is kept in the quarantine;
//! - a nonce seen before with another body is refused, kept and counted in `nonce_conflicts`;
//! - an unmodelled action's body is kept where an operator can list it.
//!
//! The operator's replay of one kept record is in tools/tests/webhookctl.rs (it runs the tool).

use std::time::{Duration, Instant};

use serde_json::Value;
use shared::dynamo::DynamoQuarantineStore;
use shared::source::Source;
use tests::http::{activity_url, client, post, signed_activity};
use tests::local::dev_activity_secret;
use tests::metrics_check::emf_counter;
use tests::quarantine::{kept_for, post_until_kept, store};
use tests::signing::{now_unix, unique_nonce};
use tests::stack::{self, unique_mid};
use tests::tables::{SdkItem, Table};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures");
const ACTIVITY_ID: &str = "b80bb752931811eeaeb42ef5b77e53xx";

fn fixture(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/{path}")).unwrap()).unwrap()
}

fn version(item: &SdkItem) -> u64 {
    item[shared::dynamo::VERSION].as_n().unwrap().parse().unwrap()
}

/// What one tenant has in the activity and nonce tables: (activities, nonce records).
async fn held_by(mid: &str) -> (Vec<SdkItem>, Vec<SdkItem>) {
    let db = stack::inspection_client();
    (
        Table::Activities.query(&db, mid).await,
        Table::ActivityNonces.query(&db, mid).await,
    )
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn a_captured_callback_is_accepted_at_one_tenant_of_its_secret_only() {
    let http = client();
    let (first, second) = (unique_mid("replay-first"), unique_mid("replay-second"));
    // Both tenants have no secret of their own: the default list verifies both.
    let body = signed_activity(
        &fixture("activity/event_add.json"),
        &unique_nonce(),
        now_unix(),
        dev_activity_secret(),
    );
    let accepted = post(&http, &activity_url(&first), &[], body.clone()).await;
    assert_eq!((accepted.status, accepted.body.as_str()), (200, "success"));
    let (items, nonces) = held_by(&first).await;
    assert_eq!((items.len(), nonces.len()), (1, 1));
    assert_eq!(version(&items[0]), 1);

    // Byte for byte to the other tenant's path: refused, and nothing written there.
    let replayed = post(&http, &activity_url(&second), &[], body.clone()).await;
    assert_eq!(
        replayed.refusal(),
        (401, "replayed_nonce".to_owned()),
        "{}",
        replayed.body
    );
    let (items_second, nonces_second) = held_by(&second).await;
    assert!(
        items_second.is_empty() && nonces_second.is_empty(),
        "no item and no nonce record for the second tenant: {items_second:?} {nonces_second:?}"
    );
    // A plain replay of an applied callback loses nothing: it is not quarantined.
    assert!(kept_for(Source::Activity, &second).await.is_empty());

    // At the first tenant it is still a duplicate, which changes nothing.
    let again = post(&http, &activity_url(&first), &[], body).await;
    assert_eq!((again.status, again.body.as_str()), (200, "success"));
    let (items_after, nonces_after) = held_by(&first).await;
    assert_eq!(
        items_after, items,
        "the item, its version and its bookkeeping unchanged"
    );
    assert_eq!(nonces_after, nonces);
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn a_stale_but_correctly_signed_callback_is_quarantined_not_applied() {
    let http = client();
    let mid = unique_mid("replay-stale");
    let mut sent = String::new();
    let record = post_until_kept(Source::Activity, &mid, |_| {
        let http = http.clone();
        let url = activity_url(&mid);
        let body = signed_activity(
            &fixture("activity/event_add.json"),
            &unique_nonce(),
            now_unix() - 400,
            dev_activity_secret(),
        );
        sent.clone_from(&body);
        async move {
            let answer = post(&http, &url, &[], body).await;
            assert_eq!(answer.refusal(), (401, "stale_timestamp".to_owned()), "{}", answer.body);
        }
    })
    .await;
    let kept = kept_for(Source::Activity, &mid).await;
    assert_eq!(kept.len(), 1, "one record: {kept:?}");
    assert_eq!((record.status, record.code.as_str()), (401, "stale_timestamp"));
    assert_eq!(record.source, Source::Activity);
    assert_eq!(record.tenant.as_deref(), Some(mid.as_str()));
    assert_eq!(record.body, sent, "the body exactly as sent");
    assert!(record.header_names.contains(&"content-type".to_owned()), "{record:?}");
    assert!(
        record.signature_headers.is_empty(),
        "the sign is in the body: {record:?}"
    );
    assert!(record.delivery_id.starts_with(&record.received_at));
    let ttl = record.expires_at - now_unix();
    assert!((13 * 86_400..=14 * 86_400).contains(&ttl), "14 days by default: {ttl}");
    assert_eq!(record.last_replay, None);
    let (items, nonces) = held_by(&mid).await;
    assert!(
        items.is_empty() && nonces.is_empty(),
        "nothing applied: {items:?} {nonces:?}"
    );
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn a_nonce_seen_with_another_body_is_refused_kept_and_counted() {
    let http = client();
    let mid = unique_mid("replay-conflict");
    let log_path = std::env::var("TEST_FUNCTIONS_LOG").expect("TEST_FUNCTIONS_LOG: run with `make test`");
    let log_offset = std::fs::metadata(&log_path).expect("the function log").len();
    let nonce = unique_nonce();
    let timestamp = now_unix();
    let genuine = signed_activity(
        &fixture("activity/event_add.json"),
        &nonce,
        timestamp,
        dev_activity_secret(),
    );
    let accepted = post(&http, &activity_url(&mid), &[], genuine).await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    let (items, nonces) = held_by(&mid).await;

    // Copies with the same nonce and sign and another body, until one is kept (the global cap
    // may be full for a while).
    let mut conflicts = 0u64;
    let mut last_body = String::new();
    let record = post_until_kept(Source::Activity, &mid, |attempt| {
        let http = http.clone();
        let url = activity_url(&mid);
        let mut copy: Value = serde_json::from_str(&signed_activity(
            &fixture("activity/event_add.json"),
            &nonce,
            timestamp,
            dev_activity_secret(),
        ))
        .unwrap();
        copy["attributes"]["title"] = format!("a forged copy {attempt}").into();
        let copy = copy.to_string();
        last_body.clone_from(&copy);
        conflicts += 1;
        async move {
            let answer = post(&http, &url, &[], copy).await;
            assert_eq!(answer.refusal(), (401, "replayed_nonce".to_owned()), "{}", answer.body);
        }
    })
    .await;
    assert_eq!((record.status, record.code.as_str()), (401, "replayed_nonce"));
    assert_eq!(record.tenant.as_deref(), Some(mid.as_str()));
    assert_eq!(record.body, last_body, "the conflicting body as sent");
    assert_eq!(held_by(&mid).await, (items, nonces), "nothing of a copy is applied");

    // Each conflict is counted once in its own metric, with this tenant as its property.
    let patience = Instant::now() + Duration::from_secs(30);
    let counted = loop {
        let bytes = std::fs::read(&log_path).expect("the function log");
        let log = String::from_utf8_lossy(&bytes[usize::try_from(log_offset).unwrap()..]).into_owned();
        let counted = emf_counter(
            &log,
            "nonce_conflicts",
            &[("source", "activity"), ("mid", mid.as_str())],
        );
        if counted >= conflicts || Instant::now() > patience {
            break counted;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(counted, conflicts, "nonce_conflicts{{source=activity}} for {mid}");
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn an_unmodelled_action_is_acknowledged_and_its_body_kept() {
    let http = client();
    let mid = unique_mid("replay-unmodelled");
    let nonce = unique_nonce();
    let mut doc = fixture("activity/doc_add.json");
    doc["attributes"]["doc_id"] = nonce.clone().into();
    let body = signed_activity(&doc, &nonce, now_unix(), dev_activity_secret());
    let answer = post(&http, &activity_url(&mid), &[], body.clone()).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "success"));
    let quarantine: DynamoQuarantineStore = store();
    let kept: Vec<_> = quarantine
        .list_unmodelled()
        .await
        .expect("the unmodelled actions read")
        .into_iter()
        .filter(|record| record.tenant == mid)
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let record = &kept[0];
    assert_eq!(record.body, body, "the raw body");
    assert_eq!(
        (record.action.as_str(), record.nonce.as_str()),
        ("doc/add", nonce.as_str())
    );
    assert!(record.delivery_id.starts_with(&record.received_at));
    let ttl = record.expires_at - now_unix();
    assert!(
        (13 * 86_400..=14 * 86_400).contains(&ttl),
        "the quarantine's 14 days: {ttl}"
    );
    // Not a refused delivery, and no activity; its nonce is recorded.
    assert!(kept_for(Source::Activity, &mid).await.is_empty());
    let (items, nonces) = held_by(&mid).await;
    assert!(items.is_empty(), "{items:?}");
    assert_eq!(nonces.len(), 1);
    // Delivered again: a duplicate, kept once.
    let again = post(&http, &activity_url(&mid), &[], body).await;
    assert_eq!((again.status, again.body.as_str()), (200, "success"));
    let count = quarantine
        .list_unmodelled()
        .await
        .unwrap()
        .iter()
        .filter(|record| record.tenant == mid)
        .count();
    assert_eq!(count, 1);
    assert!(
        stack::entity_item(&stack::activity_table(), &mid, ACTIVITY_ID)
            .await
            .is_none(),
        "a doc/add names no activity"
    );
}
