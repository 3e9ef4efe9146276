#!/usr/bin/env bash
# `make bench`: every performance figure in one table, printed and written to
# .local/bench/results.md (docs/performance.md shows the latest one).
#
#   1. per-event cost: criterion, `cargo bench -p shared --bench ingest`
#   2. arm64 bootstrap sizes: `cargo lambda build --release --arm64` of both functions
#   3. cold start, first and warm invocation latency, peak RSS: the native release bootstraps
#      run by the cold-start harness (the test kit's `cold-start`) against its own Runtime API
#      stand-in and a local moto with the tables, both on 127.0.0.1
#   4. the table: the test kit's `bench-report`
#   5. the side-by-side table against the Python peer (tools/peer/crm_peer.py, run by the
#      same harness), with calls and capacity units counted by the local DynamoDB wrapper, the
#      hot-key and growth cases (the test kit's `storage-bench`): scripts/bench_compare.py
#
# Ports: BENCH_DYNAMODB_PORT (28000) and BENCH_RUNTIME_API_PORT (29001), apart from
# `make test` (18000/19000) and `make run` (8000/9000). COLD_STARTS (20), WARM (5 events after
# the first in each cold-started process) and SEQUENTIAL (1000, the peak-RSS run) size the
# harness runs; CRITERION_ARGS is passed to the criterion benchmark (e.g. --quick).
#
# Everything this script starts (moto, the harness and its function processes) runs in a
# process group of its own and is stopped by PID on exit, failure, Ctrl-C or TERM.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV_BIN="${VENV_BIN:-$ROOT/.venv/bin}"
export PATH="$VENV_BIN:$PATH"
PYTHON="$VENV_BIN/python"

DYNAMODB_PORT="${BENCH_DYNAMODB_PORT:-28000}"
RUNTIME_API_PORT="${BENCH_RUNTIME_API_PORT:-29001}"
COLD_STARTS="${COLD_STARTS:-20}"
WARM="${WARM:-5}"
SEQUENTIAL="${SEQUENTIAL:-1000}"
CRITERION_ARGS="${CRITERION_ARGS:-}"
FUNCTIONS=(crm-webhook activity-callback)

STATE_DIR="$ROOT/.local/bench"
DYNAMODB_ENDPOINT="http://127.0.0.1:$DYNAMODB_PORT"
STARTED_PIDS=()

log() { printf '[bench] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

alive() { kill -0 "$1" 2>/dev/null; }

# stop_group PID: TERM the process group PID leads, then KILL what is left after 10 s.
stop_group() {
  local pid="$1" i
  alive "$pid" || return 0
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do
    alive "$pid" || return 0
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
}

# forget PID: a process that has ended and needs no stopping.
forget() {
  local kept=() i
  for i in "${STARTED_PIDS[@]}"; do [ "$i" = "$1" ] || kept+=("$i"); done
  STARTED_PIDS=("${kept[@]}")
}

cleanup() {
  local i
  for ((i = ${#STARTED_PIDS[@]} - 1; i >= 0; i--)); do
    stop_group "${STARTED_PIDS[$i]}"
  done
  STARTED_PIDS=()
}

trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

# in_group NAME COMMAND...: run COMMAND in a new session (so that its children can be stopped
# with it) and wait for it; its exit status is returned. Output goes to the terminal.
in_group() {
  local name="$1" pid rc=0
  shift
  setsid "$@" &
  pid=$!
  STARTED_PIDS+=("$pid")
  wait "$pid" || rc=$?
  forget "$pid"
  [ $rc -eq 0 ] || log "$name failed ($rc)"
  return $rc
}

port_free() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    die "port $1 is already in use; set $2 to another port"
  fi
}

start_dynamodb() {
  local pid deadline
  port_free "$DYNAMODB_PORT" BENCH_DYNAMODB_PORT
  setsid "$PYTHON" "$ROOT/scripts/dynamodb_local.py" --accounting -H 127.0.0.1 -p "$DYNAMODB_PORT" \
    >"$STATE_DIR/moto.log" 2>&1 </dev/null &
  pid=$!
  STARTED_PIDS+=("$pid")
  deadline=$((SECONDS + 60))
  until curl -s -o /dev/null --max-time 2 "$DYNAMODB_ENDPOINT/"; do
    alive "$pid" || die "moto exited (see ${STATE_DIR#"$ROOT/"}/moto.log)"
    [ $SECONDS -lt $deadline ] || die "moto did not answer on $DYNAMODB_ENDPOINT within 60 s"
    sleep 0.2
  done
  log "moto answers on $DYNAMODB_ENDPOINT (pid $pid)"
  "$PYTHON" "$ROOT/scripts/bench_tables.py" --endpoint "$DYNAMODB_ENDPOINT" >&2
  # The tenant secrets in moto's Secrets Manager, read as deployed (template.yaml): the first
  # invocation carries the GetSecretValue round trip.
  CRM_WEBHOOK_SECRET=dev-crm-secret ACTIVITY_CALLBACK_SECRET=dev-activity-secret \
    "$PYTHON" "$ROOT/scripts/create_secrets.py" --endpoint "$DYNAMODB_ENDPOINT" >&2
}

# secrets_args FUNCTION: the harness's extra variables that point FUNCTION at its secret
# (BENCH_SECRETS=env keeps the development secrets in the environment instead).
secrets_args() {
  [ "${BENCH_SECRETS:-secretsmanager}" = env ] && return 0
  local variable=CRM_SECRETS_MANAGER_ID id=webhook-ingest/crm-secrets
  if [ "$1" = activity-callback ]; then
    variable=ACTIVITY_SECRETS_MANAGER_ID id=webhook-ingest/activity-secrets
  fi
  echo --env "$variable=$id" --env "AWS_ENDPOINT_URL_SECRETS_MANAGER=$DYNAMODB_ENDPOINT"
}

# The harness gives the functions the local table names; the tables are created under them.
unset CRM_TABLE_NAME ACTIVITY_TABLE_NAME ACTIVITY_NONCES_TABLE_NAME

mkdir -p "$STATE_DIR"
command -v curl >/dev/null || die "curl is required"
[ -x "$PYTHON" ] || die "$PYTHON not found (run 'make venv')"
command -v cargo-lambda >/dev/null || die "cargo-lambda not found in $VENV_BIN (run 'make venv')"
port_free "$RUNTIME_API_PORT" BENCH_RUNTIME_API_PORT

package_args=()
for function in "${FUNCTIONS[@]}"; do package_args+=(-p "$function"); done

log "1/4 criterion: cargo bench -p shared --features mimalloc --bench ingest $CRITERION_ARGS"
# With the functions' allocator, so that the figure is what they run.
# shellcheck disable=SC2086 # CRITERION_ARGS is a list of words
cargo bench -p shared --features mimalloc --bench ingest -- $CRITERION_ARGS

log "2/4 arm64 bootstraps: cargo lambda build --release --arm64 ${package_args[*]}"
cargo lambda build --release --arm64 "${package_args[@]}"

log "3/4 native release bootstraps and the harness"
# Separate builds: the functions are built with exactly their own dependency features.
cargo build --release "${package_args[@]}"
cargo build --release -p tests --bin cold-start --bin bench-report --bin storage-bench
start_dynamodb
# The Python peer (tools/peer/crm_peer.py) runs as a Lambda process like the bootstraps.
PEER_BOOTSTRAP="$STATE_DIR/peer/bootstrap"
mkdir -p "$(dirname "$PEER_BOOTSTRAP")"
printf '#!/bin/sh\nexec "%s" "%s"\n' "$PYTHON" "$ROOT/tools/peer/crm_peer.py" >"$PEER_BOOTSTRAP"
chmod +x "$PEER_BOOTSTRAP"
reports=()
# name, --function of the harness, bootstrap
runs=("crm-webhook crm-webhook $ROOT/target/release/crm-webhook"
  "activity-callback activity-callback $ROOT/target/release/activity-callback"
  "peer crm-webhook $PEER_BOOTSTRAP")
for run in "${runs[@]}"; do
  read -r name function bootstrap <<<"$run"
  log "cold-start harness: $name ($COLD_STARTS cold starts, $SEQUENTIAL sequential invocations)"
  curl -s -X POST "$DYNAMODB_ENDPOINT/_bench/reset" >/dev/null
  in_group "cold-start $name" "$ROOT/target/release/cold-start" \
    --function "$function" \
    --bootstrap "$bootstrap" \
    --dynamodb-endpoint "$DYNAMODB_ENDPOINT" \
    --runtime-api "127.0.0.1:$RUNTIME_API_PORT" \
    --cold-starts "$COLD_STARTS" --warm "$WARM" --sequential "$SEQUENTIAL" \
    --log "$STATE_DIR/$name.log" \
    --output "$STATE_DIR/coldstart-$name.json" \
    $(secrets_args "$function")
  curl -s "$DYNAMODB_ENDPOINT/_bench/calls" >"$STATE_DIR/calls-$name.json"
  [ "$name" = peer ] || reports+=(--coldstart "$STATE_DIR/coldstart-$name.json")
done
log "storage: hot key and growth, this project (storage-bench) and the peer"
in_group "storage-bench" "$ROOT/target/release/storage-bench" --dynamodb-endpoint "$DYNAMODB_ENDPOINT" \
  --output "$STATE_DIR/storage-project.json" >/dev/null
"$PYTHON" "$ROOT/tools/peer/crm_peer.py" --storage "$DYNAMODB_ENDPOINT" \
  "$ROOT/fixtures/crm/lead_object_update.json" "$STATE_DIR/storage-peer.json" >/dev/null
"$PYTHON" "$ROOT/tools/peer/crm_peer.py" --pure "$ROOT/fixtures/crm/seed_124_object_create.json" \
  >"$STATE_DIR/peer-pure.json"
cleanup

log "4/4 the table (also in ${STATE_DIR#"$ROOT/"}/results.md)"
echo
"$ROOT/target/release/bench-report" --criterion target/criterion --lambda-dir target/lambda \
  "${reports[@]}" --output "$STATE_DIR/results.md"
echo
log "this project against the Python peer, same run (also in ${STATE_DIR#"$ROOT/"}/compare.md)"
"$PYTHON" "$ROOT/scripts/bench_compare.py" --dir "$STATE_DIR" --criterion target/criterion \
  --output "$STATE_DIR/compare.md"
