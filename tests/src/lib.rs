//! Helpers shared by the integration tests, the end-to-end tests, the signing tool and the
//! cold-start harness.

pub mod coldstart;
pub mod deliver;
pub mod events;
pub mod fuzz;
pub mod history;
pub mod http;
pub mod procs;
pub mod signing;
pub mod stack;
pub mod stats;
pub mod tables;
