"""Real disks for fault tests: a small tmpfs that fills up, and what a reader can see."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

TMPFS_SIZE = "6m"


def published(root: Path) -> dict[str, bytes]:
    """CURRENT and every published file: not the work and staging folders (names with a
    leading dot), which no reader ever opens."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)}


def leave_free(mount: Path, free: int) -> None:
    """Fill `mount` with a preallocated file until `free` bytes are left."""
    filler = mount / "filler"
    filler.unlink(missing_ok=True)
    stat = os.statvfs(mount)
    size = stat.f_bavail * stat.f_frsize - free
    if size > 0:
        with open(filler, "wb") as handle:
            os.posix_fallocate(handle.fileno(), 0, size)


@contextmanager
def tmpfs(folder: Path) -> Iterator[Path]:
    """A small tmpfs mounted at `folder` (a real file system that fills up); the test is
    skipped with the reason where it cannot be mounted."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the RLIMIT_FSIZE test covers other users")
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(folder)],
                          check=False, capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
