//! CRM events (`event_category: object_v2`) parsed and normalized: what each event type says
//! about the object it names.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::envelope::Envelope;
use crate::error::ParseError;
use crate::item::first_unstorable_number;
use crate::json::{Drift, DriftLog, EventDigest, Fields, MAX_PARTITION_KEY_BYTES, MAX_SORT_KEY_BYTES};
use crate::merge::Stamp;
use crate::node::{Node, Object};
use crate::timefmt::SourceOffset;

/// The event types JINGdigital documents for leads; anything else is `Other` and is merged
/// generically (its `mapping_data`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrmEventType {
    Create,
    Update,
    UpdateStatus,
    Voids,
    ChangeOwner,
    UpdateLifeCycle,
    AddNotes,
    AddTeamMember,
    RemoveTeamMember,
    ChangeLeadPool,
    Restore,
    Relation,
    SourceInfo,
    Other(String),
}

impl CrmEventType {
    const KNOWN: [(&'static str, CrmEventType); 13] = [
        ("object_create", Self::Create),
        ("object_update", Self::Update),
        ("object_update_status", Self::UpdateStatus),
        ("object_voids", Self::Voids),
        ("object_change_owner", Self::ChangeOwner),
        ("object_update_life_cycle", Self::UpdateLifeCycle),
        ("object_add_notes", Self::AddNotes),
        ("object_add_team_member", Self::AddTeamMember),
        ("object_remove_team_member", Self::RemoveTeamMember),
        ("object_change_lead_pool", Self::ChangeLeadPool),
        ("object_restore", Self::Restore),
        ("object_relation", Self::Relation),
        ("object_source_info", Self::SourceInfo),
    ];

    pub fn from_wire(name: &str) -> Self {
        Self::KNOWN
            .iter()
            .find(|(wire, _)| *wire == name)
            .map_or_else(|| Self::Other(name.to_owned()), |(_, kind)| kind.clone())
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Other(name) => name,
            known => Self::KNOWN
                .iter()
                .find(|(_, kind)| kind == known)
                .map(|(wire, _)| *wire)
                .expect("every known type is listed"),
        }
    }

    pub fn is_known(&self) -> bool {
        !matches!(self, Self::Other(_))
    }
}

impl Serialize for CrmEventType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// One `mapping_data` entry: `[after]` or `[before, after]`, with its display label.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub before: Option<Value>,
    /// `None` when the field was cleared (`null` or `""`).
    pub after: Option<Value>,
    /// The after-label from `mapping_data_text`.
    pub label: Option<String>,
}

/// The object's well-known attributes as this event sets them (absent: not set by this event).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WellKnown {
    pub owner: Option<String>,
    pub life_status: Option<String>,
    pub lead_pool: Option<String>,
    pub leads_status: Option<String>,
    pub business_type: Option<String>,
    pub business_type_name: Option<String>,
    pub lead_omni_user_uuid: Option<String>,
}

/// Event-type-specific details that do not shape the item but are worth reading in the logs and
/// golden files (the raw body keeps everything).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Details {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scene_type: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub former_owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub former_owner_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_leads_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_life_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_lead_pool: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_object_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_entity_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_object_name: Option<String>,
}

/// A verified CRM event, normalized.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CrmEvent {
    pub mid: String,
    pub entity_id: String,
    pub event_type: CrmEventType,
    pub action_keyword: String,
    pub create_time: i64,
    pub digest: EventDigest,
    pub object_name: Option<String>,
    pub object_id: Option<String>,
    /// `created_timestamp` as RFC 3339 at the source offset.
    pub created_at: Option<String>,
    pub changes: BTreeMap<String, FieldChange>,
    pub well_known: WellKnown,
    /// Collaborators added or removed (`object_add_team_member` / `object_remove_team_member`).
    pub members: Vec<String>,
    pub details: Details,
    /// Optional fields of an unexpected shape, read as absent (they stay in `raw`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<Drift>,
    /// The body as received; shared with the states it is merged into.
    #[serde(skip)]
    pub raw: Arc<str>,
}

/// The tenant of a CRM body, needed before anything else to pick its secret.
pub fn tenant_of(object: &Object<'_>) -> Result<String, ParseError> {
    Fields::new(object, "").req_key("mid", MAX_PARTITION_KEY_BYTES)
}

/// Whether a body looks like a CRM delivery at all, whatever else is wrong with it: it names an
/// `event_type` or carries `extra_data`. A probe such as `{}` or `{"mid": "124"}` does not.
pub fn has_general_shape(object: &Object<'_>) -> bool {
    ["event_type", "extra_data"].iter().any(|key| object.contains_key(key))
}

impl CrmEvent {
    /// Normalizes a verified envelope. `offset` reads the zone-less `created_timestamp`.
    ///
    /// Only the required fields of contract 2.3 and `mapping_data` values that cannot be merged are
    /// refused; every other field is read tolerantly (see [`Fields::optional`]).
    pub fn from_envelope(envelope: Envelope<'_>, offset: SourceOffset) -> Result<Self, ParseError> {
        let mid = tenant_of(&envelope.object)?;
        Self::from_tenant_envelope(mid, &envelope, offset)
    }

    /// [`Self::from_envelope`] for an envelope whose tenant was already read (by the intake, to
    /// pick the secret): `mid` must be `tenant_of(&envelope.object)`.
    pub(crate) fn from_tenant_envelope(
        mid: String,
        envelope: &Envelope<'_>,
        offset: SourceOffset,
    ) -> Result<Self, ParseError> {
        let drift = DriftLog::default();
        let top = Fields::tolerant(&envelope.object, "", &drift);
        let event_type = CrmEventType::from_wire(top.req_str("event_type")?);
        let action_keyword = top
            .opt_string("action_keyword")?
            .unwrap_or_else(|| event_type.as_str().to_owned());
        let create_time = top.req_unix_seconds("create_time")?;
        let extra_map = top
            .container("extra_data")?
            .ok_or_else(|| ParseError::missing("extra_data.entity_id"))?;
        let extra = top.nested(extra_map, "extra_data");
        let entity_id = extra.req_key("entity_id", MAX_SORT_KEY_BYTES)?;
        let created_at = extra.optional("created_timestamp", |node| {
            crate::json::text(node).and_then(|text| offset.local_to_rfc3339(text))
        })?;
        let changes = field_changes(&extra)?;
        let well_known = well_known(&extra, &changes)?;
        let members = match event_type {
            CrmEventType::AddTeamMember | CrmEventType::RemoveTeamMember => members(&extra)?,
            _ => Vec::new(),
        };
        let details = details(&extra)?;
        let object_name = extra.opt_string("object_name")?;
        let object_id = extra.opt_id("object_id")?;
        Ok(Self {
            details,
            object_name,
            object_id,
            mid,
            entity_id,
            event_type,
            action_keyword,
            create_time,
            digest: envelope.digest.clone(),
            created_at,
            changes,
            well_known,
            members,
            drift: drift.into_vec(),
            raw: envelope.raw.into(),
        })
    }

    /// The event's place in the total order.
    pub fn stamp(&self) -> Stamp {
        Stamp::of(self.create_time, &self.digest)
    }
}

/// The paths of the two objects that describe the changed fields.
const MAPPING_DATA: &str = "extra_data.mapping_data";
const MAPPING_DATA_TEXT: &str = "extra_data.mapping_data_text";

fn field_changes(extra: &Fields<'_>) -> Result<BTreeMap<String, FieldChange>, ParseError> {
    // `mapping_data` is merged field by field: a shape that cannot be merged is refused.
    let Some(mapping) = extra.container("mapping_data")? else {
        return Ok(BTreeMap::new());
    };
    // The paths are constants rather than built from `extra`'s: two fewer strings per event.
    debug_assert_eq!(extra.path("mapping_data"), MAPPING_DATA);
    let mapping = extra.nested(mapping, MAPPING_DATA);
    let labels = extra
        .opt_object("mapping_data_text")?
        .map(|map| extra.nested(map, MAPPING_DATA_TEXT));
    let mut changes = BTreeMap::new();
    for (field, value) in mapping.iter() {
        // Paths are only built for an error: formatting one per field was a measurable cost.
        let invalid = |reason: String| ParseError::invalid(mapping.path(field), reason);
        let (before, after) = match value {
            Node::Array(items) if items.len() == 1 => (None, &items[0]),
            Node::Array(items) if items.len() == 2 => (Some(&items[0]), &items[1]),
            Node::Array(items) => {
                return Err(invalid(format!(
                    "expected [after] or [before, after], got {} values",
                    items.len()
                )))
            }
            other => return Err(invalid(format!("expected an array, got {}", other.kind()))),
        };
        // `null` and `""` say "no value" (and hold no number).
        let after = (!after.is_blank()).then(|| after.to_value());
        if let Some(number) = after.as_ref().and_then(first_unstorable_number) {
            return Err(invalid(format!(
                "{number} is outside the range of numbers DynamoDB can store"
            )));
        }
        let label = match &labels {
            Some(labels) => labels.optional(field, label)?.flatten(),
            None => None,
        };
        changes.insert(
            field.to_owned(),
            FieldChange {
                before: before.filter(|before| !before.is_blank()).map(Node::to_value),
                after,
                label,
            },
        );
    }
    Ok(changes)
}

/// A label is a string, or an array whose last element is the after-label (`["-", "中山大学"]`).
fn label(node: &Node<'_>) -> Result<Option<String>, String> {
    let invalid = |what: &Node<'_>| format!("expected a string or an array of strings, got {}", what.kind());
    match node {
        Node::String(s) => Ok(Some(s.as_ref().to_owned())),
        Node::Number(n) => Ok(Some(n.to_string())),
        Node::Array(items) => match items.last() {
            None => Ok(None),
            Some(last) if last.is_blank() => Ok(None),
            Some(Node::String(s)) => Ok(Some(s.as_ref().to_owned())),
            Some(Node::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(invalid(other)),
        },
        other => Err(invalid(other)),
    }
}

fn well_known(extra: &Fields<'_>, changes: &BTreeMap<String, FieldChange>) -> Result<WellKnown, ParseError> {
    let changed_to = |field: &str| {
        changes
            .get(field)
            .and_then(|change| change.after.as_ref())
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Ok(WellKnown {
        owner: extra.opt_id("owner")?,
        life_status: extra.opt_string("to_life_status")?.or(extra.opt_string("life_status")?),
        lead_pool: extra.opt_string("to_lead_pool")?.or_else(|| changed_to("lead_pool")),
        leads_status: extra.opt_id("to_leads_status")?,
        business_type: extra.opt_id("business_type")?,
        business_type_name: extra.opt_string("business_type_name")?,
        lead_omni_user_uuid: extra.opt_id("lead_omni_user_uuid")?,
    })
}

/// `members` is an array of uuids, or one uuid (or a comma-separated list) as a string. An
/// element that is not a string is drift; the others are still read.
fn members(extra: &Fields<'_>) -> Result<Vec<String>, ParseError> {
    let mut members = Vec::new();
    match extra.present("members") {
        None => {}
        Some(Node::String(list)) => members.extend(list.split(',').map(|m| m.trim().to_owned())),
        Some(Node::Array(items)) => {
            for (index, item) in items.iter().enumerate() {
                match item {
                    Node::Null => {}
                    Node::String(member) => members.push(member.trim().to_owned()),
                    other => {
                        let reason = format!("expected a uuid as a string, got {}", other.kind());
                        extra.tolerate::<()>(&format!("members[{index}]"), Err(reason))?;
                    }
                }
            }
        }
        Some(other) => {
            let reason = format!("expected an array of uuids, got {}", other.kind());
            extra.tolerate::<()>("members", Err(reason))?;
        }
    }
    members.retain(|member| !member.is_empty());
    members.sort();
    members.dedup();
    Ok(members)
}

fn details(extra: &Fields<'_>) -> Result<Details, ParseError> {
    Ok(Details {
        scene_type: extra.opt_int("scene_type")?,
        former_owner: extra.opt_id("former_owner")?,
        former_owner_name: extra.opt_string("former_owner_name")?,
        notes: extra.opt_string("notes")?,
        from_leads_status: extra.opt_id("from_leads_status")?,
        from_life_status: extra.opt_string("from_life_status")?,
        from_lead_pool: extra.opt_string("from_lead_pool")?,
        target_object_id: extra.opt_id("target_object_id")?,
        target_entity_id: extra.opt_id("target_entity_id")?,
        target_object_name: extra.opt_string("target_object_name")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<CrmEvent, ParseError> {
        let body = value.to_string();
        let envelope = Envelope::parse(body.as_bytes())?;
        CrmEvent::from_envelope(envelope, SourceOffset::BEIJING)
    }

    fn minimal() -> Value {
        json!({"mid": "124", "event_type": "object_update", "create_time": 1677481345,
               "extra_data": {"entity_id": "E1"}})
    }

    #[test]
    fn every_documented_event_type_round_trips_and_others_are_kept() {
        for (wire, _) in CrmEventType::KNOWN {
            assert_eq!(CrmEventType::from_wire(wire).as_str(), wire);
            assert!(CrmEventType::from_wire(wire).is_known());
        }
        assert_eq!(
            CrmEventType::from_wire("object_merge"),
            CrmEventType::Other("object_merge".into())
        );
    }

    #[test]
    fn mid_and_create_time_accept_numbers_and_strings() {
        let mut value = minimal();
        value["mid"] = json!(941);
        value["create_time"] = json!("1677481345");
        let event = parse(value).unwrap();
        assert_eq!((event.mid.as_str(), event.create_time), ("941", 1_677_481_345));
        assert_eq!(event.action_keyword, "object_update", "defaults to the event type");
    }

    #[test]
    fn each_required_field_is_named_when_missing() {
        for (pointer, field) in [
            ("/mid", "mid"),
            ("/event_type", "event_type"),
            ("/create_time", "create_time"),
            ("/extra_data/entity_id", "extra_data.entity_id"),
        ] {
            let mut value = minimal();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            value.pointer_mut(parent).unwrap().as_object_mut().unwrap().remove(key);
            assert_eq!(parse(value).unwrap_err(), ParseError::missing(field), "{pointer}");
        }
        let mut value = minimal();
        value.as_object_mut().unwrap().remove("extra_data");
        assert_eq!(parse(value).unwrap_err(), ParseError::missing("extra_data.entity_id"));
    }

    #[test]
    fn wrong_shapes_are_invalid_fields() {
        let cases = [
            ("/mid", json!(1.5), "mid"),
            ("/event_type", json!(7), "event_type"),
            ("/create_time", json!(-1), "create_time"),
            ("/create_time", json!("soon"), "create_time"),
            ("/create_time", json!(99_999_999_999_999_i64), "create_time"),
            ("/extra_data", json!("x"), "extra_data"),
            (
                "/extra_data/mapping_data",
                json!({"name": "x"}),
                "extra_data.mapping_data.name",
            ),
            (
                "/extra_data/mapping_data",
                json!({"name": []}),
                "extra_data.mapping_data.name",
            ),
            (
                "/extra_data/mapping_data",
                json!({"name": [1, 2, 3]}),
                "extra_data.mapping_data.name",
            ),
            // What DynamoDB cannot hold: refused as invalid, not a 503 retried forever.
            ("/mid", json!("m".repeat(2049)), "mid"),
            ("/extra_data/entity_id", json!("e".repeat(1025)), "extra_data.entity_id"),
            (
                "/extra_data/mapping_data",
                json!({"score": [1, {"x": [1e300]}]}),
                "extra_data.mapping_data.score",
            ),
        ];
        for (pointer, bad, field) in cases {
            let mut value = minimal();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            value
                .pointer_mut(parent)
                .unwrap()
                .as_object_mut()
                .unwrap()
                .insert(key.to_owned(), bad.clone());
            match parse(value) {
                Err(ParseError::InvalidField { field: got, .. }) => assert_eq!(got, field, "{pointer} = {bad}"),
                other => panic!("{pointer} = {bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn mapping_data_shapes_and_labels() {
        let mut value = minimal();
        value["extra_data"]["mapping_data"] = json!({
            "name": ["a", "b"], "email": [null, "e@x"], "mobile": ["178", ""], "pool": ["market"],
            " spaced ": ["v"]
        });
        value["extra_data"]["mapping_data_text"] = json!({"name": "B", "email": ["-", "E"], "pool": null});
        let event = parse(value).unwrap();
        let change = |f: &str| event.changes.get(f).unwrap().clone();
        assert_eq!(
            change("name"),
            FieldChange {
                before: Some(json!("a")),
                after: Some(json!("b")),
                label: Some("B".into())
            }
        );
        assert_eq!(change("email").after, Some(json!("e@x")));
        assert_eq!(change("email").label.as_deref(), Some("E"));
        assert_eq!(change("mobile").after, None, "cleared");
        assert_eq!(change("pool").before, None);
        assert_eq!(change("pool").label, None);
        assert!(event.changes.contains_key("spaced"), "keys are trimmed");
    }

    #[test]
    fn members_arrive_as_an_array_or_a_string() {
        let mut value = minimal();
        value["event_type"] = json!("object_add_team_member");
        value["extra_data"]["members"] = json!(["m2", "m1", "m2", ""]);
        assert_eq!(parse(value.clone()).unwrap().members, ["m1", "m2"]);
        value["extra_data"]["members"] = json!("m3, m4");
        assert_eq!(parse(value.clone()).unwrap().members, ["m3", "m4"]);
        value["extra_data"]["members"] = json!(5);
        let event = parse(value).unwrap();
        assert!(event.members.is_empty());
        assert_eq!(event.drift[0].path, "extra_data.members", "drift, not a refusal");
    }

    #[test]
    fn the_general_shape_is_an_event_type_or_extra_data_in_keys_as_trimmed() {
        let shaped = |body: &str| has_general_shape(&Envelope::parse(body.as_bytes()).unwrap().object);
        assert!(shaped(r#"{"event_type":"object_create"}"#));
        assert!(shaped(r#"{" extra_data ":{}}"#), "a padded key still names the field");
        for probe in ["{}", r#"{"mid":"124"}"#, r#"{"action":"event/add","attributes":{}}"#] {
            assert!(!shaped(probe), "{probe}");
        }
    }

    #[test]
    fn unknown_fields_are_kept_in_the_raw_body_and_never_fatal() {
        let mut value = minimal();
        value["extra_data"]["logi n_environment"] = json!("pc");
        value["brand_new"] = json!({"nested": [1, 2]});
        let event = parse(value).unwrap();
        assert!(event.raw.contains("logi n_environment") && event.raw.contains("brand_new"));
    }
}
