//! The expected state of a tenant's tables, computed from the bodies the senders deliver and the
//! contract's rules alone (contract 3 and 4, docs/items.md): it reads the bodies with `serde_json`
//! and never calls the model crate, so the suites that compare against it do not take the code
//! under test as their own oracle.
//!
//! What it models, straight from the rules:
//! - an event's identity is the SHA-256 of its canonical JSON (keys sorted, no whitespace), and
//!   its place in the order is `(time, first 8 bytes of that digest as a big-endian number)`;
//! - CRM: last writer wins per field and per well-known attribute, `team_members` per member,
//!   `voided` by the newest void/restore, `created_at` from the oldest event that carries
//!   `created_timestamp`, the newest event's type, keyword, time and raw body;
//! - CRM duplicates: an item remembers the 128 newest applied events plus every event one of its
//!   values (a cleared field and a removed member included) still comes from; a redelivery of a
//!   remembered event changes nothing, one of a forgotten event is merged again (no value
//!   changes, `event_count` and `version` grow);
//! - activities: the whole content follows the newest add/edit, `last_action`, `operator`,
//!   `operator_name` and `event_time` the newest event, a delete is a tombstone; a callback whose
//!   nonce was recorded with the same body (the same canonical JSON) is a duplicate, with another
//!   body it is refused (`replayed_nonce`); neither changes anything. A nonce recorded at another
//!   tenant is not modelled: one oracle is one tenant;
//! - `version`: one per write, that is per event merged; `format`: 2.
//!
//! Deliveries are applied in the order given: past the bound of 128 events what is a duplicate
//! depends on the order, below it the items do not.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::history::Source;

/// How many applied events a CRM item remembers at least (docs/items.md, "Bound").
pub const RECORD_BOUND: usize = 128;

/// The storage format every entity item is written in (docs/items.md).
pub const FORMAT: &str = "2";

pub type SdkItem = HashMap<String, AttributeValue>;

/// An event's place in the order: its time, then the tie-break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    pub time: i64,
    pub tie: u64,
}

impl Stamp {
    /// The key [`crate::tables::record_keys`] gives a CRM item's record entry.
    pub fn record_key(&self) -> String {
        format!("{}:{:016x}", self.time, self.tie)
    }
}

/// What the service answers a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Accepted,
    Duplicate,
    /// 401 `replayed_nonce`: a callback whose nonce the tenant recorded with another body
    /// (contract 2.2). Nothing changes.
    ReplayedNonce,
}

// ---------------------------------------------------------------------------------------------
// Identity

/// The canonical JSON of a value: object keys sorted at every depth, no whitespace, numbers and
/// strings as `serde_json` writes them compactly.
pub fn canonical_json(value: &Value) -> String {
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                out.push('{');
                for (i, (key, item)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(key.clone()).to_string());
                    out.push(':');
                    write(item, out);
                }
                out.push('}');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

/// The SHA-256 of a body's canonical JSON.
pub fn digest(body: &Value) -> [u8; 32] {
    Sha256::digest(canonical_json(body).as_bytes()).into()
}

fn tie(digest: &[u8; 32]) -> u64 {
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

// ---------------------------------------------------------------------------------------------
// Reading bodies the way the contract describes (contract 3.1: empty strings count as absent, keys
// are trimmed of surrounding whitespace)

/// The value under `key` (keys compared trimmed), `null` and `""` read as absent. Of several keys
/// that are `key` once trimmed, the one whose text as sent sorts last wins (contract 3.1).
fn present<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object
        .iter()
        .filter(|(name, _)| name.trim() == key)
        .max_by(|(a, _), (b, _)| a.cmp(b))
        .map(|(_, value)| value)
        .filter(|value| !is_blank(value))
}

fn is_blank(value: &Value) -> bool {
    matches!(value, Value::Null) || value.as_str() == Some("")
}

/// A string attribute: a non-empty string, as sent.
fn text(object: &Map<String, Value>, key: &str) -> Option<String> {
    present(object, key)?.as_str().map(str::to_owned)
}

/// An identifier: a string (trimmed, blank is absent) or an integer.
fn id(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

fn id_of(object: &Map<String, Value>, key: &str) -> Option<String> {
    id(present(object, key)?)
}

/// An integer sent as a number or a numeric string.
fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn object_of<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Map<String, Value>> {
    present(object, key)?.as_object()
}

/// A zone-less local time `YYYY-MM-DD HH:MM:SS` (or with `T`) at the sources' offset, +08:00.
fn local_time(text: &str) -> Option<String> {
    let text = text.trim();
    let bytes = text.as_bytes();
    let shape_ok = bytes.len() == 19
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            10 => *b == b' ' || *b == b'T',
            13 | 16 => *b == b':',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok {
        return None;
    }
    let part = |range: std::ops::Range<usize>| text[range].parse::<u32>().expect("digits");
    let (month, day, hour, minute, second) = (part(5..7), part(8..10), part(11..13), part(14..16), part(17..19));
    let valid = (1..=12).contains(&month) && (1..=31).contains(&day) && hour < 24 && minute < 60 && second < 60;
    valid.then(|| format!("{}T{}+08:00", &text[..10], &text[11..]))
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A JSON value as an attribute (a field value of a CRM item).
fn attribute(value: &Value) -> AttributeValue {
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(number) => n(number),
        Value::String(text) => s(text),
        Value::Array(items) => AttributeValue::L(items.iter().map(attribute).collect()),
        Value::Object(map) => AttributeValue::M(map.iter().map(|(k, v)| (k.clone(), attribute(v))).collect()),
    }
}

// ---------------------------------------------------------------------------------------------
// CRM

/// A field as one event sets it: the value after (`None` when cleared) and the after-label.
type FieldChange = (Option<Value>, Option<String>);

/// One CRM event as the contract reads it.
#[derive(Debug, Clone)]
struct CrmEvent {
    mid: String,
    entity_id: String,
    stamp: Stamp,
    event_type: String,
    action_keyword: String,
    object_name: Option<String>,
    object_id: Option<String>,
    created_at: Option<String>,
    /// Field → (value after, `None` when cleared; after-label).
    changes: BTreeMap<String, FieldChange>,
    well_known: Vec<(&'static str, String)>,
    /// `Some(true)` for members added, `Some(false)` removed.
    membership: Option<bool>,
    members: BTreeSet<String>,
    voided: Option<bool>,
    raw: String,
}

fn label(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Array(items) => match items.last()? {
            last if is_blank(last) => None,
            Value::String(text) => Some(text.clone()),
            Value::Number(number) => Some(number.to_string()),
            _ => None,
        },
        _ => None,
    }
}

impl CrmEvent {
    fn read(raw: &str) -> Self {
        let body: Value = serde_json::from_str(raw).expect("a CRM body is JSON");
        let top = body.as_object().expect("a CRM body is an object");
        let extra = object_of(top, "extra_data").expect("a CRM body has extra_data");
        let event_type = text(top, "event_type").expect("a CRM body has an event_type");
        let mut changes = BTreeMap::new();
        if let Some(mapping) = object_of(extra, "mapping_data") {
            let labels = object_of(extra, "mapping_data_text");
            for (field, value) in mapping {
                let values = value.as_array().expect("mapping_data values are arrays");
                let after = values.last().expect("[after] or [before, after]");
                let after = (!is_blank(after)).then(|| after.clone());
                let label = labels.and_then(|labels| present(labels, field.trim())).and_then(label);
                changes.insert(field.trim().to_owned(), (after, label));
            }
        }
        let changed_to = |field: &str| {
            changes
                .get(field)
                .and_then(|(after, _)| after.as_ref())
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let well_known = [
            ("owner", id_of(extra, "owner")),
            (
                "life_status",
                text(extra, "to_life_status").or_else(|| text(extra, "life_status")),
            ),
            (
                "lead_pool",
                text(extra, "to_lead_pool").or_else(|| changed_to("lead_pool")),
            ),
            ("leads_status", id_of(extra, "to_leads_status")),
            ("business_type", id_of(extra, "business_type")),
            ("business_type_name", text(extra, "business_type_name")),
            ("lead_omni_user_uuid", id_of(extra, "lead_omni_user_uuid")),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
        .collect();
        let membership = match event_type.as_str() {
            "object_add_team_member" => Some(true),
            "object_remove_team_member" => Some(false),
            _ => None,
        };
        let members: BTreeSet<String> = match (membership, present(extra, "members")) {
            (Some(_), Some(Value::String(list))) => list.split(',').map(|m| m.trim().to_owned()).collect(),
            (Some(_), Some(Value::Array(items))) => items
                .iter()
                .filter_map(Value::as_str)
                .map(|m| m.trim().to_owned())
                .collect(),
            _ => BTreeSet::new(),
        };
        let members = members.into_iter().filter(|m| !m.is_empty()).collect();
        let voided = match event_type.as_str() {
            "object_voids" => Some(true),
            "object_restore" => Some(false),
            _ => None,
        };
        CrmEvent {
            mid: id_of(top, "mid").expect("a CRM body has a mid"),
            entity_id: id_of(extra, "entity_id").expect("a CRM body names its entity"),
            stamp: Stamp {
                time: present(top, "create_time")
                    .and_then(int)
                    .expect("a CRM body has a create_time"),
                tie: tie(&digest(&body)),
            },
            action_keyword: text(top, "action_keyword").unwrap_or_else(|| event_type.clone()),
            event_type,
            object_name: text(extra, "object_name"),
            object_id: id_of(extra, "object_id"),
            created_at: present(extra, "created_timestamp")
                .and_then(Value::as_str)
                .and_then(local_time),
            changes,
            well_known,
            membership,
            members,
            voided,
            raw: raw.to_owned(),
        }
    }
}

/// A value and the stamp of the event it comes from.
#[derive(Debug, Clone, PartialEq)]
struct Held<T> {
    value: T,
    stamp: Stamp,
}

/// Offers `value` to a last-writer-wins register: kept when its event is newer (`newest`) or
/// older (`!newest`, for `created_at`) than the one the register holds.
fn offer<T>(slot: &mut Option<Held<T>>, value: T, stamp: Stamp, newest: bool) {
    let wins = match slot {
        None => true,
        Some(held) if newest => stamp > held.stamp,
        Some(held) => stamp < held.stamp,
    };
    if wins {
        *slot = Some(Held { value, stamp });
    }
}

fn offer_at<T>(map: &mut BTreeMap<String, Held<T>>, key: &str, value: T, stamp: Stamp) {
    let mut slot = map.remove(key);
    offer(&mut slot, value, stamp, true);
    map.insert(key.to_owned(), slot.expect("offered"));
}

/// What the contract says one CRM item holds.
#[derive(Debug, Clone)]
struct Lead {
    mid: String,
    entity_id: String,
    object_name: Option<Held<String>>,
    object_id: Option<Held<String>>,
    created_at: Option<Held<String>>,
    well_known: BTreeMap<&'static str, Held<String>>,
    fields: BTreeMap<String, Held<FieldChange>>,
    team: BTreeMap<String, Held<bool>>,
    voided: Option<Held<bool>>,
    /// The newest event: type, keyword, raw body.
    newest: Held<(String, String, String)>,
    event_count: u64,
    version: u64,
    /// The applied events the item remembers.
    record: BTreeSet<Stamp>,
}

impl Lead {
    fn new(event: &CrmEvent) -> Self {
        Lead {
            mid: event.mid.clone(),
            entity_id: event.entity_id.clone(),
            object_name: None,
            object_id: None,
            created_at: None,
            well_known: BTreeMap::new(),
            fields: BTreeMap::new(),
            team: BTreeMap::new(),
            voided: None,
            newest: Held {
                value: (
                    event.event_type.clone(),
                    event.action_keyword.clone(),
                    event.raw.clone(),
                ),
                stamp: event.stamp,
            },
            event_count: 0,
            version: 0,
            record: BTreeSet::new(),
        }
    }

    fn deliver(&mut self, event: &CrmEvent) -> Answer {
        if self.record.contains(&event.stamp) {
            return Answer::Duplicate;
        }
        let stamp = event.stamp;
        self.event_count += 1;
        self.version += 1;
        let newest = (
            event.event_type.clone(),
            event.action_keyword.clone(),
            event.raw.clone(),
        );
        let mut slot = Some(self.newest.clone());
        offer(&mut slot, newest, stamp, true);
        self.newest = slot.expect("offered");
        if let Some(name) = &event.object_name {
            offer(&mut self.object_name, name.clone(), stamp, true);
        }
        if let Some(id) = &event.object_id {
            offer(&mut self.object_id, id.clone(), stamp, true);
        }
        if let Some(created_at) = &event.created_at {
            offer(&mut self.created_at, created_at.clone(), stamp, false);
        }
        for (name, value) in &event.well_known {
            let mut slot = self.well_known.remove(name);
            offer(&mut slot, value.clone(), stamp, true);
            self.well_known.insert(name, slot.expect("offered"));
        }
        for (field, change) in &event.changes {
            offer_at(&mut self.fields, field, change.clone(), stamp);
        }
        if let Some(present) = event.membership {
            for member in &event.members {
                offer_at(&mut self.team, member, present, stamp);
            }
        }
        if let Some(voided) = event.voided {
            offer(&mut self.voided, voided, stamp, true);
        }
        self.remember(stamp);
        Answer::Accepted
    }

    /// Records `stamp`, then forgets the events older than the newest [`RECORD_BOUND`] that no
    /// value comes from.
    fn remember(&mut self, stamp: Stamp) {
        self.record.insert(stamp);
        let Some(&oldest_kept) = self.record.iter().rev().nth(RECORD_BOUND - 1) else {
            return;
        };
        let referenced = self.referenced();
        self.record
            .retain(|held| *held >= oldest_kept || referenced.contains(held));
    }

    /// The events some value of the item comes from (cleared fields and removed members too).
    fn referenced(&self) -> BTreeSet<Stamp> {
        let singles = [&self.object_name, &self.object_id, &self.created_at]
            .into_iter()
            .flatten()
            .map(|held| held.stamp);
        singles
            .chain(self.well_known.values().map(|held| held.stamp))
            .chain(self.fields.values().map(|held| held.stamp))
            .chain(self.team.values().map(|held| held.stamp))
            .chain(self.voided.iter().map(|held| held.stamp))
            .chain([self.newest.stamp])
            .collect()
    }

    /// The item, `updated_at` and `merge` aside.
    fn item(&self) -> SdkItem {
        let mut item = SdkItem::new();
        item.insert("mid".into(), s(&self.mid));
        item.insert("entity_id".into(), s(&self.entity_id));
        for (name, slot) in [
            ("object_name", &self.object_name),
            ("object_id", &self.object_id),
            ("created_at", &self.created_at),
        ] {
            if let Some(held) = slot {
                item.insert(name.into(), s(&held.value));
            }
        }
        for (name, held) in &self.well_known {
            item.insert((*name).into(), s(&held.value));
        }
        // A cleared field shows neither a value nor a label (contract 3.1).
        let shown = || {
            self.fields
                .iter()
                .filter_map(|(name, held)| Some((name, held.value.0.as_ref()?, &held.value.1)))
        };
        let fields = shown()
            .map(|(name, value, _)| (name.clone(), attribute(value)))
            .collect();
        let labels = shown()
            .filter_map(|(name, _, label)| Some((name.clone(), s(label.as_ref()?))))
            .collect();
        item.insert("fields".into(), AttributeValue::M(fields));
        item.insert("field_labels".into(), AttributeValue::M(labels));
        let members: Vec<String> = self
            .team
            .iter()
            .filter(|(_, held)| held.value)
            .map(|(member, _)| member.clone())
            .collect();
        if !members.is_empty() {
            item.insert("team_members".into(), AttributeValue::Ss(members));
        }
        if let Some(held) = &self.voided {
            item.insert("voided".into(), AttributeValue::Bool(held.value));
        }
        let (event_type, keyword, raw) = &self.newest.value;
        item.insert("last_event_type".into(), s(event_type));
        item.insert("last_action_keyword".into(), s(keyword));
        item.insert("event_time".into(), n(self.newest.stamp.time));
        item.insert("last_raw".into(), s(raw));
        item.insert("event_count".into(), n(self.event_count));
        item.insert("version".into(), n(self.version));
        item.insert("format".into(), n(FORMAT));
        item
    }
}

// ---------------------------------------------------------------------------------------------
// Activities

#[derive(Debug, Clone)]
struct Callback {
    nonce: String,
    digest: [u8; 32],
    stamp: Stamp,
    action: String,
    entity_id: Option<String>,
    /// The content attributes of an add or edit.
    content: Option<SdkItem>,
    operator: Option<String>,
    operator_name: Option<String>,
    raw: String,
}

impl Callback {
    fn read(raw: &str) -> Self {
        let body: Value = serde_json::from_str(raw).expect("a callback is JSON");
        let top = body.as_object().expect("a callback is an object");
        let digest = digest(&body);
        let action = text(top, "action").expect("a callback has an action");
        let empty = Map::new();
        let attrs = object_of(top, "attributes").unwrap_or(&empty);
        let content = matches!(action.as_str(), "event/add" | "event/edit").then(|| content(attrs));
        Callback {
            nonce: text(top, "nonce").expect("a callback has a nonce"),
            stamp: Stamp {
                time: present(top, "timestamp")
                    .and_then(int)
                    .expect("a callback has a timestamp"),
                tie: tie(&digest),
            },
            digest,
            entity_id: id_of(attrs, "event_id"),
            action,
            content,
            operator: id_of(top, "operator"),
            operator_name: object_of(top, "operator_info").and_then(|info| text(info, "name")),
            raw: raw.to_owned(),
        }
    }

    /// Add, edit and delete name an activity; other actions are only recorded by their nonce.
    fn activity(&self) -> Option<&str> {
        matches!(self.action.as_str(), "event/add" | "event/edit" | "event/delete")
            .then_some(self.entity_id.as_deref())
            .flatten()
    }
}

/// The attributes contract 3.2 derives from an add's or edit's `attributes`.
fn content(attrs: &Map<String, Value>) -> SdkItem {
    let mut item = SdkItem::new();
    for name in [
        "title",
        "summary",
        "content",
        "location",
        "attend_method",
        "app_source_type",
        "logo",
    ] {
        if let Some(value) = text(attrs, name) {
            item.insert(name.into(), s(&value));
        }
    }
    for name in [
        "started_at",
        "ended_at",
        "closed_at",
        "created_at",
        "attend_start_at",
        "attend_end_at",
    ] {
        if let Some(value) = present(attrs, name).and_then(Value::as_str).and_then(local_time) {
            item.insert(name.into(), s(&value));
        }
    }
    for name in ["team_id", "category_id"] {
        if let Some(value) = id_of(attrs, name) {
            item.insert(name.into(), s(&value));
        }
    }
    if let Some(limit) = present(attrs, "participant_count_limit").and_then(int) {
        item.insert("participant_count_limit".into(), n(limit));
    }
    if let Some(roadmap) = present(attrs, "roadmap_id").and_then(int).filter(|id| *id != 0) {
        item.insert("roadmap_id".into(), n(roadmap));
    }
    let flag = match present(attrs, "enable_random_extract") {
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::Number(number)) => match number.as_i64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        Some(Value::String(text)) => match text.trim() {
            "0" | "false" => Some(false),
            "1" | "true" => Some(true),
            _ => None,
        },
        _ => None,
    };
    if let Some(flag) = flag {
        item.insert("enable_random_extract".into(), AttributeValue::Bool(flag));
    }
    let privilege_type = match present(attrs, "privilege_type").and_then(int) {
        Some(0) => Some("public"),
        Some(1) => Some("private"),
        Some(2) => Some("creator_only"),
        _ => None,
    };
    if let Some(kind) = privilege_type {
        item.insert("privilege_type".into(), s(kind));
    }
    let mut privilege: BTreeMap<String, Vec<AttributeValue>> = BTreeMap::new();
    for entry in present(attrs, "privilege")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(entry) = entry.as_object() else { continue };
        if let (Some(kind), Some(member)) = (text(entry, "type"), id_of(entry, "id")) {
            privilege.entry(kind).or_default().push(s(&member));
        }
    }
    let privilege = privilege
        .into_iter()
        .map(|(kind, ids)| (kind, AttributeValue::L(ids)))
        .collect();
    item.insert("privilege".into(), AttributeValue::M(privilege));
    item
}

#[derive(Debug, Clone)]
struct Activity {
    mid: String,
    entity_id: String,
    content: Option<Held<SdkItem>>,
    /// The newest event: action, operator, operator name, raw body.
    newest: Held<(String, Option<String>, Option<String>, String)>,
    version: u64,
}

impl Activity {
    fn item(&self) -> SdkItem {
        let mut item = self.content.as_ref().map(|held| held.value.clone()).unwrap_or_default();
        item.insert("mid".into(), s(&self.mid));
        item.insert("entity_id".into(), s(&self.entity_id));
        let (action, operator, operator_name, raw) = &self.newest.value;
        if let Some(operator) = operator {
            item.insert("operator".into(), s(operator));
        }
        if let Some(name) = operator_name {
            item.insert("operator_name".into(), s(name));
        }
        item.insert("last_action".into(), s(action));
        item.insert("event_time".into(), n(self.newest.stamp.time));
        item.insert("deleted".into(), AttributeValue::Bool(action == "event/delete"));
        item.insert("last_raw".into(), s(raw));
        item.insert("version".into(), n(self.version));
        item.insert("format".into(), n(FORMAT));
        item
    }
}

// ---------------------------------------------------------------------------------------------
// The tenant

/// The expected content of one tenant's tables after a sequence of deliveries.
#[derive(Debug, Clone)]
pub struct Oracle {
    mid: String,
    leads: BTreeMap<String, Lead>,
    activities: BTreeMap<String, Activity>,
    /// Nonce → digest of the callback recorded with it.
    nonces: BTreeMap<String, [u8; 32]>,
}

impl Oracle {
    /// For tenant `mid` (the tenant of the activity URL; CRM bodies name their own).
    pub fn new(mid: &str) -> Self {
        Oracle {
            mid: mid.to_owned(),
            leads: BTreeMap::new(),
            activities: BTreeMap::new(),
            nonces: BTreeMap::new(),
        }
    }

    /// Applies one delivery and says how the service answers it.
    pub fn deliver(&mut self, source: Source, body: &str) -> Answer {
        match source {
            Source::Crm => {
                let event = CrmEvent::read(body);
                assert_eq!(event.mid, self.mid, "a CRM body of another tenant");
                let lead = self
                    .leads
                    .entry(event.entity_id.clone())
                    .or_insert_with(|| Lead::new(&event));
                lead.deliver(&event)
            }
            Source::Activity => self.deliver_callback(body),
        }
    }

    fn deliver_callback(&mut self, body: &str) -> Answer {
        let callback = Callback::read(body);
        if let Some(digest) = self.nonces.get(&callback.nonce) {
            return if digest == &callback.digest {
                Answer::Duplicate
            } else {
                Answer::ReplayedNonce
            };
        }
        self.nonces.insert(callback.nonce.clone(), callback.digest);
        let Some(entity_id) = callback.activity() else {
            return Answer::Accepted;
        };
        let newest = (
            callback.action.clone(),
            callback.operator.clone(),
            callback.operator_name.clone(),
            callback.raw.clone(),
        );
        let activity = self.activities.entry(entity_id.to_owned()).or_insert_with(|| Activity {
            mid: self.mid.clone(),
            entity_id: entity_id.to_owned(),
            content: None,
            newest: Held {
                value: newest.clone(),
                stamp: callback.stamp,
            },
            version: 0,
        });
        activity.version += 1;
        let mut slot = Some(activity.newest.clone());
        offer(&mut slot, newest, callback.stamp, true);
        activity.newest = slot.expect("offered");
        if let Some(content) = callback.content {
            offer(&mut activity.content, content, callback.stamp, true);
        }
        Answer::Accepted
    }

    /// Every entity item, by source and entity id, without `updated_at` (the time of the write,
    /// which no history decides) and `merge` (the encoding of the record; what it holds is
    /// compared through [`Oracle::record_keys`]). `team_members` is in sorted order.
    pub fn items(&self) -> BTreeMap<(Source, String), SdkItem> {
        let leads = self
            .leads
            .iter()
            .map(|(id, lead)| ((Source::Crm, id.clone()), lead.item()));
        let activities = self
            .activities
            .iter()
            .map(|(id, activity)| ((Source::Activity, id.clone()), activity.item()));
        leads.chain(activities).collect()
    }

    /// What the store records per event: the entries of each CRM item's record of applied
    /// events, and the nonce of each recorded callback.
    pub fn record_keys(&self) -> BTreeSet<(Source, String)> {
        let crm = self
            .leads
            .values()
            .flat_map(|lead| lead.record.iter().map(|stamp| (Source::Crm, stamp.record_key())));
        let nonces = self.nonces.keys().map(|nonce| (Source::Activity, nonce.clone()));
        crm.chain(nonces).collect()
    }

    /// Whether a callback with this nonce was recorded.
    pub fn knows_nonce(&self, nonce: &str) -> bool {
        self.nonces.contains_key(nonce)
    }

    /// Every nonce record of the tenant, by nonce: its key, the tenant and the SHA-256 of the
    /// recorded callback's canonical JSON in lowercase hex (`body_digest`). Without `replay_scope`
    /// (which names the secret list that verified the callback, not decided by its body) and
    /// `expires_at` (a time of the clock).
    pub fn nonce_records(&self) -> BTreeMap<String, SdkItem> {
        self.nonces
            .iter()
            .map(|(nonce, digest)| {
                let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
                let record = SdkItem::from([
                    ("mid".to_owned(), s(&self.mid)),
                    ("nonce".to_owned(), s(nonce)),
                    ("tenant".to_owned(), s(&self.mid)),
                    ("body_digest".to_owned(), s(&hex)),
                ]);
                (nonce.clone(), record)
            })
            .collect()
    }

    /// The events one CRM item remembers, oldest first.
    pub fn crm_record(&self, entity_id: &str) -> Vec<Stamp> {
        self.leads
            .get(entity_id)
            .map(|lead| lead.record.iter().copied().collect())
            .unwrap_or_default()
    }
}

/// The stamp of a CRM body: `(create_time, tie-break)`.
pub fn crm_stamp(body: &str) -> Stamp {
    CrmEvent::read(body).stamp
}

/// The tenant a CRM body names (`mid`).
pub fn crm_mid(body: &str) -> String {
    CrmEvent::read(body).mid
}

/// The nonce of a callback body.
pub fn callback_nonce(body: &str) -> String {
    Callback::read(body).nonce
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(time: i64, extra: Value) -> String {
        let mut extra = extra;
        extra["entity_id"] = json!("E1");
        json!({"mid": "124", "event_type": "object_update", "create_time": time, "extra_data": extra}).to_string()
    }

    fn field(oracle: &Oracle, name: &str) -> Option<AttributeValue> {
        let item = &oracle.items()[&(Source::Crm, "E1".to_owned())];
        match &item["fields"] {
            AttributeValue::M(fields) => fields.get(name).cloned(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let value: Value = serde_json::from_str(r#"{ "b": [1, {"d": 2, "c": "\/"}], "a": null }"#).unwrap();
        assert_eq!(canonical_json(&value), r#"{"a":null,"b":[1,{"c":"/","d":2}]}"#);
    }

    #[test]
    fn a_late_older_event_fills_but_never_rolls_back() {
        let newer = body(20, json!({"mapping_data": {"name": ["a", "new"]}}));
        let older = body(10, json!({"mapping_data": {"name": ["", "old"], "email": ["x@y"]}}));
        let mut oracle = Oracle::new("124");
        assert_eq!(oracle.deliver(Source::Crm, &newer), Answer::Accepted);
        assert_eq!(oracle.deliver(Source::Crm, &older), Answer::Accepted);
        assert_eq!(oracle.deliver(Source::Crm, &older), Answer::Duplicate);
        assert_eq!(field(&oracle, "name"), Some(s("new")));
        assert_eq!(field(&oracle, "email"), Some(s("x@y")));
        let item = &oracle.items()[&(Source::Crm, "E1".to_owned())];
        assert_eq!(item["event_count"], n(2));
        assert_eq!(item["version"], n(2));
        assert_eq!(item["event_time"], n(20));
        assert_eq!(item["last_raw"], s(&newer));
    }

    #[test]
    fn past_the_bound_a_forgotten_event_is_merged_again_and_changes_only_the_counts() {
        let mut oracle = Oracle::new("124");
        let first = body(1, json!({"mapping_data": {"name": ["a"]}}));
        oracle.deliver(Source::Crm, &first);
        for time in 2..=(RECORD_BOUND as i64 + 1) {
            oracle.deliver(
                Source::Crm,
                &body(time, json!({"mapping_data": {"name": [time.to_string()]}})),
            );
        }
        assert_eq!(oracle.crm_record("E1").len(), RECORD_BOUND);
        assert!(
            !oracle.crm_record("E1").contains(&crm_stamp(&first)),
            "the oldest is forgotten"
        );
        let before = oracle.items();
        assert_eq!(oracle.deliver(Source::Crm, &first), Answer::Accepted);
        let mut after = oracle.items();
        let item = after.get_mut(&(Source::Crm, "E1".to_owned())).unwrap();
        assert_eq!(item["event_count"], n(RECORD_BOUND + 2));
        assert_eq!(item["version"], n(RECORD_BOUND + 2));
        item.insert("event_count".into(), n(RECORD_BOUND + 1));
        item.insert("version".into(), n(RECORD_BOUND + 1));
        assert_eq!(after, before, "no value changes");
    }

    #[test]
    fn an_event_a_value_comes_from_is_never_forgotten() {
        let mut oracle = Oracle::new("124");
        let first = body(1, json!({"owner": "O1"}));
        oracle.deliver(Source::Crm, &first);
        for time in 2..=(RECORD_BOUND as i64 + 10) {
            oracle.deliver(
                Source::Crm,
                &body(time, json!({"mapping_data": {"name": [time.to_string()]}})),
            );
        }
        assert!(oracle.crm_record("E1").contains(&crm_stamp(&first)));
        assert_eq!(oracle.deliver(Source::Crm, &first), Answer::Duplicate);
        // Kept besides the 128 newest, not instead of the oldest of them.
        assert_eq!(oracle.crm_record("E1").len(), RECORD_BOUND + 1);
        let oldest_of_the_newest = body(11, json!({"mapping_data": {"name": ["11"]}}));
        assert_eq!(oracle.deliver(Source::Crm, &oldest_of_the_newest), Answer::Duplicate);
    }

    #[test]
    fn an_activity_delete_is_a_tombstone_an_older_edit_does_not_undo() {
        let callback = |action: &str, time: i64, nonce: &str, title: &str| {
            json!({"nonce": nonce, "timestamp": time, "sign": "x", "action": action,
                   "attributes": {"event_id": "A1", "title": title, "privilege": [{"type": "staff", "id": 7}]}})
            .to_string()
        };
        let mut oracle = Oracle::new("124");
        oracle.deliver(Source::Activity, &callback("event/add", 10, "n1", "first"));
        oracle.deliver(Source::Activity, &callback("event/delete", 30, "n2", ""));
        oracle.deliver(Source::Activity, &callback("event/edit", 20, "n3", "edited"));
        assert_eq!(
            oracle.deliver(Source::Activity, &callback("event/edit", 20, "n3", "edited")),
            Answer::Duplicate
        );
        let item = &oracle.items()[&(Source::Activity, "A1".to_owned())];
        assert_eq!(item["deleted"], AttributeValue::Bool(true));
        assert_eq!(item["title"], s("edited"), "the tombstone keeps the newest content");
        assert_eq!(item["version"], n(3));
        assert_eq!(
            item["privilege"],
            AttributeValue::M([("staff".to_owned(), AttributeValue::L(vec![s("7")]))].into())
        );
    }

    #[test]
    fn a_nonce_again_with_another_body_is_refused_and_changes_nothing() {
        let add = json!({"nonce": "n1", "timestamp": 10, "sign": "x", "action": "event/add",
                         "attributes": {"event_id": "A1", "title": "first"}});
        let mut oracle = Oracle::new("124");
        assert_eq!(oracle.deliver(Source::Activity, &add.to_string()), Answer::Accepted);
        let (items, records) = (oracle.items(), oracle.record_keys());
        let pretty = serde_json::to_string_pretty(&add).unwrap();
        assert_eq!(oracle.deliver(Source::Activity, &pretty), Answer::Duplicate);
        let mut copy = add.clone();
        copy["attributes"]["title"] = json!("replayed");
        assert_eq!(
            oracle.deliver(Source::Activity, &copy.to_string()),
            Answer::ReplayedNonce
        );
        copy["action"] = json!("doc/add");
        assert_eq!(
            oracle.deliver(Source::Activity, &copy.to_string()),
            Answer::ReplayedNonce
        );
        assert_eq!((oracle.items(), oracle.record_keys()), (items, records));
    }
}
