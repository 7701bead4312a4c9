#!/usr/bin/env python3
"""idle_tls.py: hold N idle connections, plain or TLS, and report the server's memory for them.

usage: idle_tls.py --pid PID [--tls] [-n N] HOST:PORT

Each connection (over TLS without verification, when --tls is given) sends one line, checks its
echo byte for byte and stays open. The server's resident memory (VmRSS of PID) is read before the
first connection and after the last, one second after it settled. Prints one line:
    RESULT tls=0|1 held=N rss_before=B rss_after=B per_conn=B
and exits 1 if any connection failed.
"""

import argparse
import resource
import socket
import ssl
import sys
import time

from idle_clients import parse_addr, rss_of  # beside this script


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("addr")
    args = parser.parse_args()
    address = parse_addr(args.addr)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    time.sleep(1.0)
    before = rss_of(args.pid)
    held = []
    for i in range(args.n):
        sock = socket.create_connection(address, timeout=10)
        if args.tls:
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
        line = b"idle %d\r\n" % i
        sock.sendall(line)
        got = b""
        while len(got) < len(line):
            chunk = sock.recv(len(line) - len(got))
            if not chunk:
                break
            got += chunk
        if got != line:
            print(f"connection {i}: wrong echo {got!r}", file=sys.stderr)
            return 1
        held.append(sock)
    time.sleep(1.0)
    after = rss_of(args.pid)
    per_conn = (after - before) // len(held)
    print(f"RESULT tls={int(args.tls)} held={len(held)} rss_before={before} rss_after={after} per_conn={per_conn}")
    for sock in held:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
