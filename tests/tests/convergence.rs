//! Convergence at scale over HTTP (contract 4): a generated history of CRM leads and Lexiang
//! activities, a fifth of it delivered twice, shuffled, sent by 16 concurrent clients to the
//! functions served by `cargo lambda watch`. Every stored item, `version` and `event_count`
//! included, must equal the item the independent oracle (`tests::oracle`) gives for the same
//! history applied in order, and each item's record of applied events must hold exactly its
//! events; a second delivery of the same history in another order (after the tenant is emptied)
//! must store identical items, `updated_at` and `merge` aside (within the bound of 128 events per
//! entity the same events give the same `merge` bytes whatever the order, so it is compared too).
//!
//! `make test` runs a small history (24 entities, 600 events); `make soak` sets `SOAK=1` for the
//! full size (200 entities, 10,000 events). The seed is printed; `CONVERGENCE_SEED` replays it.

use std::collections::{BTreeMap, HashMap};

use tests::deliver::{send_concurrently, Sent};
use tests::history::{History, Shape, Source};
use tests::http::dev_activity_secret;
use tests::signing::now_unix;
use tests::stack::{self, unique_mid};
use tests::tables::{entity_items, mismatches, purge_tenant, record_keys, SdkItem};

const CLIENTS: usize = 16;
const DUPLICATE_SHARE: f64 = 0.2;

fn shape() -> Shape {
    let (entities, events) = if stack::soak() { (200, 10_000) } else { (24, 600) };
    Shape {
        entities,
        events,
        activity_share: 0.4,
        // Both deliveries must fall inside the freshness window: the first third of it is used.
        activity_spread_seconds: stack::activity_window_seconds() / 3,
    }
}

/// Every delivery was acknowledged, and each distinct CRM event was accepted exactly once (its
/// copies answered `duplicate`), however the copies raced.
fn check_answers(sent: &[Sent]) {
    let mut accepted: HashMap<&str, usize> = HashMap::new();
    for delivery in sent {
        assert_eq!(
            delivery.answer.status, 200,
            "{:?} {}: {}",
            delivery.event.source, delivery.event.entity_id, delivery.answer.body
        );
        if delivery.event.source == Source::Crm {
            let status = delivery.answer.json()["status"].as_str().unwrap_or_default().to_owned();
            assert!(
                ["accepted", "duplicate"].contains(&status.as_str()),
                "{}",
                delivery.answer.body
            );
            *accepted.entry(&delivery.event.body).or_default() += usize::from(status == "accepted");
        }
    }
    let wrong: Vec<_> = accepted.values().filter(|&&count| count != 1).collect();
    assert!(wrong.is_empty(), "CRM events accepted other than once: {wrong:?}");
}

async fn deliver(history: &History, shuffle_seed: u64) -> BTreeMap<(Source, String), SdkItem> {
    let deliveries = history.deliveries(shuffle_seed, DUPLICATE_SHARE);
    assert!(
        deliveries.len() > history.events.len(),
        "some events are delivered twice"
    );
    let sent = send_concurrently(&history.mid, deliveries, CLIENTS).await;
    check_answers(&sent);
    entity_items(&stack::inspection_client(), &history.mid).await
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn shuffled_duplicated_concurrent_deliveries_converge_to_the_in_order_items() {
    let seed = stack::seed("CONVERGENCE_SEED");
    let shape = shape();
    let mid = unique_mid("converge");
    let history = History::generate(seed, &mid, shape, now_unix(), dev_activity_secret());
    assert_eq!(history.entities(), shape.entities);
    let oracle = history.oracle_of(|_| true);
    let db = stack::inspection_client();

    let first = deliver(&history, seed ^ 1).await;
    let wrong = mismatches(&oracle.items(), &first);
    assert!(
        wrong.is_empty(),
        "seed {seed}: not the history applied in order:\n{}",
        wrong.join("\n")
    );
    assert_eq!(
        record_keys(&db, &mid).await,
        oracle.record_keys(),
        "seed {seed}: each CRM item records its events, one nonce record per callback"
    );

    purge_tenant(&db, &mid).await;
    let second = deliver(&history, seed ^ 2).await;
    let strip = |items: BTreeMap<(Source, String), SdkItem>| -> Vec<_> {
        items
            .into_iter()
            .map(|(key, mut item)| {
                item.remove("updated_at");
                (key, item)
            })
            .collect()
    };
    let (first, second) = (strip(first), strip(second));
    for ((key, a), (_, b)) in first.iter().zip(&second) {
        assert_eq!(a, b, "seed {seed}: {key:?} differs between the two shuffles");
    }
    assert_eq!(first.len(), second.len());
    purge_tenant(&db, &mid).await;
}
