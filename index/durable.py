"""Writing the files of an index version so that a failed write is an error, never a file.

Every file a version holds goes through here: flushed, `fsync`ed and its size read back from
the file system before any checksum is taken, so a full disk, a quota or an I/O error is a
`StorageError` at write time instead of a truncated file that is checksummed and published.
FAISS raises `RuntimeError` from `write_index` and does not check `fclose`, so its files are
also read back (memory-mapped) and their vector count compared; SQLite reports a full disk
as `sqlite3.OperationalError`. Both become the same `StorageError` as an `OSError` would.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import faiss
import numpy as np

from index.errors import StorageError


@contextmanager
def _storage(path: Path) -> Iterator[None]:
    try:
        yield
    except StorageError:
        raise
    except (OSError, RuntimeError, sqlite3.Error) as exc:
        reason = getattr(exc, "strerror", None) or str(exc).strip()
        error = StorageError(f"cannot write {path}: {reason} ({_free(path)} bytes free there)")
        error.errno = getattr(exc, "errno", None)
        raise error from exc


def _free(path: Path) -> int:
    try:
        stat = os.statvfs(path.parent)
    except OSError:
        return 0
    return stat.f_bavail * stat.f_frsize


def write_stream(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Create `path`, fill it with `write(handle)`, and make sure all of it is on disk; a
    failed write leaves no partial file behind."""
    try:
        with _storage(path):
            with open(path, "wb") as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
                written = handle.tell()
            if os.stat(path).st_size != written:
                raise StorageError(f"{path} holds {os.stat(path).st_size} bytes of {written} written")
    except StorageError:
        path.unlink(missing_ok=True)
        raise


def save_array(path: Path, array: np.ndarray) -> None:
    write_stream(path, lambda handle: np.save(handle, array))


def save_rows(path: Path, rows, dtype: np.dtype | type, chunk_bytes: int = 2**18) -> None:
    """An `.npy` file of `rows` (an array, or anything with `shape` that slices into arrays)
    written about `chunk_bytes` at a time, each chunk written from its own buffer (a view of a
    memory-mapped store is not copied): a merge of memory-mapped stores never holds them all,
    and an add holds no copy of its tokens."""
    dtype = np.dtype(dtype)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
              "shape": tuple(int(n) for n in rows.shape)}
    row_bytes = int(np.prod(rows.shape[1:], dtype=np.int64)) * dtype.itemsize
    chunk = max(1, chunk_bytes // max(row_bytes, 1))

    def write(handle: BinaryIO) -> None:
        np.lib.format.write_array_header_1_0(handle, header)
        for start in range(0, rows.shape[0], chunk):
            part = np.ascontiguousarray(rows[start : start + chunk], dtype)
            handle.write(part.reshape(-1).view(np.uint8))
    write_stream(path, write)


def write_text(path: Path, text: str) -> None:
    write_stream(path, lambda handle: handle.write(text.encode()))


def save_faiss(path: Path, index: faiss.Index) -> None:
    """`faiss.write_index` (or its binary twin), synced, then read back: a short write fails
    here, not at load."""
    binary = isinstance(index, faiss.IndexBinary)
    with _storage(path):
        (faiss.write_index_binary if binary else faiss.write_index)(index, str(path))
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
        read = faiss.read_index_binary if binary else faiss.read_index
        back = read(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
        if back.ntotal != index.ntotal or back.d != index.d:
            raise StorageError(f"{path} reads back as {back.ntotal} x {back.d} vectors, "
                               f"not {index.ntotal} x {index.d}")


@contextmanager
def sqlite_file(path: Path) -> Iterator[sqlite3.Connection]:
    """A new SQLite database, committed, synced and closed on leaving the block."""
    with _storage(path):
        db = sqlite3.connect(path)
        try:
            db.execute("PRAGMA synchronous = FULL")
            yield db
            db.commit()
        finally:
            db.close()
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())


def link_or_copy(src: Path, dst: Path) -> None:
    """Share an immutable file by a hard link; copied where links cannot be made."""
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or links not allowed
        with _storage(dst):
            shutil.copy2(src, dst)
