//! Helpers shared by the integration tests, the end-to-end tests, the signing tool and the
//! cold-start harness.

pub mod coldstart;
pub mod events;
pub mod http;
pub mod signing;
pub mod stack;
pub mod stats;
