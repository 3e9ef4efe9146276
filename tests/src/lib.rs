//! Helpers shared by the integration tests, the end-to-end tests and the signing tool.

pub mod deliver;
pub mod events;
pub mod fuzz;
pub mod history;
pub mod http;
pub mod procs;
pub mod signing;
pub mod stack;
pub mod tables;
