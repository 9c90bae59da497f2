"""Metadata store: SQLite table mapping index ids to image path, caption and user fields."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from encoders.errors import InputError
from index.durable import sqlite_file

SCHEMA = """
CREATE TABLE items (
    id INTEGER PRIMARY KEY,  -- the FAISS id
    path TEXT NOT NULL,      -- relative to the collection root
    caption TEXT,
    fields TEXT NOT NULL DEFAULT '{}'  -- JSON object of user fields
)
"""


@dataclass(frozen=True)
class Item:
    id: int
    path: str
    caption: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)


def write_store(path: Path, items: Iterable[Item]) -> None:
    with sqlite_file(path) as db:
        db.execute(SCHEMA)
        db.executemany(
            "INSERT INTO items (id, path, caption, fields) VALUES (?, ?, ?, ?)",
            ((i.id, i.path, i.caption, json.dumps(i.fields)) for i in items),
        )


@dataclass(frozen=True)
class Filter:
    """Restrict a search by user fields: exact values and inclusive ranges.

    `Filter(equals={"tag": "cat"}, ranges={"date": ("2024-01-01", "2024-06-30")})`;
    a range end may be None (open). Values compare as SQLite compares JSON values, so
    ISO dates compare as strings and numbers as numbers.
    """

    equals: dict[str, Any] = field(default_factory=dict)
    ranges: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # refused here, before the filter reaches SQLite inside a batch of other queries
        if len(self.equals) + len(self.ranges) > MAX_FILTER_FIELDS:
            raise InputError(f"a filter names at most {MAX_FILTER_FIELDS} fields; this one "
                             f"names {len(self.equals) + len(self.ranges)}")
        for name, value in self.equals.items():
            _check(name, value)
        for name, (low, high) in self.ranges.items():
            _check(name, low)
            _check(name, high)

    def sql(self) -> tuple[str, list[Any]]:
        clauses, args = [], []
        for name, value in self.equals.items():
            clauses.append("json_extract(fields, ?) = ?")
            args += [_json_path(name), value]
        for name, (low, high) in self.ranges.items():
            if low is not None:
                clauses.append("json_extract(fields, ?) >= ?")
                args += [_json_path(name), low]
            if high is not None:
                clauses.append("json_extract(fields, ?) <= ?")
                args += [_json_path(name), high]
        return " AND ".join(clauses) or "1", args


GET_CHUNK = 999
CACHED_ITEMS = 16_384  # decoded items kept per store (a few MB): the popular results
MAX_FILTER_FIELDS = 32  # far below SQLite's expression depth limit (1000)
SQLITE_INTS = (-(2**63), 2**63 - 1)


def _check(name: str, value: Any) -> None:
    _json_path(name)
    if value is not None and not isinstance(value, str | int | float):
        raise InputError(f"filter field {name!r}: values are strings, numbers or booleans; "
                         f"got {type(value).__name__}")
    if isinstance(value, int) and not SQLITE_INTS[0] <= value <= SQLITE_INTS[1]:
        raise InputError(f"filter field {name!r}: {value} is outside the 64-bit integers "
                         "the store holds")


def _json_path(name: str) -> str:
    if not name or not all(c.isalnum() or c in "_-" for c in name):
        raise InputError(f"filter field names are letters, digits, _ and -; got {name!r}")
    return f'$."{name}"'


def read_all(path: Path) -> list[Item]:
    """Every item of a store, by id (used by add, compact and re-index)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT id, path, caption, fields FROM items ORDER BY id").fetchall()
    finally:
        db.close()
    return [Item(r[0], r[1], r[2], json.loads(r[3])) for r in rows]


class MetadataStore:
    """Read-only access, safe to share between the server's worker threads.

    A store never changes once published, so decoded items are kept (up to CACHED_ITEMS, least
    recently used dropped first): a search's hits are mostly items other searches returned,
    and reading and JSON-decoding them again was a tenth of a batch's work on the worker.
    Items are shared between callers: read-only.
    """

    def __init__(self, path: Path, cached: int = CACHED_ITEMS) -> None:
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        self._lock = threading.Lock()
        self._cached = cached
        self._items: OrderedDict[int, Item] = OrderedDict()

    def get(self, ids: Sequence[int]) -> dict[int, Item]:
        """The items of those `ids` that exist, by id."""
        wanted = [int(i) for i in ids]
        found: dict[int, Item] = {}
        with self._lock:
            for i in wanted:
                item = self._items.get(i)
                if item is not None:
                    self._items.move_to_end(i)
                    found[i] = item
            missing = [i for i in wanted if i not in found]
            # in chunks: SQLite builds older than 3.32 take at most 999 parameters a statement
            for start in range(0, len(missing), GET_CHUNK):
                chunk = missing[start : start + GET_CHUNK]
                for r in self._db.execute(
                        f"SELECT id, path, caption, fields FROM items WHERE id IN "
                        f"({','.join('?' * len(chunk))})", chunk):
                    found[r[0]] = self._items[r[0]] = Item(r[0], r[1], r[2], json.loads(r[3]))
            while len(self._items) > self._cached:
                self._items.popitem(last=False)
        return found

    def matching(self, where: Filter) -> np.ndarray:
        """Ids of items whose fields satisfy `where`, ascending."""
        clause, args = where.sql()
        with self._lock:
            rows = self._db.execute(f"SELECT id FROM items WHERE {clause} ORDER BY id",
                                    args).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def close(self) -> None:
        self._db.close()
