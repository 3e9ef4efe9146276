# shellcheck shell=bash
# What the scripts share, sourced by each (`source "$ROOT/scripts/lib.sh"`): log lines, the
# processes a script starts (each in a session of its own, stopped by PID with everything below
# it), ports, and the local DynamoDB (scripts/dynamodb_local.py).
#
# The caller sets LOG_TAG (the prefix of its log lines) and, for start_bg and start_dynamodb,
# STATE_DIR (where the logs and PID files go), ROOT and PYTHON.

log() { printf '[%s] %s\n' "${LOG_TAG:-scripts}" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

alive() { kill -0 "$1" 2>/dev/null; }

# use_venv: the venv's tools first on PATH (VENV_BIN, default .venv/bin); PYTHON is its python.
use_venv() {
  VENV_BIN="${VENV_BIN:-$ROOT/.venv/bin}"
  PYTHON="$VENV_BIN/python"
  export PATH="$VENV_BIN:$PATH"
}

# export_local_env: every default of scripts/local.env exported, for scripts whose children
# read them (the stack reads them without exporting, to keep the secrets from its children).
export_local_env() {
  set -a
  # shellcheck source=scripts/local.env
  source "$ROOT/scripts/local.env"
  set +a
}

# ------------------------------------------------------------------ processes

STARTED_PIDS=() # session leaders this script started (PID == process group id), oldest first
LAST_PID=""     # the one start_bg started last

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

# start_bg NAME COMMAND...: run COMMAND in a new session (its own process group), output to
# $STATE_DIR/NAME.log, and record its PID in STARTED_PIDS and LAST_PID (written by the process
# itself, so it is right whether or not setsid had to fork). Not to be called in a subshell.
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

# run_in_group NAME COMMAND...: run COMMAND in a new session (so that its children are stopped
# with it on Ctrl-C), output to the terminal, and wait for it; returns its exit status.
run_in_group() {
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

# forget PID: a process that has ended and needs no stopping.
forget() {
  local kept=() i
  for i in "${STARTED_PIDS[@]}"; do [ "$i" = "$1" ] || kept+=("$i"); done
  STARTED_PIDS=("${kept[@]}")
}

# stop_pid PID [SIGNAL]: SIGNAL (default TERM) to its process group (cargo lambda shuts its
# function instances down on TERM, SAM its containers on INT), wait up to 15 s, then KILL
# whatever is left of it and its descendants.
stop_pid() {
  local pid="$1" signal="${2:-TERM}" others i
  alive "$pid" || return 0
  others="$(descendants "$pid")"
  # The outage test pauses DynamoDB with SIGSTOP; a paused process would not see the signal.
  kill -CONT "$pid" 2>/dev/null || true
  kill -"$signal" -- "-$pid" 2>/dev/null || kill -"$signal" "$pid" 2>/dev/null || true
  for i in $(seq 1 150); do
    alive "$pid" || break
    sleep 0.1
  done
  # Processes that run in sessions of their own (function instances): catch any left behind.
  others="$others $(descendants "$pid")"
  if alive "$pid"; then
    log "pid $pid did not stop on $signal; killing it"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  for i in $others; do
    if alive "$i"; then kill -KILL "$i" 2>/dev/null || true; fi
  done
  return 0
}

# stop_started: stop everything in STARTED_PIDS, newest first (the functions before the
# database); a second call finds nothing to stop.
stop_started() {
  local i
  for ((i = ${#STARTED_PIDS[@]} - 1; i >= 0; i--)); do
    stop_pid "${STARTED_PIDS[$i]}"
  done
  [ ${#STARTED_PIDS[@]} -gt 0 ] && log "stopped everything this run started"
  STARTED_PIDS=()
  return 0
}

# on_exit FUNCTION: FUNCTION runs on exit, and on Ctrl-C or TERM before the script exits
# (130 or 143).
on_exit() {
  # shellcheck disable=SC2064 # FUNCTION is fixed now
  trap "$1" EXIT
  # shellcheck disable=SC2064
  trap "trap - INT TERM; log 'INT received, stopping'; $1; exit 130" INT
  # shellcheck disable=SC2064
  trap "trap - INT TERM; log 'TERM received, stopping'; $1; exit 143" TERM
}

# ------------------------------------------------------------------ ports

# port_free PORT VARIABLE: fail if something already listens on 127.0.0.1:PORT.
port_free() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    die "port $1 is already in use (another 'make run'/'make test'/'make bench'?); set $2 to another port"
  fi
}

# http_status METHOD URL MAX_TIME [DATA]: the HTTP status, or 000 when nothing answered.
http_status() {
  local code
  code="$(curl -s -o /dev/null -w '%{http_code}' -X "$1" --max-time "$3" \
    -H 'content-type: application/json' ${4:+--data "$4"} "$2" 2>/dev/null)" || true
  echo "${code:-000}"
}

# ------------------------------------------------------------------ the local DynamoDB

# start_dynamodb PORT_VARIABLE [SERVER ARGS...]: scripts/dynamodb_local.py (moto, one request at
# a time) on 127.0.0.1:$DYNAMODB_PORT, with SERVER ARGS (e.g. --accounting); returns once it
# answers, with its PID in DYNAMODB_PID. PORT_VARIABLE names the variable that moves the port,
# for the message when it is taken. No tables: the caller creates them.
start_dynamodb() {
  local port_variable="$1" deadline
  shift
  command -v moto_server >/dev/null || die "moto is not installed (run 'make venv')"
  port_free "$DYNAMODB_PORT" "$port_variable"
  start_bg moto "$PYTHON" "$ROOT/scripts/dynamodb_local.py" "$@" -H 127.0.0.1 -p "$DYNAMODB_PORT"
  DYNAMODB_PID="$LAST_PID"
  deadline=$((SECONDS + ${MOTO_READY_TIMEOUT:-60}))
  until [ "$(http_status GET "http://127.0.0.1:$DYNAMODB_PORT/" 2)" != 000 ]; do
    alive "$DYNAMODB_PID" || {
      tail -n 20 "$STATE_DIR/moto.log" >&2 || true
      die "moto exited"
    }
    [ $SECONDS -lt "$deadline" ] || die "moto did not answer on 127.0.0.1:$DYNAMODB_PORT within ${MOTO_READY_TIMEOUT:-60}s"
    sleep 0.2
  done
  log "moto answers on http://127.0.0.1:$DYNAMODB_PORT"
}
