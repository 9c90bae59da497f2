"""A real full disk while a change is published: through the CLI on a small tmpfs (mounted by
the test, as root) and under a file-size limit (`RLIMIT_FSIZE`, any user). Each failure is
a clear error, the published files stay byte-identical and no truncated version appears."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from index import bundle
from index.build import build_index
from index.search import Searcher
from tests.disk import leave_free, published
from training.synthetic import write_gallery
from xmodal import cli

REPO = Path(__file__).resolve().parents[2]
FREE_STEPS = [0, 8 << 10, 24 << 10, 48 << 10, 96 << 10, 192 << 10, 384 << 10, 1 << 20, 4 << 20]


def check_unchanged(root: Path, before: dict[str, bytes], engine_id: str, count: int) -> None:
    assert published(root) == before  # CURRENT and every version and segment, byte for byte
    assert Searcher(root, engine_id).manifest.count == count  # loads, checksums pass
    staged = [p for p in (root / bundle.SEGMENTS).iterdir() if p.name.endswith(".tmp")]
    assert not staged and not [p for p in root.iterdir() if p.name.endswith(".tmp")]


def test_full_tmpfs_fails_a_cli_add_cleanly(tiny_engine, gallery, small_disk, tmp_path,
                                             capsys) -> None:
    root = small_disk / "idx"
    first = build_index(tiny_engine, gallery, root, workers=0)
    images = write_gallery(tmp_path / "new", 40, seed=12)
    argv = ["index", "add", "--engine", str(tiny_engine.path), "--index", str(root),
            "--images", str(images), "--workers", "0"]
    failures = []
    for free in FREE_STEPS:
        before = published(root)
        leave_free(small_disk, free)
        capsys.readouterr()
        if cli.main(argv) == 0:
            break
        message = capsys.readouterr().err
        assert "nothing was published" in message and "bytes free there" in message, message
        failures.append(message)
        check_unchanged(root, before, tiny_engine.engine_id, first.count)
    else:
        pytest.fail("the add never fitted; the disk is too small for the test")
    (small_disk / "filler").unlink()
    # failures happened mid-publish too (a segment or version file), not only in the
    # encoder's work folder
    assert any(f"/{bundle.SEGMENTS}/" in m or "/v20" in m for m in failures), failures
    assert Searcher(root, tiny_engine.engine_id).manifest.count == first.count + 40


def test_file_size_limit_fails_a_cli_add_cleanly(tiny_engine, gallery, tmp_path) -> None:
    """Any user: a process whose files may not grow past a limit gets EFBIG, as from a quota."""
    root = tmp_path / "idx"
    first = build_index(tiny_engine, gallery, root, workers=0)
    before = published(root)
    images = write_gallery(tmp_path / "new", 40, seed=13)

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error from write(), not a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (4 << 10, 4 << 10))

    done = subprocess.run(
        [sys.executable, "-m", "xmodal", "index", "add", "--engine", str(tiny_engine.path),
         "--index", str(root), "--images", str(images), "--workers", "0"],
        check=False, cwd=REPO, capture_output=True, text=True, preexec_fn=limit, timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("xmodal index add:") and "nothing was published" in last, last
    check_unchanged(root, before, tiny_engine.engine_id, first.count)
