//! The `refused_deliveries` table (contract 2.4): key `source` (S, `crm` | `activity`) and
//! `delivery_id` (S, `<received_at>#<body digest>`, so that a source reads in time order), TTL
//! on `expires_at`. The functions put records; `webhookctl` lists, reads and annotates them.
//!
//! The same table holds the counters of the global cap: one item per window, key `source` =
//! [`CAP_PARTITION`] and `delivery_id` = the window's start, with `kept` (slots granted) and the
//! same `expires_at` TTL. A partition of its own keeps the counters out of every per-source
//! query, hence out of `webhookctl quarantine list`, `show` and `replay`.
//!
//! Unmodelled Lexiang actions, acknowledged and kept (contract 2.3), have a partition of their own
//! too, [`UNMODELLED_PARTITION`]; `webhookctl unmodelled list` reads it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use super::attr::string;
use crate::error::StoreError;
use crate::quarantine::{
    QuarantineConfig, QuarantineStore, RefusedDelivery, Slot, SlotRequest, StoreFuture, CAP_PARTITION,
};
use crate::source::Source;
use crate::unmodelled::{UnmodelledAction, UNMODELLED_PARTITION};

type SdkItem = HashMap<String, AttributeValue>;

pub struct DynamoQuarantineStore {
    client: Client,
    table: String,
}

fn unavailable(error: impl std::error::Error) -> StoreError {
    StoreError::Unavailable(DisplayErrorContext(error).to_string())
}

impl DynamoQuarantineStore {
    /// The quarantine store a function's configuration names, or `None` (quarantine off, with a
    /// warning at start-up) when it names no table.
    pub fn from_config(client: &Client, config: &QuarantineConfig) -> Option<Arc<dyn QuarantineStore>> {
        let Some(table) = config.table_name.clone() else {
            tracing::warn!("no REFUSED_DELIVERIES_TABLE_NAME configured: refused deliveries are not quarantined");
            return None;
        };
        Some(Arc::new(Self::new(client.clone(), table)))
    }

    pub fn new(client: Client, table: String) -> Self {
        Self { client, table }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Every item of one partition (a source, or the cap's counters), in sort-key order.
    async fn partition(&self, key: &str) -> Result<Vec<SdkItem>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<SdkItem> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#source = :source")
                .expression_attribute_names("#source", "source")
                .expression_attribute_values(":source", string(key))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            items.extend(page.items().iter().cloned());
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(items),
            }
        }
    }

    /// Every record of `source`, oldest first.
    pub async fn list(&self, source: Source) -> Result<Vec<RefusedDelivery>, StoreError> {
        self.partition(source.as_str()).await?.iter().map(from_item).collect()
    }

    /// Every unmodelled action kept, oldest first.
    pub async fn list_unmodelled(&self) -> Result<Vec<UnmodelledAction>, StoreError> {
        self.partition(UNMODELLED_PARTITION)
            .await?
            .iter()
            .map(unmodelled_from_item)
            .collect()
    }

    pub async fn get(&self, source: Source, delivery_id: &str) -> Result<Option<RefusedDelivery>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("source", string(source.as_str()))
            .key("delivery_id", string(delivery_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        output.item().map(from_item).transpose()
    }

    /// Notes on a record what its replay got, so that `quarantine list` shows it.
    pub async fn record_replay(
        &self,
        source: Source,
        delivery_id: &str,
        outcome: &str,
        at: &str,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("source", string(source.as_str()))
            .key("delivery_id", string(delivery_id))
            .update_expression("SET last_replay = :outcome, last_replay_at = :at")
            .condition_expression("attribute_exists(delivery_id)")
            .expression_attribute_values(":outcome", string(outcome))
            .expression_attribute_values(":at", string(at))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// The counters of the global cap, by window start (RFC 3339) → slots granted, oldest
    /// first (for operators and tests; the functions never read them).
    pub async fn cap_counts(&self) -> Result<BTreeMap<String, u32>, StoreError> {
        self.partition(CAP_PARTITION)
            .await?
            .iter()
            .map(|item| {
                let window = item.get("delivery_id").and_then(|v| v.as_s().ok());
                let kept = item
                    .get("kept")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse().ok());
                match (window, kept) {
                    (Some(window), Some(kept)) => Ok((window.clone(), kept)),
                    _ => Err(StoreError::Corrupt(format!(
                        "cap counter without window or kept: {item:?}"
                    ))),
                }
            })
            .collect()
    }
}

impl QuarantineStore for DynamoQuarantineStore {
    fn keep<'a>(&'a self, delivery: &'a RefusedDelivery) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(to_item(delivery)))
                .send()
                .await
                .map_err(unavailable)?;
            Ok(())
        })
    }

    /// One conditional `UpdateItem`: `kept` goes up by one only while it is below `max` (or
    /// absent: the window's first slot creates the item), so concurrent instances cannot
    /// overshoot. A failed condition is the answer `Full`, not an error.
    fn take_slot<'a>(&'a self, slot: &'a SlotRequest) -> StoreFuture<'a, Slot> {
        Box::pin(async move {
            let outcome = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("source", string(CAP_PARTITION))
                .key("delivery_id", string(slot.window.key()))
                .update_expression("ADD kept :one SET expires_at = :expires_at")
                .condition_expression("attribute_not_exists(kept) OR kept < :max")
                .expression_attribute_values(":one", AttributeValue::N("1".into()))
                .expression_attribute_values(":max", AttributeValue::N(slot.max.to_string()))
                .expression_attribute_values(":expires_at", AttributeValue::N(slot.expires_at.to_string()))
                .send()
                .await;
            match outcome {
                Ok(_) => Ok(Slot::Granted),
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                {
                    Ok(Slot::Full)
                }
                Err(error) => Err(unavailable(error)),
            }
        })
    }
}

pub fn to_item(delivery: &RefusedDelivery) -> SdkItem {
    let mut item = SdkItem::from([
        ("source".to_owned(), string(delivery.source.as_str())),
        ("delivery_id".to_owned(), string(&delivery.delivery_id)),
        ("received_at".to_owned(), string(&delivery.received_at)),
        ("status".to_owned(), AttributeValue::N(delivery.status.to_string())),
        ("code".to_owned(), string(&delivery.code)),
        ("body".to_owned(), string(&delivery.body)),
        (
            "header_names".to_owned(),
            AttributeValue::L(delivery.header_names.iter().map(string).collect()),
        ),
        (
            "signature_headers".to_owned(),
            AttributeValue::M(
                delivery
                    .signature_headers
                    .iter()
                    .map(|(name, value)| (name.clone(), string(value)))
                    .collect(),
            ),
        ),
        (
            "expires_at".to_owned(),
            AttributeValue::N(delivery.expires_at.to_string()),
        ),
    ]);
    if let Some(tenant) = &delivery.tenant {
        item.insert("tenant".to_owned(), string(tenant));
    }
    item
}

pub fn from_item(item: &SdkItem) -> Result<RefusedDelivery, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("refused delivery: {what}"));
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    let required = |name: &str| text(name).ok_or_else(|| corrupt(&format!("no {name}")));
    let number = |name: &str| -> Result<i64, StoreError> {
        item.get(name)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| corrupt(&format!("no {name}")))
    };
    let header_names = match item.get("header_names") {
        Some(AttributeValue::L(names)) => names.iter().filter_map(|v| v.as_s().ok().cloned()).collect(),
        _ => Vec::new(),
    };
    let signature_headers: BTreeMap<String, String> = match item.get("signature_headers") {
        Some(AttributeValue::M(map)) => map
            .iter()
            .filter_map(|(name, v)| Some((name.clone(), v.as_s().ok()?.clone())))
            .collect(),
        _ => BTreeMap::new(),
    };
    Ok(RefusedDelivery {
        source: required("source")?.parse().map_err(|e: String| corrupt(&e))?,
        delivery_id: required("delivery_id")?,
        received_at: required("received_at")?,
        status: u16::try_from(number("status")?).map_err(|_| corrupt("status"))?,
        code: required("code")?,
        tenant: text("tenant"),
        body: required("body")?,
        header_names,
        signature_headers,
        expires_at: number("expires_at")?,
        last_replay: text("last_replay"),
        last_replay_at: text("last_replay_at"),
    })
}

pub fn unmodelled_to_item(record: &UnmodelledAction) -> SdkItem {
    SdkItem::from([
        ("source".to_owned(), string(UNMODELLED_PARTITION)),
        ("delivery_id".to_owned(), string(&record.delivery_id)),
        ("received_at".to_owned(), string(&record.received_at)),
        ("tenant".to_owned(), string(&record.tenant)),
        ("action".to_owned(), string(&record.action)),
        ("nonce".to_owned(), string(&record.nonce)),
        ("body".to_owned(), string(&record.body)),
        (
            "expires_at".to_owned(),
            AttributeValue::N(record.expires_at.to_string()),
        ),
    ])
}

pub fn unmodelled_from_item(item: &SdkItem) -> Result<UnmodelledAction, StoreError> {
    let text = |name: &str| {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .ok_or_else(|| StoreError::Corrupt(format!("unmodelled action: no {name}")))
    };
    Ok(UnmodelledAction {
        delivery_id: text("delivery_id")?,
        received_at: text("received_at")?,
        tenant: text("tenant")?,
        action: text("action")?,
        nonce: text("nonce")?,
        body: text("body")?,
        expires_at: item
            .get("expires_at")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| StoreError::Corrupt("unmodelled action: no expires_at".to_owned()))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unmodelled_action_reads_back_as_written_under_its_own_partition() {
        let record = UnmodelledAction {
            delivery_id: "2026-01-01T00:00:00Z#0123456789ab".into(),
            received_at: "2026-01-01T00:00:00Z".into(),
            tenant: "124".into(),
            action: "doc/add".into(),
            nonce: "n1".into(),
            body: r#"{"action":"doc/add"}"#.into(),
            expires_at: 1_767_225_600,
        };
        let item = unmodelled_to_item(&record);
        assert_eq!(item["source"].as_s().unwrap(), UNMODELLED_PARTITION);
        assert!(from_item(&item).is_err(), "never read as a refused delivery");
        assert_eq!(unmodelled_from_item(&item), Ok(record));
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let record = RefusedDelivery {
            source: Source::Activity,
            delivery_id: "2026-01-01T00:00:00Z#0123456789ab".into(),
            received_at: "2026-01-01T00:00:00Z".into(),
            status: 401,
            code: "no_secret".into(),
            tenant: Some("124".into()),
            body: r#"{"action":"event/add"}"#.into(),
            header_names: vec!["content-type".into(), "x-signature".into()],
            signature_headers: BTreeMap::from([("x-signature".into(), "abc".into())]),
            expires_at: 1_767_225_600,
            last_replay: None,
            last_replay_at: None,
        };
        assert_eq!(from_item(&to_item(&record)), Ok(record.clone()));
        let mut no_tenant = record;
        no_tenant.tenant = None;
        no_tenant.signature_headers.clear();
        assert_eq!(from_item(&to_item(&no_tenant)), Ok(no_tenant));
    }
}
