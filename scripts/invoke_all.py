#!/usr/bin/env python3
"""Invoke every event of fixtures/events/ through a `sam local start-lambda` endpoint.

    invoke_all.py --endpoint URL --answers DIR [--ready-timeout S]
    invoke_all.py --endpoint URL --event FILE [--ready-timeout S]

Each event goes to its function (crm_* to CrmWebhookFunction, activity_* to
ActivityCallbackFunction) through the Lambda Invoke API, as AWS would call it; the function's
answer (a Lambda proxy response) is written to DIR/<event>.json. scripts/check_invoke_answers.py
checks the answers. With --event, only that event is invoked and its answer printed
(scripts/invoke.sh's fallback).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import boto3
import botocore.config
import botocore.exceptions

ROOT = pathlib.Path(__file__).resolve().parent.parent


def function_of(name: str) -> str:
    if name.startswith("crm_"):
        return "CrmWebhookFunction"
    if name.startswith("activity_"):
        return "ActivityCallbackFunction"
    raise SystemExit(f"cannot tell the function of {name} (crm_* or activity_*)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--answers", type=pathlib.Path)
    target.add_argument("--event", type=pathlib.Path)
    parser.add_argument("--function", help="the logical id for --event (default: from its name)")
    parser.add_argument("--ready-timeout", type=float, default=300)
    args = parser.parse_args()
    client = boto3.client(
        "lambda",
        endpoint_url=args.endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=botocore.config.Config(read_timeout=120, connect_timeout=5, retries={"max_attempts": 0}),
    )

    def invoke(name: str, event: bytes, function: str | None = None) -> bytes:
        response = client.invoke(FunctionName=function or function_of(name), Payload=event)
        payload = response["Payload"].read()
        if response.get("FunctionError"):
            raise SystemExit(f"{name}: function error {response['FunctionError']}: {payload[:500]!r}")
        return payload

    # start-lambda answers once its warm containers are up; wait for its API first.
    deadline = time.monotonic() + args.ready_timeout
    while True:
        try:
            client.list_functions()
            break
        except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ClientError):
            # start-lambda does not implement ListFunctions: any HTTP answer means it is up.
            if isinstance(sys.exc_info()[1], botocore.exceptions.ClientError):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"no Lambda API on {args.endpoint} after {args.ready_timeout} s")
            time.sleep(1)

    # The API answers once the warm containers are started; their emulators (under qemu on an
    # x86_64 host) need up to a second or two more before they listen.
    time.sleep(5)
    if args.event:
        sys.stdout.write(invoke(args.event.stem, args.event.read_bytes(), args.function).decode())
        return 0
    args.answers.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    events = sorted((ROOT / "fixtures" / "events").glob("*.json"))
    for path in events:
        answer = invoke(path.stem, path.read_bytes())
        (args.answers / path.name).write_bytes(answer)
        print(f"{path.stem}: {answer[:160].decode(errors='replace')}", flush=True)
    print(f"{len(events)} invokes in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
