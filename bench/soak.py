"""Soak test: many clients on loopback for a bounded time, valid and hostile requests mixed.

Valid requests (text search, image search by multipart upload of gallery images, and rerank
by stored ids when the server can rerank) must all get a 200; hostile ones (broken image
bytes, empty text, k=0, malformed JSON) must get a 4xx naming the problem. Any 5xx, any
valid request without a 200 and any request without an answer fails the run. The server's
resident memory is read after a warm-up and at the end: growth under steady load is a leak.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.load import (
    TRANSPORT_ERROR,
    Call,
    LoadResult,
    index_items,
    percentiles_ms,
    readiness,
    rss_kib,
    run_load,
    start_server,
    text_search,
)
from index.metadata import Item

UPLOADS = 64  # distinct gallery images kept in memory for uploads
RERANK_IDS = 8
WARMUP_ROUNDS = 3
WARMUP_SHARE, WARMUP_MAX_S = 0.1, 10.0  # warm-up under the full mix before the first RSS reading
HOSTILE_KINDS = ("broken_image", "empty_text", "k_zero", "malformed_json")


class Mix:
    """Request i of a soak, decided by a seeded generator of its own: reproducible and the
    same whatever order the clients take the indices in."""

    def __init__(self, read: Callable[[str], bytes], items: list[Item], rerank: bool,
                 hostile: float, seed: int) -> None:
        rng = random.Random(seed)
        self.captions = [i.caption for i in items if i.caption] or ["a picture"]
        self.ids = [i.id for i in items]
        chosen = rng.sample(items, min(UPLOADS, len(items)))
        self.images = [(Path(i.path).name, read(i.path)) for i in chosen]
        self.valid_kinds = ("text", "image", "rerank") if rerank else ("text", "image")
        self.hostile = hostile
        self.seed = seed

    def __call__(self, i: int) -> Call:
        rng = random.Random(self.seed * 1_000_003 + i)
        caption = rng.choice(self.captions)
        if rng.random() < self.hostile:
            return self._hostile(rng.choice(HOSTILE_KINDS), rng, caption)
        return self.valid(rng.choice(self.valid_kinds), rng, caption)

    def valid(self, kind: str, rng: random.Random, caption: str) -> Call:
        if kind == "text":
            return text_search(caption, k=rng.randint(1, 20))
        if kind == "image":
            name, data = rng.choice(self.images)
            return Call("image", "POST", "/v1/search/image", files={"file": (name, data, "image/png")},
                        data={"k": str(rng.randint(1, 20))})
        ids = rng.sample(self.ids, min(RERANK_IDS, len(self.ids)))
        return Call("rerank", "POST", "/v1/rerank", json={"text": caption, "ids": ids})

    def _hostile(self, kind: str, rng: random.Random, caption: str) -> Call:
        if kind == "broken_image":
            name, data = rng.choice(self.images)
            broken = data[: len(data) // 3] if rng.random() < 0.5 else rng.randbytes(256)
            return Call(kind, "POST", "/v1/search/image", valid=False,
                        files={"file": (name, broken, "image/png")})
        if kind == "empty_text":
            return Call(kind, "POST", "/v1/search/text", valid=False, json={"text": "", "k": 5})
        if kind == "k_zero":
            return Call(kind, "POST", "/v1/search/text", valid=False, json={"text": caption, "k": 0})
        return Call(kind, "POST", "/v1/search/text", valid=False,
                    content=b'{"text": "' + caption.encode()[:20] + b'", "k": ',
                    headers={"content-type": "application/json"})


def summarize(result: LoadResult, rss_start: int, rss_end: int) -> dict[str, Any]:
    samples = result.samples
    by_status = Counter(s.status for s in samples)
    by_kind: dict[str, Counter[int]] = {}
    for s in samples:
        by_kind.setdefault(s.kind, Counter())[s.status] += 1
    valid = [s for s in samples if s.valid]
    p50, p99 = percentiles_ms([s.latency_s for s in valid])
    return {
        "requests": len(samples),
        "seconds": round(result.elapsed_s, 1),
        "req_per_s": round(result.throughput, 1),
        "by_status": {str(k): v for k, v in sorted(by_status.items())},
        "by_kind": {k: {str(s): n for s, n in sorted(c.items())} for k, c in sorted(by_kind.items())},
        "server_errors": sum(n for code, n in by_status.items() if code >= 500),
        "no_answer": by_status.get(TRANSPORT_ERROR, 0),
        "failed_valid": sum(s.status != 200 for s in valid),
        "hostile_accepted": sum(200 <= s.status < 300 for s in samples if not s.valid),
        "valid_p50_ms": p50,
        "valid_p99_ms": p99,
        "rss_start_kib": rss_start,
        "rss_end_kib": rss_end,
        "rss_growth_pct": round(100 * (rss_end - rss_start) / rss_start, 1),
    }


def run(engine_dir: Path, index_dir: Path, clients: int = 16, seconds: float = 600.0,
        hostile: float = 0.1, seed: int = 0) -> dict[str, Any]:
    read, items = index_items(index_dir)
    with start_server(engine_dir, index_dir, cache_entries=0) as server:
        ready = readiness(server.url)
        mix = Mix(read, items, ready["rerank"], hostile, seed)
        warm_rng = random.Random(seed)
        warm = [mix.valid(kind, warm_rng, mix.captions[0]) for kind in mix.valid_kinds] * WARMUP_ROUNDS
        asyncio.run(run_load(server.url, lambda i: warm[i], 1, len(warm), seconds=120))
        # ONNX Runtime and the allocator grow their arenas to the batch sizes the load brings:
        # a reading before that would count the growth as a leak
        asyncio.run(run_load(server.url, lambda i: mix(-1 - i), clients, None,
                             min(WARMUP_MAX_S, WARMUP_SHARE * seconds)))
        rss_start = rss_kib(server.pid)
        result = asyncio.run(run_load(server.url, mix, clients, None, seconds))
        rss_end = rss_kib(server.pid)
    report = summarize(result, rss_start, rss_end)
    report |= {"clients": clients, "hostile_share": hostile, "rerank": ready["rerank"],
               "kinds": list(mix.valid_kinds) + list(HOSTILE_KINDS)}
    return report


def passed(report: dict[str, Any]) -> bool:
    return not (report["server_errors"] or report["failed_valid"] or report["no_answer"])


def render(report: dict[str, Any]) -> str:
    lines = [(f"soak: {report['clients']} clients, {report['seconds']} s, "
             f"{report['hostile_share']:.0%} hostile, rerank {'on' if report['rerank'] else 'off'}"),
             "", "| kind | " + "requests | by status" + " |", "| --- | ---: | --- |"]
    for kind, statuses in report["by_kind"].items():
        counts = ", ".join(f"{code}: {n}" for code, n in statuses.items())
        lines.append(f"| {kind} | {sum(statuses.values())} | {counts} |")
    lines += ["",
              f"- requests: {report['requests']} ({report['req_per_s']} req/s); by status: "
              + ", ".join(f"{c}: {n}" for c, n in report["by_status"].items()),
              (f"- 5xx: {report['server_errors']}; failed valid requests: {report['failed_valid']}; "
              f"no answer: {report['no_answer']}; hostile answered 2xx: {report['hostile_accepted']}"),
              f"- valid latency: p50 {report['valid_p50_ms']} ms, p99 {report['valid_p99_ms']} ms",
              (f"- server RSS: {report['rss_start_kib'] / 1024:.1f} MiB after warm-up → "
              f"{report['rss_end_kib'] / 1024:.1f} MiB at the end ({report['rss_growth_pct']:+.1f}%)"),
              f"- result: {'PASS' if passed(report) else 'FAIL'}"]
    return "\n".join(lines)


def main(engine_dir: Path, index_dir: Path, clients: int, seconds: float, hostile: float,
         json_path: Path | None, seed: int = 0) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    report = run(engine_dir, index_dir, clients, seconds, hostile, seed)
    print(render(report))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if passed(report) else 1
