//! The quarantine as a function runs it: on a refused request, the policy's decision, a slot of
//! the global cap, the record, within a time bound, with a log line and a metric for each outcome
//! (`quarantined{source}`, `quarantine_dropped{source,reason}`).

use std::sync::Arc;
use std::time::Duration;

use lambda_http::Request;

use crate::bounded::bounded_opt;
use crate::envelope::Envelope;
use crate::error::{ApiError, StoreError};
use crate::quarantine::policy::{QuarantinePolicy, Refusal, Skip};
use crate::quarantine::store::QuarantineStore;
use crate::source::Source;

/// The longest a quarantine write may delay a refusal. Eligible refusals are decided before any
/// storage call, so the answer stays far inside the sender's 5 s.
pub const QUARANTINE_TIMEOUT: Duration = Duration::from_millis(800);

/// The quarantine of one function: the policy, and where records go (`None`: off).
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
    /// calls together: the refusal is answered the same way whatever happens here.
    ///
    /// `parsed` is the body as the request path parsed it, if it got that far (the quarantine
    /// never parses a body itself); `tenant` is the tenant the request path worked out, if any
    /// (activity: path, query or default; else the body's, as its source reads it).
    pub async fn consider(
        &self,
        request: &Request,
        error: &ApiError,
        parsed: Option<&Envelope<'_>>,
        tenant: Option<&str>,
    ) {
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
            parsed,
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

    use lambda_http::Body;

    use super::*;
    use crate::clock::FixedClock;
    use crate::error::{AuthError, NonceReuse};
    use crate::quarantine::caps::{Slot, SlotRequest};
    use crate::quarantine::config::QuarantineConfig;
    use crate::quarantine::record::RefusedDelivery;
    use crate::quarantine::store::{MemoryQuarantine, StoreFuture};
    use crate::signals::test_counts::counted;

    /// A function's quarantine (CRM: signature header `X-Signature`) over `store`, at a fixed time.
    fn quarantine_over(source: Source, config: QuarantineConfig, store: Arc<dyn QuarantineStore>) -> Quarantine {
        let header = (source == Source::Crm).then_some("X-Signature");
        let config = QuarantineConfig {
            table_name: Some("refused_deliveries".into()),
            ..config
        };
        let policy = QuarantinePolicy::new(source, header, config, Arc::new(FixedClock(1_780_000_020)));
        Quarantine::new(policy, Some(store))
    }

    /// [`quarantine_over`] an in-memory store, and that store.
    fn in_memory(source: Source, config: QuarantineConfig) -> (Quarantine, Arc<MemoryQuarantine>) {
        let store = Arc::new(MemoryQuarantine::default());
        let quarantine = quarantine_over(source, config, Arc::clone(&store) as Arc<dyn QuarantineStore>);
        (quarantine, store)
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

    /// `quarantine.consider` for `request` refused with `error`, its body parsed as the request
    /// path parses it.
    async fn consider(quarantine: &Quarantine, request: &Request, error: &ApiError, tenant: Option<&str>) {
        let parsed = Envelope::parse(request.body()).ok();
        quarantine.consider(request, error, parsed.as_ref(), tenant).await;
    }

    #[test]
    fn kept_dropped_and_failed_writes_are_counted() {
        let config = QuarantineConfig {
            max_per_minute: 2,
            ..QuarantineConfig::default()
        };
        let (quarantine, store) = in_memory(Source::Crm, config);
        let request = forged(Source::Crm);
        let error = ApiError::from(AuthError::InvalidSignature);
        let (counts, ()) = counted(async {
            consider(&quarantine, &request, &error, None).await;
            store.unavailable.store(true, Ordering::SeqCst);
            consider(&quarantine, &request, &error, None).await;
            store.unavailable.store(false, Ordering::SeqCst);
            consider(&quarantine, &request, &error, None).await;
            let not_eligible = ApiError::from(AuthError::ReplayedNonce(NonceReuse::OtherTenant));
            consider(&quarantine, &request, &not_eligible, None).await;
            // Refused before its body was parsed: nothing to keep, nothing counted.
            quarantine.consider(&request, &error, None, None).await;
        });
        assert_eq!(store.records().len(), 1);
        assert_eq!(store.records()[0].tenant.as_deref(), Some("124"), "the body's mid");
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
        fn keep<'a>(&'a self, _: &'a RefusedDelivery) -> StoreFuture<'a, ()> {
            Box::pin(std::future::pending())
        }

        fn take_slot<'a>(&'a self, _: &'a SlotRequest) -> StoreFuture<'a, Slot> {
            Box::pin(std::future::pending())
        }
    }

    #[test]
    fn the_global_cap_and_a_failing_counter_drop_and_are_counted() {
        let config = QuarantineConfig {
            global_max: 1,
            ..QuarantineConfig::default()
        };
        let (capped, store) = in_memory(Source::Activity, config.clone());
        let request = forged(Source::Activity);
        let error = ApiError::from(AuthError::InvalidSignature);
        let (counts, ()) = counted(async {
            store.counter_unavailable.store(true, Ordering::SeqCst);
            consider(&capped, &request, &error, Some("124")).await;
            store.counter_unavailable.store(false, Ordering::SeqCst);
            for _ in 0..3 {
                consider(&capped, &request, &error, Some("124")).await;
            }
        });
        assert_eq!(store.records().len(), 1, "the one slot");
        assert_eq!(
            store.records()[0].tenant.as_deref(),
            Some("124"),
            "the request's tenant"
        );
        assert_eq!(
            store.slot_calls(),
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

        // A counter that never answers: dropped when the quarantine's time bound runs out, on
        // tokio's paused clock (it moves straight to the deadline: no waiting).
        let hanging = quarantine_over(Source::Activity, config, Arc::new(Hanging));
        let (counts, took) = counted(async {
            let started = tokio::time::Instant::now();
            consider(&hanging, &request, &error, None).await;
            started.elapsed()
        });
        assert_eq!(took, QUARANTINE_TIMEOUT);
        assert_eq!(counts, BTreeMap::from([(unavailable, 1)]));
    }
}
