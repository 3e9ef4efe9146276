//! The Tencent Lexiang activity callback: verification, normalization, merge.

pub mod event;
pub mod intake;
pub mod state;
pub mod verify;

pub use event::{has_general_shape, ActivityAction, ActivityEvent};
pub use intake::ActivityIntake;
pub use state::ActivityState;
