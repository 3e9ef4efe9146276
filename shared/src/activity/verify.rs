//! Activity authenticity (SPEC 2.2): `sign == lowercase hex(sha1(nonce + secret + timestamp))`,
//! a freshness window around the receiver's clock, and the nonce that the store remembers.

use sha1::{Digest, Sha1};
use subtle::{Choice, ConstantTimeEq};

use crate::clock::Clock;
use crate::error::{ApiError, AuthError};
use crate::json::Fields;
use crate::node::Object;
use crate::secret::{Secret, SecretSet};

/// The three top-level fields the sign covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedFields {
    pub nonce: String,
    pub timestamp: i64,
    pub sign: String,
}

impl SignedFields {
    /// Absent or empty fields are `missing_signature`; a timestamp that is not an integer is
    /// `invalid_field`, since no sign can cover it.
    pub fn extract(object: &Object<'_>) -> Result<Self, ApiError> {
        let fields = Fields::new(object, "");
        let missing: Vec<&str> = ["nonce", "timestamp", "sign"]
            .into_iter()
            .filter(|key| fields.present(key).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(AuthError::MissingSignature(format!("body lacks {}", missing.join(", "))).into());
        }
        let nonce = fields.req_id("nonce")?;
        let sign = fields.req_str("sign")?;
        let timestamp = fields.req_unix_seconds("timestamp")?;
        Ok(Self { nonce, timestamp, sign })
    }
}

/// The sign the sender computes: lowercase hex of `sha1(nonce + secret + decimal(timestamp))`.
pub fn sign(nonce: &str, secret: &Secret, timestamp: i64) -> String {
    hex::encode(digest(nonce, secret, timestamp))
}

fn digest(nonce: &str, secret: &Secret, timestamp: i64) -> [u8; 20] {
    let mut hasher = Sha1::new();
    hasher.update(nonce.as_bytes());
    hasher.update(secret.expose());
    hasher.update(timestamp.to_string().as_bytes());
    hasher.finalize().into()
}

/// Verifies the sign against every secret (constant time), then freshness.
/// `max_skew_seconds == 0` turns the freshness check off.
pub fn verify(
    signed: &SignedFields,
    secrets: &SecretSet,
    clock: &dyn Clock,
    max_skew_seconds: u64,
) -> Result<(), AuthError> {
    let claimed = signed.sign.trim().as_bytes();
    let matched = secrets.iter().fold(Choice::from(0), |acc, secret| {
        let mut expected = [0u8; 40];
        hex::encode_to_slice(digest(&signed.nonce, secret, signed.timestamp), &mut expected)
            .expect("40 hex digits fit 40 bytes");
        acc | expected.as_slice().ct_eq(claimed)
    });
    if !bool::from(matched) {
        return Err(AuthError::InvalidSignature);
    }
    let now = clock.now_unix();
    if max_skew_seconds > 0 && now.abs_diff(signed.timestamp) > max_skew_seconds {
        return Err(AuthError::StaleTimestamp {
            timestamp: signed.timestamp,
            now,
            max_skew: max_skew_seconds,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use crate::node::Node;
    use serde_json::json;

    const NONCE: &str = "d9d94ba3-57e9-4049-8724-f86f4e5f0fxx";
    const TS: i64 = 1_701_744_489;

    fn signed(secret: &str, timestamp: i64) -> SignedFields {
        SignedFields {
            nonce: NONCE.into(),
            timestamp,
            sign: sign(NONCE, &Secret::new(secret), timestamp),
        }
    }

    fn check(fields: &SignedFields, secrets: &str, now: i64) -> Result<(), AuthError> {
        verify(fields, &SecretSet::parse(secrets).unwrap(), &FixedClock(now), 300)
    }

    #[test]
    fn fresh_and_correctly_signed_is_accepted_with_any_current_secret() {
        assert_eq!(check(&signed("a", TS), "a", TS), Ok(()));
        assert_eq!(check(&signed("old", TS), "new,old", TS), Ok(()));
        assert_eq!(
            check(&signed("gone", TS), "new,old", TS),
            Err(AuthError::InvalidSignature)
        );
    }

    #[test]
    fn freshness_window_is_inclusive_in_both_directions() {
        let fields = signed("a", TS);
        assert_eq!(check(&fields, "a", TS + 300), Ok(()));
        assert_eq!(check(&fields, "a", TS - 300), Ok(()));
        assert!(matches!(
            check(&fields, "a", TS + 301),
            Err(AuthError::StaleTimestamp { .. })
        ));
        assert!(matches!(
            check(&fields, "a", TS - 301),
            Err(AuthError::StaleTimestamp { .. })
        ));
        let secrets = SecretSet::parse("a").unwrap();
        assert_eq!(
            verify(&fields, &secrets, &FixedClock(0), 0),
            Ok(()),
            "0 turns the check off"
        );
    }

    #[test]
    fn a_forged_sign_is_refused_before_freshness_is_looked_at() {
        let mut fields = signed("a", TS);
        fields.sign = fields.sign.to_uppercase();
        assert_eq!(check(&fields, "a", TS + 10_000), Err(AuthError::InvalidSignature));
        fields.sign = "not hex".into();
        assert_eq!(check(&fields, "a", TS), Err(AuthError::InvalidSignature));
        let mut shifted = signed("a", TS);
        shifted.timestamp += 1;
        assert_eq!(check(&shifted, "a", TS), Err(AuthError::InvalidSignature));
    }

    #[test]
    fn extract_accepts_a_numeric_string_timestamp() {
        let object = json!({"nonce": "n", "timestamp": "1701744489", "sign": "s"});
        let fields = SignedFields::extract(Node::from(&object).as_object().unwrap()).unwrap();
        assert_eq!(fields.timestamp, TS);
    }

    #[test]
    fn extract_reports_what_is_missing_or_malformed() {
        let object = json!({"nonce": "", "timestamp": 1});
        let error = SignedFields::extract(Node::from(&object).as_object().unwrap()).unwrap_err();
        assert_eq!(error.code(), "missing_signature");
        assert!(error.to_string().contains("nonce, sign"), "{error}");
        let object = json!({"nonce": "n", "timestamp": "soon", "sign": "s"});
        let error = SignedFields::extract(Node::from(&object).as_object().unwrap()).unwrap_err();
        assert_eq!(error.code(), "invalid_field");
        assert!(error.to_string().contains("timestamp"));
    }
}
