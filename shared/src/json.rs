//! Tolerant reading of vendor JSON: keys with stray spaces, numbers sent as strings, empty strings
//! meaning "absent". The canonical form that identifies an event lives in [`crate::digest`].

use std::cell::RefCell;

use serde::Serialize;

use crate::error::ParseError;
use crate::node::{Node, Object};

pub use crate::digest::{canonical_json, EventDigest};

/// Largest Unix time accepted (9999-12-31T23:59:59Z): anything later is a corrupted field.
pub const MAX_UNIX_SECONDS: i64 = 253_402_300_799;

/// DynamoDB's limits on key values, in UTF-8 bytes: the partition key (`mid`) and the sort keys
/// (`entity_id`, `nonce`). A longer value cannot be stored at all, so it is an invalid field, not
/// a storage failure the sender would retry forever.
pub const MAX_PARTITION_KEY_BYTES: usize = 2048;
pub const MAX_SORT_KEY_BYTES: usize = 1024;

/// `value`, the key value read from `field`, if it fits in `max_bytes`.
pub fn key_value(field: &str, value: String, max_bytes: usize) -> Result<String, ParseError> {
    fitting_key(value, max_bytes, || field.to_owned())
}

/// [`key_value`] with the field's name built only when the value does not fit.
fn fitting_key(value: String, max_bytes: usize, field: impl FnOnce() -> String) -> Result<String, ParseError> {
    if value.len() <= max_bytes {
        Ok(value)
    } else {
        Err(ParseError::invalid(
            field(),
            format!("{} bytes long; a key is at most {max_bytes} bytes", value.len()),
        ))
    }
}

/// A field the service reads but does not require, found in a shape it did not expect. The
/// event is still accepted (contract 2.3, tolerant reading): the value stays in `last_raw`, and the
/// request pipeline logs and counts the drift.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// Full path of the field (`extra_data.notes`, `attributes.privilege[1]`).
    pub path: String,
    /// What was expected and what came.
    pub reason: String,
}

/// The drift noted while one event is read. Interior mutability, so that every accessor can
/// note through a shared reference, nested readers included.
#[derive(Debug, Default)]
pub struct DriftLog(RefCell<Vec<Drift>>);

impl DriftLog {
    fn note(&self, path: String, reason: String) {
        self.0.borrow_mut().push(Drift { path, reason });
    }

    pub fn into_vec(self) -> Vec<Drift> {
        self.0.into_inner()
    }
}

/// Field accessors that name the full path of the field in their errors.
///
/// Every read goes through one of two doors: [`Fields::required`], where a wrong shape is
/// `invalid_field`, and [`Fields::optional`], where a wrong shape is drift when the reader is
/// tolerant (a [`DriftLog`] is attached) and `invalid_field` when it is strict. Tolerance is
/// therefore decided once, by whoever builds the reader, not field by field.
#[derive(Clone, Copy)]
pub(crate) struct Fields<'a> {
    map: &'a Object<'a>,
    prefix: &'a str,
    drift: Option<&'a DriftLog>,
}

impl<'a> Fields<'a> {
    /// A strict reader: any field of the wrong shape is an error.
    pub fn new(map: &'a Object<'a>, prefix: &'a str) -> Self {
        Self {
            map,
            prefix,
            drift: None,
        }
    }

    /// A tolerant reader: optional fields of the wrong shape are noted in `drift` and read as
    /// absent.
    pub fn tolerant(map: &'a Object<'a>, prefix: &'a str, drift: &'a DriftLog) -> Self {
        Self {
            map,
            prefix,
            drift: Some(drift),
        }
    }

    /// A reader of a nested object, as tolerant as this one.
    pub fn nested(&self, map: &'a Object<'a>, prefix: &'a str) -> Self {
        Self {
            map,
            prefix,
            drift: self.drift,
        }
    }

    /// The entries of the object, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a Node<'a>)> {
        self.map.iter()
    }

    /// The full path of `key`, for error messages: build it only when there is an error.
    pub fn path(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    /// The raw value, with `null` and `""` treated as absent.
    pub fn present(&self, key: &str) -> Option<&'a Node<'a>> {
        self.map.get(key).filter(|value| !value.is_blank())
    }

    /// A field the service needs: absent is `missing_field`, a shape `read` refuses is
    /// `invalid_field`.
    pub fn required<T>(
        &self,
        key: &str,
        read: impl FnOnce(&'a Node<'a>) -> Result<T, String>,
    ) -> Result<T, ParseError> {
        let node = self.present(key).ok_or_else(|| ParseError::missing(self.path(key)))?;
        read(node).map_err(|reason| ParseError::invalid(self.path(key), reason))
    }

    /// A field the service can do without: absent is `None`; a shape `read` refuses is drift
    /// (`None`, noted) for a tolerant reader and `invalid_field` for a strict one.
    pub fn optional<T>(
        &self,
        key: &str,
        read: impl FnOnce(&'a Node<'a>) -> Result<T, String>,
    ) -> Result<Option<T>, ParseError> {
        match self.present(key) {
            None => Ok(None),
            Some(node) => self.tolerate(key, read(node)),
        }
    }

    /// `result` of reading the optional field `key` (or of interpreting its value): a refusal is
    /// drift for a tolerant reader and `invalid_field` for a strict one.
    pub fn tolerate<T>(&self, key: &str, result: Result<T, String>) -> Result<Option<T>, ParseError> {
        match (result, self.drift) {
            (Ok(value), _) => Ok(Some(value)),
            (Err(reason), Some(drift)) => {
                drift.note(self.path(key), reason);
                Ok(None)
            }
            (Err(reason), None) => Err(ParseError::invalid(self.path(key), reason)),
        }
    }

    /// A string, borrowed from the body (`&str`, for values that are only read, not kept).
    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>, ParseError> {
        self.optional(key, text)
    }

    pub fn req_str(&self, key: &str) -> Result<&'a str, ParseError> {
        self.required(key, text)
    }

    /// A string, as [`Fields::opt_str`], owned (`String`) to keep.
    pub fn opt_string(&self, key: &str) -> Result<Option<String>, ParseError> {
        Ok(self.opt_str(key)?.map(str::to_owned))
    }

    pub fn req_string(&self, key: &str) -> Result<String, ParseError> {
        self.req_str(key).map(str::to_owned)
    }

    /// An identifier sent as a string or as an integer (`"941"` or `941`); blank is absent.
    pub fn opt_id(&self, key: &str) -> Result<Option<String>, ParseError> {
        Ok(self.optional(key, id)?.flatten())
    }

    pub fn req_id(&self, key: &str) -> Result<String, ParseError> {
        self.required(key, id)?
            .ok_or_else(|| ParseError::missing(self.path(key)))
    }

    /// A required identifier that becomes a key value of at most `max_bytes`.
    pub fn req_key(&self, key: &str, max_bytes: usize) -> Result<String, ParseError> {
        fitting_key(self.req_id(key)?, max_bytes, || self.path(key))
    }

    /// An integer sent as a number or a numeric string.
    pub fn opt_int(&self, key: &str) -> Result<Option<i64>, ParseError> {
        self.optional(key, int)
    }

    /// Unix seconds: an integer in `0..=MAX_UNIX_SECONDS`.
    pub fn req_unix_seconds(&self, key: &str) -> Result<i64, ParseError> {
        self.required(key, |node| {
            let seconds = int(node)?;
            if (0..=MAX_UNIX_SECONDS).contains(&seconds) {
                Ok(seconds)
            } else {
                Err(format!(
                    "{seconds} is not a Unix time in seconds between 0 and {MAX_UNIX_SECONDS}"
                ))
            }
        })
    }

    /// A nested object the service can do without; absent (or null) is `None`.
    pub fn opt_object(&self, key: &str) -> Result<Option<&'a Object<'a>>, ParseError> {
        match self.map.get(key) {
            None | Some(Node::Null) => Ok(None),
            Some(node) => self.tolerate(key, object(node)),
        }
    }

    /// A nested object that holds a required field: absent (or null) is `None`, any other shape
    /// is `invalid_field` whatever the reader's tolerance.
    pub fn container(&self, key: &str) -> Result<Option<&'a Object<'a>>, ParseError> {
        match self.map.get(key) {
            None | Some(Node::Null) => Ok(None),
            Some(node) => object(node)
                .map(Some)
                .map_err(|reason| ParseError::invalid(self.path(key), reason)),
        }
    }
}

/// The readers of [`Fields`]: a value of the expected shape, or why it is not.
pub(crate) fn text<'a>(node: &'a Node<'a>) -> Result<&'a str, String> {
    match node {
        Node::String(s) => Ok(s),
        other => Err(format!("expected a string, got {}", other.kind())),
    }
}

/// `Some(id)`, or `None` for a string of blanks.
fn id(node: &Node<'_>) -> Result<Option<String>, String> {
    match node {
        Node::String(s) if s.trim().is_empty() => Ok(None),
        Node::String(s) => Ok(Some(s.trim().to_owned())),
        Node::Number(n) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        other => Err(format!("expected a string or an integer, got {}", other.kind())),
    }
}

pub(crate) fn int(node: &Node<'_>) -> Result<i64, String> {
    match node {
        Node::Number(n) => n.as_i64().ok_or_else(|| "expected an integer".to_owned()),
        Node::String(s) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| "expected an integer or a numeric string".to_owned()),
        other => Err(format!("expected an integer, got {}", other.kind())),
    }
}

fn object<'a>(node: &'a Node<'a>) -> Result<&'a Object<'a>, String> {
    node.as_object()
        .ok_or_else(|| format!("expected an object, got {}", node.kind()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_arrive_as_numbers_or_strings() {
        let map = json!({"a": 5, "b": "6", "c": "x", "d": 1.5, "e": "", "f": -1, "g": 1e300});
        let node = Node::from(&map);
        let fields = Fields::new(node.as_object().unwrap(), "root");
        assert_eq!(fields.opt_int("a"), Ok(Some(5)));
        assert_eq!(fields.opt_int("b"), Ok(Some(6)));
        assert_eq!(fields.opt_int("e"), Ok(None));
        for bad in ["c", "d"] {
            assert!(
                matches!(fields.opt_int(bad), Err(ParseError::InvalidField { field, .. }) if field == format!("root.{bad}"))
            );
        }
        for bad in ["f", "g"] {
            assert!(
                matches!(fields.req_unix_seconds(bad), Err(ParseError::InvalidField { .. })),
                "{bad}"
            );
        }
        assert_eq!(
            fields.req_unix_seconds("missing"),
            Err(ParseError::missing("root.missing"))
        );
    }

    #[test]
    fn ids_accept_strings_and_integers_only() {
        let map = json!({"s": " 124 ", "n": 941, "f": 1.5, "b": true, "e": "  "});
        let node = Node::from(&map);
        let fields = Fields::new(node.as_object().unwrap(), "");
        assert_eq!(fields.opt_id("s"), Ok(Some("124".into())));
        assert_eq!(fields.opt_id("n"), Ok(Some("941".into())));
        assert_eq!(fields.opt_id("e"), Ok(None));
        assert!(fields.opt_id("f").is_err());
        assert!(fields.opt_id("b").is_err());
        assert_eq!(fields.req_id("e"), Err(ParseError::missing("e")));
    }

    #[test]
    fn key_values_longer_than_dynamodb_takes_are_invalid() {
        let map = json!({"at": "k".repeat(1024), "over": "é".repeat(513)});
        let node = Node::from(&map);
        let fields = Fields::new(node.as_object().unwrap(), "x");
        assert_eq!(fields.req_key("at", MAX_SORT_KEY_BYTES), Ok("k".repeat(1024)));
        assert!(matches!(
            fields.req_key("over", MAX_SORT_KEY_BYTES),
            Err(ParseError::InvalidField { field, .. }) if field == "x.over"
        ));
        assert_eq!(fields.req_key("none", 1), Err(ParseError::missing("x.none")));
    }
}
