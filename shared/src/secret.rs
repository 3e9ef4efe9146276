//! Shared secrets, per tenant, with rotation. Secrets never show in `Debug` output or errors.

use std::collections::HashMap;
use std::fmt;

/// One shared secret. Its bytes are only reachable through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<[u8]>);

impl Secret {
    pub fn new(value: impl AsRef<[u8]>) -> Self {
        Self(value.as_ref().into())
    }

    /// The raw bytes, for the signature code only.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// The secrets valid for one tenant at once: during a rotation the old and the new one.
#[derive(Clone, PartialEq, Eq)]
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

    /// The first (newest, by convention) secret: the one the signing tools use.
    pub fn primary(&self) -> &Secret {
        &self.0[0]
    }
}

impl fmt::Debug for SecretSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretSet({} redacted)", self.0.len())
    }
}

/// A default secret set overridden per tenant, as read from `PREFIX` and `PREFIX_<mid>` variables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantSecrets {
    default: Option<SecretSet>,
    per_tenant: HashMap<String, SecretSet>,
}

impl TenantSecrets {
    /// Collects `prefix` (the default) and `prefix_<mid>` (per tenant) from variables.
    /// A variable that holds no secret (empty, only commas) is ignored, so it cannot
    /// accidentally open a tenant up: a tenant with no secret is always refused.
    pub fn from_vars<K, V>(prefix: &str, vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut secrets = Self::default();
        let tenant_prefix = format!("{prefix}_");
        for (key, value) in vars {
            let (key, value) = (key.as_ref(), value.as_ref());
            let Some(set) = SecretSet::parse(value) else { continue };
            if key == prefix {
                secrets.default = Some(set);
            } else if let Some(mid) = key.strip_prefix(&tenant_prefix) {
                if !mid.is_empty() {
                    secrets.per_tenant.insert(mid.to_owned(), set);
                }
            }
        }
        secrets
    }

    /// The secrets for `mid`: its own override if there is one, else the default.
    pub fn for_tenant(&self, mid: &str) -> Option<&SecretSet> {
        self.per_tenant.get(mid).or(self.default.as_ref())
    }

    pub fn is_empty(&self) -> bool {
        self.default.is_none() && self.per_tenant.is_empty()
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
        assert!(shown.contains("redacted"));
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
    fn empty_values_configure_nothing() {
        let secrets = TenantSecrets::from_vars("S", [("S", " , ,"), ("S_124", ""), ("S_", "x")]);
        assert!(secrets.is_empty());
        assert!(secrets.for_tenant("124").is_none());
    }

    #[test]
    fn only_per_tenant_secrets_leave_other_tenants_refused() {
        let secrets = TenantSecrets::from_vars("S", [("S_124", "a")]);
        assert!(secrets.for_tenant("124").is_some());
        assert!(secrets.for_tenant("941").is_none());
    }
}
