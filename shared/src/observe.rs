//! What an operator sees of each request, written in one place for both functions:
//!
//! - metrics through the `metrics` facade, in CloudWatch Embedded Metric Format
//!   (`metrics_cloudwatch_embedded`), flushed once per request by [`crate::pipeline`]:
//!   `requests`, `handler_latency_ms` and `cold_start` with the dimensions `source` and
//!   `outcome`, and the request id, `mid` and `entity_id` as properties (not dimensions: they
//!   are unbounded). Metrics other modules record during the request (`store_conflicts`,
//!   `store_retries`, `schema_drift`, `quarantined`, `secrets_refresh_failures`,
//!   `secrets_malformed_current`, ...) are written by the same flush;
//! - one JSON log line per refusal, with what a diagnosis needs and no secret: the request id,
//!   source, code, `mid` when known, source IP, user agent and the *names* of the headers present.
//!
//! Every text a request chose (tenant, entity id, user agent, header names, the error's message
//! that may quote them) is cut to [`crate::bounded::MAX_LOGGED_BYTES`] on the way out.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use metrics::Unit;
use metrics_cloudwatch_embedded::Collector;

use crate::bounded::{bounded, bounded_opt};
use crate::config::Telemetry;
use crate::error::ApiError;
use crate::merge::Delivery;

/// The CloudWatch namespace of every metric, unless `METRICS_NAMESPACE` says otherwise.
pub const DEFAULT_NAMESPACE: &str = "WebhookIngest";

/// The properties set per request, cleared after each flush so that none leaks into the next.
const PROPERTIES: [&str; 3] = ["request_id", "mid", "entity_id"];

static COLLECTOR: OnceLock<&'static Collector> = OnceLock::new();
/// Set by the first answer of this instance: `cold_start` is counted once.
static ANSWERED_BEFORE: AtomicBool = AtomicBool::new(false);

/// Which webhook a request came to: the `source` dimension.
pub use crate::source::Source;

/// How a request ended, as its metrics and its log line tell it.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// The event was applied, or recognised as a duplicate.
    Acknowledged {
        delivery: Delivery,
        entity_id: Option<&'a str>,
    },
    Refused(&'a ApiError),
}

/// Starts what a function reports through: JSON logs to stdout (CloudWatch), filtered by
/// `telemetry.log_filter` (`info` when unset or not a filter), and the metrics recorder.
pub fn start(telemetry: &Telemetry) {
    let filter = telemetry
        .log_filter
        .as_deref()
        .and_then(|directives| tracing_subscriber::EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_target(false)
        .without_time()
        .init();
    init_metrics(telemetry.metrics_namespace.as_deref());
}

/// Installs the EMF recorder as the `metrics` facade's global recorder (once per process;
/// no I/O). Until it is called, metrics go nowhere, as in unit tests.
pub fn init_metrics(namespace: Option<&str>) {
    if COLLECTOR.get().is_some() {
        return;
    }
    let namespace = namespace.unwrap_or(DEFAULT_NAMESPACE).trim().to_owned();
    match metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(namespace)
        .init()
    {
        Ok(collector) => {
            let _ = COLLECTOR.set(collector);
            describe();
        }
        Err(error) => tracing::error!(%error, "metrics recorder not installed; no metrics will be written"),
    }
}

fn describe() {
    for counter in [
        "requests",
        "cold_start",
        "schema_drift",
        "store_conflicts",
        "store_retries",
        "quarantined",
        "quarantine_dropped",
        "nonce_conflicts",
        "secrets_refresh_failures",
        "secrets_malformed_current",
    ] {
        metrics::describe_counter!(counter, Unit::Count, "");
    }
    metrics::describe_histogram!("handler_latency_ms", Unit::Milliseconds, "");
}

/// Writes what the current request recorded as EMF to stdout (CloudWatch Logs) in one write,
/// then forgets its properties. Called once per request, after the answer is built.
pub fn flush() {
    let Some(collector) = COLLECTOR.get() else { return };
    let mut document = Vec::with_capacity(1024);
    if let Err(error) = collector.flush(&mut document) {
        tracing::error!(%error, "metrics could not be written");
    }
    for property in PROPERTIES {
        collector.remove_property(property);
    }
    let mut stdout = std::io::stdout().lock();
    // Nothing to do about a closed stdout but to go on answering.
    let _ = stdout.write_all(&document).and_then(|()| stdout.flush());
}

/// The metrics of a request and, for a refusal, its log line. `mid` is the tenant, when the
/// request got as far as naming one.
pub fn record(source: Source, request: &Request, started: Instant, mid: Option<&str>, outcome: Outcome<'_>) {
    let request_id = request_id(request);
    let (outcome, entity_id) = match outcome {
        Outcome::Acknowledged { delivery, entity_id } => (delivery.as_str(), entity_id),
        Outcome::Refused(error) => {
            log_refusal(source, request, request_id.as_deref(), mid, error);
            (error.code(), None)
        }
    };
    if let Some(collector) = COLLECTOR.get() {
        for (name, value) in [
            ("request_id", request_id.as_deref()),
            ("mid", mid),
            ("entity_id", entity_id),
        ] {
            if let Some(value) = value {
                collector.set_property(name, bounded(value).into_owned());
            }
        }
    }
    let labels = [("source", source.as_str()), ("outcome", outcome)];
    metrics::counter!("requests", &labels).increment(1);
    metrics::histogram!("handler_latency_ms", &labels).record(started.elapsed().as_secs_f64() * 1000.0);
    if !ANSWERED_BEFORE.swap(true, Ordering::Relaxed) {
        metrics::counter!("cold_start", &labels).increment(1);
    }
}

/// The invocation's request id (Lambda's, as in the REPORT lines), else API Gateway's.
fn request_id(request: &Request) -> Option<String> {
    request
        .lambda_context_ref()
        .map(|context| context.request_id.clone())
        .filter(|id| !id.is_empty())
        .or_else(|| match request.request_context_ref()? {
            RequestContext::ApiGatewayV2(context) => context.request_id.clone(),
            _ => None,
        })
}

fn source_ip(request: &Request) -> Option<&str> {
    match request.request_context_ref()? {
        RequestContext::ApiGatewayV2(context) => context.http.source_ip.as_deref(),
        _ => None,
    }
}

/// The names of the headers present, sorted and deduplicated: which header a sender really
/// signs with shows here, while no value (signatures) ever does.
pub fn header_names(request: &Request) -> String {
    let mut names: Vec<&str> = request.headers().keys().map(|name| name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    names.join(",")
}

/// One line per refusal. The error's message names fields and headers, never their values
/// (see `error.rs`); 5xx are ERROR (ours), the rest WARN (the sender's).
fn log_refusal(source: Source, request: &Request, request_id: Option<&str>, mid: Option<&str>, error: &ApiError) {
    let user_agent = request
        .headers()
        .get(lambda_http::http::header::USER_AGENT)
        .and_then(|value| value.to_str().ok());
    let (mid, user_agent) = (bounded_opt(mid), bounded_opt(user_agent));
    let source_ip = bounded_opt(source_ip(request));
    let (headers, error_text) = (header_names(request), error.to_string());
    macro_rules! refusal {
        ($level:ident, $message:literal) => {
            tracing::$level!(
                request_id,
                source = source.as_str(),
                code = error.code(),
                status = error.status(),
                mid = mid.as_deref(),
                source_ip = source_ip.as_deref(),
                user_agent = user_agent.as_deref(),
                headers = %bounded(&headers),
                error = %bounded(&error_text),
                $message
            )
        };
    }
    if error.status() >= 500 {
        refusal!(error, "request failed");
    } else {
        refusal!(warn, "request refused");
    }
}

#[cfg(test)]
mod tests {
    use lambda_http::Body;

    use super::*;

    #[test]
    fn header_names_are_listed_without_their_values() {
        let request = lambda_http::http::Request::builder()
            .header("X-Signature", "0123abcd")
            .header("User-Agent", "JINGdigital")
            .header("x-signature", "second")
            .body(Body::Empty)
            .unwrap();
        let names = header_names(&request);
        assert_eq!(names, "user-agent,x-signature");
    }
}
