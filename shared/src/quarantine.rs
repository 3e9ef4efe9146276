//! Refused deliveries are kept, never acted on (contract 2.4).
//!
//! A delivery refused with 400, or with 401 other than a plain replay (a nonce accepted for
//! another tenant with the same body), whose body is a JSON object of its source's general
//! shape, is kept in a table of its own so that an operator can replay it once the configuration
//! is fixed: each replay is verified again, so nothing unauthenticated is ever merged. A
//! correctly signed stale callback and a nonce seen before with another body are kept too: either
//! may be the genuine delivery. The answer to the sender never depends on the quarantine.
//!
//! Forged traffic must not run up the bill or fill the table, so what is kept is capped three
//! ways: a body size limit; at most `max_per_minute` records per function instance and clock
//! minute (free: decided in memory); and at most `global_max` records per `global_window_seconds`
//! across every instance of both functions, counted by DynamoDB itself in a counter item of the
//! quarantine table ([`CapWindow`], [`SlotRequest`]). A slot of the global cap is taken before
//! the record is written, so the table never holds more records than slots were granted.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::error::{ApiError, AuthError, NonceReuse, StoreError};
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

/// What a store's future resolves to: boxed, because the port is used on the refusal path only,
/// behind a trait object, so that the handlers need no extra type parameter.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Where refused deliveries are kept, and where the global cap is counted.
pub trait QuarantineStore: Send + Sync {
    fn keep<'a>(&'a self, delivery: &'a RefusedDelivery) -> StoreFuture<'a, ()>;

    /// Takes one slot of the global cap: raises the window's counter by one unless it already
    /// holds `max`, atomically (one conditional write), so that concurrent instances can never
    /// be granted more than `max` slots between them.
    fn take_slot<'a>(&'a self, slot: &'a SlotRequest) -> StoreFuture<'a, Slot>;
}

/// The header `webhookctl quarantine replay` marks its requests with (the delivery id): a replay
/// that is refused again is not kept a second time, its record is already there. A sender who
/// adds it only keeps its own delivery out of the quarantine.
pub const REPLAY_HEADER: &str = "x-webhookctl-replay";

/// Configuration of the quarantine (contract 2.4; variables in docs/refused-deliveries.md).
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
    /// `QUARANTINE_GLOBAL_MAX` (default 1000; 0 keeps nothing): records kept per global window
    /// by every instance of both functions together.
    pub global_max: u32,
    /// `QUARANTINE_GLOBAL_WINDOW_SECONDS` (default 3600): the length of a global window.
    pub global_window_seconds: u32,
}

impl Default for QuarantineConfig {
    fn default() -> Self {
        Self {
            table_name: None,
            retention_days: 14,
            max_per_minute: 60,
            max_body_bytes: 64 * 1024,
            // A flood costs at most 1000 record writes an hour (24,000 a day, 336,000 records
            // over the default 14 days), while a tenant onboarding without its secret, a few
            // events a minute, is kept whole.
            global_max: 1000,
            global_window_seconds: 3600,
        }
    }
}

/// The partition key (`source`) of the global cap's counter items in the quarantine table. No
/// source is named so (sources are `crm` and `activity`), so `webhookctl quarantine`, which
/// reads the table one source at a time, never sees a counter.
pub const CAP_PARTITION: &str = "#cap";

/// One window of the global cap: `[start, start + seconds)`, aligned on the Unix epoch, so that
/// every instance finds the same window from its own clock without talking to the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapWindow {
    pub start: i64,
    pub seconds: u32,
}

impl CapWindow {
    /// The window `now` falls in.
    pub fn containing(now: i64, seconds: u32) -> Self {
        let length = i64::from(seconds.max(1));
        Self {
            start: now - now.rem_euclid(length),
            seconds,
        }
    }

    /// The first second after the window.
    pub fn end(&self) -> i64 {
        self.start + i64::from(self.seconds.max(1))
    }

    /// The counter item's sort key (`delivery_id`): the window's start, RFC 3339 UTC. Windows of
    /// another length starting at the same second share a counter: changing the window length
    /// mid-window never grants a fresh budget.
    pub fn key(&self) -> String {
        utc_rfc3339(self.start)
    }
}

/// A request for one slot of the global cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRequest {
    pub window: CapWindow,
    /// The most slots the window's counter may grant.
    pub max: u32,
    /// TTL of the counter item, as of a record: the window's end plus the retention, so that a
    /// counter is there as long as the records it counted, and then expires.
    pub expires_at: i64,
}

/// What the counter answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The counter was raised: the record may be written.
    Granted,
    /// The window already holds its `max`.
    Full,
}

/// An eligible refused delivery within this instance's budget, waiting for a slot of the global
/// cap ([`QuarantinePolicy::settle`] then says whether to write it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub record: RefusedDelivery,
    pub slot: SlotRequest,
}

/// Why a refused delivery was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Not a refusal contract 2.4 keeps (status, code, or not of the source's shape): not counted.
    NotEligible,
    /// Eligible, but over the body size cap: counted as dropped.
    TooLarge,
    /// Eligible, but over this instance's rate: counted as dropped.
    RateLimited,
    /// Eligible, but the global window is full (known in memory, or answered by the counter).
    GlobalCap,
    /// Eligible, but the counter of the global cap could not be reached: dropped, since without
    /// a slot nothing bounds the writes (fail closed for cost).
    CapUnavailable,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotEligible => "not_eligible",
            Self::TooLarge => "too_large",
            Self::RateLimited => "rate_limited",
            Self::GlobalCap => "global_cap",
            Self::CapUnavailable => "cap_unavailable",
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

/// This instance's view of the global cap: what it needs to ask for a slot, and the window it
/// last learnt is full. Lambda runs one request at a time per instance, so each instance asks
/// the counter at most once after its window filled up; a flood past the cap costs no calls.
#[derive(Debug)]
struct GlobalCap {
    max: u32,
    window_seconds: u32,
    /// Until when (Unix seconds, exclusive) the counter is known to be full; the end of the full
    /// window, or `i64::MIN` when no full window is known.
    full_until: AtomicI64,
}

impl GlobalCap {
    fn known_full(&self, now: i64) -> bool {
        now < self.full_until.load(Ordering::Relaxed)
    }

    fn mark_full(&self, window: &CapWindow) {
        // `fetch_max`: a late answer about an older window never shortens a newer mark.
        self.full_until.fetch_max(window.end(), Ordering::Relaxed);
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
    cap: GlobalCap,
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
            cap: GlobalCap {
                max: config.global_max,
                window_seconds: config.global_window_seconds,
                full_until: AtomicI64::new(i64::MIN),
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

    /// Whether contract 2.4 keeps a refusal with this error: 400, or 401 except a plain replay (the
    /// same body accepted for another tenant: the original was applied, nothing is lost). A
    /// stale timestamp is only checked after the sign, so a stale refusal is correctly signed.
    pub fn keeps(error: &ApiError) -> bool {
        match error {
            ApiError::Auth(AuthError::ReplayedNonce(NonceReuse::OtherTenant)) => false,
            other => matches!(other.status(), 400 | 401),
        }
    }

    /// The record to keep for `refusal` and the global slot to ask for, or why not. Everything
    /// that costs nothing is decided here, in this order: eligibility, size, a global window
    /// known to be full, this instance's rate (taken only for a delivery that would otherwise be
    /// kept). The slot's window is that of `received_at`, so a record counts in the window its
    /// own time names.
    pub fn admit(&self, refusal: &Refusal<'_>) -> Result<Admission, Skip> {
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
        if self.cap.max == 0 || self.cap.known_full(now) {
            return Err(Skip::GlobalCap);
        }
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
        let retention = i64::from(self.config.retention_days) * 24 * 3600;
        let window = CapWindow::containing(now, self.cap.window_seconds);
        let record = RefusedDelivery {
            source: self.source,
            delivery_id: format!("{received_at}#{digest}"),
            received_at,
            status: refusal.error.status(),
            code: refusal.error.code().to_owned(),
            tenant: refusal.tenant.map(str::to_owned).or(body_tenant),
            body,
            header_names,
            signature_headers,
            expires_at: now + retention,
            last_replay: None,
            last_replay_at: None,
        };
        Ok(Admission {
            record,
            slot: SlotRequest {
                window,
                max: self.cap.max,
                expires_at: window.end() + retention,
            },
        })
    }

    /// What to do with an admitted delivery once the counter answered: write the record when a
    /// slot was granted; otherwise drop it, and when the window is full, remember it so that no
    /// further call is made for that window. A failed or slow counter drops the delivery (fail
    /// closed: without a slot nothing bounds the writes).
    pub fn settle(&self, admission: Admission, answer: Result<Slot, StoreError>) -> Result<RefusedDelivery, Skip> {
        match answer {
            Ok(Slot::Granted) => Ok(admission.record),
            Ok(Slot::Full) => {
                self.cap.mark_full(&admission.slot.window);
                Err(Skip::GlobalCap)
            }
            Err(_) => Err(Skip::CapUnavailable),
        }
    }
}

/// Header names that may carry a signature under some scheme (`x-signature`, `x-hub-signature-256`,
/// `x-jing-sign`, `x-hmac`), and never credentials of ours.
fn looks_like_signature(name: &str) -> bool {
    const NEVER: [&str; 4] = ["authorization", "cookie", "proxy-authorization", "x-api-key"];
    !NEVER.contains(&name) && ["sign", "hmac", "digest"].iter().any(|word| name.contains(word))
}

/// An in-memory quarantine for unit tests: keeps every record and counts global slots as the
/// DynamoDB counter does, or fails every call.
#[derive(Debug, Default)]
pub struct MemoryQuarantine {
    pub kept: Mutex<Vec<RefusedDelivery>>,
    /// Slots granted per window (by its start).
    pub slots: Mutex<BTreeMap<i64, u32>>,
    /// Counter calls made, granted or not.
    pub slot_calls: AtomicU64,
    /// When set, every write fails as a DynamoDB outage would.
    pub unavailable: std::sync::atomic::AtomicBool,
    /// When set, every counter call fails (the records could still be written).
    pub counter_unavailable: std::sync::atomic::AtomicBool,
}

impl MemoryQuarantine {
    pub fn records(&self) -> Vec<RefusedDelivery> {
        self.kept.lock().expect("poisoned").clone()
    }

    /// The counter's conditional increment, synchronously: what `take_slot` answers.
    pub fn take_slot_now(&self, slot: &SlotRequest) -> Result<Slot, StoreError> {
        self.slot_calls.fetch_add(1, Ordering::SeqCst);
        if self.counter_unavailable.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("memory counter switched off".into()));
        }
        let mut slots = self.slots.lock().expect("poisoned");
        let kept = slots.entry(slot.window.start).or_default();
        if *kept < slot.max {
            *kept += 1;
            Ok(Slot::Granted)
        } else {
            Ok(Slot::Full)
        }
    }
}

impl QuarantineStore for MemoryQuarantine {
    fn keep<'a>(&'a self, delivery: &'a RefusedDelivery) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if self.unavailable.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("memory quarantine switched off".into()));
            }
            self.kept.lock().expect("poisoned").push(delivery.clone());
            Ok(())
        })
    }

    fn take_slot<'a>(&'a self, slot: &'a SlotRequest) -> StoreFuture<'a, Slot> {
        Box::pin(async move { self.take_slot_now(slot) })
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
            AuthError::StaleTimestamp {
                timestamp: 0,
                now: 1,
                max_age: 0,
                max_future: 0,
            }
            .into(),
            AuthError::ReplayedNonce(NonceReuse::OtherBody).into(),
        ];
        for error in &kept {
            assert!(policy.admit(&refusal(error, BODY, &headers)).is_ok(), "{error:?}");
        }
        let not_kept: Vec<ApiError> = vec![
            AuthError::ReplayedNonce(NonceReuse::OtherTenant).into(),
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
        let record = policy.admit(&refusal(&error, BODY, &headers)).unwrap().record;
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

    /// A clock the test moves, shared by every policy (instance) of a simulation.
    #[derive(Debug, Clone, Default)]
    struct MovingClock(Arc<Mutex<i64>>);

    impl MovingClock {
        fn at(now: i64) -> Self {
            Self(Arc::new(Mutex::new(now)))
        }

        fn set(&self, now: i64) {
            *self.0.lock().unwrap() = now;
        }
    }

    impl Clock for MovingClock {
        fn now_unix(&self) -> i64 {
            *self.0.lock().unwrap()
        }
    }

    /// Admits, asks the in-memory counter, settles, and keeps: what `signals::Quarantine` does,
    /// without the async runtime. `Ok(())` when the delivery was kept.
    fn consider(policy: &QuarantinePolicy, store: &MemoryQuarantine, body: &str) -> Result<(), Skip> {
        let error = ApiError::from(AuthError::InvalidSignature);
        let admission = policy.admit(&refusal(&error, body, &[]))?;
        let answer = store.take_slot_now(&admission.slot);
        let record = policy.settle(admission, answer)?;
        store.kept.lock().unwrap().push(record);
        Ok(())
    }

    #[test]
    fn a_cap_window_is_aligned_on_the_epoch_and_keyed_by_its_start() {
        let hour = CapWindow::containing(3_600 * 10 + 1_799, 3_600);
        assert_eq!((hour.start, hour.end()), (36_000, 39_600));
        assert_eq!(hour.key(), "1970-01-01T10:00:00Z");
        assert_eq!(
            CapWindow::containing(36_000, 3_600),
            hour,
            "a window holds its first second"
        );
        assert_ne!(CapWindow::containing(39_600, 3_600), hour, "and not its end");
        assert_eq!(CapWindow::containing(-1, 60).start, -60, "before the epoch too");
        let config = QuarantineConfig {
            retention_days: 2,
            global_max: 7,
            ..QuarantineConfig::default()
        };
        let admission = policy(config).admit(&refusal(&AuthError::InvalidSignature.into(), BODY, &[]));
        let slot = admission.unwrap().slot;
        assert_eq!(slot.window, CapWindow::containing(NOW, 3_600), "hourly by default");
        assert_eq!(slot.max, 7);
        assert_eq!(
            slot.expires_at,
            slot.window.end() + 2 * 86_400,
            "the records' retention"
        );
    }

    #[test]
    fn the_global_cap_holds_across_instances_and_a_full_window_costs_no_calls() {
        let window_start = NOW - NOW.rem_euclid(3_600);
        let clock = MovingClock::at(window_start);
        let config = QuarantineConfig {
            global_max: 50,
            ..QuarantineConfig::default()
        };
        let instances: Vec<QuarantinePolicy> = (0..16)
            .map(|_| QuarantinePolicy::new(Source::Crm, None, config.clone(), Arc::new(clock.clone())))
            .collect();
        let store = MemoryQuarantine::default();
        let mut skipped: BTreeMap<&str, u32> = BTreeMap::new();
        // 10,000 forged deliveries over the first 50 minutes, spread over the instances.
        for n in 0..10_000 {
            clock.set(window_start + n * 3_000 / 10_000);
            if let Err(skip) = consider(&instances[n as usize % 16], &store, BODY) {
                *skipped.entry(skip.as_str()).or_default() += 1;
            }
        }
        assert_eq!(store.records().len(), 50, "exactly the cap: {skipped:?}");
        assert_eq!(skipped.values().sum::<u32>(), 10_000 - 50);
        assert!(skipped.contains_key("global_cap"), "{skipped:?}");
        let calls = store.slot_calls.load(Ordering::SeqCst);
        assert!(
            calls <= 50 + 16,
            "each instance asks once after the window filled up, then knows: {calls} calls"
        );
        // The next window has a budget of its own; the full one stays full.
        clock.set(window_start + 3_600);
        assert_eq!(consider(&instances[3], &store, BODY), Ok(()));
        assert_eq!(
            store.slots.lock().unwrap().values().copied().collect::<Vec<_>>(),
            [50, 1]
        );
        let windows: BTreeMap<String, usize> = store.records().iter().fold(BTreeMap::new(), |mut by, record| {
            *by.entry(record.received_at[..13].to_owned()).or_default() += 1;
            by
        });
        assert_eq!(windows.values().copied().collect::<Vec<_>>(), [50, 1], "{windows:?}");
    }

    #[test]
    fn a_full_window_is_remembered_until_its_end_and_a_failed_counter_drops_without_remembering() {
        let window_start = NOW - NOW.rem_euclid(60);
        let clock = MovingClock::at(window_start + 10);
        let config = QuarantineConfig {
            global_max: 1,
            global_window_seconds: 60,
            ..QuarantineConfig::default()
        };
        let policy = QuarantinePolicy::new(Source::Crm, None, config, Arc::new(clock.clone()));
        let error = ApiError::from(AuthError::InvalidSignature);
        let admit = || policy.admit(&refusal(&error, BODY, &[]));

        let admission = admit().unwrap();
        let down = StoreError::Unavailable("down".into());
        assert_eq!(policy.settle(admission, Err(down)), Err(Skip::CapUnavailable));
        let admission = admit().expect("a failed counter is asked again");
        let record = admission.record.clone();
        assert_eq!(policy.settle(admission, Ok(Slot::Granted)), Ok(record));
        let admission = admit().unwrap();
        let older = CapWindow::containing(window_start - 60, 60);
        assert_eq!(policy.settle(admission.clone(), Ok(Slot::Full)), Err(Skip::GlobalCap));
        assert_eq!(admit(), Err(Skip::GlobalCap), "known full: no call");
        clock.set(window_start + 59);
        assert_eq!(admit(), Err(Skip::GlobalCap), "until the window's last second");
        // A late answer about an older window does not shorten the mark.
        let late = Admission {
            slot: SlotRequest {
                window: older,
                ..admission.slot
            },
            ..admission
        };
        assert_eq!(policy.settle(late, Ok(Slot::Full)), Err(Skip::GlobalCap));
        assert_eq!(admit(), Err(Skip::GlobalCap));
        clock.set(window_start + 60);
        assert!(admit().is_ok(), "a new window: the counter is asked again");

        let none = self::policy(QuarantineConfig {
            global_max: 0,
            ..QuarantineConfig::default()
        });
        assert_eq!(
            none.admit(&refusal(&error, BODY, &[])),
            Err(Skip::GlobalCap),
            "0 keeps none"
        );
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
