//! Posting to the functions served by `cargo lambda watch`.

use std::time::Duration;

use crate::signing::{sign_activity, sign_crm};
use crate::stack;

pub const DEV_CRM_SECRET: &str = "dev-crm-secret";
pub const DEV_ACTIVITY_SECRET: &str = "dev-activity-secret";

pub fn crm_url() -> String {
    format!("{}/lambda-url/crm-webhook/crm/webhook", stack::functions_url())
}

pub fn activity_url(mid: &str) -> String {
    format!("{}/lambda-url/activity-callback/activity/{mid}", stack::functions_url())
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a plain HTTP client")
}

/// An answer: status and body text.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }

    /// The `error.code` of a refusal body; `None` for any other body, JSON or not.
    pub fn error_code(&self) -> Option<String> {
        let body: serde_json::Value = serde_json::from_str(&self.body).ok()?;
        body["error"]["code"].as_str().map(str::to_owned)
    }

    /// `(status, error code)` of a refusal.
    pub fn refusal(&self) -> (u16, String) {
        (self.status, self.error_code().unwrap_or_else(|| "<no code>".to_owned()))
    }
}

pub async fn post(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> Answer {
    let mut request = client.post(url).header("content-type", "application/json").body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let answer = Answer {
        status: response.status().as_u16(),
        body: response.text().await.unwrap_or_default(),
    };
    crate::ledger::record(url, answer.status, &answer.body);
    answer
}

/// Posts a CRM body signed with `secret`.
pub async fn post_crm(client: &reqwest::Client, body: &str, secret: &str) -> Answer {
    let signature = sign_crm(body.as_bytes(), secret);
    post(client, &crm_url(), &[("X-Signature", &signature)], body.to_owned()).await
}

/// `body` (a JSON object) with `nonce`, `timestamp` and the matching sign under `secret`.
pub fn signed_activity(body: &serde_json::Value, nonce: &str, timestamp: i64, secret: &str) -> String {
    let mut body = body.clone();
    body["nonce"] = nonce.into();
    body["timestamp"] = timestamp.into();
    body["sign"] = sign_activity(nonce, secret, timestamp).into();
    body.to_string()
}
