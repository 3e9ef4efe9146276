//! Items as DynamoDB stores them, modelled without the SDK so that item building is pure and
//! golden-testable. The DynamoDB adapter converts these one-to-one.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One DynamoDB attribute value. Its serde form is DynamoDB's JSON (`{"S": "…"}`, `{"N": "1"}`,
/// …), except `NULL`, written as the bare string `"NULL"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AttrValue {
    S(String),
    /// A number, in DynamoDB's decimal-string form.
    N(String),
    #[serde(rename = "BOOL")]
    Bool(bool),
    #[serde(rename = "NULL")]
    Null,
    SS(BTreeSet<String>),
    L(Vec<AttrValue>),
    M(BTreeMap<String, AttrValue>),
}

impl AttrValue {
    pub fn number(number: impl ToString) -> Self {
        Self::N(number.to_string())
    }

    /// JSON as DynamoDB stores it: strings S, numbers N, booleans BOOL, null NULL, arrays L,
    /// objects M.
    pub fn from_json(value: &Value) -> Self {
        match value {
            Value::Null => Self::Null,
            Value::Bool(b) => Self::Bool(*b),
            Value::Number(n) => Self::N(n.to_string()),
            Value::String(s) => Self::S(s.clone()),
            Value::Array(items) => Self::L(items.iter().map(Self::from_json).collect()),
            Value::Object(map) => Self::M(map.iter().map(|(k, v)| (k.clone(), Self::from_json(v))).collect()),
        }
    }
}

impl AttrValue {
    /// The JSON value this attribute was made from by [`AttrValue::from_json`]. A number is read
    /// from its decimal text (DynamoDB may normalize it: `1.50` comes back as `1.5`).
    pub fn to_json(&self) -> Option<Value> {
        Some(match self {
            Self::S(s) => Value::String(s.clone()),
            Self::N(n) => Value::Number(n.parse().ok()?),
            Self::Bool(b) => Value::Bool(*b),
            Self::Null => Value::Null,
            Self::SS(set) => Value::Array(set.iter().cloned().map(Value::String).collect()),
            Self::L(items) => Value::Array(items.iter().map(Self::to_json).collect::<Option<_>>()?),
            Self::M(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| Some((k.clone(), v.to_json()?)))
                    .collect::<Option<_>>()?,
            ),
        })
    }

    pub fn as_s(&self) -> Option<&str> {
        match self {
            Self::S(s) => Some(s),
            _ => None,
        }
    }
}

/// Typed reads of an item's attributes, for rebuilding a state from a stored item.
pub trait ItemRead {
    fn string(&self, name: &str) -> Option<&str>;
    fn i64(&self, name: &str) -> Option<i64>;
    fn bool(&self, name: &str) -> Option<bool>;
}

impl ItemRead for Item {
    fn string(&self, name: &str) -> Option<&str> {
        self.get(name)?.as_s()
    }

    fn i64(&self, name: &str) -> Option<i64> {
        match self.get(name)? {
            AttrValue::N(n) => n.parse().ok(),
            _ => None,
        }
    }

    fn bool(&self, name: &str) -> Option<bool> {
        match self.get(name)? {
            AttrValue::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

/// The first number in `value` (at any depth) that DynamoDB cannot store as a number: its
/// magnitude must be 0 or within `1e-130 ..= 9.99…e125`. Integers always fit; a float is written
/// as its shortest round-trip text, so comparing the float with the limits is exact.
pub fn first_unstorable_number(value: &Value) -> Option<&serde_json::Number> {
    match value {
        Value::Number(n) => {
            let magnitude = n.as_f64().map_or(0.0, f64::abs);
            let storable = n.is_i64() || n.is_u64() || magnitude == 0.0 || (1e-130..1e126).contains(&magnitude);
            (!storable).then_some(n)
        }
        Value::Array(items) => items.iter().find_map(first_unstorable_number),
        Value::Object(map) => map.values().find_map(first_unstorable_number),
        _ => None,
    }
}

/// An item: attribute name → value. Absent attributes are simply not in the map.
pub type Item = BTreeMap<String, AttrValue>;

/// Builds an item, leaving out attributes whose value is absent.
#[derive(Debug, Default)]
pub struct ItemBuilder(Item);

impl ItemBuilder {
    pub fn key(mid: &str, entity_id: &str) -> Self {
        Self::default().string("mid", mid).string("entity_id", entity_id)
    }

    pub fn string(mut self, name: &str, value: impl Into<String>) -> Self {
        self.0.insert(name.to_owned(), AttrValue::S(value.into()));
        self
    }

    pub fn opt_string(self, name: &str, value: Option<&str>) -> Self {
        match value {
            Some(value) => self.string(name, value),
            None => self,
        }
    }

    pub fn number(mut self, name: &str, value: impl ToString) -> Self {
        self.0.insert(name.to_owned(), AttrValue::number(value));
        self
    }

    pub fn opt_number(self, name: &str, value: Option<i64>) -> Self {
        match value {
            Some(value) => self.number(name, value),
            None => self,
        }
    }

    pub fn bool(mut self, name: &str, value: bool) -> Self {
        self.0.insert(name.to_owned(), AttrValue::Bool(value));
        self
    }

    pub fn opt_bool(self, name: &str, value: Option<bool>) -> Self {
        match value {
            Some(value) => self.bool(name, value),
            None => self,
        }
    }

    pub fn attr(mut self, name: &str, value: AttrValue) -> Self {
        self.0.insert(name.to_owned(), value);
        self
    }

    pub fn build(self) -> Item {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_maps_onto_dynamodb_types() {
        let value = json!({"s": "x", "n": 1.5, "b": true, "z": null, "l": [1, "a"]});
        let AttrValue::M(map) = AttrValue::from_json(&value) else {
            panic!()
        };
        assert_eq!(map["s"], AttrValue::S("x".into()));
        assert_eq!(map["n"], AttrValue::N("1.5".into()));
        assert_eq!(map["b"], AttrValue::Bool(true));
        assert_eq!(map["z"], AttrValue::Null);
        assert_eq!(
            map["l"],
            AttrValue::L(vec![AttrValue::N("1".into()), AttrValue::S("a".into())])
        );
    }

    #[test]
    fn json_survives_the_round_trip_through_attributes() {
        let value = json!({"s": "x", "n": 1.5, "i": -7, "b": true, "z": null, "l": [1, "a", {"k": []}]});
        assert_eq!(AttrValue::from_json(&value).to_json(), Some(value));
        assert_eq!(AttrValue::N("x".into()).to_json(), None);
    }

    #[test]
    fn numbers_outside_dynamodb_range_are_found_at_any_depth() {
        for fits in [
            json!(0.0),
            json!(-0.0),
            json!(9.99e125),
            json!(-1e-130),
            json!(u64::MAX),
            json!(i64::MIN),
        ] {
            assert_eq!(first_unstorable_number(&fits), None, "{fits}");
        }
        for value in [json!(1e126), json!(-1e300), json!(9e-131), json!([1, {"a": [1e-200]}])] {
            assert!(first_unstorable_number(&value).is_some(), "{value}");
        }
    }

    #[test]
    fn absent_values_leave_no_attribute() {
        let item = ItemBuilder::key("124", "E")
            .opt_string("owner", None)
            .opt_number("roadmap_id", None)
            .opt_bool("b", None)
            .build();
        assert_eq!(item.len(), 2);
    }
}
