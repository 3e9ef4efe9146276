//! The HTTP edge both functions share: what is refused before a body is read, and how every
//! answer is written.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lambda_http::http::{header, Method, StatusCode};
use lambda_http::{service_fn, Body, Request, Response};

use crate::envelope::MAX_BODY_BYTES;
use crate::error::{ApiError, RequestError, SecretsError};
use crate::secret::{SecretSource, TenantSecrets};
use crate::store::REQUEST_DEADLINE;

/// A function's request handling: every request gets its documented response, never an `Err`.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: Request) -> impl Future<Output = Response<Body>> + Send;
}

/// Runs the Lambda loop with `handler`, built once before the first request. The metrics each
/// request recorded are written once it is answered: one EMF flush per request.
pub async fn serve(handler: impl Handler) -> Result<(), lambda_http::Error> {
    crate::observe::init_metrics(
        std::env::var("METRICS_NAMESPACE")
            .ok()
            .as_deref()
            .filter(|n| !n.trim().is_empty()),
    );
    let handler = Arc::new(handler);
    lambda_http::run(service_fn(move |request: Request| {
        let handler = Arc::clone(&handler);
        async move {
            let response = handler.handle(request).await;
            crate::observe::flush();
            Ok::<_, lambda_http::Error>(response)
        }
    }))
    .await
}

/// The one deadline of a request ([`REQUEST_DEADLINE`], from when it is taken up): the secrets
/// are waited for within it, and the store gets what is left, so that the answer comes in time
/// whatever the first read of the secrets took. On tokio's clock, so that tests can pause it.
#[derive(Debug, Clone, Copy)]
pub struct RequestDeadline {
    ends: tokio::time::Instant,
}

impl RequestDeadline {
    pub fn start() -> Self {
        Self {
            ends: tokio::time::Instant::now() + REQUEST_DEADLINE,
        }
    }

    /// What is left of it: the store's budget.
    pub fn remaining(&self) -> Duration {
        self.ends.saturating_duration_since(tokio::time::Instant::now())
    }

    /// The tenant secrets, unavailable when they do not come before the deadline.
    pub async fn secrets<K: SecretSource>(&self, source: &K) -> Result<Arc<TenantSecrets>, SecretsError> {
        tokio::time::timeout_at(self.ends, source.current())
            .await
            .unwrap_or_else(|_| {
                Err(SecretsError::Unavailable(format!(
                    "no answer within the request's deadline of {} ms",
                    REQUEST_DEADLINE.as_millis()
                )))
            })
    }
}

/// The body of a POST within the size limit (API Gateway's base64 is already decoded).
pub fn post_body(request: &Request) -> Result<&[u8], ApiError> {
    if request.method() != Method::POST {
        return Err(RequestError::MethodNotAllowed(request.method().to_string()).into());
    }
    let body: &[u8] = request.body().as_ref();
    if body.len() > MAX_BODY_BYTES {
        return Err(RequestError::PayloadTooLarge {
            size: body.len(),
            limit: MAX_BODY_BYTES,
        }
        .into());
    }
    Ok(body)
}

/// A header value as text; `None` when absent. A value that is not visible ASCII is passed on
/// as an empty string, so it reads as a signature that cannot match.
pub fn header_text<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request.headers().get(name).map(|value| value.to_str().unwrap_or(""))
}

/// The refusal of contract 2.3 as an HTTP answer. It is logged and counted by
/// [`crate::observe::answer`], the one place every answer goes through.
pub fn error_response(error: &ApiError) -> Response<Body> {
    let mut builder = Response::builder()
        .status(error.status())
        .header(header::CONTENT_TYPE, "application/json");
    if error.status() == 405 {
        builder = builder.header(header::ALLOW, "POST");
    }
    builder
        .body(Body::from(error.body()))
        .expect("status and headers are valid")
}

pub fn json_response(value: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(value.to_string()))
        .expect("status and headers are valid")
}

pub fn text_response(text: &'static str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(text))
        .expect("status and headers are valid")
}

/// JSON logs to stdout (CloudWatch), filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_target(false)
        .without_time()
        .init();
}
