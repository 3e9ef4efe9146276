//! What the functions report besides their answers: schema drift in accepted events (SPEC 2.3)
//! and the quarantine of refused deliveries (SPEC 2.4), as WARN logs and metrics through the
//! `metrics` facade (a no-op until a recorder is installed).

use std::sync::Arc;
use std::time::Duration;

use lambda_http::Request;

use crate::error::ApiError;
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
            mid,
            path = %field.path,
            reason = %field.reason,
            "schema drift: field of an unexpected shape accepted and read as absent (kept in last_raw)"
        );
    }
    metrics::counter!("schema_drift", "source" => source.as_str()).increment(drift.len() as u64);
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

    /// Keeps the delivery of `request`, refused with `error`, if SPEC 2.4 says so. Never fails
    /// and never takes longer than [`QUARANTINE_TIMEOUT`]: the refusal is answered the same way
    /// whatever happens here. `tenant` is the tenant the request named, when the handler knows
    /// it (activity: path, query or default).
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
        let record = match self.policy.admit(&refusal) {
            Ok(record) => record,
            Err(Skip::NotEligible) => return,
            Err(skip) => {
                tracing::warn!(
                    source = source.as_str(),
                    code = error.code(),
                    reason = skip.as_str(),
                    "refused delivery not quarantined"
                );
                metrics::counter!("quarantine_dropped", "source" => source.as_str(), "reason" => skip.as_str())
                    .increment(1);
                return;
            }
        };
        let outcome = tokio::time::timeout(QUARANTINE_TIMEOUT, store.keep(&record)).await;
        let failure = match outcome {
            Ok(Ok(())) => {
                tracing::info!(
                    source = source.as_str(),
                    delivery_id = %record.delivery_id,
                    code = %record.code,
                    tenant = record.tenant.as_deref(),
                    "refused delivery quarantined"
                );
                metrics::counter!("quarantined", "source" => source.as_str()).increment(1);
                return;
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {} ms", QUARANTINE_TIMEOUT.as_millis()),
        };
        tracing::error!(source = source.as_str(), delivery_id = %record.delivery_id, error = %failure, "quarantine write failed; the refusal is answered as usual");
        metrics::counter!("quarantine_dropped", "source" => source.as_str(), "reason" => "write_failed").increment(1);
    }
}
