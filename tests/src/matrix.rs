//! The machinery of the table-driven HTTP tests of contract 2.3 (`tests/tests/matrix.rs` holds
//! only their case tables): cases, request builders, snapshots of the three tables, write checks
//! and the runner.
//!
//! Each case runs under a tenant no other case (or run) uses, so the runner can compare the
//! contents of all three tables for that tenant before and after the request: a refusal must leave
//! them exactly as they were. Cases under a fixed tenant (`900`, `901`: the tenants the stack
//! configures with their own secrets) are CRM-only and compare only the items of the case's own
//! `entity_id`, since other tests write to those tenants too.
//!
//! Every delivery a compared tenant acknowledges, setup requests included, also goes through that
//! tenant's independent oracle ([`crate::oracle`], see [`Expected`]): its answer must be the
//! oracle's, and after the case the tenant's items, CRM records of applied events and nonce
//! records must be the oracle's, attribute by attribute.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::history::Source;
use crate::http::{activity_url, client, crm_url, dev_activity_secret, dev_crm_secret, exchange, Answer};
use crate::oracle::{self, Oracle};
pub use crate::signing::sign_activity_into as sign_into;
use crate::signing::{now_unix, sign_crm, unique_nonce};
use crate::stack::{self, unique_mid};
use crate::tables::{self, Table};
use aws_sdk_dynamodb::types::AttributeValue;
use reqwest::Method;
use serde_json::Value;

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures");
/// contract 2.3: bodies over 256 KiB are refused with 413.
pub const MAX_BODY: usize = 256 * 1024;
/// contract 2.3: every answer within 5 s.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// DynamoDB's limits on key values (bytes): partition key (`mid`), sort key (`entity_id`, `nonce`).
pub const MAX_PARTITION_KEY: usize = 2048;
pub const MAX_SORT_KEY: usize = 1024;
/// Default freshness windows of the functions: how far back (`ACTIVITY_MAX_AGE_SECONDS` unset)
/// and how far ahead (`ACTIVITY_MAX_FUTURE_SECONDS` unset).
pub const WINDOW: i64 = 300;
pub const FUTURE_WINDOW: i64 = 30;
/// Test and functions run on the same machine, so their clocks agree; what separates "now" in
/// the test from "now" in the function is the request's own latency (well under a second) and
/// at most one tick of the seconds counter. A margin of 5 s on either side of the window edge
/// keeps the outcome certain without weakening the check: 305 s back is refused, 295 s back
/// accepted; 35 s ahead refused, 25 s ahead accepted.
pub const MARGIN: i64 = 5;
pub const KIB_100: usize = 100 * 1024;

// ------------------------------------------------------------------------------------ cases

/// Which tenant a case runs under.
#[derive(Clone, Copy)]
pub enum Tenant {
    /// A fresh tenant (`unique_mid`).
    Unique,
    /// A fresh tenant and a fresh decoy tenant, for cases that name two: both are compared.
    WithDecoy,
    /// A fresh tenant padded to exactly this many bytes.
    Padded(usize),
    /// A tenant the stack configures specially (CRM only): only the case's entity is compared.
    Fixed(&'static str),
}

/// What one case's requests are built from: its tenant, a decoy tenant, its entity, its nonce and
/// its "now", fixed once so that setup requests and the request under test agree.
pub struct Ctx {
    pub mid: String,
    pub decoy: String,
    pub entity: String,
    pub nonce: String,
    pub now: i64,
    pub tenant: Tenant,
}

impl Ctx {
    pub fn new(tenant: Tenant) -> Self {
        let mid = match tenant {
            Tenant::Unique | Tenant::WithDecoy => unique_mid("matrix"),
            Tenant::Padded(len) => pad(&unique_mid("matrix"), len),
            Tenant::Fixed(mid) => mid.to_owned(),
        };
        Self {
            mid,
            decoy: unique_mid("matrix-decoy"),
            entity: format!("E-{}", unique_nonce()),
            nonce: unique_nonce(),
            now: now_unix(),
            tenant,
        }
    }

    /// Tenants whose tables the runner compares.
    pub fn tenants(&self) -> Vec<&str> {
        match self.tenant {
            Tenant::WithDecoy => vec![&self.mid, &self.decoy],
            _ => vec![&self.mid],
        }
    }

    /// Only the items of the case's entity are compared (a tenant other tests write to).
    pub fn scoped(&self) -> bool {
        matches!(self.tenant, Tenant::Fixed(_))
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Endpoint {
    Crm,
    Activity,
}

/// One HTTP request.
pub struct Req {
    pub endpoint: Endpoint,
    pub method: Method,
    pub url: String,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

pub type Build = Box<dyn Fn(&Ctx) -> Req + Send + Sync>;
pub type Check = Box<dyn Fn(&Ctx, &Snapshot, &Snapshot) -> Result<(), String> + Send + Sync>;

/// What a case may write.
pub enum Writes {
    /// Nothing: all three tables, for the case's tenant (and its decoy), are exactly as before.
    Nothing,
    /// Something: the check sees the tables before and after the request.
    Checked(Check),
}

pub struct Case {
    pub name: &'static str,
    pub tenant: Tenant,
    /// Requests sent first, each of which must be answered 200.
    pub setup: Vec<Build>,
    pub request: Build,
    pub status: u16,
    /// The error `code` of a refusal; of a 200, the CRM `status` or the activity body `success`.
    pub code: &'static str,
    /// A field the refusal's message must name.
    pub field: Option<&'static str>,
    pub writes: Writes,
}

impl Case {
    pub fn new(name: &'static str, request: Build) -> Self {
        Self {
            name,
            tenant: Tenant::Unique,
            setup: Vec::new(),
            request,
            status: 0,
            code: "<not set>",
            field: None,
            writes: Writes::Nothing,
        }
    }

    pub fn refused(mut self, status: u16, code: &'static str) -> Self {
        self.status = status;
        self.code = code;
        self.writes = Writes::Nothing;
        self
    }

    pub fn naming(mut self, field: &'static str) -> Self {
        self.field = Some(field);
        self
    }

    /// A 200 that changes nothing (a duplicate delivery).
    pub fn unchanged(mut self, code: &'static str) -> Self {
        self.status = 200;
        self.code = code;
        self.writes = Writes::Nothing;
        self
    }

    pub fn accepted(
        mut self,
        code: &'static str,
        check: impl Fn(&Ctx, &Snapshot, &Snapshot) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.status = 200;
        self.code = code;
        self.writes = Writes::Checked(Box::new(check));
        self
    }

    pub fn after(mut self, setup: Build) -> Self {
        self.setup.push(setup);
        self
    }

    pub fn tenant(mut self, tenant: Tenant) -> Self {
        self.tenant = tenant;
        self
    }
}

// ------------------------------------------------------------------------- request builders

pub fn fixture(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/{path}")).unwrap()).unwrap()
}

pub fn pad(text: &str, len: usize) -> String {
    assert!(text.len() <= len, "cannot pad {text} to {len} bytes");
    format!("{text}{}", "x".repeat(len - text.len()))
}

/// The value at `pointer` (whose parent exists) set to `new`.
pub fn set(body: &mut Value, pointer: &str, new: Value) {
    let (parent, key) = pointer.rsplit_once('/').expect("a JSON pointer");
    let parent = body
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("no parent for {pointer}"));
    match parent {
        Value::Object(map) => {
            map.insert(key.to_owned(), new);
        }
        other => panic!("{pointer}: parent is {other}"),
    }
}

pub fn remove(body: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').expect("a JSON pointer");
    body.pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .and_then(|map| map.remove(key))
        .unwrap_or_else(|| panic!("nothing at {pointer}"));
}

/// `text` with its only occurrence of the JSON string `"marker"` replaced by raw bytes.
pub fn splice(text: &str, marker: &str, bytes: &[u8]) -> Vec<u8> {
    let quoted = format!("\"{marker}\"");
    let at = text.find(&quoted).unwrap_or_else(|| panic!("{marker} not in the body"));
    let text = text.as_bytes();
    [&text[..at], bytes, &text[at + quoted.len()..]].concat()
}

/// The first half of `text`, cut at a character boundary: not JSON, but still UTF-8.
pub fn half(text: &str) -> Vec<u8> {
    text.as_bytes()[..text.floor_char_boundary(text.len() / 2)].to_vec()
}

/// `text` padded through its `padding` field to exactly `len` bytes (`padding` must be "").
pub fn padded_to(text: &str, len: usize) -> Vec<u8> {
    let empty = "\"padding\":\"\"";
    assert!(text.contains(empty) && text.len() <= len);
    text.replacen(empty, &format!("\"padding\":\"{}\"", "p".repeat(len - text.len())), 1)
        .into_bytes()
}

/// Closing brackets for an array nested `depth` levels deep: valid JSON refused for its depth.
pub fn deeply_nested(depth: usize) -> Vec<u8> {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
}

/// The CRM body of a case: `lead_object_update` for the case's tenant and entity.
pub fn crm_base(ctx: &Ctx) -> Value {
    let mut body = fixture("crm/lead_object_update.json");
    body["mid"] = ctx.mid.clone().into();
    body["extra_data"]["entity_id"] = ctx.entity.clone().into();
    body
}

/// The `X-Signature` header made with `secret`.
pub fn crm_signed_with(secret: &'static str) -> impl Fn(&Ctx, &[u8]) -> Vec<(&'static str, String)> + Send + Sync {
    move |_, body| vec![("X-Signature", sign_crm(body, secret))]
}

pub fn crm_request(
    method: Method,
    body: impl Fn(&Ctx) -> Vec<u8> + Send + Sync + 'static,
    headers: impl Fn(&Ctx, &[u8]) -> Vec<(&'static str, String)> + Send + Sync + 'static,
) -> Build {
    Box::new(move |ctx| {
        let body = body(ctx);
        Req {
            endpoint: Endpoint::Crm,
            method: method.clone(),
            url: crm_url(),
            content_type: "application/json",
            headers: headers(ctx, &body),
            body,
        }
    })
}

/// A correctly signed CRM request whose body is the base body edited by `edit`.
pub fn crm(edit: impl Fn(&Ctx, &mut Value) + Send + Sync + 'static) -> Build {
    crm_headers(edit, crm_signed_with(dev_crm_secret()))
}

/// A CRM request whose body is the base body edited by `edit`, with the headers `headers` makes.
pub fn crm_headers(
    edit: impl Fn(&Ctx, &mut Value) + Send + Sync + 'static,
    headers: impl Fn(&Ctx, &[u8]) -> Vec<(&'static str, String)> + Send + Sync + 'static,
) -> Build {
    let body = move |ctx: &Ctx| {
        let mut body = crm_base(ctx);
        edit(ctx, &mut body);
        body.to_string().into_bytes()
    };
    crm_request(Method::POST, body, headers)
}

pub fn crm_set(pointer: &'static str, value: Value) -> Build {
    crm(move |_, body| set(body, pointer, value.clone()))
}

pub fn crm_remove(pointer: &'static str) -> Build {
    crm(move |_, body| remove(body, pointer))
}

/// A correctly signed CRM request whose body is made from the base body's text.
pub fn crm_text(make: impl Fn(&Ctx, String) -> Vec<u8> + Send + Sync + 'static) -> Build {
    crm_request(
        Method::POST,
        move |ctx| make(ctx, crm_base(ctx).to_string()),
        crm_signed_with(dev_crm_secret()),
    )
}

/// The base CRM request, correctly signed, sent with `method`.
pub fn crm_method(method: Method) -> Build {
    crm_request(
        method,
        |ctx| crm_base(ctx).to_string().into_bytes(),
        crm_signed_with(dev_crm_secret()),
    )
}

/// The activity body of a case: `event_add` for the case's entity, signed for its nonce and now.
pub fn activity_base(ctx: &Ctx) -> Value {
    let mut body = fixture("activity/event_add.json");
    body["attributes"]["event_id"] = ctx.entity.clone().into();
    sign_into(&mut body, &ctx.nonce, ctx.now, dev_activity_secret());
    body
}

pub fn activity_request(
    method: Method,
    url: impl Fn(&Ctx) -> String + Send + Sync + 'static,
    body: impl Fn(&Ctx) -> Vec<u8> + Send + Sync + 'static,
) -> Build {
    Box::new(move |ctx| Req {
        endpoint: Endpoint::Activity,
        method: method.clone(),
        url: url(ctx),
        content_type: "application/json",
        headers: Vec::new(),
        body: body(ctx),
    })
}

/// An activity callback to the case's tenant: the signed base body edited by `edit` (edits of
/// `action` or `attributes` keep the sign valid; it covers only nonce and timestamp).
pub fn activity(edit: impl Fn(&Ctx, &mut Value) + Send + Sync + 'static) -> Build {
    activity_to(|ctx| activity_url(&ctx.mid), edit)
}

pub fn activity_to(
    url: impl Fn(&Ctx) -> String + Send + Sync + 'static,
    edit: impl Fn(&Ctx, &mut Value) + Send + Sync + 'static,
) -> Build {
    activity_request(Method::POST, url, move |ctx| {
        let mut body = activity_base(ctx);
        edit(ctx, &mut body);
        body.to_string().into_bytes()
    })
}

pub fn activity_set(pointer: &'static str, value: Value) -> Build {
    activity(move |_, body| set(body, pointer, value.clone()))
}

pub fn activity_remove(pointer: &'static str) -> Build {
    activity(move |_, body| remove(body, pointer))
}

/// An activity callback whose body is made from the signed base body's text.
pub fn activity_text(make: impl Fn(&Ctx, String) -> Vec<u8> + Send + Sync + 'static) -> Build {
    activity_request(
        Method::POST,
        |ctx| activity_url(&ctx.mid),
        move |ctx| make(ctx, activity_base(ctx).to_string()),
    )
}

/// The base activity body signed for `now + offset` (`as_text`: the timestamp as a string).
pub fn activity_at(offset: i64, as_text: bool) -> Build {
    activity(move |ctx, body| {
        let timestamp = ctx.now + offset;
        sign_into(body, &ctx.nonce, timestamp, dev_activity_secret());
        if as_text {
            body["timestamp"] = timestamp.to_string().into();
        }
    })
}

pub fn activity_method(method: Method) -> Build {
    activity_request(
        method,
        |ctx| activity_url(&ctx.mid),
        |ctx| activity_base(ctx).to_string().into_bytes(),
    )
}

/// `build` sent as `application/octet-stream`. `cargo lambda watch` hands a body of a binary
/// content type to the function base64-encoded (`isBase64Encoded`), as API Gateway does, so
/// this is how the tests reach the function with bytes that are not UTF-8: with a text content
/// type the emulator itself answers 500 before the function is invoked (its limitation, not the
/// function's, so it is not a case here).
pub fn binary(build: Build) -> Build {
    Box::new(move |ctx| Req {
        content_type: "application/octet-stream",
        ..build(ctx)
    })
}

/// The activity callback URL with a raw tail after `/activity` (no tenant segment).
pub fn activity_root(tail: &'static str) -> impl Fn(&Ctx) -> String + Send + Sync {
    move |_| format!("{}/lambda-url/activity-callback/activity{tail}", stack::functions_url())
}

// ------------------------------------------------------------------------------ snapshots

pub type Item = HashMap<String, AttributeValue>;

/// Every item of the three tables for some tenants, read consistently.
#[derive(PartialEq, Debug)]
pub struct Snapshot(BTreeMap<(String, Table), Vec<Item>>);

impl Snapshot {
    pub async fn take(db: &aws_sdk_dynamodb::Client, ctx: &Ctx) -> Self {
        let mut tables = BTreeMap::new();
        for mid in ctx.tenants() {
            for table in Table::ALL {
                let mut items = table.query(db, mid).await;
                if ctx.scoped() {
                    let entity = AttributeValue::S(ctx.entity.clone());
                    items.retain(|item| item.get("entity_id") == Some(&entity));
                }
                tables.insert((mid.to_owned(), table), items);
            }
        }
        Self(tables)
    }

    /// Deletes every item of the snapshot.
    pub async fn delete(&self, db: &aws_sdk_dynamodb::Client) {
        for ((_, table), items) in &self.0 {
            table.delete(db, items).await;
        }
    }

    pub fn items(&self, mid: &str, table: Table) -> &[Item] {
        self.0.get(&(mid.to_owned(), table)).map_or(&[], Vec::as_slice)
    }

    /// The one item of `table` under `mid` whose `key` is `value`.
    pub fn item(&self, mid: &str, table: Table, key: &str, value: &str) -> Result<&Item, String> {
        let wanted = AttributeValue::S(value.to_owned());
        let found: Vec<&Item> = self
            .items(mid, table)
            .iter()
            .filter(|item| item.get(key) == Some(&wanted))
            .collect();
        match found.as_slice() {
            [item] => Ok(item),
            other => Err(format!(
                "{table:?}/{}: expected one item with {key} = {}, found {}",
                short(mid),
                short(value),
                other.len()
            )),
        }
    }

    /// The tables of `mid` that differ from `other`'s.
    pub fn differences(&self, other: &Snapshot) -> Vec<String> {
        let keys: std::collections::BTreeSet<&(String, Table)> = self.0.keys().chain(other.0.keys()).collect();
        keys.into_iter()
            .filter(|key| self.0.get(*key) != other.0.get(*key))
            .map(|(mid, table)| {
                let count = |s: &Snapshot| s.0.get(&(mid.clone(), *table)).map_or(0, Vec::len);
                format!(
                    "{table:?}/{}: {} items before, {} after",
                    short(mid),
                    count(self),
                    count(other)
                )
            })
            .collect()
    }
}

// --------------------------------------------------------------------------- write checks

pub fn short(text: &str) -> String {
    if text.len() <= 60 {
        text.to_owned()
    } else {
        let head: String = text.chars().take(40).collect();
        format!("{head}… ({} bytes)", text.len())
    }
}

pub fn attr_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, String> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| format!("attribute {name} is not a string: {:?}", item.get(name).map(short_attr)))
}

pub fn attr_n<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_n().ok()).map(String::as_str)
}

pub fn short_attr(value: &AttributeValue) -> String {
    short(&format!("{value:?}"))
}

pub fn expect_eq<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "{what}: got {}, want {}",
            short(&format!("{got:?}")),
            short(&format!("{want:?}"))
        ))
    }
}

/// The CRM item of the case (with its record of applied events) was written; `check` looks at
/// the item.
pub fn crm_stored(
    check: impl Fn(&Ctx, &Item) -> Result<(), String> + Send + Sync + 'static,
) -> impl Fn(&Ctx, &Snapshot, &Snapshot) -> Result<(), String> + Send + Sync + 'static {
    move |ctx, _, after| {
        let item = after.item(&ctx.mid, Table::CrmEntities, "entity_id", &ctx.entity)?;
        let stored = shared::dynamo::read_entity::<shared::crm::CrmState>(item).map_err(|e| e.to_string())?;
        if stored.applied.is_empty() {
            return Err("the item records no applied event".into());
        }
        check(ctx, item)
    }
}

/// The value of CRM field `field` (in `fields`) is the string `want`.
pub fn crm_field(field: &'static str, want: impl Fn(&Ctx) -> String + Send + Sync + 'static) -> Check {
    Box::new(crm_stored(move |ctx, item| {
        let fields = item.get("fields").and_then(|f| f.as_m().ok()).ok_or("no fields map")?;
        let got = fields.get(field).and_then(|v| v.as_s().ok());
        expect_eq(&format!("fields.{field}"), got, Some(&want(ctx)))
    }))
}

/// The activity item of the case and its nonce record were written; `check` looks at the item.
pub fn activity_stored(
    check: impl Fn(&Ctx, &Item) -> Result<(), String> + Send + Sync + 'static,
) -> impl Fn(&Ctx, &Snapshot, &Snapshot) -> Result<(), String> + Send + Sync + 'static {
    move |ctx, _, after| {
        after.item(&ctx.mid, Table::ActivityNonces, "nonce", &ctx.nonce)?;
        let item = after.item(&ctx.mid, Table::Activities, "entity_id", &ctx.entity)?;
        check(ctx, item)
    }
}

pub fn activity_attr(name: &'static str, want: impl Fn(&Ctx) -> String + Send + Sync + 'static) -> Check {
    Box::new(activity_stored(move |ctx, item| {
        expect_eq(name, attr_s(item, name)?, want(ctx).as_str())
    }))
}

pub fn text(value: &'static str) -> impl Fn(&Ctx) -> String + Send + Sync {
    move |_| value.to_owned()
}

// --------------------------------------------------------------------------------- runner

/// Sends one request of a case; the answer is recorded in the answer ledger like every other.
pub async fn send(http: &reqwest::Client, req: Req) -> Answer {
    let mut request = http
        .request(req.method.clone(), &req.url)
        .header("content-type", req.content_type)
        .body(req.body);
    for (name, value) in &req.headers {
        request = request.header(*name, value);
    }
    exchange(request).await
}

/// The answer's code: a refusal's `error.code`, a CRM success's `status`, an activity success's
/// body; and the refusal's message.
pub fn code_of(endpoint: Endpoint, answer: &Answer) -> Result<(String, String), String> {
    let bad = || format!("unexpected answer {} {}", answer.status, short(&answer.body));
    let want_type = match (answer.status, endpoint) {
        (200, Endpoint::Activity) => "text/plain",
        _ => "application/json",
    };
    if !answer.content_type.starts_with(want_type) {
        return Err(format!("content-type {:?}, want {want_type}", answer.content_type));
    }
    if answer.status == 200 && endpoint == Endpoint::Activity {
        return Ok((answer.body.clone(), String::new()));
    }
    let json: Value = serde_json::from_str(&answer.body).map_err(|_| bad())?;
    let text = |v: &Value| v.as_str().map(str::to_owned).ok_or_else(bad);
    if answer.status == 200 {
        Ok((text(&json["status"])?, String::new()))
    } else {
        Ok((text(&json["error"]["code"])?, text(&json["error"]["message"])?))
    }
}

/// Runs one case, then deletes what it wrote: the local DynamoDB (moto) deep-copies every table a
/// transaction touches, so leaving this matrix's large items behind would slow every later write
/// of every test against the same stack.
pub async fn run_case(http: &reqwest::Client, db: &aws_sdk_dynamodb::Client, case: &Case) -> Result<(), String> {
    let ctx = Ctx::new(case.tenant);
    let outcome = exercise(http, db, case, &ctx).await;
    Snapshot::take(db, &ctx).await.delete(db).await;
    outcome
}

pub async fn exercise(
    http: &reqwest::Client,
    db: &aws_sdk_dynamodb::Client,
    case: &Case,
    ctx: &Ctx,
) -> Result<(), String> {
    let mut expected = Expected::new(ctx);
    for (index, setup) in case.setup.iter().enumerate() {
        let req = setup(ctx);
        let sent = Sent::of(&req);
        let answer = send(http, req).await;
        let (code, _) = code_of(sent.endpoint, &answer)?;
        if answer.status != 200 {
            return Err(format!("setup request {index} answered {} {code}", answer.status));
        }
        expected
            .delivered(&sent, &code)
            .map_err(|e| format!("setup request {index}: {e}"))?;
    }
    let before = Snapshot::take(db, ctx).await;
    let req = (case.request)(ctx);
    let sent = Sent::of(&req);
    let started = Instant::now();
    let answer = send(http, req).await;
    let elapsed = started.elapsed();
    let after = Snapshot::take(db, ctx).await;

    let (code, message) = code_of(sent.endpoint, &answer)?;
    expect_eq(
        "(status, code)",
        (answer.status, code.as_str()),
        (case.status, case.code),
    )?;
    if let Some(field) = case.field {
        if !message.contains(field) {
            return Err(format!("message {message:?} does not name `{field}`"));
        }
    }
    if elapsed > ANSWER_WITHIN {
        return Err(format!("answered after {elapsed:?}"));
    }
    match &case.writes {
        Writes::Nothing => {
            let differences = before.differences(&after);
            if !differences.is_empty() {
                return Err(format!("wrote something: {}", differences.join("; ")));
            }
        }
        Writes::Checked(check) => check(ctx, &before, &after)?,
    }
    match (answer.status, code.as_str()) {
        (200, _) => {
            let predicted = expected.delivered(&sent, &code)?;
            let want = match case.writes {
                Writes::Nothing => oracle::Answer::Duplicate,
                Writes::Checked(_) => oracle::Answer::Accepted,
            };
            expect_eq("the oracle's answer", predicted, want)?;
        }
        (401, "replayed_nonce") => expected.replay_refused(&sent)?,
        _ => {}
    }
    expected.compare(ctx, &after)
}

/// What the runner keeps of a request to feed the oracle once it is answered.
pub struct Sent {
    pub endpoint: Endpoint,
    pub url: String,
    pub body: Vec<u8>,
}

impl Sent {
    pub fn of(req: &Req) -> Self {
        Self {
            endpoint: req.endpoint,
            url: req.url.clone(),
            body: req.body.clone(),
        }
    }

    fn text(&self) -> Result<&str, String> {
        std::str::from_utf8(&self.body).map_err(|_| "an acknowledged body that is not UTF-8".to_owned())
    }

    /// The tenant the request is for: the CRM body's `mid`, or the activity URL's tenant
    /// segment, else its `mid` query parameter (contract 2.2).
    fn tenant(&self) -> Result<String, String> {
        match self.endpoint {
            Endpoint::Crm => Ok(oracle::crm_mid(self.text()?)),
            Endpoint::Activity => {
                let url = reqwest::Url::parse(&self.url).map_err(|e| format!("{}: {e}", self.url))?;
                let segment = url
                    .path()
                    .split_once("/activity/")
                    .map(|(_, tail)| tail.to_owned())
                    .filter(|tail| !tail.is_empty());
                let query = || {
                    url.query_pairs()
                        .find(|(name, _)| name == "mid")
                        .map(|(_, v)| v.into_owned())
                };
                segment
                    .or_else(query)
                    .ok_or_else(|| format!("no tenant in {}", self.url))
            }
        }
    }

    fn source(&self) -> Source {
        match self.endpoint {
            Endpoint::Crm => Source::Crm,
            Endpoint::Activity => Source::Activity,
        }
    }
}

/// The independent oracle ([`crate::oracle`]) of each tenant a case compares, fed every
/// delivery the service acknowledged: what the tables must hold, attribute by attribute.
pub struct Expected {
    oracles: BTreeMap<String, Oracle>,
    /// Only the case's entity is compared (a tenant other tests write to).
    scoped: Option<String>,
}

impl Expected {
    pub fn new(ctx: &Ctx) -> Self {
        Self {
            oracles: ctx
                .tenants()
                .into_iter()
                .map(|mid| (mid.to_owned(), Oracle::new(mid)))
                .collect(),
            scoped: ctx.scoped().then(|| ctx.entity.clone()),
        }
    }

    fn oracle(&mut self, sent: &Sent) -> Result<&mut Oracle, String> {
        let tenant = sent.tenant()?;
        self.oracles.get_mut(&tenant).ok_or_else(|| {
            format!(
                "a delivery to tenant {}, which the case does not compare",
                short(&tenant)
            )
        })
    }

    /// Applies an acknowledged delivery; the service's answer (`code`: the CRM `status`, or the
    /// activity's `success`, which is the same for a new and a repeated callback) must be the
    /// oracle's. Returns the oracle's answer.
    pub fn delivered(&mut self, sent: &Sent, code: &str) -> Result<oracle::Answer, String> {
        let body = sent.text()?.to_owned();
        let predicted = self.oracle(sent)?.deliver(sent.source(), &body);
        let agrees = match (sent.endpoint, predicted) {
            (_, oracle::Answer::ReplayedNonce) => false,
            (Endpoint::Crm, oracle::Answer::Accepted) => code == "accepted",
            (Endpoint::Crm, oracle::Answer::Duplicate) => code == "duplicate",
            (Endpoint::Activity, _) => code == "success",
        };
        if agrees {
            Ok(predicted)
        } else {
            Err(format!("answered {code}, the oracle says {predicted:?}"))
        }
    }

    /// A callback refused as a replayed nonce: the oracle of its tenant refuses it too, or
    /// another tenant the case compares recorded its nonce (a nonce is accepted at one tenant of
    /// a secret list only, which one oracle, being one tenant, does not model).
    pub fn replay_refused(&mut self, sent: &Sent) -> Result<(), String> {
        let body = sent.text()?.to_owned();
        let mut trial = self.oracle(sent)?.clone();
        if trial.deliver(sent.source(), &body) == oracle::Answer::ReplayedNonce {
            return Ok(());
        }
        let nonce = oracle::callback_nonce(&body);
        if self.oracles.values().any(|oracle| oracle.knows_nonce(&nonce)) {
            Ok(())
        } else {
            Err("refused as a replayed nonce, but no compared tenant recorded the nonce".into())
        }
    }

    /// Every entity item and nonce record of the compared tenants in `snapshot` is the oracle's.
    pub fn compare(&self, ctx: &Ctx, snapshot: &Snapshot) -> Result<(), String> {
        let mut wrong = Vec::new();
        for (mid, oracle) in &self.oracles {
            let mut want = oracle.items();
            if let Some(entity) = &self.scoped {
                want.retain(|(_, id), _| id == entity);
            }
            let stored = tables::by_entity(
                snapshot.items(mid, Table::CrmEntities),
                snapshot.items(mid, Table::Activities),
            );
            wrong.extend(tables::mismatches(&want, &stored));
            let nonces = snapshot.items(mid, Table::ActivityNonces);
            wrong.extend(tables::nonce_mismatches(&oracle.nonce_records(), nonces));
            let mut records = oracle.record_keys();
            records.retain(|(source, _)| *source == Source::Crm);
            let stored_records = tables::record_keys_of(snapshot.items(mid, Table::CrmEntities), &[]);
            if stored_records != records {
                wrong.push(format!(
                    "{}: CRM records of applied events: stored {stored_records:?}, expected {records:?}",
                    short(mid)
                ));
            }
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the stored state is not the oracle's ({}):\n    {}",
                short(&ctx.mid),
                wrong.join("\n    ")
            ))
        }
    }
}

/// Runs every case (one after the other: the local DynamoDB serialises requests anyway) and
/// reports every failure at once.
pub async fn run(matrix: &str, cases: Vec<Case>) {
    let names: HashSet<&str> = cases.iter().map(|case| case.name).collect();
    assert_eq!(names.len(), cases.len(), "{matrix}: case names must be distinct");
    let http = client();
    let db = stack::dynamodb_client();
    let mut failures = Vec::new();
    for case in &cases {
        if let Err(failure) = run_case(&http, &db, case).await {
            failures.push(format!("  {}: {failure}", case.name));
        }
    }
    let count = |endpoint: Endpoint| {
        cases
            .iter()
            .filter(|case| {
                let probe = Ctx::new(case.tenant);
                (case.request)(&probe).endpoint == endpoint
            })
            .count()
    };
    eprintln!(
        "{matrix}: {} cases ({} CRM, {} activity), {} failed",
        cases.len(),
        count(Endpoint::Crm),
        count(Endpoint::Activity),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{matrix}: {} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// An acknowledged action that names no activity the service models: the nonce is recorded (so
/// a replay is still recognised) and nothing else.
pub fn only_the_nonce(ctx: &Ctx, _: &Snapshot, after: &Snapshot) -> Result<(), String> {
    after.item(&ctx.mid, Table::ActivityNonces, "nonce", &ctx.nonce)?;
    expect_eq("activities", after.items(&ctx.mid, Table::Activities).len(), 0)
}

pub fn tenant_secret(mid: &str, at_least: usize) -> Vec<&'static str> {
    let variable = format!("CRM_WEBHOOK_SECRET_{mid}");
    let list = std::env::var(&variable).unwrap_or_else(|_| {
        panic!("{variable} is not set: the stack and the tests need CRM_WEBHOOK_SECRET_900=tenant-900-secret and CRM_WEBHOOK_SECRET_901=new-901,old-901")
    });
    let secrets: Vec<&'static str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| &*Box::leak(s.to_owned().into_boxed_str()))
        .collect();
    assert!(
        secrets.len() >= at_least,
        "{variable} must hold at least {at_least} secrets"
    );
    secrets
}

/// The correct signature of `body` under the default secret.
pub fn good(body: &[u8]) -> String {
    sign_crm(body, dev_crm_secret())
}

/// The activity was stored with `event_time` = the case's now + `offset`.
pub fn event_time_is(offset: i64) -> Check {
    Box::new(activity_stored(move |ctx, item| {
        expect_eq(
            "event_time",
            attr_n(item, "event_time"),
            Some((ctx.now + offset).to_string().as_str()),
        )
    }))
}
