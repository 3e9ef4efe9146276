//! Configuration from the environment (SPEC 5), read once at start-up. Missing or malformed
//! variables stop start-up with a message naming the variable.

use std::collections::HashMap;
use std::time::Duration;

use thiserror::Error;

use crate::activity::ActivityIntake;
use crate::crm::verify::SignatureScheme;
use crate::crm::CrmIntake;
use crate::quarantine::QuarantineConfig;
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

    /// An optional variable read with `FromStr`; a value that does not parse stops start-up.
    fn parsed<T: std::str::FromStr<Err = String>>(&self, name: &'static str) -> Result<Option<T>, ConfigError> {
        self.get(name)
            .map(|text| text.parse().map_err(|reason| ConfigError::Invalid { name, reason }))
            .transpose()
    }

    /// A whole number in `range`, or `default` when unset.
    fn number<T>(&self, name: &'static str, default: T, range: std::ops::RangeInclusive<T>) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let Some(text) = self.get(name) else {
            return Ok(default);
        };
        match text.trim().parse::<T>() {
            Ok(value) if range.contains(&value) => Ok(value),
            _ => Err(ConfigError::Invalid {
                name,
                reason: format!(
                    "`{text}` is not a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            }),
        }
    }

    /// What verifying and reading a CRM webhook needs: header, scheme, secrets, offset.
    pub fn crm_intake(&self) -> Result<CrmIntake, ConfigError> {
        Ok(CrmIntake {
            signature_header: self
                .get("CRM_SIGNATURE_HEADER")
                .unwrap_or("X-Signature")
                .trim()
                .to_owned(),
            scheme: SignatureScheme {
                algorithm: self.parsed("CRM_SIGNATURE_ALGORITHM")?.unwrap_or_default(),
                encoding: self.parsed("CRM_SIGNATURE_ENCODING")?.unwrap_or_default(),
            },
            secrets: self.secrets("CRM_WEBHOOK_SECRET"),
            offset: self.offset()?,
        })
    }

    /// The quarantine of refused deliveries (SPEC 2.4), shared by both functions.
    pub fn quarantine(&self) -> Result<QuarantineConfig, ConfigError> {
        let defaults = QuarantineConfig::default();
        Ok(QuarantineConfig {
            table_name: self
                .get("REFUSED_DELIVERIES_TABLE_NAME")
                .map(|name| name.trim().to_owned()),
            retention_days: self.number("QUARANTINE_RETENTION_DAYS", defaults.retention_days, 1..=365)?,
            max_per_minute: self.number("QUARANTINE_MAX_PER_MINUTE", defaults.max_per_minute, 0..=100_000)?,
            max_body_bytes: self.number(
                "QUARANTINE_MAX_BODY_BYTES",
                defaults.max_body_bytes,
                0..=crate::envelope::MAX_BODY_BYTES,
            )?,
            global_max: self.number("QUARANTINE_GLOBAL_MAX", defaults.global_max, 0..=1_000_000)?,
            // At least a minute (the per-instance budget's window), at most a day.
            global_window_seconds: self.number(
                "QUARANTINE_GLOBAL_WINDOW_SECONDS",
                defaults.global_window_seconds,
                60..=86_400,
            )?,
        })
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

    /// AWS Secrets Manager when `id_variable` names a secret, else the environment variables.
    fn secret_location(&self, id_variable: &'static str) -> Result<SecretLocation, ConfigError> {
        let Some(secret_id) = self.get(id_variable) else {
            return Ok(SecretLocation::Environment);
        };
        let refresh = match self.get("SECRETS_REFRESH_SECONDS") {
            None => DEFAULT_SECRETS_REFRESH,
            Some(text) => match text.trim().parse::<u64>() {
                Ok(seconds) if seconds > 0 => Duration::from_secs(seconds),
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "SECRETS_REFRESH_SECONDS",
                        reason: format!("`{text}` is not a whole number of seconds above 0"),
                    })
                }
            },
        };
        Ok(SecretLocation::SecretsManager {
            secret_id: secret_id.trim().to_owned(),
            refresh,
        })
    }
}

/// How long a secret read from AWS Secrets Manager is used before it is read again: the longest
/// a rotation or a new tenant waits to take effect.
pub const DEFAULT_SECRETS_REFRESH: Duration = Duration::from_secs(300);

/// Where a function reads its tenant secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretLocation {
    /// `CRM_WEBHOOK_SECRET[_<mid>]` / `ACTIVITY_CALLBACK_SECRET[_<mid>]`, read at start-up.
    Environment,
    /// One AWS Secrets Manager secret (name or ARN) holding the JSON document of
    /// [`TenantSecrets::from_json`], read again every `refresh`.
    SecretsManager { secret_id: String, refresh: Duration },
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
    /// `CRM_SECRETS_MANAGER_ID`: when set, the secrets come from there and the intake's
    /// (environment) secrets are not used.
    pub secret_location: SecretLocation,
    pub quarantine: QuarantineConfig,
}

impl CrmConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            table_name: env.required("CRM_TABLE_NAME")?,
            intake: env.crm_intake()?,
            secret_location: env.secret_location("CRM_SECRETS_MANAGER_ID")?,
            quarantine: env.quarantine()?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct ActivityConfig {
    pub table_name: String,
    pub nonces_table_name: String,
    pub default_mid: Option<String>,
    pub intake: ActivityIntake,
    /// `ACTIVITY_SECRETS_MANAGER_ID`, as for the CRM function.
    pub secret_location: SecretLocation,
    pub quarantine: QuarantineConfig,
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
            secret_location: env.secret_location("ACTIVITY_SECRETS_MANAGER_ID")?,
            quarantine: env.quarantine()?,
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
    fn a_secrets_manager_id_selects_secrets_manager_with_its_refresh_interval() {
        let base = [("CRM_TABLE_NAME", "c"), ("CRM_WEBHOOK_SECRET", "env-secret")];
        let crm = CrmConfig::from_env(&base.into_iter().collect()).unwrap();
        assert_eq!(crm.secret_location, SecretLocation::Environment);
        let with_id = |extra: &[(&'static str, &'static str)]| {
            let env: Env = base.iter().chain(extra).copied().collect();
            CrmConfig::from_env(&env)
        };
        let crm = with_id(&[("CRM_SECRETS_MANAGER_ID", " webhook/crm ")]).unwrap();
        assert_eq!(
            crm.secret_location,
            SecretLocation::SecretsManager {
                secret_id: "webhook/crm".into(),
                refresh: DEFAULT_SECRETS_REFRESH,
            }
        );
        let crm = with_id(&[("CRM_SECRETS_MANAGER_ID", "x"), ("SECRETS_REFRESH_SECONDS", "2")]).unwrap();
        assert!(
            matches!(crm.secret_location, SecretLocation::SecretsManager { refresh, .. } if refresh == Duration::from_secs(2))
        );
        for bad in ["0", "5m", "-1"] {
            assert!(matches!(
                with_id(&[("CRM_SECRETS_MANAGER_ID", "x"), ("SECRETS_REFRESH_SECONDS", bad)]),
                Err(ConfigError::Invalid {
                    name: "SECRETS_REFRESH_SECONDS",
                    ..
                })
            ));
        }
    }

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

    #[test]
    fn the_crm_signature_scheme_is_configuration_checked_at_start_up() {
        let base = [("CRM_TABLE_NAME", "c")];
        let env: Env = base.into_iter().collect();
        assert_eq!(
            CrmConfig::from_env(&env).unwrap().intake.scheme,
            SignatureScheme::default(),
            "SPEC 2.1: HMAC-SHA1, hex"
        );
        let env: Env = base
            .into_iter()
            .chain([
                ("CRM_SIGNATURE_ALGORITHM", "hmac-sha256"),
                ("CRM_SIGNATURE_ENCODING", "base64"),
            ])
            .collect();
        assert_eq!(
            CrmConfig::from_env(&env).unwrap().intake.scheme.to_string(),
            "hmac-sha256/base64"
        );
        for (name, value) in [("CRM_SIGNATURE_ALGORITHM", "md5"), ("CRM_SIGNATURE_ENCODING", "base32")] {
            let env: Env = base.into_iter().chain([(name, value)]).collect();
            assert!(
                matches!(CrmConfig::from_env(&env), Err(ConfigError::Invalid { name: n, .. }) if n == name),
                "{name}={value}"
            );
        }
    }

    #[test]
    fn the_quarantine_is_off_without_its_table_and_its_caps_are_checked() {
        let env = Env::default();
        assert_eq!(env.quarantine().unwrap(), QuarantineConfig::default());
        assert_eq!(QuarantineConfig::default().table_name, None);
        let env: Env = [
            ("REFUSED_DELIVERIES_TABLE_NAME", "refused_deliveries"),
            ("QUARANTINE_RETENTION_DAYS", "3"),
            ("QUARANTINE_MAX_PER_MINUTE", "5"),
            ("QUARANTINE_MAX_BODY_BYTES", "1000"),
            ("QUARANTINE_GLOBAL_MAX", "40"),
            ("QUARANTINE_GLOBAL_WINDOW_SECONDS", "60"),
        ]
        .into_iter()
        .collect();
        let config = env.quarantine().unwrap();
        assert_eq!(config.table_name.as_deref(), Some("refused_deliveries"));
        assert_eq!(
            (config.retention_days, config.max_per_minute, config.max_body_bytes),
            (3, 5, 1000)
        );
        assert_eq!((config.global_max, config.global_window_seconds), (40, 60));
        let defaults = QuarantineConfig::default();
        assert_eq!(
            (defaults.global_max, defaults.global_window_seconds),
            (1000, 3600),
            "1000 records an hour across every instance"
        );
        for (name, value) in [
            ("QUARANTINE_RETENTION_DAYS", "0"),
            ("QUARANTINE_MAX_PER_MINUTE", "-1"),
            ("QUARANTINE_MAX_BODY_BYTES", "1000000"),
            ("QUARANTINE_MAX_PER_MINUTE", "lots"),
            ("QUARANTINE_GLOBAL_MAX", "-1"),
            ("QUARANTINE_GLOBAL_MAX", "2000000"),
            ("QUARANTINE_GLOBAL_WINDOW_SECONDS", "59"),
            ("QUARANTINE_GLOBAL_WINDOW_SECONDS", "86401"),
        ] {
            let env: Env = [(name, value)].into_iter().collect();
            assert!(
                matches!(env.quarantine(), Err(ConfigError::Invalid { name: n, .. }) if n == name),
                "{name}={value}"
            );
        }
    }
}
