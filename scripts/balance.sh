#!/usr/bin/env bash
# balance.sh: two `echo serve --proxy-protocol` behind a real HAProxy, loaded by `echo bench`.
#
# usage: scripts/balance.sh [--short]    (--short: about 15 s instead of about 30 s; what CI runs)
#
# On loopback: servers A and B (`--proxy-protocol --proxy-from 127.0.0.5 --proxy-from 127.0.0.1`,
# port 0, grace 1 s, one thread each),
# and one HAProxy frontend (mode tcp, roundrobin, send-proxy-v2, health checks every 200 ms that
# send a v2 LOCAL header, connections to the servers from 127.0.0.5). Then:
#   1. `echo bench` straight to B with `--proxy-protocol v2`, for a figure without the balancer;
#   2. `echo bench` through HAProxy: no error; both servers served bench connections; each
#      server's log names the bench's own addresses (taken from `ss` during the run) as the
#      sources, never HAProxy's 127.0.0.5;
#   3. `echo bench` through HAProxy again, and SIGTERM to A halfway: the bench's errors must be
#      exactly A's connections (closed by its grace rules, reason=shutdown), and B's must all end
#      well;
#   4. `echo bench` through HAProxy once A is down: every connection goes to B, no error.
# Prints the figures of each step. HAProxy is installed with apt-get when missing. The binary is
# $ECHO_BIN, else the newer of release/echo and debug/echo under target/, else a release build.
# Every bench is bounded (-d or -n, and its own timeouts); everything started here is stopped
# by its PID on exit. Exit 1 on a failed check.
set -euo pipefail
short=false
case ${1:-} in
  --short) short=true ;;
  "") ;;
  *) echo "usage: scripts/balance.sh [--short]" >&2; exit 2 ;;
esac
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
source "$HERE/lib.sh"
BIN=$(echo_binary)
# HAProxy, and ss (iproute2) to see the bench's own addresses, from the system's packages.
if ! command -v haproxy >/dev/null || ! command -v ss >/dev/null; then
  apt-get update -qq && apt-get install -y -qq haproxy iproute2 >/dev/null
fi
if $short; then secs=2; else secs=5; fi
# HAProxy's own address toward the servers, so that its address and the bench's differ.
BALANCER=127.0.0.5
CONNS=16

dir=$(mktemp -d)
pid_a='' pid_b='' pid_haproxy='' pid_bench=''
# shellcheck disable=SC2317 # run by the trap
cleanup() {
  [[ -n $pid_bench ]] && kill -TERM "$pid_bench" 2>/dev/null
  stop_server "$pid_haproxy"
  stop_server "$pid_a"
  stop_server "$pid_b"
  rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "balance: FAIL: $*" >&2; exit 1; }

# Headers from HAProxy, and from 127.0.0.1 for the direct bench of step 1.
serve_args=(--proxy-protocol --proxy-from "$BALANCER" --proxy-from 127.0.0.1 --listen 127.0.0.1:0 --grace 1s --threads 1)
start_server "$BIN" "$dir/a.log" 1 "${serve_args[@]}"
pid_a=$server_pid
start_server "$BIN" "$dir/b.log" 1 "${serve_args[@]}"
pid_b=$server_pid
port_a=$(sed -n 's/^listening on 127.0.0.1://p' "$dir/a.log")
port_b=$(sed -n 's/^listening on 127.0.0.1://p' "$dir/b.log")

# A free port for the frontend: HAProxy cannot report one it chose. Taken by a short-lived
# socket, so another process could take it first; HAProxy's start would then fail loudly.
front=$(free_port)
cat >"$dir/haproxy.cfg" <<EOF
global
  maxconn 4096

defaults
  mode tcp
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  timeout check 1s
  # A connection refused by a server that is stopping goes to the other one.
  retries 2
  option redispatch

frontend echo
  bind 127.0.0.1:$front
  default_backend echo_servers

backend echo_servers
  balance roundrobin
  # Every connection starts with a v2 header; checks send one too (LOCAL), as the servers
  # expect a header on every connection; a server is out after one failed check.
  default-server send-proxy-v2 check check-send-proxy inter 200ms fall 1 rise 2 source $BALANCER
  server a 127.0.0.1:$port_a
  server b 127.0.0.1:$port_b
EOF
haproxy -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
pid_haproxy=$!
echo "balance: $(date -u '+%Y-%m-%d %H:%M UTC'), $BIN, $(haproxy -v | head -1 | cut -d' ' -f1-3)"
echo "balance: servers A 127.0.0.1:$port_a (PID $pid_a), B 127.0.0.1:$port_b (PID $pid_b), HAProxy 127.0.0.1:$front (PID $pid_haproxy)"

# Both servers up: each has answered a health check (a LOCAL header, logged with HAProxy's own
# address and no "via").
for ((i = 0; i < 100; i++)); do
  grep -q "^open $BALANCER:[0-9]*\$" "$dir/a.log" && grep -q "^open $BALANCER:[0-9]*\$" "$dir/b.log" && break
  kill -0 "$pid_haproxy" 2>/dev/null || { cat "$dir/haproxy.log" >&2; fail "HAProxy did not start"; }
  sleep 0.1
done
((i < 100)) || fail "no health check reached both servers within 10 s"
sleep 0.5 # rise 2: the second good check

# bench OUT ARGS...: runs `echo bench --json ARGS...` in the background (pid_bench) with its
# JSON to OUT; `wait_bench` waits for it and returns its status.
bench() {
  local out=$1
  shift
  "$BIN" bench --json --timeout 3s --connect-timeout 2s "$@" >"$out" 2>"$out.err" &
  pid_bench=$!
}
wait_bench() {
  local status=0
  wait "$pid_bench" || status=$?
  pid_bench=''
  return $status
}
field() { sed -n "s/.*\"$2\":\\([0-9.]*\\).*/\\1/p" "$1"; }
p() { field <(grep -o '"latency_us":{[^}]*}' "$1") "$2"; }
summary() { echo "$(field "$1" lines_per_s) lines/s, p50 $(p "$1" p50) µs, p99 $(p "$1" p99) µs, errors $(field "$1" errors)"; }
# proxied LOG: the sources of the connections a server's log shows as relayed, one a line.
proxied() { sed -n "s/^open \\([0-9.:]*\\) via $BALANCER:[0-9]*\$/\\1/p" "$1"; }

# 1. Straight to B, with the header the bench sends itself.
bench "$dir/direct.json" -c "$CONNS" -d "${secs}s" --proxy-protocol v2 "127.0.0.1:$port_b"
wait_bench || fail "the direct bench failed: $(cat "$dir/direct.json.err")"
echo "balance: 1. direct to B, -c $CONNS, ${secs} s:  $(summary "$dir/direct.json")"

# 2. Through HAProxy. The bench's own addresses are read from the kernel while it runs.
before_a=$(proxied "$dir/a.log" | wc -l) before_b=$(proxied "$dir/b.log" | wc -l)
bench "$dir/through.json" -c "$CONNS" -d "${secs}s" "127.0.0.1:$front"
for ((i = 0; i < 30; i++)); do
  sleep 0.1
  ss -Htn state established "( dport = :$front )" | awk '{ print $3 }' | sort >"$dir/bench-addrs"
  (($(wc -l <"$dir/bench-addrs") >= CONNS)) && break
done
wait_bench || fail "the bench through HAProxy failed: $(cat "$dir/through.json.err")"
echo "balance: 2. through HAProxy, -c $CONNS, ${secs} s: $(summary "$dir/through.json")"
[[ $(field "$dir/through.json" errors) == 0 ]] || fail "bench errors through HAProxy"
proxied "$dir/a.log" | tail -n +$((before_a + 1)) >"$dir/sources-a"
proxied "$dir/b.log" | tail -n +$((before_b + 1)) >"$dir/sources-b"
served_a=$(wc -l <"$dir/sources-a") served_b=$(wc -l <"$dir/sources-b")
echo "balance:    A served $served_a connections, B $served_b"
((served_a > 0 && served_b > 0)) || fail "one server got no connection"
((served_a + served_b == CONNS)) || fail "$((served_a + served_b)) relayed connections logged, not $CONNS"
sort "$dir/sources-a" "$dir/sources-b" >"$dir/sources"
grep -q "^$BALANCER:" "$dir/sources" && fail "a log names HAProxy's address as a source"
cmp -s "$dir/sources" "$dir/bench-addrs" || {
  diff "$dir/sources" "$dir/bench-addrs" >&2 || true
  fail "the logged sources are not the bench's own addresses"
}
echo "balance:    every logged source is one of the bench's $CONNS own addresses; none is HAProxy's $BALANCER"

# 3. Through HAProxy, and A stopped halfway.
closes_a=$(grep -c '^close .* via ' "$dir/a.log")
closes_b=$(grep -c '^close .* via ' "$dir/b.log")
run=$((secs * 2))
bench "$dir/stop.json" -c "$CONNS" -d "${run}s" "127.0.0.1:$front"
sleep "$secs"
kill -TERM "$pid_a"
wait_bench || true # errors make the bench exit 1: they are checked below
wait "$pid_a" || fail "A did not exit cleanly after SIGTERM"
pid_a=''
cut_a=$(grep '^close .* via ' "$dir/a.log" | tail -n +$((closes_a + 1)) | grep -c 'reason=shutdown' || true)
ended_b=$(grep '^close .* via ' "$dir/b.log" | tail -n +$((closes_b + 1)) || true)
bad_b=$(grep -vc 'reason=eof$' <<<"$ended_b" || true)
errors=$(field "$dir/stop.json" errors)
echo "balance: 3. through HAProxy, -c $CONNS, ${run} s, A stopped at ${secs} s: $(summary "$dir/stop.json")"
echo "balance:    A closed $cut_a bench connections at shutdown; $(grep -c . <<<"$ended_b") on B ended, $bad_b not by eof; A: $(grep '^shutdown:' "$dir/a.log")"
((cut_a > 0)) || fail "A had no bench connection when it stopped"
((errors == cut_a)) || fail "the bench had $errors errors, A cut $cut_a connections"
((bad_b == 0)) || fail "B ended $bad_b connections other than by eof"

# 4. Through HAProxy with A down: all to B, no error.
sleep 0.5 # fall 1: A's failed check
before_b=$(proxied "$dir/b.log" | wc -l)
bench "$dir/after.json" -c "$CONNS" -n 20000 "127.0.0.1:$front"
wait_bench || fail "the bench after A stopped failed: $(cat "$dir/after.json.err")"
after_b=$(proxied "$dir/b.log" | tail -n +$((before_b + 1)) | wc -l)
echo "balance: 4. through HAProxy, A down, -c $CONNS -n 20000: $(summary "$dir/after.json"); B served $after_b connections"
((after_b == CONNS)) || fail "B served $after_b of the $CONNS new connections"
echo "balance: ok"
