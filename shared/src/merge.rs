//! The building blocks of convergence (contract 4): a total order on events, last-writer-wins
//! registers, and a ledger that applies each distinct event once.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::json::EventDigest;

/// Where an event stands in the total order: its source time, then the first 8 bytes of its
/// digest (big-endian) as the deterministic tie-break. Ordering by that prefix is ordering by
/// the digest, except for two distinct events with the same time whose digests share 64 bits
/// (probability 2^-64 per pair; see docs/items.md). The stamp also identifies the event in an
/// item's record of applied events, so it is stored once per event, in 8 + 1..10 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    pub time: i64,
    pub tie: u64,
}

impl Stamp {
    pub fn of(time: i64, digest: &EventDigest) -> Self {
        Self {
            time,
            tie: digest.tie(),
        }
    }
}

/// A value with the stamp of the event that wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lww<T> {
    pub value: T,
    pub stamp: Stamp,
}

impl<T> Lww<T> {
    pub fn new(value: T, stamp: &Stamp) -> Self {
        Self { value, stamp: *stamp }
    }
}

/// Last writer wins: keeps `value` when `stamp` is newer than what `slot` holds.
pub fn offer_newest<T>(slot: &mut Option<Lww<T>>, value: T, stamp: &Stamp) {
    if slot.as_ref().is_none_or(|held| *stamp > held.stamp) {
        *slot = Some(Lww::new(value, stamp));
    }
}

/// Last writer wins for one key of a map of registers (a field, a collaborator).
pub fn offer_newest_at<T>(
    registers: &mut std::collections::BTreeMap<String, Lww<T>>,
    key: &str,
    value: T,
    stamp: &Stamp,
) {
    match registers.get_mut(key) {
        Some(held) if *stamp > held.stamp => *held = Lww::new(value, stamp),
        Some(_) => {}
        None => {
            registers.insert(key.to_owned(), Lww::new(value, stamp));
        }
    }
}

/// First writer wins: keeps `value` when `stamp` is older than what `slot` holds.
pub fn offer_oldest<T>(slot: &mut Option<Lww<T>>, value: T, stamp: &Stamp) {
    if slot.as_ref().is_none_or(|held| *stamp < held.stamp) {
        *slot = Some(Lww::new(value, stamp));
    }
}

/// A state that events are merged into. `merge` must be commutative across events and
/// idempotent on state (`event_count` aside, which the [`Ledger`] guards).
pub trait Mergeable: Sized {
    type Event;

    fn digest(event: &Self::Event) -> &EventDigest;

    /// The state after `event`, from the state before it (`None`: no event yet).
    fn merge(state: Option<Self>, event: &Self::Event) -> Self;
}

/// Whether a delivery changed the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// A new event: merged (even when it was too old to win any field).
    Accepted,
    /// The same event again: nothing changed.
    Duplicate,
}

impl Delivery {
    /// `accepted` or `duplicate`: the CRM answer's `status`, the metrics' `outcome`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
        }
    }
}

/// A state together with the digests of the events merged into it: the pure model of what the
/// store does with its delivery records.
#[derive(Debug, Clone, PartialEq)]
pub struct Ledger<S> {
    pub state: Option<S>,
    pub seen: BTreeSet<EventDigest>,
}

impl<S> Default for Ledger<S> {
    fn default() -> Self {
        Self {
            state: None,
            seen: BTreeSet::new(),
        }
    }
}

impl<S: Mergeable> Ledger<S> {
    pub fn apply(&mut self, event: &S::Event) -> Delivery {
        if !self.seen.insert(S::digest(event).clone()) {
            return Delivery::Duplicate;
        }
        self.state = Some(S::merge(self.state.take(), event));
        Delivery::Accepted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(time: i64, digest: &str) -> Stamp {
        Stamp::of(time, &EventDigest::from_stored(format!("{digest:0<64}")))
    }

    #[test]
    fn time_orders_first_then_digest_breaks_ties() {
        assert!(stamp(2, "00") > stamp(1, "ff"));
        assert!(stamp(1, "ab") > stamp(1, "aa"));
        assert!(stamp(1, "0000000000000001") > stamp(1, "0000000000000000ff"));
    }

    #[test]
    fn registers_keep_the_newest_or_the_oldest_whatever_the_order() {
        let (a, b) = (stamp(1, "a"), stamp(2, "b"));
        let mut newest = None;
        offer_newest(&mut newest, "b", &b);
        offer_newest(&mut newest, "a", &a);
        assert_eq!(newest.unwrap().value, "b");
        let mut oldest = None;
        offer_oldest(&mut oldest, "b", &b);
        offer_oldest(&mut oldest, "a", &a);
        assert_eq!(oldest.unwrap().value, "a");
    }
}
