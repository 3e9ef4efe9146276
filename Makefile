# Webhook ingestion service: build, test, run locally, deploy.
#
#   make test      format check, clippy, every cargo test against a local stack
#                  (moto + cargo lambda watch on ports 18000/19000), every answer checked
#                  against docs/openapi.yaml, template validation
#   make run       local stack on 127.0.0.1 (DynamoDB 8000, functions 9000) until Ctrl-C
#   make validate  sam validate (+ --lint), cfn-lint, template/table schema check
#   make build     sam build (arm64, provided.al2023)
#   make invoke FN=crm-webhook EVENT=fixtures/events/crm_seed_124_object_create.json
#                  sam local invoke (Docker) against make run's local DynamoDB
#   make invoke-check  every fixtures/events/ event through sam local invoke, answers and
#                  items checked (own DynamoDB on 17000; installs/starts Docker as root if needed)
#   make venv      the Python tools in .venv (moto, cargo-lambda, SAM CLI, cfn-lint)
#   make bench     every performance figure (criterion, arm64 bootstrap sizes, cold start,
#                  invocation latency, peak RSS), then side by side with the Python peer with
#                  each target: calls and capacity units per event, hot key (moto on 28000,
#                  Runtime API on 29001)
#   make soak      full-size convergence, outage, load and quarantine-flood suites, then
#                  `make fuzz` (~30 min)
#   make fuzz      10 million mutated bodies through the pure ingest path
#   make clean     remove build outputs and local state (keeps .venv)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV := $(ROOT)/.venv
VENV_STAMP := $(VENV)/.installed-requirements-dev
REQUIREMENTS := $(ROOT)/scripts/requirements-dev.txt
PYTHON ?= python3
LAMBDA_TARGET := aarch64-unknown-linux-gnu

# Every recipe sees the venv's tools first, and SAM CLI never phones home.
export PATH := $(VENV)/bin:$(PATH)
export SAM_CLI_TELEMETRY := 0

.PHONY: help venv checkov-venv test validate run build targets invoke invoke-check bench soak fuzz clean

help:
	@sed -n '2,22p' $(firstword $(MAKEFILE_LIST)) | sed 's/^# \{0,1\}//'

venv: $(VENV_STAMP)

# Recreated when scripts/requirements-dev.txt changes; a no-op otherwise.
$(VENV_STAMP): $(REQUIREMENTS)
	@if [ ! -x "$(VENV)/bin/python" ]; then \
	  echo "creating $(VENV)"; \
	  $(PYTHON) -m venv "$(VENV)"; \
	fi
	"$(VENV)/bin/python" -m pip install --disable-pip-version-check -q -r "$(REQUIREMENTS)"
	@touch "$@"

# scripts/test.sh installs the Python tools (venv, checkov-venv) in the background while cargo
# builds, then runs the stack suites and `make validate`.
test:
	bash scripts/test.sh

validate: venv checkov-venv
	sam validate
	sam validate --lint
	cfn-lint template.yaml
	python scripts/create_tables.py --check-template template.yaml
	python scripts/check_template.py --self-test template.yaml
	python scripts/check_template.py template.yaml
	@# Offline: no platform download or mapping, no update check.
	@echo "checkov -f template.yaml"
	@BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=true "$(CHECKOV_VENV)/bin/checkov" -f template.yaml \
	  --framework cloudformation --skip-download --compact --quiet

# checkov pins packages older than .venv's, so it has a venv of its own (CHECKOV_VENV, default
# .venv/checkov), installed again when scripts/requirements-checkov.txt changes.
CHECKOV_VENV ?= $(VENV)/checkov
CHECKOV_REQUIREMENTS := $(ROOT)/scripts/requirements-checkov.txt
checkov-venv: $(CHECKOV_VENV)/.installed

$(CHECKOV_VENV)/.installed: $(CHECKOV_REQUIREMENTS)
	@echo "installing checkov into $(CHECKOV_VENV)"
	$(PYTHON) -m venv "$(CHECKOV_VENV)"
	"$(CHECKOV_VENV)/bin/python" -m pip install --disable-pip-version-check -q -r "$(CHECKOV_REQUIREMENTS)"
	@touch "$@"

run: venv
	bash scripts/stack.sh run

targets:
	@rustup target list --installed | grep -qx "$(LAMBDA_TARGET)" || rustup target add "$(LAMBDA_TARGET)"

build: venv targets
	sam build

FN ?= crm-webhook
EVENT ?= fixtures/events/crm_seed_124_object_create.json
invoke: venv targets
	bash scripts/invoke.sh "$(FN)" "$(EVENT)"

# Not part of `make test`: it needs Docker and a release arm64 build (docs/testing.md).
invoke-check: venv targets
	bash scripts/local_invoke_check.sh

# Not part of `make test`: timings are measured here, never asserted in tests.
bench: venv targets
	bash scripts/bench.sh

# The full-size suites against a stack of their own (ports 38000/39000): convergence over
# 200 entities / 10,000 events, the outage over 2,000 events, one lead with 2,000 events from 32
# senders, 60 s of load, then the long fuzz.
soak: venv
	bash scripts/stack.sh soak --no-fail-fast --test convergence --test outage --test crowd --test load --test quarantine -- --nocapture
	@$(MAKE) --no-print-directory fuzz

# Ten million mutated bodies through the pure ingest path (release build).
FUZZ_EXECS ?= 10000000
fuzz:
	cargo run --release -p tests --bin fuzz-ingest -- --execs $(FUZZ_EXECS)

clean:
	rm -rf "$(ROOT)/.aws-sam" "$(ROOT)/.local"
	cargo clean
