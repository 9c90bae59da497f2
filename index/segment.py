"""Immutable index segments: written once, named by content, shared by every version using them.

A segment is what one build, one add or one merge wrote: its own FAISS index (chosen and tuned
for its size), ids, embeddings, image tokens, metadata rows and caption index, aligned by
FAISS position, ids ascending. Adding images writes one new segment for them alone; deleting
writes no segment at all (a version's deletion set hides the ids); merging reads a few
segments through memory maps and writes one without their deleted rows. Nothing rewrites a
segment, so nothing ever has to load a whole index to change it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from encoders.atomic import sha256_file
from index import bundle
from index.codes import CODES_FAISS, CODES_FILE, CodeLayout
from index.durable import link_or_copy, write_text
from index.keywords import KEYWORDS_FILE
from index.metadata import read_all
from index.tokens import TOKENS_FILE
from index.writer import Contents, write_contents

log = logging.getLogger(__name__)

# the data files a segment may hold; a format 1 version folder holds the same ones
DATA_FILES = (bundle.FAISS_FILE, bundle.IDS_FILE, bundle.EMBEDDINGS_FILE, TOKENS_FILE,
              bundle.METADATA_FILE, KEYWORDS_FILE, bundle.CAPTIONS_FAISS, bundle.CAPTION_IDS_FILE,
              CODES_FILE, CODES_FAISS)


@dataclass(frozen=True)
class SegmentInfo:
    """`segment.json`: everything needed to search a segment, and its files' checksums."""

    rows: int  # FAISS positions, deleted ones included
    dim: int
    factory: str
    search_params: dict[str, Any] = field(default_factory=dict)
    tuning: dict[str, Any] = field(default_factory=dict)
    tokens: dict[str, Any] = field(default_factory=dict)  # shape, dtype, bytes per image
    captions: int = 0
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    # binary codes (index.codes): layout, binary factory, search params, tuning; {}: none
    codes: dict[str, Any] = field(default_factory=dict)

    def encoded(self) -> bytes:
        data = asdict(self)
        if not data["codes"]:  # a segment without codes keeps the name it always had
            del data["codes"]
        return json.dumps(data, indent=1, sort_keys=True).encode() + b"\n"


@dataclass(frozen=True)
class SegmentRef:
    name: str
    folder: Path
    info: SegmentInfo

    def entry(self) -> dict[str, Any]:
        """How a version manifest lists it."""
        return {"name": self.name, "rows": self.info.rows}


def write_segment(root: Path, contents: Contents, factory: str | None, recall: float,
                  memory_budget: int | None = None, seed: int = 0) -> SegmentRef:
    """Write `contents` as a segment of `root` (FAISS index chosen and tuned for its size)."""
    def fill(folder: Path) -> SegmentInfo:
        fields = write_contents(folder, contents, factory, recall, memory_budget, seed=seed)
        return SegmentInfo(rows=fields["rows"], dim=fields["dim"], factory=fields["factory"],
                           search_params=fields["search_params"], tuning=fields["tuning"],
                           tokens=fields["tokens"], captions=fields["captions"],
                           files={p.name: sha256_file(p) for p in sorted(folder.iterdir())},
                           codes=fields.get("codes", {}))
    return _stage(root, fill)


def adopt_version(root: Path, version: Path, manifest: bundle.IndexManifest) -> SegmentRef:
    """A format 1 version's files as a segment: hard links, checksums from its manifest."""
    def fill(folder: Path) -> SegmentInfo:
        names = [n for n in DATA_FILES if (version / n).is_file()]
        for name in names:
            link_or_copy(version / name, folder / name)
        ids = np.load(version / bundle.IDS_FILE, mmap_mode="r")
        tokens = {k: v for k, v in manifest.tokens.items() if k != "pool"}
        return SegmentInfo(rows=len(ids), dim=manifest.dim, factory=manifest.factory,
                           search_params=manifest.search_params, tuning=manifest.tuning,
                           tokens=tokens, captions=manifest.captions,
                           files={n: manifest.files[n] for n in names})
    return _stage(root, fill)


def _stage(root: Path, fill) -> SegmentRef:
    """Fill a temp folder under `root/segments`, then rename it to its content's name; a
    segment already there with that name is the same content, and is kept."""
    parent = Path(root) / bundle.SEGMENTS
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".segment.", suffix=".tmp", dir=parent))
    try:
        os.chmod(tmp, 0o755)
        info = fill(tmp)
        encoded = info.encoded()
        write_text(tmp / bundle.SEGMENT_FILE, encoded.decode())
        name = bundle.segment_name(encoded)
        final = parent / name
        if final.exists():
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SegmentRef(name, final, info)


def read_segment(root: Path, name: str) -> SegmentRef:
    folder = bundle.segment_folder(root, name)
    info = bundle.segment_files(folder, name)
    try:
        return SegmentRef(name, folder, SegmentInfo(**info))
    except TypeError as exc:
        raise bundle.IndexBundleError(f"bad segment {folder}: {exc}") from exc


def version_segments(version: Path, manifest: bundle.IndexManifest) -> list[tuple[Path, SegmentInfo]]:
    """(folder, info) of every segment a version searches, in order; a format 1 version is
    one segment, its own folder."""
    if manifest.format_version < 2:
        ids = version / bundle.IDS_FILE
        rows = len(np.load(ids, mmap_mode="r")) if ids.is_file() else manifest.count
        return [(version, SegmentInfo(rows=rows, dim=manifest.dim, factory=manifest.factory,
                                      search_params=manifest.search_params,
                                      tuning=manifest.tuning, tokens=manifest.tokens,
                                      captions=manifest.captions))]
    refs = [read_segment(version.parent, entry["name"]) for entry in manifest.segments]
    return [(ref.folder, ref.info) for ref in refs]


class GatheredRows:
    """Rows of several memory-mapped stores in a given order, read a slice at a time: what a
    merge writes the token store from, so it never holds a whole store in memory."""

    def __init__(self, sources: list[np.ndarray], which: np.ndarray, rows: np.ndarray) -> None:
        self.sources, self.which, self.rows = sources, which, rows
        self.shape = (len(rows), *sources[0].shape[1:])
        self.dtype = sources[0].dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, part: slice) -> np.ndarray:
        which, rows = self.which[part], self.rows[part]
        out = np.empty((len(rows), *self.shape[1:]), self.dtype)
        for k, source in enumerate(self.sources):
            mine = which == k
            if mine.any():
                out[mine] = source[rows[mine]]
        return out

    def reordered(self, order: np.ndarray) -> GatheredRows:
        return GatheredRows(self.sources, self.which[order], self.rows[order])


def segment_contents(folder: Path, dead: np.ndarray, full_tokens: int,
                     codes: dict[str, Any] | None = None) -> Contents:
    """A segment's rows less the `dead` ids, as `write_contents` takes them; embeddings and
    codes are copied, tokens stay in their memory-mapped store until written. `codes`: the
    segment's `codes` entry ({} or None: it has none)."""
    ids = np.load(folder / bundle.IDS_FILE, mmap_mode="r")
    keep = np.flatnonzero(~np.isin(ids, dead))
    embeds = np.load(folder / bundle.EMBEDDINGS_FILE, mmap_mode="r")
    tokens = np.load(folder / TOKENS_FILE, mmap_mode="r")
    dead_set = set(dead.tolist())
    items = [it for it in read_all(folder / bundle.METADATA_FILE) if it.id not in dead_set]
    dim = embeds.shape[1]
    caption_ids, caption_embeds = np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
    if (folder / bundle.CAPTIONS_FAISS).is_file():
        captions = faiss.read_index(str(folder / bundle.CAPTIONS_FAISS))
        all_ids = np.load(folder / bundle.CAPTION_IDS_FILE)
        kept = np.flatnonzero(~np.isin(all_ids, dead))
        caption_ids = all_ids[kept]
        caption_embeds = captions.reconstruct_n(0, captions.ntotal)[kept]
    gathered = GatheredRows([tokens], np.zeros(len(keep), np.int64), keep)
    layout = CodeLayout.from_dict(codes or {})
    packed = np.asarray(np.load(folder / CODES_FILE, mmap_mode="r")[keep]) if layout else None
    return Contents(np.asarray(ids[keep]), np.asarray(embeds[keep]), gathered, items,
                    caption_ids, caption_embeds, full_tokens, packed, layout)


def merged_contents(parts: list[Contents]) -> Contents:
    """Several segments' contents as one, ordered by id (segments' id ranges may interleave)."""
    ids = np.concatenate([p.ids for p in parts])
    order = np.argsort(ids, kind="stable")
    caption_ids = np.concatenate([p.caption_ids for p in parts])
    caption_order = np.argsort(caption_ids, kind="stable")
    items = sorted((it for p in parts for it in p.items), key=lambda it: it.id)
    tokens = GatheredRows([p.tokens.sources[0] for p in parts],
                          np.concatenate([np.full(len(p.ids), k) for k, p in enumerate(parts)]),
                          np.concatenate([p.tokens.rows for p in parts])).reordered(order)
    layouts = {p.code_layout for p in parts}
    if len(layouts) > 1:
        raise ValueError(f"segments with different code layouts cannot merge: {layouts}")
    layout = layouts.pop()
    codes = np.concatenate([p.codes for p in parts])[order] if layout else None
    return Contents(ids[order], np.concatenate([p.embeds for p in parts])[order], tokens, items,
                    caption_ids[caption_order],
                    np.concatenate([p.caption_embeds for p in parts])[caption_order],
                    parts[0].full_tokens, codes, layout)
