"""`xmodal serve` as a real process on a free loopback port, for tests that need real HTTP."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx

from tests.service.redis_server import free_port

REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def live_server(engine: Path, index: Path, **settings: str) -> Iterator[str]:
    """Yield the base URL once /readyz answers 200; extra settings become XMODAL_* variables."""
    port = free_port()
    env = {**os.environ, "XMODAL_ENGINE_DIR": str(engine), "XMODAL_INDEX_DIR": str(index),
           "XMODAL_PORT": str(port), **{f"XMODAL_{k.upper()}": v for k, v in settings.items()}}
    # the log goes to a file: a pipe nobody reads would fill up and stall the server
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen([sys.executable, "-m", "xmodal", "serve"], cwd=REPO, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, process, log)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=10)


def _wait_ready(url: str, process: subprocess.Popen, log: IO[bytes]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"server exited: {log.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not become ready in 90 s")
