"""Publishing folders atomically: write under a temporary name, then one `os.replace`.

A reader either sees no folder or a complete one. Both engine bundles and index bundles
are published this way.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temp folder beside `final`; on success rename it to `final`.

    `final` must not exist yet: published folders are immutable, new content gets a new name.
    On any error the temp folder is removed and `final` is untouched.
    """
    final = Path(final)
    if final.exists():
        raise FileExistsError(f"{final} already exists; published folders are never overwritten")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; a published bundle is world-readable
    try:
        yield tmp
        _fsync_tree(tmp)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Replace a small file's content in one rename (used for pointer files)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:  # read into one reused buffer, not a new chunk each time
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
