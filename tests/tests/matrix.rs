//! Table-driven HTTP tests of contract 2.3 against both functions served by `cargo lambda watch`:
//! The machinery (cases, builders, snapshots, runner) is the test kit's `tests::matrix`; this
//! file holds the case tables.
//! every case is a request, the exact status and error `code` it must get, and what it may write;
//! whatever a case's tenant acknowledges is compared with the independent oracle (`tests::oracle`).
//!
//! Each case runs under a tenant no other case (or run) uses, so the runner can compare the
//! contents of all three tables for that tenant before and after the request: a refusal must leave
//! them exactly as they were. Cases under a fixed tenant (`900`, `901`: the tenants the stack
//! configures with their own secrets) are CRM-only and compare only the items of the case's own
//! `entity_id`, since other tests write to those tenants too.
//!
//! The stack must be configured as `make test` does, plus the rotation tenant:
//! `CRM_WEBHOOK_SECRET_900=tenant-900-secret`, `CRM_WEBHOOK_SECRET_901=new-901,old-901`, both also
//! exported to the tests, and `ACTIVITY_MAX_SKEW_SECONDS` unset (300).
//!
//! Not covered here, and where it is:
//! - base64: `cargo lambda watch` base64-encodes bodies of a binary content type, which the
//!   `binary(…)` cases use (valid and invalid UTF-8); a malformed base64 `body` with
//!   `isBase64Encoded` cannot be produced over HTTP: handler tests;
//! - a tenant with no secret at all (`401 no_secret`) needs a stack without the global default
//!   secrets: handler tests and `shared::config`/`secret` unit tests;
//! - `503 storage_unavailable` needs DynamoDB down: `tests/tests/store.rs` (outage).

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{json, Value};
use tests::http::{activity_url, dev_activity_secret, dev_crm_secret};
use tests::matrix::*;
use tests::signing::{sign_activity, sign_crm};
use tests::stack;
use tests::tables::Table;

// ------------------------------------------------------------------------ the bad-input matrix

fn crm_bad_input_cases() -> Vec<Case> {
    vec![
        // Not a JSON object (checked before `mid` and the signature).
        Case::new("crm not JSON", crm_text(|_, t| half(&t))).refused(400, "invalid_json"),
        Case::new(
            "crm plain text",
            crm_text(|_, _| b"mid=124&event_type=object_create".to_vec()),
        )
        .refused(400, "invalid_json"),
        Case::new("crm JSON array", crm_text(|_, t| format!("[{t}]").into_bytes())).refused(400, "invalid_json"),
        Case::new(
            "crm JSON string",
            crm_text(|c, _| json!(c.mid).to_string().into_bytes()),
        )
        .refused(400, "invalid_json"),
        Case::new("crm JSON number", crm_text(|_, _| b"124".to_vec())).refused(400, "invalid_json"),
        Case::new("crm JSON null", crm_text(|_, _| b"null".to_vec())).refused(400, "invalid_json"),
        Case::new(
            "crm trailing data after the object",
            crm_text(|_, t| format!("{t}{{}}").into_bytes()),
        )
        .refused(400, "invalid_json"),
        Case::new("crm empty body", crm_text(|_, _| Vec::new())).refused(400, "invalid_json"),
        Case::new(
            "crm invalid UTF-8 in a string",
            binary(crm_text(|_, t| {
                let t = t.replacen("ceshi-webhook-002", "@@BAD@@", 1);
                splice(&t, "@@BAD@@", b"\"\xff\xfe\xc3\x28\"")
            })),
        )
        .refused(400, "invalid_json"),
        Case::new(
            "crm UTF-8 BOM before the object",
            binary(crm_text(|_, t| [&b"\xef\xbb\xbf"[..], t.as_bytes()].concat())),
        )
        .refused(400, "invalid_json"),
        Case::new(
            "crm body sent base64-encoded (binary content type)",
            binary(crm(|_, _| {})),
        )
        .accepted("accepted", crm_stored(|_, _| Ok(()))),
        Case::new(
            "crm raw NUL byte inside a string",
            crm_text(|_, t| {
                let t = t.replacen("ceshi-webhook-002", "@@NUL@@", 1);
                splice(&t, "@@NUL@@", b"\"a\x00b\"")
            }),
        )
        .refused(400, "invalid_json"),
        Case::new(
            "crm 10,000 levels of nesting",
            crm_text(|_, t| {
                let t = t.replacen("\"openplatform\":\"June\"", "\"openplatform\":\"@@DEEP@@\"", 1);
                splice(&t, "@@DEEP@@", &deeply_nested(10_000))
            }),
        )
        .refused(400, "invalid_json"),
        Case::new(
            "crm body of 256 KiB + 1",
            crm_text(|_, t| padded_to(&t.replacen('{', "{\"padding\":\"\",", 1), MAX_BODY + 1)),
        )
        .refused(413, "payload_too_large"),
        Case::new(
            "crm body of exactly 256 KiB",
            crm_text(|_, t| padded_to(&t.replacen('{', "{\"padding\":\"\",", 1), MAX_BODY)),
        )
        .accepted(
            "accepted",
            crm_stored(|_, item| expect_eq("raw size", attr_s(item, "last_raw")?.len(), MAX_BODY)),
        ),
        // `mid`: needed to pick the secret, so checked before the signature.
        Case::new("crm mid missing", crm_remove("/mid"))
            .refused(400, "missing_field")
            .naming("mid"),
        Case::new("crm mid empty", crm_set("/mid", json!("")))
            .refused(400, "missing_field")
            .naming("mid"),
        Case::new("crm mid null", crm_set("/mid", Value::Null))
            .refused(400, "missing_field")
            .naming("mid"),
        Case::new("crm mid a float", crm_set("/mid", json!(124.5)))
            .refused(400, "invalid_field")
            .naming("mid"),
        Case::new("crm mid a boolean", crm_set("/mid", json!(true)))
            .refused(400, "invalid_field")
            .naming("mid"),
        Case::new("crm mid an object", crm_set("/mid", json!({"id": "124"})))
            .refused(400, "invalid_field")
            .naming("mid"),
        Case::new(
            "crm mid over DynamoDB's key limit",
            crm(|c, b| b["mid"] = pad(&c.mid, MAX_PARTITION_KEY + 1).into()),
        )
        .refused(400, "invalid_field")
        .naming("mid"),
        Case::new("crm mid at DynamoDB's key limit", crm(|_, _| {}))
            .tenant(Tenant::Padded(MAX_PARTITION_KEY))
            .accepted("accepted", crm_stored(|_, _| Ok(()))),
        // The other required fields, on a correctly signed body.
        Case::new("crm event_type missing", crm_remove("/event_type"))
            .refused(400, "missing_field")
            .naming("event_type"),
        Case::new("crm event_type a number", crm_set("/event_type", json!(3)))
            .refused(400, "invalid_field")
            .naming("event_type"),
        Case::new(
            "crm event_type an array",
            crm_set("/event_type", json!(["object_update"])),
        )
        .refused(400, "invalid_field")
        .naming("event_type"),
        Case::new("crm create_time missing", crm_remove("/create_time"))
            .refused(400, "missing_field")
            .naming("create_time"),
        Case::new("crm create_time negative", crm_set("/create_time", json!(-1)))
            .refused(400, "invalid_field")
            .naming("create_time"),
        Case::new(
            "crm create_time non-numeric",
            crm_set("/create_time", json!("yesterday")),
        )
        .refused(400, "invalid_field")
        .naming("create_time"),
        Case::new(
            "crm create_time 1e15 as an integer",
            crm_set("/create_time", json!(1_000_000_000_000_000_i64)),
        )
        .refused(400, "invalid_field")
        .naming("create_time"),
        Case::new(
            "crm create_time 1e15 as written",
            crm_text(|_, t| t.replacen("1677481592", "1e15", 1).into_bytes()),
        )
        .refused(400, "invalid_field")
        .naming("create_time"),
        Case::new(
            "crm create_time a float",
            crm_set("/create_time", json!(1_677_481_592.5)),
        )
        .refused(400, "invalid_field")
        .naming("create_time"),
        Case::new("crm create_time a boolean", crm_set("/create_time", json!(true)))
            .refused(400, "invalid_field")
            .naming("create_time"),
        Case::new(
            "crm create_time a numeric string",
            crm_set("/create_time", json!("1677481592")),
        )
        .accepted(
            "accepted",
            crm_stored(|_, item| expect_eq("event_time", attr_n(item, "event_time"), Some("1677481592"))),
        ),
        Case::new("crm extra_data missing", crm_remove("/extra_data"))
            .refused(400, "missing_field")
            .naming("extra_data"),
        Case::new("crm extra_data a string", crm_set("/extra_data", json!("{}")))
            .refused(400, "invalid_field")
            .naming("extra_data"),
        Case::new("crm extra_data an empty array", crm_set("/extra_data", json!([])))
            .refused(400, "invalid_field")
            .naming("extra_data"),
        Case::new("crm extra_data.entity_id missing", crm_remove("/extra_data/entity_id"))
            .refused(400, "missing_field")
            .naming("extra_data.entity_id"),
        Case::new(
            "crm extra_data.entity_id empty",
            crm_set("/extra_data/entity_id", json!("")),
        )
        .refused(400, "missing_field")
        .naming("extra_data.entity_id"),
        Case::new(
            "crm extra_data.entity_id an object",
            crm_set("/extra_data/entity_id", json!({})),
        )
        .refused(400, "invalid_field")
        .naming("extra_data.entity_id"),
        Case::new(
            "crm extra_data.entity_id a float",
            crm_set("/extra_data/entity_id", json!(1.5)),
        )
        .refused(400, "invalid_field")
        .naming("extra_data.entity_id"),
        Case::new(
            "crm extra_data.entity_id over DynamoDB's key limit",
            crm(|c, b| b["extra_data"]["entity_id"] = pad(&c.entity, MAX_SORT_KEY + 1).into()),
        )
        .refused(400, "invalid_field")
        .naming("extra_data.entity_id"),
        // mapping_data shapes (contract 3.1: `[after]` or `[before, after]`).
        Case::new(
            "crm mapping_data value a string",
            crm_set("/extra_data/mapping_data/name", json!("x")),
        )
        .refused(400, "invalid_field")
        .naming("extra_data.mapping_data.name"),
        Case::new(
            "crm mapping_data value an object",
            crm_set("/extra_data/mapping_data/name", json!({"a": 1})),
        )
        .refused(400, "invalid_field")
        .naming("extra_data.mapping_data.name"),
        Case::new(
            "crm mapping_data value an empty array",
            crm_set("/extra_data/mapping_data/name", json!([])),
        )
        .refused(400, "invalid_field")
        .naming("extra_data.mapping_data.name"),
        Case::new(
            "crm mapping_data value of 3 elements",
            crm_set("/extra_data/mapping_data/name", json!(["a", "b", "c"])),
        )
        .refused(400, "invalid_field")
        .naming("extra_data.mapping_data.name"),
        Case::new(
            "crm mapping_data an empty array",
            crm_set("/extra_data/mapping_data", json!([])),
        )
        .refused(400, "invalid_field")
        .naming("extra_data.mapping_data"),
        // Tolerant reading (contract 2.3): an odd label is drift, read as absent, kept in last_raw.
        Case::new(
            "crm mapping_data_text label an object",
            crm_set("/extra_data/mapping_data_text/name", json!({"zh": "label-drift"})),
        )
        .accepted(
            "accepted",
            crm_stored(|_, item| {
                expect_eq("raw keeps it", attr_s(item, "last_raw")?.contains("label-drift"), true)?;
                let labels = item.get("field_labels").and_then(|v| v.as_m().ok());
                expect_eq(
                    "label read as absent",
                    labels.is_some_and(|m| m.contains_key("name")),
                    false,
                )
            }),
        ),
        Case::new(
            "crm notes an object",
            crm_set("/extra_data/notes", json!({"text": "notes-drift"})),
        )
        .accepted(
            "accepted",
            crm_stored(|_, item| expect_eq("raw keeps it", attr_s(item, "last_raw")?.contains("notes-drift"), true)),
        ),
        // Numbers DynamoDB cannot hold (|n| >= 1e126 or 0 < |n| < 1e-130): the field is invalid.
        Case::new(
            "crm mapping_data number over DynamoDB's range",
            crm_text(|_, t| t.replacen("\"name\":[", "\"score\":[1e300],\"name\":[", 1).into_bytes()),
        )
        .refused(400, "invalid_field")
        .naming("extra_data.mapping_data.score"),
        Case::new(
            "crm mapping_data number under DynamoDB's range",
            crm_text(|_, t| {
                t.replacen("\"name\":[", "\"score\":[{\"x\":[-1e-200]}],\"name\":[", 1)
                    .into_bytes()
            }),
        )
        .refused(400, "invalid_field")
        .naming("extra_data.mapping_data.score"),
        Case::new(
            "crm mapping_data numbers at DynamoDB's range",
            crm_text(|_, t| {
                t.replacen("\"name\":[", "\"big\":[9.99e125],\"tiny\":[-2e-130],\"name\":[", 1)
                    .into_bytes()
            }),
        )
        .accepted(
            "accepted",
            crm_stored(|_, item| {
                let fields = item["fields"].as_m().map_err(|_| "no fields")?;
                expect_eq("big", attr_n(fields, "big"), Some("9.99e+125"))?;
                // serde_json (without its `float_roundtrip` feature) may read such an exponent
                // one unit in the last place off: the stored number is within that of the sent one.
                let tiny: f64 = attr_n(fields, "tiny").and_then(|n| n.parse().ok()).unwrap_or(0.0);
                expect_eq("tiny ≈ -2e-130", ((tiny + 2e-130) / 2e-130).abs() < 1e-15, true)
            }),
        ),
        // Unknown event type: verified, acknowledged, its mapping_data merged (contract 2.3).
        Case::new(
            "crm unknown event type",
            crm_set("/event_type", json!("object_merge_v9")),
        )
        .accepted(
            "accepted",
            crm_stored(|_, item| {
                expect_eq("last_event_type", attr_s(item, "last_event_type")?, "object_merge_v9")?;
                let name = item["fields"]
                    .as_m()
                    .ok()
                    .and_then(|f| f.get("name"))
                    .and_then(|v| v.as_s().ok());
                expect_eq("fields.name", name.map(String::as_str), Some("ceshi-webhook-002"))
            }),
        ),
        // Methods: only POST (checked first).
        Case::new("crm GET", crm_method(Method::GET)).refused(405, "method_not_allowed"),
        Case::new("crm PUT", crm_method(Method::PUT)).refused(405, "method_not_allowed"),
        Case::new("crm DELETE", crm_method(Method::DELETE)).refused(405, "method_not_allowed"),
        Case::new("crm PATCH", crm_method(Method::PATCH)).refused(405, "method_not_allowed"),
        // Duplicated keys: serde_json keeps the last value of a duplicated key (no error), so
        // the body is read, digested and stored as if only the last one had been sent; the
        // signature covers the bytes, both keys included, and `last_raw` keeps them verbatim.
        Case::new(
            "crm duplicated mapping_data key",
            crm_text(|_, t| {
                let t = t.replacen("\"name\":[", "\"name\":[\"first\"],\"name\":[", 1);
                t.replacen("\"ceshi-webhook-002\"]", "\"last\"]", 1).into_bytes()
            }),
        )
        .accepted("accepted", crm_field("name", text("last"))),
        Case::new(
            "crm duplicated mid: the last one is the tenant",
            crm_text(|c, t| {
                t.replacen('{', &format!("{{\"mid\":{},", json!(c.decoy)), 1)
                    .into_bytes()
            }),
        )
        .tenant(Tenant::WithDecoy)
        .accepted("accepted", |ctx, before, after| {
            crm_stored(|_, _| Ok(()))(ctx, before, after)?;
            let decoy = |s: &Snapshot| Table::ALL.map(|t| s.items(&ctx.decoy, t).to_vec());
            expect_eq("the tables of the first (decoy) mid", decoy(after), decoy(before))
        }),
        // Strings are stored verbatim, whatever they hold.
        Case::new(
            "crm escaped NUL inside a field",
            crm_set("/extra_data/mapping_data/name", json!(["a", "a\u{0}b\u{0}"])),
        )
        .accepted("accepted", crm_field("name", text("a\u{0}b\u{0}"))),
        Case::new(
            "crm 100 KiB string inside a field",
            crm_set("/extra_data/mapping_data/name", json!(["a", "é".repeat(KIB_100 / 2)])),
        )
        .accepted("accepted", crm_field("name", |_| "é".repeat(KIB_100 / 2))),
        // A body within 256 KiB whose item would exceed DynamoDB's 400 KB (the raw body, the
        // field and its merge state each hold the value): refused for good, not 503 forever.
        Case::new(
            "crm 200 KiB field: the item would exceed 400 KB",
            crm_set("/extra_data/mapping_data/name", json!(["a", "z".repeat(200 * 1024)])),
        )
        .refused(413, "payload_too_large"),
    ]
}

fn activity_bad_input_cases() -> Vec<Case> {
    vec![
        Case::new("activity not JSON", activity_text(|_, t| half(&t))).refused(400, "invalid_json"),
        Case::new(
            "activity JSON array",
            activity_text(|_, t| format!("[{t}]").into_bytes()),
        )
        .refused(400, "invalid_json"),
        Case::new(
            "activity JSON string",
            activity_text(|_, t| json!(t).to_string().into_bytes()),
        )
        .refused(400, "invalid_json"),
        Case::new("activity JSON number", activity_text(|_, _| b"1701744489".to_vec())).refused(400, "invalid_json"),
        Case::new("activity JSON null", activity_text(|_, _| b"null".to_vec())).refused(400, "invalid_json"),
        Case::new("activity empty body", activity_text(|_, _| Vec::new())).refused(400, "invalid_json"),
        Case::new(
            "activity invalid UTF-8 in a string",
            binary(activity_text(|_, t| {
                let t = t.replacen("新建活动回调", "@@BAD@@", 1);
                splice(&t, "@@BAD@@", b"\"\xe6\x96\"")
            })),
        )
        .refused(400, "invalid_json"),
        Case::new(
            "activity body sent base64-encoded (binary content type)",
            binary(activity(|_, _| {})),
        )
        .accepted("success", activity_attr("title", text("新建活动回调"))),
        Case::new(
            "activity raw NUL byte inside a string",
            activity_text(|_, t| {
                let t = t.replacen("新建活动回调", "@@NUL@@", 1);
                splice(&t, "@@NUL@@", b"\"\x00\"")
            }),
        )
        .refused(400, "invalid_json"),
        Case::new(
            "activity 10,000 levels of nesting",
            activity_text(|_, t| {
                let t = t.replacen("\"operator\":\"StaffID2\"", "\"operator\":\"@@DEEP@@\"", 1);
                splice(&t, "@@DEEP@@", &deeply_nested(10_000))
            }),
        )
        .refused(400, "invalid_json"),
        Case::new(
            "activity body of 256 KiB + 1",
            activity_text(|_, t| padded_to(&t.replacen('{', "{\"padding\":\"\",", 1), MAX_BODY + 1)),
        )
        .refused(413, "payload_too_large"),
        Case::new(
            "activity body of exactly 256 KiB",
            activity_text(|_, t| padded_to(&t.replacen('{', "{\"padding\":\"\",", 1), MAX_BODY)),
        )
        .accepted(
            "success",
            activity_stored(|_, item| expect_eq("raw size", attr_s(item, "last_raw")?.len(), MAX_BODY)),
        ),
        // The tenant: path segment, else `?mid=`, else none (no ACTIVITY_DEFAULT_MID on the stack).
        Case::new(
            "activity empty tenant segment",
            activity_to(activity_root("/"), |c, b| b["mid"] = c.mid.clone().into()),
        )
        .refused(400, "missing_mid"),
        Case::new(
            "activity no tenant segment",
            activity_to(activity_root(""), |c, b| b["mid"] = c.mid.clone().into()),
        )
        .refused(400, "missing_mid"),
        Case::new(
            "activity empty mid query",
            activity_to(activity_root("/?mid="), |c, b| b["mid"] = c.mid.clone().into()),
        )
        .refused(400, "missing_mid"),
        Case::new(
            "activity no tenant and no signature",
            activity_to(activity_root("/"), |_, b| remove(b, "/sign")),
        )
        .refused(400, "missing_mid"),
        Case::new(
            "activity tenant from the mid query",
            activity_to(
                |c| {
                    format!(
                        "{}/lambda-url/activity-callback/activity/?mid={}",
                        stack::functions_url(),
                        c.mid
                    )
                },
                |_, _| {},
            ),
        )
        .accepted("success", activity_stored(|_, _| Ok(()))),
        Case::new(
            "activity tenant over DynamoDB's key limit",
            activity_to(|c| activity_url(&pad(&c.mid, MAX_PARTITION_KEY + 1)), |_, _| {}),
        )
        .refused(400, "invalid_field")
        .naming("mid"),
        Case::new("activity tenant at DynamoDB's key limit", activity(|_, _| {}))
            .tenant(Tenant::Padded(MAX_PARTITION_KEY))
            .accepted("success", activity_stored(|_, _| Ok(()))),
        // nonce / timestamp / sign absent or empty: 401 missing_signature.
        Case::new("activity nonce missing", activity_remove("/nonce")).refused(401, "missing_signature"),
        Case::new("activity timestamp missing", activity_remove("/timestamp")).refused(401, "missing_signature"),
        Case::new("activity sign missing", activity_remove("/sign")).refused(401, "missing_signature"),
        Case::new("activity nonce empty", activity_set("/nonce", json!(""))).refused(401, "missing_signature"),
        Case::new("activity timestamp null", activity_set("/timestamp", Value::Null)).refused(401, "missing_signature"),
        Case::new("activity sign empty", activity_set("/sign", json!(""))).refused(401, "missing_signature"),
        // Present but of a shape no sign can cover: 400 invalid_field.
        Case::new(
            "activity timestamp non-numeric",
            activity_set("/timestamp", json!("soon")),
        )
        .refused(400, "invalid_field")
        .naming("timestamp"),
        Case::new(
            "activity timestamp a float",
            activity(|c, b| b["timestamp"] = json!(c.now as f64 + 0.5)),
        )
        .refused(400, "invalid_field")
        .naming("timestamp"),
        Case::new("activity timestamp negative", activity_set("/timestamp", json!(-1)))
            .refused(400, "invalid_field")
            .naming("timestamp"),
        Case::new("activity nonce an object", activity_set("/nonce", json!({"n": 1})))
            .refused(400, "invalid_field")
            .naming("nonce"),
        Case::new("activity sign a number", activity_set("/sign", json!(12)))
            .refused(400, "invalid_field")
            .naming("sign"),
        Case::new(
            "activity nonce over DynamoDB's key limit",
            activity(|c, b| sign_into(b, &pad(&c.nonce, MAX_SORT_KEY + 1), c.now, dev_activity_secret())),
        )
        .refused(400, "invalid_field")
        .naming("nonce"),
        // The other fields, with a valid sign.
        Case::new("activity action missing", activity_remove("/action"))
            .refused(400, "missing_field")
            .naming("action"),
        Case::new("activity action a number", activity_set("/action", json!(1)))
            .refused(400, "invalid_field")
            .naming("action"),
        Case::new("activity attributes missing", activity_remove("/attributes"))
            .refused(400, "missing_field")
            .naming("attributes.event_id"),
        Case::new(
            "activity attributes a string",
            activity_set("/attributes", json!("event")),
        )
        .refused(400, "invalid_field")
        .naming("attributes"),
        Case::new(
            "activity event/add without event_id",
            activity_remove("/attributes/event_id"),
        )
        .refused(400, "missing_field")
        .naming("attributes.event_id"),
        Case::new(
            "activity event/edit without event_id",
            activity(|_, b| {
                b["action"] = "event/edit".into();
                remove(b, "/attributes/event_id");
            }),
        )
        .refused(400, "missing_field")
        .naming("attributes.event_id"),
        Case::new(
            "activity event/delete with an empty event_id",
            activity(|_, b| {
                b["action"] = "event/delete".into();
                b["attributes"] = json!({"event_id": ""});
            }),
        )
        .refused(400, "missing_field")
        .naming("attributes.event_id"),
        Case::new(
            "activity event_id a float",
            activity_set("/attributes/event_id", json!(1.5)),
        )
        .refused(400, "invalid_field")
        .naming("attributes.event_id"),
        Case::new(
            "activity event_id over DynamoDB's key limit",
            activity(|c, b| b["attributes"]["event_id"] = pad(&c.entity, MAX_SORT_KEY + 1).into()),
        )
        .refused(400, "invalid_field")
        .naming("attributes.event_id"),
        // Tolerant reading (contract 2.3): odd optional attributes are drift, read as absent.
        Case::new(
            "activity privilege_type out of range",
            activity_set("/attributes/privilege_type", json!(7)),
        )
        .accepted(
            "success",
            activity_stored(|_, item| expect_eq("privilege_type", item.contains_key("privilege_type"), false)),
        ),
        Case::new(
            "activity started_at not a time",
            activity_set("/attributes/started_at", json!("tomorrow")),
        )
        .accepted(
            "success",
            activity_stored(|_, item| {
                expect_eq("started_at", item.contains_key("started_at"), false)?;
                expect_eq("raw keeps it", attr_s(item, "last_raw")?.contains("tomorrow"), true)
            }),
        ),
        // Actions the service does not model: verified, acknowledged, only the nonce recorded.
        Case::new(
            "activity unknown action doc/add",
            activity(|_, b| {
                b["action"] = "doc/add".into();
                remove(b, "/attributes/event_id");
            }),
        )
        .accepted("success", only_the_nonce),
        Case::new(
            "activity unknown event/* action",
            activity_set("/action", json!("event/archive")),
        )
        .accepted("success", only_the_nonce),
        // Methods.
        Case::new("activity GET", activity_method(Method::GET)).refused(405, "method_not_allowed"),
        Case::new("activity PUT", activity_method(Method::PUT)).refused(405, "method_not_allowed"),
        Case::new("activity DELETE", activity_method(Method::DELETE)).refused(405, "method_not_allowed"),
        // Duplicated keys: the last value wins (serde_json), as for CRM.
        Case::new(
            "activity duplicated title key",
            activity_text(|_, t| {
                t.replacen("\"title\":", "\"title\":\"first\",\"title\":", 1)
                    .into_bytes()
            }),
        )
        .accepted("success", activity_attr("title", text("新建活动回调"))),
        Case::new(
            "activity duplicated title key, other order",
            activity_text(|_, t| {
                t.replacen(
                    "\"title\":\"新建活动回调\"",
                    "\"title\":\"新建活动回调\",\"title\":\"last\"",
                    1,
                )
                .into_bytes()
            }),
        )
        .accepted("success", activity_attr("title", text("last"))),
        Case::new(
            "activity escaped NUL inside a field",
            activity_set("/attributes/title", json!("\u{0}t\u{0}")),
        )
        .accepted("success", activity_attr("title", text("\u{0}t\u{0}"))),
        Case::new(
            "activity 100 KiB string inside a field",
            activity_set("/attributes/content", json!("<p>".repeat(KIB_100 / 3))),
        )
        .accepted("success", activity_attr("content", |_| "<p>".repeat(KIB_100 / 3))),
        Case::new(
            "activity 200 KiB field: the item would exceed 400 KB",
            activity_set("/attributes/content", json!("z".repeat(200 * 1024))),
        )
        .refused(413, "payload_too_large"),
    ]
}

// -------------------------------------------------------------------- the authenticity matrix

fn crm_authenticity_cases() -> Vec<Case> {
    let header = |value: fn(&[u8]) -> String| move |_: &Ctx, body: &[u8]| vec![("X-Signature", value(body))];
    let stored = || crm_stored(|_, _| Ok(()));
    let tenant_900 = tenant_secret("900", 1)[0];
    vec![
        Case::new("crm signature header absent", crm_headers(|_, _| {}, |_, _| Vec::new()))
            .refused(401, "missing_signature"),
        Case::new("crm signature empty", crm_headers(|_, _| {}, header(|_| String::new())))
            .refused(401, "missing_signature"),
        Case::new("crm signature blank", crm_headers(|_, _| {}, header(|_| "   ".into())))
            .refused(401, "missing_signature"),
        Case::new(
            "crm signature in another header",
            crm_headers(
                |_, _| {},
                |_, body| vec![("X-Hub-Signature", sign_crm(body, dev_crm_secret()))],
            ),
        )
        .refused(401, "missing_signature"),
        Case::new(
            "crm signature with a wrong secret",
            crm_headers(|_, _| {}, crm_signed_with("not-the-secret")),
        )
        .refused(401, "invalid_signature"),
        Case::new(
            "crm signature of another body",
            crm_headers(
                |_, _| {},
                |ctx, _| {
                    let mut other = crm_base(ctx);
                    other["create_time"] = json!(1_677_481_593);
                    vec![("X-Signature", sign_crm(other.to_string().as_bytes(), dev_crm_secret()))]
                },
            ),
        )
        .refused(401, "invalid_signature"),
        Case::new(
            "crm signature of the same JSON with other whitespace",
            crm_headers(
                |_, _| {},
                |_, body| {
                    let pretty = serde_json::to_string_pretty(&serde_json::from_slice::<Value>(body).unwrap()).unwrap();
                    vec![("X-Signature", sign_crm(pretty.as_bytes(), dev_crm_secret()))]
                },
            ),
        )
        .refused(401, "invalid_signature"),
        Case::new(
            "crm signature truncated",
            crm_headers(|_, _| {}, header(|b| good(b)[..39].to_owned())),
        )
        .refused(401, "invalid_signature"),
        Case::new(
            "crm signature not hex",
            crm_headers(|_, _| {}, header(|_| "zz".repeat(20))),
        )
        .refused(401, "invalid_signature"),
        Case::new(
            "crm signature with sha256= prefix",
            crm_headers(|_, _| {}, header(|b| format!("sha256={}", good(b)))),
        )
        .refused(401, "invalid_signature"),
        Case::new(
            "crm signature uppercase hex",
            crm_headers(|_, _| {}, header(|b| good(b).to_uppercase())),
        )
        .accepted("accepted", stored()),
        Case::new(
            "crm signature with sha1= prefix",
            crm_headers(|_, _| {}, header(|b| format!("sha1={}", good(b)))),
        )
        .accepted("accepted", stored()),
        Case::new(
            "crm signature with SHA1= prefix and uppercase hex",
            crm_headers(|_, _| {}, header(|b| format!("SHA1={}", good(b).to_uppercase()))),
        )
        .accepted("accepted", stored()),
        Case::new(
            "crm signature with surrounding blanks",
            crm_headers(|_, _| {}, header(|b| format!("  {}  ", good(b)))),
        )
        .accepted("accepted", stored()),
        // Order of checks: mid before the signature, the signature before the other fields.
        Case::new(
            "crm unsigned and mid missing",
            crm_headers(|_, b| remove(b, "/mid"), |_, _| Vec::new()),
        )
        .refused(400, "missing_field")
        .naming("mid"),
        Case::new(
            "crm unsigned and create_time invalid",
            crm_headers(|_, b| b["create_time"] = json!(-5), |_, _| Vec::new()),
        )
        .refused(401, "missing_signature"),
        Case::new(
            "crm forged and entity_id missing",
            crm_headers(|_, b| remove(b, "/extra_data/entity_id"), crm_signed_with("forger")),
        )
        .refused(401, "invalid_signature"),
        Case::new(
            "crm unsigned and not JSON",
            crm_request(Method::POST, |_| b"{\"mid\":".to_vec(), |_, _| Vec::new()),
        )
        .refused(400, "invalid_json"),
        Case::new(
            "crm unsigned and over 256 KiB",
            crm_request(Method::POST, |_| vec![b' '; MAX_BODY + 1], |_, _| Vec::new()),
        )
        .refused(413, "payload_too_large"),
        // Duplicates: the same event again changes nothing, even re-serialised (contract 4).
        Case::new("crm same body again", crm(|_, _| {}))
            .after(crm(|_, _| {}))
            .unchanged("duplicate"),
        Case::new(
            "crm same event with other key order and spacing",
            crm_text(|_, t| {
                serde_json::to_string_pretty(&serde_json::from_str::<Value>(&t).unwrap())
                    .unwrap()
                    .into_bytes()
            }),
        )
        .after(crm(|_, _| {}))
        .unchanged("duplicate"),
        // Tenant 900 has its own secret, which overrides the default one.
        Case::new("crm tenant 900 with the default secret", crm(|_, _| {}))
            .tenant(Tenant::Fixed("900"))
            .refused(401, "invalid_signature"),
        Case::new(
            "crm tenant 900 with its own secret",
            crm_headers(|_, _| {}, crm_signed_with(tenant_900)),
        )
        .tenant(Tenant::Fixed("900"))
        .accepted("accepted", stored()),
        Case::new(
            "crm tenant 900 as a number, with its own secret",
            crm_headers(|_, b| b["mid"] = json!(900), crm_signed_with(tenant_900)),
        )
        .tenant(Tenant::Fixed("900"))
        .accepted("accepted", stored()),
        Case::new(
            "crm another tenant with tenant 900's secret",
            crm_headers(|_, _| {}, crm_signed_with(tenant_900)),
        )
        .refused(401, "invalid_signature"),
    ]
}

/// Tenant 901 is configured with several secrets (`new-901,old-901`): each is valid, the
/// default one and a rotated-out one are not.
fn rotation_cases() -> Vec<Case> {
    let names = [
        "crm tenant 901 with its first secret",
        "crm tenant 901 with its second secret",
    ];
    let mut cases: Vec<Case> = tenant_secret("901", 2)
        .into_iter()
        .zip(names)
        .map(|(secret, name)| {
            Case::new(name, crm_headers(|_, _| {}, crm_signed_with(secret)))
                .tenant(Tenant::Fixed("901"))
                .accepted("accepted", crm_stored(|_, _| Ok(())))
        })
        .collect();
    cases.push(
        Case::new(
            "crm tenant 901 with a rotated-out secret",
            crm_headers(|_, _| {}, crm_signed_with("retired-901")),
        )
        .tenant(Tenant::Fixed("901"))
        .refused(401, "invalid_signature"),
    );
    cases.push(
        Case::new("crm tenant 901 with the default secret", crm(|_, _| {}))
            .tenant(Tenant::Fixed("901"))
            .refused(401, "invalid_signature"),
    );
    cases
}

fn activity_authenticity_cases() -> Vec<Case> {
    let resigned = |nonce: fn(&Ctx) -> String, offset: i64, secret: &'static str| {
        activity(move |ctx, body| sign_into(body, &nonce(ctx), ctx.now + offset, secret))
    };
    let own_nonce = |ctx: &Ctx| ctx.nonce.clone();
    vec![
        Case::new(
            "activity sign with a wrong secret",
            resigned(own_nonce, 0, "not-the-secret"),
        )
        .refused(401, "invalid_signature"),
        Case::new(
            "activity sign uppercase hex",
            activity(|_, b| b["sign"] = b["sign"].as_str().unwrap().to_uppercase().into()),
        )
        .refused(401, "invalid_signature"),
        Case::new(
            "activity sign of another nonce",
            activity(|ctx, b| b["sign"] = sign_activity("another", dev_activity_secret(), ctx.now).into()),
        )
        .refused(401, "invalid_signature"),
        Case::new(
            "activity sign of another timestamp",
            activity(|ctx, b| b["timestamp"] = json!(ctx.now - 1)),
        )
        .refused(401, "invalid_signature"),
        Case::new("activity sign not hex", activity_set("/sign", json!("not a sign")))
            .refused(401, "invalid_signature"),
        // Freshness: at most 300 s back and 30 s ahead (see MARGIN).
        Case::new(
            "activity timestamp older than the window",
            activity_at(-(WINDOW + MARGIN), false),
        )
        .refused(401, "stale_timestamp"),
        Case::new(
            "activity timestamp newer than the window",
            activity_at(FUTURE_WINDOW + MARGIN, false),
        )
        .refused(401, "stale_timestamp"),
        Case::new("activity timestamp two minutes ahead", activity_at(120, false)).refused(401, "stale_timestamp"),
        Case::new(
            "activity timestamp of 1970",
            activity(|c, b| sign_into(b, &c.nonce, 1, dev_activity_secret())),
        )
        .refused(401, "stale_timestamp"),
        Case::new(
            "activity timestamp old but within the window",
            activity_at(-(WINDOW - MARGIN), false),
        )
        .accepted("success", event_time_is(-(WINDOW - MARGIN))),
        Case::new(
            "activity timestamp ahead but within the window",
            activity_at(FUTURE_WINDOW - MARGIN, false),
        )
        .accepted("success", event_time_is(FUTURE_WINDOW - MARGIN)),
        Case::new("activity timestamp as a numeric string", activity_at(0, true)).accepted("success", event_time_is(0)),
        // Order of checks: sign before freshness, freshness before the fields.
        Case::new(
            "activity forged and stale",
            activity(|c, b| sign_into(b, &c.nonce, c.now - 10_000, "forger")),
        )
        .refused(401, "invalid_signature"),
        Case::new(
            "activity stale and action missing",
            activity(|c, b| {
                sign_into(b, &c.nonce, c.now - 10_000, dev_activity_secret());
                remove(b, "/action");
            }),
        )
        .refused(401, "stale_timestamp"),
        Case::new(
            "activity forged and event_id missing",
            activity(|c, b| {
                sign_into(b, &c.nonce, c.now, "forger");
                remove(b, "/attributes/event_id");
            }),
        )
        .refused(401, "invalid_signature"),
        // Replay (contract 2.2): a nonce is accepted once per secret that verified it.
        Case::new("activity nonce again with the same body", activity(|_, _| {}))
            .after(activity(|_, _| {}))
            .unchanged("success"),
        Case::new(
            "activity nonce again with the same body re-serialised",
            activity_text(|_, t| {
                serde_json::to_string_pretty(&serde_json::from_str::<Value>(&t).unwrap())
                    .unwrap()
                    .into_bytes()
            }),
        )
        .after(activity(|_, _| {}))
        .unchanged("success"),
        Case::new(
            "activity nonce again with another body",
            activity_set("/attributes/title", json!("replayed")),
        )
        .after(activity(|_, _| {}))
        .refused(401, "replayed_nonce"),
        Case::new(
            "activity nonce of a doc/add again with another body",
            activity(|_, b| b["action"] = "doc/edit".into()),
        )
        .after(activity(|_, b| b["action"] = "doc/add".into()))
        .refused(401, "replayed_nonce"),
        // Both tenants share the default secret: the callback accepted at the decoy, sent byte
        // for byte to the case's tenant, is refused, and nothing of it is written there.
        Case::new("activity same nonce for another tenant", activity(|_, _| {}))
            .after(activity_to(|ctx| activity_url(&ctx.decoy), |_, _| {}))
            .tenant(Tenant::WithDecoy)
            .refused(401, "replayed_nonce"),
    ]
}

// --------------------------------------------------------------------------------- the tests

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn crm_bad_input() {
    run("crm bad input", crm_bad_input_cases()).await;
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn activity_bad_input() {
    run("activity bad input", activity_bad_input_cases()).await;
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn crm_authenticity() {
    run("crm authenticity", crm_authenticity_cases()).await;
}

/// Needs `CRM_WEBHOOK_SECRET_901=new-901,old-901` on the stack and in the tests' environment.
#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn crm_secret_rotation() {
    run("crm secret rotation", rotation_cases()).await;
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn activity_authenticity() {
    run("activity authenticity", activity_authenticity_cases()).await;
}

#[test]
fn the_bad_input_matrix_has_at_least_40_distinct_cases() {
    let names: HashSet<&str> = crm_bad_input_cases()
        .iter()
        .chain(activity_bad_input_cases().iter())
        .map(|case| case.name)
        .collect();
    assert!(names.len() >= 40, "{} cases", names.len());
}
