//! What one CRM event costs in DynamoDB calls and capacity units, by kind of event, as the
//! bench's counting DynamoDB sees them ([`Accounting`]). Each round takes a new entity through
//! three warm instances of the function (each first given an event of its own, so that the
//! counts hold no start-up work):
//!
//! | instance | event | scenario |
//! | --- | --- | --- |
//! | A | creates entity E | new entity |
//! | A | update 1 of E | cached update (an entity this instance wrote just before) |
//! | A | update 1 of E again | duplicate, same instance |
//! | B | update 2 of E | uncached update (an entity another instance wrote) |
//! | C | update 1 of E again | duplicate, another instance |

use serde_json::{json, Value};

use super::accounting::{Accounting, Counted};
use super::events::EventSource;
use super::runtime_api::RuntimeApi;
use super::{HarnessError, Instance, Launch};

/// The scenarios, in the order each round runs them.
pub const SCENARIOS: [&str; 5] = [
    "new entity",
    "cached update",
    "duplicate, same instance",
    "uncached update",
    "duplicate, another instance",
];

/// Runs `rounds` rounds; the JSON report holds, per scenario, the counts of every round, the
/// answers' `status`, and the size and write units of the first item written.
pub async fn run_scenarios(
    api: &mut RuntimeApi,
    launch: &Launch,
    events: &mut EventSource,
    accounting: &Accounting,
    table: &str,
    rounds: usize,
) -> Result<Value, HarnessError> {
    let mut instances = Vec::new();
    for _ in 0..3 {
        let mut instance = Instance::start(api, launch).await?;
        let (_, warm_up) = events.crm_new_entity()?;
        instance.invoke(api, warm_up).await?;
        instances.push(instance);
    }
    let mut measured: Vec<Vec<Value>> = vec![Vec::new(); SCENARIOS.len()];
    let mut seed_item = Value::Null;
    for _ in 0..rounds {
        let (entity_id, create) = events.crm_new_entity()?;
        let update_1 = events.crm_update(&entity_id, 1)?;
        let steps = [
            (0, create),
            (0, update_1.clone()),
            (0, update_1.clone()),
            (1, events.crm_update(&entity_id, 2)?),
            (2, update_1),
        ];
        for (scenario, (instance, event)) in steps.into_iter().enumerate() {
            accounting.reset().await?;
            let answered = instances[instance].invoke(api, event).await?;
            let counted = accounting.counted().await?;
            let status = EventSource::crm_status(&answered.posted)
                .ok_or_else(|| HarnessError::Unsuccessful(String::from_utf8_lossy(&answered.posted).into_owned()))?;
            if scenario == 0 && seed_item.is_null() {
                seed_item = json!({
                    "bytes": counted.last_put_bytes(table),
                    "write_units": counted.write_units(),
                });
            }
            measured[scenario].push(figures(&counted, &status));
        }
    }
    let scenarios: Vec<Value> = SCENARIOS
        .iter()
        .zip(measured)
        .map(|(name, rounds)| json!({ "scenario": name, "rounds": rounds }))
        .collect();
    Ok(json!({ "scenarios": scenarios, "seed_item": seed_item }))
}

fn figures(counted: &Counted, status: &str) -> Value {
    json!({
        "status": status,
        "calls": counted.calls(),
        "read_units": counted.read_units(),
        "write_units": counted.write_units(),
        "condition_failures": counted.condition_failures(),
        "counted": counted.0,
    })
}
