"""One side of `xmodal bench update`, run as a script inside the code tree under test (this
checkout, or a worktree of the commit before segments), so each side runs its own `index`.

Only the API both sides have is used for the measured operations: `add_images`,
`delete_ids`, `compact`. The engine is synthetic (random normalised vectors and tokens of the
default engine's shapes, from 8-pixel PNGs): what is measured is the index's writing, not
the encoder. Prints one JSON object.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Self

import numpy as np
from PIL import Image

from encoders.preprocess import ImagePreprocess
from index.build import BuildOptions
from index.search import Searcher
from index.update import add_images, compact, delete_ids
from index.writer import Contents

ENGINE_ID = "bench-update-synthetic"
CHUNK = 125_000  # rows generated (and, with segments, written as one segment) at a time


class SyntheticEngine:
    """What the index writer sees of an engine: an id, a manifest and `encode_*`."""

    def __init__(self, dim: int, tokens: tuple[int, int]) -> None:
        self.engine_id, self.dim, self.tokens = ENGINE_ID, dim, tokens
        self.manifest = SimpleNamespace(embed_dim=dim, image_preprocess=ImagePreprocess(size=8))
        self.rng = np.random.default_rng(1)

    def encode_pixels(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        n = len(pixels)
        return {"image_embeds": _unit(self.rng, n, self.dim),
                "image_tokens": self.rng.standard_normal((n, *self.tokens), np.float32)}

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return _unit(self.rng, len(texts), self.dim)


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim), np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _chunk(rng: np.random.Generator, start: int, n: int, dim: int, tokens: tuple[int, int],
           with_deleted: bool) -> Contents:
    from index.metadata import Item

    ids = np.arange(start, start + n, dtype=np.int64)
    token_rows = rng.standard_normal((n, *tokens), np.float32).astype(np.float16)
    fields = [ids, _unit(rng, n, dim), token_rows, [Item(int(i), f"{i}.png") for i in ids],
              np.zeros(0, np.int64), np.zeros((0, dim), np.float32)]
    if with_deleted:  # the version before segments kept tombstones in its contents
        fields.append(np.zeros(0, np.int64))
    return Contents(*fields, tokens[0])


def build_base(root: Path, n: int, dim: int, tokens: tuple[int, int], segments: int) -> None:
    """An index of `n` synthetic rows (Flat): with segments, `segments` of them."""
    rng = np.random.default_rng(0)
    try:
        from index.lock import writer_lock
        from index.segment import write_segment
        from index.version import VersionPlan, publish_version
    except ImportError:  # before segments: one version, written whole
        from index.build import publish_contents

        publish_contents(ENGINE_ID, _chunk(rng, 0, n, dim, tokens, True), root,
                         BuildOptions(factory="Flat"), next_id=n)
        return
    bounds = np.linspace(0, n, segments + 1).astype(int)
    with writer_lock(root):
        refs = [write_segment(root, _chunk(rng, a, b - a, dim, tokens, False), "Flat", 0.95)
                for a, b in itertools.pairwise(bounds)]
        publish_version(root, VersionPlan(ENGINE_ID, dim, refs, next_id=n,
                                          full_tokens=tokens[0]))


def _pngs(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (8, 8), (200, 40, 40))
    for i in range(n):
        image.save(folder / f"{i:05d}.png")
    return folder


class Probe:
    """A thread sampling this process's resident memory while an operation runs."""

    def __enter__(self) -> Self:
        self.start_rss, self.peak, self.running = _rss(), _rss(), True
        self.wchar = _io("wchar")
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        self.t0 = time.perf_counter()
        return self

    def _sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, _rss())
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.running = False
        self.thread.join()
        self.written = _io("wchar") - self.wchar
        self.rss_growth = self.peak - self.start_rss


def _rss() -> int:
    """Anonymous resident memory: what the process holds, not the pages of the memory-mapped
    stores it reads, which the kernel may drop at any time."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


def _io(field: str) -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _new_bytes(root: Path, before: set[int]) -> int:
    """Bytes of the files under `root` that did not exist before (new inodes)."""
    return sum(p.stat().st_size for p in root.rglob("*")
               if p.is_file() and p.stat().st_ino not in before)


def _inodes(root: Path) -> set[int]:
    return {p.stat().st_ino for p in root.rglob("*") if p.is_file()}


def measure(cfg: dict) -> dict:
    work = Path(cfg["work"])
    root, dim, tokens = work / "index", cfg["dim"], tuple(cfg["tokens"])
    started = time.perf_counter()
    build_base(root, cfg["size"], dim, tokens, cfg["segments"])
    out: dict = {"build_s": round(time.perf_counter() - started, 1), "ops": []}
    engine = SyntheticEngine(dim, tokens)
    served = Searcher(root, ENGINE_ID, mmap=True)  # the serving process holds a version
    opts = BuildOptions(workers=0)
    ops = [(f"add {n}", lambda n=n: add_images(engine, root, _pngs(work / f"add-{n}", n), opts))
           for n in cfg["adds"]]
    ops += [(f"delete {cfg['delete']}", lambda: delete_ids(root, list(range(0, 2 * cfg["delete"], 2)))),
            ("compact", lambda: compact(root))]
    for name, op in ops:
        before = _inodes(root)
        with Probe() as probe:
            manifest = op()
        out["ops"].append({"op": name, "seconds": round(probe.seconds, 3), "written": probe.written,
                           "new_file_bytes": _new_bytes(root, before),
                           "rss_growth": probe.rss_growth, "count": manifest.count})
    served.close()
    return out


def qps(cfg: dict) -> dict:
    """Search throughput over one segment and over `segments` of the same vectors."""
    import shutil

    rng = np.random.default_rng(2)
    queries = _unit(rng, cfg["queries"], cfg["dim"])
    out = {}
    for segments in (1, cfg["segments"]):
        root = Path(cfg["work"]) / f"qps-{segments}"
        build_base(root, cfg["size"], cfg["dim"], (1, 1), segments)
        s = Searcher(root, ENGINE_ID, mmap=True)
        s.search(queries[:8], 10)  # warm
        rounds = []
        for _ in range(cfg["rounds"]):
            t0 = time.perf_counter()
            for q in queries:
                s.search(q[None], 10)
            rounds.append(len(queries) / (time.perf_counter() - t0))
        out[str(segments)] = rounds
        s.close()
        shutil.rmtree(root)
    return out


if __name__ == "__main__":
    config = json.loads(sys.argv[1])
    result = qps(config) if config.get("mode") == "qps" else measure(config)
    import index

    print(json.dumps({**result, "code": str(Path(index.__file__).parents[1])}))
