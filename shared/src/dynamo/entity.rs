//! What both adapters share: one entity item per object, which carries its own compact record
//! of applied events (storage format 2, docs/items.md), written with one conditional `PutItem`
//! (activities: one transaction) without reading it first.
//!
//! - **The write comes first.** A delivery merges its event into the entity as this instance
//!   last saw it ([`Recent`]), and writes the result conditional on that entity's `version`; an
//!   entity this instance has not seen is written as new, conditional on no item existing. A new
//!   entity, and an entity this instance wrote last, cost one call.
//! - **A failed condition is the read.** The failed put returns the item as it is
//!   (`ReturnValuesOnConditionCheckFailure = ALL_OLD`): the event is merged into it (or found in
//!   its record: a duplicate) and written again, conditional on its `version`. The first such
//!   failure only corrects a guess; the following ones are lost races, paused for
//!   ([`backoff_window`]) and bounded ([`MAX_CONFLICT_RETRIES`], the 4 s deadline).
//! - **The condition is on `version`**, which every write increments: the bookkeeping alone would
//!   not do, because an event older than everything the record keeps leaves `merge` as it was,
//!   and a writer that saw the item before such a write would then pass its condition and erase
//!   that event's count.
//! - **A remembered entity never answers alone.** When it already holds the event, one
//!   consistent `GetItem` confirms the duplicate (the item may have been deleted since).
//!
//! A write sent when the table stops answering may still commit after the delivery was answered
//! `503`: the event is then wholly applied, and its redelivery is a duplicate (contract 2.3).
//!
//! An item still in storage format 1 is migrated when a failed condition or a read returns it
//! ([`crate::format1`]): its next write stores it as format 2, conditional on the format-1
//! `merge_state` and `version` it had.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;

use super::attr::{self, key, number, SdkItem, FORMAT, MERGE, VERSION};
use super::recent::Recent;
use crate::bookkeeping::{self, AppliedEvents, Registers, FORMAT_VERSION};
use crate::bounded::bounded;
use crate::error::StoreError;
use crate::format1::{self, Format1, MERGE_STATE};
use crate::item::Item;
use crate::merge::{Delivery, Mergeable, Stamp};
use crate::timefmt::whole_millis;

/// How many times a write that lost a race against another writer is retried before giving up
/// with 503.
pub const MAX_CONFLICT_RETRIES: u32 = 32;

/// One delivery's contest for its entity, what the pause after a lost race is computed from.
pub struct Race {
    started: Instant,
    /// The request's deadline.
    ends: Instant,
    lost: u32,
    /// How long the last write took. Under contention that is mostly the time it waited behind
    /// the other writers' calls, so it measures the crowd without counting it.
    last_call: Duration,
    /// Whether the next write is based on a guess (the entity as this instance remembered it, or
    /// no entity at all) rather than on what the table just returned: its failed condition
    /// corrects the guess and is not a lost race.
    guessing: bool,
}

impl Race {
    /// A contest with `budget` left of the request's deadline: its age counts from the start
    /// of the request, so that the time the secrets took counts too.
    pub fn start(budget: Duration) -> Self {
        let used = super::DEADLINE.saturating_sub(budget);
        let now = Instant::now();
        Self {
            started: now.checked_sub(used).unwrap_or(now),
            ends: now + budget,
            lost: 0,
            last_call: Duration::ZERO,
            guessing: true,
        }
    }

    /// Runs one write, remembering how long it took; refuses (503) to send it when it would
    /// likely still be in flight at the deadline ([`Self::may_send`]).
    pub async fn timed<T>(
        &mut self,
        write: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if !self.may_send() {
            return Err(StoreError::NoTimeToWrite {
                left_ms: whole_millis(self.time_left()),
                last_write_ms: whole_millis(self.last_call),
            });
        }
        let sent = Instant::now();
        let answer = write.await;
        self.last_call = sent.elapsed();
        answer
    }

    /// Whether a write may still be sent: twice the last write's time, and at least
    /// [`MIN_TIME_TO_WRITE`], is left before the deadline. A write the deadline cuts off in flight
    /// may still commit after the delivery was answered 503: harmless for an event the item's
    /// record keeps (its redelivery is a duplicate), but an event older than the record's bound
    /// would be counted again. Not sending it keeps such a 503 a plain "not applied".
    ///
    /// Why twice: with only the last write's time left, a write as slow as the last one would be
    /// cut off in flight about half the time.
    pub fn may_send(&self) -> bool {
        self.time_left() >= (self.last_call * 2).max(MIN_TIME_TO_WRITE)
    }

    /// What is left of the request's deadline.
    fn time_left(&self) -> Duration {
        self.ends.saturating_duration_since(Instant::now())
    }
}

/// The least time left before the deadline in which a write is still sent ([`Race::may_send`]).
pub const MIN_TIME_TO_WRITE: Duration = Duration::from_millis(100);

/// A stored entity: the state and its bookkeeping, as read.
#[derive(Debug, Clone)]
pub struct Tracked<S> {
    pub version: u64,
    pub applied: AppliedEvents,
    pub state: S,
    /// The bookkeeping exactly as stored: the next write is conditional on it.
    read: AsRead,
}

/// What the next write of an entity is conditional on: the item must still hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AsRead {
    /// Storage format 2: the `version` and the `merge` bookkeeping seen. Every write increments
    /// `version`, so no other write can have come in between when it is unchanged; `merge` makes
    /// sure it is the same item: one deleted and written anew (an operator's clean-up) can reach
    /// the remembered version again with other events, and would then hold other bookkeeping.
    Version { version: u64, merge: Vec<u8> },
    /// Storage format 1, migrated on read: the `merge_state` JSON and the `version`. The next
    /// write replaces the whole item with a format-2 one, which has no `merge_state`.
    MergeState(String, u64),
}

/// A condition of a write, with its placeholders, as `PutItem` and a transaction's `Put` take it.
pub struct Condition {
    pub expression: &'static str,
    pub names: Option<HashMap<String, String>>,
    pub values: Option<HashMap<String, AttributeValue>>,
}

/// One table of entity items, and the entities of it this instance saw last.
pub struct EntityTable<S> {
    pub client: Client,
    pub name: String,
    /// `crm` or `activity`, the `source` label of the metrics.
    pub source: &'static str,
    recent: Recent<Tracked<S>>,
}

/// What a delivery needs to be merged into its entity.
pub struct Apply<'a, E> {
    pub mid: &'a str,
    pub entity_id: &'a str,
    pub event: &'a E,
    pub stamp: Stamp,
    /// RFC 3339 time of the write (`updated_at`).
    pub updated_at: &'a str,
}

/// The write that merges one event into an entity: the whole new item (always format 2), the
/// condition that the entity is still as it was seen, and the entity as it is once written.
pub struct EntityWrite<S> {
    pub item: SdkItem,
    /// `None`: the item must not exist; `Some`: its bookkeeping must still be as seen.
    expected: Option<AsRead>,
    /// The entity once this write succeeds, and the size of its item.
    written: Tracked<S>,
    bytes: usize,
}

impl<S> EntityWrite<S> {
    /// The condition expression, with its names and values: the item does not exist, or its
    /// `version` and `merge` are the ones seen (format 2), or its `merge_state` and `version`
    /// are (format 1).
    pub fn condition(&self) -> Condition {
        let version = |v: u64| {
            (
                ("#version".to_owned(), VERSION.to_owned()),
                (":version".to_owned(), number(v)),
            )
        };
        match &self.expected {
            None => Condition {
                expression: "attribute_not_exists(mid)",
                names: None,
                values: None,
            },
            Some(AsRead::Version { version: seen, merge }) => {
                let (name, value) = version(*seen);
                Condition {
                    expression: "#version = :version AND #merge = :merge",
                    names: Some(HashMap::from([name, ("#merge".to_owned(), MERGE.to_owned())])),
                    values: Some(HashMap::from([
                        value,
                        (":merge".to_owned(), AttributeValue::B(Blob::new(merge.clone()))),
                    ])),
                }
            }
            Some(AsRead::MergeState(json, seen)) => {
                let (name, value) = version(*seen);
                Condition {
                    expression: "#bookkeeping = :read AND #version = :version",
                    names: Some(HashMap::from([
                        ("#bookkeeping".to_owned(), MERGE_STATE.to_owned()),
                        name,
                    ])),
                    values: Some(HashMap::from([
                        (":read".to_owned(), AttributeValue::S(json.clone())),
                        value,
                    ])),
                }
            }
        }
    }
}

/// What became of a conditional `PutItem` of an entity.
enum PutOutcome<S> {
    Stored,
    /// The condition failed; the item as it is now (`None`: it does not exist), remembered.
    ConditionFailed(Option<Arc<Tracked<S>>>),
}

impl<S: Format1 + Mergeable + Clone> EntityTable<S> {
    pub fn new(client: Client, name: String, source: &'static str) -> Self {
        Self {
            client,
            name,
            source,
            recent: Recent::default(),
        }
    }

    /// The entity as this instance last wrote or read it, if it remembers it: what the first
    /// write of a delivery is conditional on.
    pub fn recent(&self, mid: &str, entity_id: &str) -> Option<Arc<Tracked<S>>> {
        self.recent.get(mid, entity_id)
    }

    /// Remembers what a successful write stored.
    pub fn remember_written(&self, mid: &str, entity_id: &str, write: EntityWrite<S>) {
        self.recent.remember(mid, entity_id, write.written, write.bytes);
    }

    /// Remembers `entity`, whose item of `bytes` the table returned.
    pub fn remember_returned(&self, mid: &str, entity_id: &str, entity: Tracked<S>, bytes: usize) -> Arc<Tracked<S>> {
        self.recent.remember(mid, entity_id, entity, bytes)
    }

    /// Merges the event into its entity once: `Duplicate` when the entity's record of applied
    /// events holds it already. One conditional put per attempt, starting from the entity as this
    /// instance remembers it. `budget` is what is left of the request's deadline.
    pub async fn apply(
        &self,
        apply: &Apply<'_, S::Event>,
        to_item: impl Fn(&S, &str) -> Item,
        budget: Duration,
    ) -> Result<Delivery, StoreError> {
        let mut race = Race::start(budget);
        let mut current = self.recent(apply.mid, apply.entity_id);
        loop {
            if current.as_ref().is_some_and(|t| t.applied.contains(&apply.stamp)) {
                if !race.guessing {
                    return Ok(Delivery::Duplicate);
                }
                // Remembered as applied: the table confirms it (the item may be gone since).
                race.guessing = false;
                current = self.read(apply.mid, apply.entity_id).await?;
                continue;
            }
            let mut write = entity_write(current.as_deref(), apply, &to_item)?;
            let condition = write.condition();
            let item = std::mem::take(&mut write.item);
            match race
                .timed(self.put((apply.mid, apply.entity_id), item, condition))
                .await?
            {
                PutOutcome::Stored => {
                    self.remember_written(apply.mid, apply.entity_id, write);
                    return Ok(Delivery::Accepted);
                }
                PutOutcome::ConditionFailed(now) => {
                    self.failed_condition(&mut race, apply.mid, apply.entity_id).await?;
                    current = now;
                }
            }
        }
    }

    /// After a write whose condition failed on entity `entity_id` of tenant `mid`: nothing when
    /// the write was based on a guess, else a lost race ([`Self::lost_race`]).
    pub async fn failed_condition(&self, race: &mut Race, mid: &str, entity_id: &str) -> Result<(), StoreError> {
        if std::mem::replace(&mut race.guessing, false) {
            return Ok(());
        }
        self.lost_race(race, mid, entity_id).await
    }

    /// Counts a lost race on entity `entity_id` of tenant `mid` and pauses before the next
    /// attempt, or gives up past the bound.
    pub async fn lost_race(&self, race: &mut Race, mid: &str, entity_id: &str) -> Result<(), StoreError> {
        race.guessing = false;
        metrics::counter!("store_conflicts", "source" => self.source).increment(1);
        race.lost += 1;
        if race.lost > MAX_CONFLICT_RETRIES {
            return Err(StoreError::TooManyConflicts(MAX_CONFLICT_RETRIES));
        }
        let age = race.started.elapsed();
        let pause = jittered(backoff_window(race.lost, race.last_call, age));
        if race.lost >= CROWD_AFTER_LOSSES {
            // A hot entity: many writers at once. Rare outside one, and what to look at when
            // deliveries of one entity answer 503.
            tracing::info!(
                source = self.source,
                mid = %bounded(mid),
                entity_id = %bounded(entity_id),
                lost = race.lost,
                last_write_ms = whole_millis(race.last_call),
                age_ms = whole_millis(age),
                pause_ms = whole_millis(pause),
                "a crowd of writers on one entity: pausing before the next write"
            );
        }
        tokio::time::sleep(pause).await;
        metrics::counter!("store_retries", "source" => self.source).increment(1);
        Ok(())
    }

    /// The stored entity, read consistently, or `None`; remembered when found.
    async fn read(&self, mid: &str, entity_id: &str) -> Result<Option<Arc<Tracked<S>>>, StoreError> {
        metrics::counter!("store_calls", "source" => self.source, "call" => "GetItem").increment(1);
        let output = self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(key(("mid", mid), ("entity_id", entity_id))))
            .consistent_read(true)
            .send()
            .await
            .map_err(attr::unavailable)?;
        let Some(item) = output.item() else {
            return Ok(None);
        };
        Ok(Some(self.remember_item(mid, entity_id, item)?))
    }

    /// Decodes a stored item of the entity and remembers it.
    fn remember_item(&self, mid: &str, entity_id: &str, item: &SdkItem) -> Result<Arc<Tracked<S>>, StoreError> {
        Ok(self.remember_returned(mid, entity_id, decode(item)?, attr::item_size(item)))
    }

    /// Writes `item` of entity `entity_id` of tenant `mid`, on `condition`.
    async fn put(
        &self,
        (mid, entity_id): (&str, &str),
        item: SdkItem,
        condition: Condition,
    ) -> Result<PutOutcome<S>, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item))
            .condition_expression(condition.expression)
            .set_expression_attribute_names(condition.names)
            .set_expression_attribute_values(condition.values)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        metrics::counter!("store_calls", "source" => self.source, "call" => "PutItem").increment(1);
        match put.send().await {
            Ok(_) => Ok(PutOutcome::Stored),
            Err(error) => match error.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) => Ok(PutOutcome::ConditionFailed(
                    failed
                        .item()
                        .map(|item| self.remember_item(mid, entity_id, item))
                        .transpose()?,
                )),
                _ => Err(attr::unavailable(error)),
            },
        }
    }
}

/// The write that merges the event into `current` (`None`: a new entity), size-checked. The
/// item written is format 2 whatever the format read: PutItem replaces the whole item, so a
/// format-1 `merge_state` is not carried over.
pub fn entity_write<S: Registers + Mergeable + Clone>(
    current: Option<&Tracked<S>>,
    apply: &Apply<'_, S::Event>,
    to_item: impl Fn(&S, &str) -> Item,
) -> Result<EntityWrite<S>, StoreError> {
    let next = merged(current, apply)?;
    let mut item: SdkItem = attr::item_to_sdk(to_item(&next.state, apply.updated_at));
    item.insert(VERSION.to_owned(), number(next.version));
    item.insert(FORMAT.to_owned(), number(FORMAT_VERSION));
    item.insert(MERGE.to_owned(), AttributeValue::B(Blob::new(next.merge.clone())));
    let bytes = check_size(&item)?;
    Ok(EntityWrite {
        item,
        expected: current.map(|read| read.read.clone()),
        written: Tracked {
            version: next.version,
            applied: next.applied,
            state: next.state,
            read: AsRead::Version {
                version: next.version,
                merge: next.merge,
            },
        },
        bytes,
    })
}

/// An entity after an event, to be written: its version, state and format-2 bookkeeping.
struct Merged<S> {
    version: u64,
    applied: AppliedEvents,
    state: S,
    merge: Vec<u8>,
}

/// The entity after the event: merged state, the event recorded, the version counted.
fn merged<S: Registers + Mergeable + Clone>(
    current: Option<&Tracked<S>>,
    apply: &Apply<'_, S::Event>,
) -> Result<Merged<S>, StoreError> {
    let (version, mut applied, state) = match current {
        Some(t) => (t.version, t.applied.clone(), Some(t.state.clone())),
        None => (0, AppliedEvents::default(), None),
    };
    let state = S::merge(state, apply.event);
    applied.record(apply.stamp, &state);
    let merge = bookkeeping::encode(&applied, &state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Merged {
        version: version + 1,
        applied,
        state,
        merge,
    })
}

/// The size of the item, refused when DynamoDB would refuse it (ValidationException) on every
/// retry.
pub fn check_size(item: &SdkItem) -> Result<usize, StoreError> {
    let size = attr::item_size(item);
    if size > attr::MAX_ITEM_BYTES {
        return Err(StoreError::ItemTooLarge {
            size,
            limit: attr::MAX_ITEM_BYTES,
        });
    }
    Ok(size)
}

/// An entity item as stored: its version, record of applied events and state. A format-1 item
/// (no `format`, a JSON `merge_state`) is migrated on read ([`crate::format1`]): its next write
/// stores it as format 2, conditional on its `merge_state`.
pub fn read_entity<S: Format1>(item: &SdkItem) -> Result<Tracked<S>, StoreError> {
    decode(item)
}

fn decode<S: Format1>(item: &SdkItem) -> Result<Tracked<S>, StoreError> {
    let corrupt = |what: String| StoreError::Corrupt(what);
    let number = |name: &str| -> Option<u64> { item.get(name)?.as_n().ok()?.parse().ok() };
    let version = || number(VERSION).ok_or_else(|| corrupt(format!("`{VERSION}` is missing or not a number")));
    if !item.contains_key(FORMAT) && !item.contains_key(MERGE) {
        if let Some(merge_state) = item.get(MERGE_STATE) {
            let merge_state = merge_state
                .as_s()
                .map_err(|_| corrupt(format!("format 1 `{MERGE_STATE}` is not a string")))?;
            let visible = attr::visible_item(item)?;
            let (applied, state) = format1::read(merge_state, &visible).map_err(|e| corrupt(e.to_string()))?;
            let version = version()?;
            return Ok(Tracked {
                version,
                applied,
                state,
                read: AsRead::MergeState(merge_state.clone(), version),
            });
        }
    }
    match number(FORMAT) {
        Some(format) if format == u64::from(FORMAT_VERSION) => {}
        other => {
            return Err(corrupt(format!(
                "storage format {other:?} is not {FORMAT_VERSION} (see docs/items.md)"
            )))
        }
    }
    let version = version()?;
    let merge = item
        .get(MERGE)
        .and_then(|v| v.as_b().ok())
        .ok_or_else(|| corrupt(format!("`{MERGE}` is missing")))?
        .as_ref()
        .to_vec();
    let visible = attr::visible_item(item)?;
    let (applied, state) = bookkeeping::decode(&merge, &visible).map_err(|e| corrupt(e.to_string()))?;
    Ok(Tracked {
        version,
        applied,
        state,
        read: AsRead::Version { version, merge },
    })
}

/// Lost races that are paused for on the exponential rule; from this many on, on the crowd rule.
const CROWD_AFTER_LOSSES: u32 = 5;

/// From this age on, a delivery that meets a crowd retries at once: it is near its deadline
/// ([`super::DEADLINE`]), and the younger contenders make room for it. Yielding later leaves old
/// deliveries too little time on a slow table (7 ms a call); yielding earlier wastes more puts
/// (`scripts/contention_model.py` compares the choices, docs/performance.md the hot key).
const YIELDS_UNTIL: Duration = Duration::from_millis(2_250);

/// The longest pause after a lost race.
const MAX_PAUSE: Duration = Duration::from_secs(3);

/// A pause ends early enough to leave this many more writes, at the pace of the last one, and at
/// least [`RESERVED_TIME`], before the deadline: a pause that leaves no time to win only turns a
/// late acceptance into a 503.
///
/// Without it, a delivery that lost five races to three or four other writers on a table slowed
/// by everything else (100–250 ms a call, as in `make test`'s convergence suite) can draw a
/// window of up to 3 s at about 1 s of age, then lose more races to fresh deliveries, which do
/// not yield, and answer within a few tens of ms of the 4 s deadline. The time floor leaves
/// every paused delivery six or more writes at that pace.
const RESERVED_WRITES: u32 = 3;

/// See [`RESERVED_WRITES`]. A floor of 1 s leaves the hot-key bench's share of 503s where it is
/// without one, while a longer floor raises it: the crowd still pauses long enough for the
/// oldest to win.
const RESERVED_TIME: Duration = Duration::from_secs(1);

/// The window a retry after `lost` lost races is paused within (uniformly, [`jittered`]).
///
/// - The first four lost races are paused for exponentially from 10 ms (20, 40, 80, 160 ms):
///   a few writers on one entity sort themselves out quickly, whatever else loads the table.
/// - From the fifth, the entity has a crowd, and the window follows it: it scales with how long
///   the failed write took (calls on a contended item queue behind each other, so that time
///   grows with the number of writers), doubles with each lost race (64× to 300× that time, at
///   most 3 s), and shrinks linearly with the delivery's age to nothing at [`YIELDS_UNTIL`],
///   so that the oldest contender retries first and wins before its deadline. With the
///   exponential rule alone, fresh deliveries keep winning and old ones run out of time (about
///   half of the hot-key bench's deliveries answer 503).
/// - Why not the crowd rule from the first loss: when the table is slow for other reasons
///   (many other items written at once), a write's time says nothing about this entity, and
///   windows of seconds after one lost race ran deliveries past their deadline (the soak's
///   convergence suite; `scripts/contention_model.py` compares the rules).
/// - Whatever the rule, the window ends [`RESERVED_WRITES`] writes, and at least
///   [`RESERVED_TIME`], before the deadline.
pub fn backoff_window(lost: u32, last_call: Duration, age: Duration) -> Duration {
    let window = if lost < CROWD_AFTER_LOSSES {
        Duration::from_millis(10 << lost)
    } else {
        let growth = (1u32 << lost.saturating_add(1).min(9)).min(300);
        let youth = 1.0 - (age.as_secs_f64() / YIELDS_UNTIL.as_secs_f64()).min(1.0);
        (last_call * growth).mul_f64(youth).min(MAX_PAUSE)
    };
    let reserve = last_call.saturating_mul(RESERVED_WRITES).max(RESERVED_TIME);
    window.min(super::DEADLINE.saturating_sub(age.saturating_add(reserve)))
}

/// A pause drawn uniformly from `[0, window)`: writers that lost the same race spread out
/// instead of colliding again in lockstep.
fn jittered(window: Duration) -> Duration {
    let micros = u64::try_from(window.as_micros()).unwrap_or(u64::MAX);
    Duration::from_micros(if micros == 0 { 0 } else { fastrand::u64(..micros) })
}

/// Bounds a whole store operation by `budget`, what is left of the request's deadline
/// ([`super::DEADLINE`]).
pub async fn within_deadline<T>(
    budget: Duration,
    operation: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(budget, operation)
        .await
        .unwrap_or_else(|_| Err(StoreError::Timeout(whole_millis(budget))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crm::{CrmEvent, CrmState};
    use crate::envelope::Envelope;
    use crate::timefmt::SourceOffset;

    const MS: Duration = Duration::from_millis(1);

    /// The lead as format 1 stored it after its whole history (fixtures/format1/, written by
    /// the format-1 code), and its events.
    fn format1_lead() -> (SdkItem, Vec<String>) {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/format1/crm_lead.json");
        let mut history: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let item: Item = serde_json::from_value(history["snapshots"][2]["item"].take()).unwrap();
        let events = serde_json::from_value(history["events"].take()).unwrap();
        (attr::item_to_sdk(item), events)
    }

    fn crm_event(body: &str) -> CrmEvent {
        CrmEvent::from_envelope(Envelope::parse(body.as_bytes()).unwrap(), SourceOffset::BEIJING).unwrap()
    }

    #[test]
    fn a_format_1_item_is_written_as_format_2_on_condition_of_its_merge_state() {
        let (stored, events) = format1_lead();
        let read = read_entity::<CrmState>(&stored).unwrap();
        assert_eq!(read.version, 15);
        let newest = crm_event(events.last().unwrap());
        assert!(read.applied.contains(&newest.stamp()));
        let mut body: serde_json::Value = serde_json::from_str(events.last().unwrap()).unwrap();
        body["create_time"] = 1_700_000_000.into();
        let event = crm_event(&body.to_string());
        let apply = Apply {
            mid: &event.mid,
            entity_id: &event.entity_id,
            event: &event,
            stamp: event.stamp(),
            updated_at: "2026-12-03T10:00:00Z",
        };
        let write = entity_write(Some(&read), &apply, CrmState::to_item).unwrap();

        let condition = write.condition();
        assert_eq!(condition.expression, "#bookkeeping = :read AND #version = :version");
        assert_eq!(
            condition.names,
            Some(HashMap::from([
                ("#bookkeeping".to_owned(), MERGE_STATE.to_owned()),
                ("#version".to_owned(), VERSION.to_owned()),
            ]))
        );
        assert_eq!(
            condition.values,
            Some(HashMap::from([
                (":read".to_owned(), stored[MERGE_STATE].clone()),
                (":version".to_owned(), number(15)),
            ])),
            "the merge_state and version exactly as read"
        );
        assert!(!write.item.contains_key(MERGE_STATE), "the put drops merge_state");
        assert_eq!(write.item[FORMAT], number(FORMAT_VERSION));

        let written = read_entity::<CrmState>(&write.item).unwrap();
        assert_eq!(written.version, 16);
        assert_eq!(written.state.event_count, 16);
        assert_eq!(written.state.last.stamp, event.stamp());
        assert!(written.applied.contains(&event.stamp()) && written.applied.contains(&newest.stamp()));
        let merge = write.item[MERGE].as_b().unwrap().as_ref().to_vec();
        assert_eq!(
            written.read,
            AsRead::Version { version: 16, merge },
            "the write after that is conditional on the format-2 version and bookkeeping"
        );
        let next = entity_write(Some(&written), &apply, CrmState::to_item)
            .unwrap()
            .condition();
        assert_eq!(next.expression, "#version = :version AND #merge = :merge");
        let values = next.values.unwrap();
        assert_eq!(values[":version"], number(16));
        assert_eq!(values[":merge"], write.item[MERGE]);
    }

    #[test]
    fn the_entity_a_write_remembers_is_the_one_its_item_reads_back_as() {
        let (events, _) = long_lead(3);
        let mut remembered: Option<Tracked<CrmState>> = None;
        for event in &events {
            let write = entity_write(remembered.as_ref(), &apply_of(event), CrmState::to_item).unwrap();
            let read = read_entity::<CrmState>(&write.item).unwrap();
            assert_eq!(write.written.version, read.version);
            assert_eq!(write.written.applied, read.applied);
            assert_eq!(write.written.read, read.read, "the next write's condition");
            assert_eq!(
                CrmState::to_item(&write.written.state, "t"),
                CrmState::to_item(&read.state, "t")
            );
            assert_eq!(write.bytes, attr::item_size(&write.item));
            remembered = Some(write.written);
        }
        let first = entity_write(None, &apply_of(&events[0]), CrmState::to_item).unwrap();
        assert_eq!(
            first.condition().expression,
            "attribute_not_exists(mid)",
            "an entity not seen is written as new"
        );
    }

    /// A lead with `count` events, the `i`th at `1_700_000_000 + i`, each setting `name` only
    /// (so each newer one writes over the older one in every register), written one by one.
    fn long_lead(count: i64) -> (Vec<CrmEvent>, SdkItem) {
        let (_, events) = format1_lead();
        let mut body: serde_json::Value = serde_json::from_str(&events[0]).unwrap();
        let mut item: Option<SdkItem> = None;
        let mut made = Vec::new();
        for i in 0..count {
            body["create_time"] = (1_700_000_000 + i).into();
            body["event_type"] = "object_update".into();
            body["extra_data"]["mapping_data"] = serde_json::json!({ "name": ["a", format!("name {i}")] });
            body["extra_data"]["mapping_data_text"] = serde_json::json!({ "name": format!("name {i}") });
            let event = crm_event(&body.to_string());
            let read = item.as_ref().map(|item| read_entity::<CrmState>(item).unwrap());
            item = Some(
                entity_write(read.as_ref(), &apply_of(&event), CrmState::to_item)
                    .unwrap()
                    .item,
            );
            made.push(event);
        }
        (made, item.unwrap())
    }

    fn apply_of(event: &CrmEvent) -> Apply<'_, CrmEvent> {
        Apply {
            mid: &event.mid,
            entity_id: &event.entity_id,
            event,
            stamp: event.stamp(),
            updated_at: "2026-12-03T10:00:00Z",
        }
    }

    #[test]
    fn a_late_event_past_the_bound_leaves_merge_as_it_was_but_not_the_condition() {
        let bound = bookkeeping::MAX_APPLIED_EVENTS as i64;
        let (events, stored) = long_lead(bound + 20);
        let read = read_entity::<CrmState>(&stored).unwrap();
        // The oldest event still gives `created_at`; the second oldest is written over everywhere.
        let late = &events[1];
        assert!(!read.applied.contains(&late.stamp()), "forgotten: past the bound");
        let late = entity_write(Some(&read), &apply_of(late), CrmState::to_item).unwrap();
        assert_eq!(late.item[MERGE], stored[MERGE], "the bookkeeping is unchanged");
        assert_eq!(late.item["event_count"], number(bound as u64 + 21));
        // A writer that read the item before the late event's write is refused by it.
        let after_late = read_entity::<CrmState>(&late.item).unwrap();
        let before = entity_write(Some(&read), &apply_of(&events[2]), CrmState::to_item).unwrap();
        assert_eq!(
            before.condition().values.unwrap()[":version"],
            number(bound as u64 + 20)
        );
        assert_eq!(
            after_late.version,
            bound as u64 + 21,
            "the version it is conditional on changed"
        );
    }

    #[test]
    fn a_format_2_item_without_a_version_is_corrupt() {
        let (_, mut stored) = long_lead(3);
        stored.remove(VERSION);
        assert!(matches!(read_entity::<CrmState>(&stored), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn an_item_of_neither_format_is_corrupt() {
        let (stored, _) = format1_lead();
        let mut neither = stored.clone();
        neither.remove(MERGE_STATE);
        let mut both = stored.clone();
        both.insert(FORMAT.to_owned(), number(FORMAT_VERSION));
        let mut damaged = stored;
        damaged.insert(MERGE_STATE.to_owned(), AttributeValue::S("{}".to_owned()));
        for item in [neither, both, damaged] {
            assert!(matches!(read_entity::<CrmState>(&item), Err(StoreError::Corrupt(_))));
        }
    }

    #[test]
    fn the_first_four_lost_races_pause_exponentially_from_ten_milliseconds_whatever_the_latency() {
        for latency in [MS, 500 * MS] {
            let windows: Vec<Duration> = (1..=4)
                .map(|lost| backoff_window(lost, latency, Duration::from_millis(100)))
                .collect();
            assert_eq!(windows, [20 * MS, 40 * MS, 80 * MS, 160 * MS]);
        }
    }

    #[test]
    fn from_the_fifth_the_window_scales_with_the_latency_and_doubles() {
        assert_eq!(backoff_window(5, MS, Duration::ZERO), 64 * MS);
        assert_eq!(backoff_window(5, 2 * MS, Duration::ZERO), 128 * MS);
        assert_eq!(backoff_window(6, 2 * MS, Duration::ZERO), 256 * MS);
    }

    #[test]
    fn growth_stops_at_300_times_the_latency_and_the_pause_at_three_seconds() {
        assert_eq!(backoff_window(8, MS, Duration::ZERO), 300 * MS);
        assert_eq!(backoff_window(MAX_CONFLICT_RETRIES, MS, Duration::ZERO), 300 * MS);
        assert_eq!(backoff_window(8, 50 * MS, Duration::ZERO), MAX_PAUSE);
    }

    #[test]
    fn in_a_crowd_an_older_delivery_gets_a_smaller_window_and_none_from_yields_until_on() {
        let young = backoff_window(6, 10 * MS, Duration::ZERO);
        let half = backoff_window(6, 10 * MS, YIELDS_UNTIL / 2);
        assert_eq!(half, young / 2);
        assert_eq!(backoff_window(6, 10 * MS, YIELDS_UNTIL), Duration::ZERO);
        assert_eq!(backoff_window(6, 10 * MS, Duration::from_secs(10)), Duration::ZERO);
    }

    #[test]
    fn a_window_ends_three_writes_at_the_last_ones_pace_and_a_second_before_the_deadline() {
        let deadline = crate::dynamo::DEADLINE;
        assert_eq!(backoff_window(5, 250 * MS, Duration::ZERO), MAX_PAUSE);
        // Slow writes: three of them are the larger reserve.
        let age = Duration::from_millis(1_300);
        assert_eq!(backoff_window(5, 500 * MS, age), deadline - age - 3 * 500 * MS);
        assert_eq!(
            backoff_window(5, 500 * MS, age),
            1_200 * MS,
            "not the 3 s of the crowd rule"
        );
        // Fast writes: the second is.
        let age = Duration::from_millis(1_550);
        assert_eq!(backoff_window(6, 100 * MS, age), deadline - age - RESERVED_TIME);
        assert_eq!(backoff_window(6, 100 * MS, age), 1_450 * MS);
        // No time left for the reserve: retry at once.
        assert_eq!(
            backoff_window(2, 500 * MS, Duration::from_millis(2_600)),
            Duration::ZERO
        );
        assert_eq!(backoff_window(2, 10 * MS, Duration::from_millis(3_000)), Duration::ZERO);
        assert_eq!(backoff_window(6, 500 * MS, Duration::from_secs(5)), Duration::ZERO);
        // Far from the deadline, the reserve changes nothing.
        assert_eq!(backoff_window(2, 10 * MS, Duration::ZERO), 40 * MS);
        assert_eq!(backoff_window(8, 50 * MS, Duration::ZERO), MAX_PAUSE);
    }

    #[tokio::test]
    async fn a_write_is_sent_only_with_time_left_to_finish_it() {
        assert!(Race::start(crate::dynamo::DEADLINE).may_send());
        assert!(!Race::start(MIN_TIME_TO_WRITE / 2).may_send());
        let mut race = Race::start(Duration::from_millis(900));
        race.last_call = 400 * MS;
        assert!(race.may_send(), "two writes of 400 ms fit in 900 ms");
        race.last_call = 500 * MS;
        assert!(!race.may_send(), "two of 500 ms do not");
        let refused = race.timed(async { Ok(()) }).await;
        assert!(
            matches!(refused, Err(StoreError::NoTimeToWrite { last_write_ms: 500, left_ms }) if left_ms <= 900),
            "{refused:?}"
        );
    }

    #[test]
    fn a_pause_lies_within_its_window() {
        assert_eq!(jittered(Duration::ZERO), Duration::ZERO);
        let pauses: Vec<Duration> = (0..1_000).map(|_| jittered(10 * MS)).collect();
        assert!(pauses.iter().all(|pause| *pause < 10 * MS));
        // Spread over the window, not stuck at one end.
        assert!(pauses.iter().any(|pause| *pause < 2 * MS));
        assert!(pauses.iter().any(|pause| *pause > 8 * MS));
    }
}
