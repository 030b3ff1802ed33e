"""The gateway bench's upstream: `python bench/upstream.py PORT`, /api/sleep/<ms> -> 200 JSON.

asyncio, keep-alive, each answer in one write: a thread-per-connection http.server writes the
headers and the body apart, and Nagle's algorithm with the client's delayed ACK then adds about
40 ms to every keep-alive call, which would time the kernel, not the servers in front of it.
"""
from __future__ import annotations

import asyncio
import socket
import sys

ANSWER = b'{"ok": true, "slept_ms": %d}'


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _version = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            if int(headers.get("content-length") or 0):
                await reader.readexactly(int(headers["content-length"]))
            path = target.split("?", 1)[0]
            if path.startswith("/api/sleep/") and path[11:].isdigit():
                ms = int(path[11:])
                if ms:
                    await asyncio.sleep(ms / 1000)
                status, body = b"200 OK", ANSWER % ms
            else:
                status, body = b"404 Not Found", b'{"error": "not found"}'
            writer.write(b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (status, len(body), body if method != "HEAD" else b""))
            if headers.get("connection", "").lower() == "close":
                break
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
