#!/usr/bin/env python3
"""Check the answers of scripts/local_invoke_check.sh against the local DynamoDB.

    check_invoke_answers.py --answers DIR --seed-again FILE --endpoint URL

DIR holds one `sam local invoke` answer (a Lambda proxy response) per event of
fixtures/events/, named like the event. Every event there is signed with the development
secrets and valid, so each must be answered 200: a CRM event `accepted` with its tenant and
entity id, whose item must then be in the CRM table; an activity callback `success`, whose
nonce record must then be in the nonce table (the callback's proof of being applied). The seed
event, invoked a second time (FILE), must be answered `duplicate`. Table names and
credentials come from scripts/local.env.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import urllib.parse

import boto3

ROOT = pathlib.Path(__file__).resolve().parent.parent
SEED = "crm_seed_124_object_create"


def local_env() -> dict[str, str]:
    values = {}
    for line in (ROOT / "scripts" / "local.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def answer(path: pathlib.Path) -> tuple[int, str]:
    response = json.loads(path.read_text())
    return response.get("statusCode"), response.get("body") or ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=pathlib.Path, required=True)
    parser.add_argument("--seed-again", type=pathlib.Path, required=True)
    parser.add_argument("--endpoint", required=True)
    args = parser.parse_args()
    env = local_env()
    dynamodb = boto3.client(
        "dynamodb",
        endpoint_url=args.endpoint,
        region_name=env["LOCAL_AWS_REGION"],
        aws_access_key_id=env["LOCAL_AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["LOCAL_AWS_SECRET_ACCESS_KEY"],
    )

    def has_item(table: str, key: dict[str, str]) -> bool:
        item = dynamodb.get_item(TableName=table, Key={k: {"S": v} for k, v in key.items()})
        return "Item" in item

    failures = []
    answers = sorted(args.answers.glob("*.json"))
    events = sorted((ROOT / "fixtures" / "events").glob("*.json"))
    if [a.name for a in answers] != [e.name for e in events]:
        failures.append(f"answers for {len(answers)} events, expected {len(events)}")
    for path in answers:
        name = path.stem
        try:
            status, body = answer(path)
        except (json.JSONDecodeError, AttributeError) as error:
            failures.append(f"{name}: not a Lambda proxy response ({error}): {path.read_text()[:200]!r}")
            continue
        if status != 200:
            failures.append(f"{name}: status {status}, body {body[:200]!r}")
            continue
        if name.startswith("crm_"):
            parsed = json.loads(body)
            if parsed.get("status") != "accepted":
                failures.append(f"{name}: answered {parsed}, expected accepted")
                continue
            key = {"mid": parsed["mid"], "entity_id": parsed["entity_id"]}
            if not has_item(env["LOCAL_CRM_TABLE_NAME"], key):
                failures.append(f"{name}: no item {key} in {env['LOCAL_CRM_TABLE_NAME']}")
            elif name == SEED:
                print(f"seed item {key} is in {env['LOCAL_CRM_TABLE_NAME']}")
        else:
            if body != "success":
                failures.append(f"{name}: answered {body[:200]!r}, expected success")
                continue
            event = json.loads((ROOT / "fixtures" / "events" / path.name).read_text())
            mid = urllib.parse.unquote(event["rawPath"].rstrip("/").rsplit("/", 1)[-1])
            key = {"mid": mid, "nonce": json.loads(event["body"])["nonce"]}
            if not has_item(env["LOCAL_ACTIVITY_NONCES_TABLE_NAME"], key):
                failures.append(f"{name}: no nonce record {key} in {env['LOCAL_ACTIVITY_NONCES_TABLE_NAME']}")
    status, body = answer(args.seed_again)
    if status != 200 or json.loads(body).get("status") != "duplicate":
        failures.append(f"seed again: status {status}, body {body[:200]!r}, expected duplicate")

    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    print(f"{len(answers)} answers checked, seed redelivery answered duplicate: "
          f"{'all as expected' if not failures else f'{len(failures)} failures'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
