"""Loading a published index for search: checksums and engine id checked before use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from index import bundle
from index.errors import EngineMismatchError
from index.metadata import Item, MetadataStore


@dataclass(frozen=True)
class Hit:
    id: int
    score: float
    item: Item


class Searcher:
    """A loaded index version: FAISS index plus metadata, for one engine."""

    def __init__(self, path: str | Path, engine_id: str) -> None:
        self.path = bundle.resolve(path)
        self.manifest = bundle.read_manifest(self.path)
        if self.manifest.engine_id != engine_id:
            raise EngineMismatchError(self.manifest.engine_id, engine_id, str(self.path))
        self.index = faiss.read_index(str(self.path / bundle.FAISS_FILE))
        self.metadata = MetadataStore(self.path / bundle.METADATA_FILE)

    @property
    def version(self) -> str:
        return self.manifest.version

    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        """queries (n, dim) normalised -> for each, up to k hits, best first."""
        scores, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        items = self.metadata.get(sorted({int(i) for i in ids.ravel() if i >= 0}))
        return [
            [Hit(int(i), float(s), items[int(i)]) for s, i in zip(row_s, row_i) if i >= 0]
            for row_s, row_i in zip(scores, ids)
        ]

    def close(self) -> None:
        self.metadata.close()
