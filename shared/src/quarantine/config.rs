//! The quarantine's configuration (variables in docs/refused-deliveries.md).

/// Configuration of the quarantine (contract 2.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineConfig {
    /// `REFUSED_DELIVERIES_TABLE_NAME`; `None` turns the quarantine off.
    pub table_name: Option<String>,
    /// `QUARANTINE_RETENTION_DAYS` (default 14).
    pub retention_days: u32,
    /// `QUARANTINE_MAX_PER_MINUTE` per function instance (default 60; 0 keeps nothing).
    pub max_per_minute: u32,
    /// `QUARANTINE_MAX_BODY_BYTES` (default 64 KiB): larger bodies are counted, not kept.
    pub max_body_bytes: usize,
    /// `QUARANTINE_GLOBAL_MAX` (default 1000; 0 keeps nothing): records kept per global window
    /// by every instance of both functions together.
    pub global_max: u32,
    /// `QUARANTINE_GLOBAL_WINDOW_SECONDS` (default 3600): the length of a global window.
    pub global_window_seconds: u32,
}

impl QuarantineConfig {
    /// How long a record (and the counter of the window it was counted in) is kept, in seconds.
    pub fn retention_seconds(&self) -> i64 {
        i64::from(self.retention_days) * 24 * 3600
    }
}

impl Default for QuarantineConfig {
    fn default() -> Self {
        Self {
            table_name: None,
            retention_days: 14,
            max_per_minute: 60,
            max_body_bytes: 64 * 1024,
            // A flood costs at most 1000 record writes an hour (24,000 a day, 336,000 records
            // over the default 14 days), while a tenant onboarding without its secret, a few
            // events a minute, is kept whole.
            global_max: 1000,
            global_window_seconds: 3600,
        }
    }
}
