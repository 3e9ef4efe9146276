//! Realistic delivery histories for the convergence, outage and load suites.
//!
//! Each event is one of the vendors' documented payloads (the files in `fixtures/`), re-aimed at a
//! tenant and an entity and varied the way real traffic varies: new field values, owners, life
//! cycle and pool moves, team members, notes, voids and restores; activities are added, edited,
//! deleted and edited late. Times are drawn close together so that ties are common. Histories are
//! seeded, so a failing run can be replayed exactly.
//!
//! The expected final state is what the independent oracle ([`crate::oracle`]) gives when the
//! history is applied in the order it was generated ([`History::oracle_of`]).

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use shared::activity::verify::SignedFields;
use shared::activity::ActivityEvent;
use shared::crm::CrmEvent;
use shared::envelope::Envelope;
use shared::timefmt::SourceOffset;

use crate::oracle::{Answer, Oracle};
use crate::signing::sign_activity_into;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures");

/// Which function a delivery is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    Crm,
    Activity,
}

/// One event as the sender posts it. CRM bodies are signed when sent (the signature is a
/// header); activity bodies carry their nonce, timestamp and sign.
#[derive(Debug, Clone)]
pub struct Event {
    pub source: Source,
    pub entity_id: String,
    pub body: String,
}

/// How big a history to generate.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub entities: usize,
    pub events: usize,
    /// Share of entities that are Lexiang activities; the rest are CRM leads.
    pub activity_share: f64,
    /// Activity timestamps fall in `[now - spread, now]`, so that they are fresh when sent.
    pub activity_spread_seconds: i64,
}

/// The events of every entity of one tenant, each entity's in generation order.
#[derive(Debug, Clone)]
pub struct History {
    pub mid: String,
    pub events: Vec<Event>,
}

impl History {
    pub fn generate(seed: u64, mid: &str, shape: Shape, now: i64, activity_secret: &str) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let templates = Templates::load();
        let activity_entities = ((shape.entities as f64) * shape.activity_share).round() as usize;
        let mut events = Vec::with_capacity(shape.events);
        for index in 0..shape.entities {
            // Spread the events evenly; the first entities take the remainder.
            let count = shape.events / shape.entities + usize::from(index < shape.events % shape.entities);
            let count = count.max(1);
            if index < activity_entities {
                let activity = ActivityHistory {
                    templates: &templates,
                    activity_id: format!("act{index:05}{:016x}", rng.random::<u64>()),
                    secret: activity_secret,
                    earliest: now - shape.activity_spread_seconds,
                    latest: now,
                };
                events.extend(activity.generate(&mut rng, count));
            } else {
                let lead = CrmHistory {
                    mid,
                    entity_id: format!("lead{index:05}{:012x}", rng.random::<u64>() >> 16),
                    templates: &templates,
                    start: 1_677_481_345 + 86_400 * (index as i64 % 30),
                };
                events.extend(lead.generate(&mut rng, count));
            }
        }
        History {
            mid: mid.to_owned(),
            events,
        }
    }

    pub fn entities(&self) -> usize {
        let mut ids: Vec<(Source, &str)> = self.events.iter().map(|e| (e.source, e.entity_id.as_str())).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }

    /// The deliveries a sender makes: every event once, `duplicate_share` of them twice, shuffled.
    pub fn deliveries(&self, seed: u64, duplicate_share: f64) -> Vec<Event> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut deliveries = self.events.clone();
        deliveries.extend(
            self.events
                .iter()
                .filter(|_| rng.random_bool(duplicate_share))
                .cloned()
                .collect::<Vec<_>>(),
        );
        deliveries.shuffle(&mut rng);
        deliveries
    }

    /// The oracle after the events `delivered` says were stored, each once, in generation order.
    pub fn oracle_of(&self, delivered: impl Fn(&Event) -> bool) -> Oracle {
        let mut oracle = Oracle::new(&self.mid);
        for event in self.events.iter().filter(|event| delivered(event)) {
            let answer = oracle.deliver(event.source, &event.body);
            assert_eq!(answer, Answer::Accepted, "a generated event is new: {}", event.body);
        }
        oracle
    }
}

pub fn parse_crm(body: &str) -> CrmEvent {
    let envelope = Envelope::parse(body.as_bytes()).expect("a generated body is a JSON object");
    CrmEvent::from_envelope(envelope, SourceOffset::BEIJING).expect("a generated CRM body normalizes")
}

pub fn parse_activity(body: &str, mid: &str) -> ActivityEvent {
    let envelope = Envelope::parse(body.as_bytes()).expect("a generated body is a JSON object");
    let signed = SignedFields::extract(&envelope.object).expect("a generated body is signed");
    ActivityEvent::from_envelope(envelope, mid, &signed.nonce, signed.timestamp, SourceOffset::BEIJING)
        .expect("a generated activity body normalizes")
}

// ---------------------------------------------------------------------------------------------
// CRM leads

/// Event kinds, each with the fixture it starts from and its relative frequency.
const CRM_KINDS: [(&str, &str, u32); 15] = [
    ("object_create", "seed_124_object_create", 1),
    ("object_update", "lead_object_update", 8),
    ("object_update_status", "lead_object_update_status", 3),
    ("object_change_owner", "lead_object_change_owner_manual", 3),
    ("object_change_owner", "lead_object_change_owner_auto", 1),
    ("object_update_life_cycle", "lead_object_update_life_cycle", 3),
    ("object_change_lead_pool", "lead_object_change_lead_pool", 2),
    ("object_add_team_member", "lead_object_add_team_member", 3),
    ("object_remove_team_member", "lead_object_remove_team_member", 2),
    ("object_voids", "lead_object_voids", 1),
    ("object_restore", "lead_object_restore", 1),
    ("object_add_notes", "lead_object_add_notes", 2),
    ("object_relation", "lead_object_relation", 1),
    ("object_source_info", "lead_object_source_info", 1),
    ("not_modelled", "lead_unknown_event_type", 1),
];

const NAMES: [&str; 4] = ["ceshi-webhook-001", "王晓明", "Lead Example", "中山大学 招生办"];
const EMAILS: [&str; 3] = ["lead@example.com", "wang@example.cn", "sales@example.org"];
const MOBILES: [&str; 3] = ["17894892831", "13800138000", "+86 139 0000 0000"];
const COMPANIES: [&str; 3] = ["中山大学", "Authing", "Example Ltd"];
const OWNERS: [&str; 3] = [
    "VYktMU2aAkS3ZHJAqNE5DA",
    "z5WbxXfykP8eURgcdmNSd4",
    "gycAMsX5cuFe5cR2JVcJoJ",
];
const MEMBERS: [&str; 4] = [
    "gycAMsX5cuFe5cR2JVcJoJ",
    "marQBXocGmDAgGPpt72btY",
    "Xw3LrTq9BsD1cZkYhN7uEa",
    "VYktMU2aAkS3ZHJAqNE5DA",
];
const LIFE: [&str; 4] = ["baby_lead", "mql", "sql", "customer"];
const POOLS: [&str; 3] = ["market", "sales", "service"];
const STATUSES: [&str; 3] = [
    "JfTaGpK8p52A3TNtgqrmGw",
    "oEuYhyaifNXjZZJNRZWTX3",
    "Kq2pPZr8TgJm1YwHcUe4Vb",
];

/// Index of `object_create` in [`CRM_KINDS`]: the first.
const CREATE: usize = 0;

/// The fixtures the events start from, by path under `fixtures/` without `.json`.
struct Templates(BTreeMap<String, Value>);

impl Templates {
    fn load() -> Self {
        let crm = CRM_KINDS.iter().map(|(_, file, _)| format!("crm/{file}"));
        let activity = ["event_add", "event_edit", "event_delete"].map(|file| format!("activity/{file}"));
        Templates(
            crm.chain(activity)
                .map(|name| {
                    let path = format!("{FIXTURES}/{name}.json");
                    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
                    (name, value)
                })
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Value {
        self.0[name].clone()
    }
}

struct CrmHistory<'a> {
    mid: &'a str,
    entity_id: String,
    templates: &'a Templates,
    start: i64,
}

impl CrmHistory<'_> {
    fn generate(&self, rng: &mut StdRng, count: usize) -> Vec<Event> {
        let total: u32 = CRM_KINDS.iter().map(|(_, _, weight)| weight).sum();
        let mut time = self.start;
        (0..count)
            .map(|n| {
                // Most leads start with a create; some histories begin mid-way.
                let kind = if n == 0 && rng.random_bool(0.9) {
                    CREATE
                } else {
                    let mut pick = rng.random_range(0..total);
                    CRM_KINDS
                        .iter()
                        .position(|(_, _, weight)| {
                            let hit = pick < *weight;
                            pick = pick.saturating_sub(*weight);
                            hit
                        })
                        .expect("the weights cover the range")
                };
                // 0 s apart a third of the time: ties are broken by the digest.
                time += [0, 0, 1, 2, 5, 60][rng.random_range(0..6)];
                self.event(rng, kind, time, n)
            })
            .collect()
    }

    fn event(&self, rng: &mut StdRng, kind: usize, time: i64, n: usize) -> Event {
        let (event_type, file, _) = CRM_KINDS[kind];
        let mut body = self.templates.get(&format!("crm/{file}"));
        body["mid"] = if rng.random_bool(0.1) && self.mid.bytes().all(|b| b.is_ascii_digit()) {
            json!(self.mid.parse::<u64>().expect("digits"))
        } else {
            json!(self.mid)
        };
        body["create_time"] = if rng.random_bool(0.1) {
            json!(time.to_string())
        } else {
            json!(time)
        };
        let extra = &mut body["extra_data"];
        extra["entity_id"] = json!(self.entity_id);
        // Real events differ in their operator and timeline data; this keeps them distinct.
        extra["operator_id"] = json!(20_000 + n);
        let pick = |rng: &mut StdRng, pool: &[&str]| -> String { (*pool.choose(rng).expect("a pool")).to_owned() };
        match event_type {
            "object_create" => {
                let name = pick(rng, &NAMES);
                let mobile = pick(rng, &MOBILES);
                extra["mapping_data"]["name"] = json!([name]);
                extra["mapping_data"]["mobile"] = json!([mobile]);
                extra["mapping_data_text"]["name"] = json!(name);
                extra["mapping_data_text"]["mobile"] = json!(mobile);
            }
            "object_update" => {
                let mut mapping = serde_json::Map::new();
                let mut text = serde_json::Map::new();
                for (field, pool) in [
                    ("name", &NAMES[..]),
                    ("email", &EMAILS),
                    ("mobile", &MOBILES),
                    ("company_name", &COMPANIES),
                ] {
                    if rng.random_bool(0.5) {
                        let after = match rng.random_range(0..6) {
                            0 => Value::Null,
                            1 => json!(""),
                            _ => json!(pick(rng, pool)),
                        };
                        let label = after.as_str().unwrap_or("").to_owned();
                        mapping.insert(field.to_owned(), json!([pick(rng, pool), after]));
                        text.insert(field.to_owned(), json!(label));
                    }
                }
                if rng.random_bool(0.2) {
                    mapping.insert(
                        "score".to_owned(),
                        json!([rng.random_range(0..50), rng.random_range(0..100)]),
                    );
                }
                extra["mapping_data"] = Value::Object(mapping);
                extra["mapping_data_text"] = Value::Object(text);
            }
            "object_update_status" => {
                let (from, to) = (pick(rng, &STATUSES), pick(rng, &STATUSES));
                extra["from_leads_status"] = json!(from);
                extra["to_leads_status"] = json!(to);
                extra["mapping_data"]["leads_status"] = json!([from, to]);
            }
            "object_change_owner" => {
                let (from, to) = (pick(rng, &OWNERS), pick(rng, &OWNERS));
                extra["owner"] = json!(to);
                extra["former_owner"] = json!(from);
                extra["mapping_data"]["owner"] = json!([from, to]);
            }
            "object_update_life_cycle" => {
                let (from, to) = (pick(rng, &LIFE), pick(rng, &LIFE));
                extra["from_life_status"] = json!(from);
                extra["to_life_status"] = json!(to);
                extra["life_status"] = json!(to);
                extra["mapping_data"]["life_status"] = json!([from, to]);
            }
            "object_change_lead_pool" => {
                let (from, to) = (pick(rng, &POOLS), pick(rng, &POOLS));
                extra["from_lead_pool"] = json!(from);
                extra["mapping_data"]["lead_pool"] = json!([from, to]);
                // Some senders say it only in mapping_data.
                if rng.random_bool(0.7) {
                    extra["to_lead_pool"] = json!(to);
                } else if let Some(extra) = extra.as_object_mut() {
                    extra.remove("to_lead_pool");
                }
            }
            "object_add_team_member" | "object_remove_team_member" => {
                let mut members: Vec<&str> = MEMBERS.to_vec();
                members.shuffle(rng);
                members.truncate(rng.random_range(1..=3));
                // Sometimes a comma-separated string instead of an array.
                extra["members"] = if rng.random_bool(0.2) {
                    json!(members.join(","))
                } else {
                    json!(members)
                };
            }
            "object_add_notes" | "object_voids" => {
                extra["notes"] = json!(format!("跟进记录 {n}: {}", pick(rng, &NAMES)));
            }
            _ => {}
        }
        Event {
            source: Source::Crm,
            entity_id: self.entity_id.clone(),
            body: body.to_string(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lexiang activities

const TITLES: [&str; 4] = ["新建活动回调", "产品发布会", "Quarterly review", "线下沙龙 · 北京"];
const LOCATIONS: [&str; 3] = ["北京", "上海", "Shenzhen"];

struct ActivityHistory<'a> {
    templates: &'a Templates,
    activity_id: String,
    secret: &'a str,
    earliest: i64,
    latest: i64,
}

impl ActivityHistory<'_> {
    /// An add, edits, maybe a delete, and maybe edits after it (which revive the item); any
    /// of them can share a timestamp.
    fn generate(&self, rng: &mut StdRng, count: usize) -> Vec<Event> {
        let mut time = rng.random_range(self.earliest..=self.latest);
        let delete_at = rng.random_bool(0.35).then(|| rng.random_range(0..count));
        (0..count)
            .map(|n| {
                let action = match n {
                    _ if Some(n) == delete_at => "event/delete",
                    0 => "event/add",
                    _ => "event/edit",
                };
                time = (time + [0, 0, 1, 3][rng.random_range(0..4)]).min(self.latest);
                self.event(rng, action, time)
            })
            .collect()
    }

    fn event(&self, rng: &mut StdRng, action: &str, timestamp: i64) -> Event {
        let file = match action {
            "event/add" => "event_add",
            "event/edit" => "event_edit",
            _ => "event_delete",
        };
        let mut body = self.templates.get(&format!("activity/{file}"));
        let attributes = &mut body["attributes"];
        attributes["event_id"] = json!(self.activity_id);
        if action != "event/delete" {
            attributes["title"] = json!(TITLES.choose(rng).expect("titles"));
            attributes["location"] = json!(LOCATIONS.choose(rng).expect("locations"));
            attributes["participant_count_limit"] = json!(rng.random_range(1..500));
            attributes["summary"] = json!(format!("第 {} 期", rng.random_range(1..100)));
        }
        let nonce = format!("{:032x}", rng.random::<u128>());
        sign_activity_into(&mut body, &nonce, timestamp, self.secret);
        Event {
            source: Source::Activity,
            entity_id: self.activity_id.clone(),
            body: body.to_string(),
        }
    }
}
