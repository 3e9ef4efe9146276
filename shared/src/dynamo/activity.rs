//! Activities in DynamoDB: one item per activity (which also records the callbacks applied to
//! it), and one nonce record per accepted callback.
//!
//! The sign does not cover the body, so a replayed nonce may name any activity: only a record
//! keyed by the nonce itself catches it (SPEC 2.2). The record holds the body's digest and is
//! written in the same transaction as the item, so that a nonce record always means "this body
//! was applied": the same nonce and digest again is a duplicate, another digest a replay, and a
//! 503 leaves neither behind.
//!
//! Calls per callback: one consistent `BatchGetItem` of the nonce record and the item, then one
//! `TransactWriteItems` of both (or one `PutItem` of the nonce record for a callback that names
//! no activity). A duplicate or a replay is answered from the read alone. A transaction whose
//! condition failed returns the current nonce record or item in its cancellation reasons
//! (`ReturnValuesOnConditionCheckFailure = ALL_OLD` on both puts), so a lost race costs one more
//! transaction, not a read and a transaction.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    CancellationReason, KeysAndAttributes, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;

use super::attr::{self, key, n, s, SdkItem, EXPIRES_AT};
use super::entity::{entity_write, read_entity, within_deadline, Apply, EntityTable, Race, Tracked};
use crate::activity::{ActivityEvent, ActivityState};
use crate::clock::Clock;
use crate::error::StoreError;
use crate::store::{ActivityStore, NonceOutcome};
use crate::timefmt::utc_rfc3339;

pub struct DynamoActivityStore {
    entities: EntityTable,
    nonces_table: String,
    nonce_retention_seconds: i64,
    clock: Arc<dyn Clock>,
}

/// What one read found, or a cancelled transaction returned: the digest the nonce was recorded
/// with, and the activity's item.
#[derive(Debug)]
struct Found {
    nonce_digest: Option<String>,
    activity: Option<Tracked<ActivityState>>,
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

    fn client(&self) -> &Client {
        &self.entities.client
    }

    fn nonce_key(event: &ActivityEvent) -> SdkItem {
        key(("mid", &event.mid), ("nonce", &event.nonce))
    }

    fn nonce_record(&self, event: &ActivityEvent, now: i64) -> SdkItem {
        let mut record = Self::nonce_key(event);
        record.insert("body_digest".to_owned(), s(event.digest.as_str()));
        record.insert(EXPIRES_AT.to_owned(), n(now + self.nonce_retention_seconds));
        record
    }

    /// The nonce record and the activity's item (if the callback names one), in one consistent
    /// read.
    async fn read(&self, event: &ActivityEvent, entity_id: Option<&str>) -> Result<Found, StoreError> {
        let consistent = |keys: SdkItem| {
            KeysAndAttributes::builder()
                .keys(keys)
                .consistent_read(true)
                .build()
                .map_err(|error| StoreError::Corrupt(error.to_string()))
        };
        let mut keys = HashMap::from([(self.nonces_table.clone(), consistent(Self::nonce_key(event))?)]);
        if let Some(entity_id) = entity_id {
            keys.insert(
                self.entities.name.clone(),
                consistent(key(("mid", &event.mid), ("entity_id", entity_id)))?,
            );
        }
        let mut request = Some(keys);
        let mut found = Found {
            nonce_digest: None,
            activity: None,
        };
        // DynamoDB may leave keys unprocessed when throttled: ask again for those after a pause
        // that doubles each round, as DynamoDB advises (the deadline bounds the loop).
        let mut round = 0u32;
        while let Some(keys) = request.take().filter(|keys: &HashMap<_, _>| !keys.is_empty()) {
            if round > 0 {
                tokio::time::sleep(Duration::from_millis(10 << round.min(6))).await;
            }
            round += 1;
            metrics::counter!("store_calls", "source" => "activity", "call" => "BatchGetItem").increment(1);
            let output = self
                .client()
                .batch_get_item()
                .set_request_items(Some(keys))
                .send()
                .await
                .map_err(attr::unavailable)?;
            if let Some(responses) = output.responses() {
                if let Some(record) = responses.get(&self.nonces_table).and_then(|items| items.first()) {
                    found.nonce_digest = record.get("body_digest").and_then(|d| d.as_s().ok()).cloned();
                }
                if let Some(item) = responses.get(&self.entities.name).and_then(|items| items.first()) {
                    found.activity = Some(read_entity(item)?);
                }
            }
            request = output.unprocessed_keys().cloned();
        }
        Ok(found)
    }

    /// A callback that names no activity: the nonce record is all there is to write. A record
    /// written meanwhile comes back with the failed condition.
    async fn record_nonce_only(&self, event: &ActivityEvent, now: i64) -> Result<NonceOutcome, StoreError> {
        metrics::counter!("store_calls", "source" => "activity", "call" => "PutItem").increment(1);
        let result = self
            .client()
            .put_item()
            .table_name(&self.nonces_table)
            .set_item(Some(self.nonce_record(event, now)))
            .condition_expression("attribute_not_exists(nonce)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(NonceOutcome::Accepted),
            Err(error) => match error.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                    let recorded = failed
                        .item()
                        .and_then(|item| item.get("body_digest"))
                        .and_then(|d| d.as_s().ok());
                    Ok(seen_before(&event.digest, recorded.map(String::as_str)))
                }
                _ => Err(attr::unavailable(error)),
            },
        }
    }

    /// Writes the nonce record and the merged item together, each conditional on what was
    /// read.
    async fn commit(
        &self,
        event: &ActivityEvent,
        found: &Found,
        apply: &Apply<'_, ActivityEvent>,
        now: i64,
    ) -> Result<Committed, StoreError> {
        let build = |error: aws_sdk_dynamodb::error::BuildError| StoreError::Corrupt(error.to_string());
        let write = entity_write(found.activity.as_ref(), apply, ActivityState::to_item)?;
        let condition = write.condition();
        let item_put = Put::builder()
            .table_name(&self.entities.name)
            .set_item(Some(write.item))
            .condition_expression(condition.expression)
            .set_expression_attribute_names(condition.names)
            .set_expression_attribute_values(condition.values)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let nonce_put = Put::builder()
            .table_name(&self.nonces_table)
            .set_item(Some(self.nonce_record(event, now)))
            .condition_expression("attribute_not_exists(nonce)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build)?;
        metrics::counter!("store_calls", "source" => "activity", "call" => "TransactWriteItems").increment(1);
        // The SDK fills in the request token: its own retries of one attempt are idempotent.
        let result = self
            .client()
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(nonce_put).build())
            .transact_items(
                TransactWriteItem::builder()
                    .put(item_put.build().map_err(build)?)
                    .build(),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(Committed::Yes),
            Err(error) => match error.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
                    let found = cancelled_by(cancelled.cancellation_reasons())?;
                    Ok(found.map_or(Committed::Unknown, |found| Committed::Conflict(Box::new(found))))
                }
                _ => Err(attr::unavailable(error)),
            },
        }
    }

    async fn apply_within_deadline(&self, event: &ActivityEvent, budget: Duration) -> Result<NonceOutcome, StoreError> {
        let now = self.clock.now_unix();
        let updated_at = utc_rfc3339(now);
        let entity_id = event.activity_id();
        let mut race = Race::start(budget);
        let mut found = self.read(event, entity_id).await?;
        loop {
            if let Some(recorded) = &found.nonce_digest {
                return Ok(seen_before(&event.digest, Some(recorded)));
            }
            let Some(entity_id) = entity_id else {
                return self.record_nonce_only(event, now).await;
            };
            let apply = Apply {
                mid: &event.mid,
                entity_id,
                event,
                stamp: event.stamp(),
                updated_at: &updated_at,
            };
            let returned = match race.timed(self.commit(event, &found, &apply, now)).await? {
                Committed::Yes => return Ok(NonceOutcome::Accepted),
                Committed::Conflict(current) => Some(*current),
                Committed::Unknown => None,
            };
            self.entities.lost_race(&mut race, &event.mid, entity_id).await?;
            found = match returned {
                Some(current) => current,
                None => self.read(event, Some(entity_id)).await?,
            };
        }
    }
}

/// What became of a transaction of the nonce record and the item.
enum Committed {
    Yes,
    /// A condition failed; the nonce record and the item as they are now.
    Conflict(Box<Found>),
    /// Cancelled for another reason (a concurrent transaction on either item, say): read again.
    Unknown,
}

/// What a cancelled transaction says of its two puts, in the order they were sent (the nonce
/// record, then the item): `None` when no condition failed, so there is nothing to go on.
/// A failed condition returns the item as it is (ALL_OLD); no item means it does not exist.
fn cancelled_by(reasons: &[CancellationReason]) -> Result<Option<Found>, StoreError> {
    /// `Some` when the put's condition failed, with the item it returned.
    fn failed(reason: Option<&CancellationReason>) -> Option<Option<&SdkItem>> {
        reason
            .filter(|reason| reason.code() == Some("ConditionalCheckFailed"))
            .map(CancellationReason::item)
    }
    let (nonce, activity) = (failed(reasons.first()), failed(reasons.get(1)));
    if let Some(record) = nonce {
        // Recorded meanwhile: a duplicate or a replay, whatever became of the item.
        let digest = record.and_then(|record| record.get("body_digest")?.as_s().ok().cloned());
        return Ok(digest.map(|digest| Found {
            nonce_digest: Some(digest),
            activity: None,
        }));
    }
    let Some(activity) = activity else {
        return Ok(None);
    };
    Ok(Some(Found {
        nonce_digest: None,
        activity: activity.map(read_entity).transpose()?,
    }))
}

/// A nonce recorded before: with this body's digest a duplicate, with another a replay.
fn seen_before(digest: &crate::digest::EventDigest, recorded: Option<&str>) -> NonceOutcome {
    if recorded == Some(digest.as_str()) {
        NonceOutcome::Duplicate
    } else {
        NonceOutcome::Replayed
    }
}

impl ActivityStore for DynamoActivityStore {
    async fn apply_within(&self, event: &ActivityEvent, budget: Duration) -> Result<NonceOutcome, StoreError> {
        within_deadline(budget, self.apply_within_deadline(event, budget)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Envelope;
    use crate::timefmt::SourceOffset;

    const NOT_FAILED: &str = "None";
    const FAILED: &str = "ConditionalCheckFailed";

    fn reason(code: &str, item: Option<SdkItem>) -> CancellationReason {
        CancellationReason::builder().code(code).set_item(item).build()
    }

    /// The activity's item as a writer stored it after the `event_add` fixture.
    fn stored_activity() -> SdkItem {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/activity/event_add.json");
        let body = std::fs::read(path).unwrap();
        let event = ActivityEvent::from_envelope(
            Envelope::parse(&body).unwrap(),
            "124",
            "nonce-1",
            1_701_744_489,
            SourceOffset::BEIJING,
        )
        .unwrap();
        let apply = Apply {
            mid: &event.mid,
            entity_id: event.activity_id().unwrap(),
            event: &event,
            stamp: event.stamp(),
            updated_at: "2026-12-03T10:00:00Z",
        };
        entity_write(None, &apply, ActivityState::to_item).unwrap().item
    }

    #[test]
    fn a_nonce_recorded_meanwhile_answers_from_its_digest_whatever_the_item() {
        let record = HashMap::from([("body_digest".to_owned(), s("d1"))]);
        for item_reason in [reason(NOT_FAILED, None), reason(FAILED, Some(stored_activity()))] {
            let found = cancelled_by(&[reason(FAILED, Some(record.clone())), item_reason])
                .unwrap()
                .unwrap();
            assert_eq!(found.nonce_digest.as_deref(), Some("d1"));
            assert!(found.activity.is_none());
        }
    }

    #[test]
    fn an_item_changed_meanwhile_comes_back_to_be_merged_into() {
        let stored = stored_activity();
        let found = cancelled_by(&[reason(NOT_FAILED, None), reason(FAILED, Some(stored))])
            .unwrap()
            .unwrap();
        assert_eq!(found.nonce_digest, None);
        assert_eq!(found.activity.unwrap().version, 1);
        // Deleted meanwhile: nothing comes back, and the next write creates it.
        let found = cancelled_by(&[reason(NOT_FAILED, None), reason(FAILED, None)])
            .unwrap()
            .unwrap();
        assert!(found.nonce_digest.is_none() && found.activity.is_none());
    }

    #[test]
    fn a_transaction_cancelled_for_another_reason_says_nothing_to_go_on() {
        for reasons in [
            vec![reason("TransactionConflict", None), reason(NOT_FAILED, None)],
            vec![reason(NOT_FAILED, None), reason("TransactionConflict", None)],
            vec![],
            // A recorded nonce without its digest cannot tell a duplicate from a replay.
            vec![reason(FAILED, Some(SdkItem::new())), reason(NOT_FAILED, None)],
        ] {
            assert!(cancelled_by(&reasons).unwrap().is_none(), "{reasons:?}");
        }
    }

    #[test]
    fn a_damaged_item_in_a_cancellation_is_corrupt_not_a_retry() {
        let mut damaged = stored_activity();
        damaged.remove(super::super::attr::MERGE);
        assert!(matches!(
            cancelled_by(&[reason(NOT_FAILED, None), reason(FAILED, Some(damaged))]),
            Err(StoreError::Corrupt(_))
        ));
    }
}
