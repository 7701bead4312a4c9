#!/usr/bin/env bash
# soak.sh: run `echo serve` under churn and steady load for a while and fail on a leak.
#
# usage: scripts/soak.sh [SECONDS]    (default 600)
#
# For SECONDS, against one server on 127.0.0.1 (port 0, idle timeout 2 s), three loads run at once:
#   steady   `echo bench -c 8 -d SECONDS`: eight connections in ping-pong the whole time;
#   churn    in a loop, `echo bench -c 20 -n 100` (20 connections open, send 5 lines each, close)
#            and `echo connect` sending one line and the `.` sentinel;
#   idlers   in a loop, 5 connections that send half a line and go silent: the server must close
#            them at its idle timeout without echoing the half line.
# Every second the server's resident memory (VmRSS) and open descriptors go to a CSV:
# $SOAK_CSV, else soak.csv in a new temporary directory (kept, and named at the end).
#
# Fails (exit 1) when:
#   - any bench run, client or idler reported an error;
#   - the server's descriptors, once the load has stopped and its connections have closed, are
#     more than before the load (a descriptor leak);
#   - RSS grew after warm-up by more than the threshold (RSS_GROWTH_KIB): the highest RSS of the
#     last WARM seconds against the highest of the first WARM seconds, WARM = SECONDS/10 between 5
#     and 60. The threshold, 4 MiB by default, is twice the RSS the load can legitimately move
#     (about 30 connections each borrowing a 64 KiB read buffer at the same moment is 1.9 MiB),
#     while a leak of even 100 bytes per connection, at the tens of thousands of connections a
#     10-minute soak churns, exceeds it.
#
# The binary is $ECHO_BIN, else the newer of release/echo and debug/echo under $CARGO_TARGET_DIR
# (or target/), else `cargo build --release` builds it. Loopback only; every load and wait is
# bounded, so the script ends by itself within SECONDS + about 45 s; it stops the server it
# started, by PID.
set -euo pipefail
SECS=${1:-600}
[[ $SECS =~ ^[1-9][0-9]*$ ]] || { echo "soak: SECONDS must be a positive number, not '$SECS'" >&2; exit 2; }
GROWTH_KIB=${RSS_GROWTH_KIB:-4096}
WARM=$((SECS / 10 < 5 ? 5 : SECS / 10 > 60 ? 60 : SECS / 10))
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
source "$HERE/lib.sh"
BIN=$(echo_binary)

dir=$(mktemp -d)
csv=${SOAK_CSV:-$dir/soak.csv}
server_pid=
loads=()
# shellcheck disable=SC2317 # run by the trap
cleanup() {
  # On an early exit the loads are still running: stop them before the server.
  local pid
  for pid in "${loads[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  stop_server "$server_pid"
}
trap cleanup EXIT
start_server "$BIN" "$dir/server.log" 1 -q --listen 127.0.0.1:0 --idle-timeout 2s --grace 2s
addr=$(sed -n 's/^listening on //p' "$dir/server.log")
port=${addr##*:}
echo "soak: $(date -u '+%Y-%m-%d %H:%M UTC'), $SECS s, $BIN, server PID $server_pid on $addr, CSV $csv"

end=$((EPOCHSECONDS + SECS))
failures=$dir/failures
: >"$failures"

churn() {
  local runs=0 out
  while ((EPOCHSECONDS < end)); do
    out=$(timeout 30 "$BIN" bench "$addr" -c 20 -n 100 --json 2>&1) || echo "bench -c 20 -n 100: $out" >>"$failures"
    out=$(printf 'churn %d\n.\n' "$runs" | timeout 10 "$BIN" connect "$addr" 2>"$dir/connect.err") &&
      [[ $out == "churn $runs" ]] || echo "connect: got '$out', $(cat "$dir/connect.err")" >>"$failures"
    runs=$((runs + 1))
  done
  echo "$runs" >"$dir/churn.runs"
}

idlers() {
  local rounds=0 fds=() fd line status
  # Stop early enough for the last round's idle timeout to pass before the load ends.
  while ((EPOCHSECONDS < end - 5)); do
    fds=()
    for _ in 1 2 3 4 5; do
      if exec {fd}<>"/dev/tcp/127.0.0.1/$port"; then
        printf 'half a line' >&"$fd"
        fds+=("$fd")
      else
        echo "idler: cannot connect" >>"$failures"
      fi
    done 2>>"$failures"
    for fd in "${fds[@]}"; do
      # The server closes at 2 s: end of input (status 1, nothing read) is expected.
      status=0
      read -r -t 6 -u "$fd" line || status=$?
      if ((status != 1)) || [[ -n $line ]]; then
        echo "idler: expected the server to close at its idle timeout; read status $status, got '$line'" >>"$failures"
      fi
      exec {fd}<&-
    done
    rounds=$((rounds + 1))
  done
  echo "$rounds" >"$dir/idlers.rounds"
}

sample() { echo "$1,$(($(date +%s%3N) - start_ms)),$(rss_kib "$server_pid"),$(fd_count "$server_pid")" >>"$csv"; }

echo "phase,t_ms,rss_kib,fds" >"$csv"
start_ms=$(date +%s%3N)
sample before
fds_before=$(fd_count "$server_pid")
rss_before=$(rss_kib "$server_pid")

timeout $((SECS + 30)) "$BIN" bench "$addr" -c 8 -d "${SECS}s" --json >"$dir/steady.json" 2>"$dir/steady.err" &
steady=$!
churn &
loads+=($!)
idlers &
loads+=($!)
loads+=("$steady")

while ((EPOCHSECONDS < end)); do
  sleep 1
  if ((EPOCHSECONDS - end + SECS <= WARM)); then sample warmup; else sample load; fi
done

# The loads end by themselves: the steady bench at its duration, the loops at their next turn.
status=0
wait "$steady" || status=$?
((status == 0)) || echo "steady bench (exit $status): $(cat "$dir/steady.err")" >>"$failures"
wait "${loads[@]:0:2}"
loads=()

# Closed connections may linger up to a second on the server: wait for the descriptors to settle.
for ((i = 0; i < 20; i++)); do
  sample drain
  (($(fd_count "$server_pid") <= fds_before)) && break
  sleep 0.5
done
fds_after=$(fd_count "$server_pid")
rss_after=$(rss_kib "$server_pid")
stop_server "$server_pid"
server_pid=

summary=$(sed -n 's/^shutdown: //p' "$dir/server.log")
read -r rss_warm rss_end fds_max < <(awk -F, -v warm=$((WARM * 1000)) -v secs=$((SECS * 1000)) '
  $1 == "warmup" || $1 == "load" {
    if ($2 <= warm && $3 > w) w = $3
    if ($2 > secs - warm && $3 > e) e = $3
    if ($4 > f) f = $4
  }
  END { print w + 0, e + 0, f + 0 }' "$csv")
growth=$((rss_end - rss_warm))

echo
echo "steady bench:  $(cat "$dir/steady.json")"
echo "churn:         $(cat "$dir/churn.runs" 2>/dev/null || echo 0) rounds of bench -c 20 -n 100 + connect;" \
  "$(cat "$dir/idlers.rounds" 2>/dev/null || echo 0) rounds of 5 idle connections"
echo "server:        ${summary:-no shutdown summary}"
printf 'RSS (KiB):     before %d, max in first %d s %d, max in last %d s %d (growth %+d, limit %d), after load %d\n' \
  "$rss_before" "$WARM" "$rss_warm" "$WARM" "$rss_end" "$growth" "$GROWTH_KIB" "$rss_after"
printf 'descriptors:   before load %d, max under load %d, after load %d\n' "$fds_before" "$fds_max" "$fds_after"

failed=0
if [[ -s $failures ]]; then
  echo "FAIL: $(wc -l <"$failures") load errors; the first:"
  head -n 5 "$failures"
  failed=1
fi
if ! grep -q '"errors":0}' "$dir/steady.json"; then
  echo "FAIL: the steady bench reported errors"
  failed=1
fi
if ((fds_after > fds_before)); then
  echo "FAIL: the server holds $((fds_after - fds_before)) more descriptors than before the load"
  failed=1
fi
if ((growth > GROWTH_KIB)); then
  echo "FAIL: RSS grew by $growth KiB after warm-up, more than $GROWTH_KIB KiB"
  failed=1
fi
if ((failed == 0)); then
  echo "soak: passed"
  # The CSV was asked for elsewhere: nothing here is worth keeping.
  [[ -n ${SOAK_CSV:-} ]] && rm -rf "$dir"
else
  echo "soak: server log, bench output and CSV in $dir"
fi
exit $failed
