//! `webhookctl` end to end: the built binary, run as an operator would, against the local stack
//! of `make test` (functions over HTTP, the quarantine table in the local DynamoDB).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;
use shared::crm::verify::{Algorithm, Encoding, SignatureScheme};
use shared::quarantine::{CapWindow, QuarantineStore, RefusedDelivery, Slot, SlotRequest, CAP_PARTITION};
use shared::secret::Secret;
use shared::source::Source;
use shared::timefmt::utc_rfc3339;
use tests::http::{activity_url, client, crm_url, post};
use tests::local::{dev_activity_secret, dev_crm_secret};
use tests::quarantine::{post_until_kept, store};
use tests::signing::{now_unix, sign_crm, unique_nonce};
use tests::stack::{self, unique_mid};
use tests::tables::Table;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures");

/// Runs webhookctl with the stack's DynamoDB and table, and only the variables given in `env`
/// among those that configure verification.
fn webhookctl(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_webhookctl"));
    command
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("REFUSED_DELIVERIES_TABLE_NAME", tests::quarantine::table());
    // The stack's DynamoDB, when the stack runs (help and sign need none).
    if let Ok(endpoint) = std::env::var("TEST_DYNAMODB_ENDPOINT") {
        command.env("AWS_ENDPOINT_URL_DYNAMODB", endpoint);
    }
    for (name, _) in std::env::vars() {
        if name.starts_with("CRM_") || name.starts_with("ACTIVITY_") || name == "WEBHOOKCTL_SECRET" {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    command.output().expect("webhookctl runs")
}

/// The path of `url`, as the answer ledger names requests.
fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.find('/').map_or("/", |at| &rest[at..])
}

/// Records the answer `send` printed (status line, then the body) in the answer ledger, which
/// `make test` checks against the functions' metrics: webhookctl's requests do not go through
/// the kit's HTTP client.
fn record_send(url: &str, output: &Output, content_type: &str) {
    let text = stdout(output);
    let (status, body) = text.split_once('\n').expect("a status line");
    let body = body.strip_suffix('\n').unwrap_or(body);
    tests::ledger::record(
        "POST",
        path_of(url),
        status.parse().expect("a status"),
        content_type,
        body,
    );
}

/// Records each CRM answer a replay got, as the endpoint writes it, in the answer ledger.
async fn record_replays(output: &Output, mid: &str) {
    let kept = tests::quarantine::kept_for(Source::Crm, mid).await;
    let url = crm_url();
    for line in stdout(output).lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let [_, delivery_id, _, outcome] = fields[..] else {
            continue;
        };
        let (status, body) = match outcome {
            "accepted" | "duplicate" => {
                let record = kept
                    .iter()
                    .find(|r| r.delivery_id == delivery_id)
                    .expect("a kept delivery");
                let body: Value = serde_json::from_str(&record.body).unwrap();
                let answer =
                    serde_json::json!({"status": outcome, "mid": mid, "entity_id": body["extra_data"]["entity_id"]});
                (200, answer.to_string())
            }
            "invalid_signature" => (
                401,
                r#"{"error":{"code":"invalid_signature","message":"the signature does not match the body"}}"#
                    .to_owned(),
            ),
            other => panic!("unexpected replay outcome {other}"),
        };
        tests::ledger::record("POST", path_of(&url), status, "application/json", &body);
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("webhookctl-{}-{name}", unique_nonce()));
    std::fs::write(&path, contents).unwrap();
    path
}

fn crm_body(mid: &str, entity: &str) -> String {
    let text = std::fs::read_to_string(format!("{FIXTURES}/crm/seed_124_object_create.json")).unwrap();
    let mut payload: Value = serde_json::from_str(&text).unwrap();
    payload["mid"] = mid.into();
    payload["extra_data"]["entity_id"] = entity.into();
    payload.to_string()
}

#[test]
fn help_documents_every_subcommand() {
    let output = webhookctl(&["--help"], &[]);
    assert!(output.status.success(), "{}", describe(&output));
    for subcommand in ["sign", "send", "quarantine", "probe", "entity", "secrets", "unmodelled"] {
        assert!(stdout(&output).contains(subcommand), "{subcommand}");
    }
    for args in [
        &["sign", "--help"][..],
        &["send", "--help"],
        &["quarantine", "list", "--help"],
        &["quarantine", "show", "--help"],
        &["quarantine", "replay", "--help"],
        &["quarantine", "apply", "--help"],
        &["unmodelled", "list", "--help"],
        &["probe", "--help"],
    ] {
        let output = webhookctl(args, &[]);
        assert!(
            output.status.success() && stdout(&output).contains("Usage:"),
            "{args:?}"
        );
    }
}

#[test]
fn sign_makes_what_the_senders_make() {
    let body = crm_body("sign", "E");
    let file = temp_file("sign.json", body.as_bytes());
    let file = file.to_str().unwrap();
    let output = webhookctl(&["sign", "crm", "--body-file", file, "--secret", "k"], &[]);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(stdout(&output).trim(), sign_crm(body.as_bytes(), "k"));

    let args = [
        "sign",
        "crm",
        "--body-file",
        file,
        "--secret",
        "k",
        "--algorithm",
        "hmac-sha256",
        "--encoding",
        "base64",
        "--prefix",
    ];
    let output = webhookctl(&args, &[]);
    let scheme = SignatureScheme {
        algorithm: Algorithm::HmacSha256,
        encoding: Encoding::Base64,
    };
    assert_eq!(
        stdout(&output).trim(),
        format!("sha256={}", scheme.sign(body.as_bytes(), &Secret::new("k")))
    );

    let args = [
        "sign",
        "activity",
        "--fixture",
        "event_add",
        "--secret",
        "s",
        "--nonce",
        "n1",
        "--timestamp",
        "1701744489",
    ];
    let output = webhookctl(&args, &[]);
    assert!(output.status.success(), "{}", describe(&output));
    let signed: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(signed["nonce"], "n1");
    assert_eq!(signed["timestamp"], 1_701_744_489);
    assert_eq!(
        signed["sign"],
        shared::activity::verify::sign("n1", &Secret::new("s"), 1_701_744_489)
    );
    assert_eq!(signed["attributes"]["event_id"], "b80bb752931811eeaeb42ef5b77e53xx");
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn send_posts_signed_deliveries_to_the_stack() {
    let mid = unique_mid("ctl-send");
    let file = temp_file("send.json", crm_body(&mid, "SEND").as_bytes());
    let url = crm_url();
    let args = [
        "send",
        "crm",
        "--url",
        &url,
        "--body-file",
        file.to_str().unwrap(),
        "--secret",
        dev_crm_secret(),
    ];
    let output = webhookctl(&args, &[]);
    record_send(&url, &output, "application/json");
    assert!(output.status.success(), "{}", describe(&output));
    let text = stdout(&output);
    assert!(text.starts_with("200\n") && text.contains("\"accepted\""), "{text}");
    let output = webhookctl(&args, &[]);
    record_send(&url, &output, "application/json");
    assert!(stdout(&output).contains("\"duplicate\""), "{}", describe(&output));
    let db = stack::inspection_client();
    assert_eq!(Table::CrmEntities.query(&db, &mid).await.len(), 1);

    let wrong = [
        "send",
        "crm",
        "--url",
        &url,
        "--body-file",
        file.to_str().unwrap(),
        "--secret",
        "wrong",
    ];
    let output = webhookctl(&wrong, &[]);
    record_send(&url, &output, "application/json");
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(stdout(&output).starts_with("401\n"));

    let activity_mid = unique_mid("ctl-send-activity");
    let url = activity_url(&activity_mid);
    let args = [
        "send",
        "activity",
        "--url",
        &url,
        "--fixture",
        "event_add",
        "--secret",
        dev_activity_secret(),
    ];
    let output = webhookctl(&args, &[]);
    record_send(&url, &output, "text/plain");
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(stdout(&output), "200\nsuccess\n");
    assert_eq!(Table::Activities.query(&db, &activity_mid).await.len(), 1);
}

/// A record as the functions write it, for a delivery whose signature the current
/// configuration accepts (the state after an operator fixed the configuration).
fn fixed_record(mid: &str, entity: &str, seconds_ago: i64) -> RefusedDelivery {
    let body = crm_body(mid, entity);
    let received = now_unix() - seconds_ago;
    RefusedDelivery {
        source: Source::Crm,
        delivery_id: format!("{}#{}", utc_rfc3339(received), &unique_nonce()[..12]),
        received_at: utc_rfc3339(received),
        status: 401,
        code: "no_secret".into(),
        tenant: Some(mid.to_owned()),
        header_names: vec!["content-type".into(), "x-signature".into()],
        signature_headers: BTreeMap::from([("x-signature".to_owned(), sign_crm(body.as_bytes(), dev_crm_secret()))]),
        body,
        expires_at: received + 86_400,
        last_replay: None,
        last_replay_at: None,
    }
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn quarantine_list_show_and_replay_verify_everything_again() {
    let quarantine = store();
    let mid = unique_mid("ctl-replay");
    // A forgery kept by the function itself: replaying it must not apply it.
    let forged = post_until_kept(Source::Crm, &mid, |attempt| {
        let http = client();
        let body = crm_body(&mid, &format!("FORGED{attempt}"));
        async move {
            let answer = post(&http, &crm_url(), &[("X-Signature", &"0".repeat(40))], body).await;
            assert_eq!(answer.status, 401);
        }
    })
    .await;
    let forged = tests::quarantine::kept_for(Source::Crm, &mid)
        .await
        .into_iter()
        .find(|record| record.code == "invalid_signature")
        .unwrap_or(forged);
    // Two authentic deliveries, kept earlier (their signatures verify under the current
    // configuration: the state after an operator fixed it).
    let older = fixed_record(&mid, "OLDER", 120);
    let newer = fixed_record(&mid, "NEWER", 60);
    for record in [&newer, &older] {
        quarantine
            .keep(record)
            .await
            .expect("the quarantine table takes a record");
    }

    let output = webhookctl(&["quarantine", "list", "--source", "crm", "--tenant", &mid], &[]);
    assert!(output.status.success(), "{}", describe(&output));
    let lines: Vec<String> = stdout(&output).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].contains(&older.delivery_id) && lines[1].contains(&newer.delivery_id),
        "time order: {lines:?}"
    );
    assert!(lines.iter().all(|line| line.ends_with("not replayed")));

    let output = webhookctl(&["quarantine", "show", "crm", &older.delivery_id], &[]);
    assert!(output.status.success(), "{}", describe(&output));
    let shown: RefusedDelivery = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(shown, older);

    let replay = ["quarantine", "replay", "--source", "crm", "--tenant", &mid, "--crm-url"];
    let url = crm_url();
    let args: Vec<&str> = replay.iter().copied().chain([url.as_str()]).collect();
    let output = webhookctl(&args, &[]);
    record_replays(&output, &mid).await;
    assert_eq!(
        output.status.code(),
        Some(1),
        "the forgery is refused again: {}",
        describe(&output)
    );
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].contains(&older.delivery_id) && lines[0].ends_with("accepted"),
        "{text}"
    );
    assert!(
        lines[1].contains(&newer.delivery_id) && lines[1].ends_with("accepted"),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&forged.delivery_id) && l.ends_with("invalid_signature")),
        "{text}"
    );
    assert!(
        text.contains("replayed 3 deliveries: 2 accepted, 1 invalid_signature"),
        "{text}"
    );
    let db = stack::inspection_client();
    let entities: Vec<String> = Table::CrmEntities
        .query(&db, &mid)
        .await
        .iter()
        .map(|item| item["entity_id"].as_s().unwrap().clone())
        .collect();
    assert_eq!(entities.len(), 2, "only the authentic ones are applied: {entities:?}");
    assert!(entities.iter().all(|e| e == "OLDER" || e == "NEWER"));

    let output = webhookctl(&args, &[]);
    record_replays(&output, &mid).await;
    assert!(
        stdout(&output).contains("replayed 3 deliveries: 2 duplicate, 1 invalid_signature"),
        "{}",
        describe(&output)
    );
    let output = webhookctl(&["quarantine", "list", "--tenant", &mid], &[]);
    assert!(stdout(&output).contains("replayed: duplicate"), "{}", describe(&output));
    assert_eq!(
        tests::quarantine::kept_for(Source::Crm, &mid).await.len(),
        3,
        "a replay refused again is not kept a second time"
    );
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn probe_names_the_scheme_and_a_dry_run_replay_verifies_locally() {
    // A sender that signs HMAC-SHA256, base64, in a header of its own: refused (the stack
    // expects X-Signature) and kept.
    let mid = unique_mid("ctl-probe");
    let scheme = SignatureScheme {
        algorithm: Algorithm::HmacSha256,
        encoding: Encoding::Base64,
    };
    let record = post_until_kept(Source::Crm, &mid, |attempt| {
        let http = client();
        let body = crm_body(&mid, &format!("PROBE{attempt}"));
        let signature = scheme.sign(body.as_bytes(), &Secret::new("vendor-secret"));
        async move {
            let answer = post(&http, &crm_url(), &[("X-Jing-Signature", &signature)], body).await;
            assert_eq!(answer.refusal(), (401, "missing_signature".to_owned()));
        }
    })
    .await;
    assert!(record.signature_headers.contains_key("x-jing-signature"), "{record:?}");

    let output = webhookctl(&["quarantine", "show", "crm", &record.delivery_id], &[]);
    let request = temp_file("request.json", &output.stdout);
    let request = request.to_str().unwrap();
    let output = webhookctl(
        &[
            "probe",
            "--request",
            request,
            "--secret",
            "another",
            "--secret",
            "vendor-secret",
        ],
        &[],
    );
    assert!(output.status.success(), "{}", describe(&output));
    let text = stdout(&output);
    assert!(
        text.contains("match: header x-jing-signature, hmac-sha256/base64, candidate secret #2"),
        "{text}"
    );
    for line in [
        "CRM_SIGNATURE_HEADER=x-jing-signature",
        "CRM_SIGNATURE_ALGORITHM=hmac-sha256",
        "CRM_SIGNATURE_ENCODING=base64",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    assert!(!text.contains("vendor-secret"), "the secret is never printed");
    let output = webhookctl(&["probe", "--request", request, "--secret", "wrong"], &[]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(stdout(&output).starts_with("no match"));

    // The same from a body file and headers given on the command line.
    let body = temp_file("body.json", record.body.as_bytes());
    let header = format!("X-Jing-Signature: {}", record.signature_headers["x-jing-signature"]);
    let output = webhookctl(
        &[
            "probe",
            "--body-file",
            body.to_str().unwrap(),
            "-H",
            "Content-Type: application/json",
            "-H",
            &header,
            "--secret",
            "vendor-secret",
        ],
        &[],
    );
    assert!(
        stdout(&output).contains("match: header X-Jing-Signature, hmac-sha256/base64"),
        "{}",
        describe(&output)
    );

    // --dry-run: verified against this environment's configuration, nothing posted.
    let dry = [
        "quarantine",
        "replay",
        "--dry-run",
        "--id",
        &record.delivery_id,
        "--source",
        "crm",
    ];
    let output = webhookctl(&dry, &[("CRM_WEBHOOK_SECRET", "dev-crm-secret")]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        stdout(&output).contains("verified 1 deliveries: 1 missing_signature"),
        "{}",
        describe(&output)
    );
    let fixed = [
        ("CRM_WEBHOOK_SECRET", "vendor-secret"),
        ("CRM_SIGNATURE_HEADER", "X-Jing-Signature"),
        ("CRM_SIGNATURE_ALGORITHM", "hmac-sha256"),
        ("CRM_SIGNATURE_ENCODING", "base64"),
    ];
    let output = webhookctl(&dry, &fixed);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        stdout(&output).contains("verified 1 deliveries: 1 verifies"),
        "{}",
        describe(&output)
    );
    let db = stack::inspection_client();
    assert!(
        Table::CrmEntities.query(&db, &mid).await.is_empty(),
        "a dry run posts nothing"
    );
    let output = webhookctl(&["quarantine", "list", "--tenant", &mid], &[]);
    assert!(stdout(&output).contains("not replayed"), "a dry run notes nothing");
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn quarantine_never_lists_shows_or_replays_the_cap_counters() {
    // A counter of the global cap, as the functions write it, for a window no function uses.
    let window = CapWindow::containing(0, 3_600);
    let slot = SlotRequest {
        window,
        max: 1_000,
        expires_at: now_unix() + 86_400,
    };
    let quarantine = store();
    assert_eq!(quarantine.take_slot(&slot).await, Ok(Slot::Granted));
    let counters = quarantine.cap_counts().await.expect("the cap counters read");
    assert!(counters.contains_key(&window.key()), "{counters:?}");
    // A record, so that the listing is not empty.
    let mid = unique_mid("ctl-cap");
    quarantine
        .keep(&fixed_record(&mid, "CAP", 30))
        .await
        .expect("the quarantine table takes a record");

    let output = webhookctl(&["quarantine", "list"], &[]);
    assert!(output.status.success(), "{}", describe(&output));
    let text = stdout(&output);
    assert!(text.contains(&mid), "{text}");
    for line in text.lines() {
        let source = line.split('\t').next().unwrap_or_default();
        assert!(matches!(source, "crm" | "activity"), "only records are listed: {line}");
        assert!(
            !counters.keys().any(|key| line.contains(&format!("\t{key}\t"))),
            "{line}"
        );
    }

    // `#cap` is no source; under a source, the counter's key is no record.
    for (source, refusal) in [
        (CAP_PARTITION, "invalid value"),
        ("crm", "no refused delivery"),
        ("activity", "no refused delivery"),
    ] {
        let output = webhookctl(&["quarantine", "show", source, &window.key()], &[]);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            output.status.code() == Some(2) && stderr.contains(refusal),
            "show {source}: {}",
            describe(&output)
        );
    }

    // Selected by its key, a counter is nothing to replay: nothing is posted.
    let url = crm_url();
    let output = webhookctl(&["quarantine", "replay", "--id", &window.key(), "--crm-url", &url], &[]);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(stdout(&output), "replayed 0 deliveries: none\n");
    let output = webhookctl(
        &["quarantine", "replay", "--dry-run", "--tenant", &mid],
        &[("CRM_WEBHOOK_SECRET", dev_crm_secret())],
    );
    assert_eq!(
        stdout(&output).lines().last(),
        Some("verified 1 deliveries: 1 verifies"),
        "{}",
        describe(&output)
    );
}

/// The tie-break of an event (docs/items.md, "Stamp"): the first 8 bytes of the SHA-256 of its
/// canonical JSON, in hex.
fn tie_break(body: &str) -> String {
    use sha2::Digest;
    let canonical = shared::digest::canonical_json(&serde_json::from_str(body).unwrap());
    hex_prefix(&sha2::Sha256::digest(canonical.as_bytes())[..8])
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn entity_show_list_and_export_read_back_what_was_applied() {
    let mid = unique_mid("ctl-entity");
    let entity = "NttdW4NoJfD2cX6f7rg52f";
    let http = client();
    // The seed lead as `make run`'s curl sends it (tenant aside), then an update of its name.
    let create = crm_body(&mid, entity);
    let update = serde_json::json!({
        "mid": mid,
        "event_category": "object_v2",
        "event_type": "object_update",
        "action_keyword": "object_update",
        "create_time": 1_677_481_405,
        "extra_data": {
            "entity_id": entity,
            "object_id": "628",
            "object_name": "lead",
            "mapping_data": {"name": ["ceshi-webhook-001", "renamed"]},
            "mapping_data_text": {"name": "改名"},
        },
    })
    .to_string();
    for body in [&create, &update] {
        let answer = tests::http::post_crm(&http, body, dev_crm_secret()).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.json()["status"], "accepted");
    }
    let table = tests::stack::crm_table();
    let stored = tests::stack::entity_item(&table, &mid, entity)
        .await
        .expect("the lead is stored");
    let updated_at = stored["updated_at"].as_s().unwrap().clone();

    // show: the visible item and the two applied events, oldest first, with what each holds.
    let output = webhookctl(&["entity", "show", "crm", &mid, entity, "--table", &table], &[]);
    assert!(output.status.success(), "{}", describe(&output));
    let shown: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(shown["source"], "crm");
    assert_eq!(shown["format"], 2);
    assert_eq!(shown["version"], 2);
    assert_eq!(shown["item"]["event_count"], 2);
    assert_eq!(shown["item"]["fields"]["name"], "renamed");
    assert_eq!(shown["item"]["field_labels"]["name"], "改名");
    assert_eq!(shown["item"]["fields"]["mobile"], "17894892831");
    assert_eq!(shown["item"]["life_status"], "baby_lead");
    assert_eq!(shown["item"]["last_event_type"], "object_update");
    let events = shown["applied_events"].as_array().expect("applied events");
    assert_eq!(events.len(), 2, "{shown:#}");
    assert_eq!(events[0]["time"], 1_677_481_345);
    assert_eq!(events[0]["at"], "2023-02-27T07:02:25Z");
    assert_eq!(events[0]["tie_break"], tie_break(&create));
    assert_eq!(events[1]["time"], 1_677_481_405);
    assert_eq!(events[1]["at"], "2023-02-27T07:03:25Z");
    assert_eq!(events[1]["tie_break"], tie_break(&update));
    let holds = |event: &Value| -> Vec<String> {
        event["holds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        holds(&events[0]),
        [
            "business_type",
            "business_type_name",
            "created_at",
            "fields.business_type",
            "fields.lead_pool",
            "fields.life_status",
            "fields.mobile",
            "fields.to_baby_lead_timestamp",
            "lead_omni_user_uuid",
            "lead_pool",
            "life_status",
        ]
    );
    assert_eq!(holds(&events[1]), ["fields.name", "last", "object_id", "object_name"]);

    // An entity that is not stored: exit 1, nothing printed.
    let output = webhookctl(&["entity", "show", "crm", &mid, "NOPE", "--table", &table], &[]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert_eq!(stdout(&output), "");

    // list: one line for the tenant's one lead.
    let output = webhookctl(&["entity", "list", "crm", &mid], &[("CRM_TABLE_NAME", &table)]);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(
        stdout(&output),
        format!("{entity}\tlead\tobject_update\t2\t{updated_at}\n")
    );

    // export: the item exactly, as JSON Lines and as CSV.
    let expected = serde_json::json!({
        "business_type": "FcKtzPvUzZ4dDEi7gNGZqa",
        "business_type_name": "jeffery创建新的",
        "created_at": "2023-02-27T15:02:25+08:00",
        "entity_id": entity,
        "event_count": 2,
        "event_time": 1_677_481_405,
        "field_labels": {
            "business_type": "jeffery创建新的",
            "lead_pool": "市场公海",
            "life_status": "线索宝宝122222",
            "mobile": "17894892831",
            "name": "改名",
            "to_baby_lead_timestamp": "2023-02-27 15:02:25",
        },
        "fields": {
            "business_type": "FcKtzPvUzZ4dDEi7gNGZqa",
            "lead_pool": "market",
            "life_status": "baby_lead",
            "mobile": "17894892831",
            "name": "renamed",
            "to_baby_lead_timestamp": "2023-02-27 15:02:25",
        },
        "last_action_keyword": "object_update",
        "last_event_type": "object_update",
        "last_raw": update,
        "lead_omni_user_uuid": "2GRhJU3V7VstF3SbdRS4MC",
        "lead_pool": "market",
        "life_status": "baby_lead",
        "mid": mid,
        "object_id": "628",
        "object_name": "lead",
        "updated_at": updated_at,
    });
    let sorted: BTreeMap<String, Value> = expected.as_object().unwrap().clone().into_iter().collect();
    let file = std::env::temp_dir().join(format!("webhookctl-{}-export.jsonl", unique_nonce()));
    let output = webhookctl(
        &[
            "entity",
            "export",
            "crm",
            &mid,
            "--object-name",
            "lead",
            "--output",
            file.to_str().unwrap(),
        ],
        &[("CRM_TABLE_NAME", &table)],
    );
    assert!(output.status.success(), "{}", describe(&output));
    let written = std::fs::read_to_string(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    assert_eq!(written, serde_json::to_string(&sorted).unwrap() + "\n");

    let output = webhookctl(
        &["entity", "export", "crm", &mid, "--format", "csv", "--table", &table],
        &[],
    );
    assert!(output.status.success(), "{}", describe(&output));
    let header = "mid,entity_id,object_name,object_id,owner,life_status,lead_pool,leads_status,business_type,\
                  business_type_name,lead_omni_user_uuid,team_members,voided,created_at,last_event_type,\
                  last_action_keyword,event_time,event_count,updated_at,fields.business_type,fields.lead_pool,\
                  fields.life_status,fields.mobile,fields.name,fields.to_baby_lead_timestamp";
    let row = format!(
        "{mid},{entity},lead,628,,baby_lead,market,,FcKtzPvUzZ4dDEi7gNGZqa,jeffery创建新的,\
         2GRhJU3V7VstF3SbdRS4MC,,,2023-02-27T15:02:25+08:00,object_update,object_update,1677481405,2,\
         {updated_at},FcKtzPvUzZ4dDEi7gNGZqa,market,baby_lead,17894892831,renamed,2023-02-27 15:02:25"
    );
    assert_eq!(stdout(&output), format!("{header}\n{row}\n"));

    // Another object name: nothing exported.
    let output = webhookctl(
        &[
            "entity",
            "export",
            "crm",
            &mid,
            "--object-name",
            "account",
            "--table",
            &table,
        ],
        &[],
    );
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(stdout(&output), "");
}

#[test]
fn entity_help_documents_show_list_and_export() {
    let output = webhookctl(&["entity", "--help"], &[]);
    assert!(output.status.success(), "{}", describe(&output));
    for subcommand in ["show", "list", "export"] {
        assert!(stdout(&output).contains(subcommand), "{subcommand}");
        let output = webhookctl(&["entity", subcommand, "--help"], &[]);
        assert!(output.status.success(), "{subcommand}: {}", describe(&output));
        assert!(stdout(&output).contains("--table"), "{subcommand}");
    }
}

/// The function's activity configuration as an operator gives it to `quarantine apply`: the
/// stack's tables, and its secrets read from the stack's Secrets Manager.
fn activity_configuration() -> Vec<(&'static str, String)> {
    vec![
        ("ACTIVITY_TABLE_NAME", stack::activity_table()),
        ("ACTIVITY_NONCES_TABLE_NAME", stack::activity_nonces_table()),
        (
            "ACTIVITY_SECRETS_MANAGER_ID",
            "webhook-ingest/activity-secrets".to_owned(),
        ),
        (
            "AWS_ENDPOINT_URL_SECRETS_MANAGER",
            std::env::var("TEST_SECRETS_ENDPOINT").expect("TEST_SECRETS_ENDPOINT: run with `make test`"),
        ),
    ]
}

fn with<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(name, value)| (*name, value.as_str())).collect()
}

/// Posts an activity callback to `mid` signed `seconds_ago` with `secret` until one is kept.
async fn kept_stale(mid: &str, secret: &'static str, seconds_ago: i64) -> RefusedDelivery {
    post_until_kept(Source::Activity, mid, |_| {
        let http = client();
        let url = activity_url(mid);
        let body = tests::http::signed_activity(
            &serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/activity/event_add.json")).unwrap())
                .unwrap(),
            &unique_nonce(),
            now_unix() - seconds_ago,
            secret,
        );
        async move {
            let answer = post(&http, &url, &[], body).await;
            assert_eq!(answer.status, 401, "{}", answer.body);
        }
    })
    .await
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn quarantine_apply_replays_one_stale_record_through_the_store_once() {
    let mid = unique_mid("ctl-apply");
    let record = kept_stale(&mid, dev_activity_secret(), 400).await;
    assert_eq!(record.code, "stale_timestamp");
    let signed: Value = serde_json::from_str(&record.body).unwrap();
    let db = stack::inspection_client();
    assert!(Table::Activities.query(&db, &mid).await.is_empty());

    let configuration = activity_configuration();
    let apply = ["quarantine", "apply", record.delivery_id.as_str()];
    let output = webhookctl(&apply, &with(&configuration));
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(
        stdout(&output),
        format!("activity\t{}\t{mid}\taccepted\n", record.delivery_id)
    );
    let items = Table::Activities.query(&db, &mid).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let version = |item: &tests::tables::SdkItem| item[shared::dynamo::VERSION].as_n().unwrap().clone();
    assert_eq!(version(&items[0]), "1");
    assert_eq!(
        items[0]["event_time"].as_n().unwrap(),
        &signed["timestamp"].to_string(),
        "the stale event itself, applied"
    );
    assert_eq!(items[0]["last_raw"].as_s().unwrap(), &record.body);
    let nonces = Table::ActivityNonces.query(&db, &mid).await;
    assert_eq!(nonces.len(), 1);
    let remembered: i64 = nonces[0]["expires_at"].as_n().unwrap().parse().unwrap();
    assert!(
        remembered - now_unix() >= 13 * 86_400,
        "remembered as long as the quarantine keeps records: {remembered}"
    );

    // Again: the nonce rule applies to the operator too.
    let output = webhookctl(&apply, &with(&configuration));
    assert!(output.status.success(), "{}", describe(&output));
    assert!(stdout(&output).ends_with("\tduplicate\n"), "{}", describe(&output));
    let after = Table::Activities.query(&db, &mid).await;
    assert_eq!(after, items, "a duplicate changes nothing");
    let output = webhookctl(&["quarantine", "list", "--source", "activity", "--tenant", &mid], &[]);
    assert!(stdout(&output).contains("replayed: duplicate"), "{}", describe(&output));

    // The same stale record still refused by the endpoint: nothing reopened for anyone else.
    let http = client();
    let answer = post(&http, &activity_url(&mid), &[], record.body.clone()).await;
    assert_eq!(answer.refusal(), (401, "stale_timestamp".to_owned()));

    // A forged stale record is verified again and refused; nothing is written.
    let forged_mid = unique_mid("ctl-apply-forged");
    let forged = kept_stale(&forged_mid, "not-the-secret", 400).await;
    assert_eq!(forged.code, "invalid_signature");
    let output = webhookctl(&["quarantine", "apply", &forged.delivery_id], &with(&configuration));
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        stdout(&output).ends_with("\tinvalid_signature\n"),
        "{}",
        describe(&output)
    );
    assert!(Table::Activities.query(&db, &forged_mid).await.is_empty());
    assert!(Table::ActivityNonces.query(&db, &forged_mid).await.is_empty());
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn unmodelled_list_shows_the_kept_actions_and_quarantine_never_does() {
    let mid = unique_mid("ctl-unmodelled");
    let nonce = unique_nonce();
    let mut doc: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/activity/doc_add.json")).unwrap()).unwrap();
    doc["attributes"]["doc_id"] = nonce.clone().into();
    let body = tests::http::signed_activity(&doc, &nonce, now_unix(), dev_activity_secret());
    let answer = post(&client(), &activity_url(&mid), &[], body.clone()).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "success"));

    let output = webhookctl(&["unmodelled", "list", "--tenant", &mid], &[]);
    assert!(output.status.success(), "{}", describe(&output));
    let lines: Vec<Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{}", describe(&output));
    assert_eq!(lines[0]["tenant"], mid.as_str());
    assert_eq!(lines[0]["action"], "doc/add");
    assert_eq!(lines[0]["nonce"], nonce.as_str());
    assert_eq!(lines[0]["body"], body.as_str());
    let output = webhookctl(&["unmodelled", "list", "--tenant", &mid, "--action", "doc/edit"], &[]);
    assert_eq!(stdout(&output), "", "{}", describe(&output));

    let output = webhookctl(&["quarantine", "list", "--tenant", &mid], &[]);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(stdout(&output), "", "an acknowledged action is no refused delivery");
}
