#!/usr/bin/env bash
# `make invoke`: one API Gateway event through `sam local invoke` (the built arm64 bootstrap in the
# Lambda base image, under Docker), against the local DynamoDB of `make run`.
#
#   scripts/invoke.sh FUNCTION EVENT_FILE
#       FUNCTION: crm-webhook | activity-callback (or the template's logical id)
#       EVENT_FILE: an API Gateway HTTP API event, e.g. fixtures/events/crm_seed_124_object_create.json
#   scripts/invoke.sh --start-lambda PORT
#       the same set-up, then `sam local start-lambda` (the Lambda Invoke API on 127.0.0.1:PORT,
#       both functions in warm containers) until stopped: `make invoke-check` uses it
#
# Prints the function's answer (the Lambda proxy response) on stdout, SAM's and the function's
# logs on stderr. Exits with sam's exit code.
#
# Needs: Docker, `make build` output in .aws-sam/build (rebuilt here when a source is newer), and a
# local DynamoDB answering on 127.0.0.1:$DYNAMODB_PORT (default 8000: `make run`, or
# `scripts/stack.sh dynamodb`).
#
# How the container reaches that DynamoDB, which listens on 127.0.0.1 only: SAM passes a function
# only the variables the template declares, so template.yaml declares AWS_ENDPOINT_URL_DYNAMODB
# (empty: AWS) and the --env-vars file written here sets it to http://host.docker.internal:PORT.
# On Linux, host.docker.internal is added to the container (--add-host) as the Docker bridge's
# gateway address, and scripts/tcp_forward.py relays that address's PORT to 127.0.0.1:PORT for
# the duration of the invoke. The gateway address is on the host, reachable from its containers
# and not from other machines. Docker Desktop (macOS, Windows) has host.docker.internal built in
# and reaches the host's 127.0.0.1 itself: no forwarder there.
#
# The base image public.ecr.aws/lambda/provided:al2023-arm64 is pulled by SAM unless it is
# already local (--skip-pull-image then): scripts/lambda_standin_image.sh builds a stand-in.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LOG_TAG=invoke
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
export_local_env
use_venv
export SAM_CLI_TELEMETRY=0

[ $# -eq 2 ] || {
  sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
FUNCTION=""
START_LAMBDA_PORT=""
case "$1" in
  crm-webhook | CrmWebhookFunction) FUNCTION=CrmWebhookFunction ;;
  activity-callback | ActivityCallbackFunction) FUNCTION=ActivityCallbackFunction ;;
  --start-lambda) START_LAMBDA_PORT="$2" ;;
  *) die "unknown function '$1' (crm-webhook or activity-callback)" ;;
esac
EVENT="$2"
[ -n "$START_LAMBDA_PORT" ] || [ -f "$EVENT" ] || die "no such event file: $EVENT"

DYNAMODB_PORT="${DYNAMODB_PORT:-$LOCAL_RUN_DYNAMODB_PORT}"
BASE_IMAGE=public.ecr.aws/lambda/provided:al2023-arm64
STATE_DIR="$ROOT/.local/invoke"
mkdir -p "$STATE_DIR"

command -v sam >/dev/null || die "sam not found (run 'make venv')"
docker info >/dev/null 2>&1 || die "Docker is not running (see docs/testing.md, 'sam local invoke')"
(exec 3<>"/dev/tcp/127.0.0.1/$DYNAMODB_PORT") 2>/dev/null \
  || die "no local DynamoDB on 127.0.0.1:$DYNAMODB_PORT: start 'make run' (or 'scripts/stack.sh dynamodb') first"

# SAM invokes the build in .aws-sam/build, with its copy of the template: rebuilt when it is
# missing, when a source is newer, or when that copy predates the endpoint variable (SAM would
# not pass it, and the function would go to AWS).
built=.aws-sam/build/template.yaml
if [ ! -f ".aws-sam/build/${FUNCTION:-CrmWebhookFunction}/bootstrap" ] || [ ! -f "$built" ] \
  || ! grep -q AWS_ENDPOINT_URL_DYNAMODB "$built" \
  || [ -n "$(find shared functions Cargo.toml Cargo.lock template.yaml -newer "$built" -type f -print -quit)" ]; then
  log "building with sam build (release, arm64)"
  sam build >&2
fi

on_exit stop_started

sam_args=(--env-vars "$STATE_DIR/env-vars.json")
if [ "$(uname -s)" = Linux ]; then
  # The gateway of Docker's default bridge: from its IPAM configuration, else (daemons that
  # record only the subnet) the address of the bridge interface itself.
  gateway="$(docker network inspect bridge -f '{{range .IPAM.Config}}{{.Gateway}}{{end}}')"
  if [ -z "$gateway" ]; then
    bridge="$(docker network inspect bridge -f '{{index .Options "com.docker.network.bridge.name"}}')"
    gateway="$(ip -4 -o addr show dev "${bridge:-docker0}" 2>/dev/null | awk '{ split($4, a, "/"); print a[1]; exit }')"
  fi
  [ -n "$gateway" ] || die "cannot find the Docker bridge's gateway address"
  start_bg forwarder python3 "$ROOT/scripts/tcp_forward.py" "$gateway" "$DYNAMODB_PORT" 127.0.0.1 "$DYNAMODB_PORT"
  for _ in $(seq 1 50); do
    grep -q listening "$STATE_DIR/forwarder.log" 2>/dev/null && break
    alive "$LAST_PID" || die "the forwarder did not start: $(cat "$STATE_DIR/forwarder.log")"
    sleep 0.1
  done
  sam_args+=(--add-host "host.docker.internal:$gateway")
fi
docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && sam_args+=(--skip-pull-image)

# Every variable the template declares, with its local value (LOCAL_STACK_SKIP_FRESHNESS=1: the
# fixtures' timestamps are from 2023; honoured with the local DynamoDB endpoint only). The same values for both functions; each gets only its own.
(
  umask 077
  LOCAL_ENDPOINT="http://host.docker.internal:$DYNAMODB_PORT" python3 - >"$STATE_DIR/env-vars.json" <<'PY'
import json, os
env = os.environ
local = lambda name, default_name=None: env.get(name) or env[default_name or "LOCAL_" + name]
print(json.dumps({"Parameters": {
    "AWS_ENDPOINT_URL_DYNAMODB": env["LOCAL_ENDPOINT"],
    **{name: local(name) for name in (
        "CRM_TABLE_NAME", "ACTIVITY_TABLE_NAME",
        "ACTIVITY_NONCES_TABLE_NAME", "REFUSED_DELIVERIES_TABLE_NAME", "CRM_WEBHOOK_SECRET",
        "CRM_SIGNATURE_HEADER", "ACTIVITY_CALLBACK_SECRET")},
    "LOCAL_STACK_SKIP_FRESHNESS": env.get("LOCAL_STACK_SKIP_FRESHNESS") or "1",
    # The development secrets above, not Secrets Manager (empty = unset for the functions).
    "CRM_SECRETS_MANAGER_ID": "",
    "ACTIVITY_SECRETS_MANAGER_ID": "",
    "RUST_LOG": env.get("RUST_LOG") or "info",
}}, indent=2))
PY
)

parameters="CrmWebhookSecret=$LOCAL_CRM_WEBHOOK_SECRET ActivityCallbackSecret=$LOCAL_ACTIVITY_CALLBACK_SECRET"

if [ -n "$START_LAMBDA_PORT" ]; then
  # Warm containers, started with the service, so that each invoke finds the emulator listening
  # (see below); the functions keep their state between invokes, as on Lambda.
  log "sam local start-lambda on 127.0.0.1:$START_LAMBDA_PORT (DynamoDB: 127.0.0.1:$DYNAMODB_PORT)"
  rc=0
  sam local start-lambda --host 127.0.0.1 --port "$START_LAMBDA_PORT" --warm-containers EAGER \
    "${sam_args[@]}" --parameter-overrides "$parameters" || rc=$?
  exit $rc
fi

# SAM starts a container per invoke and posts the event to its emulator three times within 0.7 s.
# Docker's userland proxy (dockerd --iptables=false) accepts those connections before the
# emulator listens, and an arm64 emulator under qemu on a loaded x86_64 host took 0.66-0.85 s to
# listen here (longer under heavier load): SAM then reports "No response from invoke container",
# exits 0 and prints no answer. Nothing reached the function, so the invoke is repeated, up to
# INVOKE_ATTEMPTS times (default 4). A native arm64 host, or Docker with iptables, does not
# need this.
attempts="${INVOKE_ATTEMPTS:-4}"
for attempt in $(seq 1 "$attempts"); do
  log "sam local invoke $FUNCTION -e $EVENT (DynamoDB: 127.0.0.1:$DYNAMODB_PORT, attempt $attempt)"
  rc=0
  sam local invoke "$FUNCTION" -e "$EVENT" "${sam_args[@]}" \
    --parameter-overrides "$parameters" >"$STATE_DIR/answer.json" 2>"$STATE_DIR/sam.log" || rc=$?
  cat "$STATE_DIR/sam.log" >&2
  if [ -s "$STATE_DIR/answer.json" ] || ! grep -q 'No response from invoke container' "$STATE_DIR/sam.log"; then
    cat "$STATE_DIR/answer.json"
    exit $rc
  fi
  log "the emulator was not listening yet (attempt $attempt of $attempts)"
done

# Still no answer (a heavily loaded host): the same event through `sam local start-lambda`, whose
# warm container is started first and invoked only once its emulator had time to listen.
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
log "falling back to sam local start-lambda (warm container) on 127.0.0.1:$port"
start_bg start-lambda sam local start-lambda --host 127.0.0.1 --port "$port" --warm-containers EAGER \
  "${sam_args[@]}" --parameter-overrides "$parameters"
lambda_pid="$LAST_PID"
rc=0
python3 "$ROOT/scripts/invoke_all.py" --endpoint "http://127.0.0.1:$port" --event "$EVENT" --function "$FUNCTION" || rc=$?
# SAM removes its warm containers on Ctrl-C (INT).
stop_pid "$lambda_pid" INT
forget "$lambda_pid"
[ $rc -eq 0 ] || { tail -n 30 "$STATE_DIR/start-lambda.log" >&2; die "no answer through start-lambda either"; }
