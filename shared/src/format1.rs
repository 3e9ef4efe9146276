//! Storage format 1, read so that its items are migrated on their next write (docs/items.md).
//!
//! Format 1 (versions before 0.3.0) stored an entity item with `version` (N) and `merge_state` (S): the
//! JSON of the whole merge state, every value with the stamp of the event that wrote it, a stamp
//! being `{"time": …, "digest": "<64 hex digits: SHA-256 of the canonical body>"}`. The raw body
//! of the newest event was not in it (`last_raw` is an attribute of its own), and the item had
//! no `format` attribute. Which events had been applied was recorded in a table of its own
//! (`crm_deliveries`, retired) for CRM, and in the nonce records (still kept) for activities.
//!
//! [`read`] turns such an item into the format-2 form: the state with every stamp converted
//! exactly as format 2 derives a stamp from a digest ([`Stamp::of`]: time, then the first 8 bytes
//! of the digest), and a record of applied events holding the stamps its registers still refer
//! to. An event no register refers to any more (written over in every register before the
//! upgrade) is not known to the item: delivered again, it is merged again, which changes nothing
//! but `event_count` (and `version`).
//!
//! The structs below have the shape format 1 serialized (`7bdf4fe^:shared/src/merge.rs`,
//! `crm/state.rs`, `activity/state.rs`). The values inside the registers (`FieldValue`,
//! `LastEvent`, `ActivityContent`, `LastActivityEvent`) have kept their serde form since, so they
//! are read with today's types; `fixtures/format1/`, written by the format-1 code, pins that.
//! Pure: no SDK; the DynamoDB adapter calls [`read`] for an item without `format`.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::activity::event::ActivityContent;
use crate::activity::state::{ActivityState, LastActivityEvent};
use crate::bookkeeping::{AppliedEvents, BookError, Registers};
use crate::crm::state::{CrmState, FieldValue, LastEvent};
use crate::item::{Item, ItemRead};
use crate::json::EventDigest;
use crate::merge::{Lww, Stamp};

/// The attribute format 1 kept an entity's merge state in (JSON text).
pub const MERGE_STATE: &str = "merge_state";

/// A state that format 1 stored as the JSON of its own shape.
pub trait Format1: Registers + Sized {
    /// The format-1 shape of the state, as serialized.
    #[doc(hidden)]
    type Stored: DeserializeOwned;

    /// The state from its format-1 shape, stamps converted; `last_raw` from its own attribute.
    #[doc(hidden)]
    fn convert(stored: Self::Stored, last_raw: &str) -> Result<Self, BookError>;

    /// The key the state belongs to: `(mid, entity_id)`.
    fn key(&self) -> (&str, &str);
}

/// A format-1 entity item, read: its state and the events its registers refer to. `merge_state`
/// is the item's `merge_state` attribute, `item` its other attributes (`last_raw` and the key
/// are read from it).
pub fn read<S: Format1>(merge_state: &str, item: &Item) -> Result<(AppliedEvents, S), BookError> {
    let stored: S::Stored = serde_json::from_str(merge_state)
        .map_err(|e| BookError::new(format!("format 1 `{MERGE_STATE}` cannot be read: {e}")))?;
    let last_raw = item
        .string("last_raw")
        .ok_or_else(|| BookError::new("the format 1 item has no readable `last_raw`"))?;
    let state = S::convert(stored, last_raw)?;
    let key = (item.string("mid"), item.string("entity_id"));
    if key != (Some(state.key().0), Some(state.key().1)) {
        return Err(BookError::new(format!(
            "format 1 `{MERGE_STATE}` is of {:?}, the item is {key:?}",
            state.key()
        )));
    }
    let mut referenced = Vec::new();
    state.visit_stamps(&mut |stamp| referenced.push(*stamp));
    let mut applied = AppliedEvents::default();
    for stamp in referenced {
        applied.record(stamp, &state);
    }
    Ok((applied, state))
}

/// A format-1 stamp: the event's time and the full digest of its canonical body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stamp1 {
    time: i64,
    digest: String,
}

impl Stamp1 {
    /// The format-2 stamp of the same event.
    fn convert(&self) -> Result<Stamp, BookError> {
        let hex = self.digest.len() == 64 && self.digest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !hex {
            return Err(BookError::new(format!(
                "format 1 stamp digest {:?} is not 64 lowercase hex digits",
                self.digest
            )));
        }
        Ok(Stamp::of(self.time, &EventDigest::from_stored(self.digest.as_str())))
    }
}

/// A format-1 register: a value and the stamp of the event that wrote it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Lww1<T> {
    value: T,
    stamp: Stamp1,
}

impl<T> Lww1<T> {
    fn convert(self) -> Result<Lww<T>, BookError> {
        Ok(Lww {
            stamp: self.stamp.convert()?,
            value: self.value,
        })
    }
}

fn optional<T>(slot: Option<Lww1<T>>) -> Result<Option<Lww<T>>, BookError> {
    slot.map(Lww1::convert).transpose()
}

fn registers<T>(map: BTreeMap<String, Lww1<T>>) -> Result<BTreeMap<String, Lww<T>>, BookError> {
    map.into_iter().map(|(key, held)| Ok((key, held.convert()?))).collect()
}

/// `CrmState` as format 1 serialized it.
#[doc(hidden)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrmState1 {
    mid: String,
    entity_id: String,
    object_name: Option<Lww1<String>>,
    object_id: Option<Lww1<String>>,
    fields: BTreeMap<String, Lww1<FieldValue>>,
    owner: Option<Lww1<String>>,
    life_status: Option<Lww1<String>>,
    lead_pool: Option<Lww1<String>>,
    leads_status: Option<Lww1<String>>,
    business_type: Option<Lww1<String>>,
    business_type_name: Option<Lww1<String>>,
    lead_omni_user_uuid: Option<Lww1<String>>,
    team: BTreeMap<String, Lww1<bool>>,
    voided: Option<Lww1<bool>>,
    created_at: Option<Lww1<String>>,
    last: Lww1<LastEvent>,
    event_count: u64,
}

impl Format1 for CrmState {
    type Stored = CrmState1;

    fn convert(stored: CrmState1, last_raw: &str) -> Result<Self, BookError> {
        Ok(Self {
            mid: stored.mid,
            entity_id: stored.entity_id,
            object_name: optional(stored.object_name)?,
            object_id: optional(stored.object_id)?,
            fields: registers(stored.fields)?,
            owner: optional(stored.owner)?,
            life_status: optional(stored.life_status)?,
            lead_pool: optional(stored.lead_pool)?,
            leads_status: optional(stored.leads_status)?,
            business_type: optional(stored.business_type)?,
            business_type_name: optional(stored.business_type_name)?,
            lead_omni_user_uuid: optional(stored.lead_omni_user_uuid)?,
            team: registers(stored.team)?,
            voided: optional(stored.voided)?,
            created_at: optional(stored.created_at)?,
            last: stored.last.convert()?,
            event_count: stored.event_count,
            last_raw: last_raw.into(),
        })
    }

    fn key(&self) -> (&str, &str) {
        (&self.mid, &self.entity_id)
    }
}

/// `ActivityState` as format 1 serialized it.
#[doc(hidden)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityState1 {
    mid: String,
    entity_id: String,
    content: Option<Lww1<ActivityContent>>,
    last: Lww1<LastActivityEvent>,
}

impl Format1 for ActivityState {
    type Stored = ActivityState1;

    fn convert(stored: ActivityState1, last_raw: &str) -> Result<Self, BookError> {
        Ok(Self {
            mid: stored.mid,
            entity_id: stored.entity_id,
            content: optional(stored.content)?,
            last: stored.last.convert()?,
            last_raw: last_raw.into(),
        })
    }

    fn key(&self) -> (&str, &str) {
        (&self.mid, &self.entity_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::{AttrValue, ItemBuilder};

    const DIGEST: &str = "00000000000000ff0123456789abcdef0123456789abcdef0123456789abcdef";

    fn activity_state(digest: &str) -> String {
        format!(
            r#"{{"mid":"124","entity_id":"A","content":null,
                "last":{{"value":{{"action":"event/delete","operator":null,"operator_name":null}},
                         "stamp":{{"time":-5,"digest":"{digest}"}}}}}}"#
        )
    }

    fn item(mid: &str) -> Item {
        ItemBuilder::key(mid, "A").string("last_raw", "{}").build()
    }

    #[test]
    fn a_stamp_keeps_its_time_and_takes_the_first_8_bytes_of_its_digest() {
        let (applied, state) = read::<ActivityState>(&activity_state(DIGEST), &item("124")).unwrap();
        let stamp = Stamp { time: -5, tie: 0xff };
        assert_eq!(state.last.stamp, stamp);
        assert_eq!(stamp, Stamp::of(-5, &EventDigest::from_stored(DIGEST)));
        assert_eq!(applied.stamps(), &[stamp]);
        assert_eq!(&*state.last_raw, "{}");
    }

    #[test]
    fn what_format_1_never_wrote_is_refused() {
        let upper = DIGEST.to_uppercase();
        let short = &DIGEST[..63];
        for digest in [upper.as_str(), short, "not a digest"] {
            let error = read::<ActivityState>(&activity_state(digest), &item("124")).unwrap_err();
            assert!(error.0.contains("64 lowercase hex"), "{digest}: {error}");
        }
        let extra = activity_state(DIGEST).replacen('{', r#"{"version":3,"#, 1);
        assert!(read::<ActivityState>(&extra, &item("124")).is_err(), "unknown field");
        assert!(read::<ActivityState>("{}", &item("124")).is_err());
        let other_key = read::<ActivityState>(&activity_state(DIGEST), &item("941")).unwrap_err();
        assert!(other_key.0.contains("the item is"), "{other_key}");
        let mut no_raw = item("124");
        no_raw.remove("last_raw");
        assert!(read::<ActivityState>(&activity_state(DIGEST), &no_raw).is_err());
        no_raw.insert("last_raw".into(), AttrValue::number(1));
        assert!(read::<ActivityState>(&activity_state(DIGEST), &no_raw).is_err());
    }
}
