//! Configuration from the environment (SPEC 5), read once at start-up. Missing or malformed
//! variables stop start-up with a message naming the variable.

use std::collections::HashMap;

use thiserror::Error;

use crate::activity::ActivityIntake;
use crate::crm::CrmIntake;
use crate::secret::TenantSecrets;
use crate::timefmt::SourceOffset;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("required environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// A snapshot of the environment, so configuration can be tested without touching the process.
#[derive(Debug, Clone, Default)]
pub struct Env(HashMap<String, String>);

impl Env {
    pub fn from_process() -> Self {
        Self(std::env::vars().collect())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.trim().is_empty())
    }

    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.get(name).map(str::to_owned).ok_or(ConfigError::Missing(name))
    }

    fn offset(&self) -> Result<SourceOffset, ConfigError> {
        self.get("SOURCE_UTC_OFFSET").map_or(Ok(SourceOffset::BEIJING), |text| {
            text.parse().map_err(|reason| ConfigError::Invalid {
                name: "SOURCE_UTC_OFFSET",
                reason,
            })
        })
    }

    fn secrets(&self, prefix: &str) -> TenantSecrets {
        TenantSecrets::from_vars(prefix, &self.0)
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Env {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

#[derive(Debug, Clone)]
pub struct CrmConfig {
    pub table_name: String,
    pub intake: CrmIntake,
}

impl CrmConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            table_name: env.required("CRM_TABLE_NAME")?,
            intake: CrmIntake {
                signature_header: env
                    .get("CRM_SIGNATURE_HEADER")
                    .unwrap_or("X-Signature")
                    .trim()
                    .to_owned(),
                secrets: env.secrets("CRM_WEBHOOK_SECRET"),
                offset: env.offset()?,
            },
        })
    }
}

#[derive(Debug, Clone)]
pub struct ActivityConfig {
    pub table_name: String,
    pub nonces_table_name: String,
    pub default_mid: Option<String>,
    pub intake: ActivityIntake,
}

impl ActivityConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let max_skew_seconds = match env.get("ACTIVITY_MAX_SKEW_SECONDS") {
            None => 300,
            Some(text) => text.trim().parse().map_err(|_| ConfigError::Invalid {
                name: "ACTIVITY_MAX_SKEW_SECONDS",
                reason: format!("`{text}` is not a whole number of seconds"),
            })?,
        };
        Ok(Self {
            table_name: env.required("ACTIVITY_TABLE_NAME")?,
            nonces_table_name: env.required("ACTIVITY_NONCES_TABLE_NAME")?,
            default_mid: env.get("ACTIVITY_DEFAULT_MID").map(|mid| mid.trim().to_owned()),
            intake: ActivityIntake::new(env.secrets("ACTIVITY_CALLBACK_SECRET"), max_skew_seconds, env.offset()?),
        })
    }

    /// How long a nonce must be remembered: past the freshness window nobody can replay it,
    /// since a stale timestamp is refused anyway. With the check off, a week.
    pub fn nonce_retention_seconds(&self) -> u64 {
        match self.intake.max_skew_seconds {
            0 => 7 * 24 * 3600,
            window => 2 * window + 60,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tables_are_named() {
        let env: Env = [("ACTIVITY_TABLE_NAME", "t")].into_iter().collect();
        assert_eq!(
            CrmConfig::from_env(&env).unwrap_err(),
            ConfigError::Missing("CRM_TABLE_NAME")
        );
        assert_eq!(
            ActivityConfig::from_env(&env).unwrap_err(),
            ConfigError::Missing("ACTIVITY_NONCES_TABLE_NAME")
        );
        let error = ActivityConfig::from_env(&Env::default()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "required environment variable ACTIVITY_TABLE_NAME is not set"
        );
    }

    #[test]
    fn defaults_follow_the_spec() {
        let env: Env = [
            ("CRM_TABLE_NAME", "c"),
            ("ACTIVITY_TABLE_NAME", "a"),
            ("ACTIVITY_NONCES_TABLE_NAME", "n"),
        ]
        .into_iter()
        .collect();
        let crm = CrmConfig::from_env(&env).unwrap();
        assert_eq!(crm.intake.signature_header, "X-Signature");
        assert_eq!(crm.intake.offset, SourceOffset::BEIJING);
        assert!(crm.intake.secrets.is_empty());
        let activity = ActivityConfig::from_env(&env).unwrap();
        assert_eq!(activity.intake.max_skew_seconds, 300);
        assert_eq!(activity.default_mid, None);
    }

    #[test]
    fn malformed_values_are_named() {
        let env: Env = [
            ("ACTIVITY_TABLE_NAME", "a"),
            ("ACTIVITY_NONCES_TABLE_NAME", "n"),
            ("ACTIVITY_MAX_SKEW_SECONDS", "5m"),
        ]
        .into_iter()
        .collect();
        assert!(matches!(
            ActivityConfig::from_env(&env),
            Err(ConfigError::Invalid {
                name: "ACTIVITY_MAX_SKEW_SECONDS",
                ..
            })
        ));
        let env: Env = [("CRM_TABLE_NAME", "c"), ("SOURCE_UTC_OFFSET", "CST")]
            .into_iter()
            .collect();
        assert!(matches!(
            CrmConfig::from_env(&env),
            Err(ConfigError::Invalid {
                name: "SOURCE_UTC_OFFSET",
                ..
            })
        ));
    }
}
