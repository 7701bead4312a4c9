#!/usr/bin/env python3
"""idle_clients.py: open many idle connections to an echo server and measure its memory.

usage: idle_clients.py --pid PID [--target N] [--idle SECONDS] [--sample N] ADDR [ADDR...]

Each connection sends one line, checks its echo byte for byte, then stays idle. Connections are
spread round-robin over the ADDRs (host:port), so that each address has its own range of
ephemeral ports. Opening stops at the target, or at the first connection that fails (cannot
connect, or no echo within the echo timeout): that is the server's capacity.

The server's resident memory (VmRSS of PID) is read before any connection, at 1,000 held
connections, at the maximum, and after every connection is closed. After the idle period a sample
of the held connections must still echo. The last line on stdout is machine-readable:
    RESULT held=N held1000=N rss0=B rss1000=B rssmax=B rssafter=B sample_ok=N sample=N
and the exit status is 0 when every sampled connection echoed, 1 otherwise.

One process can hold only as many sockets as its open-file limit, so the connections are shared
by worker processes (fork), each a single-threaded selectors loop over nonblocking sockets.
"""

import argparse
import errno
import math
import multiprocessing
import os
import resource
import selectors
import socket
import sys
import time

# Connections being opened at once per worker: the server's listen backlog is 128 per address,
# and a full backlog makes the kernel drop SYNs (then retried after 1 s).
WINDOW = 100
# How long one connection may take to connect and echo before it counts as failed.
ECHO_TIMEOUT = 10.0
# Descriptors each worker keeps free for itself (pipes, selector, interpreter).
SPARE_FDS = 64


def rss_of(pid):
    """Resident memory of a process in bytes, from /proc/PID/status."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def parse_addr(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class Conn:
    __slots__ = ("sock", "want", "got", "sent", "deadline", "error")

    def __init__(self, sock, line, deadline, error=None):
        self.sock = sock
        self.want = line
        self.got = b""
        self.sent = False
        self.deadline = deadline
        # A connect that failed at once (e.g. no free local port): failed at the next turn.
        self.error = error


def exchange(conns, sel, start_next):
    """Runs connections until each has its echo or fails; start_next() may add more.

    Returns (done, failed, first_error). Each conn is registered for writing (not yet sent) or
    reading (sent); done conns are unregistered and left open, failed ones are closed.
    """
    done, failed, first_error = [], 0, None
    pending = set(conns)

    def fail(conn, reason):
        nonlocal failed, first_error
        failed += 1
        first_error = first_error or reason
        sel.unregister(conn.sock)
        conn.sock.close()
        pending.discard(conn)

    while pending:
        now = time.monotonic()
        for conn in [c for c in pending if c.error or c.deadline < now]:
            fail(conn, conn.error or f"no echo within {ECHO_TIMEOUT:.0f} s")
        timeout = max(0.0, min((c.deadline for c in pending), default=now) - now)
        for key, _ in sel.select(min(timeout, 0.5)):
            conn = key.data
            if conn not in pending:
                continue
            try:
                if not conn.sent:
                    err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, os.strerror(err))
                    # A line of a few bytes always fits an empty socket buffer.
                    conn.sock.send(conn.want)
                    conn.sent = True
                    sel.modify(conn.sock, selectors.EVENT_READ, conn)
                    continue
                data = conn.sock.recv(4096)
                if not data:
                    raise OSError(errno.ECONNRESET, "closed by the server")
                conn.got += data
                if not conn.want.startswith(conn.got):
                    raise OSError(errno.EPROTO, f"wrong echo {conn.got!r}")
                if conn.got == conn.want:
                    sel.unregister(conn.sock)
                    pending.discard(conn)
                    done.append(conn)
            except OSError as err:
                fail(conn, str(err))
        for conn in start_next(failed):
            pending.add(conn)
    return done, failed, first_error


def worker(pipe, addrs, first_id):
    """Serves the parent's commands: ("open", n), ("check", n), ("exit",)."""
    sel = selectors.DefaultSelector()
    held = []
    next_id = first_id
    while True:
        command = pipe.recv()
        if command[0] == "exit":
            for conn in held:
                conn.sock.close()
            return
        if command[0] == "open":
            todo = command[1]
            stop = time.monotonic() + command[2]

            def start_next(failed_so_far):
                # One failure means the server is full: stop opening, let the others finish.
                nonlocal todo, next_id
                started = []
                while todo > 0 and not failed_so_far and len(sel.get_map()) < WINDOW:
                    if time.monotonic() > stop:
                        todo = 0
                        break
                    todo -= 1
                    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    sock.setblocking(False)
                    line = b"idle %d\r\n" % next_id
                    host, port = addrs[next_id % len(addrs)]
                    next_id += 1
                    code = sock.connect_ex((host, port))
                    error = None if code in (0, errno.EINPROGRESS) else f"connect: {os.strerror(code)}"
                    conn = Conn(sock, line, time.monotonic() + ECHO_TIMEOUT, error)
                    sel.register(sock, selectors.EVENT_WRITE, conn)
                    started.append(conn)
                return started

            done, failed, first_error = exchange(start_next(0), sel, start_next)
            held.extend(done)
            pipe.send((len(held), failed, first_error))
        elif command[0] == "check":
            count = min(command[1], len(held))
            step = len(held) / count if count else 1
            sample = [held[int(i * step)] for i in range(count)]
            deadline = time.monotonic() + ECHO_TIMEOUT
            for i, conn in enumerate(sample):
                conn.want, conn.got, conn.sent, conn.deadline = b"still %d\r\n" % i, b"", False, deadline
                sel.register(conn.sock, selectors.EVENT_WRITE, conn)
            done, failed, first_error = exchange(sample, sel, lambda _: [])
            held = [c for c in held if c.sock.fileno() != -1]
            pipe.send((len(done), failed, first_error))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pid", type=int, required=True, help="the server's process id")
    parser.add_argument("--target", type=int, default=50_000, help="connections to try for")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds to stay idle at the max")
    parser.add_argument("--sample", type=int, default=1000, help="connections checked after idling")
    parser.add_argument("--open-time", type=float, default=150.0, help="time bound for opening")
    parser.add_argument("addrs", nargs="+", type=parse_addr)
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    per_worker = hard - SPARE_FDS
    # One more worker than strictly needed, so that the maximum is not the clients' own limit.
    workers = math.ceil(args.target / per_worker) + 1
    ctx = multiprocessing.get_context("fork")
    pipes, procs = [], []
    for i in range(workers):
        parent_end, child_end = ctx.Pipe()
        proc = ctx.Process(target=worker, args=(child_end, args.addrs, i * 10_000_000), daemon=True)
        proc.start()
        pipes.append(parent_end)
        procs.append(proc)
    print(f"{workers} client processes, open-file limit {hard} each, target {args.target}")

    def rss_settled():
        # Let the server finish what the last echoes started (frees, timer wheel) before reading.
        time.sleep(1.0)
        return rss_of(args.pid)

    rss0 = rss_settled()
    started = time.monotonic()
    first = min(1000, args.target)
    pipes[0].send(("open", first, args.open_time))
    held1000, failed, first_error = pipes[0].recv()
    rss1000 = rss_settled()
    print(f"{held1000} held: server RSS {rss0} -> {rss1000} B")

    # The rest, shared evenly; workers open at the same time.
    left = args.target - held1000
    shares = [0] * workers
    room = [per_worker - held1000] + [per_worker] * (workers - 1)
    for i in range(workers):
        shares[i] = min(room[i], math.ceil(left / (workers - i)))
        left -= shares[i]
    remaining_time = max(1.0, args.open_time - (time.monotonic() - started))
    if failed == 0:
        for pipe, share in zip(pipes, shares):
            pipe.send(("open", share, remaining_time))
        replies = [pipe.recv() for pipe in pipes]
        counts = [r[0] for r in replies]
        failed = sum(r[1] for r in replies)
        first_error = next((r[2] for r in replies if r[2]), None)
    else:
        counts = [held1000] + [0] * (workers - 1)
    held = sum(counts)
    elapsed = time.monotonic() - started
    rssmax = rss_settled()
    stopped = f"stopped at the first failure: {first_error} ({failed} failed)" if failed else "target reached"
    print(f"{held} held after {elapsed:.1f} s, {stopped}: server RSS {rssmax} B")

    time.sleep(args.idle)
    sample = min(args.sample, held)
    for pipe, count in zip(pipes, counts):
        pipe.send(("check", math.ceil(sample * count / held) if held else 0))
    replies = [pipe.recv() for pipe in pipes]
    sample_ok = sum(r[0] for r in replies)
    sample_tried = sum(r[0] + r[1] for r in replies)
    sample_error = next((r[2] for r in replies if r[2]), None)
    print(f"after {args.idle:.0f} s idle: {sample_ok} of {sample_tried} sampled connections echo"
          + (f" (first failure: {sample_error})" if sample_error else ""))

    for pipe in pipes:
        pipe.send(("exit",))
    for proc in procs:
        proc.join(timeout=30)
    # The server closes its side once it reads end of input; give it a moment.
    rssafter = rss_settled()
    print(f"RESULT held={held} held1000={held1000} rss0={rss0} rss1000={rss1000} rssmax={rssmax} rssafter={rssafter} "
          f"sample_ok={sample_ok} sample={sample_tried}")
    return 0 if held and sample_ok == sample_tried else 1


if __name__ == "__main__":
    sys.exit(main())
