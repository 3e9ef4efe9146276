//! Reading back (and cleaning up) what one tenant has in the three tables of the local stack.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use shared::crm::CrmState;
use shared::dynamo::{read_entity, CLAIM_SORT_KEY, MERGE};

use crate::history::Source;
use crate::stack;

pub use crate::oracle::SdkItem;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    CrmEntities,
    Activities,
    ActivityNonces,
}

impl Table {
    pub const ALL: [Table; 3] = [Table::CrmEntities, Table::Activities, Table::ActivityNonces];

    pub fn name(self) -> String {
        match self {
            Table::CrmEntities => stack::crm_table(),
            Table::Activities => stack::activity_table(),
            Table::ActivityNonces => stack::activity_nonces_table(),
        }
    }

    pub fn sort_key(self) -> &'static str {
        match self {
            Table::CrmEntities | Table::Activities => "entity_id",
            Table::ActivityNonces => "nonce",
        }
    }

    /// Every item of `mid` in this table, read consistently.
    pub async fn query(self, db: &Client, mid: &str) -> Vec<SdkItem> {
        let table = self.name();
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let page = db
                .query()
                .table_name(&table)
                .key_condition_expression("mid = :mid")
                .expression_attribute_values(":mid", AttributeValue::S(mid.to_owned()))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .unwrap_or_else(|e| panic!("query {table}: {}", DisplayErrorContext(e)));
            items.extend(page.items().iter().cloned());
            match page.last_evaluated_key() {
                Some(key) => start = Some(key.clone()),
                None => return items,
            }
        }
    }

    /// Deletes `items` (of this table) by their keys; for a tenant's nonce record, also the
    /// scope claim it names (`replay_scope`), so that the tenant can be delivered afresh.
    pub async fn delete(self, db: &Client, items: &[SdkItem]) {
        let table = self.name();
        let claims: Vec<SdkItem> = items
            .iter()
            .filter(|_| self == Table::ActivityNonces)
            .filter_map(|item| {
                let scope = item.get("replay_scope")?.as_s().ok()?;
                let nonce = item.get("nonce")?.as_s().ok()?;
                Some(SdkItem::from([
                    ("mid".to_owned(), AttributeValue::S(format!("{scope}/{nonce}"))),
                    ("nonce".to_owned(), AttributeValue::S(CLAIM_SORT_KEY.to_owned())),
                ]))
            })
            .collect();
        for item in items.iter().chain(&claims) {
            let key = ["mid", self.sort_key()].map(|name| (name.to_owned(), item[name].clone()));
            db.delete_item()
                .table_name(&table)
                .set_key(Some(key.into_iter().collect()))
                .send()
                .await
                .unwrap_or_else(|e| panic!("clean up {table}: {}", DisplayErrorContext(e)));
        }
    }
}

/// Deletes everything `mid` has in the three tables, so that a history can be delivered afresh.
pub async fn purge_tenant(db: &Client, mid: &str) {
    for table in Table::ALL {
        let items = table.query(db, mid).await;
        table.delete(db, &items).await;
    }
}

/// A stored entity item as the oracle ([`crate::oracle`]) predicts it: without `merge` (the
/// encoding of the record of applied events, whose content [`record_keys`] compares) and
/// `updated_at` (the wall-clock time of the write, which no history decides), with its string
/// set sorted. `version` and `format` stay: they are predicted like every other attribute.
pub fn visible(mut item: SdkItem) -> SdkItem {
    item.remove(MERGE);
    item.remove("updated_at");
    if let Some(AttributeValue::Ss(set)) = item.get_mut("team_members") {
        set.sort();
    }
    item
}

/// The entity items of `mid`, by source and entity id.
pub async fn entity_items(db: &Client, mid: &str) -> BTreeMap<(Source, String), SdkItem> {
    let crm = Table::CrmEntities.query(db, mid).await;
    let activities = Table::Activities.query(db, mid).await;
    by_entity(&crm, &activities)
}

/// CRM and activity items, by source and entity id.
pub fn by_entity(crm: &[SdkItem], activities: &[SdkItem]) -> BTreeMap<(Source, String), SdkItem> {
    let mut items = BTreeMap::new();
    for (source, table) in [(Source::Crm, crm), (Source::Activity, activities)] {
        for item in table {
            let entity_id = item["entity_id"].as_s().expect("entity_id is a string").clone();
            items.insert((source, entity_id), item.clone());
        }
    }
    items
}

/// The keys of what the store records per event: for CRM the entries of each item's record of
/// applied events ([`stamp_key`]), for activities the nonce records of `mid`.
pub async fn record_keys(db: &Client, mid: &str) -> BTreeSet<(Source, String)> {
    let crm = Table::CrmEntities.query(db, mid).await;
    let nonces = Table::ActivityNonces.query(db, mid).await;
    record_keys_of(&crm, &nonces)
}

/// The record keys (see [`record_keys`]) of CRM items and nonce records.
pub fn record_keys_of(crm: &[SdkItem], nonces: &[SdkItem]) -> BTreeSet<(Source, String)> {
    let mut keys = BTreeSet::new();
    for item in crm {
        let stored = read_entity::<CrmState>(item).expect("a readable CRM item");
        keys.extend(stored.applied.stamps().iter().map(|s| (Source::Crm, stamp_key(s))));
    }
    for item in nonces {
        let key = item["nonce"].as_s().expect("record keys are strings").clone();
        keys.insert((Source::Activity, key));
    }
    keys
}

/// An applied event as a CRM item's record holds it (decoded by the model crate: this reads
/// what was stored), keyed as the oracle keys it.
pub fn stamp_key(stamp: &shared::merge::Stamp) -> String {
    crate::oracle::Stamp {
        time: stamp.time,
        tie: stamp.tie,
    }
    .record_key()
}

/// How the stored entity items differ from the oracle's (see [`visible`] for what is left
/// aside): one line per missing, unexpected or different item.
pub fn mismatches(
    expected: &BTreeMap<(Source, String), SdkItem>,
    stored: &BTreeMap<(Source, String), SdkItem>,
) -> Vec<String> {
    differences(expected, stored, visible)
}

/// A nonce record as the oracle predicts it ([`crate::oracle::Oracle::nonce_records`]): without
/// `replay_scope` and `expires_at`.
pub fn visible_nonce(mut record: SdkItem) -> SdkItem {
    record.remove("replay_scope");
    record.remove(shared::dynamo::EXPIRES_AT);
    record
}

/// How the stored nonce records differ from the oracle's (see [`visible_nonce`]).
pub fn nonce_mismatches(expected: &BTreeMap<String, SdkItem>, stored: &[SdkItem]) -> Vec<String> {
    let stored = stored
        .iter()
        .map(|record| {
            (
                record["nonce"].as_s().expect("nonces are strings").clone(),
                record.clone(),
            )
        })
        .collect();
    differences(expected, &stored, visible_nonce)
}

/// One line per item missing from `stored`, unexpected in it, or different once `shown`.
fn differences<K: Ord + std::fmt::Debug>(
    expected: &BTreeMap<K, SdkItem>,
    stored: &BTreeMap<K, SdkItem>,
    shown: fn(SdkItem) -> SdkItem,
) -> Vec<String> {
    let keys: BTreeSet<&K> = expected.keys().chain(stored.keys()).collect();
    keys.into_iter()
        .filter_map(|key| match (expected.get(key), stored.get(key)) {
            (Some(want), Some(got)) => {
                let got = shown(got.clone());
                let names: BTreeSet<&String> = want.keys().chain(got.keys()).collect();
                let differing: Vec<String> = names
                    .into_iter()
                    .filter(|name| want.get(*name) != got.get(*name))
                    .map(|name| format!("{name}: expected {:?}, stored {:?}", want.get(name), got.get(name)))
                    .collect();
                (!differing.is_empty()).then(|| format!("{key:?} differs: {}", differing.join("; ")))
            }
            (Some(_), None) => Some(format!("{key:?} is missing")),
            (None, _) => Some(format!("{key:?} is stored but no event names it")),
        })
        .collect()
}
