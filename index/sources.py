"""Where the images of a build come from: a folder, a dataset file, or WebDataset shards.

Each source becomes one ordered list of `Record`s; the order fixes the ids, so a resumed
or distributed build assigns exactly the ids an uninterrupted local build does.

- folder: every image under it (sorted), captions from `captions.jsonl` beside them;
- dataset file (`*.jsonl`, the training format): one `{"file": ..., "caption": ...}` per
  line, paths relative to the file's folder; any other keys become user fields;
- WebDataset: a `.tar` shard, or a folder of them; members sharing a key form a sample
  (`key.png` + `key.txt` caption + `key.json` user fields).
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from encoders.errors import InputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"}
CAPTIONS_FILE = "captions.jsonl"  # optional: one {"file": ..., "caption": ...} per line
TAR_SEP = "::"  # uri of a WebDataset member: "<shard.tar>::<member name>"


@dataclass(frozen=True)
class Record:
    """One image to index: where to read it and what to store beside its vector."""

    uri: str  # stored in metadata: a path relative to the source root, or shard::member
    caption: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    # byte range inside a tar shard, so workers seek instead of scanning the archive
    offset: int | None = None
    size: int | None = None


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_captions(folder: Path) -> dict[str, str]:
    path = folder / CAPTIONS_FILE
    if not path.is_file():
        return {}
    rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {row["file"]: row["caption"] for row in rows}


def write_captions(folder: Path, captions: dict[str, str]) -> None:
    """The captions of images in `folder`, by file name, as `read_captions` reads them back;
    none: no file."""
    rows = [json.dumps({"file": name, "caption": caption}) for name, caption in captions.items()]
    if rows:
        (folder / CAPTIONS_FILE).write_text("\n".join(rows) + "\n")


def read_source(source: str | Path) -> tuple[Path, list[Record]]:
    """Any supported source -> (root that record uris are relative to, records in id order)."""
    source = Path(source)
    if not source.exists():
        raise InputError(f"image source {source} does not exist")
    if source.is_file() and source.suffix == ".tar" or source.is_dir() and _tars(source):
        return source if source.is_dir() else source.parent, _webdataset(source)
    if source.is_file() and source.suffix == ".jsonl":
        return source.parent, _dataset_file(source)
    if source.is_dir():
        captions = read_captions(source)
        return source, [Record(p.relative_to(source).as_posix(),
                               captions.get(p.relative_to(source).as_posix()))
                        for p in list_images(source)]
    raise InputError(f"{source} is not an image folder, a .jsonl dataset file or .tar shards")


def read_bytes(root: Path, record: Record) -> bytes:
    """The encoded image bytes of a record (raises OSError when unreadable)."""
    if TAR_SEP in record.uri:
        shard = record.uri.split(TAR_SEP, 1)[0]
        with open(root / shard, "rb") as handle:
            handle.seek(record.offset or 0)
            return handle.read(record.size or 0)
    return (root / record.uri).read_bytes()


def read_uri(root: Path, uri: str) -> bytes:
    """Bytes of a stored uri (metadata `path`): a file under `root`, an absolute path, or a
    tar member (found by name: metadata keeps no byte ranges, so this scans the shard)."""
    if TAR_SEP not in uri:
        return (root / uri).read_bytes()
    shard, member = uri.split(TAR_SEP, 1)
    with tarfile.open(root / shard) as tar:
        handle = tar.extractfile(member)
        if handle is None:
            raise OSError(f"{member} in {root / shard} is not a file")
        return handle.read()


def _tars(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.tar"))


def _dataset_file(path: Path) -> list[Record]:
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            file = row.pop("file")
        except (json.JSONDecodeError, KeyError, AttributeError) as exc:
            raise InputError(f"{path}:{number}: expected a JSON object with a \"file\" key "
                             f"({exc})") from exc
        records.append(Record(str(file), row.pop("caption", None), row))
    return records


def _webdataset(source: Path) -> list[Record]:
    shards = [source] if source.is_file() else _tars(source)
    records = []
    for shard in shards:
        samples: dict[str, dict[str, Any]] = {}
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                if not member.isfile():
                    continue
                key, _, ext = member.name.rpartition(".")
                sample = samples.setdefault(key, {})
                if "." + ext.lower() in IMAGE_SUFFIXES:
                    sample["image"] = member
                elif ext in ("txt", "json"):
                    sample[ext] = tar.extractfile(member).read().decode()
        for sample in samples.values():
            if "image" not in sample:
                continue
            member = sample["image"]
            fields = json.loads(sample["json"]) if "json" in sample else {}
            records.append(Record(f"{shard.name}{TAR_SEP}{member.name}", sample.get("txt"),
                                  fields, member.offset_data, member.size))
    return records
