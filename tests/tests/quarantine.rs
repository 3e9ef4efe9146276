//! Refused deliveries are kept, never acted on (SPEC 2.4), end to end: forged and malformed
//! deliveries posted over HTTP to both functions, the quarantine read back from the local
//! DynamoDB through the real SDK.
//!
//! One test, in steps: the flood at the end uses up the instances' budgets, which the first
//! steps need.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::Value;
use shared::quarantine::Source;
use shared::timefmt::utc_rfc3339;
use tests::http::{activity_url, client, crm_url, post, post_crm, signed_activity};
use tests::local::dev_crm_secret;
use tests::quarantine::{instances, kept_for, max_per_minute, post_until_kept};
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

    // 1. A CRM event signed with a secret the stack does not know: 401, kept with what SPEC 2.4
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
    // Nor a refusal SPEC 2.4 leaves out: a body that is not of the CRM's shape.
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

    // 4. A flood of forged requests, from a few concurrent senders: at most the configured
    //    number per instance and minute is kept, and the rest is dropped.
    let flood_mid = unique_mid("quarantine-flood");
    let cap = max_per_minute();
    let total = 2 * cap * instances() + 50;
    let started = now_unix();
    let sent = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let http = http.clone();
            let sent = Arc::clone(&sent);
            let body = crm_body(&flood_mid, "FLOOD");
            tokio::spawn(async move {
                while sent.fetch_add(1, Ordering::SeqCst) < total {
                    let body = body.replacen("FLOOD", &unique_nonce(), 1);
                    let answer = post(&http, &crm_url(), &[("X-Signature", &"0".repeat(40))], body).await;
                    assert_eq!(answer.refusal(), (401, "invalid_signature".to_owned()));
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("a flood sender");
    }
    let finished = now_unix();
    let minutes = u64::try_from(finished / 60 - started / 60 + 1).unwrap();
    let kept = kept_for(Source::Crm, &flood_mid).await.len() as u64;
    println!(
        "flood: {total} forged requests from {} to {}, {kept} kept (cap {cap} per instance and \
         minute, at most {} instances, {minutes} minute window(s))",
        utc_rfc3339(started),
        utc_rfc3339(finished),
        instances()
    );
    assert!(kept >= 1, "the first forged delivery of a fresh minute is kept");
    assert!(
        kept <= cap * instances() * minutes,
        "{kept} kept > {cap} x {} instances x {minutes} minutes",
        instances()
    );
    assert!(kept < total, "the cap dropped some of the {total}");
}
