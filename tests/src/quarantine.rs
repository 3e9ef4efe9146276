//! Reading the quarantine of refused deliveries (contract 2.4) back from the local stack.
//!
//! The functions keep at most `QUARANTINE_GLOBAL_MAX` refused deliveries per global window
//! across every instance (a minute in `make test`), and every suite refuses deliveries: a test
//! that needs one kept posts until one is, which takes at most until the next window.

use std::future::Future;
use std::time::{Duration, Instant};

use shared::dynamo::DynamoQuarantineStore;
use shared::quarantine::{QuarantineConfig, RefusedDelivery};
use shared::source::Source;

use crate::stack;

pub fn table() -> String {
    stack::table("REFUSED_DELIVERIES_TABLE_NAME")
}

pub fn store() -> DynamoQuarantineStore {
    DynamoQuarantineStore::new(stack::inspection_client(), table())
}

/// A whole number the stack exports (scripts/stack.sh), else the functions' default.
fn exported(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The stack's global cap (`QUARANTINE_GLOBAL_MAX`) and window (`QUARANTINE_GLOBAL_WINDOW_SECONDS`).
pub fn global_cap() -> (u32, u32) {
    let defaults = QuarantineConfig::default();
    (
        exported("QUARANTINE_GLOBAL_MAX", defaults.global_max),
        exported("QUARANTINE_GLOBAL_WINDOW_SECONDS", defaults.global_window_seconds),
    )
}

/// Every record of both sources, the functions' and any other.
pub async fn all_records() -> Vec<RefusedDelivery> {
    let store = store();
    let mut records = store.list(Source::Crm).await.expect("the quarantine table reads");
    records.extend(store.list(Source::Activity).await.expect("the quarantine table reads"));
    records
}

/// The records of `source` kept for `tenant`, oldest first.
pub async fn kept_for(source: Source, tenant: &str) -> Vec<RefusedDelivery> {
    let mut records = store().list(source).await.expect("the quarantine table reads");
    records.retain(|record| record.tenant.as_deref() == Some(tenant));
    records
}

/// Calls `post_one(attempt)` (which posts one refused delivery for `tenant`) until a record for
/// `tenant` is kept, and returns it. The record is written before the refusal is answered, so
/// one read after each post tells whether it was kept or dropped by a cap.
pub async fn post_until_kept<F, Fut>(source: Source, tenant: &str, mut post_one: F) -> RefusedDelivery
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = ()>,
{
    // Past the next global window (a minute in `make test`), when the cap has a fresh budget.
    let patience = Duration::from_secs(u64::from(global_cap().1) + 30);
    let deadline = Instant::now() + patience;
    let mut attempt = 0;
    loop {
        post_one(attempt).await;
        if let Some(record) = kept_for(source, tenant).await.into_iter().next() {
            return record;
        }
        assert!(
            Instant::now() < deadline,
            "no refused delivery for {tenant} was quarantined in {patience:?} ({attempt} attempts)"
        );
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(if attempt < 5 { 50 } else { 1000 })).await;
    }
}
