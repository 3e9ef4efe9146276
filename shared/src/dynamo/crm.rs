//! CRM objects in DynamoDB: one item per object, which also records the events applied to it
//! (storage format 2, docs/items.md). No other table, no transaction.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::Client;

use super::entity::{within_deadline, Apply, EntityTable};
use crate::clock::Clock;
use crate::crm::{CrmEvent, CrmState};
use crate::error::StoreError;
use crate::merge::Delivery;
use crate::store::CrmStore;
use crate::timefmt::utc_rfc3339;

pub struct DynamoCrmStore {
    entities: EntityTable<CrmState>,
    clock: Arc<dyn Clock>,
}

impl DynamoCrmStore {
    pub fn new(client: Client, table: String, clock: Arc<dyn Clock>) -> Self {
        Self {
            entities: EntityTable::new(client, table, "crm"),
            clock,
        }
    }
}

impl CrmStore for DynamoCrmStore {
    async fn apply_within(&self, event: &CrmEvent, budget: Duration) -> Result<Delivery, StoreError> {
        let updated_at = utc_rfc3339(self.clock.now_unix());
        let apply = Apply {
            mid: &event.mid,
            entity_id: &event.entity_id,
            event,
            stamp: event.stamp(),
            updated_at: &updated_at,
        };
        within_deadline(budget, self.entities.apply(&apply, CrmState::to_item, budget)).await
    }
}
