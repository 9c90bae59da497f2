"""What the service loads at start-up: the engine and the index searcher built for it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from encoders.engine import OnnxEngine
from index.search import Searcher
from service.config import Settings

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    engine: OnnxEngine
    searcher: Searcher
    # what the searcher was loaded from: an index root (changes publish into it) or a version
    # folder (pinned: no changes); None: not known, no changes
    index_dir: Path | None = None

    @classmethod
    def load(cls, settings: Settings) -> Runtime:
        """Load engine and index; raises if the index was built by another engine."""
        engine = OnnxEngine(settings.engine_dir, threads=settings.threads, spin_us=settings.spin_us)
        searcher = Searcher(settings.index_dir, engine.engine_id)
        log.info("serving index %s (%d images) with engine %s",
                 searcher.version, searcher.manifest.count, engine.engine_id)
        return cls(engine, searcher, settings.index_dir)

    def with_index(self, index_dir: Path, version: str | None = None) -> Runtime:
        """The same engine over another index (checked against it as at start-up); `version`:
        that version of the root `index_dir` rather than the one its CURRENT names."""
        searcher = Searcher(index_dir / version if version else index_dir, self.engine.engine_id)
        log.info("loaded index %s (%d images)", searcher.version, searcher.manifest.count)
        return Runtime(self.engine, searcher, index_dir)

    def close(self) -> None:
        self.searcher.close()
