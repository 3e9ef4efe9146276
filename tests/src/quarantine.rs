//! Reading the quarantine of refused deliveries (SPEC 2.4) back from the local stack.
//!
//! The functions keep at most `QUARANTINE_MAX_PER_MINUTE` refused deliveries per instance and
//! minute, and every suite refuses deliveries: a test that needs one kept posts until one is,
//! which takes at most until the next minute.

use std::future::Future;
use std::time::{Duration, Instant};

use shared::dynamo::DynamoQuarantineStore;
use shared::quarantine::{RefusedDelivery, Source};

use crate::stack;

pub fn table() -> String {
    stack::table("REFUSED_DELIVERIES_TABLE_NAME")
}

pub fn store() -> DynamoQuarantineStore {
    DynamoQuarantineStore::new(stack::inspection_client(), table())
}

/// The stack's per-instance cap (`QUARANTINE_MAX_PER_MINUTE`, exported by scripts/stack.sh).
pub fn max_per_minute() -> u64 {
    std::env::var("QUARANTINE_MAX_PER_MINUTE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60)
}

/// How many instances each function may run (`FUNCTION_CONCURRENCY` of scripts/stack.sh).
pub fn instances() -> u64 {
    std::env::var("TEST_FUNCTION_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16)
}

/// The records of `source` kept for `tenant`, oldest first.
pub async fn kept_for(source: Source, tenant: &str) -> Vec<RefusedDelivery> {
    let mut records = store().list(source).await.expect("the quarantine table reads");
    records.retain(|record| record.tenant.as_deref() == Some(tenant));
    records
}

/// Calls `post_one(attempt)` (which posts one refused delivery for `tenant`) until a record for
/// `tenant` is kept, and returns it. The record is written before the refusal is answered, so
/// one read after each post tells whether it was kept or dropped by the rate cap.
pub async fn post_until_kept<F, Fut>(source: Source, tenant: &str, mut post_one: F) -> RefusedDelivery
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = ()>,
{
    // Past the next minute, when every instance has a fresh budget.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut attempt = 0;
    loop {
        post_one(attempt).await;
        if let Some(record) = kept_for(source, tenant).await.into_iter().next() {
            return record;
        }
        assert!(
            Instant::now() < deadline,
            "no refused delivery for {tenant} was quarantined in 90 s ({attempt} attempts)"
        );
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(if attempt < 5 { 50 } else { 1000 })).await;
    }
}
