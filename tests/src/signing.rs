//! Signing as the senders do, for tests and tools.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use shared::secret::Secret;

pub fn sign_crm(body: &[u8], secret: &str) -> String {
    shared::crm::verify::sign(body, &Secret::new(secret))
}

pub fn sign_activity(nonce: &str, secret: &str, timestamp: i64) -> String {
    shared::activity::verify::sign(nonce, &Secret::new(secret), timestamp)
}

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// A nonce no other call in this process (or, practically, any other process) returns.
pub fn unique_nonce() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{nanos:x}-{:x}-{count:x}", std::process::id())
}

/// `body` with a fresh nonce, the current timestamp and the matching sign.
pub fn fresh_activity_body(body: &str, secret: &str) -> Result<String, serde_json::Error> {
    let mut value: serde_json::Value = serde_json::from_str(body)?;
    let nonce = unique_nonce();
    let timestamp = now_unix();
    value["nonce"] = nonce.clone().into();
    value["timestamp"] = timestamp.into();
    value["sign"] = sign_activity(&nonce, secret, timestamp).into();
    Ok(value.to_string())
}
