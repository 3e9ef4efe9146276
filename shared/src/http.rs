//! The HTTP edge both functions share: what is refused before a body is read, what a request's
//! headers and URL say, and how every answer is written.

use std::sync::Arc;
use std::time::Duration;

use lambda_http::http::{header, Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};

use crate::envelope::MAX_BODY_BYTES;
use crate::error::{ApiError, RequestError, SecretsError};
use crate::secret::{SecretSource, TenantSecrets};
use crate::store::REQUEST_DEADLINE;

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

/// The tenant a request's URL names: the path parameter `mid`, else (function URLs and the local
/// emulator carry no path parameters) the segment after `prefix` in the path, else the `mid`
/// query parameter; trimmed, and never empty.
pub fn tenant_in_url(request: &Request, prefix: &str) -> Option<String> {
    let in_path = request
        .uri()
        .path()
        .split_once(prefix)
        .and_then(|(_, rest)| rest.split('/').next());
    [
        request
            .path_parameters_ref()
            .and_then(|parameters| parameters.first("mid")),
        in_path,
        request
            .query_string_parameters_ref()
            .and_then(|parameters| parameters.first("mid")),
    ]
    .into_iter()
    .flatten()
    .map(str::trim)
    .find(|mid| !mid.is_empty())
    .map(str::to_owned)
}

/// The refusal of contract 2.3 as an HTTP answer.
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
