//! `webhookctl entity show|list|export`: what the service stored for a tenant, read back as an
//! operator needs it ("did lead X arrive, and what is its state?").
//!
//! Items are decoded by the model crate ([`shared::dynamo::read_entity`], the same decoding the
//! functions use, storage format 1 included), so the bookkeeping shown is exactly what the next
//! delivery will merge against. The tables are read through the SDK with the region,
//! credentials and endpoint of the environment, as the quarantine commands read theirs.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;
use shared::activity::ActivityState;
use shared::config::Env;
use shared::crm::CrmState;
use shared::dynamo::{read_entity, visible_item, Tracked, FORMAT, VERSION};
use shared::error::StoreError;
use shared::format1::Format1;
use shared::timefmt::utc_rfc3339;

type Failure = Box<dyn std::error::Error>;
type SdkItem = std::collections::HashMap<String, AttributeValue>;

/// Which entity table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EntitySource {
    /// CRM objects (leads, accounts): `CRM_TABLE_NAME`, locally `crm_entities`
    Crm,
    /// Lexiang activities: `ACTIVITY_TABLE_NAME`, locally `activities`
    Activity,
}

impl EntitySource {
    fn as_str(self) -> &'static str {
        match self {
            Self::Crm => "crm",
            Self::Activity => "activity",
        }
    }

    /// `--table`, else the functions' variable, else the local stack's name.
    fn table(self, table: Option<&str>) -> String {
        let (variable, local) = match self {
            Self::Crm => ("CRM_TABLE_NAME", "crm_entities"),
            Self::Activity => ("ACTIVITY_TABLE_NAME", "activities"),
        };
        table
            .map(str::to_owned)
            .or_else(|| Env::from_process().get(variable).map(|name| name.trim().to_owned()))
            .unwrap_or_else(|| local.to_owned())
    }

    /// The item's columns in an export, in the order of docs/contract.md 3.1 / 3.2. CRM `fields`
    /// are spread into one `fields.<name>` column each after these.
    fn columns(self) -> &'static [&'static str] {
        match self {
            Self::Crm => &[
                "mid",
                "entity_id",
                "object_name",
                "object_id",
                "owner",
                "life_status",
                "lead_pool",
                "leads_status",
                "business_type",
                "business_type_name",
                "lead_omni_user_uuid",
                "team_members",
                "voided",
                "created_at",
                "last_event_type",
                "last_action_keyword",
                "event_time",
                "event_count",
                "updated_at",
            ],
            Self::Activity => &[
                "mid",
                "entity_id",
                "title",
                "summary",
                "content",
                "location",
                "started_at",
                "ended_at",
                "closed_at",
                "created_at",
                "attend_start_at",
                "attend_end_at",
                "attend_method",
                "app_source_type",
                "participant_count_limit",
                "enable_random_extract",
                "privilege_type",
                "privilege",
                "logo",
                "team_id",
                "category_id",
                "roadmap_id",
                "operator",
                "operator_name",
                "last_action",
                "event_time",
                "deleted",
                "updated_at",
            ],
        }
    }
}

#[derive(Args)]
pub struct EntityArgs {
    #[command(subcommand)]
    command: EntityCommand,
}

#[derive(Args)]
struct TableArg {
    /// The entity table (default: CRM_TABLE_NAME / ACTIVITY_TABLE_NAME, else the local stack's
    /// crm_entities / activities)
    #[arg(long)]
    table: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportFormat {
    /// One JSON object per line: every visible attribute of the item
    Jsonl,
    /// A header line, then one row per item; CRM fields spread into `fields.<name>` columns
    Csv,
}

#[derive(Subcommand)]
enum EntityCommand {
    /// One entity as JSON: its visible attributes, its storage format and version, and its
    /// record of applied events (time, tie-break, and which values each one still holds).
    /// Exits 1 when the entity is not stored.
    Show {
        #[arg(value_enum)]
        source: EntitySource,
        /// The tenant
        mid: String,
        /// The entity (lead uuid, activity event_id)
        entity_id: String,
        #[command(flatten)]
        table: TableArg,
    },
    /// One line per entity of a tenant, in entity_id order: entity_id, kind (CRM object_name,
    /// or `activity`), the newest event type or action, version (distinct events merged),
    /// updated_at, and `voided` / `deleted` when so.
    List {
        #[arg(value_enum)]
        source: EntitySource,
        /// The tenant
        mid: String,
        #[command(flatten)]
        table: TableArg,
    },
    /// Every entity of a tenant (CRM: optionally only one object_name, e.g. `lead`) as JSON
    /// Lines or CSV, in entity_id order.
    Export {
        #[arg(value_enum)]
        source: EntitySource,
        /// The tenant
        mid: String,
        /// CRM: only objects of this object_name (`lead`, `account`, ...)
        #[arg(long)]
        object_name: Option<String>,
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
        /// Write here instead of standard output
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        table: TableArg,
    },
}

/// Runs one `entity` command.
pub async fn run(args: EntityArgs) -> Result<ExitCode, Failure> {
    let client = crate::operator::dynamodb_client(&Env::from_process());
    match args.command {
        EntityCommand::Show {
            source,
            mid,
            entity_id,
            table,
        } => {
            let table = source.table(table.table.as_deref());
            let Some(item) = get(&client, &table, &mid, &entity_id).await? else {
                eprintln!("no {} entity {mid}/{entity_id} in {table}", source.as_str());
                return Ok(ExitCode::FAILURE);
            };
            println!("{}", serde_json::to_string_pretty(&describe(source, &item)?)?);
            Ok(ExitCode::SUCCESS)
        }
        EntityCommand::List { source, mid, table } => {
            let table = source.table(table.table.as_deref());
            let items = tenant_items(&client, &table, &mid).await?;
            for item in &items {
                println!("{}", list_line(source, item));
            }
            eprintln!(
                "{} {} entities of tenant {mid} in {table}",
                items.len(),
                source.as_str()
            );
            Ok(ExitCode::SUCCESS)
        }
        EntityCommand::Export {
            source,
            mid,
            object_name,
            format,
            output,
            table,
        } => {
            let table = source.table(table.table.as_deref());
            let mut rows = Vec::new();
            for item in tenant_items(&client, &table, &mid).await? {
                let visible = visible_json(&item)?;
                let kept = object_name
                    .as_deref()
                    .is_none_or(|wanted| visible.get("object_name").and_then(Value::as_str) == Some(wanted));
                if kept {
                    rows.push(visible);
                }
            }
            let text = match format {
                ExportFormat::Jsonl => json_lines(&rows)?,
                ExportFormat::Csv => csv_text(source, &rows)?,
            };
            match &output {
                Some(path) => {
                    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?
                }
                None => std::io::stdout().write_all(text.as_bytes())?,
            }
            eprintln!(
                "exported {} {} entities of tenant {mid} from {table}",
                rows.len(),
                source.as_str()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn get(client: &Client, table: &str, mid: &str, entity_id: &str) -> Result<Option<SdkItem>, Failure> {
    let output = client
        .get_item()
        .table_name(table)
        .key("mid", AttributeValue::S(mid.to_owned()))
        .key("entity_id", AttributeValue::S(entity_id.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| format!("GetItem on {table}: {}", DisplayErrorContext(e)))?;
    Ok(output.item().cloned())
}

/// Every item of `mid`, in entity_id order, page after page.
async fn tenant_items(client: &Client, table: &str, mid: &str) -> Result<Vec<SdkItem>, Failure> {
    let mut items = Vec::new();
    let mut start: Option<SdkItem> = None;
    loop {
        let page = client
            .query()
            .table_name(table)
            .key_condition_expression("mid = :mid")
            .expression_attribute_values(":mid", AttributeValue::S(mid.to_owned()))
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| format!("Query on {table}: {}", DisplayErrorContext(e)))?;
        items.extend(page.items().iter().cloned());
        match page.last_evaluated_key() {
            Some(key) if !key.is_empty() => start = Some(key.clone()),
            _ => return Ok(items),
        }
    }
}

/// The visible attributes of a stored item (bookkeeping left out) as JSON, keys sorted.
pub fn visible_json(item: &SdkItem) -> Result<BTreeMap<String, Value>, StoreError> {
    visible_item(item)?
        .into_iter()
        .map(|(name, value)| {
            let json = value
                .to_json()
                .ok_or_else(|| StoreError::Corrupt(format!("`{name}` holds a number JSON cannot carry")))?;
            Ok((name, json))
        })
        .collect()
}

/// What `entity show` prints: the visible item, then the bookkeeping as the model crate decodes it.
pub fn describe(source: EntitySource, item: &SdkItem) -> Result<Value, Failure> {
    let bookkeeping = match source {
        EntitySource::Crm => bookkeeping::<CrmState>(item)?,
        EntitySource::Activity => bookkeeping::<ActivityState>(item)?,
    };
    Ok(serde_json::json!({
        "source": source.as_str(),
        "item": visible_json(item)?,
        "format": stored_number(item, FORMAT).unwrap_or(1),
        "version": stored_number(item, VERSION),
        "applied_events": bookkeeping,
    }))
}

fn stored_number(item: &SdkItem, name: &str) -> Option<u64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

/// The record of applied events, oldest first: each event's time, tie-break and the registers
/// (values) it still holds in the state.
fn bookkeeping<S: Format1 + serde::Serialize>(item: &SdkItem) -> Result<Vec<Value>, Failure> {
    let Tracked { applied, state, .. } = read_entity::<S>(item)?;
    let mut holders: BTreeMap<(i64, u64), Vec<String>> = BTreeMap::new();
    registers(&serde_json::to_value(&state)?, "", &mut holders);
    for paths in holders.values_mut() {
        paths.sort();
    }
    Ok(applied
        .stamps()
        .iter()
        .map(|stamp| {
            serde_json::json!({
                "time": stamp.time,
                "at": utc_rfc3339(stamp.time),
                "tie_break": format!("{:016x}", stamp.tie),
                "holds": holders.get(&(stamp.time, stamp.tie)).cloned().unwrap_or_default(),
            })
        })
        .collect())
}

/// Walks the serialized state and notes, for every register (a `{value, stamp}` pair), its
/// path under the stamp of the event that wrote it.
fn registers(value: &Value, path: &str, holders: &mut BTreeMap<(i64, u64), Vec<String>>) {
    let Value::Object(map) = value else {
        return;
    };
    let stamp = map
        .get("stamp")
        .and_then(|stamp| Some((stamp.get("time")?.as_i64()?, stamp.get("tie")?.as_u64()?)));
    if let (Some(stamp), true) = (stamp, map.len() == 2 && map.contains_key("value")) {
        holders.entry(stamp).or_default().push(path.to_owned());
        return;
    }
    for (key, child) in map {
        let child_path = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        registers(child, &child_path, holders);
    }
}

/// One `entity list` line (tab-separated).
fn list_line(source: EntitySource, item: &SdkItem) -> String {
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).map_or("-", String::as_str);
    let flag = |name: &str| item.get(name).and_then(|v| v.as_bool().ok()).copied().unwrap_or(false);
    let (kind, last, gone) = match source {
        EntitySource::Crm => (
            text("object_name"),
            text("last_event_type"),
            flag("voided").then_some("voided"),
        ),
        EntitySource::Activity => ("activity", text("last_action"), flag("deleted").then_some("deleted")),
    };
    let version = stored_number(item, VERSION).map_or_else(|| "-".to_owned(), |v| v.to_string());
    let mut line = format!(
        "{}\t{kind}\t{last}\t{version}\t{}",
        text("entity_id"),
        text("updated_at")
    );
    if let Some(gone) = gone {
        line.push('\t');
        line.push_str(gone);
    }
    line
}

fn json_lines(rows: &[BTreeMap<String, Value>]) -> Result<String, Failure> {
    let mut text = String::new();
    for row in rows {
        text.push_str(&serde_json::to_string(row)?);
        text.push('\n');
    }
    Ok(text)
}

/// A cell: strings as they are, other values as compact JSON, absent attributes empty.
fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

/// CSV (RFC 4180) of the rows: the source's columns, then CRM `fields.<name>` for every field
/// any row holds, in name order. `field_labels` and `last_raw` are in the JSON Lines export only.
fn csv_text(source: EntitySource, rows: &[BTreeMap<String, Value>]) -> Result<String, Failure> {
    let mut field_names: Vec<String> = rows
        .iter()
        .filter_map(|row| row.get("fields")?.as_object())
        .flat_map(|fields| fields.keys().cloned())
        .collect();
    field_names.sort();
    field_names.dedup();
    let mut writer = csv::Writer::from_writer(Vec::new());
    let header = source
        .columns()
        .iter()
        .map(|column| (*column).to_owned())
        .chain(field_names.iter().map(|name| format!("fields.{name}")));
    writer.write_record(header)?;
    for row in rows {
        let fields = row.get("fields").and_then(Value::as_object);
        let record = source
            .columns()
            .iter()
            .map(|column| cell(row.get(*column)))
            .chain(field_names.iter().map(|name| cell(fields.and_then(|f| f.get(name)))));
        writer.write_record(record)?;
    }
    let bytes = writer.into_inner().map_err(|e| e.to_string())?;
    Ok(String::from_utf8(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
    }

    #[test]
    fn csv_spreads_fields_quotes_and_leaves_absent_cells_empty() {
        let rows = [
            row(&[
                ("mid", "124".into()),
                ("entity_id", "A".into()),
                ("team_members", serde_json::json!(["u1", "u2"])),
                ("voided", false.into()),
                ("event_count", 2.into()),
                ("fields", serde_json::json!({"name": "Li, \"Lei\"", "score": 7})),
            ]),
            row(&[
                ("mid", "124".into()),
                ("entity_id", "B".into()),
                ("fields", serde_json::json!({"city": "上海"})),
            ]),
        ];
        let text = csv_text(EntitySource::Crm, &rows).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let header = EntitySource::Crm.columns().join(",") + ",fields.city,fields.name,fields.score";
        assert_eq!(lines[0], header);
        assert_eq!(
            lines[1],
            "124,A,,,,,,,,,,\"[\"\"u1\"\",\"\"u2\"\"]\",false,,,,,2,,,\"Li, \"\"Lei\"\"\",7"
        );
        assert_eq!(lines[2], "124,B,,,,,,,,,,,,,,,,,,上海,,");
    }

    #[test]
    fn registers_are_noted_under_the_stamp_that_wrote_them() {
        let state = serde_json::json!({
            "mid": "124",
            "owner": {"value": "u1", "stamp": {"time": 10, "tie": 1}},
            "fields": {
                "name": {"value": "x", "stamp": {"time": 20, "tie": 2}},
                "mobile": {"value": null, "stamp": {"time": 10, "tie": 1}},
            },
            "last": {"value": {"event_type": "object_update"}, "stamp": {"time": 20, "tie": 2}},
            "event_count": 2,
        });
        let mut holders = BTreeMap::new();
        registers(&state, "", &mut holders);
        assert_eq!(holders.len(), 2);
        assert_eq!(holders[&(10, 1)], ["fields.mobile", "owner"]);
        assert_eq!(holders[&(20, 2)], ["fields.name", "last"]);
    }
}
