//! Lexiang actions the service does not model (`doc/add`, `event/archive`, …), kept (contract 2.3):
//! they are verified and acknowledged `success`, so their bodies are stored where an operator can
//! read them back (`webhookctl unmodelled list`) instead of only being logged.
//!
//! They live in the `refused_deliveries` table under a partition of their own,
//! [`UNMODELLED_PARTITION`]: the quarantine's commands read the `crm` and `activity` partitions
//! only, so an acknowledged action is never listed, shown or replayed as a refused delivery.
//! A record is written in the same transaction as its nonce records, so a `success` always means
//! that it is stored. It expires with the quarantine's retention.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::activity::ActivityEvent;
use crate::timefmt::utc_rfc3339;

/// The partition key (`source`) of unmodelled actions in the `refused_deliveries` table.
pub const UNMODELLED_PARTITION: &str = "unmodelled-activity";

/// One acknowledged callback whose action the service does not model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmodelledAction {
    /// Sort key: `<received_at>#<12 hex digits of the body's SHA-256>`, as for refused
    /// deliveries, so that the partition reads in time order.
    pub delivery_id: String,
    /// RFC 3339 UTC.
    pub received_at: String,
    /// The tenant the request named (path, query or default).
    pub tenant: String,
    /// The action as sent (`doc/add`).
    pub action: String,
    pub nonce: String,
    /// The body exactly as received.
    pub body: String,
    /// Unix seconds after which DynamoDB's TTL deletes the record.
    pub expires_at: i64,
}

impl UnmodelledAction {
    /// The record of `event`, received at `now`, kept `retention_seconds`.
    pub fn of(event: &ActivityEvent, now: i64, retention_seconds: i64) -> Self {
        let received_at = utc_rfc3339(now);
        let digest = hex::encode(&Sha256::digest(event.raw.as_bytes())[..6]);
        Self {
            delivery_id: format!("{received_at}#{digest}"),
            received_at,
            tenant: event.mid.clone(),
            action: event.action.as_str().to_owned(),
            nonce: event.nonce.clone(),
            body: event.raw.to_string(),
            expires_at: now + retention_seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Envelope;
    use crate::timefmt::SourceOffset;

    #[test]
    fn the_record_holds_the_raw_body_action_tenant_and_time() {
        let body = r#"{"action":"doc/add","attributes":{"doc_id":"D"},"nonce":"n1"}"#;
        let envelope = Envelope::parse(body.as_bytes()).unwrap();
        let event = ActivityEvent::from_envelope(envelope, "124", "n1", 1, SourceOffset::BEIJING).unwrap();
        let record = UnmodelledAction::of(&event, 1_780_000_000, 14 * 86_400);
        assert_eq!(record.body, body);
        assert_eq!((record.tenant.as_str(), record.action.as_str()), ("124", "doc/add"));
        assert_eq!(record.nonce, "n1");
        assert_eq!(record.received_at, "2026-05-28T20:26:40Z");
        assert_eq!(record.delivery_id.len(), record.received_at.len() + 13);
        assert!(record.delivery_id.starts_with("2026-05-28T20:26:40Z#"));
        assert_eq!(record.expires_at, 1_780_000_000 + 14 * 86_400);
    }
}
