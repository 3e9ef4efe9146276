//! A received body, parsed once: the JSON object (keys trimmed), its identity, and the raw text.
//! It borrows from the body, which outlives it in the request pipeline.

use crate::digest::EventDigest;
use crate::error::ParseError;
use crate::node::{Node, Object};

/// Bodies larger than this are refused with 413 before they are parsed.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    /// The body's top-level object, with every key trimmed of surrounding whitespace.
    pub object: Object<'a>,
    /// Identity of the delivery: SHA-256 of the canonical JSON of the body as sent.
    pub digest: EventDigest,
    /// The body exactly as received, kept for reprocessing (`last_raw`).
    pub raw: &'a str,
}

impl<'a> Envelope<'a> {
    pub fn parse(body: &'a [u8]) -> Result<Self, ParseError> {
        let raw = std::str::from_utf8(body).map_err(|e| ParseError::InvalidJson(format!("body is not UTF-8: {e}")))?;
        let mut node: Node<'a> = serde_json::from_str(raw).map_err(|e| ParseError::InvalidJson(e.to_string()))?;
        if node.as_object().is_none() {
            return Err(ParseError::InvalidJson(format!(
                "expected a JSON object, got {}",
                node.kind()
            )));
        }
        let digest = EventDigest::of(&node);
        node.trim_keys();
        let Node::Object(object) = node else {
            unreachable!("checked to be an object above")
        };
        Ok(Self { object, digest, raw })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_of_the_body_as_sent_and_keys_are_trimmed_for_reading() {
        let a = Envelope::parse(br#"{"team_id ": "t", "x": 1}"#).unwrap();
        let b = Envelope::parse(br#"{"team_id": "t", "x": 1}"#).unwrap();
        assert!(a.object.contains_key("team_id"));
        assert_ne!(a.digest, b.digest, "a different body is a different event");
        assert_eq!(a.raw, r#"{"team_id ": "t", "x": 1}"#);
    }

    #[test]
    fn refuses_anything_but_a_utf8_json_object() {
        for body in [&b"[1]"[..], b"42", b"\"s\"", b"", b"\xc3\x28", b"{\"a\":1}{"] {
            assert!(
                matches!(Envelope::parse(body), Err(ParseError::InvalidJson(_))),
                "{body:?}"
            );
        }
        // serde_json bounds nesting depth: hostile nesting is an error, not a stack overflow.
        let deep = "[".repeat(100_000);
        assert!(matches!(
            Envelope::parse(deep.as_bytes()),
            Err(ParseError::InvalidJson(_))
        ));
    }
}
