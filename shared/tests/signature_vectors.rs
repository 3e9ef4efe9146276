//! Known-answer tests: the signature vectors computed outside the project
//! (`fixtures/signatures.json`, a verbatim copy of the contract's `vectors/signatures.json`)
//! must be reproduced by `sign` and accepted by `verify`, and any tampering must be refused.

use serde_json::Value;
use shared::activity::verify::{self as activity, Freshness, FreshnessCheck, SignedFields};

/// The functions' default windows, checked at the vector's own time.
const FRESH: FreshnessCheck = FreshnessCheck::Enforced(Freshness::DEFAULT);
use shared::clock::FixedClock;
use shared::crm::verify as crm;
use shared::envelope::Envelope;
use shared::error::AuthError;
use shared::secret::{Secret, SecretSet};

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/signatures.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

fn list<'a>(vectors: &'a Value, key: &str) -> &'a [Value] {
    let list = vectors[key]
        .as_array()
        .unwrap_or_else(|| panic!("`{key}` is not an array"));
    assert!(!list.is_empty(), "`{key}` holds no vector");
    list
}

fn text<'a>(vector: &'a Value, key: &str) -> &'a str {
    vector[key]
        .as_str()
        .unwrap_or_else(|| panic!("vector field `{key}` is not a string: {vector}"))
}

/// A set holding exactly `secret`, bytes as given (`SecretSet::parse` would trim and split).
fn only(secret: &str) -> SecretSet {
    assert!(
        !secret.contains(',') && secret.trim() == secret,
        "vector secret must survive parsing"
    );
    SecretSet::parse(secret).expect("a non-empty secret")
}

#[test]
fn activity_vectors_sign_and_verify() {
    let vectors = vectors();
    for (index, vector) in list(&vectors, "activity_callback").iter().enumerate() {
        let nonce = text(vector, "nonce");
        let secret = text(vector, "secret");
        let expected = text(vector, "sign");
        let timestamp = vector["timestamp"].as_i64().expect("timestamp is an integer");

        let computed = activity::sign(nonce, &Secret::new(secret), timestamp);
        assert_eq!(
            computed, expected,
            "activity vector {index}: sign(nonce, secret, timestamp)"
        );

        let fields = SignedFields {
            nonce: nonce.to_owned(),
            timestamp,
            sign: expected.to_owned(),
        };
        let clock = FixedClock(timestamp);
        assert_eq!(
            activity::verify(&fields, &only(secret), &clock, FRESH),
            Ok(activity::ReplayScope::of_secret(&Secret::new(secret))),
            "activity vector {index}: verify must accept the vector"
        );

        // The same sign under another secret, and under the secret with one byte appended.
        for wrong in ["another-secret", &format!("{secret}x")] {
            assert_eq!(
                activity::verify(&fields, &only(wrong), &clock, FRESH),
                Err(AuthError::InvalidSignature),
                "activity vector {index}: verify must refuse it under secret {wrong:?}"
            );
        }
        // Extracted from a body exactly as the sender writes it, timestamp as a number or a string.
        for raw_timestamp in [Value::from(timestamp), Value::from(timestamp.to_string())] {
            let body = serde_json::json!({"nonce": nonce, "timestamp": raw_timestamp, "sign": expected}).to_string();
            let envelope = Envelope::parse(body.as_bytes()).expect("a JSON object");
            let extracted = SignedFields::extract(&envelope.object).expect("extract");
            assert_eq!(extracted, fields, "activity vector {index}: extract");
        }
    }
}

#[test]
fn crm_vectors_sign_and_verify() {
    let vectors = vectors();
    for (index, vector) in list(&vectors, "crm_webhook").iter().enumerate() {
        let secret = text(vector, "secret");
        let body = text(vector, "body").as_bytes();
        let expected = text(vector, "signature");

        assert_eq!(
            crm::sign(body, &Secret::new(secret)),
            expected,
            "crm vector {index}: sign(body, secret)"
        );
        let secrets = only(secret);
        assert_eq!(
            crm::verify(body, "X-Signature", Some(expected), &secrets),
            Ok(()),
            "crm vector {index}: verify must accept the vector"
        );

        // The body changed by one byte: the last byte flipped, or (for the empty body) one added.
        let mut tampered = body.to_vec();
        match tampered.last_mut() {
            Some(last) => *last ^= 0x01,
            None => tampered.push(b' '),
        }
        assert_eq!(
            crm::verify(&tampered, "X-Signature", Some(expected), &secrets),
            Err(AuthError::InvalidSignature),
            "crm vector {index}: verify must refuse the body changed by one byte"
        );
        // And the first byte, which a suffix-only check would miss.
        if let Some(first) = body.first() {
            let mut tampered = body.to_vec();
            tampered[0] = first ^ 0x20;
            assert_eq!(
                crm::verify(&tampered, "X-Signature", Some(expected), &secrets),
                Err(AuthError::InvalidSignature),
                "crm vector {index}: verify must refuse the body with its first byte changed"
            );
        }
        assert_eq!(
            crm::verify(body, "X-Signature", Some(expected), &only("another-secret")),
            Err(AuthError::InvalidSignature),
            "crm vector {index}: verify must refuse the vector under another secret"
        );
    }
}
