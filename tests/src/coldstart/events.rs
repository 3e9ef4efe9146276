//! Fresh, correctly signed API Gateway events, made from a fixture event, for a new tenant of
//! this run: a new entity for every invocation of the cold-start runs (so that each one writes to
//! DynamoDB: never a duplicate or a replayed nonce, which would end before the write), and the
//! CRM updates and duplicates of the per-event scenarios.

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

    /// A new entity of the tenant.
    pub fn next_event(&mut self) -> Result<Bytes, serde_json::Error> {
        let mut payload = self.payload.clone();
        match self.function {
            Function::CrmWebhook => payload["extra_data"]["entity_id"] = unique_nonce().into(),
            Function::ActivityCallback => payload["attributes"]["event_id"] = unique_nonce().into(),
        }
        self.signed_event(payload)
    }

    /// A new CRM entity of the tenant: its `entity_id` and the event that creates it.
    pub fn crm_new_entity(&mut self) -> Result<(String, Bytes), serde_json::Error> {
        let entity_id = unique_nonce();
        let mut payload = self.payload.clone();
        payload["extra_data"]["entity_id"] = entity_id.clone().into();
        Ok((entity_id, self.signed_event(payload)?))
    }

    /// Update `n` (1, 2, …) of a CRM entity: `n` seconds after the creating event, a new `name`.
    /// The same `n` gives the same body, i.e. a duplicate delivery.
    pub fn crm_update(&mut self, entity_id: &str, n: i64) -> Result<Bytes, serde_json::Error> {
        let mut payload = self.payload.clone();
        let created = payload["create_time"].as_i64().unwrap_or(1_677_481_345);
        payload["event_type"] = "object_update".into();
        payload["action_keyword"] = "object_update".into();
        payload["create_time"] = (created + n).into();
        let extra = &mut payload["extra_data"];
        extra["entity_id"] = entity_id.into();
        extra["mapping_data"] = serde_json::json!({ "name": [format!("name {}", n - 1), format!("name {n}")] });
        extra["mapping_data_text"] = serde_json::json!({ "name": format!("name {n}") });
        self.signed_event(payload)
    }

    /// `payload` for this source's tenant, signed, in the fixture's API Gateway event.
    fn signed_event(&self, mut payload: Value) -> Result<Bytes, serde_json::Error> {
        let mut event = self.template.clone();
        let body = match self.function {
            Function::CrmWebhook => {
                payload["mid"] = self.mid.clone().into();
                let body = payload.to_string();
                event["headers"]["x-signature"] = sign_crm(body.as_bytes(), dev_crm_secret()).into();
                body
            }
            Function::ActivityCallback => {
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

    /// The CRM answer's `status` (`accepted`, `duplicate`) when the function answered 200.
    pub fn crm_status(posted: &[u8]) -> Option<String> {
        let answer = serde_json::from_slice::<Value>(posted).ok()?;
        if answer["statusCode"] != 200 {
            return None;
        }
        let body: Value = serde_json::from_str(answer["body"].as_str()?).ok()?;
        body["status"].as_str().map(str::to_owned)
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
                Function::CrmWebhook => Self::crm_status(posted).is_some_and(|status| status == "accepted"),
                Function::ActivityCallback => body == "success",
            }
    }
}
