"""One writer at a time per index root, across processes: an exclusive `flock` on a lock file.

Every change (build, add, delete, compact, prune; CLI, admin API or Ray build alike) holds
the lock from reading its parent version to replacing `CURRENT`, so no two writers ever
start from the same parent and one of them silently undo the other. The holder's pid is
written into the file so a writer that gives up can say who it waited for. The kernel drops
the lock when its holder dies, so a killed writer never leaves the root locked.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from index.errors import IndexBusyError

LOCK_FILE = "LOCK"
WAIT_S = 30.0  # how long a writer waits for another one's change before giving up
POLL_S = 0.05


@contextmanager
def writer_lock(root: str | Path, wait_s: float = WAIT_S) -> Iterator[None]:
    """Hold `root`'s writer lock for the block; `IndexBusyError` naming the holder's pid when
    another writer keeps it longer than `wait_s`."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise IndexBusyError(
                        f"index root {root} is being changed by process {_holder(fd)}; gave up "
                        f"after {wait_s:g} s: try again when that change is published") from None
                time.sleep(POLL_S)
        _note_holder(fd, f"{os.getpid()}\n")
        try:
            yield
        finally:
            _note_holder(fd, "")
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _note_holder(fd: int, text: str) -> None:
    """Best effort: on a full disk the pid cannot be written, and the lock holds without it."""
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(), 0)
    except OSError:
        pass


def _holder(fd: int) -> str:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return text or "unknown"
