//! The environment a function process gets: what the Lambda service sets for every `provided.al2023`
//! function (documented reserved and unreserved variables, with dummy credentials), plus the
//! function's own configuration as `template.yaml` sets it (contract 5), pointed at a local DynamoDB.
//! `LD_LIBRARY_PATH` is left out: Lambda's value names directories that do not exist here, and
//! the loader would search them all for every library, a cost a real sandbox does not have.

use std::net::SocketAddr;
use std::path::Path;

use clap::ValueEnum;

use crate::local::{dev_activity_secret, dev_crm_secret};

/// The functions of this project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Function {
    CrmWebhook,
    ActivityCallback,
}

impl Function {
    pub fn name(self) -> &'static str {
        match self {
            Self::CrmWebhook => "crm-webhook",
            Self::ActivityCallback => "activity-callback",
        }
    }

    /// The signed API Gateway event (under `fixtures/`) each invocation is made from.
    pub fn event_fixture(self) -> &'static str {
        match self {
            Self::CrmWebhook => "events/crm_seed_124_object_create.json",
            Self::ActivityCallback => "events/activity_event_add.json",
        }
    }

    /// The function's tables (local names) and their sort keys; `mid` is every table's hash key.
    pub fn tables(self) -> Vec<(&'static str, &'static str)> {
        match self {
            Self::CrmWebhook => vec![("crm_entities", "entity_id")],
            Self::ActivityCallback => vec![("activities", "entity_id"), ("activity_nonces", "nonce")],
        }
    }

    /// `template.yaml`'s variables for this function, with its parameter defaults, the local
    /// table names of `scripts/create_tables.py` and the development secrets.
    fn own_variables(self) -> Vec<(&'static str, String)> {
        let common = [
            ("SOURCE_UTC_OFFSET", "+08:00".to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ];
        let own = match self {
            Self::CrmWebhook => vec![
                ("CRM_TABLE_NAME", "crm_entities".to_owned()),
                ("CRM_WEBHOOK_SECRET", dev_crm_secret().to_owned()),
                ("CRM_SIGNATURE_HEADER", "X-Signature".to_owned()),
            ],
            Self::ActivityCallback => vec![
                ("ACTIVITY_TABLE_NAME", "activities".to_owned()),
                ("ACTIVITY_NONCES_TABLE_NAME", "activity_nonces".to_owned()),
                ("ACTIVITY_CALLBACK_SECRET", dev_activity_secret().to_owned()),
                ("ACTIVITY_DEFAULT_MID", String::new()),
                ("ACTIVITY_MAX_AGE_SECONDS", "300".to_owned()),
            ],
        };
        own.into_iter().chain(common).collect()
    }
}

/// The whole environment of one function process (nothing is inherited from the harness).
pub fn lambda_environment(
    function: Function,
    runtime_api: SocketAddr,
    task_root: &Path,
    dynamodb_endpoint: &str,
) -> Vec<(String, String)> {
    let name = function.name();
    let service = [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", name.to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/11/21/[$LATEST]0123456789abcdef0123456789abcdef".to_owned(),
        ),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_DEFAULT_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "ASIAEXAMPLEEXAMPLE00".to_owned()),
        ("AWS_ACCESS_KEY", "ASIAEXAMPLEEXAMPLE00".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_SESSION_TOKEN", "test-session-token".to_owned()),
        ("AWS_XRAY_CONTEXT_MISSING", "LOG_ERROR".to_owned()),
        ("AWS_XRAY_DAEMON_ADDRESS", "169.254.79.129:2000".to_owned()),
        ("_HANDLER", "bootstrap".to_owned()),
        ("LAMBDA_TASK_ROOT", task_root.display().to_string()),
        ("LAMBDA_RUNTIME_DIR", "/var/runtime".to_owned()),
        ("LANG", "en_US.UTF-8".to_owned()),
        ("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin".to_owned()),
        ("TZ", ":UTC".to_owned()),
        ("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint.to_owned()),
    ];
    service
        .into_iter()
        .chain(function.own_variables())
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}
