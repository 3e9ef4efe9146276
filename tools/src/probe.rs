//! `webhookctl probe`: which CRM signature scheme, if any, a captured request was signed with.
//!
//! The vendor does not publish its scheme, so a refused delivery signed with the right secret
//! under another scheme is told apart from a forgery by trying every plausible one: HMAC-SHA1 and
//! HMAC-SHA256, hex or base64, in each header the request carried, with or without the
//! algorithm's `sha1=` / `sha256=` prefix. A match names the configuration that selects it.

use shared::crm::verify::{Algorithm, Encoding, SignatureScheme};
use shared::secret::SecretSet;

/// One way a request can be signed, found to match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemeMatch {
    /// The header as the request spelled it.
    pub header: String,
    pub scheme: SignatureScheme,
    /// The prefix the value carried (`sha256=`), if any. The service accepts it, or its absence.
    pub prefix: Option<String>,
    /// Which candidate secret matched (0-based, in the order given); never the secret itself.
    pub secret_index: usize,
}

impl SchemeMatch {
    /// The environment variables that make the service verify requests this way.
    pub fn configuration(&self) -> Vec<(&'static str, String)> {
        vec![
            ("CRM_SIGNATURE_HEADER", self.header.clone()),
            ("CRM_SIGNATURE_ALGORITHM", self.scheme.algorithm.as_str().to_owned()),
            ("CRM_SIGNATURE_ENCODING", self.scheme.encoding.as_str().to_owned()),
        ]
    }
}

/// Every (header, scheme, secret) that verifies `body`. `headers` are (name, value) as captured.
pub fn probe(body: &[u8], headers: &[(String, String)], secrets: &[String]) -> Vec<SchemeMatch> {
    let mut matches = Vec::new();
    for (name, value) in headers {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        for algorithm in Algorithm::ALL {
            for encoding in Encoding::ALL {
                let scheme = SignatureScheme { algorithm, encoding };
                for (secret_index, secret) in secrets.iter().enumerate() {
                    let Some(set) = SecretSet::parse(secret) else {
                        continue;
                    };
                    if scheme.verify(body, name, Some(value), &set).is_ok() {
                        let prefix = algorithm.prefix();
                        let prefixed =
                            value.len() >= prefix.len() && value[..prefix.len()].eq_ignore_ascii_case(prefix);
                        matches.push(SchemeMatch {
                            header: name.clone(),
                            scheme,
                            prefix: prefixed.then(|| value[..prefix.len()].to_owned()),
                            secret_index,
                        });
                    }
                }
            }
        }
    }
    matches
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::secret::Secret;

    const BODY: &[u8] = br#"{"mid":"124","event_type":"object_update"}"#;

    #[test]
    fn finds_the_one_scheme_and_header_a_request_was_signed_with() {
        for algorithm in Algorithm::ALL {
            for encoding in Encoding::ALL {
                let scheme = SignatureScheme { algorithm, encoding };
                for prefixed in [false, true] {
                    let mut value = scheme.sign(BODY, &Secret::new("right"));
                    if prefixed {
                        value = format!("{}{value}", algorithm.prefix());
                    }
                    let headers = vec![
                        ("Content-Type".to_owned(), "application/json".to_owned()),
                        ("X-Signature".to_owned(), "0".repeat(40)),
                        ("X-Jing-Sign".to_owned(), value),
                    ];
                    let found = probe(BODY, &headers, &["wrong".to_owned(), "right".to_owned()]);
                    assert_eq!(found.len(), 1, "{scheme} {prefixed}: {found:?}");
                    assert_eq!(found[0].header, "X-Jing-Sign");
                    assert_eq!(found[0].scheme, scheme);
                    assert_eq!(found[0].secret_index, 1);
                    assert_eq!(found[0].prefix.is_some(), prefixed);
                    assert_eq!(
                        found[0].configuration()[1],
                        ("CRM_SIGNATURE_ALGORITHM", algorithm.as_str().to_owned())
                    );
                }
            }
        }
    }

    #[test]
    fn a_forgery_or_a_wrong_secret_matches_nothing() {
        let scheme = SignatureScheme::default();
        let headers = vec![("X-Signature".to_owned(), scheme.sign(BODY, &Secret::new("right")))];
        assert!(probe(BODY, &headers, &["wrong".to_owned()]).is_empty());
        assert!(probe(b"{}", &headers, &["right".to_owned()]).is_empty());
        assert!(probe(BODY, &[], &["right".to_owned()]).is_empty());
    }
}
