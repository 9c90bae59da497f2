"""Same-run A/B of service settings or code: which serves text search faster here.

Each named variant is a set of `XMODAL_*` settings (`{"spin_us": 0}`), and optionally another
checkout of the project to run the server from (`before@/tmp/base={}`: a change against the
code it started from, e.g. `git worktree add /tmp/base main`); every variant's server runs for
the whole benchmark, cache off. For each concurrency the variants are measured one
after another, in an order that alternates from round to round, so drift on a shared machine
falls on all of them alike. The report gives, per variant and concurrency, the median over
rounds of throughput and of p50 latency, and their ratio to the first variant.

`xmodal bench ab --variant spin='{}' --variant no_spin='{"spin_us": 0}'` (on
the default model and on bench.minilm's engine) is how the engine's
spin setting (encoders.threads.SPIN_US) was chosen.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.load import (
    REPO,
    batch_sizes,
    index_items,
    percentiles_ms,
    query_texts,
    run_load,
    start_server,
    text_search,
)
from service.config import Settings

WARMUP = 64


@dataclass(frozen=True)
class Variant:
    settings: dict[str, Any]
    checkout: Path = REPO  # the code its server runs


def parse_variants(texts: list[str]) -> dict[str, Variant]:
    """`name[@checkout]={"setting": value}` each -> {name: Variant}; ValueError or TypeError
    naming what is wrong."""
    parsed = [_variant(text) for text in texts]
    names = [name for name, _ in parsed]
    if len(set(names)) != len(names):
        raise ValueError(f"variant names must differ, got {names}")
    if len(names) < 2:
        raise ValueError("an A/B needs at least two variants")
    return dict(parsed)


def _variant(text: str) -> tuple[str, Variant]:
    head, sep, settings = text.partition("=")
    name, at, checkout = head.partition("@")
    if not sep or not name or (at and not checkout):
        raise ValueError(f"a variant is NAME=JSON or NAME@CHECKOUT=JSON, got {text!r}")
    try:
        parsed = json.loads(settings)
    except json.JSONDecodeError as exc:
        raise ValueError(f"variant {name}: settings are not JSON ({exc})") from None
    if not isinstance(parsed, dict):
        raise TypeError(f"variant {name}: settings must be a JSON object, got {settings!r}")
    # the service ignores unknown XMODAL_* variables: a misspelt setting would test nothing
    unknown = sorted(set(parsed) - set(Settings.model_fields))
    if unknown:
        raise ValueError(f"variant {name}: no such service setting {', '.join(unknown)}")
    if not at:
        return name, Variant(parsed)
    root = Path(checkout).resolve()
    if not (root / "xmodal" / "__main__.py").is_file():
        raise ValueError(f"variant {name}: {checkout} is not a checkout of this project "
                         "(no xmodal/__main__.py)")
    return name, Variant(parsed, root)


def run(engine: Path, index: Path, variants: dict[str, Variant], concurrency: tuple[int, ...],
        rounds: int, requests: int, seconds: float) -> dict[str, Any]:
    """Medians over rounds per (variant, concurrency): req/s and p50 ms, plain data."""
    _, items = index_items(index)
    texts = query_texts(items, max(requests, WARMUP), seed=1)
    measured: dict[tuple[str, int], list[tuple[float, float]]] = {}
    failed = dict.fromkeys(variants, 0)
    with contextlib.ExitStack() as stack:
        servers = {name: stack.enter_context(start_server(
                       engine, index, v.checkout, cache_entries=0, **v.settings))
                   for name, v in variants.items()}
        calls = {name: [text_search(t).encoded(s.url) for t in texts] for name, s in servers.items()}
        for name, server in servers.items():  # first runs of an ONNX session are slow
            asyncio.run(run_load(server.url, lambda i, n=name: calls[n][i], 4, WARMUP, seconds))
        for r in range(rounds):
            order = list(servers) if r % 2 == 0 else list(reversed(servers))
            for c in concurrency:
                for name in order:
                    out = asyncio.run(run_load(servers[name].url,
                                               lambda i, n=name: calls[n][i % len(texts)],
                                               c, requests, seconds))
                    p50 = percentiles_ms([s.latency_s for s in out.samples])[0]
                    measured.setdefault((name, c), []).append((out.throughput, p50))
                    failed[name] += sum(s.status != 200 for s in out.samples)
        # what each server did with its settings, e.g. batch_max_size=1: batches of 1
        batches = {name: batch_sizes(server.url) for name, server in servers.items()}
    first = next(iter(variants))
    return {"engine": str(engine), "index": str(index), "rounds": rounds,
            "variants": {name: v.settings for name, v in variants.items()},
            "checkouts": {name: str(v.checkout) for name, v in variants.items()},
            "commits": {name: commit_of(v.checkout) for name, v in variants.items()},
            "non_200": failed, "batches": batches,
            "rows": [_row(name, c, v, measured[(first, c)]) for (name, c), v in measured.items()]}


def commit_of(checkout: Path) -> str | None:
    """The checkout's commit, short, with "+changes" when tracked files differ from it; None
    where git cannot tell (not the top of a git checkout, or no git)."""
    try:
        top, head = subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "--show-toplevel", "--short", "HEAD"],
            capture_output=True, text=True, check=True).stdout.split()
        if Path(top).resolve() != checkout.resolve():
            return None
        changes = subprocess.run(["git", "-C", str(checkout), "status", "--porcelain",
                                  "--untracked-files=no"],
                                 capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+changes" if changes else "")


def _row(name: str, c: int, runs: list[tuple[float, float]], base: list[tuple[float, float]],
         ) -> dict[str, Any]:
    rate, p50 = (statistics.median(x[i] for x in runs) for i in (0, 1))
    base_rate, base_p50 = (statistics.median(x[i] for x in base) for i in (0, 1))
    return {"variant": name, "concurrency": c, "req_per_s": round(rate, 1), "p50_ms": round(p50, 2),
            "req_per_s_vs_first": round(rate / base_rate, 2) if base_rate else None,
            "p50_vs_first": round(p50 / base_p50, 2) if base_p50 else None}


def render(report: dict[str, Any]) -> str:
    first = next(iter(report["variants"]))
    title = (f"# xmodal bench ab (engine {report['engine']}, medians of {report['rounds']} "
             f"alternating rounds, cache off; ratios against `{first}`)")
    lines = [title, "",
             "| variant | settings | code | clients | req/s | × req/s | p50 ms | × p50 |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    failed = {name: n for name, n in report["non_200"].items() if n}
    for row in sorted(report["rows"], key=lambda r: (r["concurrency"], r["variant"] != first)):
        settings = json.dumps(report["variants"][row["variant"]])
        code = report["checkouts"][row["variant"]]
        code = "this checkout" if code == str(REPO) else f"`{code}`"
        commit = report["commits"][row["variant"]]
        code += f" ({commit})" if commit else ""
        lines.append(f"| {row['variant']} | `{settings}` | {code} | {row['concurrency']} | "
                     f"{row['req_per_s']} | {row['req_per_s_vs_first']} | {row['p50_ms']} | "
                     f"{row['p50_vs_first']} |")
    if failed:
        lines += ["", f"**Requests without a 200**: {failed}"]
    return "\n".join(lines) + "\n"


def main(engine: Path, index: Path, variants: dict[str, Variant],
         concurrency: tuple[int, ...], rounds: int, requests: int, seconds: float,
         out: Path | None, json_out: Path | None = None) -> int:
    """Print the report (and write it as markdown and JSON); 1 if any request failed."""
    report = run(engine, index, variants, concurrency, rounds, requests, seconds)
    text = render(report)
    print(text, end="")
    if out is not None:
        out.write_text(text)
    if json_out is not None:
        json_out.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if any(report["non_200"].values()) else 0
