"""WebDataset tar shards: members grouped by key (the name up to its first dot), an image
member (`.jpg`, `.png`, ...) and a caption in `.txt` or `.json` (`{"caption": ...}`; a list
under `captions` is read too). Read with the standard library, so no extra dependency."""

from __future__ import annotations

import json
import logging
import tarfile
from collections.abc import Iterable
from pathlib import Path

from training.datasets import DatasetError, Record

log = logging.getLogger(__name__)

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "gif", "bmp")


def _captions_of(parts: dict[str, bytes], where: str) -> tuple[str, ...]:
    if "txt" in parts:
        return tuple(line.strip() for line in parts["txt"].decode().splitlines() if line.strip())
    if "json" in parts:
        try:
            meta = json.loads(parts["json"])
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}.json is not JSON: {exc}") from exc
        if isinstance(meta.get("captions"), list):
            return tuple(str(c) for c in meta["captions"])
        if "caption" in meta:
            return (str(meta["caption"]),)
    return ()


def _read_shard(path: Path, split: str) -> list[Record]:
    try:
        tar = tarfile.open(path)  # noqa: SIM115 - closed by the `with` below, once opened
    except (OSError, tarfile.TarError) as exc:
        raise DatasetError(f"cannot open shard {path}: {exc}") from exc
    samples: dict[str, dict[str, bytes]] = {}
    with tar:
        for member in tar:
            if not member.isfile():
                continue
            key, _, ext = member.name.partition(".")
            samples.setdefault(key, {})[ext.lower()] = tar.extractfile(member).read()
    records = []
    for key, parts in samples.items():
        where = f"{path}:{key}"
        image_ext = next((e for e in IMAGE_EXTS if e in parts), None)
        captions = _captions_of(parts, where)
        if image_ext is None or not captions:
            log.warning("skipping sample %s: it has no %s", where, "image" if image_ext is None else "caption")
            continue
        records.append(Record(f"{where}.{image_ext}", captions, split, data=parts[image_ext]))
    return records


def load_shards(source: str | Path | Iterable[str | Path], split: str = "train") -> list[Record]:
    """Records from one `.tar` shard, a folder of shards, or a list of shard paths."""
    if isinstance(source, (str, Path)):
        source = Path(source)
        paths = sorted(source.glob("*.tar")) if source.is_dir() else [source]
    else:
        paths = [Path(p) for p in source]
    if not paths:
        raise DatasetError(f"no .tar shards in {source}")
    return [r for p in paths for r in _read_shard(p, split)]
