#!/usr/bin/env bash
# scaling.sh: how a line echo server's cost grows with work, as data and pictures: lines/s, p99
# latency and server CPU per line through active connections 1 to 10,000 (depth 1, 64-byte
# lines) and through line sizes 16 B to 64 KiB (10 connections), and resident memory per
# connection at 1, 1,000 and 10,000 connections, idle and active.
#
# usage: scripts/scaling.sh [SECONDS] [NAME=COMMAND]...
#   SECONDS       how long the bench loads each point (default 2)
#   NAME=COMMAND  a server to measure; without any, `echo serve --threads 1` of this repository.
#                 COMMAND must print `listening on 127.0.0.1:PORT` on stderr; give it port 0,
#                 or write {port} for a free port chosen here.
# environment: OUT (default docs/scaling), where NAME-connections.dat, NAME-size.dat and
#   NAME-memory.dat go; the pictures go beside it, in its parent directory, as
#   scaling-connections.svg, scaling-size.svg and memory.svg. PLOT_ONLY=1 redraws the pictures
#   from the data already there, for the servers named, without measuring.
#
# Every point starts the server afresh, pinned to CPU 0, and loads it with `echo bench` pinned to
# CPU 1. Server CPU per line is the server's utime + stime (/proc/PID/stat) over the run divided
# by the lines echoed, so it includes accepting the connections. Active memory is the highest
# VmRSS seen while the bench runs less VmRSS before it, per connection; idle memory comes from
# scripts/idle_clients.py (one line each, then silence). Draws with gnuplot, installing
# gnuplot-nox with apt-get when it is missing. The whole run takes a few minutes per server.
#
# Needs taskset, python3 and an open-file limit of about 2 x 10,000 (raised to the hard limit
# here). Loopback only; stops only what it started. Exits 1 when a point fails.
set -euo pipefail
SECS=${1:-2}
[[ $SECS =~ ^[1-9][0-9]*$ ]] || { echo "scaling: SECONDS must be a positive number, not '$SECS'" >&2; exit 2; }
shift || true
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"
ROOT=$(cd "$HERE/.." && pwd)
ECHO_BIN=${ECHO_BIN:-$ROOT/target/release/echo}
OUT=${OUT:-$ROOT/docs/scaling}
[[ -x $ECHO_BIN ]] || { echo "scaling: no echo binary at $ECHO_BIN (cargo build --release)" >&2; exit 2; }
command -v taskset >/dev/null || { echo "scaling: taskset is needed (util-linux)" >&2; exit 2; }
if ! command -v gnuplot >/dev/null; then
  apt-get install -y -qq gnuplot-nox >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq gnuplot-nox >/dev/null; } ||
    { echo "scaling: gnuplot is needed (apt-get install gnuplot-nox)" >&2; exit 2; }
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(($(ulimit -n) >= 10100)) || echo "scaling: open-file limit $(ulimit -n): the 10,000-connection points will fail" >&2
(($# > 0)) || set -- "echo-serve=$ECHO_BIN serve --listen 127.0.0.1:0 -q --threads 1 --max-connections 20000"
mkdir -p "$OUT"

CONNECTIONS=(1 10 100 1000 10000)
SIZES=(16 64 256 1024 4096 16384 65536)
TICK=$(getconf CLK_TCK)
tmp=$(mktemp -d)
server_pid=
cleanup() {
  [[ -n $server_pid ]] && kill -TERM "$server_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT


# start COMMAND: the server, pinned to CPU 0; sets server_pid and addr.
start() {
  local command
  command=$(with_free_port "$1")
  : >"$tmp/err"
  # shellcheck disable=SC2086 # the command is meant to split into words
  taskset -c 0 $command 2>"$tmp/err" &
  server_pid=$!
  addr=$(listening_addr "$tmp/err" "$server_pid") && return 0
  echo "scaling: the server did not print 'listening on 127.0.0.1:PORT'; its log:" >&2
  cat "$tmp/err" >&2
  stop
  return 1
}

# stop: SIGTERM, then SIGKILL after 10 s; only the server this script started.
stop() {
  stop_server "$server_pid"
  server_pid=
}

# point COMMAND BENCH_ARGS...: one loaded point on a fresh server; prints
# "lines/s p99_us cpu_us_per_line rss_bytes_per_conn MiB/s errors".
point() {
  local command=$1 conns rss0 peak rss cpu0 cpu1 bench
  shift
  conns=$2 # the arguments start with -c N
  start "$command" || return 1
  rss0=$(rss_kib "$server_pid") peak=$rss0
  cpu0=$(cpu_ticks "$server_pid")
  taskset -c 1 "$ECHO_BIN" bench "$addr" "$@" -d "${SECS}s" --connect-timeout 20s --json >"$tmp/json" 2>"$tmp/bench.err" &
  bench=$!
  while kill -0 "$bench" 2>/dev/null; do
    rss=$(rss_kib "$server_pid" 2>/dev/null || echo 0)
    ((rss > peak)) && peak=$rss
    sleep 0.2
  done
  wait "$bench" || true
  cpu1=$(cpu_ticks "$server_pid")
  stop
  python3 - "$tmp/json" "$((cpu1 - cpu0))" "$TICK" "$rss0" "$peak" "$conns" <<'EOF'
import json, sys
path, ticks, tick, rss0, peak, conns = sys.argv[1], *map(int, sys.argv[2:])
try:
    d = json.load(open(path))
except ValueError:
    d = {"errors": -1}
lines = d.get("lines", 0)
cpu = ticks * 1e6 / tick / lines if lines else 0
print("%.0f %.0f %.2f %.0f %.3f %d" % (d.get("lines_per_s", 0), d.get("latency_us", {}).get("p99", 0),
      cpu, (peak - rss0) * 1024 / conns, d.get("mib_per_s", 0), d.get("errors", -1)))
EOF
}

# idle COMMAND TARGET: "held rss_per_conn_at_1000 rss_per_conn_at_max" from idle_clients.py.
idle() {
  local command=$1 target=$2 result
  start "$command" || return 1
  result=$(timeout --kill-after=10 200 python3 "$HERE/idle_clients.py" --pid "$server_pid" --target "$target" \
    --idle 2 --sample 100 "$addr" 2>"$tmp/idle.err" | sed -n 's/^RESULT //p') || true
  stop
  python3 - "$result" <<'EOF'
import sys
r = dict(kv.split("=") for kv in sys.argv[1].split())
held, held1000 = int(r.get("held", 0)), int(r.get("held1000", 0))
rss0 = int(r.get("rss0", 0))
at1000 = (int(r["rss1000"]) - rss0) / held1000 if held1000 else 0
atmax = (int(r["rssmax"]) - rss0) / held if held else 0
print("%d %.0f %.0f" % (held, at1000, atmax))
EOF
}

status=0
names=()
for server in "$@"; do
  name=${server%%=*} command=${server#*=}
  names+=("$name")
  [[ -n ${PLOT_ONLY:-} ]] && continue
  declare -A active=()
  {
    echo "# $name: active connections (depth 1, 64-byte lines, ${SECS} s each)"
    echo "# connections lines_per_s p99_us server_cpu_us_per_line rss_bytes_per_connection"
  } >"$OUT/$name-connections.dat"
  for c in "${CONNECTIONS[@]}"; do
    read -r lps p99 cpu mem _ errors <<<"$(point "$command" -c "$c" -p 1 -s 64 || echo "0 0 0 0 0 -1")"
    [[ $errors == 0 ]] || { echo "scaling: $name, $c connections: errors $errors" >&2; status=1; }
    active[$c]=$mem
    echo "$c $lps $p99 $cpu $mem" >>"$OUT/$name-connections.dat"
    echo "$name -c $c: $lps lines/s, p99 $p99 us, $cpu us CPU/line, $mem B/conn" >&2
  done
  {
    echo "# $name: line sizes (10 connections, depth 1, ${SECS} s each)"
    echo "# size_bytes lines_per_s p99_us server_cpu_us_per_line mib_per_s"
  } >"$OUT/$name-size.dat"
  for s in "${SIZES[@]}"; do
    read -r lps p99 cpu _ mib errors <<<"$(point "$command" -c 10 -p 1 -s "$s" || echo "0 0 0 0 0 -1")"
    [[ $errors == 0 ]] || { echo "scaling: $name, $s-byte lines: errors $errors" >&2; status=1; }
    echo "$s $lps $p99 $cpu $mib" >>"$OUT/$name-size.dat"
    echo "$name -s $s: $lps lines/s, p99 $p99 us, $cpu us CPU/line, $mib MiB/s" >&2
  done
  read -r _ idle1 _ <<<"$(idle "$command" 1 || echo "0 0 0")"
  read -r held idle1000 idlemax <<<"$(idle "$command" 10000 || echo "0 0 0")"
  ((held == 10000)) || { echo "scaling: $name held $held idle connections of 10000" >&2; status=1; }
  # At one connection, only the pages it touches show; the fixed cost of the process is not in it.
  {
    echo "# $name: resident memory per connection (VmRSS growth / connections)"
    echo "# connections idle_bytes active_bytes"
    echo "1 $idle1 ${active[1]}"
    echo "1000 $idle1000 ${active[1000]}"
    echo "10000 $idlemax ${active[10000]}"
  } >"$OUT/$name-memory.dat"
  echo "$name memory per connection: idle ${idle1}/${idle1000}/${idlemax} B, active ${active[1]}/${active[1000]}/${active[10000]} B" >&2
  unset active
done

# The pictures: one curve per server in each panel.
list="${names[*]}"
pics=$(dirname "$OUT")
gnuplot <<EOF
set terminal svg size 1100,360 dynamic font "sans,11" background "white"
set key top left
set grid
set logscale x
set logscale y
set format y "%.0s%c"
set xtics ("1" 1, "10" 10, "100" 100, "1k" 1000, "10k" 10000)
names = "$list"
dir = "$OUT"
file(i, kind) = sprintf("%s/%s-%s.dat", dir, word(names, i), kind)

set output "$pics/scaling-connections.svg"
set multiplot layout 1,3 title "Active connections, depth 1, 64-byte lines (server on 1 CPU)"
set xlabel "connections"
set title "lines/s"
plot for [i=1:words(names)] file(i, "connections") using 1:2 with linespoints title word(names, i)
set title "p99 latency, µs"
plot for [i=1:words(names)] file(i, "connections") using 1:3 with linespoints title word(names, i)
set title "server CPU per line, µs"
plot for [i=1:words(names)] file(i, "connections") using 1:4 with linespoints title word(names, i)
unset multiplot

set output "$pics/scaling-size.svg"
set xtics ("16" 16, "64" 64, "256" 256, "1k" 1024, "4k" 4096, "16k" 16384, "64k" 65536)
set multiplot layout 1,3 title "Line size, 10 connections, depth 1 (server on 1 CPU)"
set xlabel "line size, bytes"
set title "MiB/s"
plot for [i=1:words(names)] file(i, "size") using 1:5 with linespoints title word(names, i)
set title "p99 latency, µs"
plot for [i=1:words(names)] file(i, "size") using 1:3 with linespoints title word(names, i)
set title "server CPU per line, µs"
plot for [i=1:words(names)] file(i, "size") using 1:4 with linespoints title word(names, i)
unset multiplot

set output "$pics/memory.svg"
set terminal svg size 760,360 dynamic font "sans,11" background "white"
set xtics ("1" 1, "1k" 1000, "10k" 10000)
set multiplot layout 1,2 title "Resident memory per connection, bytes"
set xlabel "connections"
set title "idle (one line, then silence)"
plot for [i=1:words(names)] file(i, "memory") using 1:(\$2 > 0 ? \$2 : 1/0) with linespoints title word(names, i)
set title "active (depth 1, 64-byte lines)"
plot for [i=1:words(names)] file(i, "memory") using 1:(\$3 > 0 ? \$3 : 1/0) with linespoints title word(names, i)
unset multiplot
EOF
echo "scaling: data in $OUT, pictures $pics/scaling-connections.svg, $pics/scaling-size.svg, $pics/memory.svg" >&2
exit $status
