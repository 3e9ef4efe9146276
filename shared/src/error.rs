//! The refusals of contract 2.3, one enum per failure mode, and the single place that maps each of
//! them to an HTTP status and an error code.

use thiserror::Error;

/// The body is not what the sender documents.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("body is not a UTF-8 JSON object: {0}")]
    InvalidJson(String),
    #[error("required field `{0}` is missing")]
    MissingField(String),
    #[error("field `{field}` is invalid: {reason}")]
    InvalidField { field: String, reason: String },
}

impl ParseError {
    pub(crate) fn missing(field: impl Into<String>) -> Self {
        Self::MissingField(field.into())
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidField {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// The request could not be proven authentic (or was a replay).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    #[error("the request carries no signature ({0})")]
    MissingSignature(String),
    #[error("the signature does not match the body")]
    InvalidSignature,
    #[error("timestamp {timestamp} is outside the accepted window of {max_age} s before to {max_future} s after now ({now})")]
    StaleTimestamp {
        timestamp: i64,
        now: i64,
        max_age: u64,
        max_future: u64,
    },
    #[error("{0}")]
    ReplayedNonce(NonceReuse),
    #[error("no secret is configured for tenant `{0}`")]
    NoSecret(String),
}

/// How a refused nonce was used before (both are `replayed_nonce`, contract 2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NonceReuse {
    /// The same body, accepted for another tenant: a captured callback sent to another path.
    /// The original was applied; nothing is lost.
    #[error("nonce was already used for another tenant")]
    OtherTenant,
    /// Another body: a forged copy, or the genuine callback after a forged copy landed first.
    /// Quarantined and counted (`nonce_conflicts`).
    #[error("nonce was already used with a different body")]
    OtherBody,
}

/// The request is refused before its body is looked at.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RequestError {
    #[error("method {0} is not allowed; use POST")]
    MethodNotAllowed(String),
    #[error("body is {size} bytes; the limit is {limit} bytes")]
    PayloadTooLarge { size: usize, limit: usize },
    #[error("no tenant: the request names no mid in its path or query and no default is configured")]
    MissingMid,
}

/// The store could not complete the write; nothing was written and the sender should retry.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreError {
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("storage timed out after {0} ms")]
    Timeout(u64),
    /// Too little of the deadline is left for another write to finish ([`crate::dynamo`]'s
    /// write guard): the write is not sent, so the event is not applied.
    #[error("no time for another write: {left_ms} ms left, the last write took {last_write_ms} ms")]
    NoTimeToWrite { left_ms: u64, last_write_ms: u64 },
    #[error("gave up after {0} conflicting concurrent writes")]
    TooManyConflicts(u32),
    #[error("stored item is unreadable: {0}")]
    Corrupt(String),
    /// The new item would exceed DynamoDB's item size limit: no retry can succeed.
    #[error("the stored item would be {size} bytes; DynamoDB stores at most {limit} bytes per item")]
    ItemTooLarge { size: usize, limit: usize },
}

/// The tenant secrets could not be read (AWS Secrets Manager unreachable, denied, or holding a
/// value of the wrong shape) and none were cached: whether the request is authentic is unknown,
/// so it is neither accepted nor refused as unauthenticated. The sender retries.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SecretsError {
    #[error("tenant secrets unavailable: {0}")]
    Unavailable(String),
}

/// Everything a handler can answer besides success.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ApiError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
}

impl ApiError {
    /// HTTP status of the refusal (contract 2.3).
    pub fn status(&self) -> u16 {
        match self {
            Self::Request(RequestError::MethodNotAllowed(_)) => 405,
            Self::Request(RequestError::PayloadTooLarge { .. }) | Self::Store(StoreError::ItemTooLarge { .. }) => 413,
            Self::Request(RequestError::MissingMid) | Self::Parse(_) => 400,
            Self::Auth(_) => 401,
            Self::Store(_) | Self::Secrets(_) => 503,
        }
    }

    /// Machine-readable error code (contract 2.3).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Request(RequestError::MethodNotAllowed(_)) => "method_not_allowed",
            Self::Request(RequestError::PayloadTooLarge { .. }) | Self::Store(StoreError::ItemTooLarge { .. }) => {
                "payload_too_large"
            }
            Self::Request(RequestError::MissingMid) => "missing_mid",
            Self::Parse(ParseError::InvalidJson(_)) => "invalid_json",
            Self::Parse(ParseError::MissingField(_)) => "missing_field",
            Self::Parse(ParseError::InvalidField { .. }) => "invalid_field",
            Self::Auth(AuthError::MissingSignature(_)) => "missing_signature",
            Self::Auth(AuthError::InvalidSignature) => "invalid_signature",
            Self::Auth(AuthError::StaleTimestamp { .. }) => "stale_timestamp",
            Self::Auth(AuthError::ReplayedNonce(_)) => "replayed_nonce",
            Self::Auth(AuthError::NoSecret(_)) => "no_secret",
            Self::Store(_) => "storage_unavailable",
            Self::Secrets(_) => "secrets_unavailable",
        }
    }

    /// The JSON body of the refusal: `{"error": {"code": ..., "message": ...}}`.
    pub fn body(&self) -> String {
        let message = match self {
            // Storage details (endpoints, table names) are for the logs, not for the sender.
            Self::Store(StoreError::ItemTooLarge { .. }) => self.to_string(),
            Self::Store(_) => "storage is unavailable; retry later".to_owned(),
            // Which secret and why is for the logs.
            Self::Secrets(_) => "signing secrets are unavailable; retry later".to_owned(),
            other => other.to_string(),
        };
        serde_json::json!({ "error": { "code": self.code(), "message": message } }).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_its_documented_status_and_code() {
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (
                RequestError::MethodNotAllowed("GET".into()).into(),
                405,
                "method_not_allowed",
            ),
            (
                RequestError::PayloadTooLarge { size: 2, limit: 1 }.into(),
                413,
                "payload_too_large",
            ),
            (RequestError::MissingMid.into(), 400, "missing_mid"),
            (ParseError::InvalidJson("x".into()).into(), 400, "invalid_json"),
            (ParseError::missing("mid").into(), 400, "missing_field"),
            (ParseError::invalid("mid", "x").into(), 400, "invalid_field"),
            (
                AuthError::MissingSignature("X-Signature".into()).into(),
                401,
                "missing_signature",
            ),
            (AuthError::InvalidSignature.into(), 401, "invalid_signature"),
            (
                AuthError::StaleTimestamp {
                    timestamp: 0,
                    now: 1000,
                    max_age: 300,
                    max_future: 30,
                }
                .into(),
                401,
                "stale_timestamp",
            ),
            (
                AuthError::ReplayedNonce(NonceReuse::OtherBody).into(),
                401,
                "replayed_nonce",
            ),
            (
                AuthError::ReplayedNonce(NonceReuse::OtherTenant).into(),
                401,
                "replayed_nonce",
            ),
            (AuthError::NoSecret("124".into()).into(), 401, "no_secret"),
            (StoreError::Timeout(4000).into(), 503, "storage_unavailable"),
            (
                SecretsError::Unavailable("timeout".into()).into(),
                503,
                "secrets_unavailable",
            ),
            (
                StoreError::ItemTooLarge {
                    size: 500_000,
                    limit: 409_600,
                }
                .into(),
                413,
                "payload_too_large",
            ),
        ];
        for (error, status, code) in cases {
            assert_eq!(error.status(), status, "{error:?}");
            assert_eq!(error.code(), code, "{error:?}");
            let body: serde_json::Value = serde_json::from_str(&error.body()).unwrap();
            assert_eq!(body["error"]["code"], code);
            assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }

    #[test]
    fn messages_name_the_offending_field() {
        let error = ApiError::from(ParseError::invalid("extra_data.mapping_data.name", "not an array"));
        assert!(error.body().contains("extra_data.mapping_data.name"));
    }

    #[test]
    fn secret_store_details_stay_out_of_the_answer() {
        let error = ApiError::from(SecretsError::Unavailable("arn:aws:secretsmanager:x".into()));
        assert!(!error.body().contains("arn:"));
    }

    #[test]
    fn storage_details_stay_out_of_the_answer() {
        let error = ApiError::from(StoreError::Unavailable("dispatch failure to http://10.0.0.1".into()));
        assert!(!error.body().contains("10.0.0.1"));
    }
}
