//! Dev tools that are not tests: the cold-start harness of `make bench` and the mutation fuzzer
//! of `make fuzz` (whose short run is `tools/tests/fuzz.rs`).

pub mod coldstart;
pub mod entity;
pub mod fuzz;
pub mod operator;
pub mod probe;
pub mod replay;
pub mod secrets;
pub mod unmodelled;
