"""The index bundle contract: manifest, FAISS index and metadata store, published atomically.

An index root folder holds immutable version folders and a `CURRENT` file naming the one
in use; publishing a new version writes its folder under a temp name, renames it into
place, then replaces `CURRENT` in one rename. Readers never see a half-written version.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from encoders.atomic import sha256_file, staging_dir, write_text_atomic
from index.errors import IndexBundleError

MANIFEST = "manifest.json"
CURRENT = "CURRENT"
FAISS_FILE = "index.faiss"
METADATA_FILE = "metadata.sqlite"
IDS_FILE = "ids.npy"  # FAISS position -> item id (int64, ascending)
EMBEDDINGS_FILE = "embeddings.npy"  # float32 vectors by position: add, compact, exact filters
DELETED_FILE = "deleted.npy"  # item ids deleted but not yet compacted away
SKIPPED_FILE = "skipped.jsonl"  # unreadable images: {"uri": ..., "error": ...} per line
CAPTIONS_FAISS = "captions.faiss"
CAPTION_IDS_FILE = "caption_ids.npy"  # caption index position -> item id
# images added through the admin API live in the index root, not in the collection: one
# folder per batch, `uploads/<32 hex digits>/<file>`; their stored uris are that relative path
UPLOADS = "uploads"
UPLOAD_URI = re.compile(rf"{UPLOADS}/[0-9a-f]{{32}}/[^/]+")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class IndexManifest:
    engine_id: str
    count: int
    dim: int
    factory: str  # FAISS index_factory string
    metric: str = "inner_product"
    search_params: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    version: str = ""
    created: str = ""
    source: str = ""  # folder the stored image uris are relative to
    skipped: int = 0  # unreadable images left out of the build (listed in skipped.jsonl)
    format_version: int = FORMAT_VERSION
    # what the build measured: recall target, recall@10 reached against exact search on
    # held-out queries, how those queries were made, and the curve of settings tried
    tuning: dict[str, Any] = field(default_factory=dict)
    tokens: dict[str, Any] = field(default_factory=dict)  # shape, dtype, bytes per image, pool
    captions: int = 0  # captions in the caption index (image -> text search); 0: none
    deleted: int = 0  # ids deleted since the last compaction (still in the FAISS file)
    next_id: int = 0  # the id the next added image gets; ids are never reused
    parent: str = ""  # the version this one was derived from (add / delete / compact)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexManifest:
        try:
            return cls(**data)
        except TypeError as exc:
            raise IndexBundleError(f"bad index manifest: {exc}") from exc


def new_version_name() -> str:
    """`vYYYYmmddTHHMMSS-ffffff` (UTC, microseconds), from one clock reading: names sort in
    the order they were made."""
    seconds, micros = divmod(time.time_ns() // 1000, 1_000_000)
    return time.strftime("v%Y%m%dT%H%M%S", time.gmtime(seconds)) + f"-{micros:06d}"


def resolve(path: str | Path) -> Path:
    """An index root (with CURRENT) or a version folder -> the version folder to load."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        return path
    pointer = path / CURRENT
    if not pointer.is_file():
        raise IndexBundleError(f"no index at {path}: neither {MANIFEST} nor {CURRENT} is there")
    version = path / pointer.read_text().strip()
    if not (version / MANIFEST).is_file():
        raise IndexBundleError(f"{pointer} names {version.name}, which has no {MANIFEST}")
    return version


def image_root(version: Path, source: str, uri: str) -> Path:
    """The folder an item's stored uri is relative to: the index root holding `version` for
    an upload, the collection (`source`) for everything else."""
    return version.parent if UPLOAD_URI.fullmatch(uri) else Path(source)


def upload_uri(root: Path, path: Path) -> str | None:
    """The uri to store for an image file in `root`'s uploads folder; None for any other."""
    try:
        uri = path.resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return None
    return uri if UPLOAD_URI.fullmatch(uri) else None


def read_manifest(folder: Path, verify: bool = True) -> IndexManifest:
    """Parse `manifest.json` and, with `verify`, check every file against its checksum."""
    try:
        manifest = IndexManifest.from_dict(json.loads((folder / MANIFEST).read_text()))
    except (OSError, json.JSONDecodeError) as exc:
        raise IndexBundleError(f"cannot read {folder / MANIFEST}: {exc}") from exc
    for name, expected in manifest.files.items() if verify else ():
        target = folder / name
        if not target.is_file():
            raise IndexBundleError(f"index file {target} is missing")
        if sha256_file(target) != expected:
            raise IndexBundleError(f"index file {target} fails its checksum (corrupt or modified)")
    return manifest


@contextlib.contextmanager
def publish(root: str | Path) -> Iterator[tuple[Path, str]]:
    """Stage a new version under `root`; on success it becomes the one `CURRENT` names.

    `with publish(root) as (folder, version): ...` writes into a temp folder; an error
    inside the block leaves the root exactly as it was.
    """
    root = Path(root)
    version = new_version_name()
    with staging_dir(root / version) as folder:
        yield folder, version
    write_text_atomic(root / CURRENT, version + "\n")


def finish_manifest(folder: Path, manifest: IndexManifest, version: str,
                    known: dict[str, str] | None = None) -> IndexManifest:
    """Checksum the files already in `folder` and write the manifest last.

    `known`: checksums of files hard-linked unchanged from a verified parent version, so an
    update does not re-read gigabytes it did not touch.
    """
    known = known or {}
    files = {p.name: known.get(p.name) or sha256_file(p)
             for p in sorted(folder.iterdir()) if p.name != MANIFEST}
    done = IndexManifest(**{**asdict(manifest), "files": files, "version": version,
                            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    (folder / MANIFEST).write_text(json.dumps(asdict(done), indent=2) + "\n")
    return done
