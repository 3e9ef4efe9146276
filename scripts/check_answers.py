#!/usr/bin/env python3
"""Check docs/openapi.yaml, and every answer the end-to-end suites received against it.

    check_answers.py [--spec docs/openapi.yaml] [--ledger DIR]

1. The document is validated as OpenAPI 3.1 (openapi-spec-validator, pinned in
   scripts/requirements-dev.txt).
2. DIR (default .local/test/answers) holds the answer ledger the test kit's HTTP client writes
   (tests/src/http.rs): JSON lines, one per answer, with `source` (the test binary), `method`,
   `path` (as requested), `status`, `content_type` and `body`. Each answer is matched to the
   document's operation for its path and method (the local emulator's `/lambda-url/<function>`
   prefix removed) and must be a declared status with a declared content type, and its body
   must validate against that response's schema (JSON Schema 2020-12, as OpenAPI 3.1 has it).

Fails when the document is invalid, when any answer does not match, or when the ledger holds no
answer at all (so that a test kit that stopped recording cannot pass unnoticed).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys
from collections import Counter

import jsonschema
import referencing
import yaml
from openapi_spec_validator import validate

ROOT = pathlib.Path(__file__).resolve().parent.parent
SPEC_URI = "urn:webhook-ingestion:openapi"


def resolve(spec: dict, node: dict) -> dict:
    while "$ref" in node:
        pointer = node["$ref"].removeprefix("#/").split("/")
        node = spec
        for part in pointer:
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def route(spec: dict, path: str) -> str | None:
    """The document's path template that `path` (query removed, local prefix removed) matches."""
    path = re.sub(r"^/lambda-url/[^/]+", "", path.split("?", 1)[0]) or "/"
    for template in spec["paths"]:
        pattern = "^" + re.sub(r"\\{[^/}]+\\}", "[^/]+", re.escape(template)) + "/?$"
        if re.match(pattern, path):
            return template
    return None


def check(spec: dict, registry: referencing.Registry, answer: dict) -> str | None:
    template = route(spec, answer["path"])
    if template is None:
        return f"path {answer['path']} is not in the document"
    operation = spec["paths"][template].get(answer["method"].lower())
    if operation is None:
        return f"{answer['method']} {template} is not in the document"
    response = operation["responses"].get(str(answer["status"]))
    if response is None:
        return f"status {answer['status']} is not declared for {answer['method']} {template}"
    response = resolve(spec, response)
    media = (answer.get("content_type") or "").split(";", 1)[0].strip().lower()
    content = response.get("content", {})
    if media not in content:
        return f"content type {media!r} is not declared for {answer['status']} (declared: {sorted(content)})"
    body = answer["body"]
    if media == "application/json":
        try:
            body = json.loads(body)
        except json.JSONDecodeError as error:
            return f"body is not JSON ({error}): {answer['body'][:200]!r}"
    # The schema's location in the document: under the operation, or under the component the
    # response refers to.
    ref = operation["responses"][str(answer["status"])].get("$ref")
    escaped = template.replace("~", "~0").replace("/", "~1")
    base = ref.removeprefix("#") if ref else f"/paths/{escaped}/{answer['method'].lower()}/responses/{answer['status']}"
    schema = {"$ref": f"{SPEC_URI}#{base}/content/{media.replace('/', '~1')}/schema"}
    errors = list(jsonschema.Draft202012Validator(schema, registry=registry).iter_errors(body))
    if errors:
        return "; ".join(error.message for error in errors)[:500]
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=pathlib.Path, default=ROOT / "docs" / "openapi.yaml")
    parser.add_argument("--ledger", type=pathlib.Path, default=ROOT / ".local" / "test" / "answers")
    args = parser.parse_args()

    spec = yaml.safe_load(args.spec.read_text())
    validate(spec)
    print(f"{args.spec.relative_to(ROOT) if args.spec.is_relative_to(ROOT) else args.spec}: valid OpenAPI {spec['openapi']}")

    registry = referencing.Registry().with_resource(
        SPEC_URI, referencing.Resource.from_contents(spec, default_specification=referencing.jsonschema.DRAFT202012)
    )
    answers = []
    for file in sorted(args.ledger.glob("*.jsonl")) if args.ledger.is_dir() else []:
        for number, line in enumerate(file.read_text().splitlines(), 1):
            if line.strip():
                answers.append((f"{file.name}:{number}", json.loads(line)))
    if not answers:
        print(f"FAIL no answer recorded in {args.ledger} (the end-to-end suites record every answer)", file=sys.stderr)
        return 1

    failures = 0
    seen = Counter()
    for where, answer in answers:
        problem = check(spec, registry, answer)
        if problem:
            failures += 1
            if failures <= 20:
                print(f"FAIL {where}: {answer['method']} {answer['path']} -> {answer['status']}: {problem}", file=sys.stderr)
        else:
            seen[(route(spec, answer["path"]), answer["status"])] += 1
    print(f"{len(answers)} recorded answers checked against the document, {failures} do not match")
    for (template, status), count in sorted(seen.items()):
        print(f"  {template} {status}: {count}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
