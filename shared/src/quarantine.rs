//! Refused deliveries are kept, never acted on (SPEC 2.4).
//!
//! A delivery refused with 400, or with 401 other than `stale_timestamp` and `replayed_nonce`,
//! whose body is a JSON object of its source's general shape, is kept in a table of its own so
//! that an operator can replay it through the endpoint once the configuration is fixed: each
//! replay is verified again, so nothing unauthenticated is ever merged. The answer to the sender
//! never depends on the quarantine.
//!
//! Forged traffic must not run up the bill or fill the table, so what is kept is capped: a body
//! size limit, and at most `max_per_minute` writes per function instance and clock minute.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::error::{ApiError, AuthError, StoreError};
use crate::node::Node;
use crate::timefmt::utc_rfc3339;

/// Which endpoint refused the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Crm,
    Activity,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Crm => "crm",
            Self::Activity => "activity",
        }
    }

    /// Whether `body` looks like a delivery of this source at all: a JSON object that names a
    /// CRM `event_type` or carries `extra_data`, or a Lexiang `action` or `attributes`. Probes
    /// such as `{}` are not worth keeping. `Some` holds the tenant the body names, if any (CRM
    /// `mid`, unverified).
    fn general_shape(self, body: &[u8]) -> Option<Option<String>> {
        let Ok(Node::Object(object)) = serde_json::from_slice::<Node<'_>>(body) else {
            return None;
        };
        let keys: &[&str] = match self {
            Self::Crm => &["event_type", "extra_data"],
            Self::Activity => &["action", "attributes"],
        };
        // Keys as sent: a sender that pads its keys with spaces still has the shape.
        if !object.iter().any(|(key, _)| keys.contains(&key.trim())) {
            return None;
        }
        let tenant = match (self, object.get("mid")) {
            (Self::Crm, Some(Node::String(mid))) if !mid.trim().is_empty() => Some(mid.trim().to_owned()),
            (Self::Crm, Some(Node::Number(mid))) => Some(mid.to_string()),
            _ => None,
        };
        Some(tenant)
    }
}

impl std::str::FromStr for Source {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "crm" => Ok(Self::Crm),
            "activity" => Ok(Self::Activity),
            other => Err(format!("`{other}` is not crm or activity")),
        }
    }
}

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

/// Where refused deliveries are kept. Boxed futures: the port is used on the refusal path only,
/// behind a trait object, so that the handlers need no extra type parameter.
pub trait QuarantineStore: Send + Sync {
    fn keep<'a>(
        &'a self,
        delivery: &'a RefusedDelivery,
    ) -> Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>>;
}

/// The header `webhookctl quarantine replay` marks its requests with (the delivery id): a replay
/// that is refused again is not kept a second time, its record is already there. A sender who
/// adds it only keeps its own delivery out of the quarantine.
pub const REPLAY_HEADER: &str = "x-webhookctl-replay";

/// Configuration of the quarantine (SPEC 2.4; variables in docs/refused-deliveries.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineConfig {
    /// `REFUSED_DELIVERIES_TABLE_NAME`; `None` turns the quarantine off.
    pub table_name: Option<String>,
    /// `QUARANTINE_RETENTION_DAYS` (default 14).
    pub retention_days: u32,
    /// `QUARANTINE_MAX_PER_MINUTE` per function instance (default 60; 0 keeps nothing).
    pub max_per_minute: u32,
    /// `QUARANTINE_MAX_BODY_BYTES` (default 64 KiB): larger bodies are counted, not kept.
    pub max_body_bytes: usize,
}

impl Default for QuarantineConfig {
    fn default() -> Self {
        Self {
            table_name: None,
            retention_days: 14,
            max_per_minute: 60,
            max_body_bytes: 64 * 1024,
        }
    }
}

/// Why a refused delivery was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Not a refusal SPEC 2.4 keeps (status, code, or not of the source's shape): not counted.
    NotEligible,
    /// Eligible, but over the body size cap: counted as dropped.
    TooLarge,
    /// Eligible, but over this instance's rate: counted as dropped.
    RateLimited,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotEligible => "not_eligible",
            Self::TooLarge => "too_large",
            Self::RateLimited => "rate_limited",
        }
    }
}

/// At most `max` admissions per clock minute, in this instance.
#[derive(Debug)]
struct MinuteBudget {
    max: u32,
    /// (minute, admissions in it)
    used: Mutex<(i64, u32)>,
}

impl MinuteBudget {
    fn take(&self, now: i64) -> bool {
        let minute = now.div_euclid(60);
        let mut used = self.used.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if used.0 != minute {
            *used = (minute, 0);
        }
        if used.1 < self.max {
            used.1 += 1;
            true
        } else {
            false
        }
    }
}

/// A request as the quarantine sees it.
#[derive(Debug, Clone, Copy)]
pub struct Refusal<'a> {
    pub error: &'a ApiError,
    pub body: &'a [u8],
    /// Every header: (name, value as text; empty when not visible ASCII).
    pub headers: &'a [(&'a str, &'a str)],
    pub tenant: Option<&'a str>,
}

/// The decision of what to keep: eligibility, caps, and the record. Pure but for the clock.
#[derive(Debug)]
pub struct QuarantinePolicy {
    source: Source,
    /// The configured signature header, lowercase (CRM); kept whatever its name.
    signature_header: Option<String>,
    config: QuarantineConfig,
    budget: MinuteBudget,
    clock: Arc<dyn Clock>,
}

impl QuarantinePolicy {
    pub fn new(
        source: Source,
        signature_header: Option<&str>,
        config: QuarantineConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            source,
            signature_header: signature_header.map(str::to_ascii_lowercase),
            budget: MinuteBudget {
                max: config.max_per_minute,
                used: Mutex::new((i64::MIN, 0)),
            },
            config,
            clock,
        }
    }

    pub fn source(&self) -> Source {
        self.source
    }

    pub fn config(&self) -> &QuarantineConfig {
        &self.config
    }

    /// Whether SPEC 2.4 keeps a refusal with this error: 400, or 401 except `stale_timestamp`
    /// (a sign that was right once; a replay would be stale again) and `replayed_nonce` (the
    /// original was accepted).
    pub fn keeps(error: &ApiError) -> bool {
        match error {
            ApiError::Auth(AuthError::StaleTimestamp { .. } | AuthError::ReplayedNonce) => false,
            other => matches!(other.status(), 400 | 401),
        }
    }

    /// The record to keep for `refusal`, or why not. Takes from the rate budget only for a
    /// delivery that would otherwise be kept.
    pub fn admit(&self, refusal: &Refusal<'_>) -> Result<RefusedDelivery, Skip> {
        let replayed = refusal
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case(REPLAY_HEADER));
        if replayed || !Self::keeps(refusal.error) {
            return Err(Skip::NotEligible);
        }
        if refusal.body.len() > self.config.max_body_bytes {
            // Not parsed: the point of the cap is to spend nothing on it. Counted as dropped if
            // it at least starts like a JSON object.
            return Err(if refusal.body.trim_ascii_start().starts_with(b"{") {
                Skip::TooLarge
            } else {
                Skip::NotEligible
            });
        }
        let Some(body_tenant) = self.source.general_shape(refusal.body) else {
            return Err(Skip::NotEligible);
        };
        let now = self.clock.now_unix();
        if !self.budget.take(now) {
            return Err(Skip::RateLimited);
        }
        let body = String::from_utf8_lossy(refusal.body).into_owned();
        let received_at = utc_rfc3339(now);
        let digest = hex::encode(&Sha256::digest(refusal.body)[..6]);
        let mut header_names: Vec<String> = refusal
            .headers
            .iter()
            .map(|(name, _)| name.to_ascii_lowercase())
            .collect();
        header_names.sort();
        header_names.dedup();
        let signature_headers = refusal
            .headers
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), *value))
            .filter(|(name, _)| self.signature_header.as_deref() == Some(name.as_str()) || looks_like_signature(name))
            .map(|(name, value)| (name, value.to_owned()))
            .collect();
        Ok(RefusedDelivery {
            source: self.source,
            delivery_id: format!("{received_at}#{digest}"),
            received_at,
            status: refusal.error.status(),
            code: refusal.error.code().to_owned(),
            tenant: refusal.tenant.map(str::to_owned).or(body_tenant),
            body,
            header_names,
            signature_headers,
            expires_at: now + i64::from(self.config.retention_days) * 24 * 3600,
            last_replay: None,
            last_replay_at: None,
        })
    }
}

/// Header names that may carry a signature under some scheme (`x-signature`, `x-hub-signature-256`,
/// `x-jing-sign`, `x-hmac`), and never credentials of ours.
fn looks_like_signature(name: &str) -> bool {
    const NEVER: [&str; 4] = ["authorization", "cookie", "proxy-authorization", "x-api-key"];
    !NEVER.contains(&name) && ["sign", "hmac", "digest"].iter().any(|word| name.contains(word))
}

/// An in-memory quarantine for handler unit tests: keeps every record, or fails every write.
#[derive(Debug, Default)]
pub struct MemoryQuarantine {
    pub kept: Mutex<Vec<RefusedDelivery>>,
    /// When set, every write fails as a DynamoDB outage would.
    pub unavailable: std::sync::atomic::AtomicBool,
}

impl MemoryQuarantine {
    pub fn records(&self) -> Vec<RefusedDelivery> {
        self.kept.lock().expect("poisoned").clone()
    }
}

impl QuarantineStore for MemoryQuarantine {
    fn keep<'a>(
        &'a self,
        delivery: &'a RefusedDelivery,
    ) -> Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>> {
        Box::pin(async move {
            if self.unavailable.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(StoreError::Unavailable("memory quarantine switched off".into()));
            }
            self.kept.lock().expect("poisoned").push(delivery.clone());
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use crate::error::{ParseError, RequestError};

    const NOW: i64 = 1_780_000_000;

    fn policy(config: QuarantineConfig) -> QuarantinePolicy {
        QuarantinePolicy::new(Source::Crm, Some("X-Signature"), config, Arc::new(FixedClock(NOW)))
    }

    fn refusal<'a>(error: &'a ApiError, body: &'a str, headers: &'a [(&'a str, &'a str)]) -> Refusal<'a> {
        Refusal {
            error,
            body: body.as_bytes(),
            headers,
            tenant: Some("124"),
        }
    }

    const BODY: &str = r#"{"mid":"124","event_type":"object_update","extra_data":{"entity_id":"E"}}"#;

    #[test]
    fn keeps_what_spec_2_4_keeps_and_nothing_else() {
        let policy = policy(QuarantineConfig::default());
        let headers = [("X-Signature", "abc"), ("Content-Type", "application/json")];
        let kept: Vec<ApiError> = vec![
            AuthError::InvalidSignature.into(),
            AuthError::NoSecret("124".into()).into(),
            AuthError::MissingSignature("x".into()).into(),
            ParseError::invalid("mid", "x").into(),
            ParseError::MissingField("create_time".into()).into(),
            RequestError::MissingMid.into(),
        ];
        for error in &kept {
            assert!(policy.admit(&refusal(error, BODY, &headers)).is_ok(), "{error:?}");
        }
        let not_kept: Vec<ApiError> = vec![
            AuthError::StaleTimestamp {
                timestamp: 0,
                now: 1,
                max_skew: 1,
            }
            .into(),
            AuthError::ReplayedNonce.into(),
            RequestError::MethodNotAllowed("GET".into()).into(),
            RequestError::PayloadTooLarge { size: 2, limit: 1 }.into(),
            StoreError::Timeout(1).into(),
        ];
        for error in &not_kept {
            assert_eq!(
                policy.admit(&refusal(error, BODY, &headers)),
                Err(Skip::NotEligible),
                "{error:?}"
            );
        }
        let invalid = ApiError::from(AuthError::InvalidSignature);
        let replay = [("X-Webhookctl-Replay", "2026-01-01T00:00:00Z#0123456789ab")];
        assert_eq!(
            policy.admit(&refusal(&invalid, BODY, &replay)),
            Err(Skip::NotEligible),
            "a replay"
        );
        for body in ["{}", "[1]", "not json", r#"{"action":"event/add"}"#, r#"{"mid":"124"}"#] {
            assert_eq!(
                policy.admit(&refusal(&invalid, body, &headers)),
                Err(Skip::NotEligible),
                "{body}"
            );
        }
    }

    #[test]
    fn the_record_holds_what_spec_2_4_lists_and_no_other_header_value() {
        let policy = policy(QuarantineConfig::default());
        let error = ApiError::from(AuthError::InvalidSignature);
        let headers = [
            ("X-Signature", "sha1=abc"),
            ("X-Hub-Signature-256", "sha256=def"),
            ("Authorization", "Bearer secret-token"),
            ("Content-Type", "application/json"),
        ];
        let record = policy.admit(&refusal(&error, BODY, &headers)).unwrap();
        assert_eq!(record.body, BODY);
        assert_eq!((record.status, record.code.as_str()), (401, "invalid_signature"));
        assert_eq!(record.tenant.as_deref(), Some("124"));
        assert_eq!(
            record.header_names,
            ["authorization", "content-type", "x-hub-signature-256", "x-signature"]
        );
        assert_eq!(
            record.signature_headers.into_iter().collect::<Vec<_>>(),
            [
                ("x-hub-signature-256".to_owned(), "sha256=def".to_owned()),
                ("x-signature".to_owned(), "sha1=abc".to_owned())
            ]
        );
        assert_eq!(record.received_at, utc_rfc3339(NOW));
        assert!(record.delivery_id.starts_with(&format!("{}#", record.received_at)));
        assert_eq!(record.expires_at, NOW + 14 * 24 * 3600);
    }

    #[test]
    fn the_rate_cap_holds_per_minute_and_the_size_cap_drops_large_bodies() {
        let clock = Arc::new(std::sync::Mutex::new(NOW));
        #[derive(Debug)]
        struct Shared(Arc<std::sync::Mutex<i64>>);
        impl Clock for Shared {
            fn now_unix(&self) -> i64 {
                *self.0.lock().unwrap()
            }
        }
        let config = QuarantineConfig {
            max_per_minute: 3,
            max_body_bytes: 200,
            ..QuarantineConfig::default()
        };
        let policy = QuarantinePolicy::new(Source::Crm, None, config, Arc::new(Shared(Arc::clone(&clock))));
        let error = ApiError::from(AuthError::InvalidSignature);
        let minute_start = NOW - NOW.rem_euclid(60);
        *clock.lock().unwrap() = minute_start;
        let outcomes: Vec<bool> = (0..10)
            .map(|_| policy.admit(&refusal(&error, BODY, &[])).is_ok())
            .collect();
        assert_eq!(outcomes.iter().filter(|kept| **kept).count(), 3);
        assert_eq!(policy.admit(&refusal(&error, BODY, &[])), Err(Skip::RateLimited));
        *clock.lock().unwrap() = minute_start + 59;
        assert_eq!(policy.admit(&refusal(&error, BODY, &[])), Err(Skip::RateLimited));
        *clock.lock().unwrap() = minute_start + 60;
        assert!(
            policy.admit(&refusal(&error, BODY, &[])).is_ok(),
            "a new minute, a new budget"
        );
        let large = BODY.replacen('{', &format!("{{\"pad\":\"{}\",", "x".repeat(200)), 1);
        assert_eq!(policy.admit(&refusal(&error, &large, &[])), Err(Skip::TooLarge));
        let none = QuarantinePolicy::new(
            Source::Crm,
            None,
            QuarantineConfig {
                max_per_minute: 0,
                ..QuarantineConfig::default()
            },
            Arc::new(FixedClock(NOW)),
        );
        assert_eq!(none.admit(&refusal(&error, BODY, &[])), Err(Skip::RateLimited));
    }

    #[test]
    fn activity_shape_is_its_own() {
        let policy = QuarantinePolicy::new(
            Source::Activity,
            None,
            QuarantineConfig::default(),
            Arc::new(FixedClock(NOW)),
        );
        let error = ApiError::from(AuthError::InvalidSignature);
        assert!(policy
            .admit(&refusal(&error, r#"{"action":"event/add","nonce":"n"}"#, &[]))
            .is_ok());
        assert_eq!(policy.admit(&refusal(&error, BODY, &[])), Err(Skip::NotEligible));
    }
}
