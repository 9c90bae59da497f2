"""End-to-end serving benchmark: real HTTP against `xmodal serve` on loopback.

Two servers run side by side for the whole benchmark, both with the cache off (repeated
queries must reach the engine): micro-batching on (the configured defaults) and off
(`XMODAL_BATCH_MAX_SIZE=1`, no wait). For each concurrency, with and without rerank, the two
are measured one right after the other, so drift on a shared machine falls on both alike; the
batching gain at the top concurrency is the median over alternating rounds. Beside it, the raw
path's own gain from batches of the service's batch size (bench.stages.raw_batch_gain): what
the engine and index can give on this machine, so a gain short of the goal can be told apart
from a service that loses what the engine gains.

The overhead pass sends the same queries one at a time, interleaved with the raw path in
this process (`OnnxEngine.encode_texts` + `Searcher.search`, and the reranker for rerank
queries) at the same thread count; the service's ids are checked against the raw ids before
any figure is printed. Round trips that do no work (bench.floors) are timed in the same loop,
so the report shows how much of the overhead any HTTP server, or any uvicorn app, would pay.
How large that share is depends on the engine: `make bench-serve` also runs this against an
engine with a production-size text tower (bench.minilm).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.floors import start as start_floor
from bench.http import RoundTrip, encode_request
from bench.load import (
    Server,
    batch_sizes,
    cpu_seconds,
    index_items,
    percentiles_ms,
    query_texts,
    readiness,
    run_load,
    start_server,
    text_search,
)
from bench.stages import raw_batch_gain
from service.config import Settings

log = logging.getLogger(__name__)

CONCURRENCY = (1, 8, 32)
SERVERS = {"batching_on": {}, "batching_off": {"batch_max_size": 1, "batch_max_wait_ms": 0}}
GOAL_OVERHEAD = 0.30  # p50 service latency at most 30% over raw encode + search
GOAL_BATCH_GAIN = 3.0  # batching on: at least 3x the throughput of off at the top concurrency
GAIN_ROUNDS = 5
MIN_AGREEMENT = 0.95  # share of queries whose service ids equal the raw ids
RERANK_K = 16
WARMUP = 8
DEFAULTS = Settings.model_fields  # batching_on runs with these


@dataclass(frozen=True)
class Row:
    server: str
    concurrency: int
    rerank: bool
    requests: int
    non_200: int
    req_per_s: float
    p50_ms: float
    p99_ms: float
    server_cpu_ms: float  # server process CPU per request: what batching can cut
    client_cpu_ms: float  # this load generator's CPU per request, on the same cores


def _measure(server: Server, concurrency: int, rerank: bool, texts: list[str], k: int,
             requests: int, seconds: float) -> tuple[Any, float, float]:
    calls = [text_search(text, k, rerank).encoded(server.url) for text in texts]
    server_cpu, client_cpu = cpu_seconds(server.pid), time.process_time()
    result = asyncio.run(run_load(server.url, lambda i: calls[i % len(calls)], concurrency,
                                  requests, seconds))
    return result, cpu_seconds(server.pid) - server_cpu, time.process_time() - client_cpu


def _row(server: str, concurrency: int, rerank: bool, result: Any, server_cpu: float,
         client_cpu: float) -> Row:
    p50, p99 = percentiles_ms([s.latency_s for s in result.samples])
    n = max(1, len(result.samples))
    return Row(server, concurrency, rerank, len(result.samples),
               sum(s.status != 200 for s in result.samples), round(result.throughput, 1), p50, p99,
               round(1000 * server_cpu / n, 2), round(1000 * client_cpu / n, 2))


def _ids(content: bytes) -> list[int]:
    return [r["id"] for r in json.loads(content)["results"]]


def _timed(round_trip: RoundTrip, raw: bytes) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    status, content = round_trip(raw)
    elapsed = time.perf_counter() - t0
    if status != 200:
        raise RuntimeError(f"answered {status}: {content[:300]!r}")
    return elapsed, content


def overhead(servers: dict[str, Server], engine_dir: Path, index_dir: Path, texts: list[str],
             modes: list[bool], k: int, threads: int | None) -> list[dict[str, Any]]:
    """Per mode and server: p50 of one-at-a-time service latency vs p50 of the raw path.

    Requests are encoded before timing and sent on a blocking connection, so the figure is
    the service's and the network's, not the load generator's. Round trips that do no work
    (see bench.floors, and each server's /healthz) are timed in the same interleaved loop:
    a server woken after the raw path ran is slower to answer than one kept busy.
    """
    with start_floor("echo") as echo, start_floor("app") as app:
        floors = {"echo": echo, "app": app} | {f"healthz_{n}": s.url for n, s in servers.items()}
        return _overhead(servers, floors, engine_dir, index_dir, texts, modes, k, threads)


def _overhead(servers: dict[str, Server], floors: dict[str, str], engine_dir: Path,
              index_dir: Path, texts: list[str], modes: list[bool], k: int,
              threads: int | None) -> list[dict[str, Any]]:
    from encoders.engine import OnnxEngine
    from index.search import Searcher

    engine = OnnxEngine(engine_dir, threads=threads)
    searcher = Searcher(index_dir, engine.engine_id)

    def raw(text: str, rerank: bool) -> list[int]:
        hits = searcher.search(engine.encode_texts([text]), max(k, RERANK_K) if rerank else k)[0]
        ids = [h.id for h in hits]
        if not rerank:
            return ids
        head = ids[:RERANK_K]
        probs = engine.score(searcher.tokens(head), [text] * len(head))
        return ([head[i] for i in np.argsort(-probs, kind="stable")] + ids[RERANK_K:])[:k]

    round_trips = {name: RoundTrip(s.url) for name, s in servers.items()}
    floor_trips = {name: RoundTrip(url) for name, url in floors.items()}
    empty = {name: encode_request(url, "GET", "/healthz") for name, url in floors.items()}
    out = []
    try:
        for rerank in modes:
            for text in texts[:WARMUP]:
                raw(text, rerank)
            requests = {name: [encode_request(s.url, "POST", "/v1/search/text",
                                              json=text_search(t, k, rerank).json) for t in texts]
                        for name, s in servers.items()}
            raw_s: list[float] = []
            service_s: dict[str, list[float]] = {name: [] for name in servers}
            agree = {name: 0 for name in servers}
            floor_s: dict[str, list[float]] = {name: [] for name in floors}
            for i, text in enumerate(texts):  # interleaved: raw, then each server, query by query
                t0 = time.perf_counter()
                expected = raw(text, rerank)
                raw_s.append(time.perf_counter() - t0)
                for name, round_trip in round_trips.items():
                    took, content = _timed(round_trip, requests[name][i])
                    service_s[name].append(took)
                    agree[name] += _ids(content) == expected
                for name, round_trip in floor_trips.items():
                    floor_s[name].append(_timed(round_trip, empty[name])[0])
            raw_p50 = percentiles_ms(raw_s)[0]
            for name in servers:
                p50 = percentiles_ms(service_s[name])[0]
                out.append({"server": name, "rerank": rerank, "queries": len(texts),
                            "raw_p50_ms": raw_p50, "service_p50_ms": p50,
                            "ratio": round(p50 / raw_p50, 2) if raw_p50 else None,
                            "agreement": round(agree[name] / len(texts), 3),
                            "floors_p50_ms": {f: percentiles_ms(v)[0] for f, v in floor_s.items()}})
    finally:
        for round_trip in [*round_trips.values(), *floor_trips.values()]:
            round_trip.close()
        searcher.close()
    return out


def batching_gain(servers: dict[str, Server], concurrency: int, rerank: bool, texts: list[str],
                  k: int, requests: int, seconds: float) -> dict[str, Any]:
    """Throughput with batching on over off, in GAIN_ROUNDS rounds that alternate which server
    goes first; the median of the rounds' ratios is the figure (one pair of runs on this shared
    machine can be off by a fifth either way)."""
    on, off = [], []
    for r in range(GAIN_ROUNDS):
        order = list(SERVERS) if r % 2 == 0 else list(reversed(SERVERS))
        measured = {name: _measure(servers[name], concurrency, rerank, texts, k, requests,
                                   seconds)[0].throughput for name in order}
        on.append(measured["batching_on"])
        off.append(measured["batching_off"])
    ratios = [a / b if b else 0.0 for a, b in zip(on, off)]
    return {"concurrency": concurrency, "rerank": rerank,
            "on_req_per_s": [round(x, 1) for x in on], "off_req_per_s": [round(x, 1) for x in off],
            "round_ratios": [round(x, 2) for x in ratios], "ratio": round(statistics.median(ratios), 2)}


def raw_gains(engine_dir: Path, index_dir: Path, texts: list[str], modes: list[bool], k: int,
              threads: int | None) -> list[float]:
    """Per mode, what the raw path alone gains from batches of the service's batch size."""
    from encoders.engine import OnnxEngine
    from index.search import Searcher

    engine = OnnxEngine(engine_dir, threads=threads)
    searcher = Searcher(index_dir, engine.engine_id)
    try:
        return [raw_batch_gain(engine, searcher, texts, k, RERANK_K if rerank else None,
                               size=DEFAULTS["batch_max_size"].default,
                               max_pairs=DEFAULTS["rerank_max_pairs"].default)
                for rerank in modes]
    finally:
        searcher.close()


def run(engine_dir: Path, index_dir: Path, requests: int = 200, seconds: float = 10.0,
        concurrency: tuple[int, ...] = CONCURRENCY, k: int = 10,
        threads: int | None = None) -> dict[str, Any]:
    """Measure every row and the overhead pass; returns the report as plain data."""
    _, items = index_items(index_dir)
    texts = query_texts(items, max(requests, WARMUP), seed=1)
    common = {"cache_entries": 0} | ({"threads": threads} if threads else {})
    skipped: list[str] = []
    with contextlib.ExitStack() as stack:
        servers = {name: stack.enter_context(start_server(engine_dir, index_dir, **common, **extra))
                   for name, extra in SERVERS.items()}
        ready = readiness(servers["batching_on"].url)
        modes = [False, True] if ready["rerank"] else [False]
        if not ready["rerank"]:
            skipped.append(f"rerank rows: engine {ready['engine_id']} with index "
                           f"{ready['index_version']} cannot rerank (/readyz rerank=false: no "
                           "reranker in the engine or no image tokens in the index)")
        for server in servers.values():  # first runs of an ONNX session are slow
            for rerank in modes:
                asyncio.run(run_load(server.url, lambda i, r=rerank: text_search(texts[i], k, r),
                                     1, WARMUP, seconds))
        rows = []
        for c in concurrency:
            for rerank in modes:
                for name, server in servers.items():
                    measured = _measure(server, c, rerank, texts, k, requests, seconds)
                    rows.append(_row(name, c, rerank, *measured))
                    log.debug("%s", rows[-1])
        over = overhead(servers, engine_dir, index_dir, texts[: min(requests, 100)], modes, k,
                        threads)
        gain = [batching_gain(servers, max(concurrency), rerank, texts, k, requests, seconds)
                | {"raw_ratio": ceiling}
                for rerank, ceiling in zip(modes, raw_gains(engine_dir, index_dir, texts, modes,
                                                            k, threads), strict=True)]
        batches = {name: {"settings": s.settings, **batch_sizes(s.url),
                          "rerank": batch_sizes(s.url, "xmodal_rerank_batch_size")}
                   for name, s in servers.items()}
    return {"engine": str(engine_dir), "index": str(index_dir), "requests_per_row": requests,
            "seconds_per_row": seconds, "k": k, "rerank_k": RERANK_K,
            "rows": [asdict(r) for r in rows], "overhead": over, "batching_gain": gain,
            "servers": batches, "skipped": skipped, "batch_size": DEFAULTS["batch_max_size"].default,
            "goals": {"overhead_max": GOAL_OVERHEAD, "batching_gain_min": GOAL_BATCH_GAIN}}


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def render(report: dict[str, Any]) -> str:
    lines = [(f"# xmodal bench serve (engine {report['engine']}, index {report['index']}, "
             f"{os.cpu_count()} CPU cores shared by the servers and the load generator, "
             f"at most {report['requests_per_row']} requests or {report['seconds_per_row']} s "
             "per row, cache off)"), "",
             ("| server | clients | rerank | requests | non-200 | req/s | p50 ms | p99 ms "
             "| server CPU ms/req | client CPU ms/req |"),
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in report["rows"]:
        lines.append(f"| {r['server']} | {r['concurrency']} | {'yes' if r['rerank'] else 'no'} | "
                     f"{r['requests']} | {r['non_200']} | {r['req_per_s']} | {r['p50_ms']} | "
                     f"{r['p99_ms']} | {r['server_cpu_ms']} | {r['client_cpu_ms']} |")
    goal = 1 + report["goals"]["overhead_max"]
    lines += ["", ("Overhead at 1 client (p50 service / p50 raw encode + search [+ rerank], same "
              "queries, interleaved; requests encoded before timing, one blocking connection). "
              "Beside it, p50 round trips that do no work, timed in the same loop: a socket "
              "echo process (the loopback floor), a bare ASGI app under uvicorn, and the "
              "service's GET /healthz; *best* is (raw + the bare app's round trip) / raw, the "
              "least any uvicorn-served app could reach:"), "",
              (f"| server | rerank | raw p50 ms | service p50 ms | ratio | goal ≤ {goal:.2f} "
              "| echo ms | bare app ms | /healthz ms | best | ids equal raw |"),
              "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for o in report["overhead"]:
        ok = o["ratio"] is not None and o["ratio"] <= goal
        floor = o["floors_p50_ms"]
        best = round((o["raw_p50_ms"] + floor["app"]) / o["raw_p50_ms"], 2)
        lines.append(f"| {o['server']} | {'yes' if o['rerank'] else 'no'} | {o['raw_p50_ms']} | "
                     f"{o['service_p50_ms']} | {o['ratio']} | {_verdict(ok)} | {floor['echo']} | "
                     f"{floor['app']} | {floor['healthz_' + o['server']]} | {best} | "
                     f"{o['agreement']:.1%} |")
    lines += ["", ("Micro-batching on vs off (throughput ratio in alternating rounds at the top "
              "concurrency):"), ""]
    for g in report["batching_gain"]:
        ok = g["ratio"] is not None and g["ratio"] >= report["goals"]["batching_gain_min"]
        lines.append(f"- {g['concurrency']} clients, rerank {'yes' if g['rerank'] else 'no'}: "
                     f"median {g['ratio']}× over {len(g['round_ratios'])} rounds "
                     f"({', '.join(f'{r}×' for r in g['round_ratios'])}; on "
                     f"{statistics.median(g['on_req_per_s'])} vs off "
                     f"{statistics.median(g['off_req_per_s'])} req/s, medians) "
                     f"(goal ≥ {report['goals']['batching_gain_min']}×: {_verdict(ok)}); "
                     f"the raw path alone, in this process: {g['raw_ratio']}× from batches of "
                     f"{report['batch_size']}, about the most batching can pass on here")
    for name, b in report["servers"].items():
        lines.append(f"- {name}: {b['batches']} engine batches, mean size {b['mean']}, "
                     f"largest ≤ {b['largest_at_most']}; {b['rerank']['batches']} reranker "
                     f"batches, mean size {b['rerank']['mean']}, largest ≤ "
                     f"{b['rerank']['largest_at_most']}")
    lines += [f"- skipped {s}" for s in report["skipped"]]
    return "\n".join(lines)


def main(engine_dir: Path, index_dir: Path, requests: int, seconds: float,
         concurrency: tuple[int, ...], json_path: Path | None, threads: int | None = None,
         out: Path | None = None) -> int:
    report = run(engine_dir, index_dir, requests, seconds, concurrency, threads=threads)
    failed = sum(r["non_200"] for r in report["rows"])
    disagree = [o for o in report["overhead"] if o["agreement"] < MIN_AGREEMENT]
    if disagree:  # figures from a service that answers differently from the engine mean nothing
        print(f"service results differ from the raw engine + index: {disagree}")
        return 2
    text = render(report)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2) + "\n")
    if failed:
        print(f"{failed} request(s) did not get a 200")
    return 1 if failed else 0
