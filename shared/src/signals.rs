//! What the functions report besides their answers: schema drift in accepted events (contract 2.3)
//! and nonce conflicts (contract 2.2), as WARN logs and metrics through the `metrics` facade (a
//! no-op until a recorder is installed). The quarantine's own signals are the quarantine's
//! (`quarantine::runner`).

use crate::bounded::bounded;
use crate::json::Drift;
use crate::source::Source;

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

/// A metrics recorder for unit tests that counts what a scenario counted.
#[cfg(test)]
pub(crate) mod test_counts {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use metrics::{Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

    /// Counters by name and labels (`quarantined{source=crm}`), for asserting what was counted.
    #[derive(Default)]
    pub(crate) struct Counts(Arc<Mutex<BTreeMap<String, u64>>>);

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
        pub(crate) fn get(&self) -> BTreeMap<String, u64> {
            self.0.lock().unwrap().clone()
        }
    }

    /// Runs `scenario` to its end on a runtime whose clock is paused (a timeout elapses at once,
    /// exactly), under a recorder of its own; returns what it counted and what it returned.
    pub(crate) fn counted<T>(scenario: impl std::future::Future<Output = T>) -> (BTreeMap<String, u64>, T) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let counts = Counts::default();
        let outcome = metrics::with_local_recorder(&counts, || runtime.block_on(scenario));
        (counts.get(), outcome)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::test_counts::Counts;
    use super::*;

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
}
