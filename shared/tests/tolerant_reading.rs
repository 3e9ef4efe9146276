//! Tolerant reading (contract 2.3): an authentic event is refused only for its required fields and
//! for `mapping_data` values that cannot be merged. Any other field of an unexpected shape is
//! accepted, read as absent, kept in the raw body, and reported as drift with its path.
//!
//! Each table row is a change to a realistic body (the vendors' own samples) and what it must
//! give: drift at exactly these paths, or a refusal naming the field.

use serde_json::{json, Value};
use shared::activity::{ActivityAction, ActivityEvent};
use shared::crm::CrmEvent;
use shared::envelope::Envelope;
use shared::error::ParseError;
use shared::timefmt::SourceOffset;

/// The CRM seed (`object_create`, tenant 124), as JINGdigital documents it.
fn crm_sample() -> Value {
    json!({
        "event_type": "object_create", "create_time": 1677481345, "action_keyword": "object_create",
        "extra_data": {
            "notes": null, "lead_omni_user_uuid": "2GRhJU3V7VstF3SbdRS4MC", "operator_id": 20272,
            "life_status": "baby_lead",
            "mapping_data": {"life_status": ["baby_lead"], "name": ["ceshi-webhook-001"],
                             "mobile": ["17894892831"], "lead_pool": ["market"]},
            "created_timestamp": "2023-02-27 15:02:25", "business_type_name": "jeffery创建新的",
            "entity_id": "NttdW4NoJfD2cX6f7rg52f", "object_id": "628", "object_name": "lead",
            "business_type": "FcKtzPvUzZ4dDEi7gNGZqa",
            "mapping_data_text": {"life_status": "线索宝宝122222", "name": "ceshi-webhook-001",
                                  "mobile": "17894892831", "lead_pool": "市场公海"}
        },
        "mid": "124", "event_category": "object_v2"
    })
}

/// The Lexiang `event/add` sample.
fn activity_sample() -> Value {
    json!({
        "nonce": "d9d94ba3-57e9-4049-8724-f86f4e5f0fxx", "timestamp": 1701744489,
        "sign": "4881480964032cbc51f39a08797d806c4cbf9cxx", "action": "event/add",
        "attributes": {
            "event_id": "b80bb752931811eeaeb42ef5b77e53xx", "title": "新建活动回调", "summary": "参加活动",
            "started_at": "2023-12-05 10:47:00", "participant_count_limit": 1, "enable_random_extract": 0,
            "privilege_type": 1,
            "privilege": [{"type": "department", "id": "1"}, {"type": "staff", "id": "StaffID1"}],
            "logo": "", "team_id ": "30fff19ebae611ecad5bee5022d7cxxx", "roadmap_id": 0
        },
        "operator": "StaffID2", "operator_info": {"name": "StaffID2"}
    })
}

fn crm(body: &str) -> Result<CrmEvent, ParseError> {
    CrmEvent::from_envelope(Envelope::parse(body.as_bytes())?, SourceOffset::BEIJING)
}

fn activity(body: &str) -> Result<ActivityEvent, ParseError> {
    let envelope = Envelope::parse(body.as_bytes())?;
    ActivityEvent::from_envelope(envelope, "124", "n", 1_701_744_489, SourceOffset::BEIJING)
}

/// `value` with `pointer` (a JSON pointer) set to `new`, creating the last key if needed.
fn with(mut value: Value, pointer: &str, new: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
    let parent = value
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("{pointer}: no parent"));
    parent.as_object_mut().expect("an object").insert(key.to_owned(), new);
    value
}

fn without(mut value: Value, pointer: &str) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
    value.pointer_mut(parent).unwrap().as_object_mut().unwrap().remove(key);
    value
}

fn drift_paths(drift: &[shared::json::Drift]) -> Vec<&str> {
    drift.iter().map(|d| d.path.as_str()).collect()
}

#[test]
fn crm_fields_of_an_unexpected_shape_are_drift_not_refusals() {
    let cases: Vec<(&str, &str, Value, Vec<&str>)> = vec![
        // The three refusals that motivated tolerant reading.
        (
            "notes an object",
            "/extra_data/notes",
            json!({"text": "call back"}),
            vec!["extra_data.notes"],
        ),
        (
            "former_owner_name a number",
            "/extra_data/former_owner_name",
            json!(42),
            vec!["extra_data.former_owner_name"],
        ),
        (
            "a label an object",
            "/extra_data/mapping_data_text/name",
            json!({"zh": "名"}),
            vec!["extra_data.mapping_data_text.name"],
        ),
        (
            "a label an array of objects",
            "/extra_data/mapping_data_text/name",
            json!([{"a": 1}]),
            vec!["extra_data.mapping_data_text.name"],
        ),
        (
            "mapping_data_text a string",
            "/extra_data/mapping_data_text",
            json!("labels"),
            vec!["extra_data.mapping_data_text"],
        ),
        (
            "action_keyword a number",
            "/action_keyword",
            json!(7),
            vec!["action_keyword"],
        ),
        (
            "object_name an array",
            "/extra_data/object_name",
            json!(["lead"]),
            vec!["extra_data.object_name"],
        ),
        (
            "object_id a float",
            "/extra_data/object_id",
            json!(6.5),
            vec!["extra_data.object_id"],
        ),
        (
            "owner an object",
            "/extra_data/owner",
            json!({"uuid": "u"}),
            vec!["extra_data.owner"],
        ),
        (
            "life_status a number",
            "/extra_data/life_status",
            json!(3),
            vec!["extra_data.life_status"],
        ),
        (
            "to_lead_pool a boolean",
            "/extra_data/to_lead_pool",
            json!(true),
            vec!["extra_data.to_lead_pool"],
        ),
        (
            "scene_type text",
            "/extra_data/scene_type",
            json!("manual"),
            vec!["extra_data.scene_type"],
        ),
        (
            "created_timestamp not a date",
            "/extra_data/created_timestamp",
            json!("2023-02-30 10:00:00"),
            vec!["extra_data.created_timestamp"],
        ),
        (
            "created_timestamp a number",
            "/extra_data/created_timestamp",
            json!(1677481345),
            vec!["extra_data.created_timestamp"],
        ),
        (
            "business_type_name an object",
            "/extra_data/business_type_name",
            json!({}),
            vec!["extra_data.business_type_name"],
        ),
        (
            "an unread field of any shape",
            "/extra_data/timeline_data",
            json!([1, {"x": null}]),
            vec![],
        ),
    ];
    for (name, pointer, bad, paths) in cases {
        let body = with(crm_sample(), pointer, bad.clone()).to_string();
        let event = crm(&body).unwrap_or_else(|e| panic!("{name}: refused: {e}"));
        assert_eq!(drift_paths(&event.drift), paths, "{name}");
        assert!(
            event.raw.contains(&bad.to_string()),
            "{name}: the raw body keeps the value"
        );
        assert_eq!(event.entity_id, "NttdW4NoJfD2cX6f7rg52f", "{name}");
    }
}

#[test]
fn crm_drift_reads_the_odd_field_as_absent_and_the_rest_as_usual() {
    let body = with(crm_sample(), "/extra_data/mapping_data_text/name", json!({"zh": "名"}));
    let body = with(body, "/extra_data/created_timestamp", json!("never"));
    let event = crm(&body.to_string()).unwrap();
    let name = &event.changes["name"];
    assert_eq!(
        name.after,
        Some(json!("ceshi-webhook-001")),
        "the value is still merged"
    );
    assert_eq!(name.label, None, "the odd label is read as absent");
    assert_eq!(event.changes["mobile"].label.as_deref(), Some("17894892831"));
    assert_eq!(event.created_at, None);
    assert_eq!(event.well_known.life_status.as_deref(), Some("baby_lead"));
    assert!(event.drift.iter().all(|d| !d.reason.is_empty()));
}

#[test]
fn crm_members_keep_what_can_be_read() {
    let body = with(crm_sample(), "/event_type", json!("object_add_team_member"));
    let event = crm(&with(
        body.clone(),
        "/extra_data/members",
        json!(["m2", 7, "m1", {"id": "m3"}]),
    )
    .to_string())
    .unwrap();
    assert_eq!(event.members, ["m1", "m2"]);
    assert_eq!(
        drift_paths(&event.drift),
        ["extra_data.members[1]", "extra_data.members[3]"]
    );
    let event = crm(&with(body, "/extra_data/members", json!(5)).to_string()).unwrap();
    assert!(event.members.is_empty());
    assert_eq!(drift_paths(&event.drift), ["extra_data.members"]);
}

#[test]
fn crm_required_fields_and_unmergeable_mapping_data_are_still_refused() {
    let invalid: Vec<(&str, Value, &str)> = vec![
        ("/mid", json!(1.5), "mid"),
        ("/mid", json!({"id": "124"}), "mid"),
        ("/event_type", json!(["object_update"]), "event_type"),
        ("/create_time", json!("yesterday"), "create_time"),
        ("/create_time", json!(-1), "create_time"),
        ("/extra_data", json!("{}"), "extra_data"),
        ("/extra_data/entity_id", json!({}), "extra_data.entity_id"),
        ("/extra_data/mapping_data", json!([]), "extra_data.mapping_data"),
        (
            "/extra_data/mapping_data/name",
            json!("x"),
            "extra_data.mapping_data.name",
        ),
        (
            "/extra_data/mapping_data/name",
            json!({"a": 1}),
            "extra_data.mapping_data.name",
        ),
        (
            "/extra_data/mapping_data/name",
            json!([]),
            "extra_data.mapping_data.name",
        ),
        (
            "/extra_data/mapping_data/name",
            json!(["a", "b", "c"]),
            "extra_data.mapping_data.name",
        ),
        (
            "/extra_data/mapping_data/score",
            json!([1e300]),
            "extra_data.mapping_data.score",
        ),
    ];
    for (pointer, bad, field) in invalid {
        let body = with(crm_sample(), pointer, bad.clone()).to_string();
        match crm(&body) {
            Err(ParseError::InvalidField { field: got, .. }) => assert_eq!(got, field, "{pointer} = {bad}"),
            other => panic!("{pointer} = {bad}: {other:?}"),
        }
    }
    for (pointer, field) in [
        ("/mid", "mid"),
        ("/event_type", "event_type"),
        ("/create_time", "create_time"),
        ("/extra_data/entity_id", "extra_data.entity_id"),
        ("/extra_data", "extra_data.entity_id"),
    ] {
        let body = without(crm_sample(), pointer).to_string();
        assert_eq!(
            crm(&body).unwrap_err(),
            ParseError::MissingField(field.into()),
            "{pointer}"
        );
    }
}

#[test]
fn crm_shapes_of_the_vendor_samples_are_read_without_drift() {
    // A null "before" value with a "-" label array (an update that sets a field first).
    let update = with(crm_sample(), "/event_type", json!("object_update"));
    let update = with(
        update,
        "/extra_data/mapping_data",
        json!({"school": [null, "中山大学"]}),
    );
    let update = with(
        update,
        "/extra_data/mapping_data_text",
        json!({"school": ["-", "中山大学"]}),
    );
    let event = crm(&update.to_string()).unwrap();
    let school = &event.changes["school"];
    assert_eq!(
        (school.before.clone(), school.after.clone()),
        (None, Some(json!("中山大学")))
    );
    assert_eq!(school.label.as_deref(), Some("中山大学"));
    assert!(event.drift.is_empty(), "{:?}", event.drift);

    // "openplatform" at the top level, and the seed's key with a space in it.
    let seed = with(crm_sample(), "/openplatform", json!("June"));
    let seed = with(seed, "/extra_data/logi n_environment", json!("pc"));
    let event = crm(&seed.to_string()).unwrap();
    assert!(event.drift.is_empty() && event.raw.contains("\"openplatform\":\"June\""));

    // object_name "account".
    let account = with(crm_sample(), "/extra_data/object_name", json!("account"));
    let event = crm(&account.to_string()).unwrap();
    assert_eq!(event.object_name.as_deref(), Some("account"));
    assert!(event.drift.is_empty());
}

#[test]
fn activity_fields_of_an_unexpected_shape_are_drift_not_refusals() {
    let cases: Vec<(&str, &str, Value, Vec<&str>)> = vec![
        (
            "title an array",
            "/attributes/title",
            json!(["x"]),
            vec!["attributes.title"],
        ),
        (
            "privilege_type out of range",
            "/attributes/privilege_type",
            json!(7),
            vec!["attributes.privilege_type"],
        ),
        (
            "privilege_type text",
            "/attributes/privilege_type",
            json!("public"),
            vec!["attributes.privilege_type"],
        ),
        (
            "enable_random_extract 2",
            "/attributes/enable_random_extract",
            json!(2),
            vec!["attributes.enable_random_extract"],
        ),
        (
            "privilege a string",
            "/attributes/privilege",
            json!("all"),
            vec!["attributes.privilege"],
        ),
        (
            "started_at not a time",
            "/attributes/started_at",
            json!("tomorrow"),
            vec!["attributes.started_at"],
        ),
        (
            "participant_count_limit text",
            "/attributes/participant_count_limit",
            json!("many"),
            vec!["attributes.participant_count_limit"],
        ),
        (
            "roadmap_id an object",
            "/attributes/roadmap_id",
            json!({}),
            vec!["attributes.roadmap_id"],
        ),
        (
            "team_id a boolean",
            "/attributes/team_id ",
            json!(true),
            vec!["attributes.team_id"],
        ),
        ("operator an object", "/operator", json!({"id": "S"}), vec!["operator"]),
        (
            "operator_info a string",
            "/operator_info",
            json!("StaffID2"),
            vec!["operator_info"],
        ),
        (
            "operator_info.name a number",
            "/operator_info/name",
            json!(2),
            vec!["operator_info.name"],
        ),
    ];
    for (name, pointer, bad, paths) in cases {
        let body = with(activity_sample(), pointer, bad).to_string();
        let event = activity(&body).unwrap_or_else(|e| panic!("{name}: refused: {e}"));
        assert_eq!(drift_paths(&event.drift), paths, "{name}");
        assert_eq!(
            event.entity_id.as_deref(),
            Some("b80bb752931811eeaeb42ef5b77e53xx"),
            "{name}"
        );
        assert!(event.content.is_some(), "{name}");
    }
}

#[test]
fn activity_privilege_keeps_the_entries_that_can_be_read() {
    let body = with(
        activity_sample(),
        "/attributes/privilege",
        json!([{"type": "staff"}, {"type": "staff", "id": "s1"}, "department", {"type": "department", "id": 1}]),
    );
    let event = activity(&body.to_string()).unwrap();
    let privilege = event.content.unwrap().privilege;
    assert_eq!(privilege["staff"], ["s1"]);
    assert_eq!(privilege["department"], ["1"]);
    assert_eq!(
        drift_paths(&event.drift),
        ["attributes.privilege[0]", "attributes.privilege[2]"]
    );
}

#[test]
fn activity_required_fields_are_still_refused() {
    let invalid: Vec<(&str, Value, &str)> = vec![
        ("/action", json!(1), "action"),
        ("/attributes", json!("event"), "attributes"),
        ("/attributes/event_id", json!(1.5), "attributes.event_id"),
    ];
    for (pointer, bad, field) in invalid {
        let body = with(activity_sample(), pointer, bad.clone()).to_string();
        match activity(&body) {
            Err(ParseError::InvalidField { field: got, .. }) => assert_eq!(got, field, "{pointer} = {bad}"),
            other => panic!("{pointer} = {bad}: {other:?}"),
        }
    }
    for (pointer, field) in [
        ("/action", "action"),
        ("/attributes/event_id", "attributes.event_id"),
        ("/attributes", "attributes.event_id"),
    ] {
        let body = without(activity_sample(), pointer).to_string();
        assert_eq!(
            activity(&body).unwrap_err(),
            ParseError::MissingField(field.into()),
            "{pointer}"
        );
    }
}

#[test]
fn activity_shapes_of_the_vendor_samples_are_read_without_drift() {
    // "event\/add" with an escaped slash, as the Lexiang sample writes it.
    let escaped = activity_sample()
        .to_string()
        .replace("\"event/add\"", r#""event\/add""#);
    assert!(escaped.contains(r#"event\/add"#));
    let event = activity(&escaped).unwrap();
    assert_eq!(event.action, ActivityAction::Add);
    assert!(event.drift.is_empty(), "{:?}", event.drift);

    // Nonces of 32 hex characters (as well as the sample's uuid form).
    let nonce = "0123456789abcdef0123456789abcdef";
    let body = with(activity_sample(), "/nonce", json!(nonce)).to_string();
    let envelope = Envelope::parse(body.as_bytes()).unwrap();
    let signed = shared::activity::verify::SignedFields::extract(&envelope.object).unwrap();
    assert_eq!(signed.nonce, nonce);
    let event = ActivityEvent::from_envelope(envelope, "124", &signed.nonce, 1, SourceOffset::BEIJING).unwrap();
    assert_eq!(event.nonce, nonce);

    // Other Lexiang actions: acknowledged, not merged, whatever their attributes hold.
    for (action, attributes) in [
        (
            "comment/add",
            json!({"comment_id": "c1", "target_id": "d1", "content": "<p>好</p>"}),
        ),
        (
            "question/edit",
            json!({"question_id": "q1", "title": ["odd"], "tags": null}),
        ),
        (
            "exam/event/finish",
            json!({"exam_id": "x1", "event_id": "e1", "score": 92.5}),
        ),
        ("exam/event/finish", json!("not even an object")),
    ] {
        let body = with(activity_sample(), "/action", json!(action));
        let body = with(body, "/attributes", attributes.clone());
        let event = activity(&body.to_string()).unwrap_or_else(|e| panic!("{action}: {e}"));
        assert_eq!(event.action, ActivityAction::Other(action.into()));
        assert_eq!(event.activity_id(), None, "{action} is not merged");
        assert_eq!(event.content, None);
        if attributes.is_object() {
            assert!(event.drift.is_empty(), "{action}: {:?}", event.drift);
        } else {
            assert_eq!(drift_paths(&event.drift), ["attributes"]);
        }
    }
}
