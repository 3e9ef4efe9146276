//! The ports to storage. Adapters (DynamoDB, or the in-memory one for unit tests) apply the pure
//! merge rules atomically: a delivery is recorded together with the state it produced, or not at
//! all.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use crate::activity::event::ActivityEvent;
use crate::activity::state::ActivityState;
use crate::crm::event::CrmEvent;
use crate::crm::state::CrmState;
use crate::error::{NonceReuse, StoreError};
use crate::json::EventDigest;
use crate::merge::{Delivery, Ledger};

/// What the activity store says about a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceOutcome {
    /// First use of the nonce: the event was applied (or, for an action the service does not
    /// model, only recorded).
    Accepted,
    /// The nonce was seen with this very body: nothing changed.
    Duplicate,
    /// The nonce was seen under this replay scope for another tenant, or with another body:
    /// refused `replayed_nonce`.
    Replayed(NonceReuse),
}

impl NonceOutcome {
    /// The delivery it was, or the reuse that refuses it `replayed_nonce`.
    pub fn delivery(self) -> Result<Delivery, NonceReuse> {
        match self {
            Self::Accepted => Ok(Delivery::Accepted),
            Self::Duplicate => Ok(Delivery::Duplicate),
            Self::Replayed(reuse) => Err(reuse),
        }
    }
}

/// What a nonce was recorded with: the tenant that accepted it (`None` for a record that names
/// none, kept per tenant, hence this tenant's) and the body's digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedNonce {
    pub tenant: Option<String>,
    pub digest: String,
}

impl RecordedNonce {
    /// A nonce found recorded (contract 2.2): the same body for the same tenant is a duplicate;
    /// another body is a conflict whatever the tenant; the same body for another tenant is a
    /// captured callback sent to another path.
    pub fn outcome_for(&self, mid: &str, digest: &EventDigest) -> NonceOutcome {
        if self.digest != digest.as_str() {
            NonceOutcome::Replayed(NonceReuse::OtherBody)
        } else if self.tenant.as_deref().is_none_or(|tenant| tenant == mid) {
            NonceOutcome::Duplicate
        } else {
            NonceOutcome::Replayed(NonceReuse::OtherTenant)
        }
    }
}

/// How long one request may take, the secrets and the store included, before it is answered:
/// the sender waits 5 s, and this leaves room for parsing, verification and the Lambda runtime's
/// round trip. The store gets what the steps before it left ([`CrmStore::apply_within`]).
pub const REQUEST_DEADLINE: Duration = Duration::from_millis(4_000);

pub trait CrmStore: Send + Sync {
    /// Merges `event` into its object's state, once, answering within `budget` (what is left of
    /// the request's deadline).
    fn apply_within(
        &self,
        event: &CrmEvent,
        budget: Duration,
    ) -> impl Future<Output = Result<Delivery, StoreError>> + Send;

    /// [`Self::apply_within`] a whole request's deadline.
    fn apply(&self, event: &CrmEvent) -> impl Future<Output = Result<Delivery, StoreError>> + Send {
        self.apply_within(event, REQUEST_DEADLINE)
    }
}

pub trait ActivityStore: Send + Sync {
    /// Records `event.nonce` under its tenant and its replay scope, with the body's digest, and
    /// merges the event into its activity (or, for an action the service does not model, keeps
    /// its body), in one atomic step, answering within `budget` (what is left of the request's
    /// deadline).
    fn apply_within(
        &self,
        event: &ActivityEvent,
        budget: Duration,
    ) -> impl Future<Output = Result<NonceOutcome, StoreError>> + Send;

    /// [`Self::apply_within`] a whole request's deadline.
    fn apply(&self, event: &ActivityEvent) -> impl Future<Output = Result<NonceOutcome, StoreError>> + Send {
        self.apply_within(event, REQUEST_DEADLINE)
    }
}

type Key = (String, String);

/// In-memory store for unit tests of handlers and for modelling the store in property tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    crm: Mutex<HashMap<Key, Ledger<CrmState>>>,
    activities: Mutex<HashMap<Key, Ledger<ActivityState>>>,
    /// (replay scope, nonce) → what it was recorded with.
    nonces: Mutex<HashMap<Key, RecordedNonce>>,
    /// (tenant, action, raw body) of each unmodelled action kept.
    unmodelled: Mutex<Vec<(String, String, String)>>,
    /// When set, every call fails as a DynamoDB outage would.
    pub unavailable: std::sync::atomic::AtomicBool,
}

impl MemoryStore {
    fn check_available(&self) -> Result<(), StoreError> {
        if self.unavailable.load(std::sync::atomic::Ordering::SeqCst) {
            Err(StoreError::Unavailable("memory store switched off".into()))
        } else {
            Ok(())
        }
    }

    pub fn crm_state(&self, mid: &str, entity_id: &str) -> Option<CrmState> {
        let crm = self.crm.lock().expect("poisoned");
        crm.get(&(mid.to_owned(), entity_id.to_owned()))?.state.clone()
    }

    pub fn activity_state(&self, mid: &str, entity_id: &str) -> Option<ActivityState> {
        let activities = self.activities.lock().expect("poisoned");
        activities.get(&(mid.to_owned(), entity_id.to_owned()))?.state.clone()
    }

    pub fn nonce_count(&self) -> usize {
        self.nonces.lock().expect("poisoned").len()
    }

    /// (tenant, action, raw body) of each unmodelled action kept, in order.
    pub fn unmodelled(&self) -> Vec<(String, String, String)> {
        self.unmodelled.lock().expect("poisoned").clone()
    }
}

/// The budget is not enforced: nothing here waits.
impl CrmStore for MemoryStore {
    async fn apply_within(&self, event: &CrmEvent, _budget: Duration) -> Result<Delivery, StoreError> {
        self.check_available()?;
        let mut crm = self.crm.lock().expect("poisoned");
        let ledger = crm.entry((event.mid.clone(), event.entity_id.clone())).or_default();
        Ok(ledger.apply(event))
    }
}

/// The budget is not enforced: nothing here waits.
impl ActivityStore for MemoryStore {
    async fn apply_within(&self, event: &ActivityEvent, _budget: Duration) -> Result<NonceOutcome, StoreError> {
        self.check_available()?;
        let mut nonces = self.nonces.lock().expect("poisoned");
        let nonce_key = (event.replay_scope.as_str().to_owned(), event.nonce.clone());
        if let Some(recorded) = nonces.get(&nonce_key) {
            return Ok(recorded.outcome_for(&event.mid, &event.digest));
        }
        let recorded = RecordedNonce {
            tenant: Some(event.mid.clone()),
            digest: event.digest.as_str().to_owned(),
        };
        nonces.insert(nonce_key, recorded);
        if let Some(entity_id) = event.activity_id() {
            let mut activities = self.activities.lock().expect("poisoned");
            let ledger = activities.entry((event.mid.clone(), entity_id.to_owned())).or_default();
            ledger.apply(event);
        } else {
            let kept = (
                event.mid.clone(),
                event.action.as_str().to_owned(),
                event.raw.to_string(),
            );
            self.unmodelled.lock().expect("poisoned").push(kept);
        }
        Ok(NonceOutcome::Accepted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_nonce_is_a_duplicate_only_for_its_tenant_and_body() {
        let digest = EventDigest::from_stored("00aa");
        let other = EventDigest::from_stored("11bb");
        let recorded = RecordedNonce {
            tenant: Some("124".into()),
            digest: digest.as_str().to_owned(),
        };
        assert_eq!(recorded.outcome_for("124", &digest), NonceOutcome::Duplicate);
        assert_eq!(
            recorded.outcome_for("941", &digest),
            NonceOutcome::Replayed(NonceReuse::OtherTenant)
        );
        for mid in ["124", "941"] {
            assert_eq!(
                recorded.outcome_for(mid, &other),
                NonceOutcome::Replayed(NonceReuse::OtherBody),
                "{mid}"
            );
        }
        let per_tenant = RecordedNonce {
            tenant: None,
            digest: digest.as_str().to_owned(),
        };
        assert_eq!(per_tenant.outcome_for("124", &digest), NonceOutcome::Duplicate);
        assert_eq!(
            per_tenant.outcome_for("124", &other),
            NonceOutcome::Replayed(NonceReuse::OtherBody)
        );
    }
}
