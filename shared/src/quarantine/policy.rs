//! The decision of what to keep (contract 2.4): is a refusal eligible, is it within the caps, and
//! which record and global slot it would take. Pure but for the clock, read once per delivery.

use std::sync::Arc;

use crate::activity;
use crate::clock::Clock;
use crate::crm;
use crate::envelope::Envelope;
use crate::error::{ApiError, AuthError, NonceReuse, StoreError};
use crate::node::Object;
use crate::quarantine::caps::{GlobalCap, MinuteBudget, Slot, SlotRequest};
use crate::quarantine::config::QuarantineConfig;
use crate::quarantine::record::{self, RefusedDelivery};
use crate::source::Source;
use crate::timefmt::utc_rfc3339;

/// A refused request as the quarantine sees it.
#[derive(Debug, Clone, Copy)]
pub struct Refusal<'a> {
    pub error: &'a ApiError,
    /// The body as the request path parsed it, if it got that far: a request refused before its
    /// body was read, or whose body is not a JSON object, is not kept.
    pub parsed: Option<&'a Envelope<'a>>,
    /// Every header: (name, value as text; empty when not visible ASCII).
    pub headers: &'a [(&'a str, &'a str)],
    /// The tenant the request named, when the request path worked it out (activity: path, query
    /// or default); else the one the body names, if any.
    pub tenant: Option<&'a str>,
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

/// What the quarantine asks a parsed body's source: `None` when the body is not of the source's
/// general shape (a probe such as `{}` is not worth keeping), else the tenant it names, if any.
fn general_shape(source: Source, object: &Object<'_>) -> Option<Option<String>> {
    match source {
        Source::Crm => crm::has_general_shape(object).then(|| crm::tenant_of(object).ok()),
        Source::Activity => activity::has_general_shape(object).then_some(None),
    }
}

/// The decision of what to keep: eligibility, caps, and the record.
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
            budget: MinuteBudget::new(config.max_per_minute),
            cap: GlobalCap::new(
                config.global_max,
                config.global_window_seconds,
                config.retention_seconds(),
            ),
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
    /// that costs nothing is decided here, in this order: eligibility (error, not a replay, the
    /// source's shape), size, a global window known to be full, this instance's rate (taken
    /// only for a delivery that would otherwise be kept). The slot's window is that of
    /// `received_at`, so a record counts in the window its own time names.
    pub fn admit(&self, refusal: &Refusal<'_>) -> Result<Admission, Skip> {
        if record::is_replay(refusal.headers) || !Self::keeps(refusal.error) {
            return Err(Skip::NotEligible);
        }
        let Some(body) = refusal.parsed else {
            return Err(Skip::NotEligible);
        };
        let Some(body_tenant) = general_shape(self.source, &body.object) else {
            return Err(Skip::NotEligible);
        };
        if body.raw.len() > self.config.max_body_bytes {
            return Err(Skip::TooLarge);
        }
        let now = self.clock.now_unix();
        if self.cap.closed(now) {
            return Err(Skip::GlobalCap);
        }
        if !self.budget.take(now) {
            return Err(Skip::RateLimited);
        }
        let received_at = utc_rfc3339(now);
        let record = RefusedDelivery {
            source: self.source,
            delivery_id: record::delivery_id(&received_at, body.raw),
            received_at,
            status: refusal.error.status(),
            code: refusal.error.code().to_owned(),
            tenant: refusal.tenant.map(str::to_owned).or(body_tenant),
            body: body.raw.to_owned(),
            header_names: record::header_names(refusal.headers),
            signature_headers: record::signature_headers(refusal.headers, self.signature_header.as_deref()),
            expires_at: now + self.config.retention_seconds(),
            last_replay: None,
            last_replay_at: None,
        };
        Ok(Admission {
            record,
            slot: self.cap.request(now),
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;
    use crate::clock::FixedClock;
    use crate::error::{ParseError, RequestError};
    use crate::quarantine::caps::CapWindow;
    use crate::quarantine::store::MemoryQuarantine;

    /// The first second of an hour (1_780_000_000 − 1_600 = 3_600 × 494_444), so that a test's
    /// minutes and hours turn only when the test moves its clock.
    const HOUR: i64 = 1_779_998_400;
    const NOW: i64 = HOUR + 1_600;

    const BODY: &str = r#"{"mid":"124","event_type":"object_update","extra_data":{"entity_id":"E"}}"#;

    /// A clock the test moves, shared by every policy (instance) of a simulation.
    #[derive(Debug, Clone)]
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

    fn crm_policy(config: QuarantineConfig, clock: Arc<dyn Clock>) -> QuarantinePolicy {
        QuarantinePolicy::new(Source::Crm, Some("X-Signature"), config, clock)
    }

    fn fixed_policy(config: QuarantineConfig) -> QuarantinePolicy {
        crm_policy(config, Arc::new(FixedClock(NOW)))
    }

    /// `policy.admit` for a refusal of `body` (parsed as the request path would) with `error`
    /// and `headers`, by a request that named no tenant.
    fn admit(
        policy: &QuarantinePolicy,
        error: &ApiError,
        body: &str,
        headers: &[(&str, &str)],
    ) -> Result<Admission, Skip> {
        let parsed = Envelope::parse(body.as_bytes()).ok();
        policy.admit(&Refusal {
            error,
            parsed: parsed.as_ref(),
            headers,
            tenant: None,
        })
    }

    fn forged() -> ApiError {
        AuthError::InvalidSignature.into()
    }

    /// `admit` for a forged delivery of [`BODY`], without headers.
    fn admit_forged(policy: &QuarantinePolicy) -> Result<Admission, Skip> {
        admit(policy, &forged(), BODY, &[])
    }

    /// Admits a forged delivery, asks the in-memory counter, settles, and keeps: what the runner
    /// does, without the async runtime. `Ok(())` when the delivery was kept.
    fn consider(policy: &QuarantinePolicy, store: &MemoryQuarantine) -> Result<(), Skip> {
        let admission = admit_forged(policy)?;
        let answer = store.take_slot_now(&admission.slot);
        let record = policy.settle(admission, answer)?;
        store.keep_now(&record).expect("the memory store is up");
        Ok(())
    }

    #[test]
    fn keeps_what_spec_2_4_keeps_and_nothing_else() {
        let policy = fixed_policy(QuarantineConfig::default());
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
            assert!(admit(&policy, error, BODY, &headers).is_ok(), "{error:?}");
        }
        let not_kept: Vec<ApiError> = vec![
            AuthError::ReplayedNonce(NonceReuse::OtherTenant).into(),
            RequestError::MethodNotAllowed("GET".into()).into(),
            RequestError::PayloadTooLarge { size: 2, limit: 1 }.into(),
            StoreError::Timeout(1).into(),
        ];
        for error in &not_kept {
            assert_eq!(
                admit(&policy, error, BODY, &headers),
                Err(Skip::NotEligible),
                "{error:?}"
            );
        }
        let replay = [("X-Webhookctl-Replay", "2026-01-01T00:00:00Z#0123456789ab")];
        assert_eq!(
            admit(&policy, &forged(), BODY, &replay),
            Err(Skip::NotEligible),
            "a replay"
        );
        for body in ["{}", "[1]", "not json", r#"{"action":"event/add"}"#, r#"{"mid":"124"}"#] {
            assert_eq!(
                admit(&policy, &forged(), body, &headers),
                Err(Skip::NotEligible),
                "{body}"
            );
        }
    }

    #[test]
    fn the_record_holds_what_spec_2_4_lists_and_no_other_header_value() {
        let policy = fixed_policy(QuarantineConfig::default());
        let headers = [
            ("X-Signature", "sha1=abc"),
            ("X-Hub-Signature-256", "sha256=def"),
            ("Authorization", "Bearer secret-token"),
            ("Content-Type", "application/json"),
        ];
        let record = admit(&policy, &forged(), BODY, &headers).unwrap().record;
        assert_eq!(record.body, BODY);
        assert_eq!((record.status, record.code.as_str()), (401, "invalid_signature"));
        assert_eq!(record.tenant.as_deref(), Some("124"), "the body's mid");
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
        assert_eq!(record.delivery_id, record::delivery_id(&record.received_at, BODY));
        assert_eq!(record.expires_at, NOW + 14 * 24 * 3600);
    }

    #[test]
    fn an_activity_body_has_a_shape_of_its_own_and_its_tenant_comes_from_the_request() {
        let policy = QuarantinePolicy::new(
            Source::Activity,
            None,
            QuarantineConfig::default(),
            Arc::new(FixedClock(NOW)),
        );
        let body = r#"{"action":"event/add","nonce":"n","mid":"body-mid"}"#;
        let parsed = Envelope::parse(body.as_bytes()).unwrap();
        let refusal = Refusal {
            error: &forged(),
            parsed: Some(&parsed),
            headers: &[],
            tenant: Some("777"),
        };
        let record = policy.admit(&refusal).unwrap().record;
        assert_eq!(record.tenant.as_deref(), Some("777"));
        let unnamed = policy
            .admit(&Refusal {
                tenant: None,
                ..refusal
            })
            .unwrap()
            .record;
        assert_eq!(unnamed.tenant, None, "an activity body names no tenant");
        assert_eq!(admit_forged(&policy), Err(Skip::NotEligible), "a CRM body");
    }

    #[test]
    fn the_rate_cap_grants_exactly_its_max_per_minute_and_the_size_cap_drops_large_bodies() {
        let clock = MovingClock::at(HOUR);
        let config = QuarantineConfig {
            max_per_minute: 3,
            max_body_bytes: 200,
            ..QuarantineConfig::default()
        };
        let policy = crm_policy(config, Arc::new(clock.clone()));
        let outcomes: Vec<Result<(), Skip>> = (0..10).map(|_| admit_forged(&policy).map(drop)).collect();
        assert_eq!(outcomes[..3], [Ok(()); 3]);
        assert_eq!(outcomes[3..], [Err(Skip::RateLimited); 7]);
        clock.set(HOUR + 59);
        assert_eq!(admit_forged(&policy).map(drop), Err(Skip::RateLimited));
        clock.set(HOUR + 60);
        assert!(admit_forged(&policy).is_ok(), "a new minute, a new budget");

        let large = BODY.replacen('{', &format!("{{\"pad\":\"{}\",", "x".repeat(200)), 1);
        assert_eq!(admit(&policy, &forged(), &large, &[]).map(drop), Err(Skip::TooLarge));
        let none = fixed_policy(QuarantineConfig {
            max_per_minute: 0,
            ..QuarantineConfig::default()
        });
        assert_eq!(admit_forged(&none).map(drop), Err(Skip::RateLimited));
    }

    #[test]
    fn a_slot_is_asked_for_in_the_window_of_the_record_and_outlives_it_by_the_retention() {
        let config = QuarantineConfig {
            retention_days: 2,
            global_max: 7,
            ..QuarantineConfig::default()
        };
        let slot = admit_forged(&fixed_policy(config)).unwrap().slot;
        assert_eq!(slot.window, CapWindow::containing(NOW, 3_600), "hourly by default");
        assert_eq!(slot.max, 7);
        assert_eq!(
            slot.expires_at,
            slot.window.end() + 2 * 86_400,
            "the records' retention"
        );
    }

    #[test]
    fn the_global_cap_holds_across_instances_and_a_full_window_costs_one_call_per_instance() {
        let clock = MovingClock::at(HOUR);
        let config = QuarantineConfig {
            global_max: 50,
            ..QuarantineConfig::default()
        };
        let instances: Vec<QuarantinePolicy> = (0..16)
            .map(|_| crm_policy(config.clone(), Arc::new(clock.clone())))
            .collect();
        let store = MemoryQuarantine::default();
        let mut skipped: BTreeMap<&str, u32> = BTreeMap::new();
        // 10,000 forged deliveries over the first 50 minutes, in turn over the instances: 12 or
        // 13 a minute each, well inside each instance's 60, so that only the global cap drops.
        for n in 0..10_000 {
            clock.set(HOUR + n * 3_000 / 10_000);
            if let Err(skip) = consider(&instances[n as usize % 16], &store) {
                *skipped.entry(skip.as_str()).or_default() += 1;
            }
        }
        assert_eq!(store.records().len(), 50, "exactly the cap");
        assert_eq!(skipped, BTreeMap::from([("global_cap", 10_000 - 50)]));
        assert_eq!(
            store.slot_calls(),
            50 + 16,
            "the 50 granted, then each instance asks once, learns the window is full, and asks no more"
        );
        // The next window has a budget of its own; the full one stays full.
        clock.set(HOUR + 3_600);
        assert_eq!(consider(&instances[3], &store), Ok(()));
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
        let clock = MovingClock::at(HOUR + 10);
        let config = QuarantineConfig {
            global_max: 1,
            global_window_seconds: 60,
            ..QuarantineConfig::default()
        };
        let policy = crm_policy(config, Arc::new(clock.clone()));
        let next = || admit_forged(&policy);

        let admission = next().unwrap();
        let down = StoreError::Unavailable("down".into());
        assert_eq!(policy.settle(admission, Err(down)), Err(Skip::CapUnavailable));
        let admission = next().expect("a failed counter is asked again");
        let record = admission.record.clone();
        assert_eq!(policy.settle(admission, Ok(Slot::Granted)), Ok(record));
        let admission = next().unwrap();
        assert_eq!(policy.settle(admission.clone(), Ok(Slot::Full)), Err(Skip::GlobalCap));
        assert_eq!(next(), Err(Skip::GlobalCap), "known full: no call");
        clock.set(HOUR + 59);
        assert_eq!(next(), Err(Skip::GlobalCap), "until the window's last second");
        // A late answer about an older window does not shorten the mark.
        let late = Admission {
            slot: SlotRequest {
                window: CapWindow::containing(HOUR - 60, 60),
                ..admission.slot
            },
            ..admission
        };
        assert_eq!(policy.settle(late, Ok(Slot::Full)), Err(Skip::GlobalCap));
        assert_eq!(next(), Err(Skip::GlobalCap));
        clock.set(HOUR + 60);
        assert!(next().is_ok(), "a new window: the counter is asked again");

        let none = fixed_policy(QuarantineConfig {
            global_max: 0,
            ..QuarantineConfig::default()
        });
        assert_eq!(admit_forged(&none), Err(Skip::GlobalCap), "0 keeps none");
    }
}
