"""What an HTTP round trip costs on this machine before any service work: the floors the
service's overhead is read against.

- `echo`: a process that answers every request with the same bytes from a blocking socket
  (`python -m bench.floors PORT`): the loopback round trip between two processes.
- `app`: an ASGI app that answers every request with the same bytes, run under uvicorn with
  the loop and HTTP parser the service uses: the least any uvicorn-served app costs.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from bench.load import REPO, free_port

ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok"
START_TIMEOUT_S = 30.0


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def echo(port: int) -> None:
    """Answer ANSWER to each request head (bodies are not expected), one client at a time."""
    with socket.create_server(("127.0.0.1", port)) as server:
        while True:
            conn, _ = server.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with conn:
                pending = b""
                while chunk := conn.recv(65536):
                    pending += chunk
                    while (end := pending.find(b"\r\n\r\n")) >= 0:
                        pending = pending[end + 4 :]
                        conn.sendall(ANSWER)


@contextlib.contextmanager
def start(kind: str) -> Iterator[str]:
    """Run the `echo` or `app` floor on a free loopback port; yield its URL."""
    port = free_port()
    command = {
        "echo": [sys.executable, "-m", "bench.floors", str(port)],
        "app": [sys.executable, "-m", "uvicorn", "bench.floors:app", "--port", str(port),
                "--loop", "auto", "--http", "auto", "--log-level", "warning"],
    }[kind]
    process = subprocess.Popen(command, cwd=REPO)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {kind} floor server did not start")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    echo(int(sys.argv[1]))
