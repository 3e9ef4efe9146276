#!/usr/bin/env bash
# `make invoke-check`: every event of fixtures/events/ through `sam local invoke` (Docker, the
# arm64 bootstrap from `sam build`, the Lambda base image) against a local DynamoDB of its own;
# checks each answer and that the items are in the local tables. Not part of `make test` (a
# release arm64 build and Docker; see docs/testing.md for why and for the figures).
#
# The whole recipe, each step skipped when already done, for a Debian/Ubuntu machine that
# reaches only the package registries (run as root for the first three):
#   1. apt-get install docker.io qemu-user-static; enable the arm64 architecture (for step 4);
#   2. register qemu-aarch64 with binfmt_misc (the arm64 image runs on an x86_64 host);
#   3. start dockerd --iptables=false --storage-driver=vfs if no Docker daemon answers (stopped
#      again at the end, by PID);
#   4. scripts/lambda_standin_image.sh: a stand-in for public.ecr.aws/lambda/provided:al2023-arm64
#      unless that image is present (or can be pulled);
#   5. a local DynamoDB (scripts/stack.sh dynamodb) on 127.0.0.1:$DYNAMODB_PORT (default
#      $LOCAL_INVOKE_DYNAMODB_PORT of scripts/local.env), stopped at the end;
#   6. `make invoke` of the seed event (scripts/invoke.sh: `sam local invoke`, after `sam build`
#      when the build is missing or stale);
#   7. scripts/invoke.sh --start-lambda: the same set-up with `sam local start-lambda` and warm
#      containers, through which every event of fixtures/events/ is invoked (scripts/invoke_all.py);
#      the seed, delivered by step 6 already, must be answered `duplicate`. Warm containers, because each
#      `sam local invoke` starts an emulated container that can be slower to listen than SAM
#      waits (docs/testing.md); the image, template, env-vars and network path are the same.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LOG_TAG=invoke-check
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
export_local_env
use_venv
export DYNAMODB_PORT="${DYNAMODB_PORT:-$LOCAL_INVOKE_DYNAMODB_PORT}"
STATE_DIR="$ROOT/.local/invoke-check"
BASE_IMAGE=public.ecr.aws/lambda/provided:al2023-arm64

LAMBDA_PID=""
# SAM stops its warm containers on Ctrl-C (INT); then the local DynamoDB and the dockerd this
# run started, if it did.
stop_everything() {
  if [ -n "$LAMBDA_PID" ]; then stop_pid "$LAMBDA_PID" INT; fi
  stop_started
}
on_exit stop_everything

rm -rf "$STATE_DIR"
mkdir -p "$STATE_DIR"

# 1-2. Packages and binfmt (root only; a prepared machine skips them).
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else die "needs root for: $* (or prepare the machine: docs/testing.md)"; fi; }
if ! command -v dockerd >/dev/null || [ ! -e /usr/bin/qemu-aarch64-static ]; then
  log "installing docker.io and qemu-user-static"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq docker.io qemu-user-static >&2
fi
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  as_root dpkg --add-architecture arm64
  as_root apt-get update -qq
fi
if [ "$(uname -m)" != aarch64 ] && [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  [ -e /proc/sys/fs/binfmt_misc/register ] || as_root mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  # Flag F (in the packaged rule) opens the interpreter now, so that it works inside containers.
  grep -v '^#' /usr/lib/binfmt.d/qemu-aarch64.conf | as_root tee /proc/sys/fs/binfmt_misc/register >/dev/null
fi

# 3. A Docker daemon.
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd (log: ${STATE_DIR#"$ROOT/"}/dockerd.log)"
  as_root true
  start_bg dockerd dockerd --iptables=false --storage-driver=vfs
  for _ in $(seq 1 300); do docker info >/dev/null 2>&1 && break; sleep 0.1; done
  docker info >/dev/null 2>&1 || die "dockerd did not start (see ${STATE_DIR#"$ROOT/"}/dockerd.log)"
fi

# 4. The base image.
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && ! docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
  bash "$ROOT/scripts/lambda_standin_image.sh"
fi

# 5. A local DynamoDB of this run's own, with the tables.
start_bg stack bash "$ROOT/scripts/stack.sh" dynamodb
for _ in $(seq 1 600); do
  grep -q 'DynamoDB endpoint' "$STATE_DIR/stack.log" && break
  alive "$LAST_PID" || die "the local DynamoDB did not start: $(tail -n 5 "$STATE_DIR/stack.log")"
  sleep 0.1
done
grep -q 'DynamoDB endpoint' "$STATE_DIR/stack.log" || die "the local DynamoDB did not start in 60 s"

# 6. `make invoke` of the seed event, as a user runs it: built first when needed, answer checked
#    with the others below.
mkdir -p "$STATE_DIR/answers"
log "make invoke of the seed event (log: ${STATE_DIR#"$ROOT/"}/invoke.log)"
if ! INVOKE_ATTEMPTS="${INVOKE_ATTEMPTS:-8}" bash "$ROOT/scripts/invoke.sh" crm-webhook \
  fixtures/events/crm_seed_124_object_create.json >"$STATE_DIR/make-invoke.json" 2>>"$STATE_DIR/invoke.log"; then
  tail -n 30 "$STATE_DIR/invoke.log" >&2
  die "make invoke failed (see ${STATE_DIR#"$ROOT/"}/invoke.log)"
fi
log "make invoke answered: $(head -c 300 "$STATE_DIR/make-invoke.json")"

# 7. Every event through start-lambda's warm containers (the seed's is then a redelivery).
LAMBDA_PORT="${LAMBDA_PORT:-$((DYNAMODB_PORT + 1))}"
start_bg start-lambda bash "$ROOT/scripts/invoke.sh" --start-lambda "$LAMBDA_PORT"
LAMBDA_PID="$LAST_PID"
python3 "$ROOT/scripts/invoke_all.py" --endpoint "http://127.0.0.1:$LAMBDA_PORT" \
  --answers "$STATE_DIR/answers" \
  || { tail -n 40 "$STATE_DIR/start-lambda.log" >&2; die "invoking the events failed (see ${STATE_DIR#"$ROOT/"}/start-lambda.log)"; }

python3 "$ROOT/scripts/check_invoke_answers.py" --answers "$STATE_DIR/answers" \
  --make-invoke "$STATE_DIR/make-invoke.json" \
  --endpoint "http://127.0.0.1:$DYNAMODB_PORT"
