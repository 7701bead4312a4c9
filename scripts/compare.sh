#!/usr/bin/env bash
# compare.sh: run the standard bench scenarios (scripts/scenarios.sh, S1-S4) against several line
# echo servers in turn, each pinned to CPU 0 with the bench pinned to CPU 1, and print one table
# per server.
#
# usage: scripts/compare.sh [SECONDS] [NAME=COMMAND]...
#   SECONDS       how long each scenario runs (default 5)
#   NAME=COMMAND  a server to start; {port} in COMMAND is replaced by a free port. It must listen
#                 on 127.0.0.1:{port}. Without any, compares `echo serve --threads 1` with the
#                 asyncio peer in scripts/peers/asyncio_echo.py.
#
# The echo binary is $ECHO_BIN, else target/release/echo (cargo build --release). Needs taskset
# (util-linux). Loopback only; each server is stopped by its PID after its scenarios.
#
# Exits 1 when a server does not start or any scenario reports errors.
set -euo pipefail
SECS=${1:-5}
[[ $SECS =~ ^[1-9][0-9]*$ ]] || { echo "compare: SECONDS must be a positive number, not '$SECS'" >&2; exit 2; }
shift || true
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"
export ECHO_BIN=${ECHO_BIN:-$ROOT/target/release/echo}
[[ -x $ECHO_BIN ]] || { echo "compare: no echo binary at $ECHO_BIN (cargo build --release)" >&2; exit 2; }
command -v taskset >/dev/null || { echo "compare: taskset is needed (util-linux)" >&2; exit 2; }
if (($# == 0)); then
  set -- "echo-serve=$ECHO_BIN serve -q --threads 1 --listen 127.0.0.1:{port}" \
    "asyncio=python3 $HERE/peers/asyncio_echo.py {port}"
fi

status=0
log=$(mktemp); trap 'rm -f "$log"' EXIT
for server in "$@"; do
  name=${server%%=*} command=${server#*=}
  port=$(free_port)
  : >"$log"
  # shellcheck disable=SC2086 # the command is meant to split into words
  taskset -c 0 ${command//\{port\}/$port} 2>"$log" &
  pid=$!
  for ((i = 0; i < 100; i++)); do
    grep -q "^listening on " "$log" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "== $name"
  if grep -q "^listening on " "$log"; then
    taskset -c 1 "$HERE/scenarios.sh" "127.0.0.1:$port" "$SECS" || status=1
  else
    echo "did not start; its log:" && cat "$log"
    status=1
  fi
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
done
exit $status
