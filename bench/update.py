"""`xmodal bench update`: what add, delete and compact cost, with segments and with the version
before them, side by side in one run.

Each side runs `bench/update_driver.py` inside its own code tree (this checkout, and a git
worktree of the commit before segments) on the same synthetic index: normalised vectors and
image tokens of the default engine's shapes, a Flat FAISS index. For each size it measures
adding 1, 100 and 10,000 images, deleting 1,000 ids and compacting: seconds, bytes the
process wrote, bytes of new files, and how much the resident memory of the process, which
holds the served version memory-mapped as the service does, grew during the operation. Then
search throughput over one segment against `segments` segments of the same vectors.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

from bench.output import emit

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DRIVER = REPO / "bench" / "update_driver.py"
SEGMENTS_MARK = "FORMAT_VERSION = 2"  # the line that made versions lists of segments
ROWS_PER_SEGMENT = 125_000  # how the synthetic base is cut: below the merge policy's 10 a tier
GOAL_WRITE_RATIO, GOAL_ADD_S, GOAL_QPS_RATIO = 3.0, 2.0, 0.8
MB = 2**20


def before_commit() -> str:
    """The commit before versions became segments (HEAD while that change is uncommitted)."""
    found = subprocess.run(["git", "log", "--format=%H", f"-S{SEGMENTS_MARK}", "--",
                            "index/bundle.py"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    return f"{found[-1]}^" if found else "HEAD"


def worktree(rev: str, folder: Path) -> Path:
    """A detached worktree of `rev` at `folder` (made once; reused while it is that commit)."""
    sha = subprocess.run(["git", "rev-parse", rev], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.strip()
    if (folder / ".git").exists():
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True,
                              text=True, check=True).stdout.strip()
        if head == sha:
            return folder
        subprocess.run(["git", "worktree", "remove", "--force", str(folder)], cwd=REPO, check=True)
    subprocess.run(["git", "worktree", "add", "--detach", str(folder), sha], cwd=REPO, check=True,
                   capture_output=True)
    return folder


def run_side(tree: Path, cfg: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    # run from the tree's root, not the driver's folder: bench/index.py would shadow `index`
    launch = f"import runpy; runpy.run_path({str(DRIVER)!r}, run_name='__main__')"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", launch, json.dumps(cfg)], cwd=tree, env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"bench update driver failed in {tree}:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if Path(result["code"]).resolve() != tree.resolve():
        raise RuntimeError(f"the driver ran {result['code']}'s index, not {tree}'s")
    log.info("%s, %d rows: %.0f s", tree, cfg["size"], time.perf_counter() - started)
    return result


def main(sizes: tuple[int, ...], dim: int, tokens: tuple[int, int], before_max: int,
         queries: int, rounds: int, work: Path, out: Path | None, json_out: Path | None) -> int:
    rev = before_commit()
    before_tree = worktree(rev, work / "before")
    short = subprocess.run(["git", "rev-parse", "--short=12", rev], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.strip()
    results: dict = {"before": short, "dim": dim, "tokens": list(tokens), "sizes": {}}
    for size in sizes:
        cfg = {"size": size, "dim": dim, "tokens": list(tokens), "adds": [1, 100, 10_000],
               "delete": 1000, "segments": max(1, -(-size // ROWS_PER_SEGMENT))}
        row = {}
        for side, tree in (("segments", REPO), ("before", before_tree)):
            if side == "before" and size > before_max:
                continue
            side_work = work / f"{side}-{size}"
            _clear(side_work)
            row[side] = run_side(tree, {**cfg, "work": str(side_work)})
            _clear(side_work)
        results["sizes"][str(size)] = row
    largest = max(sizes)
    qps_work = work / "qps"
    _clear(qps_work)
    results["qps"] = run_side(REPO, {"mode": "qps", "size": largest, "dim": dim,
                                     "segments": 10, "queries": queries, "rounds": rounds,
                                     "work": str(qps_work)})
    _clear(qps_work)
    results["qps"]["size"] = largest
    emit(render(results, _memory()), out, results, json_out)
    return 0


def _clear(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)


def _memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _row_bytes(results: dict) -> int:
    """What one image adds: its embedding and its tokens."""
    t, w = results["tokens"]
    return results["dim"] * 4 + t * w * 2


def render(results: dict, memory: int) -> str:
    lines = [
        "# Index updates: segments against the version before them",
        "",
        (f"Regenerated by `xmodal bench update` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())},"
        f" {os.cpu_count()} cores). Synthetic index: {results['dim']}-d normalised vectors and "
        f"{results['tokens'][0]} x {results['tokens'][1]} fp16 image tokens a row (the default "
        f"engine's shapes, {_row_bytes(results):,} bytes a row), Flat FAISS index, a synthetic "
        "encoder (the index's writing is measured, not the model). The segments side builds its "
        f"base as segments of {ROWS_PER_SEGMENT:,} rows. The other side is `{results['before']}`, "
        "run from a git worktree in the same run. Operations run in order on one index; the "
        "process holds the served version memory-mapped, as the service does. Written: bytes "
        "the process wrote (`wchar`); RSS: growth of its anonymous resident memory (`RssAnon`: not the pages of memory-mapped stores) during the operation."),
        "",
    ]
    lines += _goals(results)
    for size, row in results["sizes"].items():
        lines += ["", f"## {int(size):,} images", ""]
        lines += _table(row)
        if "before" not in row:
            lines += ["", _not_run(results, int(size), memory)]
    lines += ["", _qps_line(results["qps"])]
    return "\n".join(lines) + "\n"


def _op(row: dict, side: str, name: str) -> dict | None:
    return next((o for o in row.get(side, {}).get("ops", []) if o["op"] == name), None)


def _table(row: dict) -> list[str]:
    out = [("| operation | segments: s | written MB | new files MB | RSS +MB | before: s | "
           "written MB | RSS +MB | written, before / segments |"), "| --- " * 9 + "|"]
    for op in row["segments"]["ops"]:
        b = _op(row, "before", op["op"])
        cells = [op["op"], f"{op['seconds']:.2f}", f"{op['written'] / MB:,.1f}",
                 f"{op['new_file_bytes'] / MB:,.1f}", f"{op['rss_growth'] / MB:,.1f}"]
        if b:
            cells += [f"{b['seconds']:.2f}", f"{b['written'] / MB:,.1f}",
                      f"{b['rss_growth'] / MB:,.1f}", f"{b['written'] / max(op['written'], 1):,.0f}x"]
        else:
            cells += ["not run"] * 4
        out.append("| " + " | ".join(cells) + " |")
    return out


def _not_run(results: dict, size: int, memory: int) -> str:
    measured = [(int(s), _op(r, "before", "add 1")) for s, r in results["sizes"].items()
                if "before" in r]
    if not measured:
        return "The version before segments was not run at this size."
    at, op = max(measured, key=lambda pair: pair[0])
    per_row = op["rss_growth"] / at
    return (f"The version before segments was not run at {size:,} images: it loads every array "
            f"of the index to change it. At {at:,} images adding one image grew its memory by "
            f"{op['rss_growth'] / MB:,.0f} MB ({per_row:,.0f} bytes a row); at {size:,} that is "
            f"{per_row * size / 2**30:,.1f} GiB, against this machine's {memory / 2**30:,.1f} GiB.")


def _goals(results: dict) -> list[str]:
    size = max(results["sizes"], key=int)
    row = results["sizes"][size]
    add = _op(row, "segments", "add 100")
    payload = 100 * _row_bytes(results)
    ratio = add["written"] / payload
    qps = results["qps"]
    one, many = median(qps["1"]), median(qps[max(qps_keys(qps), key=int)])
    return ["## Goals", "",
            (f"- adding 100 images to {int(size):,} writes at most {GOAL_WRITE_RATIO:g}x what "
            f"is added ({payload / MB:.2f} MB): {add['written'] / MB:.2f} MB, {ratio:.2f}x -> "
            f"**{_met(ratio <= GOAL_WRITE_RATIO)}**"),
            (f"- and takes under {GOAL_ADD_S:g} s: {add['seconds']:.2f} s -> "
            f"**{_met(add['seconds'] < GOAL_ADD_S)}**"),
            (f"- RSS during the add grows by at most the added segment's size "
            f"({add['new_file_bytes'] / MB:.2f} MB): {add['rss_growth'] / MB:.2f} MB -> "
            f"**{_met(add['rss_growth'] <= add['new_file_bytes'])}**"),
            (f"- search QPS with 10 segments >= {GOAL_QPS_RATIO:.0%} of one segment's: "
            f"{many / one:.0%} -> **{_met(many / one >= GOAL_QPS_RATIO)}**")]


def qps_keys(qps: dict) -> list[str]:
    return [k for k in qps if k.isdigit()]


def _met(ok: bool) -> str:
    return "met" if ok else "not met"


def _qps_line(qps: dict) -> str:
    keys = sorted(qps_keys(qps), key=int)
    parts = [f"{k} segment(s) {median(qps[k]):,.0f} QPS (rounds: "
             f"{', '.join(f'{v:,.0f}' for v in qps[k])})" for k in keys]
    return (f"Search over {qps['size']:,} vectors, one query at a time, k = 10, Flat: "
            + "; ".join(parts) + ".")
