"""Faults while publishing: a SIGKILL mid-publish leaves the previous version serving and no
half-written version ever loads (a full disk: test_storage_faults.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from encoders.engine import OnnxEngine
from index import bundle
from index.build import build_index
from index.search import Searcher

REPO = Path(__file__).resolve().parents[2]


def _staging(root: Path) -> list[Path]:
    return [p for p in root.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]


def _published(root: Path) -> dict[str, bytes]:
    """CURRENT and every published file (resumable `.build-*` work folders are not published)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.relative_to(root).parts[0].startswith(".")}


def _publish_forever(engine: Path, gallery: Path, root: Path) -> subprocess.Popen:
    """A process that keeps publishing versions (each a full write of a bundle)."""
    script = textwrap.dedent(f"""
        from encoders.engine import OnnxEngine
        from index.build import build_index
        engine = OnnxEngine({str(engine)!r}, threads=1)
        while True:
            build_index(engine, {str(gallery)!r}, {str(root)!r}, workers=0)
    """)
    return subprocess.Popen([sys.executable, "-c", script], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_sigkill_while_publishing_keeps_the_previous_version(
    tiny_engine: OnnxEngine, gallery: Path, tmp_path: Path
) -> None:
    root = tmp_path / "index"
    first = build_index(tiny_engine, gallery, root, workers=0)
    process = _publish_forever(tiny_engine.path, gallery, root)
    try:
        deadline = time.monotonic() + 120
        while not _staging(root) and time.monotonic() < deadline:
            time.sleep(0.005)  # wait until a version is half-written
        assert _staging(root), "the publisher never started writing a version"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    current = bundle.resolve(root)
    searcher = Searcher(root, tiny_engine.engine_id)  # loads, checksums pass
    assert searcher.manifest.count == first.count
    assert not current.name.startswith(".")  # a staging folder is never current
    assert build_index(tiny_engine, gallery, root, workers=0).count == first.count  # and goes on
