//! The DynamoDB adapter of the store ports (storage format 2, docs/items.md): each entity is one
//! item that carries its own compact record of applied events: one consistent read, then one
//! conditional `PutItem` whose failure returns the current item (optimistic concurrency without
//! transactions), retried a bounded number of times on conflict. Activities add a nonce record,
//! written with the item in one transaction.

mod activity;
mod attr;
mod client;
mod crm;
mod entity;
mod quarantine;

pub use crate::format1::MERGE_STATE;
pub use activity::{DynamoActivityStore, UnmodelledTable, CLAIM_SORT_KEY};
pub use attr::visible_item;
pub use attr::{item_to_sdk, EXPIRES_AT, FORMAT, MERGE, VERSION};
pub use client::{client_for, retry_config, timeout_config, DEADLINE};
pub use crm::DynamoCrmStore;
pub use entity::{read_entity, Tracked, MAX_CONFLICT_RETRIES};
pub use quarantine::DynamoQuarantineStore;
