//! The test kit shared by the integration and end-to-end suites (`tests/tests/`) and the dev
//! tools (`tools/`): fixtures, development secrets, signers, API Gateway events, the local stack,
//! table read-back, generated histories and concurrent delivery.

pub mod deliver;
pub mod events;
pub mod history;
pub mod http;
pub mod ledger;
pub mod local;
pub mod matrix;
pub mod metrics_check;
pub mod oracle;
pub mod procs;
pub mod quarantine;
pub mod signing;
pub mod stack;
pub mod stats;
pub mod tables;
