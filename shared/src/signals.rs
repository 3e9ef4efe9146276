//! What the functions report besides their answers: schema drift in accepted events (contract 2.3),
//! nonce conflicts (contract 2.2) and the quarantine of refused deliveries (contract 2.4), as WARN logs and metrics through the
//! `metrics` facade (a no-op until a recorder is installed).

use std::sync::Arc;
use std::time::Duration;

use lambda_http::Request;

use crate::bounded::{bounded, bounded_opt};
use crate::error::{ApiError, StoreError};
use crate::json::Drift;
use crate::quarantine::{QuarantinePolicy, QuarantineStore, Refusal, Skip, Source};

/// The longest a quarantine write may delay a refusal. Eligible refusals are decided before any
/// storage call, so the answer stays far inside the sender's 5 s.
pub const QUARANTINE_TIMEOUT: Duration = Duration::from_millis(800);

/// Logs each drifted field of an accepted event at WARN with its path, and counts them in
/// `schema_drift{source}`.
pub fn report_drift(source: Source, mid: &str, drift: &[Drift]) {
    if drift.is_empty() {
        return;
    }
    for field in drift {
        tracing::warn!(
            source = source.as_str(),
            mid = %bounded(mid),
            path = %bounded(&field.path),
            reason = %bounded(&field.reason),
            "schema drift: field of an unexpected shape accepted and read as absent (kept in last_raw)"
        );
    }
    metrics::counter!("schema_drift", "source" => source.as_str()).increment(drift.len() as u64);
}

/// A nonce seen before with another body (contract 2.2): the one refusal where the genuine delivery
/// may be the one refused, if a forged copy landed first. Logged at WARN and counted in
/// `nonce_conflicts{source=activity}`; the handler's refusal is quarantined like any other.
pub fn report_nonce_conflict(mid: &str) {
    tracing::warn!(
        source = Source::Activity.as_str(),
        mid,
        "nonce seen before with another body: refused replayed_nonce, quarantined, counted in nonce_conflicts"
    );
    metrics::counter!("nonce_conflicts", "source" => Source::Activity.as_str()).increment(1);
}

/// The quarantine as a function uses it: the policy, and where records go (`None`: off).
pub struct Quarantine {
    policy: QuarantinePolicy,
    store: Option<Arc<dyn QuarantineStore>>,
}

impl Quarantine {
    pub fn new(policy: QuarantinePolicy, store: Option<Arc<dyn QuarantineStore>>) -> Self {
        Self { policy, store }
    }

    /// Keeps the delivery of `request`, refused with `error`, if contract 2.4 says so and the caps
    /// allow it: a slot of the global cap first (one conditional write to the counter), then
    /// the record. Never fails and never takes longer than [`QUARANTINE_TIMEOUT`] for both
    /// calls together: the refusal is answered the same way whatever happens here. `tenant` is
    /// the tenant the request named, when the handler knows it (activity: path, query or
    /// default).
    pub async fn consider(&self, request: &Request, error: &ApiError, tenant: Option<&str>) {
        let Some(store) = &self.store else {
            return;
        };
        let source = self.policy.source();
        let headers: Vec<(&str, &str)> = request
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str(), value.to_str().unwrap_or("")))
            .collect();
        let refusal = Refusal {
            error,
            body: request.body().as_ref(),
            headers: &headers,
            tenant,
        };
        let deadline = tokio::time::Instant::now() + QUARANTINE_TIMEOUT;
        let admission = match self.policy.admit(&refusal) {
            Ok(admission) => admission,
            Err(skip) => return dropped(source, error, skip),
        };
        let answer = within(deadline, store.take_slot(&admission.slot)).await;
        if let Err(failure) = &answer {
            tracing::error!(source = source.as_str(), window = %admission.slot.window.key(), error = %failure, "quarantine cap counter failed; the delivery is not kept and the refusal is answered as usual");
        }
        let record = match self.policy.settle(admission, answer) {
            Ok(record) => record,
            Err(skip) => return dropped(source, error, skip),
        };
        match within(deadline, store.keep(&record)).await {
            Ok(()) => {
                tracing::info!(
                    source = source.as_str(),
                    delivery_id = %record.delivery_id,
                    code = %record.code,
                    tenant = bounded_opt(record.tenant.as_deref()).as_deref(),
                    "refused delivery quarantined"
                );
                metrics::counter!("quarantined", "source" => source.as_str()).increment(1);
            }
            Err(failure) => {
                // The slot is spent: never more records than slots.
                tracing::error!(source = source.as_str(), delivery_id = %record.delivery_id, error = %failure, "quarantine write failed; the refusal is answered as usual");
                metrics::counter!("quarantine_dropped", "source" => source.as_str(), "reason" => "write_failed")
                    .increment(1);
            }
        }
    }
}

/// A storage call bounded by `deadline`; running out of time is a [`StoreError::Timeout`].
async fn within<T>(
    deadline: tokio::time::Instant,
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout_at(deadline, call)
        .await
        .unwrap_or(Err(StoreError::Timeout(crate::timefmt::whole_millis(
            QUARANTINE_TIMEOUT,
        ))))
}

/// Logs and counts an eligible delivery that was not kept (`NotEligible` is neither).
fn dropped(source: Source, error: &ApiError, skip: Skip) {
    if skip == Skip::NotEligible {
        return;
    }
    tracing::warn!(
        source = source.as_str(),
        code = error.code(),
        reason = skip.as_str(),
        "refused delivery not quarantined"
    );
    metrics::counter!("quarantine_dropped", "source" => source.as_str(), "reason" => skip.as_str()).increment(1);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Mutex};

    use lambda_http::Body;
    use metrics::{Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

    use super::*;
    use crate::clock::FixedClock;
    use crate::error::AuthError;
    use crate::quarantine::{MemoryQuarantine, QuarantineConfig};

    /// Counters by name and labels (`quarantined{source=crm}`), for asserting what was counted.
    #[derive(Default)]
    struct Counts(Arc<Mutex<BTreeMap<String, u64>>>);

    struct Handle(String, Arc<Mutex<BTreeMap<String, u64>>>);

    impl CounterFn for Handle {
        fn increment(&self, value: u64) {
            *self.1.lock().unwrap().entry(self.0.clone()).or_default() += value;
        }

        fn absolute(&self, value: u64) {
            self.1.lock().unwrap().insert(self.0.clone(), value);
        }
    }

    impl Recorder for Counts {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            Counter::from_arc(Arc::new(Handle(name, Arc::clone(&self.0))))
        }

        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }

        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    impl Counts {
        fn get(&self) -> BTreeMap<String, u64> {
            self.0.lock().unwrap().clone()
        }
    }

    #[test]
    fn drift_is_counted_per_field_by_source() {
        let counts = Counts::default();
        let drift = vec![
            Drift {
                path: "extra_data.notes".into(),
                reason: "expected a string, got an object".into(),
            },
            Drift {
                path: "extra_data.owner".into(),
                reason: "expected a string or an integer, got an object".into(),
            },
        ];
        metrics::with_local_recorder(&counts, || {
            report_drift(Source::Crm, "124", &drift);
            report_drift(Source::Activity, "124", &drift[..1]);
            report_drift(Source::Activity, "124", &[]);
        });
        assert_eq!(
            counts.get(),
            BTreeMap::from([
                ("schema_drift{source=activity}".to_owned(), 1),
                ("schema_drift{source=crm}".to_owned(), 2)
            ])
        );
    }

    /// A function's quarantine (CRM: signature header `X-Signature`) over `store`, at a fixed time.
    fn quarantine(source: Source, config: QuarantineConfig, store: Arc<dyn QuarantineStore>) -> Quarantine {
        let header = (source == Source::Crm).then_some("X-Signature");
        let config = QuarantineConfig {
            table_name: Some("refused_deliveries".into()),
            ..config
        };
        let policy = QuarantinePolicy::new(source, header, config, Arc::new(FixedClock(1_780_000_020)));
        Quarantine::new(policy, Some(store))
    }

    /// A delivery of `source`'s shape with a forged signature.
    fn forged(source: Source) -> Request {
        let builder = lambda_http::http::Request::builder().method("POST");
        match source {
            Source::Crm => builder
                .header("X-Signature", "00")
                .body(Body::from(r#"{"mid":"124","event_type":"object_create"}"#)),
            Source::Activity => builder.body(Body::from(r#"{"action":"event/add","nonce":"n"}"#)),
        }
        .unwrap()
    }

    /// Runs `scenario` to its end under a recorder of its own, and returns what it counted.
    fn counted(scenario: impl std::future::Future<Output = ()>) -> BTreeMap<String, u64> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let counts = Counts::default();
        metrics::with_local_recorder(&counts, || runtime.block_on(scenario));
        counts.get()
    }

    #[test]
    fn kept_dropped_and_failed_writes_are_counted() {
        let store = Arc::new(MemoryQuarantine::default());
        let config = QuarantineConfig {
            max_per_minute: 2,
            ..QuarantineConfig::default()
        };
        let quarantine = quarantine(Source::Crm, config, Arc::clone(&store) as Arc<dyn QuarantineStore>);
        let error = ApiError::from(AuthError::InvalidSignature);
        let counts = counted(async {
            quarantine.consider(&forged(Source::Crm), &error, None).await;
            store.unavailable.store(true, Ordering::SeqCst);
            quarantine.consider(&forged(Source::Crm), &error, None).await;
            store.unavailable.store(false, Ordering::SeqCst);
            quarantine.consider(&forged(Source::Crm), &error, None).await;
            let not_eligible = ApiError::from(AuthError::ReplayedNonce(crate::error::NonceReuse::OtherTenant));
            quarantine.consider(&forged(Source::Crm), &not_eligible, None).await;
        });
        assert_eq!(store.records().len(), 1);
        assert_eq!(
            counts,
            BTreeMap::from([
                ("quarantine_dropped{source=crm,reason=rate_limited}".to_owned(), 1),
                ("quarantine_dropped{source=crm,reason=write_failed}".to_owned(), 1),
                ("quarantined{source=crm}".to_owned(), 1),
            ])
        );
    }

    /// A store whose calls never answer, as a DynamoDB that hangs.
    struct Hanging;

    impl QuarantineStore for Hanging {
        fn keep<'a>(&'a self, _: &'a crate::quarantine::RefusedDelivery) -> crate::quarantine::StoreFuture<'a, ()> {
            Box::pin(std::future::pending())
        }

        fn take_slot<'a>(
            &'a self,
            _: &'a crate::quarantine::SlotRequest,
        ) -> crate::quarantine::StoreFuture<'a, crate::quarantine::Slot> {
            Box::pin(std::future::pending())
        }
    }

    #[test]
    fn the_global_cap_and_a_failing_counter_drop_and_are_counted() {
        let store = Arc::new(MemoryQuarantine::default());
        let config = QuarantineConfig {
            global_max: 1,
            ..QuarantineConfig::default()
        };
        let capped = quarantine(
            Source::Activity,
            config.clone(),
            Arc::clone(&store) as Arc<dyn QuarantineStore>,
        );
        let error = ApiError::from(AuthError::InvalidSignature);
        let counts = counted(async {
            store.counter_unavailable.store(true, Ordering::SeqCst);
            capped.consider(&forged(Source::Activity), &error, Some("124")).await;
            store.counter_unavailable.store(false, Ordering::SeqCst);
            for _ in 0..3 {
                capped.consider(&forged(Source::Activity), &error, Some("124")).await;
            }
        });
        assert_eq!(store.records().len(), 1, "the one slot");
        assert_eq!(
            store.slot_calls.load(Ordering::SeqCst),
            3,
            "failed, granted, full; the fourth delivery knew the window was full"
        );
        let unavailable = "quarantine_dropped{source=activity,reason=cap_unavailable}".to_owned();
        assert_eq!(
            counts,
            BTreeMap::from([
                (unavailable.clone(), 1),
                ("quarantine_dropped{source=activity,reason=global_cap}".to_owned(), 2),
                ("quarantined{source=activity}".to_owned(), 1),
            ])
        );

        // A counter that never answers: dropped within the quarantine's time bound.
        let hanging = quarantine(Source::Activity, config, Arc::new(Hanging));
        let started = std::time::Instant::now();
        let counts = counted(hanging.consider(&forged(Source::Activity), &error, None));
        let took = started.elapsed();
        assert!(took >= QUARANTINE_TIMEOUT && took < QUARANTINE_TIMEOUT * 2, "{took:?}");
        assert_eq!(counts, BTreeMap::from([(unavailable, 1)]));
    }
}
