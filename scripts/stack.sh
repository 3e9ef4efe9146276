#!/usr/bin/env bash
# Local stack: moto (a DynamoDB-compatible server) with the tables created, and both
# functions served by `cargo lambda watch`, all on 127.0.0.1, no AWS account, no Docker.
#
#   scripts/stack.sh run        `make run`: start everything, print the local URLs and
#                               a signed curl for each, follow the function logs, stop
#                               everything on Ctrl-C.
#   scripts/stack.sh test [ARGS]  `make test`: start everything on other ports, run
#                               `cargo test --workspace [ARGS]` against it, stop
#                               everything; exits with cargo test's exit code.
#   scripts/stack.sh soak [ARGS]  `make soak`: as test, with SOAK=1 (full-size suites)
#                               and a one-hour activity freshness window.
#   scripts/stack.sh dynamodb   moto + tables only, until Ctrl-C (for running the
#                               integration tests from an IDE).
#
# Ports: DYNAMODB_PORT / FUNCTIONS_PORT, default 8000/9000 (run, dynamodb), 18000/19000
# (test) and 38000/39000 (soak), so that no two modes clash.
# FUNCTION_CONCURRENCY (default 16): instances per function, as Lambda scales out.
#
# Every variable of SPEC section 5 that is set (non-empty) in the environment reaches
# the functions, including the per-tenant CRM_WEBHOOK_SECRET_<mid> and
# ACTIVITY_CALLBACK_SECRET_<mid>. Defaults: the three table names (crm_entities,
# activities, activity_nonces), CRM_WEBHOOK_SECRET=dev-crm-secret,
# ACTIVITY_CALLBACK_SECRET=dev-activity-secret, CRM_SIGNATURE_HEADER=X-Signature,
# RUST_LOG=info, and in `run` mode only ACTIVITY_MAX_SKEW_SECONDS=0 (so that the
# fixtures' old timestamps are accepted; the functions' own default is 300).
#
# `cargo lambda watch --env-var` splits its value on commas, and the secrets are
# comma-separated lists, so the variables go through `--env-file` (a file under
# .local/<mode>/, mode 600) and are also exported to the watch process.
#
# The script stops exactly the processes it started (by recorded PID and their own
# process groups and descendants), on exit, Ctrl-C or TERM. State and logs:
# .local/<mode>/{moto.log,functions.log,functions.env,*.pid}.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV_BIN="${VENV_BIN:-$ROOT/.venv/bin}"
export PATH="$VENV_BIN:$PATH"
PYTHON="$VENV_BIN/python"

MODE="${1:-}"
[ $# -gt 0 ] && shift
case "$MODE" in
  run | dynamodb)
    DYNAMODB_PORT="${DYNAMODB_PORT:-8000}"
    FUNCTIONS_PORT="${FUNCTIONS_PORT:-9000}"
    ;;
  test)
    DYNAMODB_PORT="${DYNAMODB_PORT:-18000}"
    FUNCTIONS_PORT="${FUNCTIONS_PORT:-19000}"
    ;;
  soak)
    DYNAMODB_PORT="${DYNAMODB_PORT:-38000}"
    FUNCTIONS_PORT="${FUNCTIONS_PORT:-39000}"
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

STARTED_PIDS=() # session leaders we started (PID == process group id)
DYNAMODB_PID="" # the local DynamoDB server (exported to the tests in test mode)
LAST_PID=""
FUNCTIONS_PID=""
TAIL_PID=""
STOPPED=0

log() { printf '[stack] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# ------------------------------------------------------------------ processes

# descendants PID...: every live descendant of the given PIDs (recursively).
descendants() {
  local table queue=("$@") out=() pid child
  table="$(ps -eo pid=,ppid= 2>/dev/null || true)"
  while [ ${#queue[@]} -gt 0 ]; do
    pid="${queue[0]}"
    queue=("${queue[@]:1}")
    # shellcheck disable=SC2013 # one PID per word
    for child in $(awk -v p="$pid" '$2 == p { print $1 }' <<<"$table"); do
      out+=("$child")
      queue+=("$child")
    done
  done
  echo "${out[@]:-}"
}

alive() { kill -0 "$1" 2>/dev/null; }

# start_bg NAME COMMAND...: run COMMAND in a new session (its own process group),
# output to $STATE_DIR/NAME.log, and record its PID in STARTED_PIDS and LAST_PID
# (written by the process itself, so it is right whether or not setsid had to fork).
# Not to be called in a subshell.
start_bg() {
  local name="$1" pidfile="$STATE_DIR/$1.pid" pid="" i
  shift
  rm -f "$pidfile"
  # shellcheck disable=SC2016 # $$, $0 and $@ belong to the inner shell
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" \
    >"$STATE_DIR/$name.log" 2>&1 </dev/null &
  for i in $(seq 1 100); do
    if [ -s "$pidfile" ]; then
      pid="$(cat "$pidfile")"
      break
    fi
    sleep 0.05
  done
  [ -n "$pid" ] || die "$name did not start (see $STATE_DIR/$name.log)"
  STARTED_PIDS+=("$pid")
  LAST_PID="$pid"
  log "$name started (pid $pid, log ${STATE_DIR#"$ROOT/"}/$name.log)"
}

# stop_pid PID: TERM its process group (cargo lambda shuts its function instances down
# on TERM), wait up to 15 s, then KILL whatever is left of it and its descendants.
stop_pid() {
  local pid="$1" others i
  alive "$pid" || return 0
  others="$(descendants "$pid")"
  # The outage test pauses DynamoDB with SIGSTOP; a paused process would not see TERM.
  kill -CONT "$pid" 2>/dev/null || true
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 150); do
    alive "$pid" || break
    sleep 0.1
  done
  # Function instances run in sessions of their own: catch any left behind.
  others="$others $(descendants "$pid")"
  if alive "$pid"; then
    log "pid $pid did not stop on TERM; killing it"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  for i in $others; do
    if alive "$i"; then kill -KILL "$i" 2>/dev/null || true; fi
  done
  return 0
}

cleanup() {
  [ "$STOPPED" = 1 ] && return 0
  STOPPED=1
  if [ -n "$TAIL_PID" ]; then
    kill "$TAIL_PID" 2>/dev/null || true
    wait "$TAIL_PID" 2>/dev/null || true
  fi
  local i
  # Reverse order: the functions before the database.
  for ((i = ${#STARTED_PIDS[@]} - 1; i >= 0; i--)); do
    stop_pid "${STARTED_PIDS[$i]}"
  done
  [ ${#STARTED_PIDS[@]} -gt 0 ] && log "stopped everything this run started"
  return 0
}

on_signal() {
  trap - INT TERM
  log "$1 received, stopping"
  cleanup
  [ "$1" = INT ] && exit 130
  exit 143
}

trap cleanup EXIT
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM

# port_free PORT: fail if something already listens on 127.0.0.1:PORT.
port_free() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    die "port $1 is already in use (another 'make run'/'make test'?); set $2 to another port"
  fi
}

# http_status METHOD URL MAX_TIME [DATA]: the HTTP status, or 000 when nothing answered.
http_status() {
  local code
  code="$(curl -s -o /dev/null -w '%{http_code}' -X "$1" --max-time "$3" \
    -H 'content-type: application/json' ${4:+--data "$4"} "$2" 2>/dev/null)" || true
  echo "${code:-000}"
}

# ------------------------------------------------------------------ dynamodb

start_dynamodb() {
  local pid deadline code
  local server=(moto_server)
  # scripts/dynamodb_local.py serves moto one request at a time (moto's threaded server
  # can lose a write that lands while a cancelled transaction restores its snapshot);
  # plain moto_server is the fallback.
  [ -f "$ROOT/scripts/dynamodb_local.py" ] && server=("$PYTHON" "$ROOT/scripts/dynamodb_local.py")
  command -v moto_server >/dev/null || die "moto_server not found in $VENV_BIN (run 'make venv')"
  port_free "$DYNAMODB_PORT" DYNAMODB_PORT
  start_bg moto "${server[@]}" -H 127.0.0.1 -p "$DYNAMODB_PORT"
  pid="$LAST_PID"
  DYNAMODB_PID="$pid"
  deadline=$((SECONDS + MOTO_READY_TIMEOUT))
  while :; do
    alive "$pid" || {
      tail -n 20 "$STATE_DIR/moto.log" >&2 || true
      die "moto exited"
    }
    code="$(http_status GET "$DYNAMODB_ENDPOINT/" 2)"
    [ "$code" != 000 ] && break
    [ $SECONDS -lt $deadline ] || die "moto did not answer on $DYNAMODB_ENDPOINT within ${MOTO_READY_TIMEOUT}s"
    sleep 0.2
  done
  log "moto answers on $DYNAMODB_ENDPOINT"
  "$PYTHON" "$ROOT/scripts/create_tables.py" --endpoint "$DYNAMODB_ENDPOINT" >&2
}

# ------------------------------------------------------------------ functions

# The environment of the functions (and of the tests, which read the same variables).
SPEC_VARS=(
  CRM_TABLE_NAME ACTIVITY_TABLE_NAME ACTIVITY_NONCES_TABLE_NAME
  CRM_WEBHOOK_SECRET CRM_SIGNATURE_HEADER ACTIVITY_CALLBACK_SECRET ACTIVITY_DEFAULT_MID
  ACTIVITY_MAX_SKEW_SECONDS SOURCE_UTC_OFFSET RUST_LOG
)

setup_function_env() {
  export CRM_TABLE_NAME="${CRM_TABLE_NAME:-crm_entities}"
  export ACTIVITY_TABLE_NAME="${ACTIVITY_TABLE_NAME:-activities}"
  export ACTIVITY_NONCES_TABLE_NAME="${ACTIVITY_NONCES_TABLE_NAME:-activity_nonces}"
  export CRM_WEBHOOK_SECRET="${CRM_WEBHOOK_SECRET:-dev-crm-secret}"
  export ACTIVITY_CALLBACK_SECRET="${ACTIVITY_CALLBACK_SECRET:-dev-activity-secret}"
  export CRM_SIGNATURE_HEADER="${CRM_SIGNATURE_HEADER:-X-Signature}"
  export RUST_LOG="${RUST_LOG:-info}"
  if [ "$MODE" = run ]; then
    export ACTIVITY_MAX_SKEW_SECONDS="${ACTIVITY_MAX_SKEW_SECONDS:-0}"
  fi
  if [ "$MODE" = test ] || [ "$MODE" = soak ]; then
    # The tests sign with exactly these, whatever the caller's environment says. Tenant 900 has
    # its own secret (override of the default); tenant 901 is in the middle of a rotation.
    export CRM_WEBHOOK_SECRET=dev-crm-secret ACTIVITY_CALLBACK_SECRET=dev-activity-secret
    export CRM_SIGNATURE_HEADER=X-Signature
    export CRM_WEBHOOK_SECRET_900=tenant-900-secret CRM_WEBHOOK_SECRET_901="new-901,old-901"
    unset ACTIVITY_MAX_SKEW_SECONDS ACTIVITY_DEFAULT_MID SOURCE_UTC_OFFSET
  fi
  if [ "$MODE" = soak ]; then
    # A full-size history is signed once and delivered twice, which takes longer than the
    # default 300 s window: an hour leaves room for both deliveries.
    export ACTIVITY_MAX_SKEW_SECONDS=3600 SOAK=1
  fi
  export AWS_ENDPOINT_URL_DYNAMODB="$DYNAMODB_ENDPOINT"
  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
  export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
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
  local names=(AWS_ENDPOINT_URL_DYNAMODB AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_DEFAULT_REGION AWS_REGION "${SPEC_VARS[@]}")
  while IFS= read -r name; do
    case "$name" in CRM_WEBHOOK_SECRET_?* | ACTIVITY_CALLBACK_SECRET_?*) names+=("$name") ;; esac
  done < <(compgen -e)
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
  # RUST_LOG reaches the functions through the env file only: cargo lambda reads it
  # too, and at info level it logs each function's whole environment (the secrets).
  start_bg functions env -u RUST_LOG cargo lambda watch "${watch_args[@]}"
  FUNCTIONS_PID="$LAST_PID"
  log "compiling and starting the functions (the first start can take several minutes)"
  wait_function crm-webhook "$CRM_LOCAL_URL"
  wait_function activity-callback "$ACTIVITY_LOCAL_URL/124"
}

# ------------------------------------------------------------------ modes

# signed_curl KIND URL SECRET BODY_FILE [extra args]: a ready-to-paste curl, from the
# tools' signing tool.
signed_curl() {
  local kind="$1" url="$2" secret="$3" body="$4"
  shift 4
  if ! cargo run -q -p tools --bin webhook-sign -- "$kind" --url "$url" \
    --secret "$secret" "$@" --body-file "$body" 2>"$STATE_DIR/webhook-sign.err"; then
    echo "  (could not build the signed curl: see ${STATE_DIR#"$ROOT/"}/webhook-sign.err)"
  fi
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
    start_dynamodb
    log "DynamoDB endpoint: $DYNAMODB_ENDPOINT (Ctrl-C stops it)"
    wait_forever
    ;;

  run)
    start_dynamodb
    setup_function_env
    command -v cargo-lambda >/dev/null || die "cargo-lambda not found in $VENV_BIN (run 'make venv')"
    start_functions
    {
      echo
      echo "DynamoDB (moto):      $DYNAMODB_ENDPOINT"
      echo "CRM webhook:          $CRM_LOCAL_URL"
      echo "Activity callback:    $ACTIVITY_LOCAL_URL/{mid}"
      echo "ACTIVITY_MAX_SKEW_SECONDS=$ACTIVITY_MAX_SKEW_SECONDS (0: timestamp freshness not checked)"
      echo
      echo "Signed CRM webhook (fixtures/crm/seed_124_object_create.json):"
      signed_curl crm-curl "$CRM_LOCAL_URL" "${CRM_WEBHOOK_SECRET%%,*}" \
        fixtures/crm/seed_124_object_create.json --header "$CRM_SIGNATURE_HEADER"
      echo
      echo "Signed activity callback (fixtures/activity/event_add.json):"
      signed_curl activity-curl "$ACTIVITY_LOCAL_URL/124" "${ACTIVITY_CALLBACK_SECRET%%,*}" \
        fixtures/activity/event_add.json
      echo
      echo "Function logs follow (also in ${STATE_DIR#"$ROOT/"}/functions.log). Ctrl-C stops everything."
      echo
    }
    tail -n 0 -f "$STATE_DIR/functions.log" &
    TAIL_PID=$!
    wait_forever
    ;;

  test | soak)
    start_dynamodb
    setup_function_env
    command -v cargo-lambda >/dev/null || die "cargo-lambda not found in $VENV_BIN (run 'make venv')"
    start_functions
    export TEST_DYNAMODB_ENDPOINT="$DYNAMODB_ENDPOINT"
    # The outage test pauses and resumes this process (SIGSTOP/SIGCONT), never ends it.
    export TEST_DYNAMODB_PID="$DYNAMODB_PID"
    export TEST_FUNCTIONS_URL="$FUNCTIONS_URL"
    # The load test reads the memory of the function instances below this process.
    export TEST_FUNCTIONS_PID="$FUNCTIONS_PID"
    log "running: cargo test --workspace $*"
    rc=0
    cargo test --workspace "$@" || rc=$?
    if [ $rc -ne 0 ]; then
      log "cargo test failed ($rc); last lines of the function log:"
      tail -n 60 "$STATE_DIR/functions.log" >&2 || true
    fi
    exit $rc
    ;;
esac
