//! The storage figures of `make bench` for this project: the hot-key case and growth, driven
//! through the DynamoDB adapter (the code the functions run) against the bench's local DynamoDB,
//! which counts the calls and the capacity units DynamoDB would charge
//! (`tests::coldstart::accounting`). Writes one JSON report.
//!
//! - hot key: `--events` distinct updates (over 40 fields) of one lead from `--senders` concurrent senders, each
//!   with its own store (one Lambda instance each). A sender retries a 503
//!   as the CRM does, until the event is accepted. Then every field must hold its newest value,
//!   and `event_count` must be `--events` exactly.
//! - growth: one instance applies 1,000 distinct updates (the same 40 fields) to one lead; after 1, 10, 100 and 1,000
//!   events the item's bytes and the write units of the last write are recorded.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::types::AttributeValue;
use clap::Parser;
use serde_json::{json, Value};
use shared::clock::SystemClock;
use shared::crm::CrmEvent;
use shared::dynamo::DynamoCrmStore;
use shared::merge::Delivery;
use shared::store::CrmStore;
use tests::coldstart::accounting::Accounting;
use tests::history::parse_crm;
use tests::stack::{client_for, unique_mid};

/// The hot-key and growth events update these many distinct fields of the lead, in turn.
const FIELDS: usize = 40;

#[derive(Parser)]
#[command(about = "Hot-key and growth figures of the storage path")]
struct Cli {
    #[arg(long)]
    dynamodb_endpoint: String,
    #[arg(long, default_value = "crm_entities")]
    table: String,
    #[arg(long, default_value = "fixtures")]
    fixtures: PathBuf,
    #[arg(long, default_value_t = 300)]
    events: usize,
    #[arg(long, default_value_t = 32)]
    senders: usize,
    #[arg(long)]
    output: PathBuf,
}

/// Update `i` of one lead: its own time and field, so that every event wins something.
fn update(base: &Value, mid: &str, entity_id: &str, i: usize, distinct_fields: usize) -> CrmEvent {
    let mut value = base.clone();
    value["mid"] = mid.into();
    value["extra_data"]["entity_id"] = entity_id.into();
    value["create_time"] = (1_677_500_000 + i as i64).into();
    let field = format!("field_{}", i % distinct_fields);
    value["extra_data"]["mapping_data"] = json!({ field.clone(): [null, format!("value {i}")] });
    value["extra_data"]["mapping_data_text"] = json!({ field: [null, format!("label {i}")] });
    parse_crm(&value.to_string())
}

fn store(cli: &Cli) -> DynamoCrmStore {
    DynamoCrmStore::new(
        client_for(&cli.dynamodb_endpoint),
        cli.table.clone(),
        Arc::new(SystemClock),
    )
}

async fn stored_item(
    cli: &Cli,
    mid: &str,
    entity_id: &str,
) -> Result<std::collections::HashMap<String, AttributeValue>, Box<dyn std::error::Error>> {
    let output = client_for(&cli.dynamodb_endpoint)
        .get_item()
        .table_name(&cli.table)
        .key("mid", AttributeValue::S(mid.to_owned()))
        .key("entity_id", AttributeValue::S(entity_id.to_owned()))
        .consistent_read(true)
        .send()
        .await?;
    output.item.ok_or_else(|| "the item is missing".into())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    let base: Value = serde_json::from_str(&std::fs::read_to_string(
        cli.fixtures.join("crm/lead_object_update.json"),
    )?)?;

    // Hot key.
    let mid = unique_mid("hotkey");
    let entity_id = "hot-lead";
    let events: Vec<CrmEvent> = (0..cli.events)
        .map(|i| update(&base, &mid, entity_id, i, FIELDS))
        .collect();
    let queue = Arc::new(Mutex::new(events.into_iter()));
    let unavailable = Arc::new(AtomicUsize::new(0));
    let accounting = Accounting::new(&cli.dynamodb_endpoint);
    accounting.reset().await?;
    let started = std::time::Instant::now();
    let mut senders = Vec::new();
    for _ in 0..cli.senders {
        let (queue, unavailable, instance) = (Arc::clone(&queue), Arc::clone(&unavailable), store(&cli));
        senders.push(tokio::spawn(async move {
            loop {
                let Some(event) = queue.lock().expect("queue").next() else {
                    return;
                };
                let mut refused = false;
                loop {
                    match instance.apply(&event).await {
                        Ok(Delivery::Accepted) => break,
                        // A write that committed after its 503 (the deadline ran out while its
                        // answer was on the way): the retry finds it applied, as it should.
                        Ok(Delivery::Duplicate) if refused => break,
                        // An SDK retry of a PutItem that had committed: applied once, answered
                        // `duplicate` (docs/guarantees.md).
                        Ok(Delivery::Duplicate) => break,
                        Err(_) => {
                            refused = true;
                            unavailable.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }));
    }
    for sender in senders {
        sender.await?;
    }
    let elapsed = started.elapsed();
    let counted = accounting.counted().await?;
    let item = stored_item(&cli, &mid, entity_id).await?;
    // Every field must hold the value of the newest event that set it.
    let fields = item.get("fields").and_then(|f| f.as_m().ok());
    let lost = (0..FIELDS.min(cli.events))
        .filter(|k| {
            let newest = (0..cli.events).filter(|i| i % FIELDS == *k).max().unwrap_or(0);
            let held = fields
                .and_then(|f| f.get(&format!("field_{k}")))
                .and_then(|v| v.as_s().ok());
            held != Some(&format!("value {newest}"))
        })
        .count();
    let refused = unavailable.load(Ordering::Relaxed);
    let deliveries = cli.events + refused;
    // Every distinct event counted once: a lost update shows here even when the fields are right.
    let event_count = item
        .get("event_count")
        .and_then(|n| n.as_n().ok())
        .and_then(|n| n.parse::<u64>().ok());
    let hot_key = json!({
        "events": cli.events,
        "senders": cli.senders,
        "deliveries": deliveries,
        "answered_503": refused,
        "share_503": refused as f64 / deliveries as f64,
        "calls_per_event": counted.calls() / cli.events as f64,
        "conflicts_per_event": counted.condition_failures() / cli.events as f64,
        "write_units_per_event": counted.write_units() / cli.events as f64,
        "read_units_per_event": counted.read_units() / cli.events as f64,
        "fields_not_newest": lost,
        "event_count": event_count,
        "event_count_exact": event_count == Some(cli.events as u64),
        "seconds": elapsed.as_secs_f64(),
        "counted": counted.0,
    });
    println!("hot key: {hot_key}");

    // Growth: one instance, one lead, updates cycling over 40 fields.
    let mid = unique_mid("growth");
    let instance = store(&cli);
    let mut growth = Vec::new();
    for i in 0..1000 {
        let event = update(&base, &mid, entity_id, i, FIELDS);
        let last = matches!(i + 1, 1 | 10 | 100 | 1000);
        if last {
            accounting.reset().await?;
        }
        assert_eq!(instance.apply(&event).await?, Delivery::Accepted);
        if last {
            let counted = accounting.counted().await?;
            growth.push(json!({
                "events": i + 1,
                "item_bytes": counted.last_put_bytes(&cli.table).unwrap_or(0.0),
                "calls": counted.calls(),
                "write_units": counted.write_units(),
                "read_units": counted.read_units(),
            }));
        }
    }
    println!("growth: {}", Value::Array(growth.clone()));
    let report = json!({ "hot_key": hot_key, "growth": growth });
    std::fs::write(&cli.output, serde_json::to_vec_pretty(&report)?)?;
    Ok(())
}
