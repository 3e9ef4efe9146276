//! An activity callback body to a verified, normalized event, in the order of checks of SPEC 2.3
//! that follows method and size: a JSON object → tenant (`missing_mid`) → `nonce`/`timestamp`/
//! `sign` present → sign → freshness → the other fields. The replay check needs the store and
//! comes after. The handler, the benchmark and the fuzzer all go through here.

use crate::activity::verify::{self, SignedFields};
use crate::activity::ActivityEvent;
use crate::clock::Clock;
use crate::envelope::Envelope;
use crate::error::{ApiError, AuthError, RequestError};
use crate::secret::TenantSecrets;
use crate::timefmt::SourceOffset;

/// `mid` is the tenant the request names (path, query or default), if any.
pub fn verified_event(
    body: &[u8],
    mid: Option<&str>,
    secrets: &TenantSecrets,
    clock: &dyn Clock,
    max_skew_seconds: u64,
    offset: SourceOffset,
) -> Result<ActivityEvent, ApiError> {
    let envelope = Envelope::parse(body)?;
    let mid = mid.ok_or(RequestError::MissingMid)?;
    let signed = SignedFields::extract(&envelope.object)?;
    let secrets = secrets
        .for_tenant(mid)
        .ok_or_else(|| AuthError::NoSecret(mid.to_owned()))?;
    verify::verify(&signed, secrets, clock, max_skew_seconds)?;
    Ok(ActivityEvent::from_envelope(
        envelope,
        mid,
        &signed.nonce,
        signed.timestamp,
        offset,
    )?)
}
