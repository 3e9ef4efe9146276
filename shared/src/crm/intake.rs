//! The CRM source's intake: one value, built once from configuration (as svix's `Webhook` is),
//! that turns a request body and its signature header into a verified, normalized event, in the
//! order of checks of contract 2.3 that follows method and size: a JSON object → `mid` (it picks the
//! secret) → signature → the other fields. The request pipeline, the benchmark, the fuzzer and
//! the tests all go through it.

use crate::crm::verify::SignatureScheme;
use crate::crm::{tenant_of, CrmEvent};
use crate::envelope::Envelope;
use crate::error::{ApiError, AuthError};
use crate::secret::TenantSecrets;
use crate::timefmt::SourceOffset;

/// What verifying and reading a CRM webhook needs. `Debug` shows no secret.
#[derive(Debug, Clone)]
pub struct CrmIntake {
    /// The header that carries the signature (contract 2.1: configuration, not code).
    pub signature_header: String,
    /// How the signature is computed and written (contract 2.1's HMAC-SHA1/hex by default).
    pub scheme: SignatureScheme,
    pub secrets: TenantSecrets,
    /// The offset of the vendor's zone-less times.
    pub offset: SourceOffset,
}

impl CrmIntake {
    /// `signature` is the value of the header [`Self::signature_header`], if sent.
    pub fn verified_event(&self, body: &[u8], signature: Option<&str>) -> Result<CrmEvent, ApiError> {
        self.verified_event_with(&self.secrets, &Envelope::parse(body)?, signature)
    }

    /// As [`Self::verified_event`], for a body the request path parsed (and keeps, to quarantine
    /// the delivery if it is refused), with the tenant secrets of the moment (refreshed from AWS
    /// Secrets Manager) instead of those read at start-up.
    pub fn verified_event_with(
        &self,
        secrets: &TenantSecrets,
        envelope: &Envelope<'_>,
        signature: Option<&str>,
    ) -> Result<CrmEvent, ApiError> {
        let mid = tenant_of(&envelope.object)?;
        self.verify(secrets, &mid, envelope, signature)
    }

    /// The checks after the tenant, on a body parsed once by the caller: the signature, then the
    /// other fields. `mid` is the envelope's tenant ([`tenant_of`]), read to pick the secret.
    pub fn verify(
        &self,
        secrets: &TenantSecrets,
        mid: &str,
        envelope: &Envelope<'_>,
        signature: Option<&str>,
    ) -> Result<CrmEvent, ApiError> {
        let Some(tenant_secrets) = secrets.for_tenant(mid) else {
            return Err(AuthError::NoSecret(mid.to_owned()).into());
        };
        // The signature covers the exact bytes received, which the envelope keeps.
        self.scheme.verify(
            envelope.raw.as_bytes(),
            &self.signature_header,
            signature,
            tenant_secrets,
        )?;
        Ok(CrmEvent::from_tenant_envelope(mid.to_owned(), envelope, self.offset)?)
    }
}
