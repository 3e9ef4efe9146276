//! Shared secrets, per tenant, with rotation. Secrets live in `secrecy` boxes: never in `Debug`
//! output or errors, zeroed when dropped, and without equality (nothing can compare a secret
//! with `==` and leak its bytes through timing).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretSlice};
use serde_json::Value;

use crate::error::SecretsError;

/// One shared secret. Its bytes are only reachable through [`Secret::expose`].
#[derive(Clone, Debug)]
pub struct Secret(SecretSlice<u8>);

impl Secret {
    pub fn new(value: impl AsRef<[u8]>) -> Self {
        Self(SecretSlice::from(value.as_ref().to_vec()))
    }

    /// The raw bytes, for the signature code only.
    pub fn expose(&self) -> &[u8] {
        self.0.expose_secret()
    }
}

/// The secrets valid for one tenant at once: during a rotation the old and the new one. Never
/// empty.
#[derive(Clone, Debug)]
pub struct SecretSet(Vec<Secret>);

impl SecretSet {
    /// Parses a comma-separated list; blanks around and between commas are ignored.
    /// Returns `None` when the list holds no secret at all.
    pub fn parse(list: &str) -> Option<Self> {
        let secrets: Vec<Secret> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Secret::new)
            .collect();
        (!secrets.is_empty()).then_some(Self(secrets))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Secret> {
        self.0.iter()
    }

    /// How many secrets the set holds (at least one).
    pub fn count(&self) -> usize {
        self.0.len()
    }

    /// The first (newest, by convention) secret: the one the signing tools use.
    pub fn primary(&self) -> &Secret {
        &self.0[0]
    }
}

/// A default secret set overridden per tenant, as read from `PREFIX` and `PREFIX_<mid>` variables
/// or from the JSON document of AWS Secrets Manager.
///
/// Tenancy is strict where the configuration says so: without a default, only the tenants listed
/// are accepted; a tenant listed with no secret at all (an empty variable, an empty list) is
/// refused (`no_secret`), whatever the default. So a tenant can be blocked by emptying its list.
#[derive(Clone, Debug, Default)]
pub struct TenantSecrets {
    default: Option<SecretSet>,
    /// The tenants listed on their own: their secrets, or `None` when listed with none (blocked).
    per_tenant: HashMap<String, Option<SecretSet>>,
}

impl TenantSecrets {
    /// Collects `prefix` (the default) and `prefix_<mid>` (per tenant) from variables. A default
    /// that holds no secret (empty, only commas) is no default; a tenant variable that holds none
    /// blocks that tenant. Neither can open a tenant up.
    pub fn from_vars<K, V>(prefix: &str, vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut secrets = Self::default();
        let tenant_prefix = format!("{prefix}_");
        for (key, value) in vars {
            let (key, value) = (key.as_ref(), value.as_ref());
            if key == prefix {
                secrets.default = SecretSet::parse(value);
            } else if let Some(mid) = key.strip_prefix(&tenant_prefix) {
                if !mid.is_empty() {
                    secrets.per_tenant.insert(mid.to_owned(), SecretSet::parse(value));
                }
            }
        }
        secrets
    }

    /// The secrets for `mid`: its own list if it is listed (none if that list is empty), else
    /// the default.
    pub fn for_tenant(&self, mid: &str) -> Option<&SecretSet> {
        match self.per_tenant.get(mid) {
            Some(own) => own.as_ref(),
            None => self.default.as_ref(),
        }
    }

    /// No secret anywhere: every request is refused.
    pub fn is_empty(&self) -> bool {
        self.default.is_none() && self.per_tenant.values().all(Option::is_none)
    }

    /// Reads the JSON document one AWS Secrets Manager secret holds per source:
    ///
    /// ```json
    /// {"default": ["newest", "previous"], "tenants": {"124": ["own-secret"], "125": []}}
    /// ```
    ///
    /// Both keys are optional. A list is an array of strings or one comma-separated string (as
    /// in the environment variables); the first entry is the newest. An empty default is no
    /// default (strict tenancy); an empty tenant list blocks that tenant (here `125`). Errors
    /// name the offending key, never a value: the document is a secret, and serde's own messages
    /// would quote it.
    pub fn from_json(text: &str) -> Result<Self, SecretShapeError> {
        let document: Value =
            serde_json::from_str(text).map_err(|_| SecretShapeError("the value is not JSON".to_owned()))?;
        let Value::Object(document) = document else {
            return Err(SecretShapeError("the value is not a JSON object".to_owned()));
        };
        let mut secrets = Self::default();
        for (key, value) in &document {
            match key.as_str() {
                "default" => secrets.default = set_of(value, "default")?,
                "tenants" => {
                    let Value::Object(tenants) = value else {
                        return Err(SecretShapeError("`tenants` is not an object".to_owned()));
                    };
                    for (mid, list) in tenants {
                        let mid = mid.trim();
                        if mid.is_empty() {
                            return Err(SecretShapeError("`tenants` has an empty tenant id".to_owned()));
                        }
                        let set = set_of(list, &format!("tenants.{mid}"))?;
                        if secrets.per_tenant.insert(mid.to_owned(), set).is_some() {
                            return Err(SecretShapeError(format!("`tenants` lists `{mid}` twice")));
                        }
                    }
                }
                other => return Err(SecretShapeError(format!("unknown key `{other}`"))),
            }
        }
        Ok(secrets)
    }

    /// The default list, if there is one.
    pub fn default_set(&self) -> Option<&SecretSet> {
        self.default.as_ref()
    }

    /// The tenants listed on their own, sorted: their list, or `None` for a blocked tenant.
    pub fn tenants(&self) -> Vec<(&str, Option<&SecretSet>)> {
        let mut tenants: Vec<_> = self
            .per_tenant
            .iter()
            .map(|(mid, set)| (mid.as_str(), set.as_ref()))
            .collect();
        tenants.sort_unstable_by_key(|(mid, _)| *mid);
        tenants
    }

    /// How many tenants have a list of their own with secrets in it (logged on refresh).
    pub fn tenant_count(&self) -> usize {
        self.per_tenant.values().filter(|set| set.is_some()).count()
    }

    /// How many tenants are listed with no secret, and so refused (logged on refresh).
    pub fn blocked_count(&self) -> usize {
        self.per_tenant.values().filter(|set| set.is_none()).count()
    }
}

fn set_of(value: &Value, key: &str) -> Result<Option<SecretSet>, SecretShapeError> {
    match value {
        Value::String(list) => Ok(SecretSet::parse(list)),
        Value::Array(items) => {
            let mut secrets = Vec::with_capacity(items.len());
            for item in items {
                let Value::String(secret) = item else {
                    return Err(SecretShapeError(format!("`{key}` holds a value that is not a string")));
                };
                let secret = secret.trim();
                if !secret.is_empty() {
                    secrets.push(Secret::new(secret));
                }
            }
            Ok((!secrets.is_empty()).then_some(SecretSet(secrets)))
        }
        _ => Err(SecretShapeError(format!(
            "`{key}` is neither a list of strings nor a string"
        ))),
    }
}

/// A secret document of the wrong shape; the message names keys, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the secret document is malformed: {0}")]
pub struct SecretShapeError(pub String);

/// Where a function reads its tenant secrets for a request: fixed at start-up (environment
/// variables) or refreshed from AWS Secrets Manager (`secrets_manager`, behind a feature). The
/// answer is shared, so a request costs no copy of the secrets.
pub trait SecretSource: Send + Sync {
    fn current(&self) -> impl Future<Output = Result<Arc<TenantSecrets>, SecretsError>> + Send;
}

/// Secrets read once, at start-up (the environment variables).
#[derive(Debug, Clone, Default)]
pub struct FixedSecrets(pub Arc<TenantSecrets>);

impl SecretSource for FixedSecrets {
    async fn current(&self) -> Result<Arc<TenantSecrets>, SecretsError> {
        Ok(Arc::clone(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_a_secret() {
        let secrets = TenantSecrets::from_vars(
            "CRM_WEBHOOK_SECRET",
            [
                ("CRM_WEBHOOK_SECRET", "hunter2,opensesame"),
                ("CRM_WEBHOOK_SECRET_124", "tenant-only"),
            ],
        );
        let shown = format!("{secrets:?} {:?}", secrets.for_tenant("124"));
        for secret in ["hunter2", "opensesame", "tenant-only"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("REDACTED"), "{shown}");
        let one = Secret::new("hunter2");
        assert_eq!(format!("{one:?}"), "Secret(SecretBox<[u8]>([REDACTED]))");
    }

    #[test]
    fn tenant_override_replaces_the_default() {
        let secrets = TenantSecrets::from_vars("S", [("S", "default-a"), ("S_124", "own-a, own-b"), ("OTHER", "x")]);
        let own: Vec<&[u8]> = secrets.for_tenant("124").unwrap().iter().map(Secret::expose).collect();
        assert_eq!(own, [b"own-a".as_slice(), b"own-b".as_slice()]);
        let default: Vec<&[u8]> = secrets.for_tenant("941").unwrap().iter().map(Secret::expose).collect();
        assert_eq!(default, [b"default-a".as_slice()]);
    }

    #[test]
    fn the_json_document_has_a_default_and_per_tenant_lists() {
        let secrets = TenantSecrets::from_json(
            r#"{"default": ["new-default", "old-default"], "tenants": {"124": ["own"], "900": "a, b", "901": []}}"#,
        )
        .unwrap();
        let listed = |mid: &str| -> Vec<Vec<u8>> {
            secrets
                .for_tenant(mid)
                .unwrap()
                .iter()
                .map(|s| s.expose().to_vec())
                .collect()
        };
        assert_eq!(listed("124"), [b"own".to_vec()]);
        assert_eq!(listed("900"), [b"a".to_vec(), b"b".to_vec()]);
        // An empty list blocks the tenant: it does not fall back to the default.
        assert!(secrets.for_tenant("901").is_none());
        assert_eq!(listed("941"), [b"new-default".to_vec(), b"old-default".to_vec()]);
        assert_eq!((secrets.tenant_count(), secrets.blocked_count()), (2, 1));
        let only_tenants = TenantSecrets::from_json(r#"{"tenants": {"124": ["own"]}}"#).unwrap();
        assert!(only_tenants.for_tenant("941").is_none());
        assert!(TenantSecrets::from_json("{}").unwrap().is_empty());
    }

    #[test]
    fn a_malformed_document_is_refused_without_quoting_it() {
        for document in [
            "hunter2",
            r#"["hunter2"]"#,
            r#"{"default": 7, "x": "hunter2"}"#,
            r#"{"default": ["hunter2", 7]}"#,
            r#"{"tenants": ["hunter2"]}"#,
            r#"{"tenants": {" ": ["hunter2"]}}"#,
            r#"{"defaults": ["hunter2"]}"#,
        ] {
            let error = TenantSecrets::from_json(document).unwrap_err();
            assert!(!error.to_string().contains("hunter2"), "{error}");
        }
        let error = TenantSecrets::from_json(r#"{"tenants": {"124": {"k": "hunter2"}}}"#).unwrap_err();
        assert!(error.to_string().contains("tenants.124"), "{error}");
    }

    #[test]
    fn empty_values_open_nothing() {
        let secrets = TenantSecrets::from_vars("S", [("S", " , ,"), ("S_124", ""), ("S_", "x")]);
        assert!(secrets.is_empty());
        assert!(secrets.for_tenant("124").is_none());
        assert!(secrets.default_set().is_none());
        assert_eq!((secrets.tenant_count(), secrets.blocked_count()), (0, 1));
    }

    #[test]
    fn an_empty_tenant_variable_blocks_the_tenant_despite_a_default() {
        let secrets = TenantSecrets::from_vars("S", [("S", "default-a"), ("S_124", " , "), ("S_125", "own")]);
        assert!(secrets.for_tenant("124").is_none(), "blocked");
        assert_eq!(secrets.for_tenant("125").unwrap().count(), 1);
        assert_eq!(secrets.for_tenant("941").unwrap().primary().expose(), b"default-a");
        assert!(!secrets.is_empty());
        let listed: Vec<(&str, Option<usize>)> = secrets
            .tenants()
            .into_iter()
            .map(|(mid, set)| (mid, set.map(SecretSet::count)))
            .collect();
        assert_eq!(listed, [("124", None), ("125", Some(1))]);
    }

    #[test]
    fn strict_tenancy_without_a_default_accepts_only_the_tenants_listed() {
        for document in [
            r#"{"tenants": {"124": ["own"], "125": []}}"#,
            r#"{"default": [], "tenants": {"124": "own", "125": " , "}}"#,
            r#"{"default": "", "tenants": {"124": ["own", " "], "125": [""]}}"#,
        ] {
            let secrets = TenantSecrets::from_json(document).unwrap();
            assert!(secrets.default_set().is_none(), "{document}");
            assert_eq!(
                secrets.for_tenant("124").unwrap().primary().expose(),
                b"own",
                "{document}"
            );
            assert_eq!(secrets.for_tenant("124").unwrap().count(), 1, "{document}");
            assert!(secrets.for_tenant("125").is_none(), "{document}: listed empty");
            assert!(secrets.for_tenant("941").is_none(), "{document}: not listed");
            assert_eq!((secrets.tenant_count(), secrets.blocked_count()), (1, 1), "{document}");
        }
        // Only blocked tenants: nobody is accepted.
        assert!(TenantSecrets::from_json(r#"{"tenants": {"125": []}}"#)
            .unwrap()
            .is_empty());
        // Two spellings of one tenant are a mistake, not a silent choice between two lists.
        let error = TenantSecrets::from_json(r#"{"tenants": {"124": ["a"], " 124": []}}"#).unwrap_err();
        assert!(error.to_string().contains("twice"), "{error}");
    }

    #[test]
    fn only_per_tenant_secrets_leave_other_tenants_refused() {
        let secrets = TenantSecrets::from_vars("S", [("S_124", "a")]);
        assert!(secrets.for_tenant("124").is_some());
        assert!(secrets.for_tenant("941").is_none());
    }
}
