"""Incremental updates and re-index: each operation publishes a new version atomically.

- add: encode only the new images and append them to the trained FAISS index (an IVF keeps
  its centroids, so no retraining; the tuned search parameter is kept and recorded as
  measured on the parent);
- delete: ids become tombstones (`deleted.npy`) filtered out of every search and removed
  from the metadata; the FAISS file is hard-linked unchanged;
- compact: rebuild the FAISS index from the stored embeddings of the live items, retrain
  and retune, tombstones gone;
- re-index: a new bundle for another engine from the stored image list, under a new root,
  while the old root keeps serving.
Ids are stable through all four: an id always names the same image.

Each change can name the version it must start from (`parent`): when the root's CURRENT
names another (another writer was there first), it is refused rather than applied to a
version its caller never saw. `prune` removes old versions, keeping rollback possible.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sqlite3
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np

from encoders.engine import Engine
from encoders.errors import InputError
from index import bundle
from index.build import (
    BuildOptions,
    build_records,
    encode_captions,
    encode_records,
    finish_work,
    publish_contents,
)
from index.errors import IndexError_
from index.metadata import Item, read_all
from index.sources import TAR_SEP, Record, read_source
from index.tokens import TOKENS_FILE
from index.writer import Contents

log = logging.getLogger(__name__)


class StaleVersionError(IndexError_):
    """A change asked to start from a version that the root's CURRENT no longer names."""


def _current(root: Path, parent: str | None) -> tuple[Path, bundle.IndexManifest]:
    """The version folder CURRENT names and its verified manifest; with `parent`, it must be
    that version."""
    folder = bundle.resolve(root)
    if parent is not None and folder.name != parent:
        raise StaleVersionError(f"index root {root} names {folder.name} as CURRENT, not "
                                f"{parent}: it changed since {parent} was loaded")
    return folder, bundle.read_manifest(folder)


def load_contents(folder: Path) -> Contents:
    """Every array and item of a published version, as `write_contents` takes them."""
    items = read_all(folder / bundle.METADATA_FILE)
    caption_ids = np.zeros(0, np.int64)
    dim = bundle.read_manifest(folder, verify=False).dim
    caption_embeds = np.zeros((0, dim), np.float32)
    if (folder / bundle.CAPTIONS_FAISS).is_file():
        captions = faiss.read_index(str(folder / bundle.CAPTIONS_FAISS))
        caption_embeds = captions.reconstruct_n(0, captions.ntotal)
        caption_ids = np.load(folder / bundle.CAPTION_IDS_FILE)
    deleted = folder / bundle.DELETED_FILE
    full = bundle.read_manifest(folder, verify=False).tokens.get("full_tokens", 0)
    return Contents(np.load(folder / bundle.IDS_FILE), np.load(folder / bundle.EMBEDDINGS_FILE),
                    np.load(folder / TOKENS_FILE), items, caption_ids, caption_embeds,
                    np.load(deleted) if deleted.is_file() else np.zeros(0, np.int64), full)


def add_images(engine: Engine, root: str | Path, images: str | Path,
               opts: BuildOptions | None = None, *, parent: str | None = None,
               work_root: Path | None = None) -> bundle.IndexManifest:
    """Encode the images of `images` and publish the current version plus them.

    Images in the root's uploads folder are stored by their path in the root, others by
    their path in the collection, or absolute when outside it. `work_root`: where the
    encode checkpoints go (default: the root), e.g. beside the images, so that removing them
    after a failure leaves nothing behind."""
    root = Path(root)
    folder, base = _current(root, parent)
    # new tokens must have the shape of the stored ones
    opts = replace(opts or BuildOptions(), token_pool=base.tokens.get("pool"))
    if base.engine_id != engine.engine_id:
        raise InputError(f"index {folder} was built with engine {base.engine_id}, not "
                         f"{engine.engine_id}; re-index it for the new engine instead")
    src_root, records = read_source(images)
    if not records:
        raise InputError(f"no images to add in {images}")
    # uris relative to the bundle's source folder when inside it, absolute otherwise
    records = [replace(r, uri=_relative(src_root, r.uri, Path(base.source))) for r in records]
    stored = [bundle.upload_uri(root, Path(r.uri)) if Path(r.uri).is_absolute() else None
              for r in records]
    # absolute uris stay absolute under any root (Path("/a") / "/b" is "/b")
    done = encode_records(engine, Path(base.source), records, work_root or root, opts)
    old = load_contents(folder)
    new_ids = base.next_id + done.rows
    items = [Item(int(i), stored[r] or records[r].uri, records[r].caption, records[r].fields)
             for i, r in zip(new_ids, done.rows)]
    cap_ids, cap_embeds = encode_captions(engine, items)
    index = faiss.read_index(str(folder / bundle.FAISS_FILE))
    index.add(np.ascontiguousarray(done.embeds, np.float32))
    contents = Contents(
        np.concatenate([old.ids, new_ids]), np.concatenate([old.embeds, done.embeds]),
        np.concatenate([old.tokens, done.tokens.astype(np.float16)]), old.items + items,
        np.concatenate([old.caption_ids, cap_ids]), np.concatenate([old.caption_embeds, cap_embeds]),
        old.deleted, old.full_tokens)
    skipped = [(records[r].uri, m) for r, m in done.errors]
    manifest = publish_contents(base.engine_id, contents, root, opts, source=base.source,
                                skipped=skipped, next_id=base.next_id + len(records),
                                parent=base.version, index=index, base=base)
    finish_work(done)
    return manifest


def delete_ids(root: str | Path, ids: list[int], *,
               parent: str | None = None) -> bundle.IndexManifest:
    """Publish the current version without `ids` (unknown ids are an error, naming them)."""
    root = Path(root)
    folder, base = _current(root, parent)
    live = {it.id for it in read_all(folder / bundle.METADATA_FILE)}
    unknown = sorted(set(ids) - live)
    if unknown:
        raise InputError(f"ids not in index {base.version}: {unknown[:20]}")
    old_deleted = np.load(folder / bundle.DELETED_FILE) if (folder / bundle.DELETED_FILE).is_file() \
        else np.zeros(0, np.int64)
    deleted = np.union1d(old_deleted, np.asarray(ids, np.int64))
    with bundle.publish(root) as (new, version):
        changed = {bundle.METADATA_FILE, bundle.DELETED_FILE, bundle.MANIFEST}
        for path in folder.iterdir():
            if path.name not in changed:
                _link(path, new / path.name)  # immutable files: share them with the parent
        shutil.copyfile(folder / bundle.METADATA_FILE, new / bundle.METADATA_FILE)
        with sqlite3.connect(new / bundle.METADATA_FILE) as db:
            db.executemany("DELETE FROM items WHERE id = ?", [(int(i),) for i in ids])
        db.close()
        np.save(new / bundle.DELETED_FILE, deleted)
        unchanged = {k: v for k, v in base.files.items() if k not in changed}
        manifest = replace(base, count=base.count - len(set(ids)), deleted=len(deleted),
                           parent=base.version)
        manifest = bundle.finish_manifest(new, manifest, version, known=unchanged)
    log.info("published %s: %d ids deleted (%d awaiting compaction)", version, len(set(ids)),
             len(deleted))
    return manifest


def compact(root: str | Path, opts: BuildOptions | None = None, *,
            parent: str | None = None) -> bundle.IndexManifest:
    """Rebuild the current version without its deleted ids; retrains and retunes the index."""
    root = Path(root)
    folder, base = _current(root, parent)
    old = load_contents(folder)
    keep = ~np.isin(old.ids, old.deleted)
    cap_keep = ~np.isin(old.caption_ids, old.deleted)
    contents = Contents(old.ids[keep], old.embeds[keep], old.tokens[keep], old.items,
                        old.caption_ids[cap_keep], old.caption_embeds[cap_keep],
                        np.zeros(0, np.int64), old.full_tokens)
    opts = opts or BuildOptions(factory=base.factory, recall=base.tuning.get("recall_target", 0.95))
    skipped = [(s["uri"], s["error"]) for s in _skipped(folder)]
    return publish_contents(base.engine_id, contents, root, opts, source=base.source,
                            skipped=skipped, next_id=base.next_id, parent=base.version)


def reindex(engine: Engine, old_root: str | Path, out_root: str | Path,
            opts: BuildOptions | None = None) -> bundle.IndexManifest:
    """Build a bundle for `engine` over the images of `old_root`'s current version, same ids."""
    old_root, out_root = Path(old_root), Path(out_root)
    if out_root.resolve() == old_root.resolve():
        raise InputError("re-index into a new root: the old one must keep serving its engine")
    folder = bundle.resolve(old_root)
    base = bundle.read_manifest(folder)
    items = read_all(folder / bundle.METADATA_FILE)
    records = [Record(it.path, it.caption, it.fields) for it in items]
    records = _with_offsets(Path(base.source), records)
    ids = np.asarray([it.id for it in items], np.int64)
    # uploads move with the index: linked into the new root, read there, stored as they were
    uploads = [r.uri for r in records if bundle.UPLOAD_URI.fullmatch(r.uri)]
    for uri in uploads:
        if (folder.parent / uri).is_file() and not (out_root / uri).exists():
            (out_root / uri).parent.mkdir(parents=True, exist_ok=True)
            _link(folder.parent / uri, out_root / uri)
    read = [replace(r, uri=str((out_root / r.uri).resolve())) if r.uri in uploads else r
            for r in records]
    return build_records(engine, Path(base.source), read, out_root, opts or BuildOptions(),
                         source=base.source, ids=ids, stored_uris=[r.uri for r in records])


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
        _prune_uploads(root, [root / name for name in kept if _is_version(root / name)])
    return removed


def _is_version(path: Path) -> bool:
    return not path.name.startswith(".") and (path / bundle.MANIFEST).is_file()


def _prune_uploads(root: Path, versions: list[Path]) -> None:
    """Remove the upload batches none of `versions` refers to (deleted, or never indexed)."""
    folder = root / bundle.UPLOADS
    if not folder.is_dir():
        return
    used = set()
    for version in versions:
        db = sqlite3.connect(f"file:{version / bundle.METADATA_FILE}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT path FROM items WHERE path LIKE ?",
                              (f"{bundle.UPLOADS}/%",)).fetchall()
        finally:
            db.close()
        used |= {path.split("/")[1] for (path,) in rows if bundle.UPLOAD_URI.fullmatch(path)}
    for batch in folder.iterdir():
        if batch.name not in used and re.fullmatch("[0-9a-f]{32}", batch.name):
            shutil.rmtree(batch, ignore_errors=True)


def _with_offsets(root: Path, records: list[Record]) -> list[Record]:
    """Tar members need their byte ranges again: re-read them from the shards' headers."""
    if not any(TAR_SEP in r.uri for r in records):
        return records
    shards = {r.uri.split(TAR_SEP, 1)[0] for r in records if TAR_SEP in r.uri}
    where = {}
    for shard in shards:
        for rec in read_source(root / shard)[1]:
            where[f"{shard}{TAR_SEP}{rec.uri.split(TAR_SEP, 1)[1]}"] = rec
    return [replace(r, offset=where[r.uri].offset, size=where[r.uri].size)
            if r.uri in where else r for r in records]


def _relative(src_root: Path, uri: str, base_root: Path) -> str:
    path = (src_root / uri.split(TAR_SEP, 1)[0]).resolve()
    rest = TAR_SEP + uri.split(TAR_SEP, 1)[1] if TAR_SEP in uri else ""
    try:
        return path.relative_to(base_root.resolve()).as_posix() + rest
    except ValueError:
        return str(path) + rest


def _skipped(folder: Path) -> list[dict[str, str]]:
    import json

    path = folder / bundle.SKIPPED_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or links not allowed: copy instead
        shutil.copy2(src, dst)
