#!/usr/bin/env python3
"""The Python peer of `make bench`: what a user would write instead of this project.

A plain Lambda handler for the CRM webhook: verify the HMAC-SHA1 signature, parse, normalize
the object into the item of contract 3.1, and write it with one unconditional PutItem. It is not
order-safe (a late older event overwrites a newer one, concurrent writers lose updates) and does
not recognise duplicates: it is the baseline the storage path is measured against, not a
design to copy.

Run as a Lambda process (`python3 crm_peer.py`): it speaks the Lambda Runtime API at
AWS_LAMBDA_RUNTIME_API, like the `bootstrap` of the Rust functions, so the cold-start harness
runs both alike. `python3 crm_peer.py --pure BODY_FILE` times the pure path instead
(verify + parse + normalize + item) and prints the median in microseconds as JSON;
`--storage ENDPOINT FIXTURE OUTPUT` measures the hot-key and growth cases.
"""

import base64
import datetime
import hashlib
import hmac
import http.client
import json
import os
import sys
import time

SIGNATURE_HEADER = os.environ.get("CRM_SIGNATURE_HEADER", "X-Signature").lower()
SECRETS = [s.strip().encode() for s in os.environ.get("CRM_WEBHOOK_SECRET", "").split(",") if s.strip()]
TABLE = os.environ.get("CRM_TABLE_NAME", "crm_entities")
BEIJING = datetime.timezone(datetime.timedelta(hours=8))
WELL_KNOWN = ("owner", "life_status", "lead_pool", "leads_status", "business_type",
              "business_type_name", "lead_omni_user_uuid")


def verified(body, signature):
    signature = (signature or "").lower()
    if signature.startswith("sha1="):
        signature = signature[5:]
    return any(hmac.compare_digest(hmac.new(s, body, hashlib.sha1).hexdigest(), signature) for s in SECRETS)


def attr(value):
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, (int, float)):
        return {"N": str(value)}
    if isinstance(value, list):
        return {"L": [attr(v) for v in value]}
    if isinstance(value, dict):
        return {"M": {k: attr(v) for k, v in value.items()}}
    return {"S": str(value)}


def item_of(body):
    """The item of contract 3.1 for one event, as DynamoDB attribute values."""
    event = json.loads(body)
    extra = event["extra_data"]
    fields, labels = {}, {}
    texts = extra.get("mapping_data_text") or {}
    for name, values in (extra.get("mapping_data") or {}).items():
        name = name.strip()
        after = values[-1] if isinstance(values, list) and values else values
        if after in (None, ""):
            continue
        fields[name] = attr(after)
        label = texts.get(name)
        if isinstance(label, list):
            label = label[-1] if label else None
        if isinstance(label, str) and label:
            labels[name] = {"S": label}
    item = {
        "mid": {"S": str(event["mid"])},
        "entity_id": {"S": str(extra["entity_id"])},
        "fields": {"M": fields},
        "field_labels": {"M": labels},
        "last_event_type": {"S": event["event_type"]},
        "last_action_keyword": {"S": event.get("action_keyword") or event["event_type"]},
        "event_time": {"N": str(int(event["create_time"]))},
        "event_count": {"N": "1"},
        "updated_at": {"S": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")},
        "last_raw": {"S": body.decode()},
    }
    for name in ("object_name", "object_id") + WELL_KNOWN:
        value = extra.get(name)
        if value not in (None, ""):
            item[name] = {"S": str(value)}
    created = extra.get("created_timestamp")
    if created:
        local = datetime.datetime.strptime(created, "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
        item["created_at"] = {"S": local.isoformat()}
    return item


def answer(status, body):
    return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}


def handle(event, dynamodb):
    if event.get("requestContext", {}).get("http", {}).get("method", "POST") != "POST":
        return answer(405, {"error": {"code": "method_not_allowed"}})
    body = event.get("body") or ""
    body = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    if not verified(body, headers.get(SIGNATURE_HEADER)):
        return answer(401, {"error": {"code": "invalid_signature"}})
    try:
        item = item_of(body)
    except (ValueError, KeyError, TypeError):
        return answer(400, {"error": {"code": "invalid_field"}})
    try:
        dynamodb.put_item(TableName=TABLE, Item=item)
    except Exception:
        return answer(503, {"error": {"code": "storage_unavailable"}})
    return answer(200, {"status": "accepted", "mid": item["mid"]["S"], "entity_id": item["entity_id"]["S"]})


def serve():
    import boto3
    from botocore.config import Config

    dynamodb = boto3.client(
        "dynamodb",
        config=Config(connect_timeout=0.5, read_timeout=1.5, retries={"max_attempts": 3}),
    )
    host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
    api = http.client.HTTPConnection(host, int(port))
    base = "/2018-06-01/runtime/invocation"
    while True:
        api.request("GET", f"{base}/next")
        response = api.getresponse()
        request_id = response.getheader("Lambda-Runtime-Aws-Request-Id")
        event = json.loads(response.read())
        result = json.dumps(handle(event, dynamodb)).encode()
        api.request("POST", f"{base}/{request_id}/response", body=result,
                    headers={"Content-Type": "application/json"})
        api.getresponse().read()


def pure(body_file, seconds=3.0):
    """Median time of verify + parse + normalize + item for one body, in microseconds."""
    global SECRETS
    body = open(body_file, "rb").read()
    SECRETS = [b"dev-crm-secret"]
    signature = hmac.new(SECRETS[0], body, hashlib.sha1).hexdigest()
    batch, samples, deadline = 200, [], time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < 20:
        started = time.perf_counter()
        for _ in range(batch):
            assert verified(body, signature)
            item_of(body)
        samples.append((time.perf_counter() - started) / batch * 1e6)
    samples.sort()
    print(json.dumps({"median_us": samples[len(samples) // 2], "samples": len(samples), "batch": batch}))


def storage(endpoint, fixture, output, events=300, senders=32, fields=40):
    """The peer's hot-key and growth figures, as the test kit's storage-bench measures this project:
    `events` distinct updates of one lead from `senders` threads (one PutItem each), then one
    lead growing to 1,000 events. Calls and units come from the local DynamoDB's accounting."""
    import threading
    import urllib.request

    import boto3

    def wrapper(path, method="GET"):
        request = urllib.request.Request(endpoint + path, method=method, data=b"" if method == "POST" else None)
        return json.loads(urllib.request.urlopen(request).read())

    def total(report, key):
        return sum(report[key].values())

    base = json.load(open(fixture))

    def body(mid, i):
        event = json.loads(json.dumps(base))
        event["mid"], event["create_time"] = mid, 1_677_500_000 + i
        event["extra_data"]["entity_id"] = "hot-lead"
        field = f"field_{i % fields}"
        event["extra_data"]["mapping_data"] = {field: [None, f"value {i}"]}
        event["extra_data"]["mapping_data_text"] = {field: [None, f"label {i}"]}
        return json.dumps(event).encode()

    def client():
        return boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                            aws_access_key_id="x", aws_secret_access_key="x")

    mid = f"peer-hotkey-{time.time_ns()}"
    queue = list(range(events))
    lock = threading.Lock()

    def sender():
        db = client()
        while True:
            with lock:
                if not queue:
                    return
                i = queue.pop(0)
            db.put_item(TableName=TABLE, Item=item_of(body(mid, i)))

    wrapper("/_bench/reset", "POST")
    started = time.perf_counter()
    threads = [threading.Thread(target=sender) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    counted = wrapper("/_bench/calls")
    stored = client().get_item(TableName=TABLE, ConsistentRead=True,
                               Key={"mid": {"S": mid}, "entity_id": {"S": "hot-lead"}})["Item"]
    held = stored["fields"]["M"]
    lost = sum(1 for k in range(fields)
               if held.get(f"field_{k}", {}).get("S") != f"value {max(i for i in range(events) if i % fields == k)}")
    hot_key = {
        "events": events, "senders": senders, "deliveries": events, "answered_503": 0, "share_503": 0.0,
        "calls_per_event": total(counted, "calls") / events,
        "conflicts_per_event": counted["condition_failures"] / events,
        "write_units_per_event": total(counted, "write_units") / events,
        "read_units_per_event": total(counted, "read_units") / events,
        "fields_not_newest": lost, "event_count": int(stored["event_count"]["N"]),
        "event_count_exact": int(stored["event_count"]["N"]) == events,
        "seconds": seconds, "counted": counted,
    }
    mid, db, growth = f"peer-growth-{time.time_ns()}", client(), []
    for i in range(1000):
        last = i + 1 in (1, 10, 100, 1000)
        if last:
            wrapper("/_bench/reset", "POST")
        db.put_item(TableName=TABLE, Item=item_of(body(mid, i)))
        if last:
            counted = wrapper("/_bench/calls")
            growth.append({"events": i + 1, "item_bytes": counted["last_put_bytes"].get(TABLE, 0),
                           "calls": total(counted, "calls"), "write_units": total(counted, "write_units"),
                           "read_units": total(counted, "read_units")})
    json.dump({"hot_key": hot_key, "growth": growth}, open(output, "w"), indent=2)
    print(json.dumps({"hot_key": {k: v for k, v in hot_key.items() if k != "counted"}, "growth": growth}))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--pure":
        pure(sys.argv[2])
    elif len(sys.argv) == 5 and sys.argv[1] == "--storage":
        storage(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        serve()
