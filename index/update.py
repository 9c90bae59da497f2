"""Incremental updates and re-index: each operation publishes a new version atomically.

A version is a list of immutable segments plus a deletion set (`index.segment`), so:
- add: encode only the new images and write them as one new segment; the segments already
  there are shared, not copied. Small segments are merged by a size-tiered policy (as
  Lucene's): when `MERGE_FACTOR` segments of one size tier (a power of ten of rows) pile
  up, they become one, their deleted rows dropped;
- delete: only a new deletion set is written; the ids are filtered out of every search;
- compact: every segment merged into one without the deleted rows, its FAISS index chosen,
  trained and tuned for the new size;
- re-index: a new bundle for another engine from the stored image list, under a new root,
  while the old root keeps serving.
Ids are stable through all four: an id always names the same image.

Every change holds the root's writer lock (`index.lock`) from reading its parent version to
replacing CURRENT. A change can also name the version it must start from (`parent`): when
CURRENT names another (another writer was there first), it is refused rather than applied to
a version its caller never saw. `prune` removes old versions and the segments only they used,
keeping rollback possible.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np

from encoders.engine import Engine
from encoders.errors import InputError
from encoders.records import TAR_SEP, Record
from encoders.webdataset import member_ranges
from index import bundle
from index.build import (
    BuildOptions,
    build_records,
    coded,
    encode_captions,
    encode_records,
    finish_work,
)
from index.codes import CodeLayout
from index.durable import link_or_copy
from index.errors import StaleVersionError
from index.lock import writer_lock
from index.metadata import Item, read_all
from index.segment import (
    SegmentRef,
    adopt_version,
    merged_contents,
    read_segment,
    segment_contents,
    write_segment,
)
from index.sources import read_source
from index.version import VersionPlan, publish_version
from index.writer import Contents

log = logging.getLogger(__name__)

MERGE_FACTOR = 10  # segments of one size tier that are merged into one


def _current(root: Path, parent: str | None) -> tuple[Path, bundle.IndexManifest]:
    """The version folder CURRENT names and its manifest; with `parent`, it must be that
    version. Its files are not re-read: segments are immutable and were verified when the
    version was loaded or written, and a change must not cost the whole index's size."""
    folder = bundle.resolve(root)
    if parent is not None and folder.name != parent:
        raise StaleVersionError(f"index root {root} names {folder.name} as CURRENT, not "
                                f"{parent}: it changed since {parent} was loaded")
    return folder, bundle.read_manifest(folder, verify=False)


def _segments(root: Path, folder: Path, base: bundle.IndexManifest) -> list[SegmentRef]:
    """The base version's segments; a format 1 version becomes one (its files linked)."""
    if base.format_version < 2:
        return [adopt_version(root, folder, base)]
    return [read_segment(root, entry["name"]) for entry in base.segments]


def _deleted(folder: Path) -> np.ndarray:
    path = folder / bundle.DELETED_FILE
    return np.load(path) if path.is_file() else np.zeros(0, np.int64)


def _plan(base: bundle.IndexManifest, segments: list[SegmentRef], deleted: np.ndarray,
          skipped: list[tuple[str, str]], **changes) -> VersionPlan:
    """The next version of `base`: same engine, source, ids and token layout."""
    fields = dict(engine_id=base.engine_id, dim=base.dim, segments=segments, deleted=deleted,
                  skipped=skipped, source=base.source, next_id=base.next_id,
                  parent=base.version, token_pool=base.tokens.get("pool"),
                  full_tokens=base.tokens.get("full_tokens", 0))
    return VersionPlan(**{**fields, **changes})


def add_images(engine: Engine, root: str | Path, images: str | Path,
               opts: BuildOptions | None = None, *, parent: str | None = None,
               work_root: Path | None = None) -> bundle.IndexManifest:
    """Encode the images of `images` and publish the current version plus them.

    Images in the root's uploads folder are stored by their path in the root, others by
    their path in the collection, or absolute when outside it. `work_root`: where the
    encode checkpoints go (default: the root), e.g. beside the images, so that removing them
    after a failure leaves nothing behind."""
    root = Path(root)
    with writer_lock(root):
        folder, base = _current(root, parent)
        if base.engine_id != engine.engine_id:
            raise InputError(f"index {folder} was built with engine {base.engine_id}, not "
                             f"{engine.engine_id}; re-index it for the new engine instead")
        # new tokens must have the shape of the stored ones
        opts = replace(opts or BuildOptions(), token_pool=base.tokens.get("pool"))
        src_root, records = read_source(images)
        if not records:
            raise InputError(f"no images to add in {images}")
        # uris relative to the bundle's source folder when inside it, absolute otherwise
        records = [replace(r, uri=_relative(src_root, r.uri, Path(base.source))) for r in records]
        stored = [bundle.upload_uri(root, Path(r.uri)) if Path(r.uri).is_absolute() else None
                  for r in records]
        done = encode_records(engine, Path(base.source), records, work_root or root, opts)
        new_ids = base.next_id + done.rows
        items = [Item(int(i), stored[r] or records[r].uri, records[r].caption, records[r].fields)
                 for i, r in zip(new_ids, done.rows)]
        segments = _segments(root, folder, base)
        deleted = _deleted(folder)
        if len(new_ids):
            cap_ids, cap_embeds = encode_captions(engine, items)
            contents = Contents(np.asarray(new_ids, np.int64), done.embeds,
                                done.tokens, items, cap_ids, cap_embeds,
                                done.full_tokens or base.tokens.get("full_tokens", 0),
                                *coded(engine, done, CodeLayout.from_dict(base.codes)))
            segments.append(write_segment(root, contents, None, _recall(base, opts)))
            segments, deleted = _merge_tiers(root, segments, deleted, base, opts)
        skipped = [(records[r].uri, m) for r, m in done.errors]
        manifest = publish_version(root, _plan(base, segments, deleted, skipped,
                                               next_id=base.next_id + len(records)))
    finish_work(done)
    return manifest


def delete_ids(root: str | Path, ids: list[int], *,
               parent: str | None = None) -> bundle.IndexManifest:
    """Publish the current version without `ids` (unknown ids are an error, naming them).
    Writes only the new deletion set: no segment is touched."""
    root = Path(root)
    with writer_lock(root):
        folder, base = _current(root, parent)
        segments = _segments(root, folder, base)
        old = _deleted(folder)
        wanted = np.unique(np.asarray(ids, np.int64))
        stored = np.concatenate([np.load(s.folder / bundle.IDS_FILE, mmap_mode="r")
                                 for s in segments]) if segments else np.zeros(0, np.int64)
        unknown = np.setdiff1d(wanted, np.setdiff1d(stored, old))
        if len(unknown):
            raise InputError(f"ids not in index {base.version}: {unknown[:20].tolist()}")
        manifest = publish_version(root, _plan(base, segments, np.union1d(old, wanted),
                                               _skipped(folder)))
    log.info("published %s: %d ids deleted (%d awaiting compaction)", manifest.version,
             len(wanted), manifest.deleted)
    return manifest


def compact(root: str | Path, opts: BuildOptions | None = None, *,
            parent: str | None = None) -> bundle.IndexManifest:
    """Merge every segment into one without the deleted ids; retrains and retunes the index."""
    root = Path(root)
    with writer_lock(root):
        folder, base = _current(root, parent)
        segments = _segments(root, folder, base)
        # the factory the index was built with (its largest segment's), as a rebuild keeps it
        opts = opts or BuildOptions(factory=base.factory or None,
                                    recall=base.tuning.get("recall_target", 0.95))
        merged, deleted = _merge(root, segments, _deleted(folder), base, opts)
        return publish_version(root, _plan(base, merged, deleted, _skipped(folder)))


def _recall(base: bundle.IndexManifest, opts: BuildOptions) -> float:
    return base.tuning.get("recall_target", opts.recall)


def _tier(rows: int) -> int:
    return int(math.log10(max(rows, 1)))


def _merge_tiers(root: Path, segments: list[SegmentRef], deleted: np.ndarray,
                 base: bundle.IndexManifest, opts: BuildOptions
                 ) -> tuple[list[SegmentRef], np.ndarray]:
    """Merge the segments of any size tier holding `MERGE_FACTOR` or more; repeated, as a
    merged segment can fill the next tier. Returns the segments and the deletion set left."""
    while True:
        tiers: dict[int, list[SegmentRef]] = {}
        for ref in segments:
            tiers.setdefault(_tier(ref.info.rows), []).append(ref)
        full = next((group for group in tiers.values() if len(group) >= MERGE_FACTOR), None)
        if full is None:
            return segments, deleted
        merged, deleted = _merge(root, full, deleted, base, replace(opts, factory=None))
        keep = [ref for ref in segments if ref not in full]
        segments = keep + merged
        log.info("merged %d segments of tier %d into %d", len(full), _tier(full[0].info.rows),
                 len(merged))


def _merge(root: Path, segments: list[SegmentRef], deleted: np.ndarray,
           base: bundle.IndexManifest, opts: BuildOptions) -> tuple[list[SegmentRef], np.ndarray]:
    """`segments` as one segment without the `deleted` rows (none when nothing is left), and
    the deletion set less the ids those rows had: they are gone for good."""
    if not segments:
        return [], deleted
    full = base.tokens.get("full_tokens", 0)
    parts = [segment_contents(ref.folder, deleted, full, ref.info.codes) for ref in segments]
    merged_ids = np.concatenate([np.load(ref.folder / bundle.IDS_FILE, mmap_mode="r")
                                 for ref in segments])
    left = np.setdiff1d(deleted, merged_ids)
    contents = merged_contents(parts)
    if not len(contents.ids):
        return [], left
    return [write_segment(root, contents, opts.factory, _recall(base, opts), opts.memory_budget)], left


def reindex(engine: Engine, old_root: str | Path, out_root: str | Path,
            opts: BuildOptions | None = None) -> bundle.IndexManifest:
    """Build a bundle for `engine` over the images of `old_root`'s current version, same ids."""
    old_root, out_root = Path(old_root), Path(out_root)
    if out_root.resolve() == old_root.resolve():
        raise InputError("re-index into a new root: the old one must keep serving its engine")
    folder = bundle.resolve(old_root)
    base = bundle.read_manifest(folder)
    items = live_items(old_root, folder, base)
    records = [Record(it.path, (it.caption,) if it.caption else (), fields=it.fields)
               for it in items]
    records = _with_offsets(Path(base.source), records)
    ids = np.asarray([it.id for it in items], np.int64)
    # uploads move with the index: linked into the new root, read there, stored as they were
    uploads = [r.uri for r in records if bundle.UPLOAD_URI.fullmatch(r.uri)]
    for uri in uploads:
        if (folder.parent / uri).is_file() and not (out_root / uri).exists():
            (out_root / uri).parent.mkdir(parents=True, exist_ok=True)
            link_or_copy(folder.parent / uri, out_root / uri)
    read = [replace(r, uri=str((out_root / r.uri).resolve())) if r.uri in uploads else r
            for r in records]
    return build_records(engine, Path(base.source), read, out_root, opts or BuildOptions(),
                         source=base.source, ids=ids, stored_uris=[r.uri for r in records])


def live_items(root: Path, folder: Path, base: bundle.IndexManifest) -> list[Item]:
    """Every item of a version that is not deleted, by id."""
    dead = set(_deleted(folder).tolist())
    if base.format_version < 2:
        items = read_all(folder / bundle.METADATA_FILE)
    else:
        items = [it for entry in base.segments
                 for it in read_all(read_segment(root, entry["name"]).folder / bundle.METADATA_FILE)]
    return sorted((it for it in items if it.id not in dead), key=lambda it: it.id)


def prune(root: str | Path, keep: int, protect: Iterable[str] = ()) -> list[str]:
    """Remove all but the `keep` newest versions of `root`, and the upload batches that no
    version left refers to; returns the versions removed.

    CURRENT, the version it was derived from (so a rollback stays possible) and `protect`
    are always kept. Folders that are not versions (work and staging folders, nested roots)
    are left alone. A version is renamed out of the way before it is removed, so no reader
    ever finds half of one.
    """
    if keep < 2:
        raise InputError(f"keep at least 2 versions (the current one and its parent), not {keep}")
    root = Path(root)
    current = bundle.resolve(root)
    if current.parent.resolve() != root.resolve():
        raise InputError(f"{root} is a version folder, not an index root; prune a root")
    with writer_lock(root):
        return _prune(root, current, keep, protect)


def _prune(root: Path, current: Path, keep: int, protect: Iterable[str]) -> list[str]:
    for trash in root.glob(".prune-*"):  # left by an earlier prune that was interrupted
        shutil.rmtree(trash, ignore_errors=True)
    # newest first: by creation time (to the second, kept through copies), then by name
    versions = sorted((p for p in root.iterdir() if _is_version(p)), reverse=True,
                      key=lambda p: (bundle.read_manifest(p, verify=False).created, p.name))
    kept = {p.name for p in versions[:keep]} | {current.name, *protect,
                                                 bundle.read_manifest(current, verify=False).parent}
    removed = []
    for version in versions:
        if version.name not in kept:
            trash = root / f".prune-{version.name}"
            os.replace(version, trash)
            shutil.rmtree(trash, ignore_errors=True)
            removed.append(version.name)
    if removed:
        log.info("pruned %d old version(s) of %s: %s", len(removed), root, ", ".join(removed))
        left = [root / name for name in kept if _is_version(root / name)]
        _prune_segments(root, left)
        _prune_uploads(root, left)
    return removed


def _is_version(path: Path) -> bool:
    return not path.name.startswith(".") and (path / bundle.MANIFEST).is_file()


def _prune_segments(root: Path, versions: list[Path]) -> None:
    """Remove the segments none of `versions` uses, and any a killed writer left half-made
    (no writer is staging one: the caller holds the lock)."""
    folder = root / bundle.SEGMENTS
    if not folder.is_dir():
        return
    used = {entry["name"] for v in versions for entry in bundle.read_manifest(v, verify=False).segments}
    for segment in folder.iterdir():
        if segment.name not in used:
            trash = root / f".prune-{segment.name}"
            os.replace(segment, trash)
            shutil.rmtree(trash, ignore_errors=True)


def _prune_uploads(root: Path, versions: list[Path]) -> None:
    """Remove the upload batches none of `versions` refers to (deleted, or never indexed)."""
    folder = root / bundle.UPLOADS
    if not folder.is_dir():
        return
    used = set()
    for version in versions:
        paths = [it.path for it in live_items(root, version, bundle.read_manifest(version, verify=False))]
        used |= {path.split("/")[1] for path in paths if bundle.UPLOAD_URI.fullmatch(path)}
    for batch in folder.iterdir():
        if batch.name not in used and re.fullmatch("[0-9a-f]{32}", batch.name):
            shutil.rmtree(batch, ignore_errors=True)


def _with_offsets(root: Path, records: list[Record]) -> list[Record]:
    """Tar members need their byte ranges again: re-read them from the shards' headers."""
    if not any(TAR_SEP in r.uri for r in records):
        return records
    shards = {r.uri.split(TAR_SEP, 1)[0] for r in records if TAR_SEP in r.uri}
    where = {f"{shard}{TAR_SEP}{name}": span for shard in shards
             for name, span in member_ranges(root / shard).items()}
    return [replace(r, offset=where[r.uri][0], size=where[r.uri][1])
            if r.uri in where else r for r in records]


def _relative(src_root: Path, uri: str, base_root: Path) -> str:
    path = (src_root / uri.split(TAR_SEP, 1)[0]).resolve()
    rest = TAR_SEP + uri.split(TAR_SEP, 1)[1] if TAR_SEP in uri else ""
    try:
        return path.relative_to(base_root.resolve()).as_posix() + rest
    except ValueError:
        return str(path) + rest


def _skipped(folder: Path) -> list[tuple[str, str]]:
    """The parent's skipped-images report, carried into a version derived from it."""
    path = folder / bundle.SKIPPED_FILE
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    return [(row["uri"], row["error"]) for row in rows]
