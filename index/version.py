"""Publishing a version: the segments it searches, its deletion set, and a manifest summing
them up. Build, add, delete, compact and merge all end here, holding the root's writer lock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from index import bundle
from index.durable import save_array
from index.segment import SegmentRef
from index.tokens import TOKENS_FILE
from index.writer import write_skipped

log = logging.getLogger(__name__)


@dataclass
class VersionPlan:
    """What a new version is made of; `parent`: the version it derives from, which CURRENT
    must still name when it is published ("" for a build, which replaces whatever is there)."""

    engine_id: str
    dim: int
    segments: list[SegmentRef]
    deleted: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    skipped: list[tuple[str, str]] = field(default_factory=list)
    source: str = ""
    next_id: int = 0
    parent: str = ""
    token_pool: int | None = None
    full_tokens: int = 0


def publish_version(root: Path, plan: VersionPlan) -> bundle.IndexManifest:
    """Write the version folder and make it CURRENT (the caller holds the writer lock).
    `plan.deleted` holds only ids still stored: a merge takes the ids it dropped out of it."""
    deleted = np.unique(np.asarray(plan.deleted, np.int64))
    with bundle.publish(root, parent=plan.parent or None) as (folder, version):
        if len(deleted):
            save_array(folder / bundle.DELETED_FILE, deleted.astype(np.int64))
        write_skipped(folder, plan.skipped)
        manifest = bundle.finish_manifest(folder, _manifest(plan, deleted), version)
    log.info("published index %s: %d images in %d segment(s), %d deleted awaiting compaction",
             version, manifest.count, len(plan.segments), len(deleted))
    return manifest


def _manifest(plan: VersionPlan, deleted: np.ndarray) -> bundle.IndexManifest:
    rows = sum(ref.info.rows for ref in plan.segments)
    largest = max(plan.segments, key=lambda ref: ref.info.rows, default=None)
    info = largest.info if largest else None
    tokens = dict(info.tokens) if info else {}
    width = tokens.get("shape", [0, 0, 0])[1:]
    tokens.update(file=TOKENS_FILE, shape=[rows, *width], pool=plan.token_pool,
                  full_tokens=plan.full_tokens or tokens.get("full_tokens", 0))
    return bundle.IndexManifest(
        engine_id=plan.engine_id, count=rows - len(deleted), dim=plan.dim,
        factory=info.factory if info else "", search_params=info.search_params if info else {},
        tuning=info.tuning if info else {}, tokens=tokens,
        captions=sum(ref.info.captions for ref in plan.segments), deleted=len(deleted),
        next_id=plan.next_id, parent=plan.parent, source=plan.source,
        skipped=len(plan.skipped), segments=[ref.entry() for ref in plan.segments],
        codes=dict(info.codes) if info else {})
