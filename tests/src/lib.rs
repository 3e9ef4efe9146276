//! The test kit of the integration and end-to-end suites (`tests/tests/`, and the webhookctl
//! suites of `tools/tests/`): fixtures, development secrets, signers, API Gateway events, the
//! local stack, table read-back, generated histories, the independent oracle and concurrent
//! delivery. Also the harnesses built on it (`src/bin/`): the metrics check of `make test`, the
//! cold-start and storage figures of `make bench`, the fuzzer of `make fuzz` and the writer of
//! `fixtures/events/`. The operator tool (`tools/`) links none of it.

pub mod coldstart;
pub mod deliver;
pub mod events;
pub mod fuzz;
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
