//! Refused deliveries are kept, never acted on (contract 2.4), end to end: forged and malformed
//! deliveries posted over HTTP to both functions, the quarantine read back from the local
//! DynamoDB through the real SDK.
//!
//! One test, in steps: the flood at the end uses up the global cap's window, which the first
//! steps need, and counts the metrics of its own requests only.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use shared::quarantine::CapWindow;
use shared::source::Source;
use shared::timefmt::utc_rfc3339;
use tests::http::{activity_url, client, crm_url, post, post_crm, signed_activity};
use tests::local::dev_crm_secret;
use tests::metrics_check::emf_counter;
use tests::quarantine::{all_records, global_cap, kept_for, post_until_kept, store};
use tests::signing::{now_unix, sign_crm, unique_nonce};
use tests::stack::unique_mid;
use tests::tables::Table;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures");

fn fixture(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/{path}")).unwrap()).unwrap()
}

fn crm_body(mid: &str, entity: &str) -> String {
    let mut payload = fixture("crm/seed_124_object_create.json");
    payload["mid"] = mid.into();
    payload["extra_data"]["entity_id"] = entity.into();
    payload.to_string()
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn refused_deliveries_are_kept_accepted_ones_are_not_and_the_cap_holds() {
    let http = client();

    // 1. A CRM event signed with a secret the stack does not know: 401, kept with what contract 2.4
    //    lists, and nothing applied.
    let mid = unique_mid("quarantine-crm");
    let record = post_until_kept(Source::Crm, &mid, |attempt| {
        let http = http.clone();
        let body = crm_body(&mid, &format!("Q{attempt}"));
        async move {
            let answer = post_crm(&http, &body, "a-secret-nobody-configured").await;
            assert_eq!(
                answer.refusal(),
                (401, "invalid_signature".to_owned()),
                "{}",
                answer.body
            );
        }
    })
    .await;
    assert_eq!((record.status, record.code.as_str()), (401, "invalid_signature"));
    assert_eq!(record.tenant.as_deref(), Some(mid.as_str()));
    let entity = serde_json::from_str::<Value>(&record.body).unwrap()["extra_data"]["entity_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(record.body, crm_body(&mid, &entity), "the body exactly as sent");
    assert_eq!(
        record.signature_headers.get("x-signature"),
        Some(&sign_crm(record.body.as_bytes(), "a-secret-nobody-configured"))
    );
    assert!(
        record.header_names.contains(&"content-type".to_owned()),
        "{:?}",
        record.header_names
    );
    assert!(record.delivery_id.starts_with(&record.received_at));
    let ttl = record.expires_at - now_unix();
    assert!((13 * 86_400..=14 * 86_400).contains(&ttl), "14 days by default: {ttl}");
    let db = tests::stack::inspection_client();
    for table in [Table::CrmEntities] {
        assert!(
            table.query(&db, &mid).await.is_empty(),
            "nothing of a quarantined delivery is applied ({table:?})"
        );
    }

    // 2. An accepted delivery is not kept (the record would be written before the answer).
    let accepted_mid = unique_mid("quarantine-ok");
    let answer = post_crm(&http, &crm_body(&accepted_mid, "OK"), dev_crm_secret()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(kept_for(Source::Crm, &accepted_mid).await.is_empty());
    // Nor a refusal contract 2.4 leaves out: a body that is not of the CRM's shape.
    let probe_mid = unique_mid("quarantine-probe");
    let body = format!(r#"{{"mid":"{probe_mid}"}}"#);
    let answer = post_crm(&http, &body, "a-secret-nobody-configured").await;
    assert_eq!(answer.status, 401);
    assert!(kept_for(Source::Crm, &probe_mid).await.is_empty());

    // 3. An activity callback with a wrong sign: kept with its tenant from the path.
    let activity_mid = unique_mid("quarantine-activity");
    let record = post_until_kept(Source::Activity, &activity_mid, |_| {
        let http = http.clone();
        let url = activity_url(&activity_mid);
        let body = signed_activity(
            &fixture("activity/event_add.json"),
            &unique_nonce(),
            now_unix(),
            "wrong",
        );
        async move {
            let answer = post(&http, &url, &[], body).await;
            assert_eq!(
                answer.refusal(),
                (401, "invalid_signature".to_owned()),
                "{}",
                answer.body
            );
        }
    })
    .await;
    assert_eq!(record.tenant.as_deref(), Some(activity_mid.as_str()));
    assert_eq!(record.code, "invalid_signature");

    // 4. The flood.
    flood(&http).await;
}

/// Concurrent senders of the flood: as many as the local stack runs instances of a function, so
/// that the flood is spread over them.
const SENDERS: usize = 16;

/// A flood of forged CRM requests from many concurrent senders (10,000 in `make soak`, 2,000 in
/// `make test`): in every global window it touched, at most `QUARANTINE_GLOBAL_MAX` records are
/// kept across all instances, exactly that many in a window the flood alone could fill (less
/// only the writes that failed, which are counted), and every forged delivery not kept is
/// counted in `quarantine_dropped`.
async fn flood(http: &reqwest::Client) {
    let (cap, window_seconds) = global_cap();
    let total = if tests::stack::soak() { 10_000 } else { 2_000 };
    let log_path = std::env::var("TEST_FUNCTIONS_LOG").expect("TEST_FUNCTIONS_LOG: run with `make test`");
    let log_offset = std::fs::metadata(&log_path).expect("the function log").len();
    let flood_mid = unique_mid("quarantine-flood");
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            let http = http.clone();
            let next = Arc::clone(&next);
            let body = crm_body(&flood_mid, "FLOOD");
            tokio::spawn(async move {
                // (sent, answered) in Unix seconds, per request.
                let mut spans = Vec::new();
                while next.fetch_add(1, Ordering::SeqCst) < total {
                    let body = body.replacen("FLOOD", &unique_nonce(), 1);
                    let sent = now_unix();
                    let answer = post(&http, &crm_url(), &[("X-Signature", &"0".repeat(40))], body).await;
                    assert_eq!(answer.refusal(), (401, "invalid_signature".to_owned()));
                    spans.push((sent, now_unix()));
                }
                spans
            })
        })
        .collect();
    let mut spans = Vec::with_capacity(total);
    for sender in senders {
        spans.extend(sender.await.expect("a flood sender"));
    }
    let took = started.elapsed();

    // Which windows the flood touched, and how many of its requests fell wholly inside each
    // (the functions' clock read between sending and answering).
    let window_of = |second: i64| CapWindow::containing(second, window_seconds);
    let mut inside: BTreeMap<i64, usize> = BTreeMap::new();
    let mut touched = BTreeSet::new();
    for (sent, answered) in spans {
        let (first, last) = (window_of(sent), window_of(answered));
        touched.extend([first.start, last.start]);
        if first == last {
            *inside.entry(first.start).or_default() += 1;
        }
    }

    // Every forged delivery shows up in the metrics, kept or dropped (log lines land a moment
    // after the answers).
    let counter = |log: &str, name: &str, reason: Option<&str>| {
        let mut dimensions = vec![("source", "crm")];
        dimensions.extend(reason.map(|reason| ("reason", reason)));
        emf_counter(log, name, &dimensions)
    };
    let patience = Instant::now() + Duration::from_secs(30);
    let log = loop {
        let bytes = std::fs::read(&log_path).expect("the function log");
        let log = String::from_utf8_lossy(&bytes[usize::try_from(log_offset).unwrap()..]).into_owned();
        let counted = counter(&log, "quarantined", None) + counter(&log, "quarantine_dropped", None);
        if counted >= total as u64 || Instant::now() > patience {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let dropped: BTreeMap<&str, u64> = [
        "rate_limited",
        "global_cap",
        "cap_unavailable",
        "write_failed",
        "too_large",
    ]
    .into_iter()
    .map(|reason| (reason, counter(&log, "quarantine_dropped", Some(reason))))
    .collect();
    let quarantined = counter(&log, "quarantined", None);

    let records = all_records().await;
    let counts = store().cap_counts().await.expect("the cap counters read");
    let flood_kept = records
        .iter()
        .filter(|record| record.tenant.as_deref() == Some(flood_mid.as_str()))
        .count() as u64;
    println!(
        "flood: {total} forged requests from {SENDERS} senders in {:.1} s; {flood_kept} kept \
         (cap {cap} per {window_seconds} s window); quarantined {quarantined}, dropped {dropped:?}",
        took.as_secs_f64()
    );
    assert_eq!(
        quarantined + dropped.values().sum::<u64>(),
        total as u64,
        "every forged delivery is counted, kept or dropped"
    );
    // A record write that ran out of its 800 ms is counted `write_failed`, but DynamoDB may
    // still commit it after the function gave up: such a record exists without being counted.
    assert!(
        quarantined <= flood_kept && flood_kept <= quarantined + dropped["write_failed"],
        "each record of the flood is counted as quarantined, or as a write that timed out: \
         {flood_kept} records, {quarantined} quarantined, {dropped:?}"
    );
    assert!(dropped["global_cap"] > 0, "the global cap dropped some: {dropped:?}");
    // A failed record write spends its slot; a failed counter call may have spent one.
    let failures = dropped["write_failed"] + dropped["cap_unavailable"];

    let mut full_windows = 0;
    for start in touched {
        let window = window_of(start);
        let (from, until) = (window.key(), utc_rfc3339(window.end()));
        let kept_in_window = records
            .iter()
            .filter(|record| (from.as_str()..until.as_str()).contains(&record.received_at.as_str()))
            .count() as u64;
        let granted = counts.get(&from).copied().map_or(0, u64::from);
        let flood_inside = inside.get(&start).copied().unwrap_or(0);
        println!(
            "window {from}: {flood_inside} flood requests inside, {granted} slots granted, \
             {kept_in_window} records (both sources, every tenant)"
        );
        assert!(granted <= u64::from(cap), "window {from}: {granted} slots > cap {cap}");
        assert!(
            kept_in_window <= granted,
            "window {from}: {kept_in_window} records > {granted} slots granted"
        );
        if flood_inside >= cap as usize {
            // Enough eligible deliveries to fill the window: the counter reached the cap.
            full_windows += 1;
            // Without failures (the usual case) both are exactly the cap.
            assert!(
                granted + failures >= u64::from(cap),
                "window {from} was flooded: {granted} slots granted, {failures} failures, cap {cap}"
            );
            assert!(
                kept_in_window + failures >= u64::from(cap),
                "window {from}: {kept_in_window} records, {failures} failures, cap {cap}"
            );
        }
    }
    assert!(
        full_windows >= 1,
        "the flood of {total} filled at least one window of {cap}"
    );
}
