//! Where refused deliveries are kept and the global cap is counted: the port, and an in-memory
//! implementation for tests (the DynamoDB one is `dynamo::DynamoQuarantineStore`).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::error::StoreError;
use crate::quarantine::caps::{Slot, SlotRequest};
use crate::quarantine::record::RefusedDelivery;

/// What a store's future resolves to: boxed, because the port is used on the refusal path only,
/// behind a trait object, so that the handlers need no extra type parameter.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Where refused deliveries are kept, and where the global cap is counted.
pub trait QuarantineStore: Send + Sync {
    fn keep<'a>(&'a self, delivery: &'a RefusedDelivery) -> StoreFuture<'a, ()>;

    /// Takes one slot of the global cap: raises the window's counter by one unless it already
    /// holds `max`, atomically (one conditional write), so that concurrent instances can never
    /// be granted more than `max` slots between them.
    fn take_slot<'a>(&'a self, slot: &'a SlotRequest) -> StoreFuture<'a, Slot>;
}

/// An in-memory quarantine for unit tests: keeps every record and counts global slots as the
/// DynamoDB counter does, or fails every call.
#[derive(Debug, Default)]
pub struct MemoryQuarantine {
    pub kept: Mutex<Vec<RefusedDelivery>>,
    /// Slots granted per window (by its start).
    pub slots: Mutex<BTreeMap<i64, u32>>,
    /// Counter calls made, granted or not.
    pub slot_calls: AtomicU64,
    /// When set, every write fails as a DynamoDB outage would.
    pub unavailable: AtomicBool,
    /// When set, every counter call fails (the records could still be written).
    pub counter_unavailable: AtomicBool,
}

impl MemoryQuarantine {
    pub fn records(&self) -> Vec<RefusedDelivery> {
        self.kept.lock().expect("poisoned").clone()
    }

    /// Counter calls made so far, granted or not.
    pub fn slot_calls(&self) -> u64 {
        self.slot_calls.load(Ordering::SeqCst)
    }

    /// The counter's conditional increment, synchronously: what `take_slot` answers.
    pub fn take_slot_now(&self, slot: &SlotRequest) -> Result<Slot, StoreError> {
        self.slot_calls.fetch_add(1, Ordering::SeqCst);
        if self.counter_unavailable.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("memory counter switched off".into()));
        }
        let mut slots = self.slots.lock().expect("poisoned");
        let kept = slots.entry(slot.window.start).or_default();
        if *kept < slot.max {
            *kept += 1;
            Ok(Slot::Granted)
        } else {
            Ok(Slot::Full)
        }
    }

    /// The record write, synchronously: what `keep` does.
    pub fn keep_now(&self, delivery: &RefusedDelivery) -> Result<(), StoreError> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("memory quarantine switched off".into()));
        }
        self.kept.lock().expect("poisoned").push(delivery.clone());
        Ok(())
    }
}

impl QuarantineStore for MemoryQuarantine {
    fn keep<'a>(&'a self, delivery: &'a RefusedDelivery) -> StoreFuture<'a, ()> {
        Box::pin(async move { self.keep_now(delivery) })
    }

    fn take_slot<'a>(&'a self, slot: &'a SlotRequest) -> StoreFuture<'a, Slot> {
        Box::pin(async move { self.take_slot_now(slot) })
    }
}
