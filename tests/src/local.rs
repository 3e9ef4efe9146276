//! The local defaults of `scripts/local.env` (ports, development secrets, table names), the one
//! file the scripts and the tests read them from.

use std::collections::HashMap;
use std::sync::LazyLock;

const LOCAL_ENV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/local.env");

static VALUES: LazyLock<HashMap<String, String>> = LazyLock::new(|| {
    let text = std::fs::read_to_string(LOCAL_ENV).unwrap_or_else(|e| panic!("{LOCAL_ENV}: {e}"));
    parse(&text)
});

/// `NAME=value` lines; blank lines and `#` comment lines are skipped. No quotes, no expansion,
/// as bash's `source` reads this file's values.
pub fn parse(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

/// The value of `LOCAL_<name>` in scripts/local.env.
pub fn value(name: &str) -> &'static str {
    VALUES
        .get(&format!("LOCAL_{name}"))
        .unwrap_or_else(|| panic!("LOCAL_{name} is not in {LOCAL_ENV}"))
}

/// The development CRM secret the stack and the fixtures' events use.
pub fn dev_crm_secret() -> &'static str {
    value("CRM_WEBHOOK_SECRET")
}

/// The development activity callback secret.
pub fn dev_activity_secret() -> &'static str {
    value("ACTIVITY_CALLBACK_SECRET")
}

/// The header the local stack reads the CRM signature from.
pub fn crm_signature_header() -> &'static str {
    value("CRM_SIGNATURE_HEADER")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reads_names_and_values_and_skips_comments() {
        let values = parse("# ports\nLOCAL_A=1\n\n  LOCAL_B=x,y\nnot a pair\n");
        assert_eq!(values.len(), 2);
        assert_eq!(values["LOCAL_A"], "1");
        assert_eq!(values["LOCAL_B"], "x,y");
    }

    #[test]
    fn the_repository_file_has_every_default_the_kit_reads() {
        for name in [
            "CRM_WEBHOOK_SECRET",
            "ACTIVITY_CALLBACK_SECRET",
            "CRM_SIGNATURE_HEADER",
            "CRM_TABLE_NAME",
            "ACTIVITY_TABLE_NAME",
            "ACTIVITY_NONCES_TABLE_NAME",
            "REFUSED_DELIVERIES_TABLE_NAME",
            "CRM_WEBHOOK_SECRET_900",
            "CRM_WEBHOOK_SECRET_901",
        ] {
            assert!(!value(name).is_empty(), "LOCAL_{name} is empty");
        }
        assert_eq!(
            value("CRM_WEBHOOK_SECRET_901").split(',').count(),
            2,
            "901 is mid-rotation"
        );
    }
}
