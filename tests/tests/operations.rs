//! Operations, end to end against the local stack (scripts/stack.sh: moto serves DynamoDB and
//! Secrets Manager, the functions read their secrets from there every 2 s):
//!
//! - a new tenant and a secret rotation written to the local Secrets Manager take effect
//!   without restarting the functions;
//! - a malformed secret document changes nothing: every instance, a fresh one included, reads
//!   the previous version (`AWSPREVIOUS`);
//! - a tenant listed with an empty list is refused `no_secret`, whatever the default;
//! - a tenant and a user agent of any length reach the log and the metrics cut short;
//! - the function log (the functions' own lines, their EMF documents and cargo lambda's lines,
//!   which run at info level in `make test` on purpose) holds neither a secret nor a signature
//!   value, while each refusal has its diagnostic line.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use serde_json::Value;
use tests::http::{activity_url, client, crm_url, post, post_crm, signed_activity, Answer};
use tests::local::dev_activity_secret;
use tests::signing::{now_unix, sign_crm, unique_nonce};
use tests::stack::unique_mid;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures");
/// Longest wait for a change to be seen: many refresh intervals, so that only a change that is
/// never picked up fails (no timing is asserted).
const PATIENCE: Duration = Duration::from_secs(60);

/// The tests that change or read the secret documents take turns: one of them puts a malformed
/// document for a moment, and each put moves `AWSPREVIOUS`.
static DOCUMENTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run these tests with `make test`"))
}

fn secrets_client() -> aws_sdk_secretsmanager::Client {
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .endpoint_url(required("TEST_SECRETS_ENDPOINT"))
        .build();
    aws_sdk_secretsmanager::Client::from_conf(config)
}

async fn read_document(sm: &aws_sdk_secretsmanager::Client, id: &str) -> Value {
    let output = sm
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .expect("the local Secrets Manager answers");
    serde_json::from_str(output.secret_string().expect("a string secret")).expect("a JSON document")
}

async fn write_document(sm: &aws_sdk_secretsmanager::Client, id: &str, document: &Value) {
    sm.put_secret_value()
        .secret_id(id)
        .secret_string(document.to_string())
        .send()
        .await
        .expect("the local Secrets Manager answers");
}

/// Gives `mid` its own list in the CRM document (`None` removes it), keeping every other entry.
async fn set_crm_tenant(sm: &aws_sdk_secretsmanager::Client, mid: &str, secrets: Option<&[&str]>) {
    let id = required("CRM_SECRETS_MANAGER_ID");
    let mut document = read_document(sm, &id).await;
    let tenants = document
        .as_object_mut()
        .unwrap()
        .entry("tenants")
        .or_insert_with(|| serde_json::json!({}));
    match secrets {
        Some(list) => tenants[mid] = list.to_vec().into(),
        None => {
            tenants.as_object_mut().unwrap().remove(mid);
        }
    }
    write_document(sm, &id, &document).await;
}

/// Waits one refresh interval and a second: every function instance then reads the secret
/// again on its next request.
async fn every_instance_refreshed() {
    let seconds: u64 = required("SECRETS_REFRESH_SECONDS").parse().expect("whole seconds");
    tokio::time::sleep(Duration::from_secs(seconds + 1)).await;
}

fn crm_body(mid: &str) -> String {
    let mut payload: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/crm/lead_object_update.json")).unwrap())
            .unwrap();
    payload["mid"] = mid.into();
    payload["extra_data"]["entity_id"] = unique_nonce().into();
    payload.to_string()
}

/// Sends fresh CRM events for `mid` signed with `secret` until the answer is `want` (a status
/// and the CRM `status` or error code); returns how long that took.
async fn until_answer(http: &reqwest::Client, mid: &str, secret: &str, want: (u16, &str)) -> Duration {
    let started = Instant::now();
    loop {
        let answer = post_crm(http, &crm_body(mid), secret).await;
        if outcome(&answer) == (want.0, want.1.to_owned()) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < PATIENCE,
            "tenant {mid}: still {} {} after {PATIENCE:?}; want {want:?}",
            answer.status,
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn outcome(answer: &Answer) -> (u16, String) {
    if answer.status == 200 {
        (200, answer.json()["status"].as_str().unwrap_or_default().to_owned())
    } else {
        answer.refusal()
    }
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn a_new_tenant_and_a_rotation_take_effect_without_a_restart() {
    let _turn = DOCUMENTS.lock().await;
    let sm = secrets_client();
    let http = client();
    let mid = unique_mid("rotate");
    let (old, new) = (format!("old-{}", unique_nonce()), format!("new-{}", unique_nonce()));

    // Before it is listed, the tenant has the default secrets: its own is refused.
    assert_eq!(
        outcome(&post_crm(&http, &crm_body(&mid), &old).await),
        (401, "invalid_signature".into())
    );

    set_crm_tenant(&sm, &mid, Some(&[&old])).await;
    let onboarded = until_answer(&http, &mid, &old, (200, "accepted")).await;

    // Rotation without downtime: the new secret first, next to the old one...
    set_crm_tenant(&sm, &mid, Some(&[&new, &old])).await;
    let both = until_answer(&http, &mid, &new, (200, "accepted")).await;
    // Each instance has its own cache: past one interval, every one has read the change.
    every_instance_refreshed().await;
    assert_eq!(
        outcome(&post_crm(&http, &crm_body(&mid), &old).await),
        (200, "accepted".into())
    );
    // ...then the old one retired.
    set_crm_tenant(&sm, &mid, Some(&[&new])).await;
    let retired = until_answer(&http, &mid, &old, (401, "invalid_signature")).await;
    every_instance_refreshed().await;
    assert_eq!(
        outcome(&post_crm(&http, &crm_body(&mid), &new).await),
        (200, "accepted".into())
    );

    set_crm_tenant(&sm, &mid, None).await;
    println!(
        "taken into account after (refresh interval {}s): onboarding {onboarded:?}, new secret {both:?}, retirement {retired:?}",
        required("SECRETS_REFRESH_SECONDS")
    );
}

/// `rounds` bursts of `width` concurrent fresh CRM events for `mid` signed with `secret`: their
/// answers. Concurrent requests spread over the function's instances, starting new ones.
async fn bursts(http: &reqwest::Client, mid: &str, secret: &str, rounds: usize, width: usize) -> Vec<(u16, String)> {
    let mut outcomes = Vec::new();
    for _ in 0..rounds {
        let burst: Vec<_> = (0..width)
            .map(|_| {
                let (http, body, secret) = (http.clone(), crm_body(mid), secret.to_owned());
                tokio::spawn(async move { outcome(&post_crm(&http, &body, &secret).await) })
            })
            .collect();
        for request in burst {
            outcomes.push(request.await.expect("the request task"));
        }
    }
    outcomes
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn a_malformed_document_resolves_to_the_previous_version_on_every_instance() {
    let _turn = DOCUMENTS.lock().await;
    let sm = secrets_client();
    let http = client();
    let id = required("CRM_SECRETS_MANAGER_ID");
    let mid = unique_mid("malformed");
    let own = format!("own-{}", unique_nonce());

    // The tenant is onboarded; one instance at least has read it.
    set_crm_tenant(&sm, &mid, Some(&[&own])).await;
    until_answer(&http, &mid, &own, (200, "accepted")).await;
    let good = read_document(&sm, &id).await;

    // A broken put: JSON cut short (it still names the tenant's secret).
    let broken = good.to_string();
    sm.put_secret_value()
        .secret_id(&id)
        .secret_string(&broken[..broken.len() - 2])
        .send()
        .await
        .expect("the local Secrets Manager answers");
    every_instance_refreshed().await;
    // Each instance re-reads on its next request, waiting a moment only: wake them, then let
    // their reads land.
    let warm_up = bursts(&http, &unique_mid("malformed-default"), "dev-crm-secret", 2, 8).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = bursts(&http, &mid, &own, 3, 8).await;

    // An instance that starts now, with nothing read before: the previous version too.
    let env: shared::config::Env = [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        (
            "AWS_ENDPOINT_URL_SECRETS_MANAGER",
            required("TEST_SECRETS_ENDPOINT").as_str(),
        ),
    ]
    .into_iter()
    .collect();
    let fresh_client = shared::secrets_manager::client_for(&env.aws());
    let resolved =
        shared::secrets_manager::resolve(|stage| shared::secrets_manager::fetch(&fresh_client, &id, stage)).await;
    let fresh = shared::secrets_manager::CachedSecret::new(fresh_client.clone(), &id, Duration::from_secs(60), "crm")
        .current()
        .await;

    // The document is whole again before anything is asserted (the other suites read it).
    write_document(&sm, &id, &good).await;
    set_crm_tenant(&sm, &mid, None).await;

    let resolved = resolved.expect("the previous version is a document");
    assert_eq!(resolved.stage, shared::secrets_manager::Stage::Previous);
    assert!(resolved.current_malformed.is_some());
    let fresh = fresh.expect("a fresh instance reads the previous version");
    assert_eq!(
        fresh.for_tenant(&mid).map(|set| set.primary().expose().to_vec()),
        Some(own.as_bytes().to_vec()),
        "a fresh instance knows the tenant onboarded before the broken put"
    );
    let accepted = (200, "accepted".to_owned());
    assert!(warm_up.iter().all(|o| *o == accepted), "default secret: {warm_up:?}");
    assert!(
        after.iter().all(|o| *o == accepted),
        "every instance verifies with the previous version, which lists the tenant: {after:?}"
    );
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn a_tenant_listed_with_an_empty_list_is_refused_whatever_the_default() {
    let _turn = DOCUMENTS.lock().await;
    let sm = secrets_client();
    let http = client();
    let mid = unique_mid("blocked");
    // Not listed: the default list applies.
    assert_eq!(
        outcome(&post_crm(&http, &crm_body(&mid), "dev-crm-secret").await),
        (200, "accepted".into())
    );
    set_crm_tenant(&sm, &mid, Some(&[])).await;
    until_answer(&http, &mid, "dev-crm-secret", (401, "no_secret")).await;
    every_instance_refreshed().await;
    assert_eq!(
        outcome(&post_crm(&http, &crm_body(&mid), "dev-crm-secret").await),
        (401, "no_secret".into())
    );
    // Unlisted again: the default list again.
    set_crm_tenant(&sm, &mid, None).await;
    until_answer(&http, &mid, "dev-crm-secret", (200, "accepted")).await;
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn an_oversized_tenant_and_user_agent_are_cut_in_the_log_and_the_metrics() {
    use shared::bounded::{bounded, MAX_LOGGED_BYTES};
    let http = client();
    let mid = format!("{}-{}", unique_mid("oversized"), "m".repeat(2_000));
    let user_agent = format!("oversized-agent-{}-{}", unique_nonce(), "u".repeat(3_000));
    // Of the activity's shape, unsigned: refused, logged, counted.
    let answer = post(
        &http,
        &activity_url(&mid),
        &[("User-Agent", &user_agent)],
        r#"{"action":"event/add","attributes":{"event_id":"e1"}}"#,
    )
    .await;
    assert_eq!(answer.refusal(), (401, "missing_signature".into()));

    let (want_mid, want_agent) = (bounded(&mid).into_owned(), bounded(&user_agent).into_owned());
    assert!(want_mid.len() < MAX_LOGGED_BYTES + 20 && want_agent.len() < MAX_LOGGED_BYTES + 20);
    let log_path = required("TEST_FUNCTIONS_LOG");
    let started = Instant::now();
    let (refusal, metrics) = loop {
        let log = std::fs::read_to_string(&log_path).expect("the function log");
        let ours: Vec<Value> = log
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line.get(line.find('{')?..)?).ok())
            .filter(|line| line.get("fields").is_some() || line.get("_aws").is_some())
            .filter(|line| line.to_string().contains(&mid[..40]))
            .collect();
        let refusal = ours
            .iter()
            .find(|line| line["fields"]["message"] == "request refused")
            .cloned();
        let metrics = ours.iter().find(|line| line.get("requests").is_some()).cloned();
        if let (Some(refusal), Some(metrics)) = (refusal, metrics) {
            for line in &ours {
                let text = line.to_string();
                assert!(
                    !text.contains(&mid) && !text.contains(&user_agent),
                    "uncut: {}",
                    &text[..400.min(text.len())]
                );
            }
            break (refusal, metrics);
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the refusal of {} never reached {log_path}",
            &mid[..40]
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(refusal["fields"]["mid"], want_mid.as_str());
    assert_eq!(refusal["fields"]["user_agent"], want_agent.as_str());
    assert_eq!(metrics["mid"], want_mid.as_str(), "{metrics}");
}

/// Every string of a secret document (its secrets).
fn secret_values(document: &Value, into: &mut BTreeSet<String>) {
    match document {
        Value::String(text) => {
            into.extend(
                text.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
        }
        Value::Array(items) => items.iter().for_each(|item| secret_values(item, into)),
        Value::Object(map) => map.values().for_each(|value| secret_values(value, into)),
        _ => {}
    }
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn no_secret_and_no_signature_reaches_the_function_log_and_refusals_are_diagnosable() {
    let _turn = DOCUMENTS.lock().await;
    let sm = secrets_client();
    let http = client();
    let mut secrets = BTreeSet::new();
    for id in [
        required("CRM_SECRETS_MANAGER_ID"),
        required("ACTIVITY_SECRETS_MANAGER_ID"),
    ] {
        secret_values(&read_document(&sm, &id).await, &mut secrets);
    }
    assert!(
        secrets.contains("dev-crm-secret") && secrets.contains("dev-activity-secret"),
        "{secrets:?}"
    );
    let mut signatures = BTreeSet::new();
    let mid = unique_mid("leak");

    // Accepted with the default secret, and with tenant 900's own one.
    let crm_secret = secrets.iter().find(|s| s.as_str() == "dev-crm-secret").unwrap().clone();
    let body = crm_body(&mid);
    signatures.insert(sign_crm(body.as_bytes(), &crm_secret));
    assert_eq!(
        outcome(&post_crm(&http, &body, &crm_secret).await),
        (200, "accepted".into())
    );
    let own_900 = read_document(&sm, &required("CRM_SECRETS_MANAGER_ID")).await["tenants"]["900"][0]
        .as_str()
        .expect("make test gives tenant 900 its own secret")
        .to_owned();
    let body = crm_body("900");
    signatures.insert(sign_crm(body.as_bytes(), &own_900));
    assert_eq!(
        outcome(&post_crm(&http, &body, &own_900).await),
        (200, "accepted".into())
    );

    // Refused: a forged signature, from a sender that says who it is.
    let forged = sign_crm(b"another body", &crm_secret);
    signatures.insert(forged.clone());
    let refused = post(
        &http,
        &crm_url(),
        &[("X-Signature", &forged), ("User-Agent", "leak-test-sender/1.0")],
        crm_body(&mid),
    )
    .await;
    assert_eq!(refused.refusal(), (401, "invalid_signature".into()));

    // Activity: accepted, and refused with a wrong sign.
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/activity/event_add.json")).unwrap()).unwrap();
    let accepted = signed_activity(&fixture, &unique_nonce(), now_unix(), dev_activity_secret());
    let wrong = signed_activity(&fixture, &unique_nonce(), now_unix(), "not-the-secret");
    for (body, want) in [(&accepted, 200), (&wrong, 401)] {
        let sign: Value = serde_json::from_str(body).unwrap();
        signatures.insert(sign["sign"].as_str().unwrap().to_owned());
        assert_eq!(post(&http, &activity_url(&mid), &[], body.clone()).await.status, want);
    }

    // The lines of these requests are in the log (so the search below is not vacuous)...
    let log_path = required("TEST_FUNCTIONS_LOG");
    let started = Instant::now();
    let (log, refusal) = loop {
        let log = std::fs::read_to_string(&log_path).expect("the function log");
        let refusal = log
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line.get(line.find('{')?..)?).ok())
            .find(|line| {
                line["fields"]["mid"] == mid.as_str() && line["fields"]["user_agent"] == "leak-test-sender/1.0"
            });
        let activity_refused = log.lines().any(|line| {
            line.contains(&format!("\"mid\":\"{mid}\""))
                && line.contains("\"source\":\"activity\"")
                && line.contains("invalid_signature")
        });
        match refusal {
            Some(refusal) if activity_refused => break (log, refusal),
            _ => {
                assert!(
                    started.elapsed() < PATIENCE,
                    "the refusal lines of tenant {mid} never reached {log_path}"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    // ...each refusal with its diagnosis: one line, header names, no values...
    let fields = &refusal["fields"];
    assert_eq!(fields["source"], "crm");
    assert_eq!(fields["code"], "invalid_signature");
    assert!(
        fields["request_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{refusal}"
    );
    assert!(
        fields["source_ip"].as_str().is_some_and(|ip| !ip.is_empty()),
        "{refusal}"
    );
    let headers: Vec<&str> = fields["headers"].as_str().unwrap().split(',').collect();
    assert!(
        headers.contains(&"x-signature") && headers.contains(&"user-agent"),
        "{refusal}"
    );

    // ...and no secret or signature anywhere in the log, whoever wrote the line.
    assert!(log.lines().count() > 10);
    for value in secrets.iter().chain(&signatures) {
        let leaked: Vec<&str> = log
            .lines()
            .filter(|line| line.contains(value.as_str()))
            .take(3)
            .collect();
        assert!(
            leaked.is_empty(),
            "a secret or signature value is in {log_path}: {leaked:?}"
        );
    }
}
