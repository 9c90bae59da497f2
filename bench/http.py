"""Lean HTTP/1.1 keep-alive clients for benchmarks.

A general client (httpx's AsyncClient) spends several milliseconds of CPU per request at 32
connections, on the same cores as the server under test, so the load generator rather than
the server set the throughput. These write each request (encoded by `httpx.Request`, so JSON
and multipart bodies are exactly what httpx would send) straight to a socket and read the
status, headers and body back, and little else: `HttpConnection` for many clients in one
event loop, `RoundTrip` for one request at a time, where latency is what is measured and
even the event loop's share would count against the server.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any
from urllib.parse import urlsplit

import httpx


class HttpConnection:
    """One keep-alive connection to `url` (http://host:port), reopened when the server closes it."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.url = url.rstrip("/")
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        """Send one encoded request (see `encode_request`); return (status, body). A connection
        the server closed while idle is retried once."""
        reused = self._writer is not None
        try:
            return await self._exchange(raw)
        except (ConnectionError, asyncio.IncompleteReadError):
            await self.close()
            if not reused:
                raise
            return await self._exchange(raw)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except ConnectionError:
                pass
        self._reader = self._writer = None

    async def _exchange(self, raw: bytes) -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        assert self._reader is not None
        self._writer.write(raw)
        await self._writer.drain()
        status_line = await self._reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        status = int(status_line.split()[1])
        length, chunked, close = await self._headers()
        if chunked:
            body = await self._chunks()
        elif length is not None:
            body = await self._reader.readexactly(length)
        else:  # no length: the body runs to the end of the connection
            body, close = await self._reader.read(), True
        if close:
            await self.close()
        return status, body

    async def _headers(self) -> tuple[int | None, bool, bool]:
        assert self._reader is not None
        length, chunked, close = None, False, False
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value
            elif name == b"connection":
                close = value == b"close"
        return length, chunked, close

    async def _chunks(self) -> bytes:
        assert self._reader is not None
        parts = []
        while size := int((await self._reader.readline()).split(b";")[0], 16):
            parts.append(await self._reader.readexactly(size))
            await self._reader.readline()
        while await self._reader.readline() not in (b"\r\n", b""):  # trailers
            pass
        return b"".join(parts)


def encode_request(url: str, method: str, path: str, **body: Any) -> bytes:
    """The bytes of one HTTP/1.1 request to `url` + `path`, as httpx would send them."""
    request = httpx.Request(method, url.rstrip("/") + path, **body)
    head = [f"{method} {request.url.raw_path.decode()} HTTP/1.1"]
    head += [f"{name}: {value}" for name, value in request.headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + request.read()


class RoundTrip:
    """One blocking keep-alive connection: send encoded request bytes, read the answer.

    For latency at one request in flight: no event loop, no per-request encoding (callers
    encode with `encode_request` before timing). Answers must carry a Content-Length.
    """

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        parts = urlsplit(url)
        self._sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80),
                                              timeout=timeout_s)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = b""

    def __call__(self, raw: bytes) -> tuple[int, bytes]:
        self._sock.sendall(raw)
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            self._read()
        head, self._buffer = self._buffer[:end].split(b"\r\n"), self._buffer[end + 4 :]
        length = next((int(line.split(b":", 1)[1]) for line in head[1:]
                       if line.lower().startswith(b"content-length:")), None)
        if length is None:
            raise ValueError(f"answer without Content-Length: {head[0]!r}")
        while len(self._buffer) < length:
            self._read()
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return int(head[0].split()[1]), body

    def _read(self) -> None:
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self._buffer += chunk

    def close(self) -> None:
        self._sock.close()
