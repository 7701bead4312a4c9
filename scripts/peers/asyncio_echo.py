#!/usr/bin/env python3
"""A reference CRLF line echo server on asyncio, for scripts/compare.sh.

usage: scripts/peers/asyncio_echo.py PORT

Listens on 127.0.0.1:PORT and prints `listening on 127.0.0.1:PORT` on stderr once ready, as
`echo serve` does. Echoes every complete line (up to CR LF) with one write per line, ends the
session on the line ".", and closes on end of input after echoing an unterminated tail. No idle
timeout and no line limit: it is a baseline for throughput, not a hardened server.
"""
import asyncio
import sys


async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                line = await reader.readuntil(b"\r\n")
            except asyncio.IncompleteReadError as end:
                if end.partial:
                    writer.write(end.partial)
                    await writer.drain()
                break
            if line == b".\r\n":
                break
            writer.write(line)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(session, "127.0.0.1", port, limit=1 << 20)
    print(f"listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        sys.exit("usage: asyncio_echo.py PORT")
    try:
        asyncio.run(main(int(sys.argv[1])))
    except KeyboardInterrupt:
        pass
