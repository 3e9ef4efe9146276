//! Activity authenticity (contract 2.2): `sign == lowercase hex(sha1(nonce + secret + timestamp))`,
//! two freshness windows around the receiver's clock (past and future), and the replay scope
//! under which the store remembers the nonce.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value};
use sha1::{Digest, Sha1};
use sha2::Sha256;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

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
        let sign = fields.req_string("sign")?;
        let timestamp = fields.req_unix_seconds("timestamp")?;
        Ok(Self { nonce, timestamp, sign })
    }
}

/// The sign the sender computes: lowercase hex of `sha1(nonce + secret + decimal(timestamp))`.
pub fn sign(nonce: &str, secret: &Secret, timestamp: i64) -> String {
    hex::encode(digest(nonce, secret, timestamp))
}

/// Sets `nonce`, `timestamp` and the matching `sign` in a callback body, as the sender writes
/// them (the other fields are left as they are).
pub fn sign_body(body: &mut Map<String, Value>, secret: &Secret, nonce: &str, timestamp: i64) {
    body.insert("nonce".into(), nonce.into());
    body.insert("timestamp".into(), timestamp.into());
    body.insert("sign".into(), sign(nonce, secret, timestamp).into());
}

/// A body that [`signed_body`] cannot sign.
#[derive(Debug, thiserror::Error)]
pub enum UnsignableBody {
    #[error("the body is not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error("the body is not a JSON object")]
    NotAnObject,
}

/// The JSON object `body` signed by [`sign_body`], written compactly.
pub fn signed_body(body: &[u8], secret: &Secret, nonce: &str, timestamp: i64) -> Result<String, UnsignableBody> {
    let Value::Object(mut object) = serde_json::from_slice(body)? else {
        return Err(UnsignableBody::NotAnObject);
    };
    sign_body(&mut object, secret, nonce, timestamp);
    Ok(Value::Object(object).to_string())
}

fn digest(nonce: &str, secret: &Secret, timestamp: i64) -> [u8; 20] {
    let mut hasher = Sha1::new();
    hasher.update(nonce.as_bytes());
    hasher.update(secret.expose());
    hasher.update(timestamp.to_string().as_bytes());
    hasher.finalize().into()
}

/// How far a callback's timestamp may lie from the receiver's clock (contract 2.2): at most
/// `max_age_seconds` in the past and `max_future_seconds` in the future, both inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    pub max_age_seconds: u64,
    pub max_future_seconds: u64,
}

impl Freshness {
    /// The defaults of contract 2.2: five minutes back (a sender's retries), 30 s ahead (clock skew).
    pub const DEFAULT: Self = Self {
        max_age_seconds: 300,
        max_future_seconds: 30,
    };

    pub fn check(&self, timestamp: i64, now: i64) -> Result<(), AuthError> {
        let fresh = if timestamp <= now {
            now.abs_diff(timestamp) <= self.max_age_seconds
        } else {
            timestamp.abs_diff(now) <= self.max_future_seconds
        };
        if fresh {
            Ok(())
        } else {
            Err(AuthError::StaleTimestamp {
                timestamp,
                now,
                max_age: self.max_age_seconds,
                max_future: self.max_future_seconds,
            })
        }
    }

    /// How long a nonce record must outlive its write: while its timestamp can still pass
    /// [`Self::check`] (written at most `max_future` before the timestamp, fresh until
    /// `max_age` after it), plus a minute for clocks that disagree.
    pub fn nonce_retention_seconds(&self) -> u64 {
        self.max_age_seconds + self.max_future_seconds + 60
    }
}

/// Whether freshness is checked for a callback: always for deliveries; an operator replaying
/// one quarantined record (`webhookctl quarantine apply`) waives it for that record alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreshnessCheck {
    Enforced(Freshness),
    /// Waived: the local stack's fixtures (see `ActivityConfig`), or one operator replay.
    Waived,
}

/// Which secret verified a sign, as a value that can be stored: the first 16 bytes of
/// HMAC-SHA256(key = the secret, message = [`REPLAY_SCOPE_LABEL`]), in hex. A nonce is accepted
/// once per scope (contract 2.2): the same captured callback verifies with the same secret whatever
/// tenant path it is sent to, so it finds its own record there. Keyed by the secret itself, it
/// reveals no more of it than a sign already does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplayScope(String);

/// The message of the replay scope's HMAC: fixed, so that a secret always has the same scope.
pub const REPLAY_SCOPE_LABEL: &[u8] = b"lexiang activity replay scope v1";

impl ReplayScope {
    pub fn of_secret(secret: &Secret) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose()).expect("HMAC takes a key of any length");
        mac.update(REPLAY_SCOPE_LABEL);
        Self(format!("secret:{}", hex::encode(&mac.finalize().into_bytes()[..16])))
    }

    /// The scope of an event that no secret verified (built directly by tests and benches):
    /// its tenant.
    pub fn of_tenant(mid: &str) -> Self {
        Self(format!("tenant:{mid}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Verifies the sign against every secret (constant time), then freshness; returns the replay
/// scope of the secret that matched.
pub fn verify(
    signed: &SignedFields,
    secrets: &SecretSet,
    clock: &dyn Clock,
    freshness: FreshnessCheck,
) -> Result<ReplayScope, AuthError> {
    let claimed = signed.sign.trim().as_bytes();
    let mut matched = Choice::from(0);
    let mut index = 0u32;
    for (position, secret) in secrets.iter().enumerate() {
        let mut expected = [0u8; 40];
        hex::encode_to_slice(digest(&signed.nonce, secret, signed.timestamp), &mut expected)
            .expect("40 hex digits fit 40 bytes");
        let equal = expected.as_slice().ct_eq(claimed);
        // The first secret that matches, chosen without a branch on the comparison.
        let first = equal & !matched;
        index = u32::conditional_select(&index, &u32::try_from(position).unwrap_or(u32::MAX), first);
        matched |= equal;
    }
    if !bool::from(matched) {
        return Err(AuthError::InvalidSignature);
    }
    if let FreshnessCheck::Enforced(window) = freshness {
        window.check(signed.timestamp, clock.now_unix())?;
    }
    let secret = secrets
        .iter()
        .nth(index as usize)
        .expect("the index of a secret that matched");
    Ok(ReplayScope::of_secret(secret))
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
        verify(
            fields,
            &SecretSet::parse(secrets).unwrap(),
            &FixedClock(now),
            FreshnessCheck::Enforced(Freshness::DEFAULT),
        )
        .map(drop)
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
    fn freshness_is_300_s_back_and_30_s_ahead_both_inclusive() {
        let fields = signed("a", TS);
        assert_eq!(check(&fields, "a", TS + 300), Ok(()), "300 s old");
        assert_eq!(check(&fields, "a", TS - 30), Ok(()), "30 s ahead");
        assert_eq!(
            check(&fields, "a", TS + 301),
            Err(AuthError::StaleTimestamp {
                timestamp: TS,
                now: TS + 301,
                max_age: 300,
                max_future: 30
            })
        );
        for ahead in [31, 120, 299] {
            assert!(
                matches!(check(&fields, "a", TS - ahead), Err(AuthError::StaleTimestamp { .. })),
                "{ahead} s ahead"
            );
        }
        let secrets = SecretSet::parse("a").unwrap();
        assert_eq!(
            verify(&fields, &secrets, &FixedClock(0), FreshnessCheck::Waived),
            Ok(ReplayScope::of_secret(&Secret::new("a"))),
            "waived for one record"
        );
        let wrong = SecretSet::parse("b").unwrap();
        assert_eq!(
            verify(&fields, &wrong, &FixedClock(TS), FreshnessCheck::Waived),
            Err(AuthError::InvalidSignature),
            "waiving freshness never waives the sign"
        );
        assert_eq!(Freshness::DEFAULT.nonce_retention_seconds(), 390);
    }

    #[test]
    fn the_scope_is_the_secret_that_matched_whatever_the_list_around_it() {
        let scope = |secrets: &str, signed_with: &str| {
            verify(
                &signed(signed_with, TS),
                &SecretSet::parse(secrets).unwrap(),
                &FixedClock(TS),
                FreshnessCheck::Enforced(Freshness::DEFAULT),
            )
            .unwrap()
        };
        let old = ReplayScope::of_secret(&Secret::new("old"));
        assert_eq!(scope("old", "old"), old);
        assert_eq!(scope("new,old", "old"), old, "a rotation does not move the scope");
        assert_eq!(scope("other,old,x", "old"), old, "nor does another list holding it");
        assert_ne!(scope("new,old", "new"), old);
        assert_ne!(old, ReplayScope::of_tenant("old"));
        let text = old.as_str();
        assert!(
            text.starts_with("secret:") && text.len() == "secret:".len() + 32,
            "{text}"
        );
        assert!(!text.contains("old"), "no secret in the scope");
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

    #[test]
    fn a_signed_body_keeps_its_fields_and_verifies_under_its_secret_only() {
        let body = br#"{"action": "event/add", "sign": "old", "attributes": {"event_id": "e1"}}"#;
        let text = signed_body(body, &Secret::new("a"), NONCE, TS).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["action"], "event/add");
        assert_eq!(value["attributes"]["event_id"], "e1");
        let fields = SignedFields::extract(Node::from(&value).as_object().unwrap()).unwrap();
        assert_eq!((fields.nonce.as_str(), fields.timestamp), (NONCE, TS));
        assert_eq!(check(&fields, "a", TS), Ok(()));
        assert_eq!(check(&fields, "b", TS), Err(AuthError::InvalidSignature));
    }

    #[test]
    fn only_a_json_object_can_be_signed() {
        let secret = Secret::new("a");
        assert!(matches!(
            signed_body(b"[1]", &secret, NONCE, TS),
            Err(UnsignableBody::NotAnObject)
        ));
        assert!(matches!(
            signed_body(b"{", &secret, NONCE, TS),
            Err(UnsignableBody::NotJson(_))
        ));
    }
}
