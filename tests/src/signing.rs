//! Signing as the senders do, with the development secrets' plain text: thin wrappers over the
//! model crate's signers (`shared::crm::verify::sign`, `shared::activity::verify::sign_body`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use shared::activity::verify::{self as activity_verify, UnsignableBody};
use shared::clock::{Clock, SystemClock};
use shared::secret::Secret;

pub fn sign_crm(body: &[u8], secret: &str) -> String {
    shared::crm::verify::sign(body, &Secret::new(secret))
}

pub fn sign_activity(nonce: &str, secret: &str, timestamp: i64) -> String {
    activity_verify::sign(nonce, &Secret::new(secret), timestamp)
}

/// Sets `nonce`, `timestamp` and the matching `sign` under `secret` in the callback `body`.
///
/// # Panics
/// When `body` is not a JSON object: the kit's bodies always are.
pub fn sign_activity_into(body: &mut Value, nonce: &str, timestamp: i64, secret: &str) {
    let object = body.as_object_mut().expect("an activity body is a JSON object");
    activity_verify::sign_body(object, &Secret::new(secret), nonce, timestamp);
}

pub fn now_unix() -> i64 {
    SystemClock.now_unix()
}

/// A nonce no other call in this process (or, practically, any other process) returns.
pub fn unique_nonce() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{nanos:x}-{:x}-{count:x}", std::process::id())
}

/// `body` with a fresh nonce, the current timestamp and the matching sign.
pub fn fresh_activity_body(body: &str, secret: &str) -> Result<String, UnsignableBody> {
    activity_verify::signed_body(body.as_bytes(), &Secret::new(secret), &unique_nonce(), now_unix())
}
