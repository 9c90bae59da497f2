"""Where the images of a build come from: a folder, a dataset file, or WebDataset shards.

Each source becomes one ordered list of `Record`s (`encoders.records`, the records training
reads too); the order fixes the ids, so a resumed or distributed build assigns exactly the ids
an uninterrupted local build does.

- folder: every image under it (sorted), captions and user fields from the rows of a
  `captions.jsonl` beside them (`encoders.captions`);
- dataset file (`*.jsonl`): the same rows, naming the images, paths relative to the file's
  folder;
- WebDataset: a `.tar` shard, or a folder of them, by the rules of `encoders.webdataset`
  (training reads shards by the same rules).

An index stores one caption per image: a record's first (`Record.caption`).
"""

from __future__ import annotations

from pathlib import Path

from encoders.captions import folder_rows, read_caption_rows
from encoders.errors import InputError
from encoders.records import IMAGE_SUFFIXES, Record, read_bytes
from encoders.webdataset import read_shards, shard_paths


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_source(source: str | Path) -> tuple[Path, list[Record]]:
    """Any supported source -> (root that record uris are relative to, records in id order)."""
    source = Path(source)
    if not source.exists():
        raise InputError(f"image source {source} does not exist")
    if source.is_file() and source.suffix == ".tar" or source.is_dir() and shard_paths(source):
        root = source if source.is_dir() else source.parent
        return root, read_shards(shard_paths(source), root)
    if source.is_file() and source.suffix == ".jsonl":
        return source.parent, read_caption_rows(source)
    if source.is_dir():
        rows = folder_rows(source)
        names = [p.relative_to(source).as_posix() for p in list_images(source)]
        return source, [rows.get(name, Record(name)) for name in names]
    raise InputError(f"{source} is not an image folder, a .jsonl dataset file or .tar shards")


def read_uri(root: Path, uri: str) -> bytes:
    """Bytes of a stored uri (metadata `path`): a file under `root`, an absolute path, or a
    tar member (found by name: metadata keeps no byte ranges, so this scans the shard)."""
    return read_bytes(root, Record(uri))
