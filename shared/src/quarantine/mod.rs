//! Refused deliveries are kept, never acted on (contract 2.4).
//!
//! A delivery refused with 400, or with 401 other than a plain replay (a nonce accepted for
//! another tenant with the same body), whose body is a JSON object of its source's general
//! shape, is kept in a table of its own so that an operator can replay it once the configuration
//! is fixed: each replay is verified again, so nothing unauthenticated is ever merged. A
//! correctly signed stale callback and a nonce seen before with another body are kept too: either
//! may be the genuine delivery. The answer to the sender never depends on the quarantine.
//!
//! The parts, each on its own:
//! - [`record`]: what is kept of a refused delivery ([`RefusedDelivery`]);
//! - [`caps`]: what bounds the writes — a body size limit, at most `max_per_minute` records per
//!   function instance and clock minute (free: decided in memory), and at most `global_max`
//!   records per global window across every instance of both functions, counted by DynamoDB
//!   itself in a counter item of the quarantine table ([`CapWindow`], [`SlotRequest`]);
//! - [`policy`]: the decision, pure but for the clock — is this refusal kept, within which caps,
//!   as which record ([`QuarantinePolicy`]);
//! - [`store`]: where records go and slots are counted ([`QuarantineStore`]; the DynamoDB one is
//!   `dynamo::DynamoQuarantineStore`, the in-memory one [`MemoryQuarantine`]);
//! - `runner` (feature `lambda`): the quarantine as a function runs it, on a refused request
//!   ([`Quarantine::consider`]), within a time bound, with its logs and metrics.
//!
//! The quarantine reads no body itself: it takes the body as the request path parsed it, and
//! asks the body's source whether it is of the source's general shape and which tenant it names
//! (`crm::has_general_shape`, `activity::has_general_shape`). A slot of the global cap is taken
//! before the record is written, so the table never holds more records than slots were granted.

pub mod caps;
pub mod config;
pub mod policy;
pub mod record;
#[cfg(feature = "lambda")]
pub mod runner;
pub mod store;

pub use caps::{CapWindow, Slot, SlotRequest, CAP_PARTITION};
pub use config::QuarantineConfig;
pub use policy::{Admission, QuarantinePolicy, Refusal, Skip};
pub use record::{RefusedDelivery, REPLAY_HEADER};
#[cfg(feature = "lambda")]
pub use runner::{Quarantine, QUARANTINE_TIMEOUT};
pub use store::{MemoryQuarantine, QuarantineStore, StoreFuture};
