"""WebDataset tar shards, read the same way by training and the index build.

The rules (WebDataset's own, as `webdataset` and img2dataset write shards):
- a member's key is its path up to the first dot of its file name, and the rest is its
  extension, compared in lower case: `images/0001.jpg` and `images/0001.json` are one sample,
  and `0001.seg.png` is that sample's `seg.png`, not a second image;
- the sample's image is its one member with an image extension (`jpg`, `png`, ...);
- `.txt` holds the captions, one per non-empty line;
- `.json` is an object of user fields; its `caption` (a string) or `captions` (a list) are
  the captions when the sample has no `.txt`, and never user fields.

A sample with no image member is skipped with a warning (shards may hold other samples).
What the rules cannot read is refused, naming the member: a sample with two images, a file
name with a dot before its image extension (`photo.2024.jpg`: its key ends at the first dot,
so it has no image), a `.json` that is not an object. Shards are read with the standard
library, without loading their images: records keep each image's byte range.
"""

from __future__ import annotations

import json
import logging
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

from encoders.records import IMAGE_SUFFIXES, TAR_SEP, DatasetError, Record

log = logging.getLogger(__name__)

IMAGE_EXTS = tuple(suffix.removeprefix(".") for suffix in IMAGE_SUFFIXES)


def shard_paths(source: Path) -> list[Path]:
    """A `.tar` shard itself, or the `.tar` shards of a folder in name order."""
    return [source] if source.is_file() else sorted(source.glob("*.tar"))


def split_key(name: str) -> tuple[str, str]:
    """A member name -> (key, extension in lower case), the key ending at the first dot of
    the file name (`a/b.c/0001.seg.png` -> `a/b.c/0001`, `seg.png`)."""
    path = PurePosixPath(name)
    stem, dot, ext = path.name.partition(".")
    return str(path.with_name(stem)) if dot and stem else name, ext.lower()


def member_ranges(shard: Path) -> dict[str, tuple[int, int]]:
    """(offset, size) of every file member of a shard, by name, read from its headers."""
    try:
        with tarfile.open(shard) as tar:
            return {m.name: (m.offset_data, m.size) for m in tar if m.isfile()}
    except (OSError, tarfile.TarError) as exc:
        raise DatasetError(f"cannot read shard {shard}: {exc}") from exc


def read_shards(shards: list[Path], root: Path | None = None) -> list[Record]:
    """The samples of every shard as records, in member order; each uri names its shard
    relative to `root` (as given when None)."""
    records = []
    for shard in shards:
        name = shard.relative_to(root).as_posix() if root is not None else str(shard)
        records += _read_shard(shard, name)
    return records


def _read_shard(shard: Path, name: str) -> list[Record]:
    samples: dict[str, dict[str, tarfile.TarInfo]] = {}
    try:
        with tarfile.open(shard) as tar:
            for member in tar:
                if member.isfile():
                    key, ext = split_key(member.name)
                    samples.setdefault(key, {})[ext] = member
            texts = {key: {ext: tar.extractfile(m).read() for ext, m in parts.items()
                           if ext in ("txt", "json")} for key, parts in samples.items()}
    except (OSError, tarfile.TarError) as exc:
        raise DatasetError(f"cannot read shard {shard}: {exc}") from exc
    records = []
    for key, parts in samples.items():
        where = f"{shard}: sample {key!r}"
        image = _image_of(parts, where)
        if image is None:
            log.warning("skipping %s: it has no image member", where)
            continue
        captions, fields = _captions_and_fields(texts[key], where)
        records.append(Record(f"{name}{TAR_SEP}{image.name}", captions, fields=fields,
                              offset=image.offset_data, size=image.size))
    return records


def _image_of(parts: dict[str, tarfile.TarInfo], where: str) -> tarfile.TarInfo | None:
    images = [m for ext, m in parts.items() if ext in IMAGE_EXTS]
    if len(images) > 1:
        raise DatasetError(f"{where} has {len(images)} images ({', '.join(m.name for m in images)}); "
                           f"a sample holds one")
    dotted = [m.name for ext, m in parts.items() if ext.rpartition(".")[2] in IMAGE_EXTS]
    if not images and dotted:
        raise DatasetError(f"{where}: {dotted[0]} is no image of it: a WebDataset key ends at "
                           f"the first dot of the file name, so rename it without the dots "
                           f"before its extension")
    return images[0] if images else None


def _captions_and_fields(texts: dict[str, bytes], where: str) -> tuple[tuple[str, ...], dict]:
    fields: dict[str, Any] = {}
    if "json" in texts:
        try:
            fields = json.loads(texts["json"])
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{where}: its .json is not JSON: {exc}") from exc
        if not isinstance(fields, dict):
            raise DatasetError(f"{where}: its .json is {type(fields).__name__}, not an object "
                               f"of fields")
    named = fields.pop("captions", None)
    one = fields.pop("caption", None)
    if named is not None and not isinstance(named, list):
        raise DatasetError(f"{where}: its .json \"captions\" is {type(named).__name__}, not a list")
    if "txt" in texts:
        lines = texts["txt"].decode("utf-8", errors="replace").splitlines()
        return tuple(line.strip() for line in lines if line.strip()), fields
    if named is not None:
        return tuple(str(c).strip() for c in named if str(c).strip()), fields
    return ((str(one).strip(),) if one is not None and str(one).strip() else ()), fields
