//! Tencent Lexiang activity callbacks parsed and normalized.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::activity::verify::ReplayScope;
use crate::envelope::Envelope;
use crate::error::ParseError;
use crate::json::{
    int, key_value, text, Drift, DriftLog, EventDigest, Fields, MAX_PARTITION_KEY_BYTES, MAX_SORT_KEY_BYTES,
};
use crate::merge::Stamp;
use crate::node::{Node, Object};
use crate::timefmt::SourceOffset;

/// What happened. `event/*` actions the service does not model, and every other family
/// (`doc/add`, …), are `Other`: verified, acknowledged, logged, not merged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActivityAction {
    #[serde(rename = "event/add")]
    Add,
    #[serde(rename = "event/edit")]
    Edit,
    #[serde(rename = "event/delete")]
    Delete,
    #[serde(untagged)]
    Other(String),
}

impl ActivityAction {
    pub fn from_wire(action: &str) -> Self {
        match action {
            "event/add" => Self::Add,
            "event/edit" => Self::Edit,
            "event/delete" => Self::Delete,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Add => "event/add",
            Self::Edit => "event/edit",
            Self::Delete => "event/delete",
            Self::Other(action) => action,
        }
    }

    /// `event/*` actions name an activity in `attributes.event_id`.
    pub fn names_an_activity(&self) -> bool {
        self.as_str().starts_with("event/")
    }
}

/// Who can see the activity (`privilege_type` 0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrivilegeType {
    Public,
    Private,
    CreatorOnly,
}

impl PrivilegeType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
            Self::CreatorOnly => "creator_only",
        }
    }
}

/// The descriptive content of an activity, as `event/add` and `event/edit` send it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActivityContent {
    pub title: Option<String>,
    pub summary: Option<String>,
    pub content: Option<String>,
    pub location: Option<String>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub closed_at: Option<String>,
    pub created_at: Option<String>,
    pub attend_start_at: Option<String>,
    pub attend_end_at: Option<String>,
    pub attend_method: Option<String>,
    pub app_source_type: Option<String>,
    pub participant_count_limit: Option<i64>,
    pub enable_random_extract: Option<bool>,
    pub privilege_type: Option<PrivilegeType>,
    /// Member type (`department`, `staff`, `contacttag`, …) → ids, in the order sent.
    pub privilege: BTreeMap<String, Vec<String>>,
    pub logo: Option<String>,
    pub team_id: Option<String>,
    pub category_id: Option<String>,
    pub roadmap_id: Option<i64>,
}

/// A verified activity callback, normalized.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActivityEvent {
    pub mid: String,
    pub nonce: String,
    pub timestamp: i64,
    pub action: ActivityAction,
    /// `attributes.event_id`; present for every `event/*` action.
    pub entity_id: Option<String>,
    /// For `event/add` and `event/edit`.
    pub content: Option<ActivityContent>,
    pub operator: Option<String>,
    pub operator_name: Option<String>,
    pub digest: EventDigest,
    /// Optional fields of an unexpected shape, read as absent (they stay in `raw`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<Drift>,
    /// The body as received; shared with the state it is merged into.
    #[serde(skip)]
    pub raw: Arc<str>,
    /// Under which scope the nonce is remembered (contract 2.2): the secret that verified the sign
    /// (set by the intake), else the tenant.
    #[serde(skip)]
    pub replay_scope: ReplayScope,
}

/// Whether a body looks like a Lexiang callback at all, whatever else is wrong with it: it names
/// an `action` or carries `attributes`. A probe such as `{}` does not. The body never names its
/// tenant (contract 2.2: the request does).
pub fn has_general_shape(object: &Object<'_>) -> bool {
    ["action", "attributes"].iter().any(|key| object.contains_key(key))
}

impl ActivityEvent {
    /// Normalizes a verified envelope for tenant `mid`, with its verified `nonce` and `timestamp`.
    ///
    /// Only the required fields of contract 2.3 are refused; every other field is read tolerantly
    /// (see [`Fields::optional`]).
    pub fn from_envelope(
        envelope: Envelope<'_>,
        mid: &str,
        nonce: &str,
        timestamp: i64,
        offset: SourceOffset,
    ) -> Result<Self, ParseError> {
        Self::from_parsed(&envelope, mid, nonce, timestamp, offset)
    }

    /// [`Self::from_envelope`] for an envelope the request path keeps (to quarantine the
    /// delivery if it is refused).
    pub(crate) fn from_parsed(
        envelope: &Envelope<'_>,
        mid: &str,
        nonce: &str,
        timestamp: i64,
        offset: SourceOffset,
    ) -> Result<Self, ParseError> {
        let drift = DriftLog::default();
        let top = Fields::tolerant(&envelope.object, "", &drift);
        // Both become key values: too long for DynamoDB is an invalid field, not a 503.
        let mid = key_value("mid", mid.to_owned(), MAX_PARTITION_KEY_BYTES)?;
        let nonce = key_value("nonce", nonce.to_owned(), MAX_SORT_KEY_BYTES)?;
        let action = ActivityAction::from_wire(top.req_str("action")?);
        // `attributes` holds the required `event_id` of `event/*` actions.
        let attributes = if action.names_an_activity() {
            top.container("attributes")?
        } else {
            top.opt_object("attributes")?
        };
        let empty = Object::default();
        let attrs = top.nested(attributes.unwrap_or(&empty), "attributes");
        let entity_id = if action.names_an_activity() {
            Some(attrs.req_key("event_id", MAX_SORT_KEY_BYTES)?)
        } else {
            attrs.opt_id("event_id")?
        };
        let content = match action {
            ActivityAction::Add | ActivityAction::Edit => Some(content(&attrs, offset)?),
            _ => None,
        };
        let operator_info = top.opt_object("operator_info")?;
        let operator_name = operator_info
            .map(|info| top.nested(info, "operator_info").opt_string("name"))
            .transpose()?
            .flatten();
        let operator = top.opt_id("operator")?;
        Ok(Self {
            nonce,
            timestamp,
            action,
            entity_id,
            content,
            operator,
            operator_name,
            digest: envelope.digest.clone(),
            drift: drift.into_vec(),
            raw: envelope.raw.into(),
            replay_scope: ReplayScope::of_tenant(&mid),
            mid,
        })
    }

    /// The activity this event is merged into: `event_id` for the modelled actions (add, edit,
    /// delete); `None` for the others, which are only acknowledged.
    pub fn activity_id(&self) -> Option<&str> {
        match self.action {
            ActivityAction::Other(_) => None,
            _ => self.entity_id.as_deref(),
        }
    }

    pub fn stamp(&self) -> Stamp {
        Stamp::of(self.timestamp, &self.digest)
    }
}

fn content(attrs: &Fields<'_>, offset: SourceOffset) -> Result<ActivityContent, ParseError> {
    let time = |key: &str| attrs.optional(key, |node| text(node).and_then(|text| offset.local_to_rfc3339(text)));
    Ok(ActivityContent {
        title: attrs.opt_string("title")?,
        summary: attrs.opt_string("summary")?,
        content: attrs.opt_string("content")?,
        location: attrs.opt_string("location")?,
        started_at: time("started_at")?,
        ended_at: time("ended_at")?,
        closed_at: time("closed_at")?,
        created_at: time("created_at")?,
        attend_start_at: time("attend_start_at")?,
        attend_end_at: time("attend_end_at")?,
        attend_method: attrs.opt_string("attend_method")?,
        app_source_type: attrs.opt_string("app_source_type")?,
        participant_count_limit: attrs.opt_int("participant_count_limit")?,
        enable_random_extract: flag(attrs, "enable_random_extract")?,
        privilege_type: privilege_type(attrs)?,
        privilege: privilege(attrs)?,
        logo: attrs.opt_string("logo")?,
        team_id: attrs.opt_id("team_id")?,
        category_id: attrs.opt_id("category_id")?,
        roadmap_id: attrs.opt_int("roadmap_id")?.filter(|id| *id != 0),
    })
}

/// `0`/`1`, `"0"`/`"1"` or `false`/`true`.
fn flag(attrs: &Fields<'_>, key: &str) -> Result<Option<bool>, ParseError> {
    attrs.optional(key, |node| match node {
        Node::Bool(b) => Ok(*b),
        Node::Number(n) if n.as_i64() == Some(0) => Ok(false),
        Node::Number(n) if n.as_i64() == Some(1) => Ok(true),
        Node::String(s) if matches!(s.trim(), "0" | "false") => Ok(false),
        Node::String(s) if matches!(s.trim(), "1" | "true") => Ok(true),
        _ => Err("expected 0, 1, false or true".to_owned()),
    })
}

fn privilege_type(attrs: &Fields<'_>) -> Result<Option<PrivilegeType>, ParseError> {
    attrs.optional("privilege_type", |node| match int(node)? {
        0 => Ok(PrivilegeType::Public),
        1 => Ok(PrivilegeType::Private),
        2 => Ok(PrivilegeType::CreatorOnly),
        other => Err(format!(
            "expected 0 (public), 1 (private) or 2 (creator only), got {other}"
        )),
    })
}

/// `[{type, id}, …]` grouped by type. An entry that is not an object with a `type` and an `id`
/// is drift; the others are still read.
fn privilege(attrs: &Fields<'_>) -> Result<BTreeMap<String, Vec<String>>, ParseError> {
    let entries = attrs.optional("privilege", |node| match node {
        Node::Array(entries) => Ok(entries),
        other => Err(format!("expected an array, got {}", other.kind())),
    })?;
    let mut grouped: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (index, entry) in entries.into_iter().flatten().enumerate() {
        let key = format!("privilege[{index}]");
        let read = match entry {
            Node::Object(entry) => {
                let entry = Fields::new(entry, "");
                match (entry.req_string("type"), entry.req_id("id")) {
                    (Ok(kind), Ok(id)) => Ok((kind, id)),
                    (Err(error), _) | (_, Err(error)) => Err(error.to_string()),
                }
            }
            other => Err(format!("expected an object with type and id, got {}", other.kind())),
        };
        if let Some((kind, id)) = attrs.tolerate(&key, read)? {
            grouped.entry(kind).or_default().push(id);
        }
    }
    Ok(grouped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse(value: Value) -> Result<ActivityEvent, ParseError> {
        let body = value.to_string();
        let envelope = Envelope::parse(body.as_bytes()).unwrap();
        ActivityEvent::from_envelope(envelope, "124", "n", 1_701_744_489, SourceOffset::BEIJING)
    }

    #[test]
    fn escaped_slash_and_spaced_keys_are_read() {
        let body = br#"{"action":"event\/add","attributes":{"event_id":"A","team_id ":"T","roadmap_id":0,
            "participant_count_limit":null,"enable_random_extract":"1","privilege_type":2,"logo":"",
            "started_at":"2023-12-05 10:47:00"}}"#;
        let envelope = Envelope::parse(body).unwrap();
        let event = ActivityEvent::from_envelope(envelope, "124", "n", 1, SourceOffset::BEIJING).unwrap();
        assert_eq!(event.action, ActivityAction::Add);
        let content = event.content.unwrap();
        assert_eq!(content.team_id.as_deref(), Some("T"));
        assert_eq!(
            (content.roadmap_id, content.participant_count_limit, content.logo),
            (None, None, None)
        );
        assert_eq!(content.enable_random_extract, Some(true));
        assert_eq!(content.privilege_type, Some(PrivilegeType::CreatorOnly));
        assert_eq!(content.started_at.as_deref(), Some("2023-12-05T10:47:00+08:00"));
    }

    #[test]
    fn keys_too_long_for_dynamodb_are_invalid_fields() {
        let body = json!({"action": "event/delete", "attributes": {"event_id": "e".repeat(1025)}});
        let body = body.to_string();
        let envelope = Envelope::parse(body.as_bytes()).unwrap();
        assert!(matches!(
            ActivityEvent::from_envelope(envelope, "124", "n", 1, SourceOffset::BEIJING),
            Err(ParseError::InvalidField { field, .. }) if field == "attributes.event_id"
        ));
        let body = json!({"action": "event/delete", "attributes": {"event_id": "A"}}).to_string();
        for (mid, nonce, field) in [
            ("m".repeat(2049), "n".to_owned(), "mid"),
            ("124".into(), "n".repeat(1025), "nonce"),
        ] {
            let envelope = Envelope::parse(body.as_bytes()).unwrap();
            assert!(
                matches!(
                    ActivityEvent::from_envelope(envelope, &mid, &nonce, 1, SourceOffset::BEIJING),
                    Err(ParseError::InvalidField { field: f, .. }) if f == field
                ),
                "{field}"
            );
        }
    }

    #[test]
    fn event_actions_need_an_event_id_and_others_do_not() {
        assert_eq!(
            parse(json!({"action": "event/edit", "attributes": {}})).unwrap_err(),
            ParseError::missing("attributes.event_id")
        );
        assert_eq!(
            parse(json!({"action": "event/delete"})).unwrap_err(),
            ParseError::missing("attributes.event_id")
        );
        let doc = parse(json!({"action": "doc/add", "attributes": {"doc_id": "D"}})).unwrap();
        assert_eq!(
            (doc.action, doc.entity_id),
            (ActivityAction::Other("doc/add".into()), None)
        );
        assert_eq!(
            parse(json!({"attributes": {}})).unwrap_err(),
            ParseError::missing("action")
        );
    }

    #[test]
    fn malformed_attributes_are_drift_named_by_path() {
        let cases = [
            (json!({"privilege_type": 7}), "attributes.privilege_type"),
            (json!({"enable_random_extract": 2}), "attributes.enable_random_extract"),
            (json!({"privilege": "all"}), "attributes.privilege"),
            (json!({"privilege": [{"type": "staff"}]}), "attributes.privilege[0]"),
            (json!({"started_at": "tomorrow"}), "attributes.started_at"),
            (
                json!({"participant_count_limit": "many"}),
                "attributes.participant_count_limit",
            ),
            (json!({"title": ["x"]}), "attributes.title"),
        ];
        for (attributes, field) in cases {
            let mut attributes = attributes;
            attributes["event_id"] = json!("A");
            let event = parse(json!({"action": "event/add", "attributes": attributes})).unwrap();
            let paths: Vec<&str> = event.drift.iter().map(|d| d.path.as_str()).collect();
            assert_eq!(paths, [field], "accepted, with the field named as drift");
        }
    }

    #[test]
    fn the_general_shape_is_an_action_or_attributes_in_keys_as_trimmed() {
        let shaped = |body: &str| has_general_shape(&Envelope::parse(body.as_bytes()).unwrap().object);
        assert!(shaped(r#"{"action":"doc/add"}"#));
        assert!(shaped(r#"{" attributes ":{}}"#), "a padded key still names the field");
        for probe in ["{}", r#"{"nonce":"n","sign":"s"}"#, r#"{"event_type":"object_create"}"#] {
            assert!(!shaped(probe), "{probe}");
        }
    }

    #[test]
    fn privilege_is_grouped_by_type() {
        let event = parse(
            json!({"action": "event/add", "attributes": {"event_id": "A", "privilege": [
            {"type": "staff", "id": "s1"}, {"type": "department", "id": 1}, {"type": "staff", "id": "s2"}]}}),
        )
        .unwrap();
        let privilege = event.content.unwrap().privilege;
        assert_eq!(privilege["staff"], ["s1", "s2"]);
        assert_eq!(privilege["department"], ["1"]);
    }
}
