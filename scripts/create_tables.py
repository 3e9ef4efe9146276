#!/usr/bin/env python3
"""Create the service's DynamoDB tables on a local endpoint, or check template.yaml.

    create_tables.py [--endpoint URL] [--region R] [--timeout S]
        Creates the four tables (see TABLES) on a DynamoDB-compatible endpoint
        (moto, DynamoDB Local). Idempotent: an existing table is left as it is,
        but its key schema and TTL are verified. Enables TTL where the design has
        one and waits until every table is ACTIVE. Table names come from the same
        environment variables the functions read (defaults: crm_entities,
        activities, activity_nonces, refused_deliveries).

    create_tables.py --check-template template.yaml
        Parses the SAM template (a YAML loader that tolerates !Ref, !Sub, !GetAtt)
        and asserts that its tables have exactly the key schemas, TTL attributes,
        billing mode, PITR, SSE and streams listed in TABLES below, and that each
        function gets its tables' names in the right environment variables. Needs
        only PyYAML, no endpoint and no AWS account.

TABLES is the one place, on the local side, where the table layout is written down;
template.yaml is the other, and --check-template (run by `make validate`) keeps the
two in sync.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

# function → (variable naming its secret, logical id of its AWS::SecretsManager::Secret).
FUNCTION_SECRETS = {
    "CrmWebhookFunction": ("CRM_SECRETS_MANAGER_ID", "CrmWebhookSecrets"),
    "ActivityCallbackFunction": ("ACTIVITY_SECRETS_MANAGER_ID", "ActivityCallbackSecrets"),
}

# logical id in template.yaml, env var, local default name, hash key, range key,
# TTL attribute (or None), stream (or None), function that owns the table.
TABLES = [
    {
        "logical_id": "CrmEntitiesTable",
        "env": "CRM_TABLE_NAME",
        "default": "crm_entities",
        "hash": "mid",
        "range": "entity_id",
        "ttl": None,
        "stream": "NEW_AND_OLD_IMAGES",
        "function": "CrmWebhookFunction",
    },
    {
        "logical_id": "ActivitiesTable",
        "env": "ACTIVITY_TABLE_NAME",
        "default": "activities",
        "hash": "mid",
        "range": "entity_id",
        "ttl": None,
        "stream": "NEW_AND_OLD_IMAGES",
        "function": "ActivityCallbackFunction",
    },
    {
        "logical_id": "ActivityNoncesTable",
        "env": "ACTIVITY_NONCES_TABLE_NAME",
        "default": "activity_nonces",
        "hash": "mid",
        "range": "nonce",
        "ttl": "expires_at",
        "stream": None,
        "function": "ActivityCallbackFunction",
    },
    {
        # contract 2.4: refused deliveries, put by both functions, read by webhookctl.
        "logical_id": "RefusedDeliveriesTable",
        "env": "REFUSED_DELIVERIES_TABLE_NAME",
        "default": "refused_deliveries",
        "hash": "source",
        "range": "delivery_id",
        "ttl": "expires_at",
        "stream": None,
        "function": ["CrmWebhookFunction", "ActivityCallbackFunction"],
    },
]

# The only DynamoDB actions the functions need (TransactWriteItems is authorized per item
# action: the activity function's one transaction needs PutItem; GetItem confirms a duplicate).
ALLOWED_ACTIONS = {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:ConditionCheckItem"}

# The one UpdateItem the functions make: the quarantine's global cap counters, which live in
# the refused-deliveries table under their own partition key; the grant is limited to it.
CAP_COUNTER_TABLE = "RefusedDeliveriesTable"
CAP_COUNTER_CONDITION = {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["#cap"]}}

DEFAULT_ENDPOINT = "http://127.0.0.1:8000"


def owners(spec: dict) -> list[str]:
    """The functions that use a table (one name, or a list for a shared table)."""
    function = spec["function"]
    return [function] if isinstance(function, str) else list(function)


def table_name(spec: dict) -> str:
    return os.environ.get(spec["env"]) or spec["default"]


# --------------------------------------------------------------------------- create


def create_tables(endpoint: str, region: str, timeout: float) -> None:
    import boto3  # only needed here; --check-template works without it
    from botocore.config import Config

    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        config=Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3}),
    )
    existing = set()
    for page in client.get_paginator("list_tables").paginate():
        existing.update(page.get("TableNames", []))

    for spec in TABLES:
        name = table_name(spec)
        if name in existing:
            print(f"table {name}: exists, left as it is")
            continue
        kwargs = {
            "TableName": name,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [
                {"AttributeName": spec["hash"], "AttributeType": "S"},
                {"AttributeName": spec["range"], "AttributeType": "S"},
            ],
            "KeySchema": [
                {"AttributeName": spec["hash"], "KeyType": "HASH"},
                {"AttributeName": spec["range"], "KeyType": "RANGE"},
            ],
        }
        if spec["stream"]:
            kwargs["StreamSpecification"] = {
                "StreamEnabled": True,
                "StreamViewType": spec["stream"],
            }
        client.create_table(**kwargs)
        print(f"table {name}: created ({spec['hash']} HASH, {spec['range']} RANGE)")

    deadline = time.monotonic() + timeout
    for spec in TABLES:
        name = table_name(spec)
        while True:
            status = client.describe_table(TableName=name)["Table"]["TableStatus"]
            if status == "ACTIVE":
                break
            if time.monotonic() > deadline:
                sys.exit(f"table {name}: still {status} after {timeout:.0f} s")
            time.sleep(0.2)

    for spec in TABLES:
        if not spec["ttl"]:
            continue
        name = table_name(spec)
        ttl = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
            if ttl.get("AttributeName") != spec["ttl"]:
                sys.exit(
                    f"table {name}: TTL is on {ttl.get('AttributeName')!r}, expected {spec['ttl']!r}"
                )
            continue
        client.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": spec["ttl"]},
        )
        print(f"table {name}: TTL enabled on {spec['ttl']}")

    # Verify what is there now, including tables that already existed.
    problems = []
    for spec in TABLES:
        name = table_name(spec)
        table = client.describe_table(TableName=name)["Table"]
        keys = {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]}
        if keys != {spec["hash"]: "HASH", spec["range"]: "RANGE"}:
            problems.append(f"table {name}: key schema {keys}, expected {spec['hash']}/{spec['range']}")
        types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
        for key in (spec["hash"], spec["range"]):
            if types.get(key) != "S":
                problems.append(f"table {name}: key {key} has type {types.get(key)}, expected S")
    if problems:
        sys.exit("\n".join(problems))
    print("tables ready: " + ", ".join(table_name(s) for s in TABLES))


# --------------------------------------------------------------------------- check


def load_cfn_yaml(path: str) -> dict:
    """Load a CloudFormation/SAM YAML template; short-form tags become their long form."""
    import yaml

    class CfnLoader(yaml.SafeLoader):
        pass

    def construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        if tag_suffix == "Ref":
            return {"Ref": value}
        if tag_suffix == "Condition":
            return {"Condition": value}
        if tag_suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {"Fn::" + tag_suffix: value}

    CfnLoader.add_multi_constructor("!", construct_tag)
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=CfnLoader)  # noqa: S506 - SafeLoader subclass


def check_template(path: str) -> None:
    template = load_cfn_yaml(path)
    resources = template.get("Resources", {})
    problems: list[str] = []

    declared = {lid for lid, r in resources.items() if r.get("Type") == "AWS::DynamoDB::Table"}
    expected = {spec["logical_id"] for spec in TABLES}
    if declared != expected:
        problems.append(f"DynamoDB tables in template {sorted(declared)}, expected {sorted(expected)}")

    for spec in TABLES:
        lid = spec["logical_id"]
        resource = resources.get(lid)
        if resource is None:
            continue
        where = f"{path}: {lid}"
        props = resource.get("Properties", {})
        keys = [(k.get("AttributeName"), k.get("KeyType")) for k in props.get("KeySchema", [])]
        want_keys = [(spec["hash"], "HASH"), (spec["range"], "RANGE")]
        if keys != want_keys:
            problems.append(f"{where}: KeySchema {keys}, expected {want_keys}")
        attrs = {a.get("AttributeName"): a.get("AttributeType") for a in props.get("AttributeDefinitions", [])}
        want_attrs = {spec["hash"]: "S", spec["range"]: "S"}
        if attrs != want_attrs:
            problems.append(f"{where}: AttributeDefinitions {attrs}, expected {want_attrs}")
        ttl = props.get("TimeToLiveSpecification")
        if spec["ttl"]:
            if not ttl or ttl.get("AttributeName") != spec["ttl"] or ttl.get("Enabled") is not True:
                problems.append(f"{where}: TimeToLiveSpecification {ttl}, expected {spec['ttl']} enabled")
        elif ttl:
            problems.append(f"{where}: unexpected TimeToLiveSpecification {ttl}")
        stream = (props.get("StreamSpecification") or {}).get("StreamViewType")
        if stream != spec["stream"]:
            problems.append(f"{where}: StreamViewType {stream}, expected {spec['stream']}")
        if props.get("BillingMode") != "PAY_PER_REQUEST":
            problems.append(f"{where}: BillingMode {props.get('BillingMode')}, expected PAY_PER_REQUEST")
        pitr = (props.get("PointInTimeRecoverySpecification") or {}).get("PointInTimeRecoveryEnabled")
        if pitr is not True:
            problems.append(f"{where}: point-in-time recovery is not enabled")
        if (props.get("SSESpecification") or {}).get("SSEEnabled") is not True:
            problems.append(f"{where}: SSE is not enabled")
        for policy in ("DeletionPolicy", "UpdateReplacePolicy"):
            if resource.get(policy) != "Retain":
                problems.append(f"{where}: {policy} {resource.get(policy)}, expected Retain")

        # Each owning function gets the table's name in the right variable ...
        for owner in owners(spec):
            function = resources.get(owner, {})
            variables = (
                function.get("Properties", {}).get("Environment", {}).get("Variables", {})
            )
            if variables.get(spec["env"]) != {"Ref": lid}:
                problems.append(
                    f"{path}: {owner} {spec['env']} is {variables.get(spec['env'])}, expected !Ref {lid}"
                )

    # Each function reads its own tenant-secret document, named in its variable, and no other.
    for fn, (variable, secret) in FUNCTION_SECRETS.items():
        variables = resources.get(fn, {}).get("Properties", {}).get("Environment", {}).get("Variables", {})
        if variables.get(variable) != {"Ref": secret}:
            problems.append(f"{path}: {fn} {variable} is {variables.get(variable)}, expected !Ref {secret}")
        if resources.get(secret, {}).get("Type") != "AWS::SecretsManager::Secret":
            problems.append(f"{path}: {secret} is not an AWS::SecretsManager::Secret")

    # ... and its policy grants only the allowed actions on only its own tables (and secret).
    for fn in sorted({owner for spec in TABLES for owner in owners(spec)}):
        own = {spec["logical_id"] for spec in TABLES if fn in owners(spec)}
        granted: set[str] = set()
        for policy in resources.get(fn, {}).get("Properties", {}).get("Policies", []):
            if not isinstance(policy, dict) or "Statement" not in policy:
                problems.append(f"{path}: {fn}: only inline policy documents are expected, got {policy}")
                continue
            for stmt in policy["Statement"]:
                actions = stmt.get("Action", [])
                actions = [actions] if isinstance(actions, str) else actions
                if actions == ["secretsmanager:GetSecretValue"] and fn in FUNCTION_SECRETS:
                    own_secret = {"Ref": FUNCTION_SECRETS[fn][1]}
                    if stmt.get("Resource") not in (own_secret, [own_secret]):
                        problems.append(f"{path}: {fn}: GetSecretValue on {stmt.get('Resource')}, expected only {own_secret}")
                    continue
                if actions == ["dynamodb:UpdateItem"]:
                    counter = {"Fn::GetAtt": [CAP_COUNTER_TABLE, "Arn"]}
                    if stmt.get("Resource") not in (counter, [counter]) or stmt.get("Condition") != CAP_COUNTER_CONDITION:
                        problems.append(
                            f"{path}: {fn}: UpdateItem only on {CAP_COUNTER_TABLE} under {CAP_COUNTER_CONDITION}, "
                            f"got {stmt.get('Resource')} under {stmt.get('Condition')}"
                        )
                    continue
                extra = set(actions) - ALLOWED_ACTIONS
                if extra:
                    problems.append(f"{path}: {fn}: unexpected actions {sorted(extra)}")
                res = stmt.get("Resource", [])
                res = [res] if not isinstance(res, list) else res
                for r in res:
                    target = r.get("Fn::GetAtt", [None])[0] if isinstance(r, dict) else r
                    if target not in own:
                        problems.append(f"{path}: {fn}: policy resource {r} is not one of its tables {sorted(own)}")
                    else:
                        granted.add(target)
        if granted != own:
            problems.append(f"{path}: {fn}: policy covers {sorted(granted)}, expected {sorted(own)}")

    if problems:
        sys.exit("template check failed:\n  " + "\n  ".join(problems))
    print(f"{path}: tables, TTL attributes, environment and policies match scripts/create_tables.py")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--endpoint",
        default=os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or DEFAULT_ENDPOINT,
        help="DynamoDB endpoint (default: $AWS_ENDPOINT_URL_DYNAMODB or %(default)s)",
    )
    parser.add_argument(
        "--region",
        default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for ACTIVE")
    parser.add_argument(
        "--without-streams",
        action="store_true",
        help="no DynamoDB Streams (make bench): moto keeps every stream record for good and copies"
        " the whole table, records included, on each TransactWriteItems, so its latency and memory"
        " would grow with every write; the functions only write, so a stream changes nothing they do",
    )
    parser.add_argument(
        "--check-template",
        metavar="TEMPLATE",
        help="check TEMPLATE's tables against this script's instead of creating tables",
    )
    args = parser.parse_args()
    if args.check_template:
        check_template(args.check_template)
    else:
        if args.without_streams:
            for spec in TABLES:
                spec["stream"] = None
        create_tables(args.endpoint, args.region, args.timeout)


if __name__ == "__main__":
    main()
