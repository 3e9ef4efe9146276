//! CRM authenticity (SPEC 2.1): HMAC-SHA1 of the exact body bytes, hex in either case, with an
//! optional `sha1=` prefix, checked against every secret of the tenant in constant time.

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use subtle::{Choice, ConstantTimeEq};

use crate::error::AuthError;
use crate::secret::{Secret, SecretSet};

type HmacSha1 = Hmac<Sha1>;

/// Lowercase hex HMAC-SHA1 of `body` under `secret`: what the sender puts in the header.
pub fn sign(body: &[u8], secret: &Secret) -> String {
    hex::encode(mac(body, secret))
}

fn mac(body: &[u8], secret: &Secret) -> [u8; 20] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha1 as KeyInit>::new_from_slice(secret.expose()).expect("HMAC takes any key length");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// Checks the signature header value `header` (as received) against `body` and `secrets`.
/// `header_name` only serves the error message.
pub fn verify(body: &[u8], header_name: &str, header: Option<&str>, secrets: &SecretSet) -> Result<(), AuthError> {
    let value = header.map(str::trim).filter(|v| !v.is_empty());
    let value = value.ok_or_else(|| AuthError::MissingSignature(format!("header {header_name} is absent or empty")))?;
    let hex_part = strip_prefix_ignore_case(value, "sha1=").unwrap_or(value);
    let mut claimed = [0u8; 20];
    hex::decode_to_slice(hex_part, &mut claimed).map_err(|_| AuthError::InvalidSignature)?;
    // Every secret is tried, whatever matched before, so timing says nothing about which one did.
    let matched = secrets
        .iter()
        .fold(Choice::from(0), |acc, secret| acc | mac(body, secret).ct_eq(&claimed));
    if bool::from(matched) {
        Ok(())
    } else {
        Err(AuthError::InvalidSignature)
    }
}

fn strip_prefix_ignore_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &value[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"mid":"124","event_type":"object_create"}"#;

    fn secrets(list: &str) -> SecretSet {
        SecretSet::parse(list).unwrap()
    }

    fn check(header: Option<&str>, list: &str) -> Result<(), AuthError> {
        verify(BODY, "X-Signature", header, &secrets(list))
    }

    #[test]
    fn accepts_either_case_and_the_sha1_prefix() {
        let good = sign(BODY, &Secret::new("k1"));
        assert_eq!(check(Some(&good), "k1"), Ok(()));
        assert_eq!(check(Some(&good.to_uppercase()), "k1"), Ok(()));
        assert_eq!(check(Some(&format!("sha1={good}")), "k1"), Ok(()));
        assert_eq!(check(Some(&format!("SHA1={good}")), "k1"), Ok(()));
        assert_eq!(check(Some(&format!("  {good} ")), "k1"), Ok(()));
    }

    #[test]
    fn refuses_wrong_secret_truncated_extended_and_non_hex() {
        let good = sign(BODY, &Secret::new("k1"));
        assert_eq!(check(Some(&good), "k2"), Err(AuthError::InvalidSignature));
        assert_eq!(check(Some(&good[..38]), "k1"), Err(AuthError::InvalidSignature));
        assert_eq!(
            check(Some(&format!("{good}00")), "k1"),
            Err(AuthError::InvalidSignature)
        );
        assert_eq!(check(Some(&format!("{good}0")), "k1"), Err(AuthError::InvalidSignature));
        assert_eq!(check(Some(&"zz".repeat(20)), "k1"), Err(AuthError::InvalidSignature));
        assert_eq!(
            check(Some(&format!("sha256={good}")), "k1"),
            Err(AuthError::InvalidSignature)
        );
        let other_body = sign(b"{}", &Secret::new("k1"));
        assert_eq!(check(Some(&other_body), "k1"), Err(AuthError::InvalidSignature));
    }

    #[test]
    fn missing_or_empty_header_is_missing_signature() {
        assert!(matches!(check(None, "k1"), Err(AuthError::MissingSignature(_))));
        assert!(matches!(check(Some("  "), "k1"), Err(AuthError::MissingSignature(_))));
    }

    #[test]
    fn any_secret_of_a_rotation_is_valid_and_a_rotated_out_one_is_not() {
        let old = sign(BODY, &Secret::new("old"));
        let new = sign(BODY, &Secret::new("new"));
        assert_eq!(check(Some(&old), "new,old"), Ok(()));
        assert_eq!(check(Some(&new), "new,old"), Ok(()));
        assert_eq!(check(Some(&old), "new"), Err(AuthError::InvalidSignature));
    }

    #[test]
    fn an_empty_secret_is_a_key_like_any_other() {
        // SecretSet never holds an empty secret from configuration, but signing with one must
        // still not verify under a real secret.
        let empty = sign(BODY, &Secret::new(""));
        assert_eq!(check(Some(&empty), "k1"), Err(AuthError::InvalidSignature));
    }
}
