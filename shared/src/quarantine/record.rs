//! What is kept of a refused delivery: the body exactly as received, the refusal, the tenant if
//! known, the header names and the values of the headers that may carry a signature.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::source::Source;

/// The header `webhookctl quarantine replay` marks its requests with (the delivery id): a replay
/// that is refused again is not kept a second time, its record is already there. A sender who
/// adds it only keeps its own delivery out of the quarantine.
pub const REPLAY_HEADER: &str = "x-webhookctl-replay";

/// One refused delivery, as kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedDelivery {
    pub source: Source,
    /// Sort key within the source: `<received_at>#<12 hex digits of the body's SHA-256>`, so
    /// that the table reads in time order and a retry of the same body within a second is one
    /// record.
    pub delivery_id: String,
    /// RFC 3339 UTC.
    pub received_at: String,
    pub status: u16,
    pub code: String,
    /// The tenant the request named (CRM: the body's `mid`, unverified; activity: the path,
    /// query or default), when it could be read.
    pub tenant: Option<String>,
    /// The body exactly as received (it is a JSON object, hence UTF-8).
    pub body: String,
    /// The names of every request header, lowercase, sorted.
    pub header_names: Vec<String>,
    /// Name → value of the headers that may carry a signature: the configured one and any whose
    /// name mentions a signature. Nothing else (no `Authorization`, no cookies) is kept.
    pub signature_headers: BTreeMap<String, String>,
    /// Unix seconds after which DynamoDB's TTL deletes the record.
    pub expires_at: i64,
    /// What the last `webhookctl quarantine replay` got (`accepted`, `duplicate`, or a refusal
    /// code) and when; written by the tool, never by the functions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_replay: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_replay_at: Option<String>,
}

/// The record's sort key: `received_at`, then 12 hex digits of the body's SHA-256.
pub fn delivery_id(received_at: &str, body: &str) -> String {
    format!("{received_at}#{}", hex::encode(&Sha256::digest(body)[..6]))
}

/// Whether a request carries [`REPLAY_HEADER`]: it is a replay, whose record is already kept.
pub fn is_replay(headers: &[(&str, &str)]) -> bool {
    headers.iter().any(|(name, _)| name.eq_ignore_ascii_case(REPLAY_HEADER))
}

/// Every header name, lowercase, sorted, once.
pub fn header_names(headers: &[(&str, &str)]) -> Vec<String> {
    let mut names: Vec<String> = headers.iter().map(|(name, _)| name.to_ascii_lowercase()).collect();
    names.sort();
    names.dedup();
    names
}

/// Name (lowercase) → value of the headers that may carry a signature: `configured` (lowercase),
/// whatever its name, and any header whose name looks like a signature's.
pub fn signature_headers(headers: &[(&str, &str)], configured: Option<&str>) -> BTreeMap<String, String> {
    headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), *value))
        .filter(|(name, _)| configured == Some(name.as_str()) || looks_like_signature(name))
        .map(|(name, value)| (name, value.to_owned()))
        .collect()
}

/// Header names that may carry a signature under some scheme (`x-signature`, `x-hub-signature-256`,
/// `x-jing-sign`, `x-hmac`), and never credentials of ours.
fn looks_like_signature(name: &str) -> bool {
    const NEVER: [&str; 4] = ["authorization", "cookie", "proxy-authorization", "x-api-key"];
    !NEVER.contains(&name) && ["sign", "hmac", "digest"].iter().any(|word| name.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_like_headers_are_kept_and_credentials_never() {
        let headers = [
            ("X-Jing-Sign", "a"),
            ("X-Hub-Signature-256", "b"),
            ("X-HMAC", "c"),
            ("Digest", "d"),
            ("X-Custom", "e"),
            ("Authorization", "Bearer secret-token"),
            ("Cookie", "session=1"),
            ("X-Api-Key", "k"),
            ("Content-Type", "application/json"),
        ];
        let kept = signature_headers(&headers, Some("x-custom"));
        assert_eq!(
            kept.keys().map(String::as_str).collect::<Vec<_>>(),
            ["digest", "x-custom", "x-hmac", "x-hub-signature-256", "x-jing-sign"]
        );
        assert!(!signature_headers(&headers, None).contains_key("x-custom"));
    }

    #[test]
    fn header_names_are_lowercase_sorted_once_and_a_replay_is_recognised_in_any_case() {
        let headers = [("X-B", "1"), ("x-a", "2"), ("X-A", "3")];
        assert_eq!(header_names(&headers), ["x-a", "x-b"]);
        assert!(!is_replay(&headers));
        assert!(is_replay(&[("X-Webhookctl-Replay", "id")]));
    }

    #[test]
    fn a_delivery_id_is_its_time_then_the_body_digest() {
        let id = delivery_id("2026-01-01T00:00:00Z", "{}");
        // SHA-256 of `{}` begins 44136fa355b3.
        assert_eq!(id, "2026-01-01T00:00:00Z#44136fa355b3");
        assert_ne!(id, delivery_id("2026-01-01T00:00:00Z", "{ }"));
    }
}
