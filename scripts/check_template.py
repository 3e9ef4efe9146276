#!/usr/bin/env python3
"""Check the trust and monitoring properties of template.yaml (run by `make validate`).

    check_template.py [TEMPLATE]          check TEMPLATE (default: template.yaml)
    check_template.py --self-test         break a copy of the template in each way the checks
                                          guard against, and fail unless every break is caught

What it asserts (each failure names the resource and what is wrong):

- Alarms: every AWS::CloudWatch::Alarm sets TreatMissingData explicitly, and its
  AlarmDescription says "Missing data: <that value>, <why>"; docs/monitoring.md has a section
  for it that names the same value. Every way the code drops an event it should keep has an
  alarm: each quarantine drop reason the Rust code can emit (read from `Skip::as_str` and the
  write-failure counter), nonce conflicts, stale timestamps, signature refusals, API 4xx, and
  API throttling (429).
- Metrics: every metric of the MetricsNamespace that an alarm or the dashboard names is one
  the Rust code emits (`counter!` / `histogram!` in shared/ and functions/), or one a metric
  filter of the template writes; its `source`, `outcome` and `reason` dimension values are
  ones the code writes. The dashboard shows what docs/monitoring.md promises.
- Least privilege: each function may PutItem in the refused-deliveries table only under its
  own partition keys (`dynamodb:LeadingKeys`): the source name the code writes there, and for
  the activity function the unmodelled actions' partition (`UNMODELLED_PARTITION`).
- Secrets: no secret carries a SecretString or GenerateSecretString (CloudFormation would
  rewrite the whole document, tenants included, whenever either changed); the NoEcho seed
  parameters reach nothing but the SecretSeed custom resource; each secret has a resource
  policy denying GetSecretValue to all but its function's role (and the listed readers), and
  follows KmsKeyArn. Every checkov skip in the template carries its reason. The seed function's inline code is run against moto's Secrets Manager:
  it seeds an empty secret once, never rewrites one that has a value (tenants kept through an
  Update with another seed), answers CloudFormation on every path, and never echoes a seed.
"""

from __future__ import annotations

import contextlib
import copy
import http.server
import io
import json
import os
import re
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from create_tables import load_cfn_yaml  # noqa: E402

RUST_DIRS = [ROOT / "shared" / "src", ROOT / "functions"]
MONITORING_DOC = ROOT / "docs" / "monitoring.md"

# The function that owns each source's partition of the refused-deliveries table.
FUNCTION_SOURCES = {"CrmWebhookFunction": "crm", "ActivityCallbackFunction": "activity"}
# Further partitions of that table a function writes, by the Rust constant that names them.
FUNCTION_PARTITION_CONSTANTS = {"ActivityCallbackFunction": ["UNMODELLED_PARTITION"]}
FUNCTION_SECRETS = {"CrmWebhookFunction": "CrmWebhookSecrets", "ActivityCallbackFunction": "ActivityCallbackSecrets"}
REFUSED_TABLE = "RefusedDeliveriesTable"
SEED_RESOURCE = "SecretSeed"
SEED_FUNCTION = "SecretSeedFunction"
DYNAMODB_TABLES = ["CrmEntitiesTable", "ActivitiesTable", "ActivityNoncesTable", REFUSED_TABLE]


# ------------------------------------------------------------------ what the code emits


def rust_sources() -> str:
    texts = []
    for base in RUST_DIRS:
        for path in sorted(base.rglob("*.rs")):
            if "target" not in path.parts:
                texts.append(path.read_text(encoding="utf-8"))
    return "\n".join(texts)


class Emitted:
    """Metric names and dimension values the Rust code writes, read from its source."""

    def __init__(self, source: str):
        self.metrics = set(re.findall(r'(?:counter|histogram|gauge)!\(\s*"([a-z_]+)"', source))
        self.sources = set(re.findall(r'Self::(?:Crm|Activity) => "([a-z_]+)"', source))
        codes = set(re.findall(r'=>\s*\{?\s*"([a-z_]+)"', _section(source, "pub fn code(&self)")))
        successes = _section(source, "impl Delivery {")
        self.outcomes = codes | set(re.findall(r'Self::[A-Za-z]+ => "([a-z_]+)"', successes))
        skips = set(re.findall(r'Self::[A-Za-z]+ => "([a-z_]+)"', _section(source, "impl Skip")))
        written = set(re.findall(r'"quarantine_dropped"[^;]*?"reason" => "([a-z_]+)"', source, re.S))
        self.drop_reasons = (skips - {"not_eligible"}) | written
        self.constants = dict(re.findall(r'pub const ([A-Z_]+): &str = "([^"]*)";', source))

    def problems(self) -> list[str]:
        found = []
        for what, values in (
            ("metric names", self.metrics),
            ("sources", self.sources),
            ("refusal codes", self.outcomes - {"accepted", "duplicate"}),
            ("success outcomes", self.outcomes & {"accepted", "duplicate"}),
            ("quarantine drop reasons", self.drop_reasons),
        ):
            if not values:
                found.append(f"could not read the {what} from the Rust source: the patterns of scripts/check_template.py are out of date")
        return found


def _section(source: str, start: str) -> str:
    """The text from `start` to the end of its block (the first line that closes at column 0 or 4)."""
    at = source.find(start)
    if at < 0:
        return ""
    end = re.search(r"\n(?:    )?\}\n", source[at:])
    return source[at : at + end.end()] if end else source[at:]


# ------------------------------------------------------------------ template helpers


def resources_of(template: dict, kind: str) -> dict:
    return {lid: r for lid, r in template.get("Resources", {}).items() if r.get("Type") == kind}


def namespace_ref(value) -> bool:
    return value == {"Ref": "MetricsNamespace"} or value == "${MetricsNamespace}"


def walk(node):
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def refs_in(node) -> set[str]:
    """Every name a node references through Ref, GetAtt or ${} in Sub."""
    names = set()
    for item in walk(node):
        if isinstance(item, dict):
            if "Ref" in item and isinstance(item["Ref"], str):
                names.add(item["Ref"])
            if "Fn::GetAtt" in item:
                names.add(item["Fn::GetAtt"][0])
            if "Fn::Sub" in item:
                text = item["Fn::Sub"] if isinstance(item["Fn::Sub"], str) else item["Fn::Sub"][0]
                names.update(n.split(".")[0] for n in re.findall(r"\$\{([^}!]+)\}", text))
    return names


def alarm_metrics(alarm: dict) -> list[tuple[object, str, dict]]:
    """(namespace, metric name, dimensions) of every metric an alarm reads."""
    props = alarm.get("Properties", {})
    found = []
    if "MetricName" in props:
        dims = {d["Name"]: d["Value"] for d in props.get("Dimensions", [])}
        found.append((props.get("Namespace"), props["MetricName"], dims))
    for query in props.get("Metrics", []):
        metric = (query.get("MetricStat") or {}).get("Metric")
        if metric:
            dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
            found.append((metric.get("Namespace"), metric["MetricName"], dims))
    return found


def dashboard_body(template: dict) -> tuple[dict | None, list[str]]:
    boards = resources_of(template, "AWS::CloudWatch::Dashboard")
    if len(boards) != 1:
        return None, [f"expected one AWS::CloudWatch::Dashboard, found {sorted(boards)}"]
    body = boards[next(iter(boards))]["Properties"].get("DashboardBody")
    text = body.get("Fn::Sub") if isinstance(body, dict) else None
    if not isinstance(text, str):
        return None, ["the dashboard body is not one !Sub string"]
    try:
        return json.loads(text), []
    except json.JSONDecodeError as error:
        return None, [f"the dashboard body is not JSON: {error}"]


def dashboard_metrics(body: dict) -> list[tuple[object, str, dict, dict]]:
    """(namespace, metric name, dimensions, options) of every metric row and SEARCH of the body."""
    found = []
    for widget in body.get("widgets", []):
        for row in widget.get("properties", {}).get("metrics", []):
            options = row[-1] if row and isinstance(row[-1], dict) else {}
            if "expression" in options:
                expression = options["expression"]
                for space, dim_names, rest in re.findall(r"\{(\$\{[^}]+\}|[^,{}]+),([^}]*)\}([^']*)", expression):
                    for name in re.findall(r'MetricName="([^"]+)"', rest):
                        dims = dict(re.findall(r'(\w+)="([^"]+)"', rest.replace(f'MetricName="{name}"', "")))
                        for dim in dim_names.split(","):
                            dims.setdefault(dim.strip(), None)
                        found.append((space, name, dims, options))
                continue
            values = row[:-1] if options else row
            if len(values) < 2 or len(values) % 2:
                found.append((None, f"<malformed row {row}>", {}, options))
                continue
            dims = dict(zip(values[2::2], values[3::2]))
            found.append((values[0], values[1], dims, options))
    return found


# ------------------------------------------------------------------ the checks


def check(template: dict, emitted: Emitted, monitoring_doc: str) -> list[str]:
    problems = emitted.problems()
    resources = template.get("Resources", {})
    parameters = template.get("Parameters", {})
    filter_metrics = {
        t["MetricName"]
        for f in resources_of(template, "AWS::Logs::MetricFilter").values()
        for t in f["Properties"].get("MetricTransformations", [])
        if namespace_ref(t.get("MetricNamespace"))
    }
    known_metrics = emitted.metrics | filter_metrics

    def check_metric(where: str, namespace, name: str, dims: dict) -> None:
        if not namespace_ref(namespace):
            return
        if name not in known_metrics:
            problems.append(f"{where}: metric {name!r} is not emitted by the code nor by a metric filter")
        allowed = {"source": emitted.sources, "outcome": emitted.outcomes, "reason": emitted.drop_reasons}
        for dim, value in dims.items():
            if dim in allowed and value is not None and value not in allowed[dim]:
                problems.append(f"{where}: {name} {dim}={value!r} is not a value the code writes ({sorted(allowed[dim])})")

    # --- alarms: explicit, written-down missing-data choices; every loss covered
    alarms = resources_of(template, "AWS::CloudWatch::Alarm")
    covered: set[tuple] = set()
    for lid, alarm in sorted(alarms.items()):
        props = alarm.get("Properties", {})
        treat = props.get("TreatMissingData")
        if treat not in ("breaching", "notBreaching", "ignore", "missing"):
            problems.append(f"{lid}: TreatMissingData is {treat!r}, not an explicit choice")
        description = props.get("AlarmDescription", "")
        if f"Missing data: {treat}, " not in description:
            problems.append(f"{lid}: AlarmDescription does not say 'Missing data: {treat}, <why>'")
        section = re.search(rf"^### {lid}\n(.*?)(?=^#{{1,3}} |\Z)", monitoring_doc, re.M | re.S)
        if not section:
            problems.append(f"{lid}: no '### {lid}' section in docs/monitoring.md")
        elif f"`{treat}`" not in section.group(1):
            problems.append(f"{lid}: docs/monitoring.md does not give its missing-data choice `{treat}`")
        for namespace, name, dims in alarm_metrics(alarm):
            check_metric(lid, namespace, name, dims)
            key = (name, tuple(sorted((k, v) for k, v in dims.items() if isinstance(v, str))))
            covered.add(key if namespace_ref(namespace) else (f"{namespace}:{name}", key[1]))

    required = []
    for source in sorted(emitted.sources):
        for reason in sorted(emitted.drop_reasons):
            required.append(("quarantine_dropped", (("reason", reason), ("source", source))))
        required.append(("requests", (("outcome", "invalid_signature"), ("source", source))))
    required += [
        ("nonce_conflicts", (("source", "activity"),)),
        ("requests", (("outcome", "stale_timestamp"), ("source", "activity"))),
        ("http_api_throttled", ()),
    ]
    for metric in required:
        if metric not in covered:
            problems.append(f"no alarm reads {metric[0]} {dict(metric[1])}: that loss would go unnoticed")
    if not any(k[0] == "AWS/ApiGateway:4xx" for k in covered):
        problems.append("no alarm reads the HTTP API's 4xx")

    # --- least privilege: quarantine puts under the function's own partition only
    for fn, source in FUNCTION_SOURCES.items():
        if source not in emitted.sources:
            problems.append(f"{fn}: source {source!r} is not one the code writes ({sorted(emitted.sources)})")
        statements = [
            s
            for policy in resources.get(fn, {}).get("Properties", {}).get("Policies", [])
            if isinstance(policy, dict)
            for s in policy.get("Statement", [])
        ]
        puts = [
            s
            for s in statements
            if "dynamodb:PutItem" in ([s.get("Action")] if isinstance(s.get("Action"), str) else s.get("Action", []))
            and REFUSED_TABLE in refs_in(s.get("Resource"))
        ]
        if not puts:
            problems.append(f"{fn}: no PutItem grant on {REFUSED_TABLE} (the quarantine could not write)")
        partitions = {source} | {
            emitted.constants[name] for name in FUNCTION_PARTITION_CONSTANTS.get(fn, []) if name in emitted.constants
        }
        for statement in puts:
            condition = statement.get("Condition") or {}
            keys = (condition.get("ForAllValues:StringEquals") or {}).get("dynamodb:LeadingKeys")
            if set(condition) != {"ForAllValues:StringEquals"} or not isinstance(keys, list) or set(keys) != partitions:
                problems.append(
                    f"{fn}: PutItem on {REFUSED_TABLE} under {statement.get('Condition')}, expected "
                    f"ForAllValues:StringEquals dynamodb:LeadingKeys {sorted(partitions)}"
                )

    # --- secrets: seeded once, never rewritten by a deploy; read by their function only
    no_echo = {name for name, p in parameters.items() if p.get("NoEcho") in (True, "true", "True")}
    secrets = resources_of(template, "AWS::SecretsManager::Secret")
    for lid, secret in sorted(secrets.items()):
        props = secret.get("Properties", {})
        for key in ("SecretString", "GenerateSecretString"):
            if key in props:
                problems.append(f"{lid}: has {key}; a deploy that changes it rewrites the whole document, tenants included")
        if props.get("KmsKeyId") != {"Fn::If": ["HasKmsKey", {"Ref": "KmsKeyArn"}, {"Ref": "AWS::NoValue"}]}:
            problems.append(f"{lid}: KmsKeyId does not follow KmsKeyArn")
    for lid, resource in sorted(resources.items()):
        if lid == SEED_RESOURCE:
            continue
        leaked = refs_in(resource) & no_echo
        if leaked:
            problems.append(f"{lid}: references the seed parameter(s) {sorted(leaked)}; only {SEED_RESOURCE} may")
    seed = resources.get(SEED_RESOURCE, {})
    seeded = {
        (entry.get("SecretId", {}).get("Ref"), (entry.get("Seed") or {}).get("Ref"))
        for entry in seed.get("Properties", {}).get("Secrets", [])
    }
    if {s for s, _ in seeded} != set(secrets) or not all(p in no_echo for _, p in seeded):
        problems.append(f"{SEED_RESOURCE}: seeds {sorted(seeded, key=str)}, expected each of {sorted(secrets)} from a NoEcho parameter")
    if seed.get("Properties", {}).get("ServiceToken") != {"Fn::GetAtt": [SEED_FUNCTION, "Arn"]}:
        problems.append(f"{SEED_RESOURCE}: ServiceToken is not {SEED_FUNCTION}")
    policies = resources_of(template, "AWS::SecretsManager::ResourcePolicy")
    for fn, secret in FUNCTION_SECRETS.items():
        mine = [p["Properties"] for p in policies.values() if p["Properties"].get("SecretId") == {"Ref": secret}]
        if len(mine) != 1:
            problems.append(f"{secret}: expected one resource policy, found {len(mine)}")
            continue
        if mine[0].get("BlockPublicPolicy") is not True:
            problems.append(f"{secret}: resource policy without BlockPublicPolicy")
        denies = [
            s
            for s in mine[0].get("ResourcePolicy", {}).get("Statement", [])
            if s.get("Effect") == "Deny" and s.get("Action") == "secretsmanager:GetSecretValue" and s.get("Principal") == "*"
        ]
        exempt = [refs_in(s.get("Condition", {}).get("StringNotLike", {}).get("aws:PrincipalArn")) for s in denies]
        if len(denies) != 1 or f"{fn}Role" not in exempt[0] or refs_in(exempt) - {f"{fn}Role", "SecretReaderArns", "HasSecretReaders"}:
            problems.append(f"{secret}: the resource policy must deny GetSecretValue to every principal but {fn}Role and SecretReaderArns")

    # --- dashboard: only emitted metrics, and the widgets docs/monitoring.md describes
    body, found = dashboard_body(template)
    problems += found
    if body is not None:
        rows = dashboard_metrics(body)
        names = {(name, json.dumps(dims, sort_keys=True)) for _, name, dims, _ in rows}
        for namespace, name, dims, _ in rows:
            check_metric("Dashboard", namespace, name, dims)
        stats = {(name, opts.get("stat")) for _, name, _, opts in rows}
        for want in [("handler_latency_ms", "p50"), ("handler_latency_ms", "p99")]:
            if want not in stats:
                problems.append(f"Dashboard: no {want[0]} {want[1]}")
        wanted = ["requests", "quarantined", "quarantine_dropped", "nonce_conflicts", "store_retries", "secrets_refresh_failures"]
        for name in wanted:
            if not any(n == name for n, _ in names):
                problems.append(f"Dashboard: shows no {name}")
        for outcome in ("storage_unavailable", "secrets_unavailable"):
            if not any(n == "requests" and f'"outcome": "{outcome}"' in d for n, d in names):
                problems.append(f"Dashboard: shows no requests with outcome {outcome} (503)")
        for table in DYNAMODB_TABLES:
            for metric in ("ReadThrottleEvents", "WriteThrottleEvents"):
                if not any(ns == "AWS/DynamoDB" and n == metric and d.get("TableName") == f"${{{table}}}" for ns, n, d, _ in rows):
                    problems.append(f"Dashboard: shows no {metric} of {table}")
        shown_alarms = {
            a[2:-1].split(".")[0]
            for w in body.get("widgets", [])
            if w.get("type") == "alarm"
            for a in w["properties"].get("alarms", [])
        }
        unconditional = {lid for lid, a in alarms.items() if "Condition" not in a}
        if shown_alarms != unconditional:
            problems.append(f"Dashboard: its alarm widget shows {sorted(shown_alarms)}, expected every alarm {sorted(unconditional)}")
        for name in refs_in({"Fn::Sub": json.dumps(body)}):
            if name not in resources and name not in parameters and not name.startswith("AWS::"):
                problems.append(f"Dashboard: ${{{name}}} names nothing in the template")

    # --- checkov: a skipped check says why
    for lid, resource in sorted(resources.items()):
        for skip in ((resource.get("Metadata") or {}).get("checkov") or {}).get("skip", []):
            if not str(skip.get("id", "")).startswith("CKV") or len(str(skip.get("comment") or "").strip()) < 20:
                problems.append(f"{lid}: checkov skip {skip.get('id')} without a one-line reason")

    problems += check_seed_function(template)
    return problems


# ------------------------------------------------------------------ the seed function, run


class _Responses(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_PUT(self):  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length", 0))
        type(self).received.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def check_seed_function(template: dict) -> list[str]:
    """Runs the seed function's inline code against moto's Secrets Manager (in process) and a
    response server on 127.0.0.1, as CloudFormation would call it."""
    code = (
        template.get("Resources", {}).get(SEED_FUNCTION, {}).get("Properties", {}).get("Code", {}).get("ZipFile")
    )
    if not isinstance(code, str):
        return [f"{SEED_FUNCTION}: no inline code to run"]
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    import boto3
    from moto import mock_aws

    problems: list[str] = []
    module: dict = {}
    exec(compile(code, SEED_FUNCTION, "exec"), module)  # noqa: S102 - the template's own code
    server = http.server.HTTPServer(("127.0.0.1", 0), _Responses)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/response"
    try:
        with mock_aws():
            client = boto3.client("secretsmanager", region_name="us-east-1")
            crm = client.create_secret(Name="stack/crm-secrets")["ARN"]
            activity = client.create_secret(Name="stack/activity-secrets")["ARN"]
            missing = crm.replace("crm-secrets", "no-such-secret")

            def call(request_type: str, secrets: list[dict]) -> dict:
                _Responses.received = []
                event = {
                    "RequestType": request_type,
                    "ResponseURL": url,
                    "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/s/1",
                    "RequestId": f"req-{request_type}",
                    "LogicalResourceId": SEED_RESOURCE,
                    "ResourceProperties": {"Secrets": secrets},
                }
                if request_type != "Create":
                    event["PhysicalResourceId"] = SEED_RESOURCE
                with contextlib.redirect_stdout(io.StringIO()):  # its log line, for CloudWatch
                    module["handler"](event, None, client=client)
                if len(_Responses.received) != 1:
                    problems.append(f"{SEED_FUNCTION}: {request_type} sent {len(_Responses.received)} responses, expected 1")
                    return {}
                answer = _Responses.received[0]
                text = json.dumps(answer)
                for entry in secrets:
                    for seed in filter(None, (s.strip() for s in entry.get("Seed", "").split(","))):
                        if seed in text:
                            problems.append(f"{SEED_FUNCTION}: its {request_type} response quotes a seed")
                if answer.get("RequestId") != event["RequestId"] or answer.get("NoEcho") is not True:
                    problems.append(f"{SEED_FUNCTION}: response {answer} does not answer the request with NoEcho")
                return answer

            def value(arn: str):
                return json.loads(client.get_secret_value(SecretId=arn)["SecretString"])

            def versions(arn: str) -> int:
                return len(client.list_secret_version_ids(SecretId=arn)["Versions"])

            answer = call("Create", [{"SecretId": crm, "Seed": " seed-one , seed-two "}, {"SecretId": activity, "Seed": ""}])
            if answer.get("Status") != "SUCCESS":
                problems.append(f"{SEED_FUNCTION}: Create answered {answer.get('Status')}")
            if value(crm) != {"default": ["seed-one", "seed-two"], "tenants": {}}:
                problems.append(f"{SEED_FUNCTION}: Create seeded {value(crm)}, expected the default list from the seed")
            if value(activity) != {"tenants": {}}:
                problems.append(f"{SEED_FUNCTION}: an empty seed gave {value(activity)}, expected strict tenancy {{'tenants': {{}}}}")

            onboarded = {"default": ["seed-one"], "tenants": {"124": ["own"], "900": []}}
            client.put_secret_value(SecretId=crm, SecretString=json.dumps(onboarded))
            before = (versions(crm), versions(activity))
            answer = call("Update", [{"SecretId": crm, "Seed": "changed"}, {"SecretId": activity, "Seed": "changed"}])
            if answer.get("Status") != "SUCCESS":
                problems.append(f"{SEED_FUNCTION}: Update answered {answer.get('Status')}")
            if value(crm) != onboarded or value(activity) != {"tenants": {}} or (versions(crm), versions(activity)) != before:
                problems.append(f"{SEED_FUNCTION}: an Update with another seed rewrote a document that had a value")

            call("Delete", [{"SecretId": crm, "Seed": "changed"}])
            if value(crm) != onboarded or versions(crm) != before[0]:
                problems.append(f"{SEED_FUNCTION}: Delete changed the document")

            answer = call("Create", [{"SecretId": missing, "Seed": "hunter2"}])
            if answer.get("Status") != "FAILED":
                problems.append(f"{SEED_FUNCTION}: seeding a missing secret answered {answer.get('Status')}, expected FAILED")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    return problems


# ------------------------------------------------------------------ self-test


def self_test(path: Path, emitted: Emitted, monitoring_doc: str) -> list[str]:
    """Each break below must be reported; the unbroken template must pass."""
    base = load_cfn_yaml(str(path))
    failures = []
    if check(base, emitted, monitoring_doc):
        failures.append("the unbroken template does not pass, so the breaks below prove nothing")

    def alarm(t):
        return t["Resources"]["NonceConflictsAlarm"]["Properties"]

    def crm_put(t):
        for s in t["Resources"]["CrmWebhookFunction"]["Properties"]["Policies"][0]["Statement"]:
            if s.get("Sid") == "RefusedDeliveriesPut":
                return s
        raise KeyError("RefusedDeliveriesPut")

    def dashboard(t, edit):
        props = t["Resources"]["Dashboard"]["Properties"]
        props["DashboardBody"]["Fn::Sub"] = edit(props["DashboardBody"]["Fn::Sub"])

    def seed_code(t, edit):
        code = t["Resources"][SEED_FUNCTION]["Properties"]["Code"]
        code["ZipFile"] = edit(code["ZipFile"])

    def drop_p99(s):
        return s.replace('"stat": "p99", "label": "crm', '"stat": "p90", "label": "crm').replace(
            '"stat": "p99", "label": "activity', '"stat": "p90", "label": "activity'
        )

    resources = lambda t: t["Resources"]  # noqa: E731
    breaks = {
        "an alarm without TreatMissingData": (
            "TreatMissingData is None",
            lambda t: alarm(t).pop("TreatMissingData"),
        ),
        "an alarm whose description hides its missing-data choice": (
            "AlarmDescription does not say",
            lambda t: alarm(t).update(AlarmDescription=alarm(t)["AlarmDescription"].replace("Missing data", "Absent data")),
        ),
        "an alarm missing-data choice the docs do not give": (
            "docs/monitoring.md does not give",
            lambda t: alarm(t).update(TreatMissingData="ignore"),
        ),
        "no alarm on a quarantine drop reason": (
            "no alarm reads quarantine_dropped",
            lambda t: resources(t).pop("QuarantineWriteFailuresAlarm"),
        ),
        "a quarantine put without its partition condition": (
            "PutItem on RefusedDeliveriesTable under None",
            lambda t: crm_put(t).pop("Condition"),
        ),
        "a quarantine put under the other source's partition": (
            "PutItem on RefusedDeliveriesTable under {",
            lambda t: crm_put(t).update(Condition={"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["crm", "activity"]}}),
        ),
        "a secret document built from a parameter": (
            "has SecretString",
            lambda t: resources(t)["CrmWebhookSecrets"]["Properties"].update(
                SecretString={"Fn::Sub": '{"default": "${CrmWebhookSecret}", "tenants": {}}'}
            ),
        ),
        "a seed parameter fed to a function": (
            "references the seed parameter",
            lambda t: resources(t)["CrmWebhookFunction"]["Properties"]["Environment"]["Variables"].update(
                CRM_WEBHOOK_SECRET={"Ref": "CrmWebhookSecret"}
            ),
        ),
        "a secret policy that denies nobody": (
            "resource policy must deny",
            lambda t: resources(t)["CrmWebhookSecretsPolicy"]["Properties"]["ResourcePolicy"]["Statement"][0].update(Effect="Allow"),
        ),
        "a dashboard metric the code does not emit": (
            "'store_retry_count' is not emitted",
            lambda t: dashboard(t, lambda s: s.replace('"store_retries"', '"store_retry_count"')),
        ),
        "a dashboard outcome the code does not write": (
            "outcome='storage_down'",
            lambda t: dashboard(t, lambda s: s.replace('"storage_unavailable"', '"storage_down"', 1)),
        ),
        "an alarm on a drop reason the code does not write": (
            "reason='over_cap'",
            lambda t: resources(t)["QuarantineCapDropsAlarm"]["Properties"]["Metrics"][1]["MetricStat"]["Metric"]["Dimensions"][1].update(
                Value="over_cap"
            ),
        ),
        "a checkov skip without a reason": (
            "without a one-line reason",
            lambda t: resources(t)["CrmWebhookFunction"]["Metadata"]["checkov"]["skip"][0].pop("comment"),
        ),
        "a dashboard without p99 latency": ("no handler_latency_ms p99", lambda t: dashboard(t, drop_p99)),
        "a seed function that rewrites a secret with a value": (
            "rewrote a document",
            lambda t: seed_code(t, lambda c: c.replace("continue\n", "pass\n")),
        ),
        "a seed function that echoes its seed": (
            "quotes a seed",
            lambda t: seed_code(
                t,
                lambda c: c.replace('"Data": {},', '"Data": {"seeds": [s.get("Seed") for s in event["ResourceProperties"]["Secrets"]]},'),
            ),
        ),
    }
    for name, (expected, breaking) in breaks.items():
        broken = copy.deepcopy(base)
        breaking(broken)
        if broken == base:
            failures.append(f"self-test '{name}': the break changed nothing (the template moved on?)")
            continue
        found = check(broken, emitted, monitoring_doc)
        if not any(expected in problem for problem in found):
            failures.append(f"self-test '{name}': not detected as {expected!r} (reported: {found})")
        else:
            print(f"self-test: detected {name}")
    return failures


def main() -> None:
    args = sys.argv[1:]
    testing = "--self-test" in args
    paths = [a for a in args if a != "--self-test"]
    path = Path(paths[0]) if paths else ROOT / "template.yaml"
    emitted = Emitted(rust_sources())
    monitoring_doc = MONITORING_DOC.read_text(encoding="utf-8") if MONITORING_DOC.exists() else ""
    if testing:
        failures = self_test(path, emitted, monitoring_doc)
        if failures:
            sys.exit("template check self-test failed:\n  " + "\n  ".join(failures))
        print("template check self-test: every break detected")
        return
    problems = check(load_cfn_yaml(str(path)), emitted, monitoring_doc)
    if problems:
        sys.exit("template check failed:\n  " + "\n  ".join(problems))
    print(
        f"{path}: alarms (explicit missing data, every loss covered), dashboard metrics, quarantine "
        "partition grants, secret seeding and policies check out"
    )


if __name__ == "__main__":
    main()
