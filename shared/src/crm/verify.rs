//! CRM authenticity (contract 2.1): an HMAC of the exact body bytes, checked against every secret of
//! the tenant in constant time.
//!
//! The vendor does not publish its scheme, so it is configuration: HMAC-SHA1 (default) or
//! HMAC-SHA256, written in hex (default, either case) or base64, in the header
//! `CRM_SIGNATURE_HEADER`. An optional `sha1=` / `sha256=` prefix (the algorithm's name) is
//! accepted in every scheme.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

use crate::error::AuthError;
use crate::secret::{Secret, SecretSet};

/// The longest MAC of any algorithm (SHA-256).
const MAX_MAC_BYTES: usize = 32;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Algorithm {
    #[default]
    HmacSha1,
    HmacSha256,
}

impl Algorithm {
    pub const ALL: [Self; 2] = [Self::HmacSha1, Self::HmacSha256];

    /// The configuration value (`CRM_SIGNATURE_ALGORITHM`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HmacSha1 => "hmac-sha1",
            Self::HmacSha256 => "hmac-sha256",
        }
    }

    /// The prefix some senders put before the signature (`sha1=…`, as GitHub does).
    pub fn prefix(self) -> &'static str {
        match self {
            Self::HmacSha1 => "sha1=",
            Self::HmacSha256 => "sha256=",
        }
    }

    fn mac_len(self) -> usize {
        match self {
            Self::HmacSha1 => 20,
            Self::HmacSha256 => 32,
        }
    }

    /// The MAC of `body` under `secret`, in the first [`Self::mac_len`] bytes.
    fn mac(self, body: &[u8], secret: &Secret) -> [u8; MAX_MAC_BYTES] {
        let mut out = [0u8; MAX_MAC_BYTES];
        // HMAC accepts keys of any length, so neither can fail.
        match self {
            Self::HmacSha1 => {
                let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(secret.expose()).expect("any key length");
                mac.update(body);
                out[..20].copy_from_slice(&mac.finalize().into_bytes());
            }
            Self::HmacSha256 => {
                let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.expose()).expect("any key length");
                mac.update(body);
                out.copy_from_slice(&mac.finalize().into_bytes());
            }
        }
        out
    }
}

impl FromStr for Algorithm {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "hmac-sha1" | "sha1" => Ok(Self::HmacSha1),
            "hmac-sha256" | "sha256" => Ok(Self::HmacSha256),
            other => Err(format!("`{other}` is not hmac-sha1 or hmac-sha256")),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Encoding {
    /// Hexadecimal, lowercase when signing, either case when verifying.
    #[default]
    Hex,
    /// Standard base64 (RFC 4648 §4); padding optional when verifying.
    Base64,
}

impl Encoding {
    pub const ALL: [Self; 2] = [Self::Hex, Self::Base64];

    /// The configuration value (`CRM_SIGNATURE_ENCODING`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hex => "hex",
            Self::Base64 => "base64",
        }
    }

    fn encode(self, bytes: &[u8]) -> String {
        match self {
            Self::Hex => hex::encode(bytes),
            Self::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }

    /// Decodes `text` into exactly `out.len()` bytes, or fails.
    fn decode_exact(self, text: &str, out: &mut [u8]) -> Result<(), ()> {
        match self {
            Self::Hex => hex::decode_to_slice(text, out).map_err(drop),
            Self::Base64 => {
                let mut buffer = [0u8; MAX_MAC_BYTES + 3];
                let written = LENIENT_BASE64.decode_slice(text, &mut buffer).map_err(drop)?;
                if written != out.len() {
                    return Err(());
                }
                out.copy_from_slice(&buffer[..written]);
                Ok(())
            }
        }
    }
}

/// Standard base64 with or without its `=` padding.
const LENIENT_BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

impl FromStr for Encoding {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "hex" => Ok(Self::Hex),
            "base64" => Ok(Self::Base64),
            other => Err(format!("`{other}` is not hex or base64")),
        }
    }
}

/// How the CRM signature is computed and written. The default is contract 2.1's: HMAC-SHA1, hex.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignatureScheme {
    pub algorithm: Algorithm,
    pub encoding: Encoding,
}

impl fmt::Display for SignatureScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.algorithm.as_str(), self.encoding.as_str())
    }
}

impl SignatureScheme {
    /// What the sender puts in the header for `body` under `secret` (no prefix).
    pub fn sign(&self, body: &[u8], secret: &Secret) -> String {
        let mac = self.algorithm.mac(body, secret);
        self.encoding.encode(&mac[..self.algorithm.mac_len()])
    }

    /// Checks the signature header value `header` (as received) against `body` and `secrets`.
    /// `header_name` only serves the error message.
    pub fn verify(
        &self,
        body: &[u8],
        header_name: &str,
        header: Option<&str>,
        secrets: &SecretSet,
    ) -> Result<(), AuthError> {
        let value = header.map(str::trim).filter(|v| !v.is_empty());
        let value =
            value.ok_or_else(|| AuthError::MissingSignature(format!("header {header_name} is absent or empty")))?;
        let encoded = strip_prefix_ignore_case(value, self.algorithm.prefix()).unwrap_or(value);
        let len = self.algorithm.mac_len();
        let mut claimed = [0u8; MAX_MAC_BYTES];
        self.encoding
            .decode_exact(encoded, &mut claimed[..len])
            .map_err(|()| AuthError::InvalidSignature)?;
        // Every secret is tried, whatever matched before, so timing says nothing about which one did.
        let matched = secrets.iter().fold(Choice::from(0), |acc, secret| {
            acc | self.algorithm.mac(body, secret)[..len].ct_eq(&claimed[..len])
        });
        if bool::from(matched) {
            Ok(())
        } else {
            Err(AuthError::InvalidSignature)
        }
    }
}

/// Lowercase hex HMAC-SHA1 of `body` under `secret`: what the sender puts in the header under
/// contract 2.1's default scheme.
pub fn sign(body: &[u8], secret: &Secret) -> String {
    SignatureScheme::default().sign(body, secret)
}

/// [`SignatureScheme::verify`] under contract 2.1's default scheme.
pub fn verify(body: &[u8], header_name: &str, header: Option<&str>, secrets: &SecretSet) -> Result<(), AuthError> {
    SignatureScheme::default().verify(body, header_name, header, secrets)
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

    #[test]
    fn each_scheme_verifies_its_own_signatures_only() {
        let secret = Secret::new("k1");
        let set = secrets("k1");
        for algorithm in Algorithm::ALL {
            for encoding in Encoding::ALL {
                let scheme = SignatureScheme { algorithm, encoding };
                let good = scheme.sign(BODY, &secret);
                assert_eq!(scheme.verify(BODY, "X", Some(&good), &set), Ok(()), "{scheme}");
                let prefixed = format!("{}{good}", algorithm.prefix());
                assert_eq!(
                    scheme.verify(BODY, "X", Some(&prefixed), &set),
                    Ok(()),
                    "{scheme} prefixed"
                );
                assert_eq!(
                    scheme.verify(b"{}", "X", Some(&good), &set),
                    Err(AuthError::InvalidSignature)
                );
                for other in Algorithm::ALL.iter().flat_map(|a| Encoding::ALL.map(|e| (*a, e))) {
                    let other = SignatureScheme {
                        algorithm: other.0,
                        encoding: other.1,
                    };
                    if other != scheme {
                        assert_eq!(
                            other.verify(BODY, "X", Some(&good), &set),
                            Err(AuthError::InvalidSignature),
                            "{scheme} signature under {other}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn base64_padding_is_optional_and_lengths_must_match() {
        let scheme = SignatureScheme {
            algorithm: Algorithm::HmacSha256,
            encoding: Encoding::Base64,
        };
        let good = scheme.sign(BODY, &Secret::new("k1"));
        assert!(good.ends_with('='), "32 bytes need padding: {good}");
        let set = secrets("k1");
        assert_eq!(scheme.verify(BODY, "X", Some(good.trim_end_matches('=')), &set), Ok(()));
        let sha1 = SignatureScheme {
            algorithm: Algorithm::HmacSha1,
            encoding: Encoding::Base64,
        };
        assert_eq!(
            sha1.verify(BODY, "X", Some(&good), &set),
            Err(AuthError::InvalidSignature)
        );
        assert_eq!(
            scheme.verify(BODY, "X", Some("!!!"), &set),
            Err(AuthError::InvalidSignature)
        );
    }

    #[test]
    fn configuration_values_parse_and_the_default_is_the_spec() {
        assert_eq!(SignatureScheme::default().to_string(), "hmac-sha1/hex");
        assert_eq!("HMAC-SHA256".parse(), Ok(Algorithm::HmacSha256));
        assert_eq!("sha1".parse(), Ok(Algorithm::HmacSha1));
        assert_eq!(" Base64 ".parse(), Ok(Encoding::Base64));
        assert!("md5".parse::<Algorithm>().is_err());
        assert!("base32".parse::<Encoding>().is_err());
    }
}
