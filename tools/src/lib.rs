//! The commands of `webhookctl` beyond signing and the quarantine, which its binary holds: the
//! stored entities, the tenant-secret documents, the unmodelled actions, the CRM scheme probe
//! and the operator's apply of one kept callback. It links no test code: the test kit (crate
//! `tests`) drives it from the outside.

pub mod entity;
pub mod operator;
pub mod probe;
pub mod replay;
pub mod secrets;
pub mod unmodelled;
