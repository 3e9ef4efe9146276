//! The entities one function instance wrote or read lately, kept so that its next write of the
//! same entity needs no read: the write is conditional on the `version` remembered here, and a
//! writer that got there first makes the condition fail, which returns the item as it is.
//!
//! A remembered entity is a guess, never an answer: what the table says always wins. It holds only
//! what DynamoDB acknowledged or returned (a write that succeeded, an item a failed condition or a
//! read gave back), never a write whose outcome is unknown.
//!
//! Bounded in entries and in bytes (the item sizes DynamoDB counts, [`super::attr::item_size`]),
//! the least recently used entity going first: [`MAX_ENTRIES`], [`MAX_BYTES`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// At most this many entities per instance. A Lambda instance answers one request at a time, and
/// one entity's events come in bursts (a lead's create, its updates and assignment within
/// seconds, and the senders' retries), so the entities of the last minutes are what pays; at
/// about 1.5 to 5 KB an item (docs/items.md, "Bound") this many are a few MB.
pub const MAX_ENTRIES: usize = 1_024;

/// At most this many bytes of items (as DynamoDB counts them) per instance. A function has 128 MB
/// (template.yaml), and an item may reach DynamoDB's 400 KB: this keeps a handful of such items,
/// or every one of [`MAX_ENTRIES`] ordinary ones, within a few percent of the memory (the decoded
/// state takes about as much again as the item).
pub const MAX_BYTES: usize = 4 * 1024 * 1024;

type Key = (String, String);

/// Entities by (`mid`, `entity_id`), the least recently used forgotten first.
pub struct Recent<V> {
    max_entries: usize,
    max_bytes: usize,
    held: Mutex<Held<V>>,
}

struct Held<V> {
    entries: HashMap<Key, Entry<V>>,
    /// Use tick → key, oldest first.
    by_use: BTreeMap<u64, Key>,
    tick: u64,
    bytes: usize,
}

struct Entry<V> {
    value: Arc<V>,
    bytes: usize,
    used: u64,
}

impl<V> Default for Recent<V> {
    fn default() -> Self {
        Self::bounded(MAX_ENTRIES, MAX_BYTES)
    }
}

impl<V> Recent<V> {
    pub fn bounded(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            max_entries,
            max_bytes,
            held: Mutex::new(Held {
                entries: HashMap::new(),
                by_use: BTreeMap::new(),
                tick: 0,
                bytes: 0,
            }),
        }
    }

    /// The entity as last remembered, counted as a use.
    pub fn get(&self, mid: &str, entity_id: &str) -> Option<Arc<V>> {
        let mut guard = self.lock();
        let held = &mut *guard;
        let key = (mid.to_owned(), entity_id.to_owned());
        let tick = held.next_tick();
        let entry = held.entries.get_mut(&key)?;
        let previous = std::mem::replace(&mut entry.used, tick);
        let value = Arc::clone(&entry.value);
        held.by_use.remove(&previous);
        held.by_use.insert(tick, key);
        Some(value)
    }

    /// Remembers `value` (an item of `bytes`) for the entity, in place of what was remembered,
    /// then forgets the least recently used entities while over a bound. An item larger than the
    /// byte bound is not kept. Returns the value, shared.
    pub fn remember(&self, mid: &str, entity_id: &str, value: V, bytes: usize) -> Arc<V> {
        let value = Arc::new(value);
        let mut held = self.lock();
        let key = (mid.to_owned(), entity_id.to_owned());
        held.remove(&key);
        if bytes > self.max_bytes || self.max_entries == 0 {
            return value;
        }
        let used = held.next_tick();
        held.by_use.insert(used, key.clone());
        held.bytes += bytes;
        held.entries.insert(
            key,
            Entry {
                value: Arc::clone(&value),
                bytes,
                used,
            },
        );
        while held.entries.len() > self.max_entries || held.bytes > self.max_bytes {
            let Some((_, oldest)) = held.by_use.pop_first() else {
                break;
            };
            held.remove(&oldest);
        }
        value
    }

    /// How many entities and bytes are remembered.
    #[cfg(test)]
    pub fn size(&self) -> (usize, usize) {
        let held = self.lock();
        (held.entries.len(), held.bytes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held<V>> {
        // A panic while holding the lock leaves consistent maps (every step above keeps them so
        // before it can panic), so a poisoned lock is used as it is.
        self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<V> Held<V> {
    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    fn remove(&mut self, key: &Key) {
        if let Some(entry) = self.entries.remove(key) {
            self.by_use.remove(&entry.used);
            self.bytes -= entry.bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(recent: &Recent<&'static str>, entity_id: &str) -> Option<&'static str> {
        recent.get("124", entity_id).map(|value| *value)
    }

    #[test]
    fn the_last_value_remembered_is_the_one_returned() {
        let recent = Recent::bounded(4, 1_000);
        assert_eq!(value(&recent, "a"), None);
        recent.remember("124", "a", "first", 10);
        recent.remember("124", "a", "second", 20);
        assert_eq!(value(&recent, "a"), Some("second"));
        assert_eq!(recent.get("941", "a"), None, "tenants apart");
        assert_eq!(recent.size(), (1, 20), "the replaced value's bytes are given back");
    }

    #[test]
    fn past_the_entry_bound_the_least_recently_used_goes_first() {
        let recent = Recent::bounded(2, 1_000);
        recent.remember("124", "a", "a", 1);
        recent.remember("124", "b", "b", 1);
        assert_eq!(value(&recent, "a"), Some("a"), "a used after b");
        recent.remember("124", "c", "c", 1);
        assert_eq!(value(&recent, "b"), None);
        assert_eq!(value(&recent, "a"), Some("a"));
        assert_eq!(value(&recent, "c"), Some("c"));
        assert_eq!(recent.size(), (2, 2));
    }

    #[test]
    fn past_the_byte_bound_as_many_go_as_needed_and_an_oversized_item_is_not_kept() {
        let recent = Recent::bounded(100, 100);
        for id in ["a", "b", "c"] {
            recent.remember("124", id, id, 30);
        }
        recent.remember("124", "d", "d", 70);
        assert_eq!(
            ["a", "b", "c", "d"].map(|id| value(&recent, id)),
            [None, None, Some("c"), Some("d")]
        );
        assert_eq!(recent.size(), (2, 100));
        recent.remember("124", "c", "too big", 101);
        assert_eq!(value(&recent, "c"), None, "not kept, and the older value forgotten");
        assert_eq!(value(&recent, "d"), Some("d"));
        assert_eq!(recent.size(), (1, 70));
    }
}
