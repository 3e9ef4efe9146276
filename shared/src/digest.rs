//! The identity of an event: SHA-256 of the canonical JSON of its body (object keys sorted, no
//! insignificant whitespace, strings and numbers as serde_json writes them).
//!
//! Digests are persisted (the stamps of the items' bookkeeping, nonce records), so the canonical
//! bytes must never change; `tests/digest_vectors.rs` pins them. The canonical form is streamed
//! into the hasher rather than built as a string first, which once cost more than parsing the
//! body.

use std::borrow::Cow;
use std::io::{self, Write};
use std::sync::Arc;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::node::{Node, Object};

/// The canonical JSON of a value, as text (for tests and tools; digests never build it).
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::with_capacity(256);
    write_canonical(&Node::from(value), &mut out).expect("writing to a Vec cannot fail");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// Writes the canonical JSON of `node` to `out`.
fn write_canonical<W: Write>(node: &Node<'_>, out: &mut W) -> io::Result<()> {
    match node {
        Node::Null => out.write_all(b"null"),
        Node::Bool(true) => out.write_all(b"true"),
        Node::Bool(false) => out.write_all(b"false"),
        // Numbers and strings are written exactly as serde_json's compact form.
        Node::Number(number) => serde_json::to_writer(out, number).map_err(io::Error::from),
        Node::String(text) => write_string(text, out),
        Node::Array(items) => {
            out.write_all(b"[")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                write_canonical(item, out)?;
            }
            out.write_all(b"]")
        }
        Node::Object(object) => write_object(object, out),
    }
}

/// An object's entries are kept sorted by key, which is the canonical order.
fn write_object<W: Write>(object: &Object<'_>, out: &mut W) -> io::Result<()> {
    out.write_all(b"{")?;
    for (i, (key, child)) in object.entries().iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        write_string(key, out)?;
        out.write_all(b":")?;
        write_canonical(child, out)?;
    }
    out.write_all(b"}")
}

/// A string as serde_json writes it.
#[expect(clippy::ptr_arg, reason = "whether the string is borrowed is what matters here")]
fn write_string<W: Write>(text: &Cow<'_, str>, out: &mut W) -> io::Result<()> {
    match text {
        // Borrowed means it stood in the body without escapes, and JSON allows no unescaped quote,
        // backslash or control character in a string: serde_json would write it unchanged. This
        // skips escaping the bulk of every body, byte by byte.
        Cow::Borrowed(text) => {
            debug_assert!(!text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\'));
            out.write_all(b"\"")?;
            out.write_all(text.as_bytes())?;
            out.write_all(b"\"")
        }
        Cow::Owned(text) => serde_json::to_writer(out, text).map_err(io::Error::from),
    }
}

/// How much canonical JSON is gathered before it is handed to the hasher.
const HASH_BUFFER_BYTES: usize = 512;

/// Feeds whatever is written to it into a SHA-256 hasher.
struct HashWriter(Sha256);

impl Write for HashWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Identity of one event: SHA-256 of its canonical JSON, in lowercase hex. Two deliveries are the
/// same event exactly when their digests are equal; the digest also breaks ordering ties.
///
/// Shared rather than owned: every value a merge writes carries the stamp of its event, so a
/// digest is cloned once per field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct EventDigest(Arc<str>);

impl EventDigest {
    pub fn of(node: &Node<'_>) -> Self {
        // serde_json writes a few bytes at a time; buffering them costs less than feeding each
        // piece to the hasher on its own.
        let mut out = io::BufWriter::with_capacity(HASH_BUFFER_BYTES, HashWriter(Sha256::new()));
        write_canonical(node, &mut out).expect("hashing cannot fail");
        let HashWriter(hasher) = out
            .into_inner()
            .map_err(|e| e.into_error())
            .expect("hashing cannot fail");
        // Hex on the stack, then the one allocation of the shared string.
        let mut hex = [0u8; 64];
        hex::encode_to_slice(hasher.finalize(), &mut hex).expect("64 hex digits for 32 bytes");
        Self(std::str::from_utf8(&hex).expect("hex digits are ASCII").into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 8 bytes of the digest as a big-endian number: the tie-break of [`crate::merge::Stamp`].
    /// Numeric order of the prefix is the order of the hex digest's first 16 characters.
    pub fn tie(&self) -> u64 {
        let prefix = self.0.get(..16).unwrap_or(&self.0);
        u64::from_str_radix(prefix, 16).unwrap_or(0)
    }

    /// Rebuilds a digest read back from storage.
    pub fn from_stored(hex: impl Into<String>) -> Self {
        Self(hex.into().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth_and_drops_whitespace() {
        let value: Value = serde_json::from_str(r#"{ "b": [ {"z":1, "a":null} ], "a": "é\/x" }"#).unwrap();
        assert_eq!(canonical_json(&value), r#"{"a":"é/x","b":[{"a":null,"z":1}]}"#);
    }

    #[test]
    fn canonical_json_of_a_value_escapes_keys_and_strings() {
        let value = serde_json::json!({"k\"ey": "line\nbreak", "tab\t": ["\u{1}"]});
        assert_eq!(canonical_json(&value), r#"{"k\"ey":"line\nbreak","tab\t":["\u0001"]}"#);
    }

    #[test]
    fn the_digest_is_the_sha256_of_the_canonical_json() {
        let value: Value = serde_json::from_str(r#"{"x": {"q": "\u0001", "p": [1.5, -2]}, "mid": "1"}"#).unwrap();
        let expected = hex::encode(Sha256::digest(canonical_json(&value).as_bytes()));
        assert_eq!(EventDigest::of(&Node::from(&value)).as_str(), expected);
    }

    #[test]
    fn pieces_larger_than_the_hash_buffer_and_many_small_ones_hash_as_one_text() {
        let long = "x".repeat(3 * HASH_BUFFER_BYTES + 7);
        let small: Vec<u32> = (0..400).collect();
        let value = serde_json::json!({"a": long, "b": small, "c": "y".repeat(HASH_BUFFER_BYTES - 3)});
        let expected = hex::encode(Sha256::digest(canonical_json(&value).as_bytes()));
        assert_eq!(EventDigest::of(&Node::from(&value)).as_str(), expected);
    }

    #[test]
    fn same_event_with_other_key_order_has_the_same_digest() {
        let a: Node = serde_json::from_str(r#"{"mid":"1","x":{"p":1,"q":2}}"#).unwrap();
        let b: Node = serde_json::from_str("{\"x\": {\"q\": 2,\n \"p\": 1}, \"mid\": \"1\"}").unwrap();
        let c: Node = serde_json::from_str(r#"{"mid":"1","x":{"p":1,"q":3}}"#).unwrap();
        assert_eq!(EventDigest::of(&a), EventDigest::of(&b));
        assert_ne!(EventDigest::of(&a), EventDigest::of(&c));
        assert_eq!(EventDigest::of(&a).as_str().len(), 64);
    }
}
