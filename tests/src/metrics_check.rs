//! `make test`'s check that the functions' EMF metrics count every request: the answers the
//! suites received (the answer ledger, [`crate::ledger`]) against the `requests` documents in the
//! function log, per source and outcome (the kit's `check-metrics` binary runs it after
//! `cargo test`). Everything here is pure and unit-tested.

use std::collections::BTreeMap;

use serde_json::Value;

/// The function a ledger path was answered by (`crm` or `activity`); `None` for any other path.
pub fn source_of_path(path: &str) -> Option<&'static str> {
    if path.starts_with("/lambda-url/crm-webhook/") {
        Some("crm")
    } else if path.starts_with("/lambda-url/activity-callback/") {
        Some("activity")
    } else {
        None
    }
}

/// What the client can tell of an outcome. The activity callback answers `success` to a first
/// delivery and to a duplicate alike, so both are one class for it.
pub const ACTIVITY_APPLIED: &str = "accepted|duplicate";

/// The outcome class of an answer: a CRM success's `status`, an activity success, or a
/// refusal's `error.code`.
pub fn answer_class(source: &str, status: u16, body: &str) -> String {
    let json: Option<Value> = serde_json::from_str(body).ok();
    let field = |pointer: &str| {
        json.as_ref()
            .and_then(|j| j.pointer(pointer))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    match (source, status) {
        ("activity", 200) => ACTIVITY_APPLIED.to_owned(),
        (_, 200) => field("/status").unwrap_or_else(|| "<200 without status>".to_owned()),
        _ => field("/error/code").unwrap_or_else(|| format!("<{status} without code>")),
    }
}

/// The outcome class of an EMF `outcome` dimension.
pub fn metric_class(source: &str, outcome: &str) -> String {
    match (source, outcome) {
        ("activity", "accepted" | "duplicate") => ACTIVITY_APPLIED.to_owned(),
        _ => outcome.to_owned(),
    }
}

/// `(source, class)` → count.
pub type Tally = BTreeMap<(String, String), u64>;

/// The ledger lines (one JSON answer per line, [`crate::ledger`]'s format) as a tally of the
/// answers from the functions.
pub fn ledger_tally(lines: &str) -> Result<Tally, String> {
    let mut tally = Tally::new();
    for line in lines.lines().filter(|l| !l.trim().is_empty()) {
        let entry: Value = serde_json::from_str(line).map_err(|e| format!("ledger line {line:?}: {e}"))?;
        let path = entry["path"].as_str().ok_or("ledger line without path")?;
        let Some(source) = source_of_path(path) else { continue };
        let status = entry["status"].as_u64().ok_or("ledger line without status")? as u16;
        let body = entry["body"].as_str().unwrap_or_default();
        *tally
            .entry((source.to_owned(), answer_class(source, status, body)))
            .or_default() += 1;
    }
    Ok(tally)
}

/// What the EMF documents of a log say: the requests tally, and the documents that count a
/// request without its latency (a request's metrics split over several documents).
pub struct EmfRequests {
    pub tally: Tally,
    pub documents: u64,
    pub without_latency: u64,
    pub cold_starts: u64,
}

/// Reads every EMF document that counts `requests` in `log` (other lines are skipped).
pub fn emf_requests(log: &str) -> EmfRequests {
    let mut found = EmfRequests {
        tally: Tally::new(),
        documents: 0,
        without_latency: 0,
        cold_starts: 0,
    };
    for document in emf_documents(log) {
        let Some(count) = document["requests"].as_u64() else {
            continue;
        };
        let (Some(source), Some(outcome)) = (document["source"].as_str(), document["outcome"].as_str()) else {
            continue;
        };
        found.documents += 1;
        if document["handler_latency_ms"].is_null() {
            found.without_latency += 1;
        }
        found.cold_starts += document["cold_start"].as_u64().unwrap_or(0);
        *found
            .tally
            .entry((source.to_owned(), metric_class(source, outcome)))
            .or_default() += count;
    }
    found
}

/// Every EMF document of `log` (a line, or the end of a line, that starts with `{"_aws"`);
/// other lines and documents that do not parse are skipped.
fn emf_documents(log: &str) -> impl Iterator<Item = Value> + '_ {
    log.lines().filter_map(|line| {
        let start = line.find("{\"_aws\"")?;
        serde_json::from_str(&line[start..]).ok()
    })
}

/// The sum of counter `name` over the EMF documents of `log` whose dimensions include every
/// `(dimension, value)` of `dimensions` (`quarantine_dropped` with `source=crm`, say).
pub fn emf_counter(log: &str, name: &str, dimensions: &[(&str, &str)]) -> u64 {
    emf_documents(log)
        .filter(|document| dimensions.iter().all(|(key, value)| document[*key] == *value))
        .filter_map(|document| document[name].as_u64())
        .sum()
}

/// The differences between what the clients received and what the metrics count, as lines
/// `source class: answered N, counted M`; empty when they agree.
pub fn compare(answered: &Tally, counted: &Tally) -> Vec<String> {
    let keys: std::collections::BTreeSet<_> = answered.keys().chain(counted.keys()).collect();
    keys.into_iter()
        .filter_map(|key| {
            let (a, c) = (
                answered.get(key).copied().unwrap_or(0),
                counted.get(key).copied().unwrap_or(0),
            );
            (a != c).then(|| format!("{} {}: answered {a}, counted {c}", key.0, key.1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classed_as_the_metrics_are() {
        assert_eq!(answer_class("crm", 200, r#"{"status":"duplicate"}"#), "duplicate");
        assert_eq!(answer_class("activity", 200, "success"), ACTIVITY_APPLIED);
        assert_eq!(
            answer_class("crm", 401, r#"{"error":{"code":"invalid_signature"}}"#),
            "invalid_signature"
        );
        assert_eq!(answer_class("crm", 502, "Bad Gateway"), "<502 without code>");
        assert_eq!(metric_class("activity", "duplicate"), ACTIVITY_APPLIED);
        assert_eq!(metric_class("crm", "duplicate"), "duplicate");
    }

    #[test]
    fn emf_documents_are_tallied_and_everything_else_skipped() {
        let log = concat!(
            "{\"level\":\"WARN\",\"fields\":{\"message\":\"request refused\"}}\n",
            "[cargo-lambda] {\"_aws\":{\"Timestamp\":1,\"CloudWatchMetrics\":[]},\"source\":\"crm\",\"outcome\":\"accepted\",\"requests\":1,\"handler_latency_ms\":[2.5],\"cold_start\":1}\n",
            "{\"_aws\":{\"Timestamp\":1,\"CloudWatchMetrics\":[]},\"source\":\"activity\",\"outcome\":\"duplicate\",\"requests\":1}\n",
            "{\"_aws\":{\"Timestamp\":1,\"CloudWatchMetrics\":[]},\"source\":\"crm\",\"store_retries\":2}\n",
            "{\"_aws\": truncated\n",
        );
        let found = emf_requests(log);
        assert_eq!(found.documents, 2);
        assert_eq!(found.without_latency, 1);
        assert_eq!(found.cold_starts, 1);
        let expected: Tally = [
            (("activity".to_owned(), ACTIVITY_APPLIED.to_owned()), 1),
            (("crm".to_owned(), "accepted".to_owned()), 1),
        ]
        .into_iter()
        .collect();
        assert_eq!(found.tally, expected);
    }

    #[test]
    fn emf_counters_are_summed_by_dimension() {
        let log = concat!(
            "{\"_aws\":{\"Timestamp\":1},\"source\":\"crm\",\"reason\":\"global_cap\",\"quarantine_dropped\":1}\n",
            "x {\"_aws\":{\"Timestamp\":2},\"source\":\"crm\",\"reason\":\"global_cap\",\"quarantine_dropped\":2}\n",
            "{\"_aws\":{\"Timestamp\":3},\"source\":\"crm\",\"reason\":\"rate_limited\",\"quarantine_dropped\":1}\n",
            "{\"_aws\":{\"Timestamp\":4},\"source\":\"activity\",\"reason\":\"global_cap\",\"quarantine_dropped\":5}\n",
            "{\"_aws\":{\"Timestamp\":5},\"source\":\"crm\",\"quarantined\":1}\n",
            "{\"level\":\"WARN\",\"quarantine_dropped\":9}\n",
        );
        let dropped = |dimensions: &[(&str, &str)]| emf_counter(log, "quarantine_dropped", dimensions);
        assert_eq!(dropped(&[("source", "crm"), ("reason", "global_cap")]), 3);
        assert_eq!(dropped(&[("source", "crm")]), 4);
        assert_eq!(dropped(&[]), 9, "not the log line that is no EMF document");
        assert_eq!(emf_counter(log, "quarantined", &[("source", "crm")]), 1);
        assert_eq!(emf_counter(log, "quarantined", &[("source", "activity")]), 0);
    }

    #[test]
    fn any_difference_is_reported_in_both_directions() {
        let lines = [
            crate::ledger::line(
                "e2e",
                "POST",
                "/lambda-url/crm-webhook/crm/webhook",
                200,
                "application/json",
                r#"{"status":"accepted"}"#,
            ),
            crate::ledger::line(
                "e2e",
                "POST",
                "/lambda-url/crm-webhook/crm/webhook",
                400,
                "application/json",
                r#"{"error":{"code":"invalid_json"}}"#,
            ),
            crate::ledger::line("e2e", "POST", "/elsewhere", 404, "text/plain", "not found"),
        ];
        let ledger = ledger_tally(&lines.join("\n")).unwrap();
        assert_eq!(ledger.values().sum::<u64>(), 2, "{ledger:?}");
        let mut counted = ledger.clone();
        assert!(compare(&ledger, &counted).is_empty());
        counted.insert(("crm".into(), "invalid_json".into()), 2);
        counted.insert(("activity".into(), "missing_mid".into()), 1);
        assert_eq!(
            compare(&ledger, &counted),
            [
                "activity missing_mid: answered 0, counted 1",
                "crm invalid_json: answered 1, counted 2"
            ]
        );
    }
}
