//! A received body as a tree that borrows its text from the body.
//!
//! Reading a body into `serde_json::Value` allocated every key and every string, and that (with
//! freeing them again) was the largest cost of a delivery. serde_json's own parser fills this tree
//! instead: it only copies strings that contain escapes, and objects are sorted vectors rather than
//! B-trees. Objects read exactly as `serde_json::Map` would: each key once, the last one sent wins.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// One JSON value of a body.
#[derive(Debug, Clone, PartialEq)]
pub enum Node<'a> {
    Null,
    Bool(bool),
    Number(Number),
    /// Borrowed only when the string stands in the body as is (no escapes), which makes it its own
    /// JSON text: the digest writes it without escaping.
    String(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    Object(Object<'a>),
}

/// A JSON object: its entries sorted by key, each key once. Keys are borrowed like strings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Object<'a> {
    entries: Vec<(Cow<'a, str>, Node<'a>)>,
}

impl<'a> Node<'a> {
    /// What kind of value this is, for error messages (`a string`, `an object`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "a boolean",
            Self::Number(_) => "a number",
            Self::String(_) => "a string",
            Self::Array(_) => "an array",
            Self::Object(_) => "an object",
        }
    }

    pub fn as_object(&self) -> Option<&Object<'a>> {
        match self {
            Self::Object(object) => Some(object),
            _ => None,
        }
    }

    /// `null` and `""`, which the vendors send for "no value".
    pub fn is_blank(&self) -> bool {
        match self {
            Self::Null => true,
            Self::String(text) => text.is_empty(),
            _ => false,
        }
    }

    /// An owned copy, for the values that outlive the body (field values of the merge state).
    pub fn to_value(&self) -> Value {
        match self {
            Self::Null => Value::Null,
            Self::Bool(b) => Value::Bool(*b),
            Self::Number(n) => Value::Number(n.clone()),
            Self::String(text) => Value::String(text.as_ref().to_owned()),
            Self::Array(items) => Value::Array(items.iter().map(Node::to_value).collect()),
            Self::Object(object) => Value::Object(
                object
                    .iter()
                    .map(|(key, child)| (key.to_owned(), child.to_value()))
                    .collect::<Map<String, Value>>(),
            ),
        }
    }

    /// Trims surrounding whitespace from every object key, at every depth (`"team_id "` →
    /// `team_id`). When trimming makes two keys equal, the one that sorted later before trimming
    /// wins, as when a `serde_json::Map` is rebuilt with trimmed keys.
    pub fn trim_keys(&mut self) {
        match self {
            Self::Object(object) => object.trim_keys(),
            Self::Array(items) => items.iter_mut().for_each(Node::trim_keys),
            _ => {}
        }
    }
}

impl<'a> Object<'a> {
    /// Sorts `entries` by key and keeps the last of each run of equal keys.
    fn from_entries(mut entries: Vec<(Cow<'a, str>, Node<'a>)>) -> Self {
        // Stable, so that equal keys stay in the order they were sent.
        entries.sort_by(|a, b| key_order(&a.0, &b.0));
        entries.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                std::mem::swap(&mut later.1, &mut kept.1);
            }
            same
        });
        Self { entries }
    }

    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        let index = self.entries.binary_search_by(|(k, _)| key_order(k, key)).ok()?;
        Some(&self.entries[index].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The entries with their keys as read, in key order.
    pub(crate) fn entries(&self) -> &[(Cow<'a, str>, Node<'a>)] {
        &self.entries
    }

    /// The entries, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node<'a>)> {
        self.entries.iter().map(|(key, child)| (key.as_ref(), child))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn trim_keys(&mut self) {
        if self.entries.iter().any(|(key, _)| untrimmed(key)) {
            let entries = std::mem::take(&mut self.entries)
                .into_iter()
                .map(|(key, child)| (trimmed(key), child))
                .collect();
            *self = Self::from_entries(entries);
        }
        self.entries.iter_mut().for_each(|(_, child)| child.trim_keys());
    }
}

/// The order of `str`, bytewise. Most keys differ in their first byte: comparing that inline
/// spares a call to `memcmp` for most pairs, in lookups and sorts (inlined: the release profile
/// optimizes for size and would otherwise call it). Comparing the rest inline, eight bytes at a
/// time, was tried: more cycles than `memcmp`, whose vector loads take a whole key at once.
#[inline]
fn key_order(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.first().cmp(&b.first()).then_with(|| a.cmp(b))
}

/// Whether `key` starts or ends with whitespace (as `char::is_whitespace` has it). Nearly every
/// key is ASCII at both ends, and is checked by two bytes instead of decoding characters.
fn untrimmed(key: &str) -> bool {
    let ascii_space = |byte: u8| matches!(byte, b' ' | b'\t'..=b'\r');
    match (key.as_bytes().first(), key.as_bytes().last()) {
        (Some(&first), Some(&last)) if first.is_ascii() && last.is_ascii() => ascii_space(first) || ascii_space(last),
        (None, _) | (_, None) => false,
        _ => key.starts_with(char::is_whitespace) || key.ends_with(char::is_whitespace),
    }
}

fn trimmed(key: Cow<'_, str>) -> Cow<'_, str> {
    match key {
        Cow::Borrowed(text) => Cow::Borrowed(text.trim()),
        Cow::Owned(text) => Cow::Owned(text.trim().to_owned()),
    }
}

/// A copy of a `serde_json::Value` (for tools and tests). Its strings are copied: they may need
/// escaping.
impl<'a> From<&'a Value> for Node<'a> {
    fn from(value: &'a Value) -> Self {
        match value {
            Value::Null => Self::Null,
            Value::Bool(b) => Self::Bool(*b),
            Value::Number(n) => Self::Number(n.clone()),
            Value::String(text) => Self::String(Cow::Owned(text.clone())),
            Value::Array(items) => Self::Array(items.iter().map(Node::from).collect()),
            Value::Object(map) => Self::Object(Object::from_entries(
                map.iter()
                    .map(|(key, child)| (Cow::Owned(key.clone()), Node::from(child)))
                    .collect(),
            )),
        }
    }
}

/// Read by serde_json's parser, as `serde_json::Value` is, but borrowing what it can.
impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any valid JSON value")
    }

    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_bool<E>(self, value: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Node<'de>, E> {
        Ok(Node::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Node<'de>, E> {
        Ok(Node::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Node<'de>, E> {
        // As serde_json::Value does; JSON text cannot spell a non-finite number anyway.
        Ok(Number::from_f64(value).map_or(Node::Null, Node::Number))
    }

    fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Borrowed(value)))
    }

    fn visit_str<E>(self, value: &str) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Owned(value.to_owned())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        // serde_json cannot tell the size in advance. Most vendor objects have a handful of
        // entries: starting at 8 spares the reallocations (and copies) of growing from 4.
        let mut entries = Vec::with_capacity(OBJECT_CAPACITY);
        while let Some(Key(key)) = map.next_key()? {
            entries.push((key, map.next_value()?));
        }
        Ok(Node::Object(Object::from_entries(entries)))
    }
}

/// The first capacity of an object's entries while it is read.
const OBJECT_CAPACITY: usize = 8;

/// An object key, borrowed unless it contains escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("an object key")
            }

            fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(value)))
            }

            fn visit_str<E>(self, value: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(value.to_owned())))
            }
        }

        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> Node<'_> {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn reads_what_serde_json_reads() {
        let text = r#"{"b": [1, -2, 1.5, 1e2, 18446744073709551615, 18446744073709551616, true, null],
                       "a": {"y": "\u00e9\"", "x": "plain", "": {}}, "dup": 1, "dup": 2}"#;
        let value: Value = serde_json::from_str(text).unwrap();
        assert_eq!(parse(text).to_value(), value);
        assert_eq!(Node::from(&value), parse(text));
    }

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let node = parse(r#"{"plain": "text", "esc\"aped": "a\nb"}"#);
        let object = node.as_object().unwrap();
        let keys: Vec<bool> = object
            .entries
            .iter()
            .map(|(k, _)| matches!(k, Cow::Borrowed(_)))
            .collect();
        assert_eq!(keys, [false, true]);
        assert!(matches!(object.get("plain"), Some(Node::String(Cow::Borrowed("text")))));
        assert!(matches!(object.get("esc\"aped"), Some(Node::String(Cow::Owned(_)))));
    }

    #[test]
    fn the_last_of_duplicate_keys_wins() {
        let node = parse(r#"{"k": 1, "a": 0, "k": 2, "k": 3}"#);
        let object = node.as_object().unwrap();
        assert_eq!(object.len(), 2);
        assert_eq!(object.get("k"), Some(&Node::Number(3.into())));
    }

    #[test]
    fn keys_are_trimmed_everywhere_as_a_rebuilt_map_would_be() {
        for text in [
            r#"{" a ": {"team_id ": 1}, "list": [{" k": 2}]}"#,
            r#"{"a ": 1, "a": 2, " a": 3}"#,
            r#"{"a": {"x": 1, "x ": 2}, "b ": [], "b": null}"#,
        ] {
            let mut node = parse(text);
            node.trim_keys();
            let mut expected: Value = serde_json::from_str(text).unwrap();
            rebuild_with_trimmed_keys(&mut expected);
            assert_eq!(node.to_value(), expected, "{text}");
        }
        let mut node = parse(r#"{" a ": {"team_id ": 1}}"#);
        node.trim_keys();
        assert_eq!(node.to_value(), json!({"a": {"team_id": 1}}));
    }

    /// The rule as it was first written, over `serde_json::Value`.
    fn rebuild_with_trimmed_keys(value: &mut Value) {
        match value {
            Value::Object(map) => {
                let old = std::mem::take(map);
                for (key, child) in old {
                    map.insert(key.trim().to_owned(), child);
                }
                map.values_mut().for_each(rebuild_with_trimmed_keys);
            }
            Value::Array(items) => items.iter_mut().for_each(rebuild_with_trimmed_keys),
            _ => {}
        }
    }

    #[test]
    fn keys_are_ordered_as_strings_are() {
        let keys = ["", " ", "a", "a ", "ab", "abc", "b", "B", "é", "éa", "中", "\u{0}", "~"];
        for a in keys {
            for b in keys {
                assert_eq!(key_order(a, b), a.cmp(b), "{a:?} {b:?}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn key_order_is_the_order_of_str(a in "[a-c_\\sé中]{0,20}", b in "[a-c_\\sé中]{0,20}") {
            proptest::prop_assert_eq!(key_order(&a, &b), a.cmp(&b));
            let (long_a, long_b) = (format!("mapping_data_{a}"), format!("mapping_data_{b}"));
            proptest::prop_assert_eq!(key_order(&long_a, &long_b), long_a.cmp(&long_b));
        }

        #[test]
        fn untrimmed_is_what_trim_would_change(key in "[a \\t\\n\u{b}\u{85}\u{a0}\u{3000}é]{0,6}") {
            proptest::prop_assert_eq!(untrimmed(&key), key.trim() != key);
        }
    }

    #[test]
    fn blank_means_null_or_empty_string() {
        assert!(Node::Null.is_blank());
        assert!(parse(r#""""#).is_blank());
        assert!(!parse(r#"" ""#).is_blank());
        assert!(!parse("0").is_blank());
    }
}
