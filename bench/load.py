"""Load generation against a real `xmodal serve` process on loopback, shared by `bench serve`
and `bench soak`.

Everything here is bounded: a run stops at a request count or a deadline, whichever comes
first, and every request has a timeout, so a stalled server ends the run instead of hanging
it. Requests go to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from bench.http import HttpConnection, encode_request
from index import bundle
from index.metadata import Item
from index.sources import read_uri
from index.update import live_items

REPO = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 120.0
REQUEST_TIMEOUT_S = 30.0
TRANSPORT_ERROR = 0  # status recorded when no HTTP answer came back (reset, timeout)


@dataclass(frozen=True)
class Server:
    url: str
    pid: int
    settings: dict[str, str]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def start_server(engine: Path, index: Path, checkout: Path = REPO,
                 **settings: Any) -> Iterator[Server]:
    """Run `python -m xmodal serve` on a free loopback port; yield once /readyz answers 200.

    The server runs the code of `checkout` (this one by default, or another checkout of the
    project, with this Python environment). Extra settings become XMODAL_* variables
    (`cache_entries=0` -> XMODAL_CACHE_ENTRIES=0).
    """
    port = free_port()
    extra = {f"XMODAL_{k.upper()}": str(v) for k, v in settings.items()}
    env = {**os.environ, "XMODAL_ENGINE_DIR": str(Path(engine).resolve()),
           "XMODAL_INDEX_DIR": str(Path(index).resolve()), "XMODAL_HOST": "127.0.0.1",
           "XMODAL_PORT": str(port), "XMODAL_LOG_LEVEL": "warning", **extra}
    # the log goes to a file: a pipe nobody reads would fill up and stall the server
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen([sys.executable, "-m", "xmodal", "serve"], cwd=checkout, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not _ready(url):
                if process.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"server exited: {log.read().decode()[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server did not become ready in {READY_TIMEOUT_S:.0f} s")
                time.sleep(0.2)
            yield Server(url, process.pid, extra)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def readiness(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/readyz", timeout=5).json()


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc/PID/status (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process (all its threads) has used, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def batch_sizes(url: str, family_name: str = "xmodal_batch_size") -> dict[str, Any]:
    """A batch-size histogram of the server (`xmodal_batch_size`: queries per engine batch;
    `xmodal_rerank_batch_size`: reranks per reranker batch): batches, items, largest bucket."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    buckets: dict[float, float] = {}
    count = total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != family_name:
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                buckets[float(sample.labels["le"])] = sample.value
            elif sample.name.endswith("_count"):
                count = sample.value
            elif sample.name.endswith("_sum"):
                total = sample.value
    # cumulative buckets: the smallest upper bound that holds every batch bounds the largest
    largest = min((le for le, n in buckets.items() if n >= count), default=None) if count else 0
    largest = int(largest) if largest is not None and np.isfinite(largest) else largest
    return {"batches": int(count), "queries": int(total),
            "mean": round(total / count, 2) if count else 0.0, "largest_at_most": largest}


# -- what to send ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Call:
    """One request to send: `kind` names it in reports; `valid` means it must get a 200."""

    kind: str
    method: str
    path: str
    valid: bool = True
    json: Any = None
    content: bytes | None = None
    files: dict[str, tuple[str, bytes, str]] | None = None
    data: dict[str, str] | None = None
    headers: dict[str, str] | None = None
    raw: bytes | None = None  # the request already encoded (`encoded`): sent as it is

    def encoded(self, url: str) -> Call:
        """This call with its request bytes made now, so that sending it costs the load
        generator no encoding (about 70 µs of CPU per request, on the server's cores)."""
        return replace(self, raw=encode_request(
            url, self.method, self.path, json=self.json, content=self.content, files=self.files,
            data=self.data, headers=self.headers))


@dataclass(frozen=True)
class Sample:
    kind: str
    valid: bool
    status: int
    latency_s: float


@dataclass
class LoadResult:
    samples: list[Sample] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def throughput(self) -> float:
        return len(self.samples) / self.elapsed_s if self.elapsed_s else 0.0


def text_search(text: str, k: int = 10, rerank: bool = False, rerank_k: int = 16) -> Call:
    body: dict[str, Any] = {"text": text, "k": k}
    if rerank:
        body |= {"rerank": True, "rerank_k": rerank_k}
    return Call("rerank_search" if rerank else "text", "POST", "/v1/search/text", json=body)


async def run_load(url: str, make_call: Callable[[int], Call], concurrency: int,
                   requests: int | None, seconds: float) -> LoadResult:
    """`concurrency` clients, each on its own keep-alive connection, send `make_call(i)` for
    i = 0, 1, ... until `requests` were sent or `seconds` have passed; requests in flight at
    the deadline are finished and counted."""
    if requests is None and seconds <= 0:
        raise ValueError("a load run needs a request count or a time limit")
    result = LoadResult()
    counter = iter(range(requests if requests is not None else 2**62))
    start = time.perf_counter()
    deadline = start + seconds

    async def client_loop() -> None:
        connection = HttpConnection(url)
        try:
            for i in counter:  # shared: each index is taken by exactly one client
                if time.perf_counter() >= deadline:
                    return
                result.samples.append(await send(connection, make_call(i)))
        finally:
            await connection.close()

    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    result.elapsed_s = time.perf_counter() - start
    return result


async def send(connection: HttpConnection, call: Call) -> Sample:
    """One call, timed; a reset, timeout or garbled answer is recorded as TRANSPORT_ERROR."""
    raw = call.raw if call.raw is not None else call.encoded(connection.url).raw
    assert raw is not None
    t0 = time.perf_counter()
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):  # no task per request, as wait_for makes
            status, _ = await connection.send(raw)
    except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError, IndexError):
        await connection.close()
        status = TRANSPORT_ERROR
    return Sample(call.kind, call.valid, status, time.perf_counter() - t0)


def percentiles_ms(latencies: list[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds; (0, 0) for no samples."""
    if not latencies:
        return 0.0, 0.0
    p50, p99 = np.percentile(np.asarray(latencies) * 1000, [50, 99])
    return round(float(p50), 2), round(float(p99), 2)


# -- what the index holds -------------------------------------------------------------------

def index_items(index_dir: Path) -> tuple[Callable[[str], bytes], list[Item]]:
    """(a reader of an item's image bytes by its stored path, every item) of the index's
    current version."""
    version = bundle.resolve(index_dir)
    manifest = bundle.read_manifest(version, verify=False)

    def read(uri: str) -> bytes:
        return read_uri(bundle.image_root(version, manifest.source, uri), uri)

    return read, live_items(version.parent, version, manifest)


def query_texts(items: list[Item], n: int, seed: int = 0) -> list[str]:
    """n captions of the index's items (repeated if there are fewer), in a seeded order."""
    captions = [i.caption for i in items if i.caption]
    if not captions:
        raise RuntimeError("the index stores no captions to use as text queries")
    rng = random.Random(seed)
    return [captions[rng.randrange(len(captions))] for _ in range(n)]
