//! The JINGdigital CRM webhook: verification, normalization, merge.

pub mod event;
pub mod intake;
pub mod state;
pub mod verify;

pub use event::{has_general_shape, tenant_of, CrmEvent, CrmEventType};
pub use intake::CrmIntake;
pub use state::CrmState;
