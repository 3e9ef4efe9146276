//! Storage outage in the middle of a stream of deliveries (contract 2.3, 4), over HTTP.
//!
//! The local DynamoDB server is stopped with SIGSTOP and continued with SIGCONT (its PID comes
//! from the stack as `TEST_DYNAMODB_PID`). A stopped server still completes TCP handshakes from
//! the kernel's backlog and then never answers: the harder kind of outage, ended only by the
//! functions' own timeouts, and one where a write sent before the deadline waits in the backlog
//! and commits when the server continues. (A refused connection is covered at the adapter level
//! in `store.rs`.)
//!
//! The stream: a third of a shuffled history is delivered; the server stops; the next deliveries
//! must each get `503` within 5 s; the server continues and the rest of the stream is delivered.
//! What contract 2.3 promises is then checked before any retry:
//!
//! - every event answered 200 is stored;
//! - an event answered 503 is wholly applied or not at all: the events found applied (a CRM
//!   event in its item's record of applied events, a callback by its nonce record) are exactly
//!   those whose effect the items show, so that every item, `version` and `event_count`
//!   included, is the oracle's item of the acknowledged events plus those, and no nonce record
//!   exists without its item.
//!
//! Finally every event answered 503 is delivered again, as the senders' retries would: a CRM
//! event is accepted once if it was not applied yet, else it is a duplicate; and the items
//! (`version` and `event_count` included) and records must be those of the whole history. The
//! expected state comes from the independent oracle (`tests::oracle`). The seed is printed;
//! `OUTAGE_SEED` replays it.
//!
//! This binary holds one test: while the server is stopped no other test may use the stack, and
//! `cargo test` runs test binaries one after another.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use tests::deliver::{send_concurrently, Sent};
use tests::history::{Event, History, Shape, Source};
use tests::http::dev_activity_secret;
use tests::oracle::{callback_nonce, crm_stamp};
use tests::signing::now_unix;
use tests::stack::{self, unique_mid};
use tests::tables::{entity_items, mismatches, purge_tenant, record_keys};

/// contract 2.3: every answer, 503 included, within 5 s.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
const CLIENTS: usize = 4;

/// The local DynamoDB server, stopped while this guard lives and continued when it is dropped,
/// also when the test fails.
struct Stopped(String);

impl Stopped {
    fn stop() -> Self {
        let pid =
            std::env::var("TEST_DYNAMODB_PID").expect("TEST_DYNAMODB_PID is not set: run this test with `make test`");
        signal("-STOP", &pid);
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal("-CONT", &self.0);
    }
}

fn signal(which: &str, pid: &str) {
    let status = Command::new("kill").args([which, pid]).status().expect("kill runs");
    assert!(status.success(), "kill {which} {pid} failed");
}

fn shape() -> Shape {
    let (entities, events) = if stack::soak() { (40, 2_000) } else { (6, 90) };
    Shape {
        entities,
        events,
        activity_share: 0.5,
        activity_spread_seconds: stack::activity_window_seconds() / 3,
    }
}

fn assert_all_accepted(sent: &[Sent], phase: &str) {
    for delivery in sent {
        assert_eq!(
            delivery.answer.status, 200,
            "{phase}: {:?} {}: {}",
            delivery.event.source, delivery.event.entity_id, delivery.answer.body
        );
    }
}

/// The key under which the store records an event ([`record_keys`]): a CRM event's stamp in its
/// item's record, a callback's nonce.
fn record_key(event: &Event) -> (Source, String) {
    match event.source {
        Source::Crm => (Source::Crm, crm_stamp(&event.body).record_key()),
        Source::Activity => (Source::Activity, callback_nonce(&event.body)),
    }
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn deliveries_during_an_outage_get_503_in_time_are_wholly_applied_or_not_and_exact_when_retried() {
    let seed = stack::seed("OUTAGE_SEED");
    let mid = unique_mid("outage");
    let history = History::generate(seed, &mid, shape(), now_unix(), dev_activity_secret());
    let mut deliveries = history.deliveries(seed, 0.1);
    let during = deliveries.len() / 3..deliveries.len() / 3 + if stack::soak() { 64 } else { 12 };
    let after = deliveries.split_off(during.end);
    let refused: Vec<Event> = deliveries.split_off(during.start);
    let before = deliveries;
    let db = stack::inspection_client();

    let sent_before = send_concurrently(&mid, before, CLIENTS).await;
    assert_all_accepted(&sent_before, "before the outage");

    let sent_during = {
        let _stopped = Stopped::stop();
        send_concurrently(&mid, refused.clone(), CLIENTS).await
    };
    let mut storage_refusals = 0;
    for delivery in &sent_during {
        let what = format!(
            "seed {seed}: during the outage: {:?} {}",
            delivery.event.source, delivery.event.entity_id
        );
        // Locally the secrets live on the stopped server too: an instance that has not read them
        // yet answers `503 secrets_unavailable` (nothing written), which the sender retries as
        // it retries storage's 503.
        let (status, code) = delivery.answer.refusal();
        assert!(
            status == 503 && (code == "storage_unavailable" || code == "secrets_unavailable"),
            "{what}: {status} {code} {}",
            delivery.answer.body
        );
        storage_refusals += usize::from(code == "storage_unavailable");
        assert!(
            delivery.elapsed < ANSWER_WITHIN,
            "{what}: answered after {:?}",
            delivery.elapsed
        );
    }
    // The instances read their secrets before the outage: the storage path itself must have
    // met the outage, not only the secrets' read.
    assert!(
        storage_refusals > 0,
        "seed {seed}: no delivery reached the stopped storage ({} refused, all for secrets)",
        sent_during.len()
    );

    let sent_after = send_concurrently(&mid, after, CLIENTS).await;
    assert_all_accepted(&sent_after, "after the outage");

    // Before any retry: what was acknowledged is stored, and of the events answered 503, those
    // the records show applied are wholly applied (their effect in the items), the others not
    // at all. A write sent before the outage's deadline may have committed when the server
    // continued: that is the one way a 503 turns out applied.
    let acknowledged: BTreeSet<&str> = sent_before
        .iter()
        .chain(&sent_after)
        .map(|sent| sent.event.body.as_str())
        .collect();
    let stored_records = record_keys(&db, &mid).await;
    let landed: BTreeSet<String> = refused
        .iter()
        .filter(|event| !acknowledged.contains(event.body.as_str()))
        .filter(|event| stored_records.contains(&record_key(event)))
        .map(|event| event.body.clone())
        .collect();
    let applied = |event: &Event| acknowledged.contains(event.body.as_str()) || landed.contains(event.body.as_str());
    let oracle = history.oracle_of(applied);
    let wrong = mismatches(&oracle.items(), &entity_items(&db, &mid).await);
    assert!(
        wrong.is_empty(),
        "seed {seed}: after the outage ({} answered 503 found applied):\n{}",
        landed.len(),
        wrong.join("\n")
    );
    assert_eq!(
        stored_records,
        oracle.record_keys(),
        "seed {seed}: records after the outage"
    );

    // The senders retry what was refused.
    let retried = send_concurrently(&mid, refused, CLIENTS).await;
    assert_all_accepted(&retried, "retries");
    let mut accepted: BTreeMap<&str, usize> = BTreeMap::new();
    for sent in retried.iter().filter(|sent| sent.event.source == Source::Crm) {
        let status = sent.answer.json()["status"].as_str().unwrap_or_default().to_owned();
        assert!(
            ["accepted", "duplicate"].contains(&status.as_str()),
            "{}",
            sent.answer.body
        );
        *accepted.entry(sent.event.body.as_str()).or_default() += usize::from(status == "accepted");
    }
    for (body, count) in accepted {
        let want = usize::from(!acknowledged.contains(body) && !landed.contains(body));
        assert_eq!(
            count, want,
            "seed {seed}: a retried CRM event is accepted once if it was not applied yet, else a duplicate: {body}"
        );
    }
    let oracle = history.oracle_of(|_| true);
    let wrong = mismatches(&oracle.items(), &entity_items(&db, &mid).await);
    assert!(
        wrong.is_empty(),
        "seed {seed}: after the retries:\n{}",
        wrong.join("\n")
    );
    assert_eq!(
        record_keys(&db, &mid).await,
        oracle.record_keys(),
        "seed {seed}: records after the retries"
    );
    purge_tenant(&db, &mid).await;
}
