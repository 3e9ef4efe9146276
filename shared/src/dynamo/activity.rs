//! Activities in DynamoDB: one item per activity, one nonce record per accepted callback.

use std::sync::Arc;

use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;

use super::attr::{self, key, n, s, EXPIRES_AT};
use super::entity::{retry_on_conflict, Commit, EntityTable};
use crate::activity::{ActivityEvent, ActivityState};
use crate::clock::Clock;
use crate::error::StoreError;
use crate::merge::Mergeable;
use crate::store::{ActivityStore, NonceOutcome};
use crate::timefmt::utc_rfc3339;

pub struct DynamoActivityStore {
    entities: EntityTable,
    nonces_table: String,
    nonce_retention_seconds: i64,
    clock: Arc<dyn Clock>,
}

impl DynamoActivityStore {
    pub fn new(
        client: Client,
        table: String,
        nonces_table: String,
        nonce_retention_seconds: u64,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            entities: EntityTable { client, name: table },
            nonces_table,
            nonce_retention_seconds: i64::try_from(nonce_retention_seconds).unwrap_or(i64::MAX / 2),
            clock,
        }
    }

    /// One read-merge-commit round; `None` when another writer changed the activity meanwhile.
    async fn attempt(&self, event: &ActivityEvent) -> Result<Option<NonceOutcome>, StoreError> {
        let now = self.clock.now_unix();
        let mut writes = vec![self.nonce_record(event, now)?];
        if let Some(entity_id) = event.activity_id() {
            let stored = self
                .entities
                .load::<ActivityState>(&event.mid, entity_id, |state, raw| state.last_raw = raw.into())
                .await?;
            let (read_version, state) = stored.map_or((None, None), |s| (Some(s.version), Some(s.state)));
            let merged = ActivityState::merge(state, event);
            // Written even when the event is too old to change anything, so that `version`
            // counts the callbacks merged into the item whatever their order: two deliveries
            // of one history in different orders leave identical items.
            writes.push(self.entities.conditional_put(
                merged.to_item(&utc_rfc3339(now)),
                attr::encode_state(&merged)?,
                read_version,
            )?);
        }
        Ok(match self.entities.commit(writes).await? {
            Commit::Committed => Some(NonceOutcome::Accepted),
            Commit::RecordExists => Some(self.compare_with_recorded_nonce(event).await?),
            Commit::ItemChanged => None,
        })
    }

    fn nonce_record(&self, event: &ActivityEvent, now: i64) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.nonces_table)
            .item("mid", s(&event.mid))
            .item("nonce", s(&event.nonce))
            .item("body_digest", s(event.digest.as_str()))
            .item(EXPIRES_AT, n(now + self.nonce_retention_seconds))
            .condition_expression("attribute_not_exists(nonce)")
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// The nonce was used before: the same body is a duplicate, another body a replay.
    async fn compare_with_recorded_nonce(&self, event: &ActivityEvent) -> Result<NonceOutcome, StoreError> {
        let output = self
            .entities
            .client
            .get_item()
            .table_name(&self.nonces_table)
            .set_key(Some(key(("mid", &event.mid), ("nonce", &event.nonce))))
            .consistent_read(true)
            .send()
            .await
            .map_err(attr::unavailable)?;
        let recorded = output
            .item()
            .and_then(|item| item.get("body_digest"))
            .and_then(|digest| digest.as_s().ok());
        Ok(if recorded.map(String::as_str) == Some(event.digest.as_str()) {
            NonceOutcome::Duplicate
        } else {
            NonceOutcome::Replayed
        })
    }
}

impl ActivityStore for DynamoActivityStore {
    async fn apply(&self, event: &ActivityEvent) -> Result<NonceOutcome, StoreError> {
        retry_on_conflict(|| self.attempt(event)).await
    }
}
