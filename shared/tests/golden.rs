//! Golden files: every vendor fixture, normalized and turned into the item it produces alone,
//! compared with `fixtures/golden/<crm|activity>/<name>.json`; and the whole history of the
//! mid-124 lead replayed through a ledger.
//!
//! After an intended change, regenerate with
//!     UPDATE_GOLDEN=1 cargo test -p shared --test golden
//! and review the diff of `fixtures/golden/` before committing it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use shared::activity::verify::{self as activity_verify, Freshness, FreshnessCheck, SignedFields};
use shared::activity::{ActivityEvent, ActivityState};
use shared::clock::FixedClock;
use shared::crm::{CrmEvent, CrmState};
use shared::envelope::Envelope;
use shared::item::{AttrValue, Item};
use shared::merge::{Delivery, Ledger, Mergeable};
use shared::secret::SecretSet;
use shared::timefmt::SourceOffset;

/// The `updated_at` every golden item is built with.
const UPDATED_AT: &str = "2026-01-01T00:00:00Z";
/// The secret the activity fixtures are signed with.
const ACTIVITY_SECRET: &str = "dev-activity-secret";
/// The tenant the activity fixtures are posted for (it is not in their bodies).
const ACTIVITY_MID: &str = "124";
const CRM_FIXTURES: usize = 18;
const ACTIVITY_FIXTURES: usize = 4;
const HISTORY_MID: &str = "124";
const HISTORY_ENTITY: &str = "NttdW4NoJfD2cX6f7rg52f";
const HISTORY_GOLDEN: &str = "_history_124.json";
const REGENERATE: &str = "UPDATE_GOLDEN=1 cargo test -p shared --test golden";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// The `.json` files of `fixtures/<kind>`, sorted by name.
fn fixture_files(kind: &str) -> Vec<PathBuf> {
    let dir = fixtures().join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
}

fn name_of(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn updating() -> bool {
    std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1")
}

// ---------------------------------------------------------------------------------------------
// Normalization of one fixture

fn crm_event(text: &str) -> CrmEvent {
    let envelope = Envelope::parse(text.as_bytes()).expect("fixture is a JSON object");
    CrmEvent::from_envelope(envelope, SourceOffset::BEIJING).expect("fixture normalizes")
}

fn activity_event(text: &str) -> ActivityEvent {
    let envelope = Envelope::parse(text.as_bytes()).expect("fixture is a JSON object");
    let signed = SignedFields::extract(&envelope.object).expect("fixture carries nonce, timestamp, sign");
    let secrets = SecretSet::parse(ACTIVITY_SECRET).unwrap();
    activity_verify::verify(
        &signed,
        &secrets,
        &FixedClock(signed.timestamp),
        FreshnessCheck::Enforced(Freshness::DEFAULT),
    )
    .unwrap_or_else(|e| panic!("fixture must be signed with {ACTIVITY_SECRET:?}: {e}"));
    ActivityEvent::from_envelope(
        envelope,
        ACTIVITY_MID,
        &signed.nonce,
        signed.timestamp,
        SourceOffset::BEIJING,
    )
    .expect("fixture normalizes")
}

fn item_json(item: &Item) -> Value {
    serde_json::to_value(item).expect("items serialize")
}

fn crm_golden(text: &str) -> (Value, Item) {
    let event = crm_event(text);
    let item = CrmState::merge(None, &event).to_item(UPDATED_AT);
    let golden = json!({"event": serde_json::to_value(&event).unwrap(), "item": item_json(&item)});
    (golden, item)
}

fn activity_golden(text: &str) -> (Value, Option<Item>) {
    let event = activity_event(text);
    let item = event
        .action
        .names_an_activity()
        .then(|| ActivityState::merge(None, &event).to_item(UPDATED_AT));
    let golden = json!({
        "event": serde_json::to_value(&event).unwrap(),
        "item": item.as_ref().map_or(Value::Null, item_json),
    });
    (golden, item)
}

// ---------------------------------------------------------------------------------------------
// Comparison with readable hints

/// The JSON-pointer-like path of the first difference between `expected` and `actual`.
fn first_difference(path: &str, expected: &Value, actual: &Value) -> Option<String> {
    let shown = |v: Option<&Value>| v.map_or_else(|| "<absent>".to_owned(), |v| truncate(&v.to_string()));
    match (expected, actual) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter().find_map(|key| {
                let here = format!("{path}/{key}");
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => first_difference(&here, x, y),
                    (x, y) => Some(format!("{here}: golden {} but got {}", shown(x), shown(y))),
                }
            })
        }
        (Value::Array(a), Value::Array(b)) => {
            let found = a
                .iter()
                .zip(b)
                .enumerate()
                .find_map(|(i, (x, y))| first_difference(&format!("{path}/{i}"), x, y));
            found.or_else(|| {
                (a.len() != b.len()).then(|| format!("{path}: golden has {} elements but got {}", a.len(), b.len()))
            })
        }
        (a, b) if a == b => None,
        (a, b) => Some(format!(
            "{}: golden {} but got {}",
            if path.is_empty() { "/" } else { path },
            shown(Some(a)),
            shown(Some(b))
        )),
    }
}

fn truncate(text: &str) -> String {
    const MAX: usize = 160;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    }
}

/// Compares `actual` with the golden file at `path` (or writes it under `UPDATE_GOLDEN=1`).
/// Returns a description of the mismatch, if any.
fn check_golden(path: &Path, actual: &Value) -> Option<String> {
    let pretty = format!("{}\n", serde_json::to_string_pretty(actual).unwrap());
    if updating() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, pretty).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return None;
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return Some(format!("{}: golden file is missing", path.display()));
    };
    let expected: Value = match serde_json::from_str(&text) {
        Ok(value) => value,
        Err(e) => return Some(format!("{}: golden file is not JSON: {e}", path.display())),
    };
    first_difference("", &expected, actual).map(|diff| format!("{}: first difference at {diff}", path.display()))
}

fn fail_on(mismatches: Vec<String>) {
    assert!(
        mismatches.is_empty(),
        "{} golden file(s) differ from what the model produces:\n  {}\n\
         If the change is intended, regenerate with\n    {REGENERATE}\n\
         and review `git diff fixtures/golden` before committing.",
        mismatches.len(),
        mismatches.join("\n  ")
    );
}

fn golden_dir(kind: &str) -> PathBuf {
    fixtures().join("golden").join(kind)
}

/// Golden files whose fixture is gone are stale and fail the test (so are left-over renames).
fn stale_goldens(kind: &str, fixtures: &[PathBuf], extra: &[&str]) -> Vec<String> {
    let names: BTreeSet<String> = fixtures
        .iter()
        .map(|p| name_of(p))
        .chain(extra.iter().map(|s| s.to_string()))
        .collect();
    let Ok(entries) = std::fs::read_dir(golden_dir(kind)) else {
        return Vec::new();
    };
    entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| !names.contains(&name_of(path)))
        .map(|path| format!("{}: golden file has no fixture any more; delete it", path.display()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Golden tests

#[test]
fn crm_fixtures_match_their_golden_files() {
    let files = fixture_files("crm");
    assert_eq!(
        files.len(),
        CRM_FIXTURES,
        "fixtures/crm: expected {CRM_FIXTURES} fixtures, found {files:?}"
    );
    let mut mismatches = Vec::new();
    for path in &files {
        let text = read(path);
        let (golden, item) = crm_golden(&text);
        // Facts that hold for every single-event item, whatever the golden says.
        assert_eq!(
            item.get("last_raw"),
            Some(&AttrValue::S(text.clone())),
            "{}: last_raw",
            path.display()
        );
        assert_eq!(
            item.get("event_count"),
            Some(&AttrValue::N("1".into())),
            "{}: event_count",
            path.display()
        );
        assert_eq!(
            item.get("updated_at"),
            Some(&AttrValue::S(UPDATED_AT.into())),
            "{}",
            path.display()
        );
        mismatches.extend(check_golden(&golden_dir("crm").join(name_of(path)), &golden));
    }
    mismatches.extend(stale_goldens("crm", &files, &[HISTORY_GOLDEN]));
    fail_on(mismatches);
}

#[test]
fn activity_fixtures_match_their_golden_files() {
    let files = fixture_files("activity");
    assert_eq!(
        files.len(),
        ACTIVITY_FIXTURES,
        "fixtures/activity: expected {ACTIVITY_FIXTURES} fixtures, found {files:?}"
    );
    let mut mismatches = Vec::new();
    for path in &files {
        let text = read(path);
        let (golden, item) = activity_golden(&text);
        if let Some(item) = &item {
            assert_eq!(
                item.get("last_raw"),
                Some(&AttrValue::S(text.clone())),
                "{}: last_raw",
                path.display()
            );
            assert_eq!(
                item.get("mid"),
                Some(&AttrValue::S(ACTIVITY_MID.into())),
                "{}: mid",
                path.display()
            );
        }
        mismatches.extend(check_golden(&golden_dir("activity").join(name_of(path)), &golden));
    }
    mismatches.extend(stale_goldens("activity", &files, &[]));
    fail_on(mismatches);
}

#[test]
fn golden_comparison_names_the_first_differing_value() {
    let golden = json!({"item": {"fields": {"M": {"name": {"S": "a"}}}, "tags": [1, 2]}});
    let changed = json!({"item": {"fields": {"M": {"name": {"S": "b"}}}, "tags": [1, 2]}});
    assert_eq!(
        first_difference("", &golden, &changed).unwrap(),
        r#"/item/fields/M/name/S: golden "a" but got "b""#
    );
    let shorter = json!({"item": {"fields": {"M": {}}, "tags": [1]}});
    assert_eq!(
        first_difference("", &golden, &shorter).unwrap(),
        r#"/item/fields/M/name: golden {"S":"a"} but got <absent>"#
    );
    let fewer = json!({"item": {"fields": {"M": {"name": {"S": "a"}}}, "tags": [1]}});
    assert_eq!(
        first_difference("", &golden, &fewer).unwrap(),
        "/item/tags: golden has 2 elements but got 1"
    );
    assert_eq!(first_difference("", &golden, &golden.clone()), None);
}

// ---------------------------------------------------------------------------------------------
// The mid-124 lead, replayed whole

/// `extra_data.<key>` of a fixture, as a string.
fn extra_str(file: &str, key: &str) -> String {
    let value: Value = serde_json::from_str(&read(&fixtures().join("crm").join(file))).unwrap();
    value["extra_data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("{file}: extra_data.{key}"))
        .to_owned()
}

fn extra_list(file: &str, key: &str) -> BTreeSet<String> {
    let value: Value = serde_json::from_str(&read(&fixtures().join("crm").join(file))).unwrap();
    let list = value["extra_data"][key]
        .as_array()
        .unwrap_or_else(|| panic!("{file}: extra_data.{key}"));
    list.iter().map(|v| v.as_str().unwrap().to_owned()).collect()
}

fn s(value: &str) -> AttrValue {
    AttrValue::S(value.to_owned())
}

fn history() -> Vec<(String, String, CrmEvent)> {
    fixture_files("crm")
        .into_iter()
        .map(|path| {
            let text = read(&path);
            let event = crm_event(&text);
            (name_of(&path), text, event)
        })
        .filter(|(_, _, event)| event.mid == HISTORY_MID && event.entity_id == HISTORY_ENTITY)
        .collect()
}

fn replay<'a>(events: impl IntoIterator<Item = &'a CrmEvent>) -> Ledger<CrmState> {
    let mut ledger = Ledger::default();
    for event in events {
        assert_eq!(ledger.apply(event), Delivery::Accepted);
    }
    ledger
}

#[test]
fn the_whole_history_of_lead_124_converges_to_its_current_state() {
    let history = history();
    let names: Vec<&str> = history.iter().map(|(name, _, _)| name.as_str()).collect();
    assert_eq!(history.len(), 15, "the mid-124 lead's history: {names:?}");

    // File order (by name), which is far from chronological.
    let mut ledger = replay(history.iter().map(|(_, _, event)| event));
    let state = ledger.state.clone().expect("a state");
    let item = state.to_item(UPDATED_AT);

    let newest = history.iter().max_by_key(|(_, _, event)| event.stamp()).unwrap();
    assert_eq!(
        newest.0, "lead_unknown_event_type.json",
        "the newest event of the history"
    );

    let owner = extra_str("lead_object_change_owner_auto.json", "owner");
    assert_ne!(owner, extra_str("lead_object_change_owner_manual.json", "owner"));
    assert_eq!(item["owner"], s(&owner), "owner: the auto_distribution owner");
    assert_eq!(
        item["life_status"],
        s(&extra_str("lead_object_update_life_cycle.json", "to_life_status"))
    );
    assert_eq!(item["life_status"], s("mql"));
    assert_eq!(item["lead_pool"], s("sales"));
    assert_eq!(
        item["lead_pool"],
        s(&extra_str("lead_object_change_lead_pool.json", "to_lead_pool"))
    );
    assert_eq!(
        item["leads_status"],
        s(&extra_str("lead_object_update_status.json", "to_leads_status"))
    );
    let added = extra_list("lead_object_add_team_member.json", "members");
    let removed = extra_list("lead_object_remove_team_member.json", "members");
    let remaining: BTreeSet<String> = added.difference(&removed).cloned().collect();
    assert_eq!(remaining.len(), 1, "exactly one member remains");
    assert_eq!(item["team_members"], AttrValue::SS(remaining));
    assert_eq!(item["voided"], AttrValue::Bool(false), "restored after the void");
    assert_eq!(item["event_count"], AttrValue::N(history.len().to_string()));
    assert_eq!(item["last_event_type"], s(newest.2.event_type.as_str()));
    assert_eq!(item["last_event_type"], s("object_merge"));
    assert_eq!(item["last_action_keyword"], s(&newest.2.action_keyword));
    assert_eq!(item["event_time"], AttrValue::N(newest.2.create_time.to_string()));
    assert_eq!(
        item["last_raw"],
        s(&newest.1),
        "last_raw: the newest event's exact body"
    );
    assert_eq!(
        item["created_at"],
        s("2023-02-27T15:02:25+08:00"),
        "created_at: from the create"
    );
    assert_eq!(item["object_name"], s("lead"));
    assert_eq!(item["object_id"], s("628"));
    let (AttrValue::M(fields), AttrValue::M(labels)) = (&item["fields"], &item["field_labels"]) else {
        panic!("fields and field_labels are maps: {item:?}")
    };
    assert!(!fields.contains_key("mobile"), "mobile was cleared: {fields:?}");
    assert!(
        !labels.contains_key("mobile"),
        "a cleared field has no label: {labels:?}"
    );
    assert_eq!(
        fields["name"],
        s("ceshi-webhook-002（已合并）"),
        "name: from the newest event carrying it"
    );
    assert_eq!(fields["email"], s("lead@example.com"));
    assert_eq!(fields["lead_pool"], s("sales"));
    assert_eq!(fields["owner"], s(&owner));
    assert_eq!(
        labels["lead_pool"],
        s("销售公海"),
        "the label from the same event as the value"
    );

    // Chronological and reverse-chronological delivery give the very same state.
    let mut by_time: Vec<&CrmEvent> = history.iter().map(|(_, _, event)| event).collect();
    by_time.sort_by_key(|event| event.stamp());
    assert_eq!(
        replay(by_time.iter().copied()).state.as_ref(),
        Some(&state),
        "chronological order"
    );
    assert_eq!(
        replay(by_time.iter().rev().copied()).state.as_ref(),
        Some(&state),
        "reverse order"
    );

    // Every redelivery is a duplicate and changes nothing.
    for (name, _, event) in &history {
        assert_eq!(ledger.apply(event), Delivery::Duplicate, "{name} again");
    }
    assert_eq!(ledger.state.as_ref(), Some(&state));

    let mismatch = check_golden(&golden_dir("crm").join(HISTORY_GOLDEN), &item_json(&item));
    fail_on(mismatch.into_iter().collect());
}
