//! The activity source's intake: one value, built once from configuration (as svix's `Webhook`
//! is), that turns a callback body and the tenant its request names into a verified, normalized
//! event, in the order of checks of contract 2.3 that follows method and size: a JSON object → tenant
//! (`missing_mid`) → `nonce`/`timestamp`/`sign` present → sign → freshness → the other fields. The
//! replay check needs the store and comes after, under the replay scope the sign gave. The
//! request pipeline, the benchmark, the fuzzer and the tests all go through it.

use std::sync::Arc;

use crate::activity::verify::{self, Freshness, FreshnessCheck, SignedFields};
use crate::activity::ActivityEvent;
use crate::clock::{Clock, SystemClock};
use crate::envelope::Envelope;
use crate::error::{ApiError, AuthError, RequestError};
use crate::secret::TenantSecrets;
use crate::timefmt::SourceOffset;

/// What verifying and reading a Lexiang callback needs. `Debug` shows no secret.
#[derive(Debug, Clone)]
pub struct ActivityIntake {
    pub secrets: TenantSecrets,
    /// The freshness windows, or `Waived` on the local stack only (see `ActivityConfig`).
    pub freshness: FreshnessCheck,
    /// The offset of the vendor's zone-less times.
    pub offset: SourceOffset,
    /// Injectable so that freshness is testable without waiting.
    pub clock: Arc<dyn Clock>,
}

impl ActivityIntake {
    /// An intake on the machine's clock.
    pub fn new(secrets: TenantSecrets, freshness: Freshness, offset: SourceOffset) -> Self {
        Self {
            secrets,
            freshness: FreshnessCheck::Enforced(freshness),
            offset,
            clock: Arc::new(SystemClock),
        }
    }

    /// `mid` is the tenant the request names (path, query or default), if any.
    pub fn verified_event(&self, body: &[u8], mid: Option<&str>) -> Result<ActivityEvent, ApiError> {
        self.verified_event_with(&self.secrets, &Envelope::parse(body)?, mid)
    }

    /// As [`Self::verified_event`], for a body the request path parsed (and keeps, to quarantine
    /// the delivery if it is refused), with the tenant secrets of the moment (refreshed from AWS
    /// Secrets Manager) instead of those read at start-up.
    pub fn verified_event_with(
        &self,
        secrets: &TenantSecrets,
        envelope: &Envelope<'_>,
        mid: Option<&str>,
    ) -> Result<ActivityEvent, ApiError> {
        let mid = mid.ok_or(RequestError::MissingMid)?;
        self.verify_checking(secrets, mid, envelope, self.freshness)
    }

    /// As [`Self::verified_event`] with the given secrets, and freshness checked as `freshness`
    /// says: an operator's replay of one quarantined record waives it for that record alone.
    pub fn verified_event_checking(
        &self,
        secrets: &TenantSecrets,
        body: &[u8],
        mid: Option<&str>,
        freshness: FreshnessCheck,
    ) -> Result<ActivityEvent, ApiError> {
        let envelope = Envelope::parse(body)?;
        let mid = mid.ok_or(RequestError::MissingMid)?;
        self.verify_checking(secrets, mid, &envelope, freshness)
    }

    /// The checks after the tenant, on a body parsed once by the caller: `nonce`/`timestamp`/
    /// `sign` present → sign → freshness → the other fields. `mid` is the tenant the request
    /// names.
    pub fn verify(
        &self,
        secrets: &TenantSecrets,
        mid: &str,
        envelope: &Envelope<'_>,
    ) -> Result<ActivityEvent, ApiError> {
        self.verify_checking(secrets, mid, envelope, self.freshness)
    }

    fn verify_checking(
        &self,
        secrets: &TenantSecrets,
        mid: &str,
        envelope: &Envelope<'_>,
        freshness: FreshnessCheck,
    ) -> Result<ActivityEvent, ApiError> {
        let signed = SignedFields::extract(&envelope.object)?;
        let secrets = secrets
            .for_tenant(mid)
            .ok_or_else(|| AuthError::NoSecret(mid.to_owned()))?;
        let scope = verify::verify(&signed, secrets, self.clock.as_ref(), freshness)?;
        let mut event = ActivityEvent::from_parsed(envelope, mid, &signed.nonce, signed.timestamp, self.offset)?;
        event.replay_scope = scope;
        Ok(event)
    }
}
