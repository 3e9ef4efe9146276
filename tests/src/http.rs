//! Posting to the functions served by `cargo lambda watch`. Every answer goes through
//! [`exchange`], which also records it in the answer ledger ([`crate::ledger`]).

use std::time::Duration;

pub use crate::local::{dev_activity_secret, dev_crm_secret};
use crate::signing::{sign_activity_into, sign_crm};
use crate::{ledger, local, stack};

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

/// An answer: status, content type (empty when absent) and body text.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
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
    exchange(request).await
}

/// Sends a request and reads its whole answer, which it records in the answer ledger. Panics
/// (naming the request) when no answer comes.
pub async fn exchange(request: reqwest::RequestBuilder) -> Answer {
    let (client, request) = request.build_split();
    let request = request.expect("a well-formed request");
    let method = request.method().to_string();
    let path = match request.url().query() {
        Some(query) => format!("{}?{query}", request.url().path()),
        None => request.url().path().to_owned(),
    };
    let response = client
        .execute(request)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.text().await.unwrap_or_default();
    ledger::record(&method, &path, status, &content_type, &body);
    Answer {
        status,
        content_type,
        body,
    }
}

/// Posts a CRM body signed with `secret`.
pub async fn post_crm(client: &reqwest::Client, body: &str, secret: &str) -> Answer {
    let signature = sign_crm(body.as_bytes(), secret);
    post(
        client,
        &crm_url(),
        &[(local::crm_signature_header(), &signature)],
        body.to_owned(),
    )
    .await
}

/// `body` (a JSON object) with `nonce`, `timestamp` and the matching sign under `secret`.
pub fn signed_activity(body: &serde_json::Value, nonce: &str, timestamp: i64, secret: &str) -> String {
    let mut body = body.clone();
    sign_activity_into(&mut body, nonce, timestamp, secret);
    body.to_string()
}
