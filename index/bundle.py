"""The index bundle contract: versions made of immutable segments, published atomically.

An index root folder holds a `segments/` folder, immutable version folders and a `CURRENT`
file naming the version in use. A segment (FAISS index, ids, embeddings, image tokens,
metadata, caption index) is named by the hash of its `segment.json`, which holds its files'
checksums, so versions share segment folders and a name proves the content. A version
folder holds its manifest (the segments it uses, in order), its deletion set and its
skipped-images report. Publishing writes the version folder under a temp name, renames it
into place, then replaces `CURRENT` in one rename: readers never see a half-written version.
Format 1 versions (every file in the version folder) are read as one segment.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from encoders.atomic import sha256_file, staging_dir, write_text_atomic
from index.durable import write_text
from index.errors import IndexBundleError, StaleVersionError

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
SEGMENTS = "segments"  # in the index root: one folder per segment, named by content
SEGMENT_FILE = "segment.json"  # a segment's rows, FAISS settings, token layout, checksums
SEGMENT_NAME = re.compile(r"s[0-9a-f]{24}")
FORMAT_VERSION = 2


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
    # format 2: the segments searched, in order: {"name": folder under segments/, "rows": n};
    # factory, search_params and tuning above are the largest segment's
    segments: list[dict[str, Any]] = field(default_factory=list)
    # binary codes (index.codes), the largest segment's: bits, float_index, rescore, binary
    # factory, search params, tuning; {}: none
    codes: dict[str, Any] = field(default_factory=dict)

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


def is_root(path: Path) -> bool:
    """An index root, which new versions can be published into; not a version folder."""
    return (path / CURRENT).is_file() and not (path / MANIFEST).is_file()


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
    """Parse `manifest.json` and, with `verify`, check every file against its checksum,
    the files of every segment the version uses included."""
    try:
        manifest = IndexManifest.from_dict(json.loads((folder / MANIFEST).read_text()))
    except (OSError, json.JSONDecodeError) as exc:
        raise IndexBundleError(f"cannot read {folder / MANIFEST}: {exc}") from exc
    if manifest.format_version > FORMAT_VERSION:
        raise IndexBundleError(f"index {folder} has format {manifest.format_version}; this "
                               f"xmodal reads formats up to {FORMAT_VERSION}: upgrade it")
    if verify:
        _verify_files(folder, manifest.files)
        for entry in manifest.segments:
            segment_files(segment_folder(folder.parent, entry["name"]), entry["name"], verify=True)
    return manifest


def segment_folder(root: Path, name: str) -> Path:
    if not SEGMENT_NAME.fullmatch(name):
        raise IndexBundleError(f"bad segment name {name!r} in an index manifest")
    return Path(root) / SEGMENTS / name


def segment_name(info_json: bytes) -> str:
    """A segment's name: the hash of its `segment.json`, which holds its files' checksums."""
    return "s" + hashlib.sha256(info_json).hexdigest()[:24]


def segment_files(folder: Path, name: str, verify: bool = False) -> dict[str, Any]:
    """A segment's `segment.json`, its name checked against its content; with `verify`,
    every file against its checksum too."""
    try:
        raw = (folder / SEGMENT_FILE).read_bytes()
        info = json.loads(raw)
    except (OSError, json.JSONDecodeError) as exc:
        raise IndexBundleError(f"cannot read segment {folder / SEGMENT_FILE}: {exc}") from exc
    if segment_name(raw) != name:
        raise IndexBundleError(f"segment {folder} fails its checksum (corrupt or modified)")
    if verify:
        _verify_files(folder, info["files"])
    return info


# files whose checksum passed in this process, with their stat when it did: a segment is
# shared by every later version, and a reload after each change must not re-read gigabytes
# that have not changed since (as git's index trusts an unchanged stat)
_verified: dict[str, tuple[str, tuple[int, ...]]] = {}


def _verify_files(folder: Path, files: dict[str, str]) -> None:
    for name, expected in files.items():
        target = folder / name
        if not target.is_file():
            raise IndexBundleError(f"index file {target} is missing")
        stat = target.stat()
        seen = (expected, (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns))
        if _verified.get(str(target)) == seen:
            continue
        if sha256_file(target) != expected:
            raise IndexBundleError(f"index file {target} fails its checksum (corrupt or modified)")
        _verified[str(target)] = seen


def current_name(root: Path) -> str | None:
    pointer = Path(root) / CURRENT
    return pointer.read_text().strip() if pointer.is_file() else None


@contextlib.contextmanager
def publish(root: str | Path, parent: str | None = None) -> Iterator[tuple[Path, str]]:
    """Stage a new version under `root`; on success it becomes the one `CURRENT` names.

    `with publish(root) as (folder, version): ...` writes into a temp folder; an error
    inside the block leaves the root exactly as it was. `parent`: the version `CURRENT` must
    still name when the new one replaces it (checked last, under the writer lock the caller
    holds), else `StaleVersionError` and nothing is published.
    """
    root = Path(root)
    version = new_version_name()
    with staging_dir(root / version) as folder:
        yield folder, version
        if parent is not None and current_name(root) != parent:
            raise StaleVersionError(f"index root {root} names {current_name(root)} as CURRENT, "
                                    f"not {parent}: it changed since {parent} was loaded")
    write_text_atomic(root / CURRENT, version + "\n")


def finish_manifest(folder: Path, manifest: IndexManifest, version: str) -> IndexManifest:
    """Checksum the files already in `folder` and write the manifest last."""
    files = {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.name != MANIFEST}
    done = IndexManifest(**{**asdict(manifest), "files": files, "version": version,
                            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    write_text(folder / MANIFEST, json.dumps(asdict(done), indent=2) + "\n")
    return done
