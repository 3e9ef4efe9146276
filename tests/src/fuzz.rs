//! A seeded mutation fuzzer for the pure ingest path of both sources: verification, parsing,
//! normalization, merging and item building, exactly as the handlers chain them.
//!
//! Inputs start from the vendors' payloads in `fixtures/` and are mutated at two levels: bytes
//! (bit flips, JSON-significant bytes, insertions of troublesome tokens, deletions, splices,
//! truncation) and structure (a value anywhere in the tree replaced by another type, a huge or
//! odd number, a long, NUL-bearing or padded string, deep nesting; keys removed, renamed with
//! spaces, or duplicated). Most mutated bodies are then signed correctly, so that they get past
//! verification into parsing and normalization instead of stopping at the signature.
//!
//! Besides "no panic", every input that is accepted must satisfy what the handlers and the store
//! rely on: a non-empty tenant and entity and an item keyed by them, convertible to DynamoDB
//! attributes. It is then merged, with two well-formed events of the same entity (one at the
//! same time, so that the tie-break decides), in two of the six delivery orders (drawn from the
//! seed), each followed by the redelivery of all three, through the store's own steps without a
//! server: read the stored item back (it must always decode), recognise a duplicate from its
//! record (a callback: from its nonce), merge, record, write the item with its bookkeeping. Each
//! of these properties can fail, and each names what broke:
//! - every answer (accepted or duplicate) is the independent oracle's (`tests::oracle`, which
//!   reads the bodies with `serde_json` and never calls the model crate);
//! - both orders leave exactly the oracle's item, `version` and `event_count` included, and the
//!   same `merge` bytes (order independence);
//! - every written item decodes, and the last one, decoded and written again, is the same item;
//! - merging any of the events once more changes no value (idempotence: a redelivery the
//!   record no longer holds), `event_count` aside.
//!
//! The run is reproducible from its seed (`FUZZ_SEED` for the test, `--seed` for `fuzz-ingest`).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::history::Source;
use crate::oracle::{Answer, Oracle, SdkItem};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};
use shared::activity::verify::{self as activity_verify, Freshness};
use shared::activity::{ActivityEvent, ActivityIntake, ActivityState};
use shared::bookkeeping::{self, AppliedEvents, Registers};
use shared::clock::FixedClock;
use shared::crm::{self, CrmEvent, CrmIntake, CrmState};
use shared::dynamo::{item_to_sdk, read_entity, FORMAT, MERGE, VERSION};
use shared::format1::Format1;
use shared::item::{AttrValue, Item};
use shared::merge::{Mergeable, Stamp};
use shared::secret::{Secret, TenantSecrets};
use shared::timefmt::SourceOffset;
use shared::ApiError;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures");
const CRM_SECRET: &str = "fuzz-crm-secret";
const ACTIVITY_SECRET: &str = "fuzz-activity-secret";
const SIGNATURE_HEADER: &str = "X-Signature";
const FRESHNESS: Freshness = Freshness::DEFAULT;
/// The tenant the activity inputs are posted for (the handler reads it from the path).
const ACTIVITY_MID: &str = "124";
/// Larger inputs are cut: the functions refuse bodies over 256 KiB before parsing anything.
const MAX_INPUT: usize = 300 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Crm,
    Activity,
}

/// What the runs did, to show that the inputs reach deep into the pipeline.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub execs: u64,
    /// Inputs that came out as an item, per target.
    pub crm_items: u64,
    pub activity_items: u64,
    /// Refusals by error code.
    pub refusals: std::collections::BTreeMap<&'static str, u64>,
}

/// An input that broke the pipeline: a panic or a broken invariant.
#[derive(Debug)]
pub struct Finding {
    pub target: Target,
    pub input: Vec<u8>,
    pub problem: String,
}

pub struct Fuzzer {
    rng: StdRng,
    corpus: Vec<(Target, Vec<u8>)>,
    crm: CrmIntake,
    activity: ActivityIntake,
    pub stats: Stats,
}

impl Fuzzer {
    pub fn new(seed: u64) -> Self {
        let mut corpus = Vec::new();
        for (dir, target) in [("crm", Target::Crm), ("activity", Target::Activity)] {
            let mut paths: Vec<PathBuf> = std::fs::read_dir(Path::new(FIXTURES).join(dir))
                .expect("fixtures directory")
                .map(|entry| entry.expect("a directory entry").path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
                .collect();
            paths.sort();
            corpus.extend(
                paths
                    .into_iter()
                    .map(|path| (target, std::fs::read(path).expect("a fixture"))),
            );
        }
        Fuzzer {
            rng: StdRng::seed_from_u64(seed),
            corpus,
            crm: CrmIntake {
                signature_header: SIGNATURE_HEADER.to_owned(),
                scheme: Default::default(),
                secrets: TenantSecrets::from_vars("CRM_WEBHOOK_SECRET", [("CRM_WEBHOOK_SECRET", CRM_SECRET)]),
                offset: SourceOffset::BEIJING,
            },
            activity: ActivityIntake::new(
                TenantSecrets::from_vars(
                    "ACTIVITY_CALLBACK_SECRET",
                    [("ACTIVITY_CALLBACK_SECRET", ACTIVITY_SECRET)],
                ),
                FRESHNESS,
                SourceOffset::BEIJING,
            ),
            stats: Stats::default(),
        }
    }

    /// Runs `execs` inputs; stops at the first finding.
    pub fn run(&mut self, execs: u64) -> Result<(), Finding> {
        for _ in 0..execs {
            // Both sources equally often, whatever the number of fixtures of each.
            let target = if self.rng.random_bool(0.5) {
                Target::Crm
            } else {
                Target::Activity
            };
            let seeds: Vec<&Vec<u8>> = self
                .corpus
                .iter()
                .filter(|(t, _)| *t == target)
                .map(|(_, b)| b)
                .collect();
            let seed = (*seeds.choose(&mut self.rng).expect("fixtures of each source")).clone();
            let (input, signature, now) = self.mutate(target, seed);
            self.stats.execs += 1;
            let outcome = catch_unwind(AssertUnwindSafe(|| match target {
                Target::Crm => self.crm(&input, &signature),
                Target::Activity => self.activity(&input, now),
            }));
            let problem = match outcome {
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None)) => continue,
                Ok(Err(problem)) => problem,
                Err(panic) => format!("panic: {}", panic_message(&*panic)),
            };
            return Err(Finding { target, input, problem });
        }
        Ok(())
    }

    /// The CRM handler's pipeline. `Ok(None)`: refused, as documented.
    fn crm(&mut self, body: &[u8], signature: &str) -> Result<Option<()>, String> {
        let event = match self.crm.verified_event(body, Some(signature)) {
            Ok(event) => event,
            Err(error) => return self.refused(&error),
        };
        if event.mid.trim().is_empty() || event.entity_id.trim().is_empty() {
            return Err(format!(
                "accepted without a tenant or entity: {:?}/{:?}",
                event.mid, event.entity_id
            ));
        }
        let item = CrmState::merge(None, &event).to_item(UPDATED_AT);
        check_item(&item, &event.mid, &event.entity_id)?;
        let companions = crm_companions(&event)?;
        let body = std::str::from_utf8(body).map_err(|e| format!("an accepted body is not UTF-8: {e}"))?;
        let [first, second] = companions;
        check_orders(
            Source::Crm,
            &event.mid,
            &event.entity_id,
            [(body.to_owned(), event.clone()), first, second],
            two_orders(&mut self.rng),
            |state: &CrmState| state.to_item(UPDATED_AT),
        )?;
        self.stats.crm_items += 1;
        Ok(Some(()))
    }

    /// The activity handler's pipeline, for tenant `124` at time `now`.
    fn activity(&mut self, body: &[u8], now: i64) -> Result<Option<()>, String> {
        // The handler's clock is the machine's; here each input brings its own instant.
        self.activity.clock = Arc::new(FixedClock(now));
        let event = match self.activity.verified_event(body, Some(ACTIVITY_MID)) {
            Ok(event) => event,
            Err(error) => return self.refused(&error),
        };
        let Some(activity_id) = event.activity_id().map(str::to_owned) else {
            return Ok(Some(())); // an action that names no activity: acknowledged, nothing stored
        };
        if activity_id.trim().is_empty() {
            return Err("an activity with an empty id".into());
        }
        let item = ActivityState::merge(None, &event).to_item(UPDATED_AT);
        check_item(&item, ACTIVITY_MID, &activity_id)?;
        let companions = activity_companions(&event, &activity_id)?;
        let body = std::str::from_utf8(body).map_err(|e| format!("an accepted body is not UTF-8: {e}"))?;
        let [first, second] = companions;
        check_orders(
            Source::Activity,
            ACTIVITY_MID,
            &activity_id,
            [(body.to_owned(), event.clone()), first, second],
            two_orders(&mut self.rng),
            |state: &ActivityState| state.to_item(UPDATED_AT),
        )?;
        self.stats.activity_items += 1;
        Ok(Some(()))
    }

    fn refused(&mut self, error: &ApiError) -> Result<Option<()>, String> {
        let status = error.status();
        if !(400..500).contains(&status) {
            return Err(format!("refused with {status}: {error}"));
        }
        *self.stats.refusals.entry(error.code()).or_default() += 1;
        Ok(None)
    }

    /// A mutated input, the CRM signature to send with it, and the activity clock.
    fn mutate(&mut self, target: Target, seed: Vec<u8>) -> (Vec<u8>, String, i64) {
        let rng = &mut self.rng;
        let mut input = seed;
        // Mostly structural: a byte-level change usually ends the input's journey at the parser.
        for _ in 0..rng.random_range(1..=3) {
            if rng.random_bool(0.8) {
                input = mutate_structure(rng, &input);
            } else {
                mutate_bytes(rng, &mut input, &self.corpus);
            }
        }
        input.truncate(MAX_INPUT);
        let now = match target {
            Target::Activity if rng.random_bool(0.8) => resign_activity(rng, &mut input),
            _ => rng.random_range(0..2_000_000_000),
        };
        let signature = if rng.random_bool(0.9) {
            crm::verify::sign(&input, &Secret::new(CRM_SECRET))
        } else {
            random_text(rng, 0..48)
        };
        (input, signature, now)
    }
}

/// `updated_at` of the items the fuzzer builds: the time of a write, which the oracle leaves aside.
const UPDATED_AT: &str = "2026-01-01T00:00:00Z";

/// Two well-formed events of `event`'s lead: an update at the same time (the tie-break orders
/// them) and a create a second earlier, as bodies and parsed.
fn crm_companions(event: &CrmEvent) -> Result<[(String, CrmEvent); 2], String> {
    let companion = |file: &str, time: i64| -> Result<(String, CrmEvent), String> {
        let path = format!("{FIXTURES}/crm/{file}");
        let mut value: Value = serde_json::from_str(&std::fs::read_to_string(&path).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        value["mid"] = json!(event.mid);
        value["create_time"] = json!(time);
        value["extra_data"]["entity_id"] = json!(event.entity_id);
        let body = value.to_string();
        let envelope = shared::envelope::Envelope::parse(body.as_bytes()).map_err(|e| e.to_string())?;
        let parsed = CrmEvent::from_envelope(envelope, SourceOffset::BEIJING)
            .map_err(|e| format!("a companion of an accepted event is refused: {e}"))?;
        Ok((body, parsed))
    };
    Ok([
        companion("lead_object_update.json", event.create_time)?,
        companion(
            "seed_124_object_create.json",
            event.create_time.saturating_sub(1).max(0),
        )?,
    ])
}

/// An edit at the same time as `event` and a delete a second later, for its activity (nonces
/// the fixtures and mutations do not use).
fn activity_companions(event: &ActivityEvent, activity_id: &str) -> Result<[(String, ActivityEvent); 2], String> {
    let companion = |file: &str, nonce: &str, time: i64| -> Result<(String, ActivityEvent), String> {
        let path = format!("{FIXTURES}/activity/{file}");
        let mut value: Value = serde_json::from_str(&std::fs::read_to_string(&path).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        value["nonce"] = json!(nonce);
        value["timestamp"] = json!(time);
        value["attributes"]["event_id"] = json!(activity_id);
        let body = value.to_string();
        let envelope = shared::envelope::Envelope::parse(body.as_bytes()).map_err(|e| e.to_string())?;
        let parsed = ActivityEvent::from_envelope(envelope, ACTIVITY_MID, nonce, time, SourceOffset::BEIJING)
            .map_err(|e| format!("a companion of an accepted callback is refused: {e}"))?;
        Ok((body, parsed))
    };
    Ok([
        companion("event_edit.json", "fuzz-companion-edit", event.timestamp)?,
        companion(
            "event_delete.json",
            "fuzz-companion-delete",
            event.timestamp.saturating_add(1),
        )?,
    ])
}

/// What the store's steps read of an event besides merging it: its place in the order and, for
/// a callback, the nonce whose record makes a second delivery a duplicate.
trait Delivered: Clone {
    fn stamp(&self) -> Stamp;
    /// `None`: a second delivery is recognised by the item's record of applied events instead.
    fn nonce(&self) -> Option<&str>;
}

impl Delivered for CrmEvent {
    fn stamp(&self) -> Stamp {
        CrmEvent::stamp(self)
    }
    fn nonce(&self) -> Option<&str> {
        None
    }
}

impl Delivered for ActivityEvent {
    fn stamp(&self) -> Stamp {
        ActivityEvent::stamp(self)
    }
    fn nonce(&self) -> Option<&str> {
        Some(&self.nonce)
    }
}

/// One entity's deliveries through the store's steps without a server, as the adapter takes
/// them: the stored item is read back (it must decode), a delivery whose stamp the record holds
/// (or, for a callback, whose nonce was recorded) is a duplicate, otherwise the event is merged
/// and recorded and the whole item written with its version and bookkeeping. The answers, the
/// last item written and the state it decodes to.
fn store_deliveries<S>(
    deliveries: &[(String, S::Event)],
    to_item: impl Fn(&S) -> Item,
) -> Result<(Vec<Answer>, SdkItem, S), String>
where
    S: Mergeable + Registers + Format1 + Clone,
    S::Event: Delivered,
{
    let mut stored: Option<SdkItem> = None;
    let mut nonces = std::collections::BTreeSet::new();
    let mut answers = Vec::new();
    for (_, event) in deliveries {
        let current = match &stored {
            Some(item) => Some(read_entity::<S>(item).map_err(|e| format!("a written item does not decode: {e}"))?),
            None => None,
        };
        let stamp = event.stamp();
        let seen = match event.nonce() {
            Some(nonce) => !nonces.insert(nonce.to_owned()),
            None => current.as_ref().is_some_and(|t| t.applied.contains(&stamp)),
        };
        if seen {
            answers.push(Answer::Duplicate);
            continue;
        }
        let (version, mut applied, state) = match current {
            Some(t) => (t.version, t.applied, Some(t.state)),
            None => (0, AppliedEvents::default(), None),
        };
        let state = S::merge(state, event);
        applied.record(stamp, &state);
        stored = Some(written_item(version + 1, &applied, &state, &to_item)?);
        answers.push(Answer::Accepted);
    }
    let item = stored.ok_or("no delivery was stored")?;
    let last = read_entity::<S>(&item).map_err(|e| format!("the last written item does not decode: {e}"))?;
    let again = written_item(last.version, &last.applied, &last.state, &to_item)?;
    if again != item {
        return Err(format!(
            "the last item, decoded and written again, differs:\n  written {item:?}\n  again   {again:?}"
        ));
    }
    Ok((answers, item, last.state))
}

/// The whole item the adapter writes: the state's attributes, `version`, `format` and `merge`.
fn written_item<S: Registers>(
    version: u64,
    applied: &AppliedEvents,
    state: &S,
    to_item: impl Fn(&S) -> Item,
) -> Result<SdkItem, String> {
    let merge = bookkeeping::encode(applied, state).map_err(|e| format!("bookkeeping: {e}"))?;
    let mut item = item_to_sdk(to_item(state));
    item.insert(VERSION.to_owned(), AttributeValue::N(version.to_string()));
    item.insert(
        FORMAT.to_owned(),
        AttributeValue::N(bookkeeping::FORMAT_VERSION.to_string()),
    );
    item.insert(MERGE.to_owned(), AttributeValue::B(Blob::new(merge)));
    Ok(item)
}

/// Every order of three events.
const ORDERS: [[usize; 3]; 6] = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];

/// Two different orders of [`ORDERS`]: over many inputs, every pair is drawn.
fn two_orders(rng: &mut StdRng) -> [[usize; 3]; 2] {
    let first = rng.random_range(0..ORDERS.len());
    let second = (first + rng.random_range(1..ORDERS.len())) % ORDERS.len();
    [ORDERS[first], ORDERS[second]]
}

/// One entity's three events in each of `orders`, each order followed by the redelivery of all
/// three in reverse, through [`store_deliveries`]: each answer is the independent oracle's, each
/// final item (`merge` and `updated_at` aside) is the oracle's, both orders leave the same
/// `merge` bytes, and merging any of the events once more (a redelivery the record no longer
/// holds) changes no value.
fn check_orders<S>(
    source: Source,
    mid: &str,
    entity_id: &str,
    events: [(String, S::Event); 3],
    orders: [[usize; 3]; 2],
    to_item: impl Fn(&S) -> Item + Copy,
) -> Result<(), String>
where
    S: Mergeable + Registers + Format1 + Clone,
    S::Event: Delivered,
{
    let mut merges = Vec::new();
    let mut last_state = None;
    for order in orders {
        let deliveries: Vec<(String, S::Event)> = order
            .iter()
            .chain(order.iter().rev())
            .map(|&i| events[i].clone())
            .collect();
        let (answers, mut item, state) = store_deliveries::<S>(&deliveries, to_item)?;
        let mut oracle = Oracle::new(mid);
        let want: Vec<Answer> = deliveries
            .iter()
            .map(|(body, _)| oracle.deliver(source, body))
            .collect();
        if answers != want {
            return Err(format!(
                "order {order:?}: answered {answers:?}, the oracle says {want:?}"
            ));
        }
        merges.push(item.remove(MERGE));
        item.remove("updated_at");
        if let Some(AttributeValue::Ss(set)) = item.get_mut("team_members") {
            set.sort();
        }
        let expected = oracle.items().remove(&(source, entity_id.to_owned()));
        if expected.as_ref() != Some(&item) {
            return Err(format!(
                "order {order:?}: the item differs from the oracle's:\n  oracle {expected:?}\n  stored {item:?}"
            ));
        }
        last_state = Some(state);
    }
    if merges.iter().any(|merge| *merge != merges[0]) {
        return Err("two orders of the same events left different `merge` bytes".into());
    }
    let state = last_state.ok_or("no order was run")?;
    check_merged_again(&state, &events, to_item)
}

/// Merging an event the state already holds changes no value; only `event_count`, where the
/// item has one, counts it once more.
fn check_merged_again<S: Mergeable + Clone>(
    state: &S,
    events: &[(String, S::Event)],
    to_item: impl Fn(&S) -> Item,
) -> Result<(), String> {
    let before = item_to_sdk(to_item(state));
    for (i, (_, event)) in events.iter().enumerate() {
        let mut after = item_to_sdk(to_item(&S::merge(Some(state.clone()), event)));
        if let Some(AttributeValue::N(count)) = before.get("event_count") {
            let counted = count.parse::<u64>().map_err(|e| format!("event_count {count}: {e}"))? + 1;
            if after.get("event_count") != Some(&AttributeValue::N(counted.to_string())) {
                return Err(format!(
                    "merging event {i} again: event_count {:?}, not {counted}",
                    after.get("event_count")
                ));
            }
            after.insert("event_count".to_owned(), AttributeValue::N(count.clone()));
        }
        if after != before {
            return Err(format!(
                "merging event {i} again changed the item:\n  before {before:?}\n  after  {after:?}"
            ));
        }
    }
    Ok(())
}

/// The item is keyed by the event's tenant and entity and converts to DynamoDB attributes.
fn check_item(item: &Item, mid: &str, entity_id: &str) -> Result<(), String> {
    let key = |name: &str| match item.get(name) {
        Some(AttrValue::S(text)) => Ok(text.clone()),
        other => Err(format!("item attribute {name} is {other:?}")),
    };
    if key("mid")? != mid || key("entity_id")? != entity_id {
        return Err(format!(
            "item keyed {:?}/{:?}, event {mid:?}/{entity_id:?}",
            key("mid"),
            key("entity_id")
        ));
    }
    let converted = item_to_sdk(item.clone());
    if converted.len() != item.len() {
        return Err("attributes lost in conversion".into());
    }
    Ok(())
}

/// If the body is an object with a string nonce and an integer timestamp, signs it correctly and
/// returns a clock inside (mostly) or at the edge of the freshness window.
fn resign_activity(rng: &mut StdRng, input: &mut Vec<u8>) -> i64 {
    let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(input) else {
        return rng.random_range(0..2_000_000_000);
    };
    let (Some(nonce), Some(timestamp)) = (
        object.get("nonce").and_then(Value::as_str).map(str::to_owned),
        object.get("timestamp").and_then(Value::as_i64),
    ) else {
        return rng.random_range(0..2_000_000_000);
    };
    activity_verify::sign_body(&mut object, &Secret::new(ACTIVITY_SECRET), &nonce, timestamp);
    *input = serde_json::to_vec(&Value::Object(object)).expect("a JSON object serializes");
    // The receiver's clock at either edge of either window, or just past it.
    let (age, future) = (FRESHNESS.max_age_seconds as i64, FRESHNESS.max_future_seconds as i64);
    timestamp.saturating_add([0, 1, -1, age, -future, age + 1, -future - 1][rng.random_range(0..7)])
}

// ---------------------------------------------------------------------------------- mutations

const TOKENS: [&[u8]; 16] = [
    b"null",
    b"true",
    b"\"\"",
    b"[]",
    b"{}",
    b"-0",
    b"1e999",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"\"\\u0000\"",
    b"\"\\ud800\"",
    b"\\",
    b"\xff\xfe",
    b"\"mid\":",
    b",\"mid\":\"\"",
    b"\"entity_id\":null,",
];

fn mutate_bytes(rng: &mut StdRng, input: &mut Vec<u8>, corpus: &[(Target, Vec<u8>)]) {
    if input.is_empty() {
        input.extend_from_slice(TOKENS.choose(rng).expect("tokens"));
        return;
    }
    let at = rng.random_range(0..input.len());
    match rng.random_range(0..7) {
        0 => input[at] ^= 1 << rng.random_range(0..8),
        1 => input[at] = *b"{}[]\",:\\0-e \n\t".choose(rng).expect("bytes"),
        2 => {
            let token = TOKENS.choose(rng).expect("tokens");
            input.splice(at..at, token.iter().copied());
        }
        3 => {
            let end = (at + rng.random_range(1..64)).min(input.len());
            input.drain(at..end);
        }
        4 => {
            let end = (at + rng.random_range(1..256)).min(input.len());
            let chunk = input[at..end].to_vec();
            input.splice(at..at, chunk);
        }
        5 => {
            let (_, other) = corpus.choose(rng).expect("a corpus");
            let from = rng.random_range(0..other.len());
            let end = (from + rng.random_range(1..512)).min(other.len());
            input.splice(at..at, other[from..end].iter().copied());
        }
        _ => input.truncate(at),
    }
}

fn mutate_structure(rng: &mut StdRng, input: &[u8]) -> Vec<u8> {
    let Ok(mut value) = serde_json::from_slice::<Value>(input) else {
        return input.to_vec();
    };
    if rng.random_bool(0.1) {
        // A duplicated key at the top: serde keeps the last one.
        let text = serde_json::to_string(&value).expect("serializes");
        if let Some(rest) = text.strip_prefix('{') {
            let key = [
                "mid",
                "event_type",
                "create_time",
                "nonce",
                "timestamp",
                "action",
                "extra_data",
            ]
            .choose(rng)
            .expect("keys");
            return format!("{{\"{key}\":{},{rest}", odd_value(rng)).into_bytes();
        }
    }
    let target = pick_node(rng, &mut value);
    match rng.random_range(0..4) {
        0 | 1 => *target = odd_value(rng),
        2 => {
            if let Value::Object(object) = target {
                mutate_keys(rng, object);
            } else {
                *target = json!([target.take()]);
            }
        }
        _ => {
            *target = match target.take() {
                Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
                other => json!({ "value": other }),
            }
        }
    }
    serde_json::to_vec(&value).expect("serializes")
}

/// A random node of the tree (the root included), reached by random steps down.
fn pick_node<'a>(rng: &mut StdRng, value: &'a mut Value) -> &'a mut Value {
    let mut node = value;
    loop {
        let go_down = rng.random_bool(0.7);
        let len = match &*node {
            Value::Object(object) => object.len(),
            Value::Array(items) => items.len(),
            _ => 0,
        };
        if !go_down || len == 0 {
            return node;
        }
        let index = rng.random_range(0..len);
        node = match node {
            Value::Object(object) => object.values_mut().nth(index).expect("in range"),
            Value::Array(items) => &mut items[index],
            _ => unreachable!("has children"),
        };
    }
}

fn mutate_keys(rng: &mut StdRng, object: &mut Map<String, Value>) {
    let keys: Vec<String> = object.keys().cloned().collect();
    let Some(key) = keys.choose(rng).cloned() else {
        object.insert("entity_id".into(), odd_value(rng));
        return;
    };
    let value = object.remove(&key).expect("present");
    match rng.random_range(0..3) {
        0 => {} // removed
        1 => {
            object.insert(format!(" {key} "), value);
        }
        _ => {
            object.insert(key.to_uppercase(), value);
        }
    }
}

fn odd_value(rng: &mut StdRng) -> Value {
    match rng.random_range(0..16) {
        0 => Value::Null,
        1 => json!(rng.random_bool(0.5)),
        2 => json!(rng.random::<i64>()),
        3 => json!(rng.random::<u64>()),
        4 => json!([1e308, -1e-308, 0.5, -0.0][rng.random_range(0..4)]),
        5 => json!(["99999999999999999999", "-1", "1.5", " 123 ", "0x10", "1e3", ""][rng.random_range(0..7)]),
        6 => json!("a".repeat(rng.random_range(1_000..20_000))),
        7 => json!("nul\u{0}inside"),
        8 => json!("  padded  "),
        9 => json!(random_text(rng, 0..40)),
        10 => json!([]),
        11 => json!({}),
        12 => (0..rng.random_range(1..300)).fold(json!(1), |inner, _| json!([inner])),
        13 => json!(["before", "after", "extra"]),
        14 => json!([null, ""]),
        _ => json!("2023-02-27 15:02:25"),
    }
}

fn random_text(rng: &mut StdRng, len: std::ops::Range<usize>) -> String {
    let alphabet: Vec<char> = "abcXYZ019 -_=/+中文\u{0}\u{feff}\u{1f600}".chars().collect();
    (0..rng.random_range(len))
        .map(|_| *alphabet.choose(rng).expect("alphabet"))
        .collect()
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}
