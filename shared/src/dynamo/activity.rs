//! Activities in DynamoDB: one item per activity (which also records the callbacks applied to
//! it), and two nonce records per accepted callback in the nonces table.
//!
//! The sign covers neither the body nor the tenant, so a replayed nonce may name any activity of
//! any tenant whose secrets verify it: only records keyed by the nonce itself catch it (contract
//! 2.2). Each accepted callback writes, in one transaction with its item:
//!
//! - the **tenant record**, key (`mid` = tenant, `nonce`): what the tenant received;
//! - the **scope claim**, key (`mid` = `<replay scope>/<nonce>`, `nonce` = [`CLAIM_SORT_KEY`]),
//!   with the tenant and the body's digest: the one record per nonce and secret (the scope names
//!   the secret that verified the sign, never the secret itself). A captured callback sent to
//!   another tenant's path verifies with the same secret and finds the claim. The nonce is in
//!   the partition key so that the claims of one secret shared by many tenants spread over
//!   partitions. Its sort key cannot be a nonce a sender signed without the secret, so no
//!   tenant record can take a claim's key.
//!
//! Both hold the body's digest and are written with the item (or, for an action the service
//! does not model, with its record in the `refused_deliveries` table), so that a nonce record
//! always means "this body was applied": the same nonce, tenant and digest again is a duplicate,
//! another digest or tenant a replay, and a 503 leaves nothing behind.
//!
//! Calls per callback: one consistent `BatchGetItem` of both records and the item, then one
//! `TransactWriteItems` of the three. A duplicate or a replay is answered from the read alone. A
//! transaction whose condition failed returns the current records or item in its cancellation
//! reasons (`ReturnValuesOnConditionCheckFailure = ALL_OLD` on every put), so a lost race costs
//! one more transaction, not a read and a transaction.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

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
use crate::store::{ActivityStore, NonceOutcome, RecordedNonce};
use crate::timefmt::utc_rfc3339;
use crate::unmodelled::UnmodelledAction;

/// The sort key (`nonce`) of every scope claim. It starts with `#`: no nonce a sender signs for a
/// tenant record can be made equal to it without the secret.
pub const CLAIM_SORT_KEY: &str = "#claim";

/// Where unmodelled actions are kept: the `refused_deliveries` table, and for how long.
#[derive(Debug, Clone)]
pub struct UnmodelledTable {
    pub table: String,
    pub retention_seconds: i64,
}

pub struct DynamoActivityStore {
    entities: EntityTable,
    nonces_table: String,
    nonce_retention_seconds: i64,
    /// `None`: unmodelled actions are only logged (no quarantine table configured).
    unmodelled: Option<UnmodelledTable>,
    clock: Arc<dyn Clock>,
}

/// What one read found, or a cancelled transaction returned: what the nonce was recorded with
/// (its claim, else its tenant record), and the activity's item.
#[derive(Debug)]
struct Found {
    nonce: Option<RecordedNonce>,
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
            unmodelled: None,
            clock,
        }
    }

    /// Keeps the bodies of unmodelled actions in `unmodelled`, in the transaction of their
    /// nonce records.
    pub fn keeping_unmodelled(mut self, unmodelled: Option<UnmodelledTable>) -> Self {
        self.unmodelled = unmodelled;
        self
    }

    fn client(&self) -> &Client {
        &self.entities.client
    }

    fn nonce_key(event: &ActivityEvent) -> SdkItem {
        key(("mid", &event.mid), ("nonce", &event.nonce))
    }

    fn claim_key(event: &ActivityEvent) -> SdkItem {
        let partition = format!("{}/{}", event.replay_scope.as_str(), event.nonce);
        key(("mid", &partition), ("nonce", CLAIM_SORT_KEY))
    }

    /// The tenant record and the scope claim, each with the digest, the tenant and the scope
    /// (so that a tenant record names its claim).
    fn nonce_records(&self, event: &ActivityEvent, now: i64) -> [SdkItem; 2] {
        [Self::nonce_key(event), Self::claim_key(event)].map(|mut record| {
            record.insert("body_digest".to_owned(), s(event.digest.as_str()));
            record.insert("tenant".to_owned(), s(event.mid.as_str()));
            record.insert("replay_scope".to_owned(), s(event.replay_scope.as_str()));
            record.insert(EXPIRES_AT.to_owned(), n(now + self.nonce_retention_seconds));
            record
        })
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
        let nonce_keys = KeysAndAttributes::builder()
            .keys(Self::nonce_key(event))
            .keys(Self::claim_key(event))
            .consistent_read(true)
            .build()
            .map_err(|error| StoreError::Corrupt(error.to_string()))?;
        let mut keys = HashMap::from([(self.nonces_table.clone(), nonce_keys)]);
        if let Some(entity_id) = entity_id {
            keys.insert(
                self.entities.name.clone(),
                consistent(key(("mid", &event.mid), ("entity_id", entity_id)))?,
            );
        }
        let mut request = Some(keys);
        let mut found = Found {
            nonce: None,
            activity: None,
        };
        let mut tenant_record = None;
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
                for record in responses.get(&self.nonces_table).into_iter().flatten() {
                    let recorded = recorded_nonce(record);
                    if record.get("nonce").and_then(|k| k.as_s().ok()).map(String::as_str) == Some(CLAIM_SORT_KEY) {
                        found.nonce = recorded;
                    } else {
                        tenant_record = recorded;
                    }
                }
                if let Some(item) = responses.get(&self.entities.name).and_then(|items| items.first()) {
                    found.activity = Some(read_entity(item)?);
                }
            }
            request = output.unprocessed_keys().cloned();
        }
        // The claim answers for every tenant; a tenant record without one (written before
        // claims existed) for its own tenant.
        found.nonce = found.nonce.or(tenant_record);
        Ok(found)
    }

    /// Writes both nonce records and what the callback brings (the merged item, conditional on
    /// what was read, or an unmodelled action's record) together.
    async fn commit(
        &self,
        event: &ActivityEvent,
        found: &Found,
        apply: Option<&Apply<'_, ActivityEvent>>,
        now: i64,
    ) -> Result<Committed, StoreError> {
        let build = |error: aws_sdk_dynamodb::error::BuildError| StoreError::Corrupt(error.to_string());
        let mut puts = Vec::with_capacity(3);
        for record in self.nonce_records(event, now) {
            puts.push(
                Put::builder()
                    .table_name(&self.nonces_table)
                    .set_item(Some(record))
                    .condition_expression("attribute_not_exists(nonce)")
                    .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                    .build()
                    .map_err(build)?,
            );
        }
        match apply {
            Some(apply) => {
                let write = entity_write(found.activity.as_ref(), apply, ActivityState::to_item)?;
                let condition = write.condition();
                puts.push(
                    Put::builder()
                        .table_name(&self.entities.name)
                        .set_item(Some(write.item))
                        .condition_expression(condition.expression)
                        .set_expression_attribute_names(condition.names)
                        .set_expression_attribute_values(condition.values)
                        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                        .build()
                        .map_err(build)?,
                );
            }
            None => {
                if let Some(unmodelled) = &self.unmodelled {
                    let record = UnmodelledAction::of(event, now, unmodelled.retention_seconds);
                    puts.push(
                        Put::builder()
                            .table_name(&unmodelled.table)
                            .set_item(Some(super::quarantine::unmodelled_to_item(&record)))
                            .build()
                            .map_err(build)?,
                    );
                }
            }
        }
        metrics::counter!("store_calls", "source" => "activity", "call" => "TransactWriteItems").increment(1);
        // The SDK fills in the request token: its own retries of one attempt are idempotent.
        let items = puts
            .into_iter()
            .map(|put| TransactWriteItem::builder().put(put).build())
            .collect();
        let result = self
            .client()
            .transact_write_items()
            .set_transact_items(Some(items))
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
        let apply = entity_id.map(|entity_id| Apply {
            mid: &event.mid,
            entity_id,
            event,
            stamp: event.stamp(),
            updated_at: &updated_at,
        });
        loop {
            if let Some(recorded) = &found.nonce {
                return Ok(recorded.outcome_for(&event.mid, &event.digest));
            }
            let returned = match race.timed(self.commit(event, &found, apply.as_ref(), now)).await? {
                Committed::Yes => return Ok(NonceOutcome::Accepted),
                Committed::Conflict(current) => Some(*current),
                Committed::Unknown => None,
            };
            self.entities
                .lost_race(&mut race, &event.mid, entity_id.unwrap_or(event.nonce.as_str()))
                .await?;
            found = match returned {
                Some(current) => current,
                None => self.read(event, entity_id).await?,
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

/// What a nonce record holds: its digest and tenant (`None` when it has no digest).
fn recorded_nonce(record: &SdkItem) -> Option<RecordedNonce> {
    let text = |name: &str| record.get(name).and_then(|v| v.as_s().ok()).cloned();
    Some(RecordedNonce {
        digest: text("body_digest")?,
        tenant: text("tenant"),
    })
}

/// What a cancelled transaction says of its puts, in the order they were sent (the tenant
/// record, the scope claim, then the item or the unmodelled record): `None` when no condition
/// failed, so there is nothing to go on. A failed condition returns the item as it is (ALL_OLD);
/// no item means it does not exist.
fn cancelled_by(reasons: &[CancellationReason]) -> Result<Option<Found>, StoreError> {
    /// `Some` when the put's condition failed, with the item it returned.
    fn failed(reason: Option<&CancellationReason>) -> Option<Option<&SdkItem>> {
        reason
            .filter(|reason| reason.code() == Some("ConditionalCheckFailed"))
            .map(CancellationReason::item)
    }
    let (tenant_record, claim, activity) = (failed(reasons.first()), failed(reasons.get(1)), failed(reasons.get(2)));
    // Recorded meanwhile: a duplicate or a replay, whatever became of the item. The claim
    // answers for every tenant, the tenant record for its own.
    if let Some(record) = claim.or(tenant_record) {
        return Ok(record.and_then(recorded_nonce).map(|nonce| Found {
            nonce: Some(nonce),
            activity: None,
        }));
    }
    let Some(activity) = activity else {
        return Ok(None);
    };
    Ok(Some(Found {
        nonce: None,
        activity: activity.map(read_entity).transpose()?,
    }))
}

impl DynamoActivityStore {
    /// The store the activity function's configuration names, on the machine's clock: unmodelled
    /// actions are kept in the quarantine's table, as long as its records; only logged (with a
    /// warning at start-up) when no such table is configured.
    pub fn from_config(client: Client, config: &crate::config::ActivityConfig) -> Self {
        let quarantine = &config.function.quarantine;
        let unmodelled = quarantine.table_name.clone().map(|table| UnmodelledTable {
            table,
            retention_seconds: i64::from(quarantine.retention_days) * 24 * 3600,
        });
        if unmodelled.is_none() {
            tracing::warn!("no REFUSED_DELIVERIES_TABLE_NAME configured: unmodelled actions are only logged");
        }
        let clock = Arc::new(crate::clock::SystemClock);
        let (table, nonces_table) = (config.table_name.clone(), config.nonces_table_name.clone());
        Self::new(client, table, nonces_table, config.nonce_retention_seconds(), clock).keeping_unmodelled(unmodelled)
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
    fn a_nonce_recorded_meanwhile_answers_from_its_records_whatever_the_item() {
        let record =
            |tenant: &str| HashMap::from([("body_digest".to_owned(), s("d1")), ("tenant".to_owned(), s(tenant))]);
        let claimed_by = |tenant: &str| RecordedNonce {
            tenant: Some(tenant.to_owned()),
            digest: "d1".to_owned(),
        };
        for item_reason in [reason(NOT_FAILED, None), reason(FAILED, Some(stored_activity()))] {
            // Claimed for another tenant: the claim answers, not this tenant's (absent) record.
            let found = cancelled_by(&[
                reason(NOT_FAILED, None),
                reason(FAILED, Some(record("941"))),
                item_reason.clone(),
            ])
            .unwrap()
            .unwrap();
            assert_eq!(found.nonce, Some(claimed_by("941")));
            assert!(found.activity.is_none());
            let found = cancelled_by(&[
                reason(FAILED, Some(record("124"))),
                reason(FAILED, Some(record("941"))),
                item_reason.clone(),
            ])
            .unwrap()
            .unwrap();
            assert_eq!(found.nonce, Some(claimed_by("941")), "the claim first");
            let found = cancelled_by(&[
                reason(FAILED, Some(record("124"))),
                reason(NOT_FAILED, None),
                item_reason,
            ])
            .unwrap()
            .unwrap();
            assert_eq!(found.nonce, Some(claimed_by("124")));
        }
    }

    #[test]
    fn an_item_changed_meanwhile_comes_back_to_be_merged_into() {
        let stored = stored_activity();
        let found = cancelled_by(&[
            reason(NOT_FAILED, None),
            reason(NOT_FAILED, None),
            reason(FAILED, Some(stored)),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(found.nonce, None);
        assert_eq!(found.activity.unwrap().version, 1);
        // Deleted meanwhile: nothing comes back, and the next write creates it.
        let found = cancelled_by(&[reason(NOT_FAILED, None), reason(NOT_FAILED, None), reason(FAILED, None)])
            .unwrap()
            .unwrap();
        assert!(found.nonce.is_none() && found.activity.is_none());
    }

    #[test]
    fn a_transaction_cancelled_for_another_reason_says_nothing_to_go_on() {
        for reasons in [
            vec![
                reason("TransactionConflict", None),
                reason(NOT_FAILED, None),
                reason(NOT_FAILED, None),
            ],
            vec![
                reason(NOT_FAILED, None),
                reason("TransactionConflict", None),
                reason(NOT_FAILED, None),
            ],
            vec![
                reason(NOT_FAILED, None),
                reason(NOT_FAILED, None),
                reason("TransactionConflict", None),
            ],
            vec![],
            // A recorded nonce without its digest cannot tell a duplicate from a replay.
            vec![
                reason(FAILED, Some(SdkItem::new())),
                reason(NOT_FAILED, None),
                reason(NOT_FAILED, None),
            ],
            vec![
                reason(NOT_FAILED, None),
                reason(FAILED, Some(SdkItem::new())),
                reason(NOT_FAILED, None),
            ],
        ] {
            assert!(cancelled_by(&reasons).unwrap().is_none(), "{reasons:?}");
        }
    }

    #[test]
    fn a_damaged_item_in_a_cancellation_is_corrupt_not_a_retry() {
        let mut damaged = stored_activity();
        damaged.remove(super::super::attr::MERGE);
        assert!(matches!(
            cancelled_by(&[
                reason(NOT_FAILED, None),
                reason(NOT_FAILED, None),
                reason(FAILED, Some(damaged))
            ]),
            Err(StoreError::Corrupt(_))
        ));
    }
}
