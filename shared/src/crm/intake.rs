//! A CRM request body to a verified, normalized event, in the order of checks of SPEC 2.3 that
//! follows method and size: a JSON object → `mid` (it picks the secret) → signature → the other
//! fields. The handler, the benchmark and the fuzzer all go through here.

use crate::crm::{tenant_of, verify, CrmEvent};
use crate::envelope::Envelope;
use crate::error::{ApiError, AuthError};
use crate::secret::TenantSecrets;
use crate::timefmt::SourceOffset;

/// `signature` is the value of the header `signature_header` (named in errors), if sent.
pub fn verified_event(
    body: &[u8],
    signature_header: &str,
    signature: Option<&str>,
    secrets: &TenantSecrets,
    offset: SourceOffset,
) -> Result<CrmEvent, ApiError> {
    let envelope = Envelope::parse(body)?;
    let mid = tenant_of(&envelope.object)?;
    let secrets = secrets.for_tenant(&mid).ok_or(AuthError::NoSecret(mid))?;
    verify::verify(body, signature_header, signature, secrets)?;
    Ok(CrmEvent::from_envelope(envelope, offset)?)
}
