//! API Gateway HTTP API (payload 2.0) events, as API Gateway would hand them to the functions.

use serde_json::{json, Value};

fn base_event(route_key: &str, raw_path: &str, headers: Value, body: &str) -> Value {
    json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "a1b2c3d4e5",
            "domainName": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "a1b2c3d4e5",
            "http": {
                "method": "POST",
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.10",
                "userAgent": "Apache-HttpClient/4.5.13 (Java/1.8.0_292)"
            },
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "routeKey": route_key,
            "stage": "$default",
            "time": "21/Nov/2026:12:00:00 +0000",
            "timeEpoch": 1_795_262_400_000_u64
        },
        "body": body,
        "isBase64Encoded": false
    })
}

/// `POST /crm/webhook` with the signature in `header`.
pub fn crm_event(body: &str, signature: &str, header: &str) -> Value {
    let headers = json!({
        "content-type": "application/json",
        "content-length": body.len().to_string(),
        "host": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
        header.to_ascii_lowercase(): signature,
    });
    base_event("POST /crm/webhook", "/crm/webhook", headers, body)
}

/// `POST /activity/{mid}` for tenant `mid`.
pub fn activity_event(body: &str, mid: &str) -> Value {
    let headers = json!({
        "content-type": "application/json",
        "content-length": body.len().to_string(),
        "host": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
    });
    let mut event = base_event("POST /activity/{mid}", &format!("/activity/{mid}"), headers, body);
    event["pathParameters"] = json!({ "mid": mid });
    event
}
