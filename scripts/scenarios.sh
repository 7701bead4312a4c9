#!/usr/bin/env bash
# scenarios.sh: load an echo server with the four standard scenarios of `echo bench` and print a
# table of lines/s, MiB/s, latency and errors.
#
# usage: scripts/scenarios.sh [ADDR] [SECONDS]
#   ADDR     the server, host:port or [v6addr]:port (default localhost:8007)
#   SECONDS  how long each scenario runs (default 5)
# The bench binary is $ECHO_BIN, else target/release/echo of this repository (build it with
# `cargo build --release`); `echo` alone would be the shell builtin.
#
#   S1  -c 1  -p 1  -s 64     one connection in ping-pong: round-trip latency
#   S2  -c 50 -p 1  -s 64     many connections, one line in flight each
#   S3  -c 50 -p 32 -s 64     many connections, pipelined: the server's batching
#   S4  -c 10 -p 4  -s 16384  long lines: throughput in MiB/s
#
# Exits 1 when any scenario fails or reports errors.
set -euo pipefail
ADDR=${1:-localhost:8007}
SECS=${2:-5}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=${ECHO_BIN:-$ROOT/target/release/echo}
[[ -x $BENCH ]] || { echo "scenarios: no echo binary at $BENCH (cargo build --release, or set ECHO_BIN)" >&2; exit 2; }

# One number from the bench's flat JSON (latency keys are unique too).
field() { sed -n "s/.*\"$2\":\([-0-9.]*\).*/\1/p" <<<"$1"; }

err=$(mktemp); trap 'rm -f "$err"' EXIT
status=0
printf '%-4s %-24s %12s %9s %9s %9s %9s %7s\n' scen args lines/s MiB/s p50_us p99_us p999_us errors
for s in "S1:-c 1 -p 1 -s 64" "S2:-c 50 -p 1 -s 64" "S3:-c 50 -p 32 -s 64" "S4:-c 10 -p 4 -s 16384"; do
  name=${s%%:*}; args=${s#*:}
  # shellcheck disable=SC2086 # $args is meant to split into flags
  json=$("$BENCH" bench "$ADDR" $args -d "${SECS}s" --json 2>"$err") || status=1
  if [[ -z $json ]]; then
    printf '%-4s %-24s %s\n' "$name" "$args" "$(head -n1 "$err")"
    continue
  fi
  errors=$(field "$json" errors)
  [[ $errors == 0 ]] || status=1
  printf '%-4s %-24s %12s %9s %9s %9s %9s %7s\n' "$name" "$args" "$(field "$json" lines_per_s)" \
    "$(field "$json" mib_per_s)" "$(field "$json" p50)" "$(field "$json" p99)" "$(field "$json" p999)" "$errors"
done
exit $status
