"""Offline index build over a folder of images: encode in batches, write a FAISS index and
the metadata store, publish as a new version of the index root."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np

from encoders.engine import Engine
from encoders.errors import InputError
from encoders.preprocess import load_image
from index.bundle import FAISS_FILE, METADATA_FILE, IndexManifest, finish_manifest, publish
from index.metadata import Item, write_store

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"}
CAPTIONS_FILE = "captions.jsonl"  # optional: one {"file": ..., "caption": ...} per line


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_captions(folder: Path) -> dict[str, str]:
    path = folder / CAPTIONS_FILE
    if not path.is_file():
        return {}
    rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {row["file"]: row["caption"] for row in rows}


def _encoded_batches(
    engine: Engine, paths: list[Path], batch_size: int
) -> Iterator[tuple[list[Path], np.ndarray]]:
    for start in range(0, len(paths), batch_size):
        images, kept = [], []
        for path in paths[start : start + batch_size]:
            try:
                images.append(load_image(path))
                kept.append(path)
            except InputError as exc:
                log.warning("skipping %s", exc)
        if kept:
            yield kept, engine.encode_images(images)
        log.info("encoded %d/%d images", min(start + batch_size, len(paths)), len(paths))


def build_index(
    engine: Engine, images: str | Path, out_root: str | Path, batch_size: int = 64
) -> IndexManifest:
    """Encode every image under `images` and publish a new index version under `out_root`."""
    images = Path(images)
    paths = list_images(images)
    if not paths:
        raise InputError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {images}")
    captions = read_captions(images)
    vectors, items = [], []
    for kept, embeds in _encoded_batches(engine, paths, batch_size):
        for path in kept:
            rel = path.relative_to(images).as_posix()
            items.append(Item(id=len(items), path=rel, caption=captions.get(rel)))
        vectors.append(embeds)
    matrix = np.ascontiguousarray(np.concatenate(vectors), dtype=np.float32)
    index = faiss.index_factory(matrix.shape[1], "Flat", faiss.METRIC_INNER_PRODUCT)
    index.add(matrix)
    with publish(out_root) as (folder, version):
        faiss.write_index(index, str(folder / FAISS_FILE))
        write_store(folder / METADATA_FILE, items)
        manifest = IndexManifest(
            engine_id=engine.engine_id, count=len(items), dim=matrix.shape[1], factory="Flat",
            source=str(images.resolve()), skipped=len(paths) - len(items),
        )
        manifest = finish_manifest(folder, manifest, version)
    log.info("published index %s: %d images, %d skipped", version, manifest.count, manifest.skipped)
    return manifest
