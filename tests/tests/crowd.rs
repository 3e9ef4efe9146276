//! One lead, a long history, a crowd of senders (contract 4: concurrent deliveries never lose an
//! update), over HTTP to the functions served by `cargo lambda watch`.
//!
//! The history has more events than the item's record of applied events keeps (128, docs/items.md
//! "Bound"). Its oldest events arrive last, after the newer ones: each of them is older than
//! every event the record keeps and written over in every register, so merging it changes no
//! value and no bookkeeping, only `event_count` and `version`. Some of the newest events are
//! delivered twice. 32 senders post everything at once to the one lead.
//!
//! The expected item is computed here straight from the generated events (no merge code of the
//! model crate): every field holds the value of the newest event that carried it, the newest
//! event's time and type are shown, and `event_count` and `version` are the number of distinct
//! events (plus, at most, one for each event past the record's bound answered 503 whose write
//! committed all the same: contract 4, "Chosen bound"). The newest events are always inside the record's bound, so their copies are
//! duplicates whatever the order; the old events are delivered once each.
//!
//! `make test` sends 300 events (100 of them late) and 30 copies; `make soak` (`SOAK=1`) 2,000
//! events (700 late) and 128 copies. `CROWD_SEED` replays a run; the seed is printed on failure.

use std::collections::{BTreeMap, HashMap, HashSet};

use aws_sdk_dynamodb::types::AttributeValue;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tests::deliver::{send_concurrently, Sent};
use tests::history::{Event, Source};
use tests::stack::{self, unique_mid};

const SENDERS: usize = 32;
/// The record keeps at least this many of the newest applied events (docs/items.md "Bound"):
/// copies of these are duplicates whatever the delivery order.
const RECORD_BOUND: usize = 128;
/// Rounds of redelivering what was answered 503, as a sender's retries would.
const RETRY_ROUNDS: usize = 5;
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/crm/lead_object_update.json");
/// The first event's `create_time`; event `i` has `FIRST_TIME + i`, so no two share a time.
const FIRST_TIME: i64 = 1_700_000_000;

struct Size {
    events: usize,
    late: usize,
    copies: usize,
}

fn size() -> Size {
    if stack::soak() {
        Size {
            events: 2_000,
            late: 700,
            copies: RECORD_BOUND,
        }
    } else {
        Size {
            events: 300,
            late: 100,
            copies: 30,
        }
    }
}

/// One generated event and the values it carries.
struct Generated {
    body: String,
    /// `mapping_data` field → after-value (all strings here, never cleared).
    fields: BTreeMap<String, String>,
}

/// Event `i` of the lead: an `object_update` at `FIRST_TIME + i` that sets `name`; every third
/// also sets `email`, every seventh `company_name`; the five oldest alone set `remark`, which
/// only a late event can fill.
fn generate(mid: &str, entity_id: &str, i: usize, rng: &mut StdRng) -> Generated {
    let mut body: Value = serde_json::from_str(&std::fs::read_to_string(FIXTURE).expect("the fixture")).unwrap();
    let mut fields = BTreeMap::from([("name".to_owned(), format!("name-{i}-{:04x}", rng.random::<u16>()))]);
    if i.is_multiple_of(3) {
        fields.insert("email".to_owned(), format!("lead{i}@example.com"));
    }
    if i.is_multiple_of(7) {
        fields.insert("company_name".to_owned(), format!("公司 {i}"));
    }
    if i < 5 {
        fields.insert("remark".to_owned(), format!("备注 {i}"));
    }
    body["mid"] = json!(mid);
    body["create_time"] = json!(FIRST_TIME + i as i64);
    let extra = &mut body["extra_data"];
    extra["entity_id"] = json!(entity_id);
    extra["operator_id"] = json!(20_000 + i);
    extra["mapping_data"] = fields.iter().map(|(k, v)| (k.clone(), json!(["before", v]))).collect();
    extra["mapping_data_text"] = fields.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    Generated {
        body: body.to_string(),
        fields,
    }
}

/// The deliveries: the newer events and the copies of the newest, shuffled; then the late ones
/// (the `late` oldest events), shuffled among themselves.
fn deliveries(events: &[Generated], entity_id: &str, size: &Size, rng: &mut StdRng) -> Vec<Event> {
    let event = |g: &Generated| Event {
        source: Source::Crm,
        entity_id: entity_id.to_owned(),
        body: g.body.clone(),
    };
    let newest = &events[events.len() - RECORD_BOUND..];
    let mut early: Vec<Event> = events[size.late..].iter().map(event).collect();
    early.extend((0..size.copies).map(|_| event(&newest[rng.random_range(0..newest.len())])));
    early.shuffle(rng);
    let mut late: Vec<Event> = events[..size.late].iter().map(event).collect();
    late.shuffle(rng);
    early.extend(late);
    early
}

/// Sends everything with [`SENDERS`] senders, then redelivers what was answered 503 until
/// nothing is (as the senders' retries would). Every answer in the end is 200. Also returns the
/// bodies that were answered 503 at least once.
async fn deliver(mid: &str, deliveries: Vec<Event>, seed: u64) -> (Vec<Sent>, HashSet<String>) {
    let mut answered = Vec::new();
    let mut refused = HashSet::new();
    let mut pending = deliveries;
    for _ in 0..RETRY_ROUNDS {
        let sent = send_concurrently(mid, pending, SENDERS).await;
        let (unavailable, done): (Vec<Sent>, Vec<Sent>) = sent
            .into_iter()
            .partition(|s| s.answer.status == 503 && s.answer.error_code().as_deref() == Some("storage_unavailable"));
        answered.extend(done);
        pending = unavailable.into_iter().map(|s| s.event).collect();
        refused.extend(pending.iter().map(|event| event.body.clone()));
        if pending.is_empty() {
            break;
        }
        eprintln!("crowd: {} deliveries answered 503, redelivering them", pending.len());
    }
    assert!(
        pending.is_empty(),
        "seed {seed}: still answered 503 after {RETRY_ROUNDS} rounds"
    );
    for sent in &answered {
        assert_eq!(sent.answer.status, 200, "seed {seed}: {}", sent.answer.body);
    }
    (answered, refused)
}

fn s(item: &HashMap<String, AttributeValue>, name: &str) -> String {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .unwrap_or_else(|| panic!("`{name}` is not a string in {item:?}"))
        .clone()
}

fn n(item: &HashMap<String, AttributeValue>, name: &str) -> u64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("`{name}` is not a number in {item:?}"))
}

fn string_map(item: &HashMap<String, AttributeValue>, name: &str) -> BTreeMap<String, String> {
    item.get(name)
        .and_then(|v| v.as_m().ok())
        .unwrap_or_else(|| panic!("`{name}` is not a map in {item:?}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.as_s().expect("a string value").clone()))
        .collect()
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn a_crowd_on_one_lead_with_late_events_past_the_bound_loses_no_count() {
    let seed = stack::seed("CROWD_SEED");
    let size = size();
    let mut rng = StdRng::seed_from_u64(seed);
    let mid = unique_mid("crowd");
    let entity_id = format!("crowd{:016x}", rng.random::<u64>());
    let events: Vec<Generated> = (0..size.events)
        .map(|i| generate(&mid, &entity_id, i, &mut rng))
        .collect();

    let (sent, refused) = deliver(&mid, deliveries(&events, &entity_id, &size, &mut rng), seed).await;

    // Each distinct event accepted exactly once and every copy a duplicate, except that an
    // event answered 503 may have been applied all the same (contract 2.3): its redelivery is then
    // a duplicate, or, for an event older than the record keeps, accepted again (contract 4,
    // "Chosen bound"; the count below allows the same).
    let mut answers: HashMap<&str, (usize, usize)> = HashMap::new();
    for delivery in &sent {
        let (accepted, duplicate) = answers.entry(delivery.event.body.as_str()).or_default();
        match delivery.answer.json()["status"].as_str() {
            Some("accepted") => *accepted += 1,
            Some("duplicate") => *duplicate += 1,
            other => panic!("seed {seed}: status {other:?}: {}", delivery.answer.body),
        }
    }
    assert_eq!(answers.len(), size.events, "seed {seed}: every event answered 200");
    let past_bound = size.events.saturating_sub(RECORD_BOUND);
    for (i, generated) in events.iter().enumerate() {
        let (accepted, _) = answers[generated.body.as_str()];
        let was_refused = refused.contains(&generated.body);
        let once = accepted == 1 || (accepted == 0 && was_refused) || (accepted == 2 && was_refused && i < past_bound);
        assert!(
            once,
            "seed {seed}: accepted {accepted} times (answered 503 first: {was_refused}): {}",
            generated.body
        );
    }
    let deliveries_answered: usize = answers.values().map(|(a, d)| a + d).sum();
    assert_eq!(deliveries_answered, size.events + size.copies, "seed {seed}");

    // The expected item, straight from the events: the newest value of each field.
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    for generated in &events {
        fields.extend(generated.fields.clone());
    }
    let newest = size.events - 1;

    let item = stack::entity_item(&stack::crm_table(), &mid, &entity_id)
        .await
        .expect("the lead is stored");
    // Every distinct event counted, none lost. One more count is allowed, and only, for an
    // event answered 503 whose write committed all the same (contract 2.3) while the event was
    // older than the record keeps: its redelivery is then merged again and counted again
    // (contract 4, "Chosen bound"). Only the events outside the newest RECORD_BOUND can be that.
    let (count, version) = (n(&item, "event_count"), n(&item, "version"));
    assert_eq!(count, version, "seed {seed}: one write per counted event");
    let want_count = size.events as u64;
    let refused_past_bound = events[..past_bound]
        .iter()
        .filter(|generated| refused.contains(&generated.body))
        .count() as u64;
    assert!(
        (want_count..=want_count + refused_past_bound).contains(&count),
        "seed {seed}: event_count {count} must be the {want_count} distinct events, plus at most \
         the {refused_past_bound} events older than the record's bound that were answered 503"
    );
    assert_eq!(string_map(&item, "fields"), fields, "seed {seed}: fields");
    assert_eq!(string_map(&item, "field_labels"), fields, "seed {seed}: field_labels");
    assert_eq!(
        n(&item, "event_time"),
        (FIRST_TIME + newest as i64) as u64,
        "seed {seed}"
    );
    assert_eq!(s(&item, "last_event_type"), "object_update", "seed {seed}");
    assert_eq!(s(&item, "last_action_keyword"), "object_update", "seed {seed}");
    let last_raw: Value = serde_json::from_str(&s(&item, "last_raw")).expect("last_raw is JSON");
    let newest_body: Value = serde_json::from_str(&events[newest].body).unwrap();
    assert_eq!(last_raw, newest_body, "seed {seed}: last_raw is the newest event");
    for (name, want) in [
        ("object_name", "lead"),
        ("object_id", "628"),
        ("life_status", "baby_lead"),
        ("business_type", "FcKtzPvUzZ4dDEi7gNGZqa"),
        ("business_type_name", "jeffery创建新的"),
        ("lead_omni_user_uuid", "2GRhJU3V7VstF3SbdRS4MC"),
        ("created_at", "2023-02-27T15:06:32+08:00"),
    ] {
        assert_eq!(s(&item, name), want, "seed {seed}: {name}");
    }
    assert_eq!(n(&item, "format"), 2, "seed {seed}");
    for absent in ["owner", "team_members", "voided", "lead_pool", "leads_status"] {
        assert!(!item.contains_key(absent), "seed {seed}: `{absent}` set by no event");
    }

    tests::tables::purge_tenant(&stack::inspection_client(), &mid).await;
}
