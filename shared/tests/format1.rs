//! Storage format 1 items, as the format-1 code wrote them (`fixtures/format1/`, made by the
//! code of 7bdf4fe^: see its README), read into the format-2 form (`shared::format1`): the state
//! must be the one today's code merges from the same events, the visible item identical, and
//! further events must merge as if the item had always been format 2.

use std::collections::BTreeSet;

use serde::Deserialize;
use shared::activity::verify::SignedFields;
use shared::activity::{ActivityEvent, ActivityState};
use shared::bookkeeping::{self, AppliedEvents, Registers};
use shared::crm::{CrmEvent, CrmState};
use shared::envelope::Envelope;
use shared::format1::{self, Format1, MERGE_STATE};
use shared::item::{AttrValue, Item};
use shared::merge::{Mergeable, Stamp};
use shared::timefmt::SourceOffset;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/format1");

/// One history of one entity: the events in delivery order, and the item format 1 stored after
/// the first `events_applied` of them.
#[derive(Deserialize)]
struct History {
    mid: String,
    updated_at: String,
    events: Vec<String>,
    snapshots: Vec<Snapshot>,
}

#[derive(Deserialize)]
struct Snapshot {
    events_applied: usize,
    item: Item,
}

impl Snapshot {
    /// `version`, `merge_state` and the visible attributes of the stored item.
    fn parts(&self) -> (u64, &str, Item) {
        let mut visible = self.item.clone();
        let Some(AttrValue::N(version)) = visible.remove("version") else {
            panic!("a format-1 item has a numeric version")
        };
        let Some(AttrValue::S(merge_state)) = self.item.get(MERGE_STATE) else {
            panic!("a format-1 item has a string merge_state")
        };
        visible.remove(MERGE_STATE);
        assert!(!visible.contains_key("format"), "format 1 wrote no `format`");
        (version.parse().unwrap(), merge_state, visible)
    }
}

fn history(file: &str) -> History {
    let text = std::fs::read_to_string(format!("{DATA}/{file}")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn crm_event(body: &str, _mid: &str) -> CrmEvent {
    CrmEvent::from_envelope(Envelope::parse(body.as_bytes()).unwrap(), SourceOffset::BEIJING).unwrap()
}

fn activity_event(body: &str, mid: &str) -> ActivityEvent {
    let envelope = Envelope::parse(body.as_bytes()).unwrap();
    let signed = SignedFields::extract(&envelope.object).unwrap();
    ActivityEvent::from_envelope(envelope, mid, &signed.nonce, signed.timestamp, SourceOffset::BEIJING).unwrap()
}

/// One source as these tests read it: its recorded history, and how its events are parsed,
/// ordered and shown as an item.
struct Source<S: Mergeable> {
    file: &'static str,
    parse: fn(&str, &str) -> S::Event,
    stamp: fn(&S::Event) -> Stamp,
    to_item: fn(&S, &str) -> Item,
}

const CRM: Source<CrmState> = Source {
    file: "crm_lead.json",
    parse: crm_event,
    stamp: CrmEvent::stamp,
    to_item: CrmState::to_item,
};

const ACTIVITY: Source<ActivityState> = Source {
    file: "activity.json",
    parse: activity_event,
    stamp: ActivityEvent::stamp,
    to_item: ActivityState::to_item,
};

impl<S: Mergeable> Source<S> {
    /// The recorded history, and its events parsed in delivery order.
    fn history(&self) -> (History, Vec<S::Event>) {
        let history = history(self.file);
        let events = history
            .events
            .iter()
            .map(|body| (self.parse)(body, &history.mid))
            .collect();
        (history, events)
    }
}

/// What today's code holds after `events`: the state and the record of applied events.
fn merged<S: Mergeable + Registers>(events: &[S::Event], stamp: impl Fn(&S::Event) -> Stamp) -> (AppliedEvents, S) {
    let mut state = None;
    let mut applied = AppliedEvents::default();
    for event in events {
        let next = S::merge(state.take(), event);
        applied.record(stamp(event), &next);
        state = Some(next);
    }
    (applied, state.expect("at least one event"))
}

fn referenced<S: Registers>(state: &S) -> BTreeSet<Stamp> {
    let mut stamps = BTreeSet::new();
    state.visit_stamps(&mut |stamp| {
        stamps.insert(*stamp);
    });
    stamps
}

/// The two properties every source's recorded history must have.
impl<S> Source<S>
where
    S: Format1 + Mergeable + PartialEq + std::fmt::Debug,
{
    /// Each snapshot of `file` read as format 1 is the state today's code merges from the same
    /// events, shows the same item, and records exactly the events its registers refer to.
    fn converts_to_the_state_merged_today(&self) {
        let Source {
            file, stamp, to_item, ..
        } = *self;
        let (history, events) = self.history();
        assert!(history.snapshots.len() >= 2, "{file}: a prefix and the whole history");
        for snapshot in &history.snapshots {
            let applied_events = &events[..snapshot.events_applied];
            let (version, merge_state, visible) = snapshot.parts();
            let (applied, state) = format1::read::<S>(merge_state, &visible).unwrap();
            let (_, today) = merged::<S>(applied_events, stamp);
            let at = snapshot.events_applied;
            assert_eq!(state, today, "{file} after {at} events: the state");
            assert_eq!(
                to_item(&state, &history.updated_at),
                visible,
                "{file} after {at} events: the visible item is the one format 1 stored"
            );
            assert_eq!(version, at as u64, "{file}: one version per event");
            let recorded: BTreeSet<Stamp> = applied.stamps().iter().copied().collect();
            assert_eq!(recorded, referenced(&state), "{file} after {at} events: the record");
            let all: BTreeSet<Stamp> = applied_events.iter().map(stamp).collect();
            assert!(recorded.is_subset(&all), "{file} after {at} events");
            if at == events.len() {
                assert!(
                    recorded.len() < all.len(),
                    "{file}: some events were written over, so the record is partial"
                );
            }
        }
    }

    /// From every snapshot but the last, the rest of the history merged into the converted entity
    /// (as the adapter does: merge, record, encode) gives what today's code gives for the whole
    /// history: the same state, the same item, and bookkeeping that reads back to that state.
    fn further_events_merge_as_if_always_format_2(&self) {
        let Source {
            file, stamp, to_item, ..
        } = *self;
        let (history, events) = self.history();
        let (_, whole) = merged::<S>(&events, stamp);
        let updated_at = &history.updated_at;
        for snapshot in &history.snapshots[..history.snapshots.len() - 1] {
            let (_, merge_state, visible) = snapshot.parts();
            let (mut applied, mut state) = format1::read::<S>(merge_state, &visible).unwrap();
            let mut bytes = Vec::new();
            for event in &events[snapshot.events_applied..] {
                assert!(
                    !applied.contains(&stamp(event)),
                    "{file}: a new event is not a duplicate"
                );
                state = S::merge(Some(state), event);
                applied.record(stamp(event), &state);
                bytes = bookkeeping::encode(&applied, &state).unwrap();
            }
            let at = snapshot.events_applied;
            assert_eq!(state, whole, "{file} from {at} events");
            let item = to_item(&state, updated_at);
            assert_eq!(item, to_item(&whole, updated_at), "{file} from {at} events");
            let (read_applied, read_state) = bookkeeping::decode::<S>(&bytes, &item).unwrap();
            assert_eq!(read_applied, applied, "{file} from {at} events: the record as written");
            assert_eq!(
                to_item(&read_state, updated_at),
                item,
                "{file} from {at} events: read back"
            );
            for event in &events[at..] {
                assert!(
                    applied.contains(&stamp(event)),
                    "{file}: every event since the upgrade is known"
                );
            }
        }
    }
}

#[test]
fn a_crm_lead_converts_to_the_state_merged_today() {
    CRM.converts_to_the_state_merged_today();
}

#[test]
fn an_activity_converts_to_the_state_merged_today() {
    ACTIVITY.converts_to_the_state_merged_today();
}

#[test]
fn a_crm_lead_merges_further_events_as_if_always_format_2() {
    CRM.further_events_merge_as_if_always_format_2();
}

#[test]
fn an_activity_merges_further_events_as_if_always_format_2() {
    ACTIVITY.further_events_merge_as_if_always_format_2();
}

/// After the upgrade, a redelivered event whose stamp a register of the migrated lead still
/// refers to is a duplicate; one written over in every register before the upgrade is not known
/// and is merged again, which changes `event_count` alone (docs/items.md).
#[test]
fn a_migrated_lead_knows_the_events_its_values_come_from() {
    let (history, events) = CRM.history();
    let last = history.snapshots.last().unwrap();
    assert_eq!(last.events_applied, events.len());
    let (_, merge_state, visible) = last.parts();
    let (applied, state) = format1::read::<CrmState>(merge_state, &visible).unwrap();
    let (known, forgotten): (Vec<&CrmEvent>, Vec<&CrmEvent>) =
        events.iter().partition(|event| applied.contains(&event.stamp()));
    assert!(!known.is_empty() && !forgotten.is_empty());
    assert!(
        known.iter().any(|event| event.stamp() == state.last.stamp),
        "the newest event is known"
    );
    for event in forgotten {
        let again = CrmState::merge(Some(state.clone()), event);
        let mut expected = state.clone();
        expected.event_count += 1;
        assert_eq!(
            again,
            expected,
            "{}: only event_count changes",
            event.event_type.as_str()
        );
    }
}

/// A migrated activity: its content and its last event are known; the events written over
/// (caught by their nonce records, which format 1 kept in the same table) change nothing when
/// merged again.
#[test]
fn a_migrated_activity_is_unchanged_by_an_event_it_does_not_record() {
    let (history, events) = ACTIVITY.history();
    let (_, merge_state, visible) = history.snapshots.last().unwrap().parts();
    let (applied, state) = format1::read::<ActivityState>(merge_state, &visible).unwrap();
    assert!(state.deleted(), "the tombstone survives the migration");
    assert_eq!(
        state.content.as_ref().unwrap().value.title.as_deref(),
        Some("第三次编辑（迟到）"),
        "the late edit older than the delete is the content shown"
    );
    assert_eq!(applied.len(), 2, "content and last event");
    for event in events.iter().filter(|event| !applied.contains(&event.stamp())) {
        assert_eq!(ActivityState::merge(Some(state.clone()), event), state);
    }
}
