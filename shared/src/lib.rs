//! The model crate: everything the two webhook functions know, as plain functions.
//!
//! The pure core (default features) has no AWS SDK and no async runtime: verification over raw
//! bytes with an injectable clock, tolerant parsing, normalization into the items of the contract (docs/contract.md),
//! and merge rules that converge whatever the delivery order. The `dynamodb` and `secretsmanager`
//! features add the storage and secrets adapters; `lambda` adds the request pipeline both
//! functions run (`pipeline`: one generic handler over each source's `Webhook`).

pub mod activity;
pub mod bookkeeping;
pub mod bounded;
pub mod clock;
pub mod config;
pub mod crm;
pub mod digest;
pub mod envelope;
pub mod error;
pub mod format1;
pub mod item;
pub mod json;
pub mod merge;
pub mod node;
pub mod quarantine;
pub mod secret;
pub mod source;
pub mod store;
pub mod timefmt;
pub mod unmodelled;

pub use error::{ApiError, AuthError, ParseError, RequestError, SecretsError, StoreError};

#[cfg(feature = "dynamodb")]
pub mod dynamo;
#[cfg(feature = "lambda")]
pub mod http;
#[cfg(any(feature = "dynamodb", feature = "secretsmanager"))]
pub mod lazy_https;
#[cfg(feature = "lambda")]
pub mod observe;
#[cfg(feature = "lambda")]
pub mod pipeline;
#[cfg(feature = "secretsmanager")]
pub mod secrets_manager;
#[cfg(feature = "lambda")]
pub mod signals;

/// With the `mimalloc` feature, every binary built on this crate (the functions, and the
/// pure-path bench run with the feature) allocates through mimalloc instead of glibc's malloc:
/// the pure path spends a quarter of its time in malloc and free (docs/performance.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
