//! CRM objects in DynamoDB: one item per object, one delivery record per distinct event.

use std::sync::Arc;

use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;

use super::attr::{self, n, s, EXPIRES_AT};
use super::entity::{retry_on_conflict, Commit, EntityTable};
use crate::clock::Clock;
use crate::crm::{CrmEvent, CrmState};
use crate::error::StoreError;
use crate::merge::{Delivery, Mergeable};
use crate::store::CrmStore;
use crate::timefmt::utc_rfc3339;

/// How long a delivery record is kept: retries of the same event within this time are
/// recognised as duplicates. Later ones would only count again in `event_count`.
pub const DELIVERY_RETENTION_SECONDS: i64 = 14 * 24 * 3600;

pub struct DynamoCrmStore {
    entities: EntityTable,
    deliveries_table: String,
    clock: Arc<dyn Clock>,
}

impl DynamoCrmStore {
    pub fn new(client: Client, table: String, deliveries_table: String, clock: Arc<dyn Clock>) -> Self {
        Self {
            entities: EntityTable { client, name: table },
            deliveries_table,
            clock,
        }
    }

    /// One read-merge-commit round; `None` when another writer changed the object meanwhile.
    async fn attempt(&self, event: &CrmEvent) -> Result<Option<Delivery>, StoreError> {
        let stored = self
            .entities
            .load::<CrmState>(&event.mid, &event.entity_id, |state, raw| state.last_raw = raw.into())
            .await?;
        let (read_version, state) = stored.map_or((None, None), |s| (Some(s.version), Some(s.state)));
        let merged = CrmState::merge(state, event);
        let now = self.clock.now_unix();
        let write = self.entities.conditional_put(
            merged.to_item(&utc_rfc3339(now)),
            attr::encode_state(&merged)?,
            read_version,
        )?;
        Ok(
            match self
                .entities
                .commit(vec![self.delivery_record(event, now)?, write])
                .await?
            {
                Commit::Committed => Some(Delivery::Accepted),
                Commit::RecordExists => Some(Delivery::Duplicate),
                Commit::ItemChanged => None,
            },
        )
    }

    /// The record that makes a second delivery of the same event a no-op.
    fn delivery_record(&self, event: &CrmEvent, now: i64) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.deliveries_table)
            .item("mid", s(&event.mid))
            .item("event_digest", s(event.digest.as_str()))
            .item("entity_id", s(&event.entity_id))
            .item("create_time", n(event.create_time))
            .item(EXPIRES_AT, n(now + DELIVERY_RETENTION_SECONDS))
            .condition_expression("attribute_not_exists(event_digest)")
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

impl CrmStore for DynamoCrmStore {
    async fn apply(&self, event: &CrmEvent) -> Result<Delivery, StoreError> {
        retry_on_conflict(|| self.attempt(event)).await
    }
}
