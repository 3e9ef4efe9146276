//! Activities in DynamoDB: one item per activity (which also records the callbacks applied to
//! it), and one nonce record per accepted callback.
//!
//! The nonce record is written first, with a plain conditional `PutItem`: the sign does not cover
//! the body, so a replayed nonce may name any activity, and only a record keyed by the nonce
//! itself catches it (SPEC 2.2). The record holds the body's digest. If the item write then
//! fails (503), the sender's retry finds the record with the same digest and goes on to the
//! item, whose record of applied events tells whether the callback was merged: a retry is never
//! mistaken for a duplicate, and another body with that nonce is still a replay.

use std::sync::Arc;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use aws_sdk_dynamodb::Client;

use super::attr::{self, n, s, EXPIRES_AT};
use super::entity::{check_size, within_deadline, Apply, EntityTable};
use crate::activity::{ActivityAction, ActivityEvent, ActivityState};
use crate::clock::Clock;
use crate::error::StoreError;
use crate::merge::{Delivery, Mergeable};
use crate::store::{ActivityStore, NonceOutcome};
use crate::timefmt::utc_rfc3339;

pub struct DynamoActivityStore {
    entities: EntityTable<ActivityState>,
    nonces_table: String,
    nonce_retention_seconds: i64,
    clock: Arc<dyn Clock>,
}

/// What the nonce table says about a callback's nonce.
enum Nonce {
    /// First use: recorded now.
    New,
    /// Recorded before with this body's digest.
    SameBody,
    /// Recorded before with another body.
    OtherBody,
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
            entities: EntityTable::new(client, table, "activity"),
            nonces_table,
            nonce_retention_seconds: i64::try_from(nonce_retention_seconds).unwrap_or(i64::MAX / 2),
            clock,
        }
    }

    async fn record_nonce(&self, event: &ActivityEvent, now: i64) -> Result<Nonce, StoreError> {
        metrics::counter!("store_calls", "source" => "activity", "call" => "PutItem").increment(1);
        let result = self
            .entities
            .client
            .put_item()
            .table_name(&self.nonces_table)
            .item("mid", s(&event.mid))
            .item("nonce", s(&event.nonce))
            .item("body_digest", s(event.digest.as_str()))
            .item(EXPIRES_AT, n(now + self.nonce_retention_seconds))
            .condition_expression("attribute_not_exists(nonce)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Nonce::New),
            Err(error) => match error.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                    let recorded = failed
                        .item()
                        .and_then(|item| item.get("body_digest"))
                        .and_then(|digest| digest.as_s().ok());
                    Ok(if recorded.map(String::as_str) == Some(event.digest.as_str()) {
                        Nonce::SameBody
                    } else {
                        Nonce::OtherBody
                    })
                }
                _ => Err(attr::unavailable(error)),
            },
        }
    }

    async fn apply_within_deadline(&self, event: &ActivityEvent) -> Result<NonceOutcome, StoreError> {
        let now = self.clock.now_unix();
        if event.activity_id().is_some() {
            // The item this callback alone would make: if DynamoDB cannot store it, refuse the
            // callback (413) before the nonce record is written, so that nothing is left behind.
            let alone = ActivityState::merge(None, event);
            check_size(&attr::item_to_sdk(alone.to_item(&utc_rfc3339(now))))?;
        }
        let nonce = self.record_nonce(event, now).await?;
        if matches!(nonce, Nonce::OtherBody) {
            return Ok(NonceOutcome::Replayed);
        }
        let Some(entity_id) = event.activity_id() else {
            // Nothing to merge: the nonce record is all there is.
            return Ok(match nonce {
                Nonce::New => NonceOutcome::Accepted,
                _ => NonceOutcome::Duplicate,
            });
        };
        let updated_at = utc_rfc3339(now);
        let apply = Apply {
            mid: &event.mid,
            entity_id,
            event,
            stamp: event.stamp(),
            probably_new: event.action == ActivityAction::Add,
            updated_at: &updated_at,
        };
        Ok(match self.entities.apply(&apply, ActivityState::to_item).await? {
            Delivery::Accepted => NonceOutcome::Accepted,
            Delivery::Duplicate => NonceOutcome::Duplicate,
        })
    }
}

impl ActivityStore for DynamoActivityStore {
    async fn apply(&self, event: &ActivityEvent) -> Result<NonceOutcome, StoreError> {
        within_deadline(self.apply_within_deadline(event)).await
    }
}
