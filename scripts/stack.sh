#!/usr/bin/env bash
# Local stack: moto (a DynamoDB-compatible server) with the tables created, and both
# functions served by `cargo lambda watch`, all on 127.0.0.1, no AWS account, no Docker.
#
#   scripts/stack.sh run        `make run`: start everything, print the local URLs and
#                               a signed curl for each, follow the function logs, stop
#                               everything on Ctrl-C.
#   scripts/stack.sh test [ARGS]  `make test`: start everything on other ports, run
#                               `cargo test --workspace [ARGS] -- --include-ignored`
#                               against it (the suites needing the stack are #[ignore]d),
#                               every answer recorded in .local/test/answers/, stop
#                               everything; exits with cargo test's exit code.
#   scripts/stack.sh soak [ARGS]  `make soak`: as test, with SOAK=1 (full-size suites)
#                               and a one-hour activity freshness window in the past.
#   scripts/stack.sh dynamodb   moto + tables only, until Ctrl-C (for running the
#                               integration tests from an IDE).
#
# Ports: DYNAMODB_PORT / FUNCTIONS_PORT, default 8000/9000 (run, dynamodb), 18000/19000
# (test) and 38000/39000 (soak), so that no two modes clash. These defaults, the development
# secrets and the table names are in scripts/local.env (also read by the tests).
# FUNCTION_CONCURRENCY (default 16): instances per function, as Lambda scales out.
# REUSE_DYNAMODB=1 (run mode): use the DynamoDB already answering on DYNAMODB_PORT (started
# by `scripts/stack.sh dynamodb`) instead of starting one, so that its data survives restarts.
#
# Every variable of docs/contract.md section 5 that is set (non-empty) in the environment reaches
# the functions, except the secrets. Defaults: the table names (crm_entities,
# activities, activity_nonces), CRM_WEBHOOK_SECRET=dev-crm-secret,
# ACTIVITY_CALLBACK_SECRET=dev-activity-secret, CRM_SIGNATURE_HEADER=X-Signature,
# REFUSED_DELIVERIES_TABLE_NAME=refused_deliveries (test and soak modes: the quarantine's global
# cap QUARANTINE_GLOBAL_MAX=40 per QUARANTINE_GLOBAL_WINDOW_SECONDS=60, QUARANTINE_MAX_PER_MINUTE=60),
# RUST_LOG=info, and in `run` mode only LOCAL_STACK_SKIP_FRESHNESS=1 (so that the fixtures'
# 2023 timestamps are accepted). The functions honour it only with a DynamoDB endpoint on this
# machine and refuse to start otherwise; test and soak modes check freshness (300 s back, 30 s
# ahead by default).
#
# Secrets: CRM_WEBHOOK_SECRET[_<mid>] and ACTIVITY_CALLBACK_SECRET[_<mid>] are written by
# scripts/create_secrets.py into moto's Secrets Manager (same server as DynamoDB, secrets
# webhook-ingest/crm-secrets and webhook-ingest/activity-secrets), and the functions read
# them from there (CRM_SECRETS_MANAGER_ID, ACTIVITY_SECRETS_MANAGER_ID), re-reading every
# SECRETS_REFRESH_SECONDS (default 10 in run mode, 2 in test and soak). The secret
# variables never reach the functions' environment, so nothing (cargo lambda's own
# start-up lines included) can print them. Change a tenant's secret while the stack runs:
#   .venv/bin/python scripts/create_secrets.py --endpoint http://127.0.0.1:8000 \
#       set-tenant crm 124 'new-secret,old-secret'
#
# The other variables go through `--env-file` (a file under .local/<mode>/, mode 600) and
# are also exported to the watch process.
#
# After `cargo test`, test mode compares the answer ledger (.local/test/answers/) with the
# EMF metrics in functions.log (the test kit's check-metrics): every request must show up with its
# outcome.
#
# The script stops exactly the processes it started (by recorded PID and their own
# process groups and descendants), on exit, Ctrl-C or TERM. State and logs:
# .local/<mode>/{moto.log,functions.log,functions.env,*.pid}.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/local.env
source "$ROOT/scripts/local.env"


MODE="${1:-}"
[ $# -gt 0 ] && shift
case "$MODE" in
  run | dynamodb)
    DYNAMODB_PORT="${DYNAMODB_PORT:-$LOCAL_RUN_DYNAMODB_PORT}"
    FUNCTIONS_PORT="${FUNCTIONS_PORT:-$LOCAL_RUN_FUNCTIONS_PORT}"
    ;;
  test)
    DYNAMODB_PORT="${DYNAMODB_PORT:-$LOCAL_TEST_DYNAMODB_PORT}"
    FUNCTIONS_PORT="${FUNCTIONS_PORT:-$LOCAL_TEST_FUNCTIONS_PORT}"
    ;;
  soak)
    DYNAMODB_PORT="${DYNAMODB_PORT:-$LOCAL_SOAK_DYNAMODB_PORT}"
    FUNCTIONS_PORT="${FUNCTIONS_PORT:-$LOCAL_SOAK_FUNCTIONS_PORT}"
    ;;
  *)
    sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac

MOTO_READY_TIMEOUT="${MOTO_READY_TIMEOUT:-60}"
FUNCTION_CONCURRENCY="${FUNCTION_CONCURRENCY:-16}"
# The first request to each function compiles it (debug profile): minutes on a fresh
# machine with 2 cores.
FUNCTIONS_READY_TIMEOUT="${FUNCTIONS_READY_TIMEOUT:-900}"

STATE_DIR="$ROOT/.local/$MODE"
DYNAMODB_ENDPOINT="http://127.0.0.1:$DYNAMODB_PORT"
FUNCTIONS_URL="http://127.0.0.1:$FUNCTIONS_PORT"
CRM_LOCAL_URL="$FUNCTIONS_URL/lambda-url/crm-webhook/crm/webhook"
ACTIVITY_LOCAL_URL="$FUNCTIONS_URL/lambda-url/activity-callback/activity"

DYNAMODB_PID="" # the local DynamoDB server (exported to the tests in test mode)
FUNCTIONS_PID=""
TAIL_PID=""

LOG_TAG=stack
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
use_venv

cleanup() {
  if [ -n "$TAIL_PID" ]; then
    kill "$TAIL_PID" 2>/dev/null || true
    wait "$TAIL_PID" 2>/dev/null || true
    TAIL_PID=""
  fi
  stop_started
}
on_exit cleanup

# ------------------------------------------------------------------ dynamodb

# The tables, in a DynamoDB of this run's own. `make run` with REUSE_DYNAMODB=1 keeps using a
# DynamoDB that already answers on the port (`scripts/stack.sh dynamodb` in another terminal),
# so that its data (the quarantine, for a replay after a configuration change) outlives a
# restart of the functions.
start_tables() {
  if [ "$MODE" = run ] && [ "${REUSE_DYNAMODB:-0}" = 1 ] && [ "$(http_status GET "$DYNAMODB_ENDPOINT/" 2)" != 000 ]; then
    log "reusing the DynamoDB that answers on $DYNAMODB_ENDPOINT (REUSE_DYNAMODB=1)"
  else
    start_dynamodb DYNAMODB_PORT
  fi
  "$PYTHON" "$ROOT/scripts/create_tables.py" --endpoint "$DYNAMODB_ENDPOINT" >&2
}

# ------------------------------------------------------------------ functions

# The environment of the functions (and of the tests, which read the same variables).
SPEC_VARS=(
  CRM_TABLE_NAME ACTIVITY_TABLE_NAME ACTIVITY_NONCES_TABLE_NAME
  CRM_SIGNATURE_HEADER ACTIVITY_DEFAULT_MID
  ACTIVITY_MAX_AGE_SECONDS ACTIVITY_MAX_FUTURE_SECONDS LOCAL_STACK_SKIP_FRESHNESS SOURCE_UTC_OFFSET RUST_LOG
  CRM_SECRETS_MANAGER_ID ACTIVITY_SECRETS_MANAGER_ID SECRETS_REFRESH_SECONDS METRICS_NAMESPACE
  CRM_SIGNATURE_ALGORITHM CRM_SIGNATURE_ENCODING REFUSED_DELIVERIES_TABLE_NAME
  QUARANTINE_MAX_PER_MINUTE QUARANTINE_MAX_BODY_BYTES QUARANTINE_RETENTION_DAYS
  QUARANTINE_GLOBAL_MAX QUARANTINE_GLOBAL_WINDOW_SECONDS
)

setup_function_env() {
  export CRM_TABLE_NAME="${CRM_TABLE_NAME:-$LOCAL_CRM_TABLE_NAME}"
  export ACTIVITY_TABLE_NAME="${ACTIVITY_TABLE_NAME:-$LOCAL_ACTIVITY_TABLE_NAME}"
  export ACTIVITY_NONCES_TABLE_NAME="${ACTIVITY_NONCES_TABLE_NAME:-$LOCAL_ACTIVITY_NONCES_TABLE_NAME}"
  export REFUSED_DELIVERIES_TABLE_NAME="${REFUSED_DELIVERIES_TABLE_NAME:-$LOCAL_REFUSED_DELIVERIES_TABLE_NAME}"
  export CRM_WEBHOOK_SECRET="${CRM_WEBHOOK_SECRET:-$LOCAL_CRM_WEBHOOK_SECRET}"
  export ACTIVITY_CALLBACK_SECRET="${ACTIVITY_CALLBACK_SECRET:-$LOCAL_ACTIVITY_CALLBACK_SECRET}"
  export CRM_SIGNATURE_HEADER="${CRM_SIGNATURE_HEADER:-$LOCAL_CRM_SIGNATURE_HEADER}"
  export RUST_LOG="${RUST_LOG:-info}"
  if [ "$MODE" = run ]; then
    export LOCAL_STACK_SKIP_FRESHNESS="${LOCAL_STACK_SKIP_FRESHNESS:-1}"
  fi
  if [ "$MODE" = test ] || [ "$MODE" = soak ]; then
    # The tests sign with exactly these, whatever the caller's environment says. Tenant 900 has
    # its own secret (override of the default); tenant 901 is in the middle of a rotation.
    export CRM_WEBHOOK_SECRET="$LOCAL_CRM_WEBHOOK_SECRET" ACTIVITY_CALLBACK_SECRET="$LOCAL_ACTIVITY_CALLBACK_SECRET"
    export CRM_SIGNATURE_HEADER="$LOCAL_CRM_SIGNATURE_HEADER"
    unset CRM_SIGNATURE_ALGORITHM CRM_SIGNATURE_ENCODING QUARANTINE_MAX_BODY_BYTES QUARANTINE_RETENTION_DAYS
    # A small global quarantine cap, so that the flood test fills it (tests/tests/quarantine.rs),
    # over a minute, so that the suites after the flood wait at most a minute for a record to
    # be kept. The per-instance budget is above it: one instance alone can fill a window, so
    # the flood's figures do not depend on how cargo lambda spreads it over instances.
    export QUARANTINE_GLOBAL_MAX=40 QUARANTINE_GLOBAL_WINDOW_SECONDS=60 QUARANTINE_MAX_PER_MINUTE=60
    export CRM_WEBHOOK_SECRET_900="$LOCAL_CRM_WEBHOOK_SECRET_900" CRM_WEBHOOK_SECRET_901="$LOCAL_CRM_WEBHOOK_SECRET_901"
    unset ACTIVITY_MAX_AGE_SECONDS ACTIVITY_MAX_FUTURE_SECONDS LOCAL_STACK_SKIP_FRESHNESS ACTIVITY_DEFAULT_MID SOURCE_UTC_OFFSET
  fi
  if [ "$MODE" = soak ]; then
    # A full-size history is signed once and delivered twice, which takes longer than the
    # default 300 s window: an hour back leaves room for both deliveries.
    export ACTIVITY_MAX_AGE_SECONDS=3600 SOAK=1
  fi
  export AWS_ENDPOINT_URL_DYNAMODB="$DYNAMODB_ENDPOINT"
  export AWS_ENDPOINT_URL_SECRETS_MANAGER="$DYNAMODB_ENDPOINT"
  export AWS_ACCESS_KEY_ID="$LOCAL_AWS_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$LOCAL_AWS_SECRET_ACCESS_KEY"
  export AWS_DEFAULT_REGION="$LOCAL_AWS_REGION" AWS_REGION="$LOCAL_AWS_REGION"
  export CRM_SECRETS_MANAGER_ID="${CRM_SECRETS_MANAGER_ID:-webhook-ingest/crm-secrets}"
  export ACTIVITY_SECRETS_MANAGER_ID="${ACTIVITY_SECRETS_MANAGER_ID:-webhook-ingest/activity-secrets}"
  if [ "$MODE" = run ]; then
    export SECRETS_REFRESH_SECONDS="${SECRETS_REFRESH_SECONDS:-10}"
  else
    # Short, so that the rotation test sees a change within seconds.
    export SECRETS_REFRESH_SECONDS=2
  fi
}

# secret_vars: the names of the secret variables set in this environment.
secret_vars() {
  compgen -e | grep -E '^(CRM_WEBHOOK_SECRET|ACTIVITY_CALLBACK_SECRET)(_.+)?$' || true
}

# create_secrets: the secret variables into the local Secrets Manager (moto).
create_secrets() {
  "$PYTHON" "$ROOT/scripts/create_secrets.py" --endpoint "$DYNAMODB_ENDPOINT" >&2
}

# env_line NAME: NAME='value' as cargo lambda's --env-file reads it. Its reader has no
# escape for a single quote inside single quotes (and keeps backslashes inside double
# quotes), so a value with a quote or a newline is left out of the file: it still
# reaches the functions exactly, through the exported environment they inherit.
env_line() {
  local name="$1" value="${!1}"
  case "$value" in
    *"'"* | *$'\n'*) log "$name has a quote or a newline: passed through the inherited environment only" ;;
    *) printf "%s='%s'\n" "$name" "$value" ;;
  esac
}

# write_env_file FILE
write_env_file() {
  local file="$1" name
  local names=(AWS_ENDPOINT_URL_DYNAMODB AWS_ENDPOINT_URL_SECRETS_MANAGER AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_DEFAULT_REGION AWS_REGION "${SPEC_VARS[@]}")
  (
    umask 077
    : >"$file"
    for name in "${names[@]}"; do
      if [ -n "${!name:-}" ]; then env_line "$name" >>"$file"; fi
    done
  )
}

# wait_function NAME URL: POST an empty object until the function itself answers
# (2xx-4xx: 400/401 is expected). The first request compiles it.
wait_function() {
  local name="$1" url="$2" deadline code next_note left
  deadline=$((SECONDS + FUNCTIONS_READY_TIMEOUT))
  next_note=$((SECONDS + 30))
  while :; do
    alive "$FUNCTIONS_PID" || {
      tail -n 40 "$STATE_DIR/functions.log" >&2 || true
      die "cargo lambda watch exited"
    }
    if grep -qE '^error(\[E[0-9]+\])?: |error: could not compile' "$STATE_DIR/functions.log"; then
      grep -E -A8 '^error' "$STATE_DIR/functions.log" | head -n 60 >&2 || true
      die "$name does not compile (see ${STATE_DIR#"$ROOT/"}/functions.log)"
    fi
    left=$((deadline - SECONDS))
    [ $left -gt 0 ] || die "$name did not answer within ${FUNCTIONS_READY_TIMEOUT}s (see ${STATE_DIR#"$ROOT/"}/functions.log)"
    code="$(http_status POST "$url" $((left < 10 ? left : 10)) '{}')"
    case "$code" in
      2?? | 3?? | 4??)
        log "$name answers ($code to an unsigned probe)"
        return 0
        ;;
    esac
    if [ $SECONDS -ge $next_note ]; then
      log "waiting for $name to compile and answer (last status $code)..."
      next_note=$((SECONDS + 30))
    fi
    sleep 1
  done
}

start_functions() {
  local env_file="$STATE_DIR/functions.env" watch_args
  port_free "$FUNCTIONS_PORT" FUNCTIONS_PORT
  write_env_file "$env_file"
  # Lambda runs concurrent requests in separate instances; cargo lambda's default of one
  # instance per function would queue them instead (and hide races between writers).
  watch_args=(-A 127.0.0.1 -P "$FUNCTIONS_PORT" --env-file "$env_file" --concurrency "$FUNCTION_CONCURRENCY")
  # Tests run against exactly the code that was there when they started.
  [ "$MODE" != run ] && watch_args+=(--ignore-changes)
  # The secrets live in the local Secrets Manager only: their variables are removed from the
  # watch process's environment, so that neither the functions nor cargo lambda (which at
  # info level logs each function's whole environment) ever hold them. In test mode cargo
  # lambda runs at info level on purpose: the leak test then proves that its lines carry no
  # secret. Elsewhere RUST_LOG reaches the functions through the env file only.
  local unset_args=() name
  for name in $(secret_vars); do unset_args+=(-u "$name"); done
  if [ "$MODE" = test ]; then
    start_bg functions env "${unset_args[@]}" RUST_LOG=info cargo lambda watch "${watch_args[@]}"
  else
    start_bg functions env -u RUST_LOG "${unset_args[@]}" cargo lambda watch "${watch_args[@]}"
  fi
  FUNCTIONS_PID="$LAST_PID"
  log "compiling and starting the functions (the first start can take several minutes)"
  wait_function crm-webhook "$CRM_LOCAL_URL"
  wait_function activity-callback "$ACTIVITY_LOCAL_URL/124"
}

# ------------------------------------------------------------------ modes

# signed_curl SOURCE URL BODY_FILE [extra args]: a ready-to-paste curl, signed with the first of
# the functions' current secrets by `webhookctl send --curl` (the model crate's signers).
signed_curl() {
  local source="$1" url="$2" body="$3" secret
  shift 3
  case "$source" in
    crm) secret="$CRM_WEBHOOK_SECRET" ;;
    activity) secret="$ACTIVITY_CALLBACK_SECRET" ;;
  esac
  cargo run -q --bin webhookctl -- send "$source" --url "$url" --body-file "$body" \
    --secret "${secret%%,*}" --curl "$@"
}

# check_signed_curls: run the two curls `make run` prints against this stack; each must be
# answered 200 (test mode, after the suites, so that what `make run` shows cannot drift from the functions).
check_signed_curls() {
  local source url body command answer
  for source in crm activity; do
    case "$source" in
      crm) url="$CRM_LOCAL_URL" body=fixtures/crm/seed_124_object_create.json ;;
      activity) url="$ACTIVITY_LOCAL_URL/124" body=fixtures/activity/event_add.json ;;
    esac
    command="$(signed_curl "$source" "$url" "$body" --header "$CRM_SIGNATURE_HEADER")"
    answer="$(bash -c "$command -w ' %{http_code}'")" || die "make run's $source curl failed: $answer"
    case "$answer" in
      *" 200") log "make run's signed $source curl answers 200" ;;
      *) die "make run's signed $source curl was answered: $answer" ;;
    esac
  done
}

wait_forever() {
  local pid
  while :; do
    for pid in "${STARTED_PIDS[@]}"; do
      alive "$pid" || die "pid $pid exited unexpectedly (see the logs in ${STATE_DIR#"$ROOT/"}/)"
    done
    sleep 1 &
    wait $! || true
  done
}

mkdir -p "$STATE_DIR"
command -v curl >/dev/null || die "curl is required"
[ -x "$PYTHON" ] || die "$PYTHON not found (run 'make venv')"

case "$MODE" in
  dynamodb)
    start_tables
    log "DynamoDB endpoint: $DYNAMODB_ENDPOINT (Ctrl-C stops it)"
    wait_forever
    ;;

  run)
    start_tables
    setup_function_env
    create_secrets
    command -v cargo-lambda >/dev/null || die "cargo-lambda not found in $VENV_BIN (run 'make venv')"
    start_functions
    {
      echo
      echo "DynamoDB (moto):      $DYNAMODB_ENDPOINT"
      echo "CRM webhook:          $CRM_LOCAL_URL"
      echo "Activity callback:    $ACTIVITY_LOCAL_URL/{mid}"
      echo "LOCAL_STACK_SKIP_FRESHNESS=$LOCAL_STACK_SKIP_FRESHNESS (1: activity timestamps not checked, local stack only)"
      echo "Secrets Manager (moto): $CRM_SECRETS_MANAGER_ID, $ACTIVITY_SECRETS_MANAGER_ID, re-read every ${SECRETS_REFRESH_SECONDS}s"
      echo "  change one: .venv/bin/python scripts/create_secrets.py --endpoint $DYNAMODB_ENDPOINT set-tenant crm 124 'new,old'"
      echo
      echo "Signed CRM webhook (fixtures/crm/seed_124_object_create.json):"
      signed_curl crm "$CRM_LOCAL_URL" fixtures/crm/seed_124_object_create.json \
        --header "$CRM_SIGNATURE_HEADER"
      echo
      echo "Signed activity callback (fixtures/activity/event_add.json):"
      signed_curl activity "$ACTIVITY_LOCAL_URL/124" fixtures/activity/event_add.json
      echo
      echo "Function logs follow (also in ${STATE_DIR#"$ROOT/"}/functions.log). Ctrl-C stops everything."
      echo
    }
    tail -n 0 -f "$STATE_DIR/functions.log" &
    TAIL_PID=$!
    wait_forever
    ;;

  test | soak)
    start_tables
    setup_function_env
    create_secrets
    command -v cargo-lambda >/dev/null || die "cargo-lambda not found in $VENV_BIN (run 'make venv')"
    start_functions
    # The readiness probes are not in the ledger: the metrics check reads the function log
    # from here on (after a moment for the probes' own lines to land).
    sleep 1
    export TEST_FUNCTIONS_LOG="$STATE_DIR/functions.log"
    TEST_FUNCTIONS_LOG_OFFSET="$(stat -c %s "$TEST_FUNCTIONS_LOG")"
    export TEST_FUNCTIONS_LOG_OFFSET
    export TEST_SECRETS_ENDPOINT="$DYNAMODB_ENDPOINT"
    export TEST_DYNAMODB_ENDPOINT="$DYNAMODB_ENDPOINT"
    # The outage test pauses and resumes this process (SIGSTOP/SIGCONT), never ends it.
    export TEST_DYNAMODB_PID="$DYNAMODB_PID"
    export TEST_FUNCTIONS_URL="$FUNCTIONS_URL"
    # The load test reads the memory of the function instances below this process.
    export TEST_FUNCTIONS_PID="$FUNCTIONS_PID"
    # The suites that need this stack are #[ignore]d (so that a plain `cargo test` passes
    # without it): run them too, after any `--` of the caller's own.
    test_args=("$@")
    case " $* " in
      *" -- "*) test_args+=(--include-ignored) ;;
      *) test_args+=(-- --include-ignored) ;;
    esac
    rm -rf "$STATE_DIR/answers"
    export TEST_ANSWER_LEDGER="$STATE_DIR/answers"
    log "running: cargo test --workspace ${test_args[*]}"
    rc=0
    cargo test --workspace "${test_args[@]}" || rc=$?
    if [ $rc -eq 0 ]; then
      # Every answer of the suites is in the ledger: each must be counted in the EMF metrics,
      # with its outcome (before the signed curls below, which the ledger does not hold).
      log "checking the EMF metrics against every answer in the ledger"
      cargo run -q -p tests --bin check-metrics -- \
        --ledger "$TEST_ANSWER_LEDGER" --log "$TEST_FUNCTIONS_LOG" --offset "$TEST_FUNCTIONS_LOG_OFFSET" || rc=$?
    fi
    # After the suites, which expect the seed event's first delivery to be theirs.
    [ $rc -eq 0 ] && check_signed_curls
    if [ $rc -ne 0 ]; then
      log "make test failed ($rc); last lines of the function log:"
      tail -n 60 "$STATE_DIR/functions.log" >&2 || true
    fi
    exit $rc
    ;;
esac
