//! What both adapters share: an entity table read with its version, and the conditional put that
//! only succeeds against the version that was read.

use std::time::Duration;

use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;

use super::attr::{self, decode_state, key, n, SdkItem, Stored, VERSION};
use crate::error::StoreError;
use crate::item::Item;

/// How many times a write that lost a race is retried before giving up with 503.
pub const MAX_CONFLICT_RETRIES: u32 = 8;

#[derive(Debug, Clone)]
pub struct EntityTable {
    pub client: Client,
    pub name: String,
}

impl EntityTable {
    /// The stored state of `(mid, entity_id)`, read consistently, or `None`.
    pub async fn load<S: serde::de::DeserializeOwned>(
        &self,
        mid: &str,
        entity_id: &str,
        restore_raw: impl FnOnce(&mut S, String),
    ) -> Result<Option<Stored<S>>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(key(("mid", mid), ("entity_id", entity_id))))
            .consistent_read(true)
            .send()
            .await
            .map_err(attr::unavailable)?;
        output.item().map(|item| decode_state(item, restore_raw)).transpose()
    }

    /// A put of the new item that only succeeds if the item still has `read_version`
    /// (`None`: it must not exist yet).
    pub fn conditional_put(
        &self,
        item: Item,
        merge_state: aws_sdk_dynamodb::types::AttributeValue,
        read_version: Option<u64>,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut item: SdkItem = attr::item_to_sdk(item);
        item.insert(VERSION.to_owned(), n(read_version.unwrap_or(0) + 1));
        item.insert(attr::MERGE_STATE.to_owned(), merge_state);
        // DynamoDB would refuse it (ValidationException) on every retry: refuse it for good.
        let size = attr::item_size(&item);
        if size > attr::MAX_ITEM_BYTES {
            return Err(StoreError::ItemTooLarge {
                size,
                limit: attr::MAX_ITEM_BYTES,
            });
        }
        let put = Put::builder().table_name(&self.name).set_item(Some(item));
        let put = match read_version {
            None => put.condition_expression("attribute_not_exists(mid)"),
            Some(version) => put
                .condition_expression("#version = :read_version")
                .expression_attribute_names("#version", VERSION)
                .expression_attribute_values(":read_version", n(version)),
        };
        let put = put.build().map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

/// How a transaction of a record that must not exist yet, optionally followed by a conditional
/// entity put, ended.
pub enum Commit {
    Committed,
    /// The record exists: this delivery (or nonce) was seen before. Nothing was written.
    RecordExists,
    /// The entity changed since it was read: the race was lost. Nothing was written.
    ItemChanged,
}

impl EntityTable {
    /// Sends `writes` (the record first, then the entity put if any) as one transaction.
    pub async fn commit(&self, writes: Vec<TransactWriteItem>) -> Result<Commit, StoreError> {
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(writes))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Commit::Committed),
            Err(error) => match attr::cancellation_reasons(&error).as_deref() {
                Some([true, ..]) => Ok(Commit::RecordExists),
                Some([false, true]) => Ok(Commit::ItemChanged),
                _ => Err(attr::unavailable(error)),
            },
        }
    }
}

/// Runs `attempt` (read, merge, commit) until it returns an outcome rather than `None` (a lost
/// race), retrying at most [`MAX_CONFLICT_RETRIES`] times, all within [`super::DEADLINE`].
pub async fn retry_on_conflict<T, F, Fut>(mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, StoreError>>,
{
    within_deadline(async move {
        for retry in 0..=MAX_CONFLICT_RETRIES {
            if retry > 0 {
                conflict_backoff(retry).await;
            }
            if let Some(outcome) = attempt().await? {
                return Ok(outcome);
            }
        }
        Err(StoreError::TooManyConflicts(MAX_CONFLICT_RETRIES))
    })
    .await
}

/// A short, jittered pause before retrying a lost race, so that racing writers spread out.
async fn conflict_backoff(attempt: u32) {
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()) % 10);
    tokio::time::sleep(Duration::from_millis(u64::from(attempt) * 5 + jitter)).await;
}

/// Bounds a whole store operation by [`super::DEADLINE`].
async fn within_deadline<T>(
    operation: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let deadline = super::DEADLINE;
    tokio::time::timeout(deadline, operation).await.unwrap_or_else(|_| {
        Err(StoreError::Timeout(
            u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
        ))
    })
}
