//! The DynamoDB adapter of the store ports: read the state, merge with the pure rules, and write
//! the new state together with the delivery (or nonce) record in one transaction, conditional on
//! the version read (optimistic concurrency), retried a bounded number of times on conflict.

mod activity;
mod attr;
mod client;
mod crm;
mod entity;
mod quarantine;

pub use activity::DynamoActivityStore;
pub use attr::item_to_sdk;
pub use client::{client_from_env, retry_config, timeout_config, DEADLINE};
pub use crm::DynamoCrmStore;
pub use quarantine::DynamoQuarantineStore;
