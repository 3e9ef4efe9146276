//! `webhookctl secrets` end to end: the built binary, run as an operator would, against the
//! Secrets Manager of the local stack (moto), on secrets of its own (the functions' documents are
//! left alone). Proves that no secret value is ever printed and that nothing invalid is put.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use serde_json::{json, Value};
use shared::secret::{Secret, TenantSecrets};
use tests::signing::unique_nonce;
use tools::secrets::fingerprint;

fn endpoint() -> String {
    std::env::var("TEST_SECRETS_ENDPOINT").expect("TEST_SECRETS_ENDPOINT is not set: run these tests with `make test`")
}

fn sm() -> aws_sdk_secretsmanager::Client {
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .endpoint_url(endpoint())
        .build();
    aws_sdk_secretsmanager::Client::from_conf(config)
}

/// Runs `webhookctl secrets ARGS` with the stack's Secrets Manager, `env` and `stdin`.
fn webhookctl(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_webhookctl"));
    command
        .arg("secrets")
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL_SECRETS_MANAGER", endpoint())
        .env_remove("WEBHOOKCTL_SECRETS")
        .env_remove("CRM_SECRETS_MANAGER_ID")
        .env_remove("ACTIVITY_SECRETS_MANAGER_ID")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("webhookctl runs");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().expect("webhookctl ends")
}

fn printed(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Asserts that nothing `output` printed holds one of `secrets`.
fn prints_none_of(output: &Output, secrets: &[&str]) {
    let text = printed(output);
    for secret in secrets {
        assert!(!text.contains(secret), "{secret} was printed:\n{text}");
    }
}

/// A secret of its own in the local Secrets Manager, holding `document`.
async fn new_secret(document: &Value) -> String {
    let id = format!("webhookctl-test/{}", unique_nonce());
    sm().create_secret()
        .name(&id)
        .secret_string(document.to_string())
        .send()
        .await
        .expect("the local Secrets Manager answers");
    id
}

async fn current_text(id: &str) -> String {
    let output = sm().get_secret_value().secret_id(id).send().await.expect("readable");
    output.secret_string().expect("a string").to_owned()
}

async fn version_count(id: &str) -> usize {
    let output = sm()
        .list_secret_version_ids()
        .secret_id(id)
        .include_deprecated(true)
        .send()
        .await
        .expect("the local Secrets Manager answers");
    output.versions().len()
}

/// Unique values, so that a match in the output can only be a leak.
struct Values {
    default: String,
    own: String,
    new: String,
    old: String,
}

fn values() -> Values {
    let n = unique_nonce();
    Values {
        default: format!("default-value-{n}"),
        own: format!("own-value-{n}"),
        new: format!("new-value-{n}"),
        old: format!("old-value-{n}"),
    }
}

#[test]
fn help_documents_the_secrets_subcommands() {
    let output = Command::new(env!("CARGO_BIN_EXE_webhookctl"))
        .args(["secrets", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", printed(&output));
    for subcommand in ["show", "set-tenant", "remove-tenant", "validate"] {
        assert!(
            String::from_utf8_lossy(&output.stdout).contains(subcommand),
            "{subcommand}"
        );
    }
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn show_and_tenant_changes_print_no_value_and_keep_the_rest_of_the_document() {
    let v = values();
    let id = new_secret(&json!({"default": [v.default], "tenants": {"124": [v.own]}})).await;
    let all = [v.default.as_str(), &v.own, &v.new, &v.old];

    let shown = webhookctl(&["show", "crm", "--secret-id", &id], &[], "");
    assert!(shown.status.success(), "{}", printed(&shown));
    prints_none_of(&shown, &all);
    let stdout = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(stdout.contains("AWSCURRENT"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "default\t1 secret [{}]",
            fingerprint(&Secret::new(&v.default))
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("tenant 124\t1 secret [{}]", fingerprint(&Secret::new(&v.own)))),
        "{stdout}"
    );

    // A rotation for tenant 125, the values from the environment (never the command line).
    let secrets = format!("{}, {}", v.new, v.old);
    let set = webhookctl(
        &["set-tenant", "crm", "125", "--secret-id", &id],
        &[("WEBHOOKCTL_SECRETS", &secrets)],
        "",
    );
    assert!(set.status.success(), "{}", printed(&set));
    prints_none_of(&set, &all);
    assert_eq!(version_count(&id).await, 2);
    let document: Value = serde_json::from_str(&current_text(&id).await).unwrap();
    assert_eq!(
        document,
        json!({"default": [v.default], "tenants": {"124": [v.own], "125": [v.new, v.old]}})
    );

    // From standard input, for the activity document's variable.
    let piped = webhookctl(
        &["set-tenant", "activity", "126"],
        &[("ACTIVITY_SECRETS_MANAGER_ID", &id)],
        &format!("{}\n", v.new),
    );
    assert!(piped.status.success(), "{}", printed(&piped));
    prints_none_of(&piped, &all);

    // Blocking 124: listed with no secret, refused whatever the default.
    let blocked = webhookctl(&["set-tenant", "crm", "124", "--block", "--secret-id", &id], &[], "");
    assert!(blocked.status.success(), "{}", printed(&blocked));
    prints_none_of(&blocked, &all);
    let removed = webhookctl(&["remove-tenant", "crm", "125", "--secret-id", &id], &[], "");
    assert!(removed.status.success(), "{}", printed(&removed));
    prints_none_of(&removed, &all);
    assert_eq!(version_count(&id).await, 5);
    let text = current_text(&id).await;
    let document: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        document,
        json!({"default": [v.default], "tenants": {"124": [], "126": [v.new]}})
    );
    let secrets = TenantSecrets::from_json(&text).unwrap();
    assert!(secrets.for_tenant("124").is_none(), "blocked");
    assert_eq!(
        secrets.for_tenant("125").unwrap().primary().expose(),
        v.default.as_bytes()
    );

    let shown = webhookctl(&["show", "crm", "--secret-id", &id], &[], "");
    assert!(shown.status.success(), "{}", printed(&shown));
    prints_none_of(&shown, &all);
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("tenant 124\tblocked"),
        "{}",
        printed(&shown)
    );

    // Nothing to set: refused, nothing put.
    let empty = webhookctl(&["set-tenant", "crm", "127", "--secret-id", &id], &[], " , \n");
    assert!(!empty.status.success(), "{}", printed(&empty));
    let unknown = webhookctl(&["remove-tenant", "crm", "999", "--secret-id", &id], &[], "");
    assert!(!unknown.status.success(), "{}", printed(&unknown));
    assert_eq!(version_count(&id).await, 5);
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn an_invalid_document_is_refused_before_any_put() {
    let v = values();
    let good = json!({"default": [v.default], "tenants": {"124": [v.own]}});
    let id = new_secret(&good).await;
    let all = [v.default.as_str(), &v.own, &v.new];

    for invalid in [
        format!(r#"{{"default": ["{}"], "tenants": "#, v.new),
        format!(r#"{{"defaults": ["{}"]}}"#, v.new),
        format!(r#"{{"tenants": {{"124": {{"k": "{}"}}}}}}"#, v.new),
        format!(r#"["{}"]"#, v.new),
    ] {
        let path = std::env::temp_dir().join(format!("webhookctl-secrets-{}.json", unique_nonce()));
        std::fs::write(&path, &invalid).unwrap();
        let path_text = path.to_str().unwrap();
        let checked = webhookctl(&["validate", path_text], &[], "");
        let put = webhookctl(&["validate", path_text, "--put", "crm", "--secret-id", &id], &[], "");
        let piped = webhookctl(&["validate", "-", "--put", "crm", "--secret-id", &id], &[], &invalid);
        std::fs::remove_file(&path).unwrap();
        for output in [&checked, &put, &piped] {
            assert_eq!(output.status.code(), Some(1), "{invalid}: {}", printed(output));
            assert!(
                String::from_utf8_lossy(&output.stdout).contains("invalid"),
                "{}",
                printed(output)
            );
            prints_none_of(output, &all);
        }
        assert_eq!(version_count(&id).await, 1, "{invalid}: nothing put");
    }
    assert_eq!(serde_json::from_str::<Value>(&current_text(&id).await).unwrap(), good);

    // A broken current version: show says what the functions use; a tenant change is refused.
    sm().put_secret_value()
        .secret_id(&id)
        .secret_string(format!(r#"{{"default": ["{}"]"#, v.new))
        .send()
        .await
        .unwrap();
    let shown = webhookctl(&["show", "crm", "--secret-id", &id], &[], "");
    assert!(shown.status.success(), "{}", printed(&shown));
    prints_none_of(&shown, &all);
    let stdout = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(stdout.contains("the functions use AWSPREVIOUS"), "{stdout}");
    assert!(stdout.contains("tenant 124\t1 secret"), "{stdout}");
    let set = webhookctl(
        &["set-tenant", "crm", "125", "--secret-id", &id],
        &[("WEBHOOKCTL_SECRETS", &v.own)],
        "",
    );
    assert_eq!(set.status.code(), Some(2), "{}", printed(&set));
    prints_none_of(&set, &all);
    assert_eq!(version_count(&id).await, 2, "nothing put on top of a broken version");

    // A valid document passes and, with --put, becomes the current version.
    let fixed = json!({"tenants": {"124": [v.own]}});
    let put = webhookctl(
        &["validate", "-", "--put", "crm", "--secret-id", &id],
        &[],
        &fixed.to_string(),
    );
    assert!(put.status.success(), "{}", printed(&put));
    prints_none_of(&put, &all);
    assert!(
        String::from_utf8_lossy(&put.stdout).contains("no default list"),
        "{}",
        printed(&put)
    );
    assert_eq!(version_count(&id).await, 3);
    assert_eq!(serde_json::from_str::<Value>(&current_text(&id).await).unwrap(), fixed);
}
