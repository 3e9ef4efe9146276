//! What both adapters share: one entity item per object, which carries its own compact record
//! of applied events (storage format 2, docs/items.md), read once and then written with one
//! conditional `PutItem`. The condition is on the item's `version`, which every write
//! increments: the bookkeeping alone would not do, because an event older than everything the
//! record keeps leaves `merge` as it was, and a writer that read the item before such a write
//! would then pass its condition and erase that event's count. When the condition fails, the
//! failed put returns the current item (`ReturnValuesOnConditionCheckFailure = ALL_OLD`), which
//! is merged into at once: a lost race costs one more put, never a read and never an update. An
//! item still in storage format 1 is migrated when it is read ([`crate::format1`]): its next
//! write stores it as format 2, conditional on the format-1 `merge_state` and `version` read.
//!
//! Why every delivery reads before it writes, even for an entity it creates: a write sent to a
//! DynamoDB that has stopped answering is not cancelled by the client's timeout. It waits in
//! the server's queue and commits when the server comes back, after this function has answered
//! `503 storage_unavailable` ("nothing written, retry"). A consistent read first means that a
//! delivery which meets an outage at its first call writes nothing at all (the outage suite
//! checks exactly this); a write is only sent once the table has just answered.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;

use super::attr::{self, key, n, SdkItem, FORMAT, MERGE, VERSION};
use crate::bookkeeping::{self, Applied, Registers, FORMAT_VERSION};
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
    lost: u32,
    /// How long the last write took. Under contention that is mostly the time it waited behind
    /// the other writers' calls, so it measures the crowd without counting it.
    last_call: Duration,
}

impl Race {
    /// A contest with `budget` left of the request's deadline: its age counts from the start
    /// of the request, so that the time the secrets took counts too.
    pub fn start(budget: Duration) -> Self {
        let used = super::DEADLINE.saturating_sub(budget);
        let now = Instant::now();
        Self {
            started: now.checked_sub(used).unwrap_or(now),
            lost: 0,
            last_call: Duration::ZERO,
        }
    }

    /// Runs one write, remembering how long it took.
    pub async fn timed<T>(&mut self, write: impl std::future::Future<Output = T>) -> T {
        let sent = Instant::now();
        let answer = write.await;
        self.last_call = sent.elapsed();
        answer
    }
}

/// A stored entity: the state and its bookkeeping, as read.
#[derive(Debug, Clone)]
pub struct Tracked<S> {
    pub version: u64,
    pub applied: Applied,
    pub state: S,
    /// The bookkeeping exactly as stored: the next write is conditional on it.
    read: AsRead,
}

/// What the next write of an entity is conditional on: the item must still hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AsRead {
    /// Storage format 2: the `version` read. Every write increments it, so no other write can
    /// have come in between when it is unchanged.
    Version(u64),
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

/// One table of entity items.
pub struct EntityTable {
    pub client: Client,
    pub name: String,
    /// `crm` or `activity`, the `source` label of the metrics.
    pub source: &'static str,
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

/// The write that merges one event into an entity: the whole new item (always format 2), and
/// the condition that the entity is still as it was read.
pub struct EntityWrite {
    pub item: SdkItem,
    /// `None`: the item must not exist; `Some`: its bookkeeping must still be as read.
    expected: Option<AsRead>,
}

impl EntityWrite {
    /// The condition expression, with its names and values: the item does not exist, or its
    /// `version` is the one read (format 2), or its `merge_state` and `version` are (format 1).
    pub fn condition(&self) -> Condition {
        let version = |v: u64| {
            (
                ("#version".to_owned(), VERSION.to_owned()),
                (":version".to_owned(), n(v)),
            )
        };
        match &self.expected {
            None => Condition {
                expression: "attribute_not_exists(mid)",
                names: None,
                values: None,
            },
            Some(AsRead::Version(read)) => {
                let (name, value) = version(*read);
                Condition {
                    expression: "#version = :version",
                    names: Some(HashMap::from([name])),
                    values: Some(HashMap::from([value])),
                }
            }
            Some(AsRead::MergeState(json, read)) => {
                let (name, value) = version(*read);
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

enum Written<S> {
    Yes,
    /// The condition failed; the item as it is now (`None`: it does not exist).
    Conflict(Option<Tracked<S>>),
}

impl EntityTable {
    pub fn new(client: Client, name: String, source: &'static str) -> Self {
        Self { client, name, source }
    }

    /// Merges the event into its entity once: `Duplicate` when the entity's record of applied
    /// events holds it already. One consistent read, then one conditional put per attempt.
    /// `budget` is what is left of the request's deadline.
    pub async fn apply<S>(
        &self,
        apply: &Apply<'_, S::Event>,
        to_item: impl Fn(&S, &str) -> Item,
        budget: Duration,
    ) -> Result<Delivery, StoreError>
    where
        S: Format1 + Mergeable + Clone,
    {
        let mut race = Race::start(budget);
        let mut current = self.read(apply.mid, apply.entity_id).await?;
        loop {
            if current.as_ref().is_some_and(|t| t.applied.contains(&apply.stamp)) {
                return Ok(Delivery::Duplicate);
            }
            let write = entity_write(current.as_ref(), apply, &to_item)?;
            match race.timed(self.put(write)).await? {
                Written::Yes => return Ok(Delivery::Accepted),
                Written::Conflict(now) => {
                    self.lost_race(&mut race, apply.mid, apply.entity_id).await?;
                    current = now;
                }
            }
        }
    }

    /// Counts a lost race on entity `entity_id` of tenant `mid` and pauses before the next
    /// attempt, or gives up past the bound.
    pub async fn lost_race(&self, race: &mut Race, mid: &str, entity_id: &str) -> Result<(), StoreError> {
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

    /// The stored entity, read consistently, or `None`.
    pub async fn read<S: Format1>(&self, mid: &str, entity_id: &str) -> Result<Option<Tracked<S>>, StoreError> {
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
        output.item().map(decode).transpose()
    }

    /// Writes the entity, conditional on it being as read.
    async fn put<S: Format1>(&self, write: EntityWrite) -> Result<Written<S>, StoreError> {
        let condition = write.condition();
        let put = self
            .client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(write.item))
            .condition_expression(condition.expression)
            .set_expression_attribute_names(condition.names)
            .set_expression_attribute_values(condition.values)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        metrics::counter!("store_calls", "source" => self.source, "call" => "PutItem").increment(1);
        match put.send().await {
            Ok(_) => Ok(Written::Yes),
            Err(error) => match error.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                    Ok(Written::Conflict(failed.item().map(decode).transpose()?))
                }
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
) -> Result<EntityWrite, StoreError> {
    let next = merged(current, apply)?;
    let mut item: SdkItem = attr::item_to_sdk(to_item(&next.state, apply.updated_at));
    item.insert(VERSION.to_owned(), n(next.version));
    item.insert(FORMAT.to_owned(), n(FORMAT_VERSION));
    item.insert(MERGE.to_owned(), AttributeValue::B(Blob::new(next.merge)));
    check_size(&item)?;
    Ok(EntityWrite {
        item,
        expected: current.map(|read| read.read.clone()),
    })
}

/// An entity after an event, to be written: its version, state and format-2 bookkeeping.
struct Merged<S> {
    version: u64,
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
        None => (0, Applied::default(), None),
    };
    let state = S::merge(state, apply.event);
    applied.record(apply.stamp, &state);
    let merge = bookkeeping::encode(&applied, &state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Merged {
        version: version + 1,
        state,
        merge,
    })
}

/// Refuses an item DynamoDB would refuse (ValidationException) on every retry.
pub fn check_size(item: &SdkItem) -> Result<(), StoreError> {
    let size = attr::item_size(item);
    if size > attr::MAX_ITEM_BYTES {
        return Err(StoreError::ItemTooLarge {
            size,
            limit: attr::MAX_ITEM_BYTES,
        });
    }
    Ok(())
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
        read: AsRead::Version(version),
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
                (":version".to_owned(), n(15)),
            ])),
            "the merge_state and version exactly as read"
        );
        assert!(!write.item.contains_key(MERGE_STATE), "the put drops merge_state");
        assert_eq!(write.item[FORMAT], n(FORMAT_VERSION));

        let written = read_entity::<CrmState>(&write.item).unwrap();
        assert_eq!(written.version, 16);
        assert_eq!(written.state.event_count, 16);
        assert_eq!(written.state.last.stamp, event.stamp());
        assert!(written.applied.contains(&event.stamp()) && written.applied.contains(&newest.stamp()));
        assert_eq!(
            written.read,
            AsRead::Version(16),
            "the write after that is conditional on the format-2 version"
        );
        let next = entity_write(Some(&written), &apply, CrmState::to_item)
            .unwrap()
            .condition();
        assert_eq!(next.expression, "#version = :version");
        assert_eq!(next.values.unwrap()[":version"], n(16));
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
        assert_eq!(late.item["event_count"], n(bound as u64 + 21));
        // A writer that read the item before the late event's write is refused by it.
        let after_late = read_entity::<CrmState>(&late.item).unwrap();
        let before = entity_write(Some(&read), &apply_of(&events[2]), CrmState::to_item).unwrap();
        assert_eq!(before.condition().values.unwrap()[":version"], n(bound as u64 + 20));
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
        both.insert(FORMAT.to_owned(), n(FORMAT_VERSION));
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
