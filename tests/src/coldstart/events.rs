//! A fresh, correctly signed API Gateway event for every invocation, made from a fixture event:
//! each one is a new entity for a new tenant of this run, so every invocation writes to DynamoDB
//! (never a duplicate or a replayed nonce, which would end before the write).

use bytes::Bytes;
use serde_json::Value;

use super::environment::Function;
use crate::local::{dev_activity_secret, dev_crm_secret};
use crate::signing::{now_unix, sign_activity_into, sign_crm, unique_nonce};

pub struct EventSource {
    function: Function,
    template: Value,
    payload: Value,
    mid: String,
}

impl EventSource {
    /// `fixture_event`: the JSON text of a signed event from `fixtures/events/`.
    pub fn new(function: Function, fixture_event: &str) -> Result<Self, serde_json::Error> {
        let template: Value = serde_json::from_str(fixture_event)?;
        let payload = serde_json::from_str(template["body"].as_str().unwrap_or("null"))?;
        Ok(Self {
            function,
            template,
            payload,
            mid: format!("bench-{}", unique_nonce()),
        })
    }

    /// The tenant every event of this source is for.
    pub fn mid(&self) -> &str {
        &self.mid
    }

    pub fn next_event(&mut self) -> Result<Bytes, serde_json::Error> {
        let mut event = self.template.clone();
        let mut payload = self.payload.clone();
        let body = match self.function {
            Function::CrmWebhook => {
                payload["mid"] = self.mid.clone().into();
                payload["extra_data"]["entity_id"] = unique_nonce().into();
                let body = payload.to_string();
                event["headers"]["x-signature"] = sign_crm(body.as_bytes(), dev_crm_secret()).into();
                body
            }
            Function::ActivityCallback => {
                payload["attributes"]["event_id"] = unique_nonce().into();
                let path = format!("/activity/{}", self.mid);
                event["pathParameters"]["mid"] = self.mid.clone().into();
                event["rawPath"] = path.clone().into();
                event["requestContext"]["http"]["path"] = path.into();
                sign_activity_into(&mut payload, &unique_nonce(), now_unix(), dev_activity_secret());
                payload.to_string()
            }
        };
        event["headers"]["content-length"] = body.len().to_string().into();
        event["body"] = body.into();
        Ok(Bytes::from(serde_json::to_vec(&event)?))
    }

    /// Whether the function's answer (the API Gateway response it posted) is the success this
    /// event must get: a write that was not done would make the measurement meaningless.
    pub fn is_success(&self, posted: &[u8]) -> bool {
        let Ok(answer) = serde_json::from_slice::<Value>(posted) else {
            return false;
        };
        let body = answer["body"].as_str().unwrap_or("");
        answer["statusCode"] == 200
            && match self.function {
                Function::CrmWebhook => {
                    serde_json::from_str::<Value>(body).is_ok_and(|body| body["status"] == "accepted")
                }
                Function::ActivityCallback => body == "success",
            }
    }
}
