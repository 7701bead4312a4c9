#!/usr/bin/env bash
# syscalls.sh: count the system calls a line echo server makes per echoed line in the standard
# scenarios (S1-S4 of scripts/scenarios.sh), with perf's syscall tracepoints, and print one
# markdown table: per scenario the total per line and the most frequent calls.
#
# usage: scripts/syscalls.sh [NAME=COMMAND]...
#   NAME=COMMAND  a server to count; without any, `echo serve --threads 1` of this repository.
#                 COMMAND must print `listening on HOST:PORT` on stderr once it listens on
#                 127.0.0.1. A {port} in it is replaced by a free port (for servers that cannot
#                 be given port 0); otherwise give it port 0 and the port is read from that line.
# environment:
#   LINES      lines each scenario sends in total (default 200000)
#   SCENARIOS  which of S1 S2 S3 S4 to run (default all four)
#   TOP        how many calls to name per scenario (default 4)
#   SYSCALLS   the calls counted by name (default: the ones an event-loop socket server makes,
#              below); `*` counts every one. The total is always all calls.
#
# Each scenario starts the server afresh, pinned to CPU 0, directly under `perf stat` with the
# tracepoint raw_syscalls:sys_enter (every call) and syscalls:sys_enter_NAME for each named call
# (every thread of it is counted, from exec to exit), runs
# `echo bench -n LINES` pinned to CPU 1, then stops the server with SIGTERM (the server, not
# perf). Start-up and shutdown are counted too; with 200,000 lines they add less than 0.01 per
# line; calls left out of SYSCALLS show as `other`. The count is what the server asks of the
# kernel, so unlike lines/s it hardly moves with the machine's load. Each counter is switched at
# every context switch of the server: all 350-odd tracepoints (SYSCALLS='*') slow a ping-pong
# server several-fold and make perf take seconds to exit, so by default only about 20 are named.
#
# Needs perf with tracepoint access (root, or kernel.perf_event_paranoid <= -1), taskset and
# python3. The echo binary (load generator, and default server) is $ECHO_BIN, else
# target/release/echo (cargo build --release). Loopback only; stops only what it started.
# Exits 1 when a server does not start, perf reports nothing, or a scenario has errors.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib.sh
source "$ROOT/scripts/lib.sh"
ECHO_BIN=${ECHO_BIN:-$ROOT/target/release/echo}
LINES=${LINES:-200000}
SCENARIOS=${SCENARIOS:-"S1 S2 S3 S4"}
TOP=${TOP:-4}
SYSCALLS=${SYSCALLS:-"read write readv writev recvfrom sendto recvmsg sendmsg epoll_wait epoll_pwait
  epoll_pwait2 epoll_ctl timerfd_settime futex accept4 close shutdown setsockopt sched_yield poll
  ppoll io_uring_enter"}
PERF=${PERF:-$(command -v perf || echo /usr/bin/perf)}
[[ -x $ECHO_BIN ]] || { echo "syscalls: no echo binary at $ECHO_BIN (cargo build --release)" >&2; exit 2; }
[[ -x $PERF ]] || { echo "syscalls: perf is needed (linux-perf / linux-tools)" >&2; exit 2; }
command -v taskset >/dev/null || { echo "syscalls: taskset is needed (util-linux)" >&2; exit 2; }
[[ $LINES =~ ^[1-9][0-9]*$ ]] || { echo "syscalls: LINES must be a positive number, not '$LINES'" >&2; exit 2; }
"$PERF" stat -e 'syscalls:sys_enter_read' true >/dev/null 2>&1 ||
  { echo "syscalls: perf cannot read syscall tracepoints here (root, perf_event_paranoid)" >&2; exit 2; }
events=raw_syscalls:sys_enter
for call in $SYSCALLS; do events+=",syscalls:sys_enter_$call"; done
(($# > 0)) || set -- "echo-serve=$ECHO_BIN serve --listen 127.0.0.1:0 -q --threads 1"
# 10,000 connections is not among the scenarios, but 50 sockets plus the server's own must fit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

declare -A ARGS=([S1]="-c 1 -p 1 -s 64" [S2]="-c 50 -p 1 -s 64" [S3]="-c 50 -p 32 -s 64"
  [S4]="-c 10 -p 4 -s 16384")
for s in $SCENARIOS; do
  [[ -n ${ARGS[$s]:-} ]] || { echo "syscalls: unknown scenario '$s' (S1 S2 S3 S4)" >&2; exit 2; }
done

tmp=$(mktemp -d)
perf_pid=
cleanup() {
  # Only what this script started: perf (and so its child, the server) if it still runs.
  [[ -n $perf_pid ]] && kill -TERM "$perf_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

# count NAME COMMAND SCENARIO: prints "LINES_ECHOED ERRORS" and leaves perf's CSV in $tmp/perf.
count() {
  local name=$1 command scenario=$3 addr server json
  command=$(with_free_port "$2")
  : >"$tmp/err"
  # shellcheck disable=SC2086 # the command is meant to split into words
  taskset -c 0 "$PERF" stat -x, -o "$tmp/perf" -e "$events" -- $command 2>"$tmp/err" &
  perf_pid=$!
  if ! addr=$(listening_addr "$tmp/err" "$perf_pid"); then
    echo "syscalls: $name did not print 'listening on 127.0.0.1:PORT'; its log:" >&2
    cat "$tmp/err" >&2
    kill -TERM "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    perf_pid=
    return 1
  fi
  # shellcheck disable=SC2086 # the scenario's flags are meant to split
  json=$(taskset -c 1 "$ECHO_BIN" bench "$addr" ${ARGS[$scenario]} -n "$LINES" --json 2>>"$tmp/err") ||
    json='{"lines":0,"errors":-1}'
  # perf's child is the server (taskset exec'd perf, perf forked the command).
  server=$(pgrep -P "$perf_pid" | head -n1 || true)
  [[ -n $server ]] && kill -TERM "$server" 2>/dev/null
  for ((i = 0; i < 150; i++)); do
    kill -0 "$perf_pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$perf_pid" 2>/dev/null; then
    echo "syscalls: $name did not exit 15 s after SIGTERM; stopping it" >&2
    [[ -n $server ]] && kill -KILL "$server" 2>/dev/null
  fi
  wait "$perf_pid" 2>/dev/null || true
  perf_pid=
  python3 -c 'import json, sys; d = json.loads(sys.argv[1]); print(d.get("lines", 0), d.get("errors", -1))' "$json"
}

# summary LINES: "TOTAL_PER_LINE|call a.aa, call b.bb, ..." from perf's CSV.
summary() {
  python3 - "$1" "$TOP" "$tmp/perf" <<'EOF'
import sys
lines, top, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
counts, total = {}, 0
for row in open(path):
    f = row.strip().split(",")
    if len(f) < 3 or not f[0].isdigit():
        continue
    if f[2] == "raw_syscalls:sys_enter":
        total = int(f[0])
    else:
        counts[f[2].removeprefix("syscalls:sys_enter_")] = int(f[0])
if not lines or not total:
    print("-|-")
    sys.exit()
counts["other"] = max(total - sum(counts.values()), 0)
most = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
print("%.2f|%s" % (total / lines, ", ".join("%s %.2f" % (k, v / lines) for k, v in most)))
EOF
}

status=0
printf '| server | scenario | syscalls per line | most frequent, per line |\n|---|---|---|---|\n'
for server in "$@"; do
  name=${server%%=*} command=${server#*=}
  for s in $SCENARIOS; do
    if ! result=$(count "$name" "$command" "$s"); then
      status=1
      continue
    fi
    read -r lines errors <<<"$result"
    [[ $errors == 0 && $lines -gt 0 ]] || status=1
    per=$(summary "$lines")
    [[ $per == -* ]] && status=1
    printf '| %s | %s (%s) | %s | %s |\n' "$name" "$s" "${ARGS[$s]}" "${per%%|*}" "${per#*|}"
  done
done
exit $status
