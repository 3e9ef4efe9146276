//! Tolerant reading of vendor JSON: keys with stray spaces, numbers sent as strings, empty strings
//! meaning "absent". The canonical form that identifies an event lives in [`crate::digest`].

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

/// Field accessors that name the full path of the field in their errors.
pub(crate) struct Fields<'a> {
    map: &'a Object<'a>,
    prefix: &'a str,
}

impl<'a> Fields<'a> {
    pub fn new(map: &'a Object<'a>, prefix: &'a str) -> Self {
        Self { map, prefix }
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

    /// A string, borrowed from the body (for values that are only read, not kept); anything else
    /// but absence is `invalid_field`.
    pub fn opt_text(&self, key: &str) -> Result<Option<&'a str>, ParseError> {
        match self.present(key) {
            None => Ok(None),
            Some(Node::String(s)) => Ok(Some(s)),
            Some(other) => Err(ParseError::invalid(
                self.path(key),
                format!("expected a string, got {}", other.kind()),
            )),
        }
    }

    pub fn req_text(&self, key: &str) -> Result<&'a str, ParseError> {
        self.opt_text(key)?.ok_or_else(|| ParseError::missing(self.path(key)))
    }

    /// A string, as [`Fields::opt_text`], to keep.
    pub fn opt_str(&self, key: &str) -> Result<Option<String>, ParseError> {
        Ok(self.opt_text(key)?.map(str::to_owned))
    }

    pub fn req_str(&self, key: &str) -> Result<String, ParseError> {
        self.req_text(key).map(str::to_owned)
    }

    /// An identifier sent as a string or as an integer (`"941"` or `941`).
    pub fn opt_id(&self, key: &str) -> Result<Option<String>, ParseError> {
        match self.present(key) {
            None => Ok(None),
            Some(Node::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Node::String(s)) => Ok(Some(s.trim().to_owned())),
            Some(Node::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
            Some(other) => Err(ParseError::invalid(
                self.path(key),
                format!("expected a string or an integer, got {}", other.kind()),
            )),
        }
    }

    pub fn req_id(&self, key: &str) -> Result<String, ParseError> {
        self.opt_id(key)?.ok_or_else(|| ParseError::missing(self.path(key)))
    }

    /// A required identifier that becomes a key value of at most `max_bytes`.
    pub fn req_key(&self, key: &str, max_bytes: usize) -> Result<String, ParseError> {
        fitting_key(self.req_id(key)?, max_bytes, || self.path(key))
    }

    /// An integer sent as a number or a numeric string.
    pub fn opt_int(&self, key: &str) -> Result<Option<i64>, ParseError> {
        let invalid = |what: &str| ParseError::invalid(self.path(key), what.to_owned());
        match self.present(key) {
            None => Ok(None),
            Some(Node::Number(n)) => n.as_i64().map(Some).ok_or_else(|| invalid("expected an integer")),
            Some(Node::String(s)) => s
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| invalid("expected an integer or a numeric string")),
            Some(other) => Err(invalid(&format!("expected an integer, got {}", other.kind()))),
        }
    }

    /// Unix seconds: an integer in `0..=MAX_UNIX_SECONDS`.
    pub fn req_unix_seconds(&self, key: &str) -> Result<i64, ParseError> {
        let seconds = self.opt_int(key)?.ok_or_else(|| ParseError::missing(self.path(key)))?;
        if (0..=MAX_UNIX_SECONDS).contains(&seconds) {
            Ok(seconds)
        } else {
            Err(ParseError::invalid(
                self.path(key),
                format!("{seconds} is not a Unix time in seconds between 0 and {MAX_UNIX_SECONDS}"),
            ))
        }
    }

    /// A nested object; absent (or null) is `None`.
    pub fn opt_object(&self, key: &str) -> Result<Option<&'a Object<'a>>, ParseError> {
        match self.map.get(key) {
            None | Some(Node::Null) => Ok(None),
            Some(Node::Object(map)) => Ok(Some(map)),
            Some(other) => Err(ParseError::invalid(
                self.path(key),
                format!("expected an object, got {}", other.kind()),
            )),
        }
    }
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
