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
#   6. scripts/invoke.sh for every event (it runs `sam build` when the build is missing or stale),
#      then the seed event again, which must be answered `duplicate`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
set -a
# shellcheck source=scripts/local.env
source "$ROOT/scripts/local.env"
set +a
VENV_BIN="${VENV_BIN:-$ROOT/.venv/bin}"
export PATH="$VENV_BIN:$PATH"
export DYNAMODB_PORT="${DYNAMODB_PORT:-$LOCAL_INVOKE_DYNAMODB_PORT}"
STATE_DIR="$ROOT/.local/invoke-check"
BASE_IMAGE=public.ecr.aws/lambda/provided:al2023-arm64

log() { printf '[invoke-check] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

DOCKERD_PID=""
STACK_PID=""
cleanup() {
  if [ -n "$STACK_PID" ]; then
    kill -TERM "$STACK_PID" 2>/dev/null || true
    wait "$STACK_PID" 2>/dev/null || true
  fi
  if [ -n "$DOCKERD_PID" ]; then
    log "stopping the dockerd this run started (pid $DOCKERD_PID)"
    kill -TERM "$DOCKERD_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.1; done
  fi
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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
  setsid dockerd --iptables=false --storage-driver=vfs >"$STATE_DIR/dockerd.log" 2>&1 </dev/null &
  DOCKERD_PID=$!
  for _ in $(seq 1 300); do docker info >/dev/null 2>&1 && break; sleep 0.1; done
  docker info >/dev/null 2>&1 || die "dockerd did not start (see ${STATE_DIR#"$ROOT/"}/dockerd.log)"
fi

# 4. The base image.
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && ! docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
  bash "$ROOT/scripts/lambda_standin_image.sh"
fi

# 5. A local DynamoDB of this run's own, with the tables.
setsid bash "$ROOT/scripts/stack.sh" dynamodb >"$STATE_DIR/stack.log" 2>&1 </dev/null &
STACK_PID=$!
for _ in $(seq 1 600); do
  grep -q 'DynamoDB endpoint' "$STATE_DIR/stack.log" && break
  kill -0 "$STACK_PID" 2>/dev/null || die "the local DynamoDB did not start: $(tail -n 5 "$STATE_DIR/stack.log")"
  sleep 0.1
done
grep -q 'DynamoDB endpoint' "$STATE_DIR/stack.log" || die "the local DynamoDB did not start in 60 s"

# 6. Every event, then the seed again. Answers go to $STATE_DIR/answers/<event>.json.
mkdir -p "$STATE_DIR/answers"
invoke() {
  local function="$1" event="$2" answer="$3"
  if ! bash "$ROOT/scripts/invoke.sh" "$function" "$event" >"$answer" 2>>"$STATE_DIR/invoke.log"; then
    tail -n 30 "$STATE_DIR/invoke.log" >&2
    die "sam local invoke failed for $event (see ${STATE_DIR#"$ROOT/"}/invoke.log)"
  fi
}
started=$SECONDS
count=0
for event in fixtures/events/*.json; do
  name="$(basename "$event" .json)"
  case "$name" in
    crm_*) function=crm-webhook ;;
    activity_*) function=activity-callback ;;
    *) die "cannot tell the function of $event (crm_* or activity_*)" ;;
  esac
  invoke "$function" "$event" "$STATE_DIR/answers/$name.json"
  log "$name: $(head -c 200 "$STATE_DIR/answers/$name.json")"
  count=$((count + 1))
done
invoke crm-webhook fixtures/events/crm_seed_124_object_create.json "$STATE_DIR/seed-again.json"
log "$count events invoked in $((SECONDS - started)) s"

python3 "$ROOT/scripts/check_invoke_answers.py" --answers "$STATE_DIR/answers" \
  --seed-again "$STATE_DIR/seed-again.json" --endpoint "http://127.0.0.1:$DYNAMODB_PORT"
