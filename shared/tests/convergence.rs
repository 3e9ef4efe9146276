//! Convergence (contract 4), property-tested on realistic histories.
//!
//! Histories are generated as abstract events, rendered to the JSON bodies the vendors send and
//! run through the real pipeline (`Envelope::parse` → `CrmEvent::from_envelope` /
//! `SignedFields::extract` → `verify` → `ActivityEvent::from_envelope`). The expected item comes
//! from an independent oracle that sorts the abstract events by `(time, digest)` and folds them
//! with the contract's rules (docs/contract.md); it never calls `merge`.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use shared::activity::verify::{self as activity_verify, Freshness, FreshnessCheck, SignedFields};
use shared::activity::{ActivityEvent, ActivityState};
use shared::bookkeeping::{self, AppliedEvents, Registers};
use shared::clock::FixedClock;
use shared::crm::{CrmEvent, CrmState};
use shared::envelope::Envelope;
use shared::item::{AttrValue, Item};
use shared::json::canonical_json;
use shared::merge::{Delivery, Ledger, Mergeable};
use shared::secret::{Secret, SecretSet};
use shared::timefmt::SourceOffset;

const UPDATED_AT: &str = "2026-01-01T00:00:00Z";
const CASES: u32 = 1000;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        ..ProptestConfig::default()
    }
}

fn s(text: &str) -> AttrValue {
    AttrValue::S(text.to_owned())
}

// =============================================================================================
// CRM: abstract events

const MID: &str = "124";
const ENTITY: &str = "NttdW4NoJfD2cX6f7rg52f";
/// `create_time` 1677481345 is 2023-02-27 15:02:25 at +08:00; events fall within a few seconds,
/// so equal times (ties) are frequent.
const CRM_BASE: i64 = 1_677_481_345;
const CRM_SPREAD: i64 = 5;

const KINDS: [&str; 14] = [
    "object_create",
    "object_update",
    "object_update_status",
    "object_voids",
    "object_change_owner",
    "object_update_life_cycle",
    "object_add_notes",
    "object_add_team_member",
    "object_remove_team_member",
    "object_change_lead_pool",
    "object_restore",
    "object_relation",
    "object_source_info",
    "object_merge", // not documented: merged generically
];
/// Field names as sent; `" remark "` is read as `remark`.
const FIELD_KEYS: [&str; 7] = [
    "name",
    "email",
    "mobile",
    "company_name",
    "score",
    " remark ",
    "lead_pool",
];
const TEXTS: [&str; 3] = ["ceshi-webhook-001", "中山大学", "lead@example.com"];
const OWNERS: [&str; 3] = [
    "VYktMU2aAkS3ZHJAqNE5DA",
    "z5WbxXfykP8eURgcdmNSd4",
    "gycAMsX5cuFe5cR2JVcJoJ",
];
const LIFE: [&str; 3] = ["baby_lead", "mql", "sql"];
const POOLS: [&str; 3] = ["market", "sales", "service"];
const STATUSES: [&str; 3] = [
    "JfTaGpK8p52A3TNtgqrmGw",
    "oEuYhyaifNXjZZJNRZWTX3",
    "Kq2pPZr8TgJm1YwHcUe4Vb",
];
const MEMBERS: [&str; 3] = [
    "gycAMsX5cuFe5cR2JVcJoJ",
    "marQBXocGmDAgGPpt72btY",
    "Xw3LrTq9BsD1cZkYhN7uEa",
];
const BUSINESS: [(&str, &str); 2] = [
    ("FcKtzPvUzZ4dDEi7gNGZqa", "jeffery创建新的"),
    ("WNh7rwLXUQPFwACQ6EKPqD", "Authing"),
];

/// A `mapping_data` value.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    S(String),
    N(i64),
    Null,
    Empty,
}

impl Val {
    fn json(&self) -> Value {
        match self {
            Val::S(text) => json!(text),
            Val::N(n) => json!(n),
            Val::Null => Value::Null,
            Val::Empty => json!(""),
        }
    }

    /// What the item stores for it: `None` when cleared.
    fn attr(&self) -> Option<AttrValue> {
        match self {
            Val::S(text) => Some(s(text)),
            Val::N(n) => Some(AttrValue::N(n.to_string())),
            Val::Null | Val::Empty => None,
        }
    }

    fn text(&self) -> Option<&str> {
        match self {
            Val::S(text) => Some(text),
            _ => None,
        }
    }
}

/// A `mapping_data_text` entry.
#[derive(Debug, Clone)]
enum Label {
    Absent,
    Null,
    Str(String),
    /// `[before-label, after-label]`; the vendor writes `-` for "no value".
    Arr(String, String),
}

impl Label {
    fn after(&self) -> Option<&str> {
        match self {
            Label::Str(text) | Label::Arr(_, text) if !text.is_empty() => Some(text),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct FieldSpec {
    /// As sent (maybe with spaces around).
    key: String,
    /// `None`: the `[after]` form of a create.
    before: Option<Val>,
    after: Val,
    label: Label,
}

/// One CRM event, abstractly: what the oracle folds.
#[derive(Debug, Clone)]
struct CrmSpec {
    event_type: String,
    action_keyword: String,
    time: i64,
    time_as_string: bool,
    mid_as_number: bool,
    with_created_timestamp: bool,
    fields: Vec<FieldSpec>,
    /// `extra_data` entries besides the constant ones (owner, life_status, to_*, members, …).
    extra: Map<String, Value>,
}

/// Random ingredients of one event; [`build_crm`] turns them into a [`CrmSpec`] of the kind.
#[derive(Debug, Clone)]
struct CrmRaw {
    kind: usize,
    dt: i64,
    fields: Vec<(usize, Val, Val, Label)>,
    owner: Option<Val>,
    life: Option<Val>,
    business: Option<usize>,
    omni_empty: bool,
    target: usize,
    source: usize,
    members: Vec<usize>,
    members_as_string: bool,
    flags: [bool; 4],
}

fn val() -> impl Strategy<Value = Val> {
    prop_oneof![
        5 => (0..TEXTS.len()).prop_map(|i| Val::S(TEXTS[i].to_owned())),
        1 => (0i64..3).prop_map(Val::N),
        1 => Just(Val::Null),
        1 => Just(Val::Empty),
    ]
}

fn label() -> impl Strategy<Value = Label> {
    prop_oneof![
        1 => Just(Label::Absent),
        1 => Just(Label::Null),
        1 => Just(Label::Str(String::new())),
        3 => (0..TEXTS.len()).prop_map(|i| Label::Str(format!("{}标签", TEXTS[i]))),
        2 => (0..TEXTS.len(), prop_oneof![Just("-".to_owned()), Just(String::new()), Just("新值".to_owned())])
            .prop_map(|(i, after)| Label::Arr(format!("{}旧", TEXTS[i]), after)),
    ]
}

/// An `extra_data` snapshot string: a value, `null`, `""`, or absent.
fn snapshot(pool: &'static [&'static str; 3]) -> impl Strategy<Value = Option<Val>> {
    prop_oneof![
        4 => (0..3usize).prop_map(move |i| Some(Val::S(pool[i].to_owned()))),
        1 => Just(Some(Val::Null)),
        1 => Just(Some(Val::Empty)),
        1 => Just(None),
    ]
}

fn crm_raw() -> impl Strategy<Value = CrmRaw> {
    (
        (
            0..KINDS.len(),
            0..CRM_SPREAD,
            prop::collection::vec((0..FIELD_KEYS.len(), val(), val(), label()), 0..4),
        ),
        (
            snapshot(&OWNERS),
            snapshot(&LIFE),
            prop::option::of(0..BUSINESS.len()),
            any::<bool>(),
        ),
        (
            0..3usize,
            0..3usize,
            prop::collection::vec(0..MEMBERS.len(), 1..4),
            any::<bool>(),
            any::<[bool; 4]>(),
        ),
    )
        .prop_map(
            |(
                (kind, dt, fields),
                (owner, life, business, omni_empty),
                (target, source, members, members_as_string, flags),
            )| CrmRaw {
                kind,
                dt,
                fields,
                owner,
                life,
                business,
                omni_empty,
                target,
                source,
                members,
                members_as_string,
                flags,
            },
        )
}

fn insert_val(extra: &mut Map<String, Value>, key: &str, value: &Option<Val>) {
    if let Some(value) = value {
        extra.insert(key.to_owned(), value.json());
    }
}

fn build_crm(raw: CrmRaw, seq: usize) -> CrmSpec {
    let kind = KINDS[raw.kind];
    let [f0, f1, f2, f3] = raw.flags;
    let mut extra = Map::new();
    // Unique per event, as the sender's operator and timeline data make real events distinct.
    extra.insert("operator_id".into(), json!(20_000 + seq));
    extra.insert("operator_type".into(), json!(1));
    extra.insert("notes".into(), Value::Null);
    insert_val(&mut extra, "owner", &raw.owner);
    insert_val(&mut extra, "life_status", &raw.life);
    match raw.business {
        Some(i) => {
            extra.insert("business_type".into(), json!(BUSINESS[i].0));
            extra.insert("business_type_name".into(), json!(BUSINESS[i].1));
        }
        None => {
            extra.insert("business_type".into(), Value::Null);
        }
    }
    let omni = if raw.omni_empty { "" } else { "2GRhJU3V7VstF3SbdRS4MC" };
    extra.insert("lead_omni_user_uuid".into(), json!(omni));

    let mut action_keyword = kind.to_owned();
    let mut fields: Vec<FieldSpec> = Vec::new();
    let generic = |create: bool| -> Vec<FieldSpec> {
        let mut seen = BTreeSet::new();
        raw.fields
            .iter()
            .filter(|(key, ..)| seen.insert(FIELD_KEYS[*key].trim()))
            .map(|(key, before, after, label)| FieldSpec {
                key: FIELD_KEYS[*key].to_owned(),
                before: (!create).then(|| before.clone()),
                after: after.clone(),
                label: label.clone(),
            })
            .collect()
    };
    let change = |key: &str, before: Val, after: &str, label: &str| FieldSpec {
        key: key.to_owned(),
        before: Some(before),
        after: Val::S(after.to_owned()),
        label: Label::Str(label.to_owned()),
    };
    let other = (raw.target + 1 + raw.source % 2) % 3;
    match kind {
        "object_create" => fields = generic(true),
        "object_update" | "object_merge" => fields = generic(false),
        "object_update_status" => {
            let (from, to) = (STATUSES[other], STATUSES[raw.target]);
            extra.insert("from_leads_status".into(), json!(from));
            extra.insert("to_leads_status".into(), json!(to));
            fields.push(change("leads_status", Val::S(from.into()), to, "跟进中"));
        }
        "object_change_owner" => {
            let (from, to) = (OWNERS[other], OWNERS[raw.target]);
            action_keyword = if f0 { "auto_distribution" } else { "manual_distribution" }.to_owned();
            extra.insert("owner".into(), json!(to));
            extra.insert("former_owner".into(), if f1 { json!(from) } else { Value::Null });
            extra.insert("scene_type".into(), json!(if f0 { 1 } else { 2 }));
            let before = if f1 { Val::S(from.into()) } else { Val::Null };
            fields.push(change("owner", before, to, "李静"));
        }
        "object_update_life_cycle" => {
            let (from, to) = (LIFE[other], LIFE[raw.target]);
            extra.insert("from_life_status".into(), json!(from));
            extra.insert("to_life_status".into(), json!(to));
            extra.insert("life_status".into(), json!(to));
            fields.push(change("life_status", Val::S(from.into()), to, "市场认可线索"));
        }
        "object_change_lead_pool" => {
            let (from, to) = (POOLS[other], POOLS[raw.target]);
            extra.insert("from_lead_pool".into(), json!(from));
            // Some senders only say it in mapping_data.
            if f2 {
                extra.insert("to_lead_pool".into(), json!(to));
            }
            fields.push(change("lead_pool", Val::S(from.into()), to, "销售公海"));
        }
        "object_add_team_member" | "object_remove_team_member" => {
            let members: Vec<&str> = raw.members.iter().map(|&i| MEMBERS[i]).collect();
            let members = if raw.members_as_string {
                json!(members.join(","))
            } else {
                json!(members)
            };
            extra.insert("members".into(), members);
        }
        "object_add_notes" | "object_voids" => {
            extra.insert("notes".into(), json!(format!("备注 {seq}")));
        }
        "object_relation" => {
            let target = [
                "3VGd4ZWeERzvWVjb8F3AXu",
                "PeVWDitSr3bKt7GANbPVFH",
                "e9vMaiGWybEQ3Nc9xGgwV4",
            ][raw.target];
            extra.insert("target_object_id".into(), json!("629"));
            extra.insert("target_entity_id".into(), json!(target));
            extra.insert("target_object_name".into(), json!("account"));
            fields.push(change("account_id", Val::Empty, target, "中山大学"));
        }
        "object_source_info" => {
            let channel = ["wechat", "workwechat", "form"][raw.source];
            fields.push(change("source_channel", Val::Empty, channel, "微信公众号"));
        }
        "object_restore" => {}
        other => unreachable!("{other}"),
    }
    CrmSpec {
        event_type: kind.to_owned(),
        action_keyword,
        time: CRM_BASE + raw.dt,
        time_as_string: f3,
        mid_as_number: f1 && f2,
        with_created_timestamp: !(f0 && f3),
        fields,
        extra,
    }
}

fn local_time(time: i64) -> String {
    assert!((CRM_BASE..CRM_BASE + 30).contains(&time));
    format!("2023-02-27 15:02:{:02}", 25 + (time - CRM_BASE))
}

fn rfc3339_time(time: i64) -> String {
    format!("2023-02-27T15:02:{:02}+08:00", 25 + (time - CRM_BASE))
}

fn render_crm(spec: &CrmSpec) -> Value {
    let mut extra = spec.extra.clone();
    extra.insert("object_id".into(), json!("628"));
    extra.insert("object_name".into(), json!("lead"));
    extra.insert("entity_id".into(), json!(ENTITY));
    if spec.with_created_timestamp {
        extra.insert("created_timestamp".into(), json!(local_time(spec.time)));
    }
    let mut mapping = Map::new();
    let mut texts = Map::new();
    for field in &spec.fields {
        let value = match &field.before {
            None => json!([field.after.json()]),
            Some(before) => json!([before.json(), field.after.json()]),
        };
        mapping.insert(field.key.clone(), value);
        match &field.label {
            Label::Absent => {}
            Label::Null => {
                texts.insert(field.key.clone(), Value::Null);
            }
            Label::Str(text) => {
                texts.insert(field.key.clone(), json!(text));
            }
            Label::Arr(before, after) => {
                texts.insert(field.key.clone(), json!([before, after]));
            }
        }
    }
    extra.insert("mapping_data".into(), Value::Object(mapping));
    extra.insert("mapping_data_text".into(), Value::Object(texts));
    json!({
        "mid": if spec.mid_as_number { json!(124) } else { json!(MID) },
        "event_category": "object_v2",
        "event_type": spec.event_type,
        "action_keyword": spec.action_keyword,
        "create_time": if spec.time_as_string { json!(spec.time.to_string()) } else { json!(spec.time) },
        "extra_data": extra,
        "openplatform": "June",
    })
}

/// An event as delivered: its abstract form, body, and what the real pipeline made of it.
#[derive(Debug, Clone)]
struct CrmDelivery {
    spec: CrmSpec,
    body: String,
    event: CrmEvent,
}

fn parse_crm(body: &str) -> CrmEvent {
    let envelope = Envelope::parse(body.as_bytes()).expect("generated bodies are JSON objects");
    CrmEvent::from_envelope(envelope, SourceOffset::BEIJING).expect("generated bodies normalize")
}

fn deliver_crm(spec: CrmSpec) -> CrmDelivery {
    let body = serde_json::to_string(&render_crm(&spec)).unwrap();
    let event = parse_crm(&body);
    CrmDelivery { spec, body, event }
}

fn crm_history() -> impl Strategy<Value = Vec<CrmDelivery>> {
    prop::collection::vec(crm_raw(), 1..12).prop_map(|raws| {
        raws.into_iter()
            .enumerate()
            .map(|(seq, raw)| deliver_crm(build_crm(raw, seq)))
            .collect()
    })
}

// ---------------------------------------------------------------------------------------------
// CRM: the oracle

fn text_of(extra: &Map<String, Value>, key: &str) -> Option<String> {
    match extra.get(key)? {
        Value::String(text) if !text.trim().is_empty() => Some(text.trim().to_owned()),
        _ => None,
    }
}

/// The item contract 3.1 and 4 describe for this set of events, folded oldest to newest.
fn crm_oracle(deliveries: &[&CrmDelivery]) -> Item {
    let mut ordered: Vec<&CrmDelivery> = deliveries.to_vec();
    ordered.sort_by(|a, b| (a.spec.time, a.event.digest.as_str()).cmp(&(b.spec.time, b.event.digest.as_str())));
    ordered.dedup_by(|a, b| a.event.digest == b.event.digest);

    let mut fields: BTreeMap<String, (Val, Label)> = BTreeMap::new();
    let mut well_known: BTreeMap<&str, String> = BTreeMap::new();
    let mut team: BTreeMap<String, bool> = BTreeMap::new();
    let mut voided: Option<bool> = None;
    let mut created_at: Option<String> = None;
    for delivery in &ordered {
        let spec = &delivery.spec;
        let extra = &spec.extra;
        for field in &spec.fields {
            fields.insert(field.key.trim().to_owned(), (field.after.clone(), field.label.clone()));
        }
        let lead_pool_change = spec
            .fields
            .iter()
            .find(|f| f.key == "lead_pool")
            .and_then(|f| f.after.text());
        let sets = [
            ("owner", text_of(extra, "owner")),
            (
                "life_status",
                text_of(extra, "to_life_status").or_else(|| text_of(extra, "life_status")),
            ),
            (
                "lead_pool",
                text_of(extra, "to_lead_pool").or_else(|| lead_pool_change.map(str::to_owned)),
            ),
            ("leads_status", text_of(extra, "to_leads_status")),
            ("business_type", text_of(extra, "business_type")),
            ("business_type_name", text_of(extra, "business_type_name")),
            ("lead_omni_user_uuid", text_of(extra, "lead_omni_user_uuid")),
        ];
        for (name, value) in sets {
            if let Some(value) = value {
                well_known.insert(name, value);
            }
        }
        let present = match spec.event_type.as_str() {
            "object_add_team_member" => Some(true),
            "object_remove_team_member" => Some(false),
            _ => None,
        };
        if let Some(present) = present {
            let members: Vec<String> = match &extra["members"] {
                Value::String(list) => list.split(',').map(str::to_owned).collect(),
                Value::Array(list) => list.iter().map(|m| m.as_str().unwrap().to_owned()).collect(),
                other => panic!("{other}"),
            };
            for member in members {
                team.insert(member, present);
            }
        }
        match spec.event_type.as_str() {
            "object_voids" => voided = Some(true),
            "object_restore" => voided = Some(false),
            _ => {}
        }
        if spec.with_created_timestamp && created_at.is_none() {
            created_at = Some(rfc3339_time(spec.time));
        }
    }

    let newest = ordered.last().expect("at least one event");
    let mut item = Item::new();
    item.insert("mid".into(), s(MID));
    item.insert("entity_id".into(), s(ENTITY));
    item.insert("object_name".into(), s("lead"));
    item.insert("object_id".into(), s("628"));
    let values: BTreeMap<String, AttrValue> = fields
        .iter()
        .filter_map(|(name, (value, _))| Some((name.clone(), value.attr()?)))
        .collect();
    // A label describes a value: a cleared field has none, whatever the sender wrote for it.
    let labels: BTreeMap<String, AttrValue> = fields
        .iter()
        .filter(|(_, (value, _))| value.attr().is_some())
        .filter_map(|(name, (_, label))| Some((name.clone(), s(label.after()?))))
        .collect();
    item.insert("fields".into(), AttrValue::M(values));
    item.insert("field_labels".into(), AttrValue::M(labels));
    for (name, value) in well_known {
        item.insert(name.into(), s(&value));
    }
    let members: BTreeSet<String> = team
        .into_iter()
        .filter(|(_, present)| *present)
        .map(|(m, _)| m)
        .collect();
    if !members.is_empty() {
        item.insert("team_members".into(), AttrValue::SS(members));
    }
    if let Some(voided) = voided {
        item.insert("voided".into(), AttrValue::Bool(voided));
    }
    if let Some(created_at) = created_at {
        item.insert("created_at".into(), s(&created_at));
    }
    item.insert("last_event_type".into(), s(&newest.spec.event_type));
    item.insert("last_action_keyword".into(), s(&newest.spec.action_keyword));
    item.insert("event_time".into(), AttrValue::N(newest.spec.time.to_string()));
    item.insert("event_count".into(), AttrValue::N(ordered.len().to_string()));
    item.insert("updated_at".into(), s(UPDATED_AT));
    item.insert("last_raw".into(), s(&newest.body));
    item
}

fn crm_ledger<'a>(deliveries: impl IntoIterator<Item = &'a CrmDelivery>) -> Ledger<CrmState> {
    let mut ledger = Ledger::default();
    for delivery in deliveries {
        ledger.apply(&delivery.event);
    }
    ledger
}

fn crm_item(ledger: &Ledger<CrmState>) -> Item {
    ledger.state.as_ref().expect("a state").to_item(UPDATED_AT)
}

fn with_shuffle<T: Clone + std::fmt::Debug>(
    history: impl Strategy<Value = Vec<T>>,
) -> impl Strategy<Value = (Vec<T>, Vec<T>)> {
    history.prop_flat_map(|events| (Just(events.clone()), Just(events).prop_shuffle()))
}

/// Redeliveries: which events come again, and whether re-serialized (pretty, same canonical JSON).
fn redeliveries() -> impl Strategy<Value = Vec<(prop::sample::Index, bool)>> {
    prop::collection::vec((any::<prop::sample::Index>(), any::<bool>()), 1..8)
}

proptest! {
    #![proptest_config(config())]

    /// (d) As for CRM: each callback is merged into the state read back from the item and its
    /// bookkeeping, and after every delivery the item is the oracle's.
    #[test]
    fn activity_state_read_back_from_the_item_converges((_, shuffled) in with_shuffle(activity_history())) {
        let mut stored: Option<(AppliedEvents, ActivityState)> = None;
        for (n, delivery) in shuffled.iter().enumerate() {
            let (mut applied, state) = match stored.take() {
                Some((applied, state)) => (applied, Some(state)),
                None => (AppliedEvents::default(), None),
            };
            let merged = ActivityState::merge(state, &delivery.event);
            applied.record(delivery.event.stamp(), &merged);
            let (applied, read) = through_storage(&applied, &merged, |s| s.to_item(UPDATED_AT))?;
            let so_far: Vec<&ActDelivery> = shuffled[..=n].iter().collect();
            prop_assert_eq!(read.to_item(UPDATED_AT), activity_oracle(&so_far), "after {} deliveries", n + 1);
            stored = Some((applied, read));
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// (a) Any delivery order gives the same state and item, and that item is the oracle's.
    #[test]
    fn crm_any_order_converges((history, shuffled) in with_shuffle(crm_history())) {
        let in_order = crm_ledger(&history);
        let permuted = crm_ledger(&shuffled);
        prop_assert_eq!(&permuted.state, &in_order.state);
        prop_assert_eq!(crm_item(&permuted), crm_item(&in_order));
        let all: Vec<&CrmDelivery> = history.iter().collect();
        prop_assert_eq!(crm_item(&permuted), crm_oracle(&all));
    }

    /// (b) Events delivered more than once (byte for byte, or re-serialized) are duplicates and
    /// change nothing: the state is that of each event applied once.
    #[test]
    fn crm_redeliveries_change_nothing(
        (history, dups, order) in (crm_history(), redeliveries()).prop_flat_map(|(history, dups)| {
            let n = history.len() + dups.len();
            (Just(history), Just(dups), Just((0..n).collect::<Vec<usize>>()).prop_shuffle())
        })
    ) {
        let mut deliveries = history.clone();
        for (index, pretty) in &dups {
            let mut again = history[index.index(history.len())].clone();
            if *pretty {
                again.body = serde_json::to_string_pretty(&render_crm(&again.spec)).unwrap();
                again.event = parse_crm(&again.body);
            }
            deliveries.push(again);
        }
        let mut ledger = Ledger::<CrmState>::default();
        let mut duplicates = 0;
        for &i in &order {
            if ledger.apply(&deliveries[i].event) == Delivery::Duplicate {
                duplicates += 1;
            }
        }
        prop_assert_eq!(duplicates, dups.len());
        let once = crm_ledger(&history);
        let mut state = ledger.state.clone().unwrap();
        let expected = once.state.clone().unwrap();
        prop_assert_eq!(state.event_count, history.len() as u64);
        // Only `last_raw` may differ: it is whichever rendering of the newest event came first.
        prop_assert_eq!(
            canonical_json(&serde_json::from_str(&state.last_raw).unwrap()),
            canonical_json(&serde_json::from_str(&expected.last_raw).unwrap())
        );
        state.last_raw = expected.last_raw.clone();
        prop_assert_eq!(state, expected);
    }

    /// (c) A late older event never rolls a field back: after every delivery, in any order, the
    /// item is the oracle's for the events delivered so far.
    #[test]
    fn crm_late_events_never_roll_back((_, shuffled) in with_shuffle(crm_history())) {
        let mut ledger = Ledger::<CrmState>::default();
        for (n, delivery) in shuffled.iter().enumerate() {
            prop_assert_eq!(ledger.apply(&delivery.event), Delivery::Accepted);
            let so_far: Vec<&CrmDelivery> = shuffled[..=n].iter().collect();
            prop_assert_eq!(crm_item(&ledger), crm_oracle(&so_far), "after {} deliveries", n + 1);
        }
    }
}

/// What the store keeps of a state: its item and the bookkeeping, and nothing else. Writes both
/// and reads the state back from them, checking that the read-back state shows the same item.
fn through_storage<S: Registers + Clone>(
    applied: &AppliedEvents,
    state: &S,
    to_item: impl Fn(&S) -> Item,
) -> Result<(AppliedEvents, S), TestCaseError> {
    let item = to_item(state);
    let bytes = bookkeeping::encode(applied, state).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let (read_applied, read) =
        bookkeeping::decode::<S>(&bytes, &item).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&read_applied, applied);
    prop_assert_eq!(to_item(&read), item, "the state read back shows the same item");
    Ok((read_applied, read))
}

proptest! {
    #![proptest_config(config())]

    /// (d) The item plus its compact bookkeeping are the whole state: in any order, each event
    /// is merged into the state read back from the previous write, and after every delivery the
    /// item is the oracle's. Every applied event is in the record (the histories are within its
    /// bound).
    #[test]
    fn crm_state_read_back_from_the_item_converges((_, shuffled) in with_shuffle(crm_history())) {
        let mut stored: Option<(AppliedEvents, CrmState)> = None;
        for (n, delivery) in shuffled.iter().enumerate() {
            let (mut applied, state) = match stored.take() {
                Some((applied, state)) => (applied, Some(state)),
                None => (AppliedEvents::default(), None),
            };
            let stamp = delivery.event.stamp();
            prop_assert!(!applied.contains(&stamp), "a new event is not in the record");
            let merged = CrmState::merge(state, &delivery.event);
            applied.record(stamp, &merged);
            let (applied, read) = through_storage(&applied, &merged, |s| s.to_item(UPDATED_AT))?;
            let so_far: Vec<&CrmDelivery> = shuffled[..=n].iter().collect();
            prop_assert_eq!(read.to_item(UPDATED_AT), crm_oracle(&so_far), "after {} deliveries", n + 1);
            stored = Some((applied, read));
        }
        let (applied, _) = stored.expect("at least one event");
        for delivery in &shuffled {
            prop_assert!(applied.contains(&delivery.event.stamp()));
        }
    }
}

// =============================================================================================
// Activities: abstract events

const ACTIVITY_SECRET: &str = "dev-activity-secret";
const ACTIVITY_MID: &str = "124";
const ACTIVITY_ID: &str = "b80bb752931811eeaeb42ef5b77e53xx";
const ACTIVITY_BASE: i64 = 1_701_744_489;
const ACTIVITY_SPREAD: i64 = 4;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Action {
    Add,
    Edit,
    Delete,
}

impl Action {
    fn wire(self) -> &'static str {
        match self {
            Action::Add => "event/add",
            Action::Edit => "event/edit",
            Action::Delete => "event/delete",
        }
    }
}

/// A number as Lexiang sends it: absent, `null`, `""`, a number, or a numeric string.
#[derive(Debug, Clone)]
enum Num {
    Absent,
    Null,
    Empty,
    Int(i64),
    Text(i64),
}

impl Num {
    fn json(&self) -> Option<Value> {
        match self {
            Num::Absent => None,
            Num::Null => Some(Value::Null),
            Num::Empty => Some(json!("")),
            Num::Int(n) => Some(json!(n)),
            Num::Text(n) => Some(json!(n.to_string())),
        }
    }

    fn value(&self) -> Option<i64> {
        match self {
            Num::Int(n) | Num::Text(n) => Some(*n),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct ContentSpec {
    title: usize,
    location: usize,
    summary: bool,
    day: u8,
    attend_method: bool,
    participant_count_limit: Num,
    /// 0/1, false/true or "0"/"1".
    enable_random_extract: Option<(bool, u8)>,
    privilege_type: Num,
    privilege: Vec<(usize, usize, bool)>,
    logo: bool,
    team_id: Option<bool>,
    category: bool,
    roadmap_id: Num,
}

#[derive(Debug, Clone)]
struct ActSpec {
    action: Action,
    timestamp: i64,
    timestamp_as_string: bool,
    escape_slashes: bool,
    nonce: String,
    operator: usize,
    operator_name: bool,
    content: Option<ContentSpec>,
}

const TITLES: [&str; 3] = ["新建活动回调", "新建活动回调（地点已变更）", ""];
const LOCATIONS: [&str; 3] = ["北京", "上海市徐汇区虹漕路88号", ""];
const PRIVILEGE_TYPES: [&str; 3] = ["department", "staff", "contacttag"];
const PRIVILEGE_IDS: [&str; 3] = ["1", "StaffID1", "f31993b6a29511ecabb6e6ac26dccxxx"];

fn num(values: impl Strategy<Value = i64> + Clone) -> impl Strategy<Value = Num> {
    prop_oneof![
        Just(Num::Absent),
        Just(Num::Null),
        Just(Num::Empty),
        values.clone().prop_map(Num::Int),
        values.prop_map(Num::Text),
    ]
}

fn content_spec() -> impl Strategy<Value = ContentSpec> {
    (
        (
            0..TITLES.len(),
            0..LOCATIONS.len(),
            any::<bool>(),
            5u8..8,
            any::<bool>(),
        ),
        (num(0i64..3), prop::option::of((any::<bool>(), 0u8..3)), num(0i64..3)),
        (
            prop::collection::vec((0..3usize, 0..3usize, any::<bool>()), 0..4),
            any::<bool>(),
            prop::option::of(any::<bool>()),
            any::<bool>(),
            num(0i64..3),
        ),
    )
        .prop_map(
            |(
                (title, location, summary, day, attend_method),
                (participant_count_limit, enable_random_extract, privilege_type),
                (privilege, logo, team_id, category, roadmap_id),
            )| ContentSpec {
                title,
                location,
                summary,
                day,
                attend_method,
                participant_count_limit,
                enable_random_extract,
                privilege_type,
                privilege,
                logo,
                team_id,
                category,
                roadmap_id,
            },
        )
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![2 => Just(Action::Add), 3 => Just(Action::Edit), 1 => Just(Action::Delete)]
}

fn act_spec(seq: usize) -> impl Strategy<Value = ActSpec> {
    (
        action(),
        0..ACTIVITY_SPREAD,
        any::<[bool; 3]>(),
        1..3usize,
        content_spec(),
    )
        .prop_map(
            move |(action, dt, [as_string, escape, named], operator, content)| ActSpec {
                action,
                timestamp: ACTIVITY_BASE + dt,
                timestamp_as_string: as_string,
                escape_slashes: escape,
                nonce: format!("{seq:08x}-57e9-4049-8724-f86f4e5f0fxx"),
                operator,
                operator_name: named,
                content: (action != Action::Delete).then_some(content),
            },
        )
}

fn local_day(day: u8, hms: &str) -> String {
    format!("2023-12-{day:02} {hms}")
}

fn rfc3339_day(day: u8, hms: &str) -> String {
    format!("2023-12-{day:02}T{hms}+08:00")
}

fn render_activity(spec: &ActSpec) -> String {
    let mut attributes = Map::new();
    attributes.insert("event_id".into(), json!(ACTIVITY_ID));
    if let Some(c) = &spec.content {
        let mut put = |key: &str, value: Value| {
            attributes.insert(key.to_owned(), value);
        };
        put("title", json!(TITLES[c.title]));
        put("summary", if c.summary { json!("参加活动") } else { Value::Null });
        put("content", json!("<p>参加活动</p>"));
        put("location", json!(LOCATIONS[c.location]));
        put("started_at", json!(local_day(c.day, "10:47:00")));
        put("ended_at", json!(local_day(c.day + 2, "10:47:00")));
        put("closed_at", json!(local_day(c.day + 1, "10:47:00")));
        put("created_at", json!(local_day(c.day, "10:48:07")));
        put("attend_start_at", json!(local_day(c.day, "10:47:00")));
        put(
            "attend_end_at",
            if c.attend_method {
                json!(local_day(c.day + 2, "10:47:00"))
            } else {
                json!("")
            },
        );
        put("attend_method", json!(if c.attend_method { "qrcode" } else { "" }));
        put("app_source_type", json!("event"));
        if let Some(value) = c.participant_count_limit.json() {
            put("participant_count_limit", value);
        }
        if let Some((on, form)) = c.enable_random_extract {
            let value = match form {
                0 => json!(u8::from(on)),
                1 => json!(on),
                _ => json!(u8::from(on).to_string()),
            };
            put("enable_random_extract", value);
        }
        if let Some(value) = c.privilege_type.json() {
            put("privilege_type", value);
        }
        let privilege: Vec<Value> = c
            .privilege
            .iter()
            .map(|&(kind, id, numeric)| {
                let id = if numeric && kind == 0 {
                    json!(1)
                } else {
                    json!(PRIVILEGE_IDS[id])
                };
                json!({"type": PRIVILEGE_TYPES[kind], "id": id})
            })
            .collect();
        put("privilege", json!(privilege));
        put(
            "logo",
            json!(if c.logo {
                "https://lexiangla.com/assets/2023/12/b80bb752931811eeaeb42ef5b77e53xx_cover.png"
            } else {
                ""
            }),
        );
        match c.team_id {
            Some(spaced) => put(
                if spaced { "team_id " } else { "team_id" },
                json!("30fff19ebae611ecad5bee5022d7cxxx"),
            ),
            None => put("team_id ", json!("")),
        }
        put(
            "category_id",
            json!(if c.category {
                "5939f99e9f4211eca5914ac6b68baxxx"
            } else {
                ""
            }),
        );
        if let Some(value) = c.roadmap_id.json() {
            put("roadmap_id", value);
        }
    }
    let secret = Secret::new(ACTIVITY_SECRET);
    let mut body = Map::new();
    body.insert("nonce".into(), json!(spec.nonce));
    body.insert(
        "timestamp".into(),
        if spec.timestamp_as_string {
            json!(spec.timestamp.to_string())
        } else {
            json!(spec.timestamp)
        },
    );
    body.insert(
        "sign".into(),
        json!(activity_verify::sign(&spec.nonce, &secret, spec.timestamp)),
    );
    body.insert("action".into(), json!(spec.action.wire()));
    body.insert("attributes".into(), Value::Object(attributes));
    body.insert("operator".into(), json!(format!("StaffID{}", spec.operator)));
    if spec.operator_name {
        body.insert(
            "operator_info".into(),
            json!({"name": format!("员工{}", spec.operator)}),
        );
    }
    let text = serde_json::to_string(&Value::Object(body)).unwrap();
    // PHP-style `\/` escapes: valid JSON, read back as `/`.
    if spec.escape_slashes {
        text.replace('/', "\\/")
    } else {
        text
    }
}

#[derive(Debug, Clone)]
struct ActDelivery {
    spec: ActSpec,
    body: String,
    event: ActivityEvent,
}

fn parse_activity(body: &str) -> ActivityEvent {
    let envelope = Envelope::parse(body.as_bytes()).expect("generated bodies are JSON objects");
    let signed = SignedFields::extract(&envelope.object).expect("signed fields");
    let secrets = SecretSet::parse(ACTIVITY_SECRET).unwrap();
    activity_verify::verify(
        &signed,
        &secrets,
        &FixedClock(signed.timestamp + 1),
        FreshnessCheck::Enforced(Freshness::DEFAULT),
    )
    .expect("generated bodies verify");
    ActivityEvent::from_envelope(
        envelope,
        ACTIVITY_MID,
        &signed.nonce,
        signed.timestamp,
        SourceOffset::BEIJING,
    )
    .expect("generated bodies normalize")
}

fn deliver_activity(spec: ActSpec) -> ActDelivery {
    let body = render_activity(&spec);
    let event = parse_activity(&body);
    ActDelivery { spec, body, event }
}

fn activity_history() -> impl Strategy<Value = Vec<ActDelivery>> {
    (1..10usize)
        .prop_flat_map(|n| (0..n).map(act_spec).collect::<Vec<_>>())
        .prop_map(|specs| specs.into_iter().map(deliver_activity).collect())
}

// ---------------------------------------------------------------------------------------------
// Activities: the oracle

fn content_item(item: &mut Item, c: &ContentSpec) {
    let mut put = |name: &str, value: AttrValue| {
        item.insert(name.to_owned(), value);
    };
    if !TITLES[c.title].is_empty() {
        put("title", s(TITLES[c.title]));
    }
    if c.summary {
        put("summary", s("参加活动"));
    }
    put("content", s("<p>参加活动</p>"));
    if !LOCATIONS[c.location].is_empty() {
        put("location", s(LOCATIONS[c.location]));
    }
    put("started_at", s(&rfc3339_day(c.day, "10:47:00")));
    put("ended_at", s(&rfc3339_day(c.day + 2, "10:47:00")));
    put("closed_at", s(&rfc3339_day(c.day + 1, "10:47:00")));
    put("created_at", s(&rfc3339_day(c.day, "10:48:07")));
    put("attend_start_at", s(&rfc3339_day(c.day, "10:47:00")));
    if c.attend_method {
        put("attend_end_at", s(&rfc3339_day(c.day + 2, "10:47:00")));
        put("attend_method", s("qrcode"));
    }
    put("app_source_type", s("event"));
    if let Some(limit) = c.participant_count_limit.value() {
        put("participant_count_limit", AttrValue::N(limit.to_string()));
    }
    if let Some((on, _)) = c.enable_random_extract {
        put("enable_random_extract", AttrValue::Bool(on));
    }
    if let Some(code) = c.privilege_type.value() {
        put(
            "privilege_type",
            s(["public", "private", "creator_only"][code as usize]),
        );
    }
    let mut privilege: BTreeMap<String, Vec<AttrValue>> = BTreeMap::new();
    for &(kind, id, numeric) in &c.privilege {
        let id = if numeric && kind == 0 { "1" } else { PRIVILEGE_IDS[id] };
        privilege
            .entry(PRIVILEGE_TYPES[kind].to_owned())
            .or_default()
            .push(s(id));
    }
    put(
        "privilege",
        AttrValue::M(privilege.into_iter().map(|(k, ids)| (k, AttrValue::L(ids))).collect()),
    );
    if c.logo {
        put(
            "logo",
            s("https://lexiangla.com/assets/2023/12/b80bb752931811eeaeb42ef5b77e53xx_cover.png"),
        );
    }
    if c.team_id.is_some() {
        put("team_id", s("30fff19ebae611ecad5bee5022d7cxxx"));
    }
    if c.category {
        put("category_id", s("5939f99e9f4211eca5914ac6b68baxxx"));
    }
    if let Some(roadmap) = c.roadmap_id.value().filter(|id| *id != 0) {
        put("roadmap_id", AttrValue::N(roadmap.to_string()));
    }
}

/// contract 3.2 and 4: the whole item follows the newest event; a delete is a tombstone. The
/// tombstone keeps the content of the newest add/edit, so it still says what was deleted.
fn activity_oracle(deliveries: &[&ActDelivery]) -> Item {
    let mut ordered: Vec<&ActDelivery> = deliveries.to_vec();
    ordered
        .sort_by(|a, b| (a.spec.timestamp, a.event.digest.as_str()).cmp(&(b.spec.timestamp, b.event.digest.as_str())));
    let newest = ordered.last().expect("at least one event");
    let content = ordered.iter().rev().find_map(|d| d.spec.content.as_ref());
    let mut item = Item::new();
    item.insert("mid".into(), s(ACTIVITY_MID));
    item.insert("entity_id".into(), s(ACTIVITY_ID));
    if let Some(content) = content {
        content_item(&mut item, content);
    }
    item.insert("operator".into(), s(&format!("StaffID{}", newest.spec.operator)));
    if newest.spec.operator_name {
        item.insert("operator_name".into(), s(&format!("员工{}", newest.spec.operator)));
    }
    item.insert("last_action".into(), s(newest.spec.action.wire()));
    item.insert("event_time".into(), AttrValue::N(newest.spec.timestamp.to_string()));
    item.insert("deleted".into(), AttrValue::Bool(newest.spec.action == Action::Delete));
    item.insert("updated_at".into(), s(UPDATED_AT));
    item.insert("last_raw".into(), s(&newest.body));
    item
}

fn activity_ledger<'a>(deliveries: impl IntoIterator<Item = &'a ActDelivery>) -> Ledger<ActivityState> {
    let mut ledger = Ledger::default();
    for delivery in deliveries {
        ledger.apply(&delivery.event);
    }
    ledger
}

fn activity_item(ledger: &Ledger<ActivityState>) -> Item {
    ledger.state.as_ref().expect("a state").to_item(UPDATED_AT)
}

/// A history whose newest event is a delete, strictly later than every add and edit.
fn deleted_history() -> impl Strategy<Value = (Vec<ActDelivery>, usize)> {
    (activity_history(), any::<bool>())
        .prop_flat_map(|(mut history, named)| {
            let newest = history.iter().map(|d| d.spec.timestamp).max().unwrap();
            let delete = ActSpec {
                action: Action::Delete,
                timestamp: newest + 1,
                timestamp_as_string: false,
                escape_slashes: true,
                nonce: "431d9767-bbde-4575-b52e-36b738a9d6cb".into(),
                operator: 1,
                operator_name: named,
                content: None,
            };
            history.push(deliver_activity(delete));
            let n = history.len();
            (Just(history).prop_shuffle(), Just(n))
        })
        .prop_map(|(history, _)| {
            let at = history
                .iter()
                .position(|d| d.spec.action == Action::Delete && d.spec.nonce.starts_with("431d"))
                .unwrap();
            (history, at)
        })
}

proptest! {
    #![proptest_config(config())]

    /// (a) Whole-item last writer wins: any delivery order gives the same state and item, the
    /// oracle's.
    #[test]
    fn activity_any_order_converges((history, shuffled) in with_shuffle(activity_history())) {
        let in_order = activity_ledger(&history);
        let permuted = activity_ledger(&shuffled);
        prop_assert_eq!(&permuted.state, &in_order.state);
        prop_assert_eq!(activity_item(&permuted), activity_item(&in_order));
        let all: Vec<&ActDelivery> = history.iter().collect();
        prop_assert_eq!(activity_item(&permuted), activity_oracle(&all));
    }

    /// (b) Redeliveries (same body) are duplicates and change nothing; after every delivery the
    /// item is the oracle's for the distinct events so far, so late edits never win.
    #[test]
    fn activity_redeliveries_and_late_edits(
        (history, dups, order) in (activity_history(), redeliveries()).prop_flat_map(|(history, dups)| {
            let n = history.len() + dups.len();
            (Just(history), Just(dups), Just((0..n).collect::<Vec<usize>>()).prop_shuffle())
        })
    ) {
        let mut deliveries = history.clone();
        for (index, _) in &dups {
            deliveries.push(history[index.index(history.len())].clone());
        }
        let mut ledger = Ledger::<ActivityState>::default();
        let mut seen: Vec<&ActDelivery> = Vec::new();
        let mut duplicates = 0;
        for &i in &order {
            let delivery = &deliveries[i];
            let first = !seen.iter().any(|d| d.event.digest == delivery.event.digest);
            let outcome = ledger.apply(&delivery.event);
            prop_assert_eq!(outcome, if first { Delivery::Accepted } else { Delivery::Duplicate });
            if first {
                seen.push(delivery);
            } else {
                duplicates += 1;
            }
            prop_assert_eq!(activity_item(&ledger), activity_oracle(&seen));
        }
        prop_assert_eq!(duplicates, dups.len());
        prop_assert_eq!(&ledger.state, &activity_ledger(&history).state);
    }

    /// (c) A delete newer than every add and edit leaves `deleted = true` whatever the order; a
    /// delete for an activity never seen creates the tombstone, which older events don't undo.
    #[test]
    fn activity_delete_is_a_tombstone((history, delete_at) in deleted_history()) {
        let mut ledger = Ledger::<ActivityState>::default();
        let mut deleted_seen = false;
        for (n, delivery) in history.iter().enumerate() {
            ledger.apply(&delivery.event);
            deleted_seen |= n == delete_at;
            let item = activity_item(&ledger);
            // Before the delete, the random history (which has deletes of its own) decides.
            if deleted_seen {
                prop_assert_eq!(item["deleted"].clone(), AttrValue::Bool(true), "after {} deliveries", n + 1);
                prop_assert_eq!(item["event_time"].clone(), AttrValue::N(history[delete_at].spec.timestamp.to_string()));
            }
            if n == 0 && deleted_seen {
                // The delete came first: a tombstone for an unknown activity, with no content.
                prop_assert_eq!(item["entity_id"].clone(), s(ACTIVITY_ID));
                prop_assert_eq!(item["last_action"].clone(), s("event/delete"));
                prop_assert!(!item.contains_key("title") && !item.contains_key("privilege"));
            }
        }
        prop_assert!(ledger.state.as_ref().unwrap().deleted());
    }
}

/// The delete fixture alone, for an activity never seen: the tombstone item.
#[test]
fn a_delete_for_an_unknown_activity_creates_the_tombstone() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/activity/event_delete.json");
    let body = std::fs::read_to_string(path).unwrap();
    let state = ActivityState::merge(None, &parse_activity(&body));
    let item = state.to_item(UPDATED_AT);
    assert_eq!(item["deleted"], AttrValue::Bool(true));
    assert_eq!(item["entity_id"], s(ACTIVITY_ID));
    assert_eq!(item["last_raw"], s(&body));
    assert!(!item.contains_key("title"));
}
