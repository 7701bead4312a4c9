#!/usr/bin/env bash
# capacity.sh: how many idle connections `echo serve` holds on this machine, and its resident
# memory per idle connection at 1,000 connections and at the maximum.
#
# usage: scripts/capacity.sh [TARGET]
#   TARGET  connections to try for (default 50000)
#
# Starts its own server on 127.0.0.1 to 127.0.0.4 (port 0 each: four addresses give the clients
# four ranges of ephemeral ports), with --max-connections far above TARGET so that only the
# machine limits it, and a 10-minute idle timeout so that the connections keep an armed timer as
# they would in use. scripts/idle_clients.py opens the connections (each sends one line and checks
# its echo, then stays idle), stops at TARGET or at the first connection the server does not
# serve, idles, then checks that a sample still echoes.
#
# Open files: the server raises its soft limit to the hard limit; this script first raises the
# hard limit to what TARGET needs, which works as root with CAP_SYS_RESOURCE, and says so when it
# cannot (then the hard limit is the capacity).
#
# The binary is $ECHO_BIN, else the newer of release/echo and debug/echo under $CARGO_TARGET_DIR
# (or target/), else `cargo build --release` builds it. Loopback only; ends by itself in about a
# minute (hard bound: 5 minutes); stops the server it started, by PID.
#
# Exits 1 when no connection was held or a sampled connection did not echo after idling.
set -euo pipefail
TARGET=${1:-50000}
[[ $TARGET =~ ^[1-9][0-9]*$ ]] || { echo "capacity: TARGET must be a positive number, not '$TARGET'" >&2; exit 2; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
source "$HERE/lib.sh"
BIN=$(echo_binary)

# The server needs TARGET descriptors plus a few; clients are spread over processes by the helper.
want=$((TARGET + 1000))
if (($(ulimit -Hn) < want)) && ! ulimit -Hn "$want" 2>/dev/null; then
  echo "capacity: cannot raise the hard open-file limit from $(ulimit -Hn) to $want" \
    "(needs root with CAP_SYS_RESOURCE); the server is bounded by $(ulimit -Hn)" >&2
fi
ulimit -Sn "$(ulimit -Hn)"

dir=$(mktemp -d)
server_pid=
# shellcheck disable=SC2317 # run by the trap
cleanup() { stop_server "$server_pid"; rm -rf "$dir"; }
trap cleanup EXIT
start_server "$BIN" "$dir/server.log" 4 -q --idle-timeout 10m --max-connections 1000000 --grace 1s \
  --listen 127.0.0.1:0 --listen 127.0.0.2:0 --listen 127.0.0.3:0 --listen 127.0.0.4:0
mapfile -t addrs < <(sed -n 's/^listening on //p' "$dir/server.log")

echo "capacity: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $BIN, server PID $server_pid," \
  "open-file limit $(ulimit -Hn), ephemeral ports $(tr '\t' - </proc/sys/net/ipv4/ip_local_port_range)"
status=0
timeout --kill-after=10 280 python3 "$HERE/idle_clients.py" --pid "$server_pid" --target "$TARGET" \
  "${addrs[@]}" | tee "$dir/clients.out" || status=1

result=$(sed -n 's/^RESULT //p' "$dir/clients.out")
[[ -n $result ]] || { echo "capacity: the client helper gave no result" >&2; exit 1; }
declare -A r
for kv in $result; do r[${kv%%=*}]=${kv#*=}; done
accept_errors=$(grep -c -i 'accept' "$dir/server.log" || true)
per_conn() { (($2 > 0)) && echo $((($1 - r[rss0]) / $2)) || echo -; }
echo
printf 'connections held       %d (target %d; server accept-error lines: %d)\n' "${r[held]}" "$TARGET" "$accept_errors"
printf 'server RSS before      %d KiB\n' $((r[rss0] / 1024))
printf 'server RSS at %-9s%d KiB   %s B per connection\n' "${r[held1000]}" $((r[rss1000] / 1024)) "$(per_conn "${r[rss1000]}" "${r[held1000]}")"
printf 'server RSS at max      %d KiB   %s B per connection\n' $((r[rssmax] / 1024)) "$(per_conn "${r[rssmax]}" "${r[held]}")"
printf 'server RSS after close %d KiB\n' $((r[rssafter] / 1024))
printf 'still echo after idle  %d of %d sampled\n' "${r[sample_ok]}" "${r[sample]}"
if ((accept_errors > 0)); then
  echo "first server warnings:"
  grep -i 'accept' "$dir/server.log" | sort | uniq -c | sort -rn | head -n 3
fi
exit $status
