//! What both adapters share: one entity item per object, written with a single conditional
//! `PutItem` that doubles as the read when it fails (`ReturnValuesOnConditionCheckFailure =
//! ALL_OLD`), and a small per-instance cache of the last item written.
//!
//! Calls per delivery (docs/items.md):
//! - the cache knows the entity (this instance wrote it last): one `PutItem`;
//! - an event that usually creates its entity (CRM `object_create`, activity `event/add`), not in
//!   the cache: one `PutItem` conditional on the item not existing;
//! - otherwise: a consistent `GetItem`, then the `PutItem`.
//!
//! Every put is conditional on the bookkeeping read (or on the item's absence), so another
//! writer getting there first is always caught; the failed put returns the current item, which
//! is merged into at once. A stale cache or a wrong guess costs one more call, never an update.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;

use super::attr::{self, key, n, SdkItem, FORMAT, MERGE, VERSION};
use crate::bookkeeping::{self, Applied, Registers, FORMAT_VERSION};
use crate::error::StoreError;
use crate::item::Item;
use crate::merge::{Delivery, Mergeable, Stamp};

/// How many times a write that lost a race against another writer is retried before giving up
/// with 503 (a stale cache entry or a wrong guess that the entity is new is not a race).
pub const MAX_CONFLICT_RETRIES: u32 = 32;

/// Entities whose last written item an instance remembers.
pub const CACHE_ENTRIES: usize = 256;

/// A stored entity: the state and its bookkeeping, as read or as last written.
#[derive(Debug, Clone)]
pub struct Tracked<S> {
    pub version: u64,
    pub applied: Applied,
    pub state: S,
    /// The bookkeeping exactly as stored: the next write is conditional on it.
    merge: Vec<u8>,
}

/// One table of entity items, with the cache of this instance.
pub struct EntityTable<S> {
    pub client: Client,
    pub name: String,
    /// `crm` or `activity`, the `source` label of the metrics.
    source: &'static str,
    cache: Mutex<HashMap<(String, String), Tracked<S>>>,
}

/// What a delivery needs to be merged into its entity.
pub struct Apply<'a, E> {
    pub mid: &'a str,
    pub entity_id: &'a str,
    pub event: &'a E,
    pub stamp: Stamp,
    /// The event usually creates its entity: try the insert before reading anything.
    pub probably_new: bool,
    /// RFC 3339 time of the write (`updated_at`).
    pub updated_at: &'a str,
}

enum Written<S> {
    Yes,
    /// The condition failed; the item as it is now (`None`: it does not exist).
    Conflict(Option<Tracked<S>>),
}

impl<S> EntityTable<S>
where
    S: Registers + Mergeable + Clone + Send,
{
    pub fn new(client: Client, name: String, source: &'static str) -> Self {
        Self {
            client,
            name,
            source,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Merges the event into its entity once: `Duplicate` when the entity's record of applied
    /// events holds it already.
    pub async fn apply(
        &self,
        apply: &Apply<'_, S::Event>,
        to_item: impl Fn(&S, &str) -> Item,
    ) -> Result<Delivery, StoreError> {
        let cache_key = (apply.mid.to_owned(), apply.entity_id.to_owned());
        // `fresh`: `current` was just read from the table (not remembered or guessed).
        let (mut current, mut fresh) = match self.cached(&cache_key) {
            Some(tracked) => (Some(tracked), false),
            None if apply.probably_new => (None, false),
            None => (self.load(apply.mid, apply.entity_id).await?, true),
        };
        let mut races = 0;
        loop {
            if current.as_ref().is_some_and(|t| t.applied.contains(&apply.stamp)) {
                if fresh {
                    return Ok(Delivery::Duplicate);
                }
                // The cache says so; the table decides (the item may have been deleted since).
                current = self.load(apply.mid, apply.entity_id).await?;
                fresh = true;
                continue;
            }
            let next = merged(current.as_ref(), apply)?;
            match self
                .put(&next, current.as_ref(), to_item(&next.state, apply.updated_at))
                .await?
            {
                Written::Yes => {
                    self.remember(cache_key, next);
                    return Ok(Delivery::Accepted);
                }
                Written::Conflict(now) => {
                    metrics::counter!("store_conflicts", "source" => self.source).increment(1);
                    if fresh {
                        races += 1;
                        if races > MAX_CONFLICT_RETRIES {
                            self.forget(&cache_key);
                            return Err(StoreError::TooManyConflicts(MAX_CONFLICT_RETRIES));
                        }
                        conflict_backoff(races).await;
                    }
                    metrics::counter!("store_retries", "source" => self.source).increment(1);
                    current = now;
                    fresh = true;
                }
            }
        }
    }

    /// The stored entity, read consistently, or `None`.
    async fn load(&self, mid: &str, entity_id: &str) -> Result<Option<Tracked<S>>, StoreError> {
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

    /// Writes `next`, conditional on the item still being `read` (by its bookkeeping) or, with
    /// `read` `None`, on there being no item.
    async fn put(&self, next: &Tracked<S>, read: Option<&Tracked<S>>, item: Item) -> Result<Written<S>, StoreError> {
        let mut item: SdkItem = attr::item_to_sdk(item);
        item.insert(VERSION.to_owned(), n(next.version));
        item.insert(FORMAT.to_owned(), n(FORMAT_VERSION));
        item.insert(MERGE.to_owned(), AttributeValue::B(Blob::new(next.merge.clone())));
        check_size(&item)?;
        let put = self
            .client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let put = match read {
            None => put.condition_expression("attribute_not_exists(mid)"),
            Some(read) => put
                .condition_expression("#merge = :read")
                .expression_attribute_names("#merge", MERGE)
                .expression_attribute_values(":read", AttributeValue::B(Blob::new(read.merge.clone()))),
        };
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

    fn cached(&self, key: &(String, String)) -> Option<Tracked<S>> {
        self.cache.lock().ok()?.get(key).cloned()
    }

    fn remember(&self, key: (String, String), tracked: Tracked<S>) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_ENTRIES && !cache.contains_key(&key) {
                // No recency bookkeeping: any entry will do, the cache is only a hint.
                if let Some(evicted) = cache.keys().next().cloned() {
                    cache.remove(&evicted);
                }
            }
            cache.insert(key, tracked);
        }
    }

    fn forget(&self, key: &(String, String)) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(key);
        }
    }
}

/// The entity after the event: merged state, the event recorded, the version counted.
fn merged<S: Registers + Mergeable + Clone>(
    current: Option<&Tracked<S>>,
    apply: &Apply<'_, S::Event>,
) -> Result<Tracked<S>, StoreError> {
    let (version, mut applied, state) = match current {
        Some(t) => (t.version, t.applied.clone(), Some(t.state.clone())),
        None => (0, Applied::default(), None),
    };
    let state = S::merge(state, apply.event);
    applied.record(apply.stamp, &state);
    let merge = bookkeeping::encode(&applied, &state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Tracked {
        version: version + 1,
        applied,
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

/// An entity item as stored (format 2): its version, record of applied events and state.
pub fn read_entity<S: Registers>(item: &SdkItem) -> Result<Tracked<S>, StoreError> {
    decode(item)
}

fn decode<S: Registers>(item: &SdkItem) -> Result<Tracked<S>, StoreError> {
    let corrupt = |what: String| StoreError::Corrupt(what);
    let number = |name: &str| -> Option<u64> { item.get(name)?.as_n().ok()?.parse().ok() };
    match number(FORMAT) {
        Some(format) if format == u64::from(FORMAT_VERSION) => {}
        other => {
            return Err(corrupt(format!(
                "storage format {other:?} is not {FORMAT_VERSION} (see docs/items.md)"
            )))
        }
    }
    let version = number(VERSION).ok_or_else(|| corrupt(format!("`{VERSION}` is missing or not a number")))?;
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
        merge,
    })
}

/// A pause before retrying a lost race: exponential, capped, with full jitter, so that many
/// writers racing for one hot entity spread out instead of colliding again in lockstep.
async fn conflict_backoff(attempt: u32) {
    let ceiling_ms = (10u64 << attempt.min(7)).min(1_000);
    let pause = Duration::from_micros(jitter() % (ceiling_ms * 1000));
    tokio::time::sleep(pause).await;
}

/// A cheap pseudo-random number (no cryptographic use): the clock's nanoseconds mixed with a
/// per-process counter through splitmix64.
fn jitter() -> u64 {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut z = nanos
        .wrapping_add(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Bounds a whole store operation by [`super::DEADLINE`].
pub async fn within_deadline<T>(
    operation: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let deadline = super::DEADLINE;
    tokio::time::timeout(deadline, operation).await.unwrap_or_else(|_| {
        Err(StoreError::Timeout(
            u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
        ))
    })
}
