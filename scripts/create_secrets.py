#!/usr/bin/env python3
"""Create or update the two tenant-secret documents in a local AWS Secrets Manager (moto).

    create_secrets.py [--endpoint URL] [--region R]
        Writes one secret per source, named by CRM_SECRETS_MANAGER_ID and
        ACTIVITY_SECRETS_MANAGER_ID (defaults: webhook-ingest/crm-secrets,
        webhook-ingest/activity-secrets), from the same environment variables the
        functions accept: CRM_WEBHOOK_SECRET (the default list) and
        CRM_WEBHOOK_SECRET_<mid> (per tenant), likewise ACTIVITY_CALLBACK_SECRET[_<mid>].
        A tenant variable set but empty lists that tenant with an empty list (blocked:
        refused no_secret), as the functions read the variable. Idempotent: an existing
        secret gets a new version.

    create_secrets.py [--endpoint URL] set-tenant {crm,activity} MID LIST
        Gives one tenant its own list (comma-separated, newest first) in the current
        document, or removes its entry when LIST is empty: how a rotation or a new
        tenant is tried locally (the functions pick it up within SECRETS_REFRESH_SECONDS).

The document shape (docs/operations.md, "Secrets"):

    {"default": ["newest", "previous"], "tenants": {"124": ["own-secret"], "125": []}}

No secret value is ever printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import boto3

DEFAULT_ENDPOINT = "http://127.0.0.1:8000"
SOURCES = {
    "crm": ("CRM_SECRETS_MANAGER_ID", "webhook-ingest/crm-secrets", "CRM_WEBHOOK_SECRET"),
    "activity": ("ACTIVITY_SECRETS_MANAGER_ID", "webhook-ingest/activity-secrets", "ACTIVITY_CALLBACK_SECRET"),
}


def secret_list(text: str) -> list[str]:
    """A comma-separated list, as in the environment variables; blanks are dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def document_from_env(prefix: str, environ: dict[str, str]) -> dict:
    """The JSON document of one source from PREFIX and PREFIX_<mid> variables."""
    document: dict = {"tenants": {}}
    default = secret_list(environ.get(prefix, ""))
    if default:
        document["default"] = default
    for name, value in sorted(environ.items()):
        if name.startswith(prefix + "_") and len(name) > len(prefix) + 1:
            # An empty list blocks the tenant, as an empty variable does for the functions.
            document["tenants"][name[len(prefix) + 1 :]] = secret_list(value)
    return document


def client(endpoint: str, region: str):
    return boto3.client(
        "secretsmanager",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
    )


def put(sm, name: str, document: dict) -> None:
    text = json.dumps(document)
    try:
        sm.put_secret_value(SecretId=name, SecretString=text)
        action = "updated"
    except sm.exceptions.ResourceNotFoundException:
        sm.create_secret(Name=name, SecretString=text)
        action = "created"
    tenants = document.get("tenants", {})
    blocked = sum(1 for secrets in tenants.values() if not secrets)
    print(
        f"secret {name} {action} (default list: {'yes' if document.get('default') else 'no'}, "
        f"{len(tenants) - blocked} tenant lists, {blocked} tenants blocked)"
    )


def secret_name(source: str) -> str:
    variable, default, _ = SOURCES[source]
    return os.environ.get(variable) or default


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", default=os.environ.get("AWS_ENDPOINT_URL_SECRETS_MANAGER") or DEFAULT_ENDPOINT)
    parser.add_argument("--region", default=os.environ.get("AWS_REGION") or "us-east-1")
    commands = parser.add_subparsers(dest="command")
    set_tenant = commands.add_parser("set-tenant", help="give one tenant its own list (empty: remove it)")
    set_tenant.add_argument("source", choices=sorted(SOURCES))
    set_tenant.add_argument("mid")
    set_tenant.add_argument("secrets", help="comma-separated, newest first; empty removes the tenant's list")
    args = parser.parse_args()
    sm = client(args.endpoint, args.region)

    if args.command == "set-tenant":
        name = secret_name(args.source)
        document = json.loads(sm.get_secret_value(SecretId=name)["SecretString"])
        tenants = document.setdefault("tenants", {})
        secrets = secret_list(args.secrets)
        if secrets:
            tenants[args.mid] = secrets
        else:
            tenants.pop(args.mid, None)
        put(sm, name, document)
        return

    for source, (_, _, prefix) in SOURCES.items():
        put(sm, secret_name(source), document_from_env(prefix, dict(os.environ)))


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # a readable one-liner for the stack script's log
        print(f"create_secrets.py: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
