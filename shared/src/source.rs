//! The two webhooks the service receives: which one a delivery came to.

use serde::{Deserialize, Serialize};

/// Which webhook a delivery came to: the `source` dimension of every metric, and the partition of
/// a refused delivery's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The JINGdigital CRM webhook (`POST /crm/webhook`).
    Crm,
    /// The Tencent Lexiang activity callback (`POST /activity/{mid}`).
    Activity,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Crm => "crm",
            Self::Activity => "activity",
        }
    }
}

impl std::str::FromStr for Source {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "crm" => Ok(Self::Crm),
            "activity" => Ok(Self::Activity),
            other => Err(format!("`{other}` is not crm or activity")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_reads_back_from_its_name_and_nothing_else_does() {
        for source in [Source::Crm, Source::Activity] {
            assert_eq!(source.as_str().parse::<Source>(), Ok(source));
        }
        assert!("CRM".parse::<Source>().is_err());
    }
}
