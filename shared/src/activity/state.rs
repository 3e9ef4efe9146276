//! The current state of one activity and its merge rule (contract 4): the whole item follows the
//! newest event; a delete is a tombstone that older adds and edits cannot undo.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::activity::event::{ActivityAction, ActivityContent, ActivityEvent, PrivilegeType};
use crate::bookkeeping::{BookError, Reader, Registers, Writer};
use crate::item::{AttrValue, Item, ItemBuilder, ItemRead};
use crate::json::EventDigest;
use crate::merge::{offer_newest, Lww, Mergeable, Stamp};

/// Who did the newest event, and what it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastActivityEvent {
    pub action: ActivityAction,
    pub operator: Option<String>,
    pub operator_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityState {
    pub mid: String,
    pub entity_id: String,
    /// The content of the newest add or edit. A delete does not erase it, so the tombstone
    /// still says what was deleted.
    pub content: Option<Lww<ActivityContent>>,
    pub last: Lww<LastActivityEvent>,
    #[serde(skip)]
    pub last_raw: Arc<str>,
}

impl ActivityState {
    pub fn deleted(&self) -> bool {
        self.last.value.action == ActivityAction::Delete
    }

    /// The item of contract 3.2.
    pub fn to_item(&self, updated_at: &str) -> Item {
        let empty = ActivityContent::default();
        let c = self.content.as_ref().map_or(&empty, |held| &held.value);
        let privilege = c
            .privilege
            .iter()
            .map(|(kind, ids)| {
                (
                    kind.clone(),
                    AttrValue::L(ids.iter().cloned().map(AttrValue::S).collect()),
                )
            })
            .collect();
        let mut item = ItemBuilder::key(&self.mid, &self.entity_id)
            .opt_string("title", c.title.as_deref())
            .opt_string("summary", c.summary.as_deref())
            .opt_string("content", c.content.as_deref())
            .opt_string("location", c.location.as_deref())
            .opt_string("started_at", c.started_at.as_deref())
            .opt_string("ended_at", c.ended_at.as_deref())
            .opt_string("closed_at", c.closed_at.as_deref())
            .opt_string("created_at", c.created_at.as_deref())
            .opt_string("attend_start_at", c.attend_start_at.as_deref())
            .opt_string("attend_end_at", c.attend_end_at.as_deref())
            .opt_string("attend_method", c.attend_method.as_deref())
            .opt_string("app_source_type", c.app_source_type.as_deref())
            .opt_number("participant_count_limit", c.participant_count_limit)
            .opt_bool("enable_random_extract", c.enable_random_extract)
            .opt_string("privilege_type", c.privilege_type.map(|p| p.as_str()))
            .opt_string("logo", c.logo.as_deref())
            .opt_string("team_id", c.team_id.as_deref())
            .opt_string("category_id", c.category_id.as_deref())
            .opt_number("roadmap_id", c.roadmap_id)
            .opt_string("operator", self.last.value.operator.as_deref())
            .opt_string("operator_name", self.last.value.operator_name.as_deref())
            .string("last_action", self.last.value.action.as_str())
            .number("event_time", self.last.stamp.time)
            .bool("deleted", self.deleted())
            .string("updated_at", updated_at)
            .string("last_raw", &*self.last_raw);
        if self.content.is_some() {
            item = item.attr("privilege", AttrValue::M(privilege));
        }
        item.build()
    }
}

impl Registers for ActivityState {
    fn visit_stamps(&self, visit: &mut dyn FnMut(&Stamp)) {
        if let Some(held) = &self.content {
            visit(&held.stamp);
        }
        visit(&self.last.stamp);
    }

    fn write_registers(&self, out: &mut Writer<'_>) {
        out.stamp(self.content.as_ref().map(|held| &held.stamp));
        out.stamp(Some(&self.last.stamp));
    }

    fn read_registers(item: &Item, reader: &mut Reader<'_>) -> Result<Self, BookError> {
        let missing = |name: &str| BookError::new(format!("the item has no readable `{name}`"));
        let text = |name: &str| item.string(name).map(str::to_owned);
        let content = match reader.stamp()? {
            Some(stamp) => Some(Lww {
                value: content_from_item(item).ok_or_else(|| missing("privilege"))?,
                stamp,
            }),
            None => None,
        };
        let last = Lww {
            value: LastActivityEvent {
                action: ActivityAction::from_wire(item.string("last_action").ok_or_else(|| missing("last_action"))?),
                operator: text("operator"),
                operator_name: text("operator_name"),
            },
            stamp: reader.required_stamp("last_action")?,
        };
        Ok(Self {
            mid: text("mid").ok_or_else(|| missing("mid"))?,
            entity_id: text("entity_id").ok_or_else(|| missing("entity_id"))?,
            content,
            last,
            last_raw: text("last_raw").ok_or_else(|| missing("last_raw"))?.into(),
        })
    }
}

/// The content [`ActivityState::to_item`] wrote (`None` if the item is not of that shape).
fn content_from_item(item: &Item) -> Option<ActivityContent> {
    let text = |name: &str| item.string(name).map(str::to_owned);
    let AttrValue::M(privilege) = item.get("privilege")? else {
        return None;
    };
    let privilege = privilege
        .iter()
        .map(|(kind, ids)| match ids {
            AttrValue::L(ids) => Some((
                kind.clone(),
                ids.iter()
                    .map(|id| id.as_s().map(str::to_owned))
                    .collect::<Option<_>>()?,
            )),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let privilege_type = match item.string("privilege_type") {
        None => None,
        Some(kind) => Some(
            [
                PrivilegeType::Public,
                PrivilegeType::Private,
                PrivilegeType::CreatorOnly,
            ]
            .into_iter()
            .find(|known| known.as_str() == kind)?,
        ),
    };
    Some(ActivityContent {
        title: text("title"),
        summary: text("summary"),
        content: text("content"),
        location: text("location"),
        started_at: text("started_at"),
        ended_at: text("ended_at"),
        closed_at: text("closed_at"),
        created_at: text("created_at"),
        attend_start_at: text("attend_start_at"),
        attend_end_at: text("attend_end_at"),
        attend_method: text("attend_method"),
        app_source_type: text("app_source_type"),
        participant_count_limit: item.i64("participant_count_limit"),
        enable_random_extract: item.bool("enable_random_extract"),
        privilege_type,
        privilege,
        logo: text("logo"),
        team_id: text("team_id"),
        category_id: text("category_id"),
        roadmap_id: item.i64("roadmap_id"),
    })
}

impl Mergeable for ActivityState {
    type Event = ActivityEvent;

    fn digest(event: &ActivityEvent) -> &EventDigest {
        &event.digest
    }

    /// Only events that name an activity reach here (see `ActivityEvent::activity_id`).
    fn merge(state: Option<Self>, event: &ActivityEvent) -> Self {
        let stamp = event.stamp();
        let last = LastActivityEvent {
            action: event.action.clone(),
            operator: event.operator.clone(),
            operator_name: event.operator_name.clone(),
        };
        let mut state = match state {
            Some(mut state) => {
                if stamp > state.last.stamp {
                    state.last = Lww::new(last, &stamp);
                    state.last_raw = event.raw.clone();
                }
                state
            }
            None => Self {
                mid: event.mid.clone(),
                entity_id: event.entity_id.clone().unwrap_or_default(),
                content: None,
                last: Lww::new(last, &stamp),
                last_raw: event.raw.clone(),
            },
        };
        if let Some(content) = &event.content {
            offer_newest(&mut state.content, content.clone(), &stamp);
        }
        state
    }
}
