//! Configuration from the environment (contract 5), read once at start-up. Missing or malformed
//! variables stop start-up with a message naming the variable.

use std::collections::HashMap;
use std::time::Duration;

use thiserror::Error;

use crate::activity::verify::{Freshness, FreshnessCheck};
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

    /// What verifying and reading a Lexiang callback needs, freshness enforced: secrets, windows,
    /// offset (the function waives freshness only on the local stack: `ActivityConfig`).
    pub fn activity_intake(&self) -> Result<ActivityIntake, ConfigError> {
        let secrets = self.secrets("ACTIVITY_CALLBACK_SECRET");
        Ok(ActivityIntake::new(secrets, self.activity_freshness()?, self.offset()?))
    }

    /// The quarantine of refused deliveries (contract 2.4), shared by both functions.
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

    /// The activity callback's two freshness windows (contract 2.2): `ACTIVITY_MAX_AGE_SECONDS`
    /// (past, default 300, 1 s to a day) and `ACTIVITY_MAX_FUTURE_SECONDS` (future, default 30,
    /// 0 to 300). Neither has a value that turns the check off. The single window they replace,
    /// `ACTIVITY_MAX_SKEW_SECONDS`, stops start-up, so that nobody relies on its "0: off".
    pub fn activity_freshness(&self) -> Result<Freshness, ConfigError> {
        if self.get("ACTIVITY_MAX_SKEW_SECONDS").is_some() {
            return Err(ConfigError::Invalid {
                name: "ACTIVITY_MAX_SKEW_SECONDS",
                reason: "it is no longer read: set ACTIVITY_MAX_AGE_SECONDS (past) and \
                         ACTIVITY_MAX_FUTURE_SECONDS (future) instead"
                    .to_owned(),
            });
        }
        let defaults = Freshness::DEFAULT;
        Ok(Freshness {
            max_age_seconds: self.number("ACTIVITY_MAX_AGE_SECONDS", defaults.max_age_seconds, 1..=86_400)?,
            max_future_seconds: self.number("ACTIVITY_MAX_FUTURE_SECONDS", defaults.max_future_seconds, 0..=300)?,
        })
    }

    /// Whether freshness is checked: always, except on the local stack, whose fixtures carry
    /// fixed timestamps from 2023. [`LOCAL_STACK_SKIP_FRESHNESS`]`=1` waives it only together
    /// with a DynamoDB endpoint on this machine (loopback, or `host.docker.internal` for `sam
    /// local invoke`): a deployed function with it set does not start, so no configuration of a
    /// deployed stack turns freshness off.
    pub fn activity_freshness_check(&self) -> Result<FreshnessCheck, ConfigError> {
        let freshness = self.activity_freshness()?;
        match self.get(LOCAL_STACK_SKIP_FRESHNESS).map(str::trim) {
            None | Some("0") => Ok(FreshnessCheck::Enforced(freshness)),
            Some("1") => {
                let endpoint = self
                    .get("AWS_ENDPOINT_URL_DYNAMODB")
                    .or_else(|| self.get("AWS_ENDPOINT_URL"));
                if endpoint.is_some_and(is_local_endpoint) {
                    Ok(FreshnessCheck::Waived)
                } else {
                    Err(ConfigError::Invalid {
                        name: LOCAL_STACK_SKIP_FRESHNESS,
                        reason: "only the local stack may skip freshness: it needs \
                                 AWS_ENDPOINT_URL_DYNAMODB on this machine (127.0.0.1, localhost, \
                                 [::1] or host.docker.internal)"
                            .to_owned(),
                    })
                }
            }
            Some(other) => Err(ConfigError::Invalid {
                name: LOCAL_STACK_SKIP_FRESHNESS,
                reason: format!("`{other}` is not 0 or 1"),
            }),
        }
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

    /// What every function reads besides its source's own settings; `secrets_id_variable` names
    /// the function's Secrets Manager secret.
    pub fn function(&self, secrets_id_variable: &'static str) -> Result<FunctionConfig, ConfigError> {
        Ok(FunctionConfig {
            secret_location: self.secret_location(secrets_id_variable)?,
            quarantine: self.quarantine()?,
            aws: self.aws(),
        })
    }

    /// Where the AWS clients connect, as the SDK's environment providers read it: the region
    /// (`AWS_REGION`, then `AWS_DEFAULT_REGION`) and a local or otherwise non-default endpoint
    /// per service (the service's variable first, then `AWS_ENDPOINT_URL`; contract 5).
    pub fn aws(&self) -> AwsConfig {
        let trimmed = |value: &str| value.trim().to_owned();
        let endpoint = |service: &str| self.get(service).or_else(|| self.get("AWS_ENDPOINT_URL")).map(trimmed);
        AwsConfig {
            region: self
                .get("AWS_REGION")
                .or_else(|| self.get("AWS_DEFAULT_REGION"))
                .map(trimmed),
            dynamodb_endpoint: endpoint("AWS_ENDPOINT_URL_DYNAMODB"),
            secrets_manager_endpoint: endpoint("AWS_ENDPOINT_URL_SECRETS_MANAGER"),
        }
    }

    /// Logs and metrics: `RUST_LOG` (the log filter, default `info`) and `METRICS_NAMESPACE`.
    /// Read apart from the rest, so that a function can log why the rest does not start it.
    pub fn telemetry(&self) -> Telemetry {
        Telemetry {
            log_filter: self.get("RUST_LOG").map(str::to_owned),
            metrics_namespace: self.get("METRICS_NAMESPACE").map(|name| name.trim().to_owned()),
        }
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

/// The local stack's switch that waives activity freshness (`make run`, `make invoke`): see
/// [`Env::activity_freshness_check`].
pub const LOCAL_STACK_SKIP_FRESHNESS: &str = "LOCAL_STACK_SKIP_FRESHNESS";

/// Whether `url` names a server on the developer's machine: loopback, or the name Docker gives
/// the host inside a container (it resolves nowhere else, in particular not in AWS Lambda).
fn is_local_endpoint(url: &str) -> bool {
    let rest = url.trim().split_once("://").map_or(url.trim(), |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    let host = host.to_ascii_lowercase();
    matches!(host.as_str(), "localhost" | "::1" | "host.docker.internal")
        || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
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

/// Where the AWS clients connect: [`Env::aws`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsConfig {
    /// `None`: the SDK finds none, and a call fails (Lambda always sets `AWS_REGION`).
    pub region: Option<String>,
    /// `None`: the service's endpoint in the region.
    pub dynamodb_endpoint: Option<String>,
    pub secrets_manager_endpoint: Option<String>,
}

/// What every function reads besides its source's own settings: [`Env::function`].
#[derive(Debug, Clone)]
pub struct FunctionConfig {
    /// `CRM_SECRETS_MANAGER_ID` / `ACTIVITY_SECRETS_MANAGER_ID`: when set, the secrets come from
    /// there and the intake's (environment) secrets are not used.
    pub secret_location: SecretLocation,
    pub quarantine: QuarantineConfig,
    pub aws: AwsConfig,
}

#[derive(Debug, Clone)]
pub struct CrmConfig {
    pub table_name: String,
    pub intake: CrmIntake,
    pub function: FunctionConfig,
}

impl CrmConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            table_name: env.required("CRM_TABLE_NAME")?,
            intake: env.crm_intake()?,
            function: env.function("CRM_SECRETS_MANAGER_ID")?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct ActivityConfig {
    pub table_name: String,
    pub nonces_table_name: String,
    pub default_mid: Option<String>,
    pub intake: ActivityIntake,
    pub function: FunctionConfig,
}

impl ActivityConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mut intake = env.activity_intake()?;
        intake.freshness = env.activity_freshness_check()?;
        Ok(Self {
            table_name: env.required("ACTIVITY_TABLE_NAME")?,
            nonces_table_name: env.required("ACTIVITY_NONCES_TABLE_NAME")?,
            default_mid: env.get("ACTIVITY_DEFAULT_MID").map(|mid| mid.trim().to_owned()),
            intake,
            function: env.function("ACTIVITY_SECRETS_MANAGER_ID")?,
        })
    }

    /// How long a nonce must be remembered: past the freshness windows nobody can replay it,
    /// since a stale timestamp is refused anyway. With freshness waived (local stack only), a
    /// week.
    pub fn nonce_retention_seconds(&self) -> u64 {
        match self.intake.freshness {
            FreshnessCheck::Enforced(freshness) => freshness.nonce_retention_seconds(),
            FreshnessCheck::Waived => 7 * 24 * 3600,
        }
    }
}

/// What the logs and metrics of a function read: [`Env::telemetry`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Telemetry {
    /// A `tracing` filter directive (`RUST_LOG`); `None`: `info`.
    pub log_filter: Option<String>,
    /// The CloudWatch namespace of the metrics; `None`: the default.
    pub metrics_namespace: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secrets_manager_id_selects_secrets_manager_with_its_refresh_interval() {
        let base = [("CRM_TABLE_NAME", "c"), ("CRM_WEBHOOK_SECRET", "env-secret")];
        let crm = CrmConfig::from_env(&base.into_iter().collect()).unwrap();
        assert_eq!(crm.function.secret_location, SecretLocation::Environment);
        let with_id = |extra: &[(&'static str, &'static str)]| {
            let env: Env = base.iter().chain(extra).copied().collect();
            CrmConfig::from_env(&env)
        };
        let crm = with_id(&[("CRM_SECRETS_MANAGER_ID", " webhook/crm ")]).unwrap();
        assert_eq!(
            crm.function.secret_location,
            SecretLocation::SecretsManager {
                secret_id: "webhook/crm".into(),
                refresh: DEFAULT_SECRETS_REFRESH,
            }
        );
        let crm = with_id(&[("CRM_SECRETS_MANAGER_ID", "x"), ("SECRETS_REFRESH_SECONDS", "2")]).unwrap();
        assert!(
            matches!(crm.function.secret_location, SecretLocation::SecretsManager { refresh, .. } if refresh == Duration::from_secs(2))
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
        assert_eq!(activity.intake.freshness, FreshnessCheck::Enforced(Freshness::DEFAULT));
        assert_eq!(
            (
                Freshness::DEFAULT.max_age_seconds,
                Freshness::DEFAULT.max_future_seconds
            ),
            (300, 30)
        );
        assert_eq!(activity.default_mid, None);
    }

    #[test]
    fn malformed_values_are_named() {
        let env: Env = [
            ("ACTIVITY_TABLE_NAME", "a"),
            ("ACTIVITY_NONCES_TABLE_NAME", "n"),
            ("ACTIVITY_MAX_AGE_SECONDS", "5m"),
        ]
        .into_iter()
        .collect();
        assert!(matches!(
            ActivityConfig::from_env(&env),
            Err(ConfigError::Invalid {
                name: "ACTIVITY_MAX_AGE_SECONDS",
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

    fn activity(extra: &[(&'static str, &'static str)]) -> Result<ActivityConfig, ConfigError> {
        let base = [("ACTIVITY_TABLE_NAME", "a"), ("ACTIVITY_NONCES_TABLE_NAME", "n")];
        ActivityConfig::from_env(&base.iter().chain(extra).copied().collect())
    }

    #[test]
    fn two_freshness_windows_and_no_value_turns_them_off() {
        let config = activity(&[
            ("ACTIVITY_MAX_AGE_SECONDS", "600"),
            ("ACTIVITY_MAX_FUTURE_SECONDS", "5"),
        ])
        .unwrap();
        let expected = Freshness {
            max_age_seconds: 600,
            max_future_seconds: 5,
        };
        assert_eq!(config.intake.freshness, FreshnessCheck::Enforced(expected));
        assert_eq!(config.nonce_retention_seconds(), 600 + 5 + 60);
        for (name, value) in [
            ("ACTIVITY_MAX_AGE_SECONDS", "0"),
            ("ACTIVITY_MAX_AGE_SECONDS", "86401"),
            ("ACTIVITY_MAX_FUTURE_SECONDS", "301"),
            ("ACTIVITY_MAX_FUTURE_SECONDS", "-1"),
            ("ACTIVITY_MAX_SKEW_SECONDS", "0"),
            ("ACTIVITY_MAX_SKEW_SECONDS", "300"),
        ] {
            assert!(
                matches!(activity(&[(name, value)]), Err(ConfigError::Invalid { name: n, .. }) if n == name),
                "{name}={value}"
            );
        }
        assert_eq!(
            activity(&[("ACTIVITY_MAX_FUTURE_SECONDS", "0")])
                .unwrap()
                .intake
                .freshness,
            FreshnessCheck::Enforced(Freshness {
                max_age_seconds: 300,
                max_future_seconds: 0
            }),
            "0 s ahead is a window, not an off switch"
        );
    }

    #[test]
    fn only_the_local_stack_skips_freshness() {
        for endpoint in [
            "http://127.0.0.1:8000",
            "http://localhost:8000/",
            "http://[::1]:8000",
            "http://host.docker.internal:17000",
            "http://127.0.0.2",
        ] {
            let config = activity(&[
                (LOCAL_STACK_SKIP_FRESHNESS, "1"),
                ("AWS_ENDPOINT_URL_DYNAMODB", endpoint),
            ]);
            assert_eq!(config.unwrap().intake.freshness, FreshnessCheck::Waived, "{endpoint}");
        }
        let generic = activity(&[
            (LOCAL_STACK_SKIP_FRESHNESS, "1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
        ]);
        assert_eq!(generic.unwrap().intake.freshness, FreshnessCheck::Waived);
        for endpoint in [
            None,
            Some("https://dynamodb.us-east-1.amazonaws.com"),
            Some("http://localhost.attacker.example"),
            Some("http://127.0.0.1.nip.io"),
            Some("http://user@10.0.0.1:8000"),
        ] {
            let mut extra = vec![(LOCAL_STACK_SKIP_FRESHNESS, "1")];
            extra.extend(endpoint.map(|url| ("AWS_ENDPOINT_URL_DYNAMODB", url)));
            assert!(
                matches!(
                    activity(&extra),
                    Err(ConfigError::Invalid {
                        name: LOCAL_STACK_SKIP_FRESHNESS,
                        ..
                    })
                ),
                "{endpoint:?}: a deployed function does not start"
            );
        }
        let local = ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000");
        assert_eq!(
            activity(&[(LOCAL_STACK_SKIP_FRESHNESS, "0"), local])
                .unwrap()
                .intake
                .freshness,
            FreshnessCheck::Enforced(Freshness::DEFAULT)
        );
        assert!(activity(&[(LOCAL_STACK_SKIP_FRESHNESS, "yes"), local]).is_err());
        assert_eq!(
            activity(&[(LOCAL_STACK_SKIP_FRESHNESS, "1"), local])
                .unwrap()
                .nonce_retention_seconds(),
            7 * 24 * 3600
        );
    }

    #[test]
    fn the_crm_signature_scheme_is_configuration_checked_at_start_up() {
        let base = [("CRM_TABLE_NAME", "c")];
        let env: Env = base.into_iter().collect();
        assert_eq!(
            CrmConfig::from_env(&env).unwrap().intake.scheme,
            SignatureScheme::default(),
            "contract 2.1: HMAC-SHA1, hex"
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

    #[test]
    fn the_aws_region_and_each_services_endpoint_variable_win_over_the_general_ones() {
        let aws = |pairs: &[(&'static str, &'static str)]| pairs.iter().copied().collect::<Env>().aws();
        let general = [
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
        ];
        assert_eq!(
            aws(&general),
            AwsConfig {
                region: Some("us-east-1".into()),
                dynamodb_endpoint: Some("http://127.0.0.1:1".into()),
                secrets_manager_endpoint: Some("http://127.0.0.1:1".into()),
            }
        );
        let specific = aws(&[
            general[0],
            general[1],
            ("AWS_REGION", " eu-west-1 "),
            ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:2"),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:3"),
        ]);
        let found = [
            specific.region,
            specific.dynamodb_endpoint,
            specific.secrets_manager_endpoint,
        ];
        assert_eq!(
            found.map(Option::unwrap),
            ["eu-west-1", "http://127.0.0.1:2", "http://127.0.0.1:3"]
        );
        assert_eq!(aws(&[("AWS_REGION", " ")]), AwsConfig::default(), "blank is unset");
    }

    #[test]
    fn telemetry_is_read_with_the_rest_of_the_configuration() {
        assert_eq!(Env::default().telemetry(), Telemetry::default());
        let env: Env = [("RUST_LOG", "debug"), ("METRICS_NAMESPACE", " Webhooks/Staging ")]
            .into_iter()
            .collect();
        assert_eq!(
            env.telemetry(),
            Telemetry {
                log_filter: Some("debug".into()),
                metrics_namespace: Some("Webhooks/Staging".into()),
            }
        );
    }
}
