#!/usr/bin/env bash
# tls.sh: what TLS costs the server, from one run: S2 and S4 over TLS against plain TCP,
# handshakes per second of server CPU, and resident memory per idle connection.
#
# usage: scripts/tls.sh [SECONDS] [ROUNDS]
#   SECONDS  how long each S2/S4 bench runs (default 3); ROUNDS  plain/TLS alternations (default 3)
#
# One `echo serve --threads 1` pinned to CPU 0 serves a plain and a TLS listener (its self-signed
# certificate); the bench runs pinned to CPU 1 with --tls-insecure. Medians of the rounds are
# printed, with their range. Loopback only; the server is stopped by its PID at the end.
set -euo pipefail
SECS=${1:-3} ROUNDS=${2:-3}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"
ECHO=$(echo_binary)
command -v taskset >/dev/null || { echo "tls.sh: taskset is needed (util-linux)" >&2; exit 2; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
log=$(mktemp)
server_pid=
trap 'stop_server "$server_pid"; rm -f "$log"' EXIT

echo "# $(date -u +%F), $(nproc) CPUs, server pinned to CPU 0, bench to CPU 1, ${SECS}s x $ROUNDS rounds"

# Idle memory: 1,000 connections held over each kind of listener, each on a server of its own
# that has allocated nothing a later connection could reuse.
for which in plain tls; do
  start_server "$ECHO" "$log" 1 --threads 1 -q --listen "$([[ $which == tls ]] && echo tls:)127.0.0.1:0"
  addr=$(grep -m1 '^listening on ' "$log" | cut -d' ' -f3)
  flag=(); [[ $which == tls ]] && flag=(--tls)
  result=$(python3 "$HERE/idle_tls.py" --pid "$server_pid" "${flag[@]}" -n 1000 "${addr#tls:}" | grep '^RESULT')
  echo "idle $which: ${result#RESULT }"
  stop_server "$server_pid"
done

start_server "$ECHO" "$log" 2 --threads 1 -q --listen 127.0.0.1:0 --listen tls:127.0.0.1:0
taskset -apc 0 "$server_pid" >/dev/null
plain=$(grep -m1 '^listening on [0-9]' "$log" | cut -d' ' -f3)
tls=$(grep -m1 '^listening on tls:' "$log" | cut -d' ' -f3)

bench() { taskset -c 1 "$ECHO" bench "$@" --json 2>/dev/null; }
field() { python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(eval(sys.argv[2], {}, r))' "$1" "$2"; }
median() { python3 -c 'import statistics,sys; v=sorted(float(x) for x in sys.argv[1:]); print(f"{statistics.median(v):.0f} ({v[0]:.0f}-{v[-1]:.0f})")' "$@"; }

printf '%-28s %-24s %-20s %-24s %-20s %s\n' scenario "plain lines/s" "plain p99 µs" "TLS lines/s" "TLS p99 µs" "TLS/plain"
for scenario in "S2 -c 50 -p 1 -s 64" "S4 -c 10 -p 4 -s 16384"; do
  name=${scenario%% *} flags=${scenario#* }
  p_rate=() p_p99=() t_rate=() t_p99=()
  for ((round = 0; round < ROUNDS; round++)); do
    # shellcheck disable=SC2086 # the flags are meant to split into words
    r=$(bench "$plain" $flags -d "$SECS")
    p_rate+=("$(field "$r" lines_per_s)") p_p99+=("$(field "$r" "latency_us['p99']")")
    # shellcheck disable=SC2086
    r=$(bench "$tls" --tls-insecure $flags -d "$SECS")
    t_rate+=("$(field "$r" lines_per_s)") t_p99+=("$(field "$r" "latency_us['p99']")")
    [[ $(field "$r" errors) == 0 ]] || { echo "tls.sh: errors over TLS: $r" >&2; exit 1; }
  done
  ratio=$(python3 -c 'import statistics,sys; n=len(sys.argv)//2; p=statistics.median(map(float,sys.argv[1:n+1])); t=statistics.median(map(float,sys.argv[n+1:])); print(f"{t/p:.2f}")' "${p_rate[@]}" "${t_rate[@]}")
  printf '%-28s %-24s %-20s %-24s %-20s %s\n' "$name ($flags)" "$(median "${p_rate[@]}")" "$(median "${p_p99[@]}")" \
    "$(median "${t_rate[@]}")" "$(median "${t_p99[@]}")" "$ratio"
done

# Handshakes: connections that each send one line, so that the server's work is the handshake.
HANDSHAKES=2000
before=$(cpu_ticks "$server_pid")
r=$(bench "$tls" --tls-insecure -c "$HANDSHAKES" -n "$HANDSHAKES" --connect-timeout 30s)
after=$(cpu_ticks "$server_pid")
ticks=$(getconf CLK_TCK)
[[ $(field "$r" errors) == 0 ]] || { echo "tls.sh: handshake run errors: $r" >&2; exit 1; }
python3 -c 'import sys; n, t, hz, wall, p50, p99 = map(float, sys.argv[1:]); print(f"handshakes: {n:.0f} in {wall:.2f} s, {n / (t / hz):.0f} per second of server CPU; handshake p50 {p50:.0f} µs, p99 {p99:.0f} µs (client side)")' \
  "$HANDSHAKES" "$((after - before))" "$ticks" "$(field "$r" duration_s)" "$(field "$r" "handshakes['latency_us']['p50']")" "$(field "$r" "handshakes['latency_us']['p99']")"

