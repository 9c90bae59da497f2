"""Metadata store: SQLite table mapping index ids to image path, caption and user fields."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    with sqlite3.connect(path) as db:
        db.execute(SCHEMA)
        db.executemany(
            "INSERT INTO items (id, path, caption, fields) VALUES (?, ?, ?, ?)",
            ((i.id, i.path, i.caption, json.dumps(i.fields)) for i in items),
        )
    # sqlite3's context manager commits but does not close
    db.close()


class MetadataStore:
    """Read-only access, safe to share between the server's worker threads."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        self._lock = threading.Lock()

    def get(self, ids: Sequence[int]) -> dict[int, Item]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, path, caption, fields FROM items WHERE id IN ({marks})",
                [int(i) for i in ids],
            ).fetchall()
        return {r[0]: Item(r[0], r[1], r[2], json.loads(r[3])) for r in rows}

    def close(self) -> None:
        self._db.close()
