//! What bounds the quarantine's writes, so that forged traffic cannot run up the bill or fill the
//! table: this instance's budget per clock minute ([`MinuteBudget`], in memory), and the global
//! cap shared by every instance of both functions, one slot per record, counted by a counter item
//! per window in the quarantine table ([`CapWindow`], [`SlotRequest`], [`Slot`]). Every decision
//! takes the time as an argument: the policy reads its clock once per delivery.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use crate::timefmt::utc_rfc3339;

/// The partition key (`source`) of the global cap's counter items in the quarantine table. No
/// source is named so (sources are `crm` and `activity`), so `webhookctl quarantine`, which
/// reads the table one source at a time, never sees a counter.
pub const CAP_PARTITION: &str = "#cap";

/// One window of the global cap: `[start, start + seconds)`, aligned on the Unix epoch, so that
/// every instance finds the same window from its own clock without talking to the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapWindow {
    pub start: i64,
    pub seconds: u32,
}

impl CapWindow {
    /// The window `now` falls in.
    pub fn containing(now: i64, seconds: u32) -> Self {
        let length = i64::from(seconds.max(1));
        Self {
            start: now - now.rem_euclid(length),
            seconds,
        }
    }

    /// The first second after the window.
    pub fn end(&self) -> i64 {
        self.start + i64::from(self.seconds.max(1))
    }

    /// The counter item's sort key (`delivery_id`): the window's start, RFC 3339 UTC. Windows of
    /// another length starting at the same second share a counter: changing the window length
    /// mid-window never grants a fresh budget.
    pub fn key(&self) -> String {
        utc_rfc3339(self.start)
    }
}

/// A request for one slot of the global cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRequest {
    pub window: CapWindow,
    /// The most slots the window's counter may grant.
    pub max: u32,
    /// TTL of the counter item, as of a record: the window's end plus the retention, so that a
    /// counter is there as long as the records it counted, and then expires.
    pub expires_at: i64,
}

/// What the counter answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The counter was raised: the record may be written.
    Granted,
    /// The window already holds its `max`.
    Full,
}

/// At most `max` admissions per clock minute, in this instance.
#[derive(Debug)]
pub(crate) struct MinuteBudget {
    max: u32,
    /// (minute, admissions in it)
    used: Mutex<(i64, u32)>,
}

impl MinuteBudget {
    pub(crate) fn new(max: u32) -> Self {
        Self {
            max,
            used: Mutex::new((i64::MIN, 0)),
        }
    }

    /// Takes one admission of the minute `now` falls in, if any is left.
    pub(crate) fn take(&self, now: i64) -> bool {
        let minute = now.div_euclid(60);
        let mut used = self.used.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if used.0 != minute {
            *used = (minute, 0);
        }
        if used.1 < self.max {
            used.1 += 1;
            true
        } else {
            false
        }
    }
}

/// This instance's view of the global cap: what it needs to ask for a slot, and the window it
/// last learnt is full. Lambda runs one request at a time per instance, so each instance asks
/// the counter at most once after its window filled up; a flood past the cap costs no calls.
#[derive(Debug)]
pub(crate) struct GlobalCap {
    max: u32,
    window_seconds: u32,
    retention_seconds: i64,
    /// Until when (Unix seconds, exclusive) the counter is known to be full; the end of the full
    /// window, or `i64::MIN` when no full window is known.
    full_until: AtomicI64,
}

impl GlobalCap {
    pub(crate) fn new(max: u32, window_seconds: u32, retention_seconds: i64) -> Self {
        Self {
            max,
            window_seconds,
            retention_seconds,
            full_until: AtomicI64::new(i64::MIN),
        }
    }

    /// Whether no slot can be had at `now` without asking: the cap is 0, or the window is
    /// known to be full.
    pub(crate) fn closed(&self, now: i64) -> bool {
        self.max == 0 || now < self.full_until.load(Ordering::Relaxed)
    }

    /// The slot to ask the counter for, for a record received at `now`: a record counts in the
    /// window its own time names.
    pub(crate) fn request(&self, now: i64) -> SlotRequest {
        let window = CapWindow::containing(now, self.window_seconds);
        SlotRequest {
            window,
            max: self.max,
            expires_at: window.end() + self.retention_seconds,
        }
    }

    /// Remembers that `window` is full, until its end.
    pub(crate) fn mark_full(&self, window: &CapWindow) {
        // `fetch_max`: a late answer about an older window never shortens a newer mark.
        self.full_until.fetch_max(window.end(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_window_is_aligned_on_the_epoch_and_keyed_by_its_start() {
        let hour = CapWindow::containing(3_600 * 10 + 1_799, 3_600);
        assert_eq!((hour.start, hour.end()), (36_000, 39_600));
        assert_eq!(hour.key(), "1970-01-01T10:00:00Z");
        assert_eq!(
            CapWindow::containing(36_000, 3_600),
            hour,
            "a window holds its first second"
        );
        assert_ne!(CapWindow::containing(39_600, 3_600), hour, "and not its end");
        assert_eq!(CapWindow::containing(-1, 60).start, -60, "before the epoch too");
    }

    #[test]
    fn a_minute_budget_grants_exactly_its_max_per_clock_minute() {
        let budget = MinuteBudget::new(3);
        // The first second of a minute (1_780_000_020 = 60 × 29_666_667).
        let minute = 1_780_000_020;
        let granted = (0..10).filter(|_| budget.take(minute)).count();
        assert_eq!(granted, 3);
        assert!(!budget.take(minute + 59), "the minute's last second");
        assert!(budget.take(minute + 60), "a new minute, a new budget");
        assert!(!MinuteBudget::new(0).take(minute), "0 grants nothing");
    }

    #[test]
    fn a_slot_request_names_its_window_and_outlives_it_by_the_retention() {
        let cap = GlobalCap::new(7, 3_600, 2 * 86_400);
        let slot = cap.request(36_000 + 59);
        assert_eq!(slot.window, CapWindow::containing(36_000, 3_600));
        assert_eq!((slot.max, slot.expires_at), (7, 39_600 + 2 * 86_400));
    }

    #[test]
    fn a_full_window_stays_closed_until_its_end_and_a_late_answer_never_shortens_it() {
        let cap = GlobalCap::new(1, 60, 0);
        assert!(!cap.closed(120));
        cap.mark_full(&CapWindow::containing(130, 60));
        assert!(cap.closed(120) && cap.closed(179));
        cap.mark_full(&CapWindow::containing(70, 60));
        assert!(cap.closed(179), "an older window's answer");
        assert!(!cap.closed(180), "the next window");
        assert!(GlobalCap::new(0, 60, 0).closed(0), "0 keeps none");
    }
}
