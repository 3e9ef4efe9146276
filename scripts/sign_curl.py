#!/usr/bin/env python3
"""Print a ready-to-paste signed curl for one payload, signed the way the vendors sign.

    sign_curl.py crm URL BODY_FILE [--secret S] [--header H]
    sign_curl.py activity URL BODY_FILE [--secret S]

crm: the body, compacted, with the hex HMAC-SHA1 of its exact bytes in the signature header.
activity: the body with a fresh nonce, the current timestamp and
sign = hex(sha1(nonce + secret + timestamp)). The defaults (secret, header) are the development
values of scripts/local.env; only the first of a comma-separated list of secrets signs.

Python's standard library only, so that `make run` prints its curls without compiling anything.
`make test` runs both curls against its stack (scripts/stack.sh), so they cannot drift from
what the functions verify.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import pathlib
import shlex
import time
import uuid

ROOT = pathlib.Path(__file__).resolve().parent.parent


def local_env() -> dict[str, str]:
    values = {}
    for line in (ROOT / "scripts" / "local.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def compact(body: str) -> str:
    return json.dumps(json.loads(body), ensure_ascii=False, separators=(",", ":"))


def main() -> None:
    defaults = local_env()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", choices=["crm", "activity"])
    parser.add_argument("url")
    parser.add_argument("body_file", type=pathlib.Path)
    parser.add_argument("--secret")
    parser.add_argument("--header", default=defaults["LOCAL_CRM_SIGNATURE_HEADER"])
    args = parser.parse_args()
    body = args.body_file.read_text(encoding="utf-8")
    if args.source == "crm":
        secret = (args.secret or defaults["LOCAL_CRM_WEBHOOK_SECRET"]).split(",")[0].strip()
        payload = compact(body)
        signature = hmac.new(secret.encode(), payload.encode(), hashlib.sha1).hexdigest()
        headers = ["-H", "Content-Type: application/json", "-H", f"{args.header}: {signature}"]
    else:
        secret = (args.secret or defaults["LOCAL_ACTIVITY_CALLBACK_SECRET"]).split(",")[0].strip()
        value = json.loads(body)
        value["nonce"] = str(uuid.uuid4())
        value["timestamp"] = int(time.time())
        value["sign"] = hashlib.sha1(f"{value['nonce']}{secret}{value['timestamp']}".encode()).hexdigest()
        payload = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        headers = ["-H", "Content-Type: application/json"]
    print(shlex.join(["curl", "-sS", "-X", "POST", args.url, *headers, "--data-binary", payload]))


if __name__ == "__main__":
    main()
