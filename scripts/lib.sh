# shellcheck shell=bash
# lib.sh: shell functions shared by the scripts here; source it, do not run it.

# Prints the path of the echo binary: $ECHO_BIN, else the newer of release/echo and debug/echo
# under $CARGO_TARGET_DIR (or the repository's target/), else builds the release one. (`echo`
# alone would be the shell builtin.)
echo_binary() {
  if [[ -n ${ECHO_BIN:-} ]]; then
    [[ -x $ECHO_BIN ]] || { echo "no executable at ECHO_BIN=$ECHO_BIN" >&2; return 2; }
    echo "$ECHO_BIN"
    return
  fi
  local root target release debug
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  target=${CARGO_TARGET_DIR:-$root/target}
  release=$target/release/echo debug=$target/debug/echo
  if [[ -x $release && (! -x $debug || $release -nt $debug) ]]; then
    echo "$release"
  elif [[ -x $debug ]]; then
    echo "$debug"
  else
    echo "no echo binary under $target: cargo build --release" >&2
    (cd "$root" && cargo build --release --quiet >&2) || return 1
    echo "$release"
  fi
}

# start_server BIN LOG LISTENERS ARGS...: runs `BIN serve ARGS...` in the background with stderr
# to LOG, sets server_pid, and returns once LISTENERS `listening on` lines are in LOG (10 s at
# most). Fails, having stopped the server, when they do not come.
start_server() {
  local bin=$1 log=$2 listeners=$3
  shift 3
  # Made before the server starts so that the wait below never reads a missing file.
  : >"$log"
  "$bin" serve "$@" 2>>"$log" &
  server_pid=$!
  local i
  for ((i = 0; i < 100; i++)); do
    (($(grep -c '^listening on ' "$log") >= listeners)) && return 0
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "the server did not start listening; its log:" >&2
  cat "$log" >&2
  stop_server "$server_pid"
  server_pid=
  return 1
}

# stop_server PID: SIGTERM, then SIGKILL if it is still there after 10 s. Only the PID given, and
# only a child of this shell. Prints nothing when PID is empty or already gone.
stop_server() {
  local pid=$1 i
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# rss_kib PID and fd_count PID: resident memory in KiB and open descriptors of a process.
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
fd_count() { local fds=("/proc/$1/fd"/*); echo "${#fds[@]}"; }

# cpu_ticks PID: the user and system CPU time of a process, in clock ticks (getconf CLK_TCK).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# with_free_port COMMAND: COMMAND with each {port} in it replaced by a free port, for servers
# that cannot be given port 0.
with_free_port() {
  if [[ $1 == *'{port}'* ]]; then echo "${1//\{port\}/$(free_port)}"; else echo "$1"; fi
}

# listening_addr LOG PID: waits, 10 s at most and while PID runs, for a `listening on
# 127.0.0.1:PORT` line in LOG and prints that address; fails when none comes.
listening_addr() {
  local log=$1 pid=$2 i addr
  for ((i = 0; i < 100; i++)); do
    addr=$(sed -n 's/.*listening on \(127\.0\.0\.1:[0-9]*\).*/\1/p' "$log" | head -n1)
    [[ -n $addr ]] && { echo "$addr"; return 0; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  return 1
}

# free_port: a loopback TCP port free right now, from the kernel (taken by a short-lived socket,
# so another process could take it before it is used).
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
