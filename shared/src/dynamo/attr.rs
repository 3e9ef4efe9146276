//! Conversions between the pure item model and the SDK's attribute values, and the bookkeeping
//! attributes the adapter adds to every item.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;

use crate::error::StoreError;
use crate::format1::MERGE_STATE;
use crate::item::{AttrValue, Item};

/// Number of distinct events merged into the item: every write increments it.
pub const VERSION: &str = "version";
/// Storage format of the item ([`crate::bookkeeping::FORMAT_VERSION`]).
pub const FORMAT: &str = "format";
/// The compact merge bookkeeping (binary, [`crate::bookkeeping`]).
pub const MERGE: &str = "merge";
/// TTL attribute of nonce records (Unix seconds).
pub const EXPIRES_AT: &str = "expires_at";

pub type SdkItem = HashMap<String, AttributeValue>;

/// DynamoDB's item size limit (400 KB), attribute names included.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

/// The size DynamoDB counts for an item ("Item sizes and formats"): every attribute name plus
/// its value; strings and binaries by length, numbers about one byte per two digits plus one,
/// booleans and nulls one byte, lists and maps three bytes plus one per element (and the keys).
/// Digits are counted generously, so the estimate errs on the large side.
pub fn item_size(item: &SdkItem) -> usize {
    item.iter().map(|(name, value)| name.len() + value_size(value)).sum()
}

fn value_size(value: &AttributeValue) -> usize {
    let digits_size = |n: &str| n.bytes().filter(u8::is_ascii_digit).count().div_ceil(2) + 1;
    match value {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => digits_size(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Ss(set) => set.iter().map(String::len).sum(),
        AttributeValue::Ns(set) => set.iter().map(|n| digits_size(n)).sum(),
        AttributeValue::Bs(set) => set.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(items) => 3 + items.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        AttributeValue::M(map) => 3 + map.iter().map(|(k, v)| 1 + k.len() + value_size(v)).sum::<usize>(),
        // BOOL, NULL (and any variant a newer SDK adds, counted as small).
        _ => 1,
    }
}

pub fn to_sdk(value: AttrValue) -> AttributeValue {
    match value {
        AttrValue::S(s) => AttributeValue::S(s),
        AttrValue::N(n) => AttributeValue::N(n),
        AttrValue::Bool(b) => AttributeValue::Bool(b),
        AttrValue::Null => AttributeValue::Null(true),
        AttrValue::SS(set) => AttributeValue::Ss(set.into_iter().collect()),
        AttrValue::L(items) => AttributeValue::L(items.into_iter().map(to_sdk).collect()),
        AttrValue::M(map) => AttributeValue::M(map.into_iter().map(|(k, v)| (k, to_sdk(v))).collect()),
    }
}

pub fn item_to_sdk(item: Item) -> SdkItem {
    item.into_iter().map(|(k, v)| (k, to_sdk(v))).collect()
}

/// A string attribute value (S).
pub fn string(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// A number attribute value (N), in DynamoDB's decimal-string form.
pub fn number(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub fn key(partition: (&str, &str), sort: (&str, &str)) -> SdkItem {
    HashMap::from([
        (partition.0.to_owned(), string(partition.1)),
        (sort.0.to_owned(), string(sort.1)),
    ])
}

/// The pure value of an SDK attribute value; `None` for the types items never hold (binary).
pub fn from_sdk(value: &AttributeValue) -> Option<AttrValue> {
    Some(match value {
        AttributeValue::S(s) => AttrValue::S(s.clone()),
        AttributeValue::N(n) => AttrValue::N(n.clone()),
        AttributeValue::Bool(b) => AttrValue::Bool(*b),
        AttributeValue::Null(_) => AttrValue::Null,
        AttributeValue::Ss(set) => AttrValue::SS(set.iter().cloned().collect()),
        AttributeValue::L(items) => AttrValue::L(items.iter().map(from_sdk).collect::<Option<_>>()?),
        AttributeValue::M(map) => AttrValue::M(
            map.iter()
                .map(|(k, v)| Some((k.clone(), from_sdk(v)?)))
                .collect::<Option<_>>()?,
        ),
        _ => return None,
    })
}

/// The visible attributes of a stored item (the bookkeeping of either format left out) as a
/// pure item.
pub fn visible_item(item: &SdkItem) -> Result<Item, StoreError> {
    item.iter()
        .filter(|(name, _)| ![VERSION, FORMAT, MERGE, MERGE_STATE].contains(&name.as_str()))
        .map(|(name, value)| {
            from_sdk(value)
                .map(|value| (name.clone(), value))
                .ok_or_else(|| StoreError::Corrupt(format!("`{name}` has an unexpected type")))
        })
        .collect()
}

/// Any SDK failure (network, throttling after the SDK's own retries, timeouts) is an outage
/// from the sender's point of view.
pub fn unavailable<E, R>(error: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    StoreError::Unavailable(DisplayErrorContext(error).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pure_items_map_one_to_one_onto_sdk_values() {
        let item = crate::item::ItemBuilder::key("124", "E")
            .number("event_count", 2)
            .bool("voided", false)
            .attr("cleared", AttrValue::Null)
            .attr("team_members", AttrValue::SS(["b".to_owned(), "a".to_owned()].into()))
            .attr(
                "fields",
                AttrValue::M([("l".to_owned(), AttrValue::L(vec![AttrValue::S("x".into())]))].into()),
            )
            .build();
        let sdk = item_to_sdk(item);
        assert_eq!(sdk["mid"], string("124"));
        assert_eq!(sdk["event_count"], number(2));
        assert_eq!(sdk["voided"], AttributeValue::Bool(false));
        assert_eq!(sdk["cleared"], AttributeValue::Null(true));
        assert_eq!(sdk["team_members"], AttributeValue::Ss(vec!["a".into(), "b".into()]));
        assert_eq!(
            sdk["fields"],
            AttributeValue::M(HashMap::from([("l".to_owned(), AttributeValue::L(vec![string("x")]))]))
        );
    }

    #[test]
    fn item_size_counts_names_and_values_at_every_depth() {
        let item: SdkItem = HashMap::from([
            ("mid".to_owned(), string("124")),
            ("n".to_owned(), number(12345)),
            ("b".to_owned(), AttributeValue::Bool(true)),
            (
                "m".to_owned(),
                AttributeValue::M(HashMap::from([(
                    "k".to_owned(),
                    AttributeValue::L(vec![string("ab"), AttributeValue::Null(true)]),
                )])),
            ),
        ]);
        // mid 3+3, n 1+(3+1), b 1+1, m 1+(3 + 1+1+(3 + 1+2 + 1+1)).
        assert_eq!(item_size(&item), 6 + 5 + 2 + 1 + 3 + 2 + 3 + 3 + 2);
        let big: SdkItem = HashMap::from([("last_raw".to_owned(), string("x".repeat(MAX_ITEM_BYTES)))]);
        assert!(item_size(&big) > MAX_ITEM_BYTES);
    }
}
