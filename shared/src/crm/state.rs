//! The current state of one CRM object and the merge rules that make it converge (contract 4):
//! per-field last writer wins, collaborators per member, void/restore, newest-event metadata.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bookkeeping::{read_map, write_map, BookError, Reader, Registers, Writer};
use crate::crm::event::{CrmEvent, CrmEventType};
use crate::item::{AttrValue, Item, ItemBuilder, ItemRead};
use crate::json::EventDigest;
use crate::merge::{offer_newest, offer_newest_at, offer_oldest, Lww, Mergeable, Stamp};

/// A field's current value and the label from the same event (`None` value: cleared).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldValue {
    pub value: Option<Value>,
    pub label: Option<String>,
}

/// What the newest event was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastEvent {
    pub event_type: String,
    pub action_keyword: String,
}

/// The state of one CRM object: every value with the stamp of the event that wrote it, so that
/// any later event, whatever its age, can be merged correctly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrmState {
    pub mid: String,
    pub entity_id: String,
    pub object_name: Option<Lww<String>>,
    pub object_id: Option<Lww<String>>,
    pub fields: BTreeMap<String, Lww<FieldValue>>,
    pub owner: Option<Lww<String>>,
    pub life_status: Option<Lww<String>>,
    pub lead_pool: Option<Lww<String>>,
    pub leads_status: Option<Lww<String>>,
    pub business_type: Option<Lww<String>>,
    pub business_type_name: Option<Lww<String>>,
    pub lead_omni_user_uuid: Option<Lww<String>>,
    /// Member → whether the newest add/remove for that member was an add.
    pub team: BTreeMap<String, Lww<bool>>,
    pub voided: Option<Lww<bool>>,
    /// From the oldest event that carries `created_timestamp` (the create, when it arrived).
    pub created_at: Option<Lww<String>>,
    pub last: Lww<LastEvent>,
    pub event_count: u64,
    /// Raw body of the newest event. Stored in its own attribute, not in the merge state.
    #[serde(skip)]
    pub last_raw: Arc<str>,
}

impl CrmState {
    fn empty(event: &CrmEvent, stamp: &Stamp) -> Self {
        Self {
            mid: event.mid.clone(),
            entity_id: event.entity_id.clone(),
            object_name: None,
            object_id: None,
            fields: BTreeMap::new(),
            owner: None,
            life_status: None,
            lead_pool: None,
            leads_status: None,
            business_type: None,
            business_type_name: None,
            lead_omni_user_uuid: None,
            team: BTreeMap::new(),
            voided: None,
            created_at: None,
            last: Lww::new(last_event(event), stamp),
            event_count: 0,
            last_raw: event.raw.clone(),
        }
    }

    /// The item of contract 3.1. `updated_at` is the time of the write, which is not part of the
    /// convergent state.
    pub fn to_item(&self, updated_at: &str) -> Item {
        fn value(slot: &Option<Lww<String>>) -> Option<&str> {
            slot.as_ref().map(|held| held.value.as_str())
        }
        let fields: BTreeMap<String, AttrValue> = self
            .fields
            .iter()
            .filter_map(|(name, held)| Some((name.clone(), AttrValue::from_json(held.value.value.as_ref()?))))
            .collect();
        // A label describes the value: a cleared field has none, even when the clearing event
        // sent one (the vendor writes `-` for "no value").
        let labels: BTreeMap<String, AttrValue> = self
            .fields
            .iter()
            .filter(|(_, held)| held.value.value.is_some())
            .filter_map(|(name, held)| Some((name.clone(), AttrValue::S(held.value.label.clone()?))))
            .collect();
        let members: std::collections::BTreeSet<String> = self
            .team
            .iter()
            .filter(|(_, present)| present.value)
            .map(|(member, _)| member.clone())
            .collect();
        let mut item = ItemBuilder::key(&self.mid, &self.entity_id)
            .opt_string("object_name", value(&self.object_name))
            .opt_string("object_id", value(&self.object_id))
            .attr("fields", AttrValue::M(fields))
            .attr("field_labels", AttrValue::M(labels))
            .opt_string("owner", value(&self.owner))
            .opt_string("life_status", value(&self.life_status))
            .opt_string("lead_pool", value(&self.lead_pool))
            .opt_string("leads_status", value(&self.leads_status))
            .opt_string("business_type", value(&self.business_type))
            .opt_string("business_type_name", value(&self.business_type_name))
            .opt_string("lead_omni_user_uuid", value(&self.lead_omni_user_uuid))
            .opt_bool("voided", self.voided.as_ref().map(|held| held.value))
            .opt_string("created_at", value(&self.created_at))
            .string("last_event_type", &self.last.value.event_type)
            .string("last_action_keyword", &self.last.value.action_keyword)
            .number("event_time", self.last.stamp.time)
            .number("event_count", self.event_count)
            .string("updated_at", updated_at)
            .string("last_raw", &*self.last_raw);
        if !members.is_empty() {
            item = item.attr("team_members", AttrValue::SS(members));
        }
        item.build()
    }
}

/// The item attributes that show the single-valued string registers, in the order the
/// bookkeeping lists them (see [`CrmState::string_registers`]).
const STRING_REGISTERS: [&str; 10] = [
    "object_name",
    "object_id",
    "owner",
    "life_status",
    "lead_pool",
    "leads_status",
    "business_type",
    "business_type_name",
    "lead_omni_user_uuid",
    "created_at",
];

impl CrmState {
    fn string_registers(&self) -> [&Option<Lww<String>>; 10] {
        [
            &self.object_name,
            &self.object_id,
            &self.owner,
            &self.life_status,
            &self.lead_pool,
            &self.leads_status,
            &self.business_type,
            &self.business_type_name,
            &self.lead_omni_user_uuid,
            &self.created_at,
        ]
    }
}

impl Registers for CrmState {
    fn visit_stamps(&self, visit: &mut dyn FnMut(&Stamp)) {
        for held in self.string_registers().into_iter().flatten() {
            visit(&held.stamp);
        }
        if let Some(held) = &self.voided {
            visit(&held.stamp);
        }
        visit(&self.last.stamp);
        self.fields.values().for_each(|held| visit(&held.stamp));
        self.team.values().for_each(|held| visit(&held.stamp));
    }

    fn write_registers(&self, out: &mut Writer<'_>) {
        for slot in self.string_registers() {
            out.stamp(slot.as_ref().map(|held| &held.stamp));
        }
        out.stamp(self.voided.as_ref().map(|held| &held.stamp));
        out.stamp(Some(&self.last.stamp));
        // Cleared fields and removed members are not in the item: they are named here.
        write_map(out, &self.fields, |field| field.value.is_none());
        write_map(out, &self.team, |present| !present);
    }

    fn read_registers(item: &Item, reader: &mut Reader<'_>) -> Result<Self, BookError> {
        let missing = |name: &str| BookError::new(format!("the item has no readable `{name}`"));
        let text = |name: &str| item.string(name).map(str::to_owned).ok_or_else(|| missing(name));
        let mut strings: [Option<Lww<String>>; 10] = Default::default();
        for (slot, name) in strings.iter_mut().zip(STRING_REGISTERS) {
            if let Some(stamp) = reader.stamp()? {
                *slot = Some(Lww {
                    value: text(name)?,
                    stamp,
                });
            }
        }
        let voided = match reader.stamp()? {
            Some(stamp) => Some(Lww {
                value: item.bool("voided").ok_or_else(|| missing("voided"))?,
                stamp,
            }),
            None => None,
        };
        let last = Lww {
            value: LastEvent {
                event_type: text("last_event_type")?,
                action_keyword: text("last_action_keyword")?,
            },
            stamp: reader.required_stamp("last_event_type")?,
        };
        let empty = BTreeMap::new();
        let map = |name: &str| match item.get(name) {
            Some(AttrValue::M(map)) => Ok(map),
            None => Ok(&empty),
            Some(_) => Err(missing(name)),
        };
        let (values, labels) = (map("fields")?, map("field_labels")?);
        let visible_fields = values
            .iter()
            .map(|(name, value)| {
                let value = value.to_json().ok_or_else(|| missing("fields"))?;
                let label = labels.get(name).and_then(AttrValue::as_s).map(str::to_owned);
                Ok((
                    name,
                    FieldValue {
                        value: Some(value),
                        label,
                    },
                ))
            })
            .collect::<Result<Vec<_>, BookError>>()?;
        let fields = read_map(
            reader,
            visible_fields.into_iter(),
            || FieldValue {
                value: None,
                label: None,
            },
            "fields",
        )?;
        let members: Vec<&String> = match item.get("team_members") {
            Some(AttrValue::SS(set)) => set.iter().collect(),
            None => Vec::new(),
            Some(_) => return Err(missing("team_members")),
        };
        let team = read_map(reader, members.into_iter().map(|m| (m, true)), || false, "team")?;
        let [object_name, object_id, owner, life_status, lead_pool, leads_status, business_type, business_type_name, lead_omni_user_uuid, created_at] =
            strings;
        Ok(Self {
            mid: text("mid")?,
            entity_id: text("entity_id")?,
            object_name,
            object_id,
            fields,
            owner,
            life_status,
            lead_pool,
            leads_status,
            business_type,
            business_type_name,
            lead_omni_user_uuid,
            team,
            voided,
            created_at,
            last,
            event_count: item
                .i64("event_count")
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| missing("event_count"))?,
            last_raw: text("last_raw")?.into(),
        })
    }
}

fn last_event(event: &CrmEvent) -> LastEvent {
    LastEvent {
        event_type: event.event_type.as_str().to_owned(),
        action_keyword: event.action_keyword.clone(),
    }
}

fn offer(slot: &mut Option<Lww<String>>, value: &Option<String>, stamp: &Stamp) {
    if let Some(value) = value {
        offer_newest(slot, value.clone(), stamp);
    }
}

impl Mergeable for CrmState {
    type Event = CrmEvent;

    fn digest(event: &CrmEvent) -> &EventDigest {
        &event.digest
    }

    fn merge(state: Option<Self>, event: &CrmEvent) -> Self {
        let stamp = event.stamp();
        let mut state = state.unwrap_or_else(|| Self::empty(event, &stamp));
        state.event_count += 1;
        if stamp > state.last.stamp {
            state.last = Lww::new(last_event(event), &stamp);
            state.last_raw = event.raw.clone();
        }
        offer(&mut state.object_name, &event.object_name, &stamp);
        offer(&mut state.object_id, &event.object_id, &stamp);
        if let Some(created_at) = &event.created_at {
            offer_oldest(&mut state.created_at, created_at.clone(), &stamp);
        }
        for (name, change) in &event.changes {
            let value = FieldValue {
                value: change.after.clone(),
                label: change.label.clone(),
            };
            offer_newest_at(&mut state.fields, name, value, &stamp);
        }
        let known = &event.well_known;
        offer(&mut state.owner, &known.owner, &stamp);
        offer(&mut state.life_status, &known.life_status, &stamp);
        offer(&mut state.lead_pool, &known.lead_pool, &stamp);
        offer(&mut state.leads_status, &known.leads_status, &stamp);
        offer(&mut state.business_type, &known.business_type, &stamp);
        offer(&mut state.business_type_name, &known.business_type_name, &stamp);
        offer(&mut state.lead_omni_user_uuid, &known.lead_omni_user_uuid, &stamp);
        let membership = match event.event_type {
            CrmEventType::AddTeamMember => Some(true),
            CrmEventType::RemoveTeamMember => Some(false),
            _ => None,
        };
        if let Some(present) = membership {
            for member in &event.members {
                offer_newest_at(&mut state.team, member, present, &stamp);
            }
        }
        match event.event_type {
            CrmEventType::Voids => offer_newest(&mut state.voided, true, &stamp),
            CrmEventType::Restore => offer_newest(&mut state.voided, false, &stamp),
            _ => {}
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Envelope;
    use crate::timefmt::SourceOffset;

    fn event(time: i64, mapping: &str, labels: &str) -> CrmEvent {
        let body = format!(
            r#"{{"mid":"124","event_type":"object_update","create_time":{time},
                "extra_data":{{"entity_id":"E1","mapping_data":{mapping},"mapping_data_text":{labels}}}}}"#
        );
        CrmEvent::from_envelope(Envelope::parse(body.as_bytes()).unwrap(), SourceOffset::BEIJING).unwrap()
    }

    #[test]
    fn a_cleared_field_has_neither_value_nor_label() {
        let set = event(
            1,
            r#"{"company_name":["","中山大学"]}"#,
            r#"{"company_name":["-","中山大学"]}"#,
        );
        let cleared = event(
            2,
            r#"{"company_name":["中山大学",""]}"#,
            r#"{"company_name":["中山大学","-"]}"#,
        );
        let state = CrmState::merge(Some(CrmState::merge(None, &set)), &cleared);
        let item = state.to_item("2026-01-01T00:00:00Z");
        assert_eq!(item["fields"], AttrValue::M(BTreeMap::new()));
        assert_eq!(
            item["field_labels"],
            AttrValue::M(BTreeMap::new()),
            "no label `-` for a cleared field"
        );
    }
}
