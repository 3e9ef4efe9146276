//! The sources write zone-less local times (`2023-02-27 15:02:25`) in a configurable offset
//! (UTC+8 by default); the items store RFC 3339 with that offset.

use std::str::FromStr;

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// The UTC offset of the sources' zone-less times (`SOURCE_UTC_OFFSET`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceOffset(UtcOffset);

impl SourceOffset {
    /// Beijing time, the vendors' zone.
    pub const BEIJING: Self = Self(time::macros::offset!(+8));

    /// `2023-02-27 15:02:25` (or with a `T`) read at this offset, written as RFC 3339.
    pub fn local_to_rfc3339(&self, text: &str) -> Result<String, String> {
        let text = text.trim();
        let with_space = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
        let with_t = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
        let local = PrimitiveDateTime::parse(text, with_space)
            .or_else(|_| PrimitiveDateTime::parse(text, with_t))
            .map_err(|_| format!("`{text}` is not a time of the form YYYY-MM-DD HH:MM:SS"))?;
        format_rfc3339(local.assume_offset(self.0))
    }

    /// A Unix time written as RFC 3339 at this offset.
    pub fn unix_to_rfc3339(&self, seconds: i64) -> Result<String, String> {
        let at = OffsetDateTime::from_unix_timestamp(seconds).map_err(|e| e.to_string())?;
        format_rfc3339(at.to_offset(self.0))
    }
}

impl Default for SourceOffset {
    fn default() -> Self {
        Self::BEIJING
    }
}

impl FromStr for SourceOffset {
    type Err = String;

    /// `+08:00`, `-05:30`, `Z`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("z") {
            return Ok(Self(UtcOffset::UTC));
        }
        let format = format_description!("[offset_hour sign:mandatory]:[offset_minute]");
        UtcOffset::parse(text, format)
            .ok()
            // Real zones lie within ±14:00; anything beyond is a typo.
            .filter(|offset| offset.whole_hours().abs() <= 14)
            .map(Self)
            .ok_or_else(|| format!("`{text}` is not a UTC offset like +08:00"))
    }
}

/// A duration in whole milliseconds, as logs, metrics and error messages state it (saturating:
/// no duration this service measures comes near `u64::MAX` ms).
pub fn whole_millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A Unix time as RFC 3339 in UTC (`updated_at`).
pub fn utc_rfc3339(seconds: i64) -> String {
    OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|at| format_rfc3339(at).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

fn format_rfc3339(at: OffsetDateTime) -> Result<String, String> {
    at.format(&Rfc3339).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_whole_milliseconds_rounded_down_and_saturating() {
        use std::time::Duration;
        assert_eq!(whole_millis(Duration::from_micros(1_999)), 1);
        assert_eq!(whole_millis(Duration::from_secs(4)), 4_000);
        assert_eq!(whole_millis(Duration::MAX), u64::MAX);
    }

    #[test]
    fn create_time_and_created_timestamp_agree_at_beijing_time() {
        let beijing = SourceOffset::default();
        assert_eq!(
            beijing.unix_to_rfc3339(1_677_481_345).unwrap(),
            "2023-02-27T15:02:25+08:00"
        );
        assert_eq!(
            beijing.local_to_rfc3339("2023-02-27 15:02:25").unwrap(),
            "2023-02-27T15:02:25+08:00"
        );
    }

    #[test]
    fn offsets_are_configurable() {
        let offset: SourceOffset = "-05:30".parse().unwrap();
        assert_eq!(
            offset.local_to_rfc3339("2023-12-05T10:47:00").unwrap(),
            "2023-12-05T10:47:00-05:30"
        );
        assert_eq!(
            "Z".parse::<SourceOffset>().unwrap().unix_to_rfc3339(0).unwrap(),
            "1970-01-01T00:00:00Z"
        );
        for bad in ["8", "+8", "UTC+8", "+25:00", ""] {
            assert!(bad.parse::<SourceOffset>().is_err(), "{bad}");
        }
    }

    #[test]
    fn malformed_local_times_are_refused() {
        let beijing = SourceOffset::default();
        for bad in ["2023-02-30 10:00:00", "yesterday", "2023-02-27", "2023-02-27 25:00:00"] {
            assert!(beijing.local_to_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn updated_at_is_utc() {
        assert_eq!(utc_rfc3339(1_677_481_345), "2023-02-27T07:02:25Z");
    }
}
