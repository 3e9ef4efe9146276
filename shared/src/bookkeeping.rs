//! The merge bookkeeping an entity item carries besides its visible attributes (storage format 2,
//! docs/items.md): which events were applied, and which event wrote each register. The values
//! themselves are not repeated: they are read back from the item's visible attributes.
//!
//! Binary layout (attribute `merge`, type B):
//!
//! ```text
//! varint  number of applied events, E
//! E ×     zigzag varint time, 8 bytes tie-break (big-endian)   -- in stamp order
//! ...     the state's registers, each a varint reference: 0 = absent, i + 1 = applied event i
//! ```
//!
//! Every stamp is stored once; a register costs one or two bytes. The record is kept in stamp
//! order, so that the same events give the same bytes whatever the order they arrived in. It is
//! bounded by [`MAX_APPLIED_EVENTS`]: beyond it, the oldest events (by stamp) that no register
//! refers to any more are forgotten (a redelivery of one of those is merged again, which changes
//! nothing but `event_count`).

use std::collections::BTreeMap;

use crate::item::Item;
use crate::merge::Stamp;

/// Version of the storage format, written to every item's `format` attribute. Format 1 kept a
/// JSON `merge_state` and delivery records in a table of their own.
pub const FORMAT_VERSION: u32 = 2;

/// How many of its newest applied events an item remembers (older ones too while registers
/// refer to them).
pub const MAX_APPLIED_EVENTS: usize = 128;

/// Why stored bookkeeping could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("merge bookkeeping: {0}")]
pub struct BookError(pub String);

impl BookError {
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

/// The events applied to an entity, in stamp order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppliedEvents(Vec<Stamp>);

impl AppliedEvents {
    pub fn contains(&self, stamp: &Stamp) -> bool {
        self.0.binary_search(stamp).is_ok()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn stamps(&self) -> &[Stamp] {
        &self.0
    }

    /// Records `stamp` as applied, then forgets the events older than the newest
    /// [`MAX_APPLIED_EVENTS`] that no register of the state refers to. An old event a register
    /// refers to is kept besides the newest ones, never instead of one of them: a redelivery of
    /// any of the newest is always recognised.
    pub fn record<S: Registers>(&mut self, stamp: Stamp, state: &S) {
        if let Err(at) = self.0.binary_search(&stamp) {
            self.0.insert(at, stamp);
        }
        let older = self.0.len().saturating_sub(MAX_APPLIED_EVENTS);
        if older == 0 {
            return;
        }
        let mut referenced = Vec::new();
        state.visit_stamps(&mut |s| referenced.push(*s));
        referenced.sort_unstable();
        let mut position = 0;
        self.0.retain(|held| {
            let keep = position >= older || referenced.binary_search(held).is_ok();
            position += 1;
            keep
        });
    }
}

/// A state whose registers can be written as references into the applied events and read back
/// together with the item's visible attributes.
pub trait Registers: Sized {
    /// Every stamp the state holds.
    fn visit_stamps(&self, visit: &mut dyn FnMut(&Stamp));

    fn write_registers(&self, out: &mut Writer<'_>);

    /// The state from the visible attributes of `item` and the registers in `reader`.
    fn read_registers(item: &Item, reader: &mut Reader<'_>) -> Result<Self, BookError>;
}

/// Encodes `applied` and the registers of `state`. Fails only if a register holds a stamp that is
/// not among the applied events, which the merge never produces.
pub fn encode<S: Registers>(applied: &AppliedEvents, state: &S) -> Result<Vec<u8>, BookError> {
    let mut out = Vec::with_capacity(16 + applied.len() * 13 + 32);
    put_varint(&mut out, applied.len() as u64);
    for stamp in &applied.0 {
        put_varint(&mut out, zigzag(stamp.time));
        out.extend_from_slice(&stamp.tie.to_be_bytes());
    }
    let mut index: Vec<(Stamp, u64)> = applied.0.iter().enumerate().map(|(i, s)| (*s, i as u64)).collect();
    index.sort_unstable();
    let mut writer = Writer {
        out: &mut out,
        index,
        dangling: false,
    };
    state.write_registers(&mut writer);
    if writer.dangling {
        return Err(BookError::new("a register refers to an event that is not recorded"));
    }
    Ok(out)
}

/// Decodes bookkeeping written by [`encode`], reading the values from `item`.
pub fn decode<S: Registers>(bytes: &[u8], item: &Item) -> Result<(AppliedEvents, S), BookError> {
    let mut reader = Reader {
        bytes,
        table: Vec::new(),
    };
    let count = reader.varint()?;
    if count > bytes.len() as u64 {
        return Err(BookError::new("event count beyond the data"));
    }
    let mut applied = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let time = unzigzag(reader.varint()?);
        let tie = u64::from_be_bytes(reader.take(8)?.try_into().expect("8 bytes"));
        let stamp = Stamp { time, tie };
        if applied.last().is_some_and(|last| *last >= stamp) {
            return Err(BookError::new("applied events out of order"));
        }
        applied.push(stamp);
    }
    reader.table = applied.clone();
    let state = S::read_registers(item, &mut reader)?;
    if !reader.bytes.is_empty() {
        return Err(BookError::new(format!("{} bytes left over", reader.bytes.len())));
    }
    Ok((AppliedEvents(applied), state))
}

pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
    /// Applied stamps, sorted, with their position in the record.
    index: Vec<(Stamp, u64)>,
    dangling: bool,
}

impl Writer<'_> {
    /// A reference to `stamp`, which must be an applied event (every register is written by one).
    pub fn stamp(&mut self, stamp: Option<&Stamp>) {
        let reference = stamp.map_or(0, |stamp| {
            match self.index.binary_search_by(|(held, _)| held.cmp(stamp)) {
                Ok(at) => self.index[at].1 + 1,
                Err(_) => {
                    self.dangling = true;
                    0
                }
            }
        });
        put_varint(self.out, reference);
    }

    pub fn count(&mut self, count: usize) {
        put_varint(self.out, count as u64);
    }

    pub fn text(&mut self, text: &str) {
        put_varint(self.out, text.len() as u64);
        self.out.extend_from_slice(text.as_bytes());
    }
}

pub struct Reader<'a> {
    bytes: &'a [u8],
    table: Vec<Stamp>,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], BookError> {
        if self.bytes.len() < n {
            return Err(BookError::new("truncated"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn varint(&mut self) -> Result<u64, BookError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.take(1)?.first().expect("one byte");
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(BookError::new("varint too long"))
    }

    pub fn stamp(&mut self) -> Result<Option<Stamp>, BookError> {
        match self.varint()? {
            0 => Ok(None),
            reference => self
                .table
                .get(usize::try_from(reference - 1).unwrap_or(usize::MAX))
                .copied()
                .map(Some)
                .ok_or_else(|| BookError::new(format!("reference {reference} beyond the applied events"))),
        }
    }

    /// A reference that must be present.
    pub fn required_stamp(&mut self, what: &str) -> Result<Stamp, BookError> {
        self.stamp()?
            .ok_or_else(|| BookError::new(format!("no stamp for `{what}`")))
    }

    pub fn count(&mut self) -> Result<usize, BookError> {
        let count = self.varint()?;
        if count > self.bytes.len() as u64 {
            return Err(BookError::new("count beyond the data"));
        }
        Ok(count as usize)
    }

    pub fn text(&mut self) -> Result<String, BookError> {
        let len = self.count()?;
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| BookError::new("text is not UTF-8"))
    }
}

/// Registers of a map whose visible entries are listed in the item (`visible`, sorted keys):
/// one reference per visible key, then the hidden entries (cleared fields, removed members) by
/// name. `hidden` tells which entries the item does not show.
pub fn write_map<T>(
    out: &mut Writer<'_>,
    registers: &BTreeMap<String, crate::merge::Lww<T>>,
    hidden: impl Fn(&T) -> bool,
) {
    let mut hidden_entries = Vec::new();
    for (key, held) in registers {
        if hidden(&held.value) {
            hidden_entries.push((key, held));
        } else {
            out.stamp(Some(&held.stamp));
        }
    }
    out.count(hidden_entries.len());
    for (key, held) in hidden_entries {
        out.text(key);
        out.stamp(Some(&held.stamp));
    }
}

/// Reads what [`write_map`] wrote: `visible` are the keys the item shows, in order, each turned
/// into its value by `value`; `hidden_value` is the value of an entry the item does not show.
pub fn read_map<'k, T>(
    reader: &mut Reader<'_>,
    visible: impl Iterator<Item = (&'k String, T)>,
    hidden_value: impl Fn() -> T,
    what: &str,
) -> Result<BTreeMap<String, crate::merge::Lww<T>>, BookError> {
    let mut registers = BTreeMap::new();
    for (key, value) in visible {
        let stamp = reader.required_stamp(what)?;
        registers.insert(key.clone(), crate::merge::Lww { value, stamp });
    }
    for _ in 0..reader.count()? {
        let key = reader.text()?;
        let stamp = reader.required_stamp(what)?;
        registers.insert(
            key,
            crate::merge::Lww {
                value: hidden_value(),
                stamp,
            },
        );
    }
    Ok(registers)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Two(Option<Stamp>, Option<Stamp>);

    impl Registers for Two {
        fn visit_stamps(&self, visit: &mut dyn FnMut(&Stamp)) {
            self.0.iter().chain(&self.1).for_each(visit);
        }
        fn write_registers(&self, out: &mut Writer<'_>) {
            out.stamp(self.0.as_ref());
            out.stamp(self.1.as_ref());
        }
        fn read_registers(_: &Item, reader: &mut Reader<'_>) -> Result<Self, BookError> {
            Ok(Two(reader.stamp()?, reader.stamp()?))
        }
    }

    fn stamp(time: i64, tie: u64) -> Stamp {
        Stamp { time, tie }
    }

    #[test]
    fn varints_and_zigzag_round_trip() {
        for value in [0i64, 1, -1, 63, -64, 1_677_481_345, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            put_varint(&mut out, zigzag(value));
            let mut reader = Reader {
                bytes: &out,
                table: Vec::new(),
            };
            assert_eq!(unzigzag(reader.varint().unwrap()), value);
            assert!(reader.bytes.is_empty());
        }
    }

    #[test]
    fn each_stamp_is_stored_once_and_registers_refer_to_it() {
        let (a, b) = (stamp(1_677_481_345, u64::MAX), stamp(1_677_481_346, 7));
        let mut applied = AppliedEvents::default();
        let state = Two(Some(b), Some(b));
        applied.record(a, &state);
        applied.record(b, &state);
        let bytes = encode(&applied, &state).unwrap();
        // count, 2 × (5-byte time + 8-byte tie), two 1-byte references.
        assert_eq!(bytes.len(), 1 + 2 * 13 + 2);
        let mut reversed = AppliedEvents::default();
        reversed.record(b, &state);
        reversed.record(a, &state);
        assert_eq!(
            encode(&reversed, &state).unwrap(),
            bytes,
            "the same events, the same bytes"
        );
        assert_eq!(decode::<Two>(&bytes, &Item::new()), Ok((applied, state)));
    }

    #[test]
    fn the_record_forgets_the_oldest_unreferenced_events_beyond_its_bound() {
        let pinned = stamp(0, 0);
        let state = Two(Some(pinned), None);
        let mut applied = AppliedEvents::default();
        applied.record(pinned, &state);
        for i in 1..=(MAX_APPLIED_EVENTS as i64 + 10) {
            applied.record(stamp(i, i as u64), &state);
        }
        // The newest 128 (11 to 138), and besides them the one a register refers to.
        assert_eq!(applied.len(), MAX_APPLIED_EVENTS + 1);
        assert!(applied.contains(&pinned), "a register still refers to it");
        assert!(
            !applied.contains(&stamp(10, 10)),
            "the oldest unreferenced are forgotten"
        );
        assert!((11..=MAX_APPLIED_EVENTS as i64 + 10).all(|i| applied.contains(&stamp(i, i as u64))));
        let bytes = encode(&applied, &state).unwrap();
        assert_eq!(decode::<Two>(&bytes, &Item::new()).unwrap().1, state);
    }

    #[test]
    fn damaged_bookkeeping_is_an_error_not_a_panic() {
        let applied = {
            let mut applied = AppliedEvents::default();
            applied.record(stamp(5, 5), &Two(None, None));
            applied
        };
        let bytes = encode(&applied, &Two(Some(stamp(5, 5)), None)).unwrap();
        assert!(encode(&applied, &Two(Some(stamp(6, 6)), None)).is_err());
        for cut in 0..bytes.len() {
            assert!(decode::<Two>(&bytes[..cut], &Item::new()).is_err(), "cut at {cut}");
        }
        let mut dangling = bytes.clone();
        *dangling.last_mut().unwrap() = 9;
        assert!(decode::<Two>(&dangling, &Item::new()).is_err());
        let mut extra = bytes;
        extra.push(0);
        assert!(decode::<Two>(&extra, &Item::new()).is_err());
    }
}
