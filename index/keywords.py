"""The keyword index of a segment: SQLite FTS5 over each item's caption and string user fields.

Written beside the segment's metadata store by the same `write_contents` that writes every
other segment file, so a build, an add (one new segment) and a merge (one segment from
several, deleted rows dropped) each leave a keyword index that holds exactly their rows; a
delete writes no segment, and the version's deletion set is applied to keyword hits as it is
to vector hits. The FTS5 row id is the item id.

Ranking is FTS5's BM25 (Robertson & Zaragoza 2009) within a segment; hits of several segments
are merged by that score. A segment's term statistics are its own (Lucene's per-segment
scoring without a global pass): after adds, scores across segments are comparable up to the
differences in their term frequencies, and a compaction makes them one set again.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path

import numpy as np

from index.durable import sqlite_file
from index.errors import IndexBundleError
from index.metadata import Filter, Item

KEYWORDS_FILE = "keywords.sqlite"
# Porter stemming over Unicode words, accents folded: "cats" finds "cat", "café" finds "cafe"
TOKENIZE = "porter unicode61 remove_diacritics 2"
SCHEMA = f"CREATE VIRTUAL TABLE keywords USING fts5(body, tokenize='{TOKENIZE}')"
# FTS5 treats quotes, operators and column filters specially: a query is cut into its words
# here, each quoted, so any text a user types is a plain OR of words, never a syntax error
WORD = re.compile(r"\w+", re.UNICODE)
MAX_QUERY_WORDS = 64


def item_text(item: Item) -> str:
    """What the keyword index holds of an item: its caption and its string user fields."""
    strings = [v for v in item.fields.values() if isinstance(v, str)]
    return "\n".join([item.caption or "", *strings])


def write_keywords(path: Path, items: Iterable[Item]) -> None:
    with sqlite_file(path) as db:
        db.execute(SCHEMA)
        db.executemany("INSERT INTO keywords (rowid, body) VALUES (?, ?)",
                       ((item.id, item_text(item)) for item in items))
        db.execute("INSERT INTO keywords (keywords) VALUES ('optimize')")  # one b-tree, read-only after


def match_expression(text: str) -> str | None:
    """An FTS5 query that matches any word of `text` (None: it has no words)."""
    words = WORD.findall(text)[:MAX_QUERY_WORDS]
    return " OR ".join('"' + w + '"' for w in words) or None


def has_keyword_index(folder: Path) -> bool:
    """Whether a segment folder holds a keyword index with its FTS5 table (segments written
    before keyword search have none)."""
    path = folder / KEYWORDS_FILE
    if not path.is_file():
        return False
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        table = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'keywords'").fetchone()
    return table is not None


class KeywordIndex:
    """One segment's keyword index opened read-only, with its metadata store attached so a
    filter is applied inside the same query. Safe to share between threads."""

    def __init__(self, folder: Path, metadata: Path) -> None:
        path = folder / KEYWORDS_FILE
        if not path.is_file():
            raise IndexBundleError(f"segment {folder} has no keyword index ({KEYWORDS_FILE}): it "
                                   "was built before keyword search; compact or re-index it")
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        self._db.execute("ATTACH DATABASE ? AS meta", (f"file:{metadata}?mode=ro",))
        self._lock = threading.Lock()

    def search(self, text: str, k: int, where: Filter | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The `k` best (scores, item ids) for `text`, best first; scores are BM25 with FTS5's
        sign flipped, so higher is better. Ties go to the lower id."""
        expression = match_expression(text)
        if expression is None or k < 1:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        sql = "SELECT rowid, -bm25(keywords) FROM keywords WHERE keywords MATCH ?"
        args: list = [expression]
        if where is not None:
            clause, more = where.sql()
            sql += f" AND rowid IN (SELECT id FROM meta.items WHERE {clause})"
            args += more
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY bm25(keywords), rowid LIMIT ?",
                                    [*args, k]).fetchall()
        ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        return np.fromiter((r[1] for r in rows), np.float32, len(rows)), ids

    def close(self) -> None:
        self._db.close()


class VersionKeywords:
    """The keyword indexes of a version's segments, deleted ids left out: one search asks
    each segment for its best and merges them by score. Opened on first use, so a version
    whose segments predate keyword search still serves vector search."""

    def __init__(self, segments: list[tuple[Path, int]], deleted: np.ndarray,
                 metadata_file: str) -> None:
        """`segments`: (folder, how many of its rows are deleted) each; `deleted`: sorted ids."""
        self._folders = [folder for folder, _ in segments]
        self._dead_rows = [dead for _, dead in segments]
        self._deleted, self._metadata_file = deleted, metadata_file
        self._open: list[KeywordIndex] | None = None
        self._lock = threading.Lock()

    @cached_property
    def available(self) -> bool:
        """Whether every segment has a keyword index, so keyword search answers for all
        (asked once: segments are immutable)."""
        return all(has_keyword_index(folder) for folder in self._folders)

    def _indexes(self) -> list[KeywordIndex]:
        with self._lock:
            if self._open is None:
                self._open = [KeywordIndex(f, f / self._metadata_file) for f in self._folders]
            return self._open

    def search(self, text: str, k: int, where: Filter | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores (1, k), ids (1, k)) best first, -1 past the last hit: the shape of a FAISS
        result for one query."""
        scores, ids = [], []
        for index, dead in zip(self._indexes(), self._dead_rows, strict=True):
            # deleted ids may be among a segment's best: ask for that many more, then drop them
            s, i = index.search(text, k + dead, where)
            live = ~np.isin(i, self._deleted)
            scores.append(s[live])
            ids.append(i[live])
        s, i = np.concatenate(scores or [np.zeros(0, np.float32)]), np.concatenate(ids or [np.zeros(0, np.int64)])
        order = np.lexsort((i, -s))[:k]  # by score, then by id
        pad = k - len(order)
        return (np.pad(s[order], (0, pad), constant_values=-np.inf)[None],
                np.pad(i[order], (0, pad), constant_values=-1)[None])

    def close(self) -> None:
        for index in self._open or []:
            index.close()
