#!/usr/bin/env bash
# `make bench`: every performance figure in two tables, printed and written to
# .local/bench/results.md and compare.md (docs/performance.md shows the latest ones).
#
#   1. per-event cost: criterion, `cargo bench -p shared --bench ingest`
#   2. arm64 bootstrap sizes: `cargo lambda build --release --arm64` of both functions
#   3. cold start, first and warm invocation latency, peak RSS: the native release bootstraps
#      run by the cold-start harness (the test kit's `cold-start`) against its own Runtime API
#      stand-in and a local moto with the tables, both on 127.0.0.1
#   4. the table: the test kit's `bench-report`
#   5. the side-by-side table against the Python peer (tools/peer/crm_peer.py, run by the
#      same harness), each figure next to its target: warm invocations and init from the runs
#      above; calls and capacity units per event (new entity, cached and uncached update,
#      duplicates: the harness's scenarios, SCENARIO_ROUNDS rounds, default 3) counted by the
#      local DynamoDB (scripts/dynamodb_local.py --accounting); the hot key and growth (the test kit's
#      `storage-bench` and the peer's --storage): scripts/bench_compare.py
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
LOG_TAG=bench
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
use_venv

DYNAMODB_PORT="${BENCH_DYNAMODB_PORT:-28000}"
RUNTIME_API_PORT="${BENCH_RUNTIME_API_PORT:-29001}"
COLD_STARTS="${COLD_STARTS:-20}"
WARM="${WARM:-5}"
SEQUENTIAL="${SEQUENTIAL:-1000}"
CRITERION_ARGS="${CRITERION_ARGS:-}"
FUNCTIONS=(crm-webhook activity-callback)

SCENARIO_ROUNDS="${SCENARIO_ROUNDS:-3}"

STATE_DIR="$ROOT/.local/bench"
DYNAMODB_ENDPOINT="http://127.0.0.1:$DYNAMODB_PORT"

on_exit stop_started

# The local DynamoDB that counts calls and capacity units, its tables (without streams) and the
# tenant secrets in its Secrets Manager, read as deployed (template.yaml): the first invocation
# carries the GetSecretValue round trip.
start_counting_dynamodb() {
  start_dynamodb BENCH_DYNAMODB_PORT --accounting
  "$PYTHON" "$ROOT/scripts/create_tables.py" --without-streams --endpoint "$DYNAMODB_ENDPOINT" >&2
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
start_counting_dynamodb
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
  scenario_args=()
  if [ "$function" = crm-webhook ]; then
    log "… then $SCENARIO_ROUNDS rounds of the per-event scenarios (calls and capacity units)"
    scenario_args=(--scenario-rounds "$SCENARIO_ROUNDS" --scenarios-output "$STATE_DIR/scenarios-$name.json")
  fi
  # shellcheck disable=SC2046 # secrets_args prints whole words
  run_in_group "cold-start $name" "$ROOT/target/release/cold-start" \
    --function "$function" \
    --bootstrap "$bootstrap" \
    --dynamodb-endpoint "$DYNAMODB_ENDPOINT" \
    --runtime-api "127.0.0.1:$RUNTIME_API_PORT" \
    --cold-starts "$COLD_STARTS" --warm "$WARM" --sequential "$SEQUENTIAL" \
    "${scenario_args[@]}" \
    --log "$STATE_DIR/$name.log" \
    --output "$STATE_DIR/coldstart-$name.json" \
    $(secrets_args "$function")
  [ "$name" = peer ] || reports+=(--coldstart "$STATE_DIR/coldstart-$name.json")
done
log "storage: hot key and growth, this project (the test kit's storage-bench) and the peer"
run_in_group "storage-bench" "$ROOT/target/release/storage-bench" --dynamodb-endpoint "$DYNAMODB_ENDPOINT" \
  --output "$STATE_DIR/storage-project.json" >/dev/null
"$PYTHON" "$ROOT/tools/peer/crm_peer.py" --storage "$DYNAMODB_ENDPOINT" \
  "$ROOT/fixtures/crm/lead_object_update.json" "$STATE_DIR/storage-peer.json" >/dev/null
"$PYTHON" "$ROOT/tools/peer/crm_peer.py" --pure "$ROOT/fixtures/crm/seed_124_object_create.json" \
  >"$STATE_DIR/peer-pure.json"
stop_started

log "4/4 the tables (also in ${STATE_DIR#"$ROOT/"}/results.md and compare.md)"
echo
"$ROOT/target/release/bench-report" --criterion target/criterion --lambda-dir target/lambda \
  "${reports[@]}" --output "$STATE_DIR/results.md"
echo
log "this project against the Python peer, same run, same local DynamoDB"
"$PYTHON" "$ROOT/scripts/bench_compare.py" --dir "$STATE_DIR" --criterion target/criterion \
  --output "$STATE_DIR/compare.md"
