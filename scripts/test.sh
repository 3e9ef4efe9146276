#!/usr/bin/env bash
# `make test`: every check of the project, in the order docs/testing.md gives.
#
# On a fresh machine a third of the time went to pip (the dev venv, then checkov's own venv)
# while both cores sat idle waiting for the network, and then to cargo while the network sat
# idle. So the two installs run in the background while cargo checks and builds everything; the
# stack starts once both the build and the dev venv are ready, and the template checks run last.
# Any failure stops the run with that step's exit code, and the background install is ended.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MAKE="${MAKE:-make}"
INSTALL_LOG=".local/install.log"
mkdir -p .local

log() { printf '[test] %s\n' "$*" >&2; }

log "installing the Python tools in the background (log: $INSTALL_LOG)"
"$MAKE" --no-print-directory venv checkov-venv >"$INSTALL_LOG" 2>&1 &
INSTALL_PID=$!
# Ends the install if the run stops early (its children are pip processes of its own).
trap 'kill "$INSTALL_PID" 2>/dev/null || true' EXIT

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# Everything `cargo test --workspace`, `cargo lambda watch` and the stack's curls will need,
# built now while pip runs, so that the stack starts on a warm target directory. The watch runs
# `cargo run --bin <function>` and the stack `cargo run --bin webhookctl`, both without `-p`: every
# member is selected, so dependencies are built with the same features as by `--workspace
# --bins` here (a `-p` build selects fewer members and would build the SDK once more).
cargo test --workspace --no-run
cargo build --workspace --bins

if ! wait "$INSTALL_PID"; then
  log "installing the Python tools failed:"
  cat "$INSTALL_LOG" >&2
  exit 1
fi
trap - EXIT

bash scripts/stack.sh test
.venv/bin/python scripts/check_answers.py --ledger .local/test/answers
.venv/bin/python scripts/check_docs_test.py
.venv/bin/python scripts/check_docs.py
"$MAKE" --no-print-directory validate
