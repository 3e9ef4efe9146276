//! Operations, end to end against the local stack (scripts/stack.sh: moto serves DynamoDB and
//! Secrets Manager, the functions read their secrets from there every 2 s):
//!
//! - a new tenant and a secret rotation written to the local Secrets Manager take effect
//!   without restarting the functions;
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
    assert_eq!(
        outcome(&post_crm(&http, &crm_body(&mid), &old).await),
        (200, "accepted".into())
    );
    // ...then the old one retired.
    set_crm_tenant(&sm, &mid, Some(&[&new])).await;
    let retired = until_answer(&http, &mid, &old, (401, "invalid_signature")).await;
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
