//! Helpers shared by the integration tests, the end-to-end tests and the signing tool.

pub mod events;
pub mod http;
pub mod signing;
pub mod stack;
