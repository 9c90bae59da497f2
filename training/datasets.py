"""Image-caption datasets from the common on-disk formats, into one record list.

Formats: the Karpathy split JSON (Flickr30K, COCO), COCO captions JSON, CSV and JSONL
tables (`image,caption[,split]`, one row per caption), and WebDataset tar shards (read by
`encoders.webdataset`, as the index build reads them). Every loader returns the `Record`s of
`encoders.records`, uris relative to the working folder or absolute; `decode` opens their
images and skips, counts and logs the unreadable ones instead of failing.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from encoders.records import DatasetError, Decoded, Record
from encoders.records import decode as decode_records
from encoders.webdataset import read_shards, shard_paths

log = logging.getLogger(__name__)


def _read_json(path: Path) -> object:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read {path} as JSON: {exc}") from exc


def _field(row: dict, name: str, where: str) -> object:
    if not isinstance(row, dict) or name not in row:
        raise DatasetError(f"{where} has no {name!r} field")
    return row[name]


def load_karpathy(path: str | Path, image_root: str | Path | None = None) -> list[Record]:
    """Karpathy split JSON: `images[]` with `filename`, optional `filepath`, `split`, `sentences[].raw`."""
    path = Path(path)
    root = Path(image_root) if image_root else path.parent
    data = _read_json(path)
    images = _field(data, "images", str(path))
    records = []
    for n, item in enumerate(images):
        where = f"{path}: images[{n}]"
        name = str(_field(item, "filename", where))
        folder = item.get("filepath", "")
        sentences = _field(item, "sentences", where)
        captions = tuple(str(_field(s, "raw", f"{where}.sentences")).strip() for s in sentences)
        split = item.get("split", "train")
        # Karpathy's "restval" images are training images held back from val in the original split
        split = "train" if split == "restval" else split
        records.append(Record(str(root / folder / name), captions, split))
    return records


def load_coco(path: str | Path, image_root: str | Path | None = None, split: str = "train") -> list[Record]:
    """COCO captions JSON: `images[].id/file_name` and `annotations[].image_id/caption`."""
    path = Path(path)
    root = Path(image_root) if image_root else path.parent
    data = _read_json(path)
    files = {}
    for n, item in enumerate(_field(data, "images", str(path))):
        files[_field(item, "id", f"{path}: images[{n}]")] = str(_field(item, "file_name", f"{path}: images[{n}]"))
    captions: dict[object, list[str]] = {key: [] for key in files}
    for n, ann in enumerate(_field(data, "annotations", str(path))):
        where = f"{path}: annotations[{n}]"
        image_id = _field(ann, "image_id", where)
        if image_id not in captions:
            raise DatasetError(f"{where} refers to image_id {image_id!r}, which is not in images")
        captions[image_id].append(str(_field(ann, "caption", where)).strip())
    return [Record(str(root / files[k]), tuple(c), split) for k, c in captions.items() if c]


def _group_rows(rows: Sequence[dict], where: str, root: Path) -> list[Record]:
    """One row per caption -> one record per image, in order of first appearance."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for n, row in enumerate(rows):
        image = str(_field(row, "image", f"{where} row {n + 1}"))
        caption = str(_field(row, "caption", f"{where} row {n + 1}")).strip()
        split = str(row.get("split") or "train")
        if not image or not caption:
            raise DatasetError(f"{where} row {n + 1} has an empty image or caption")
        grouped.setdefault((image, split), []).append(caption)
    return [Record(str(root / image), tuple(c), split) for (image, split), c in grouped.items()]


def load_table(path: str | Path, image_root: str | Path | None = None) -> list[Record]:
    """CSV (with a header) or JSONL with `image`, `caption` and an optional `split`."""
    path = Path(path)
    root = Path(image_root) if image_root else path.parent
    try:
        text = path.read_text()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    if path.suffix == ".csv":
        rows = list(csv.DictReader(io.StringIO(text)))
    else:
        rows = []
        for n, line in enumerate(text.splitlines()):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path} line {n + 1} is not JSON: {exc}") from exc
    return _group_rows(rows, str(path), root)


def load_shards(source: str | Path | Iterable[str | Path], split: str = "train") -> list[Record]:
    """Records from one `.tar` shard, a folder of shards, or a list of shard paths."""
    if isinstance(source, (str, Path)):
        paths = shard_paths(Path(source))
    else:
        paths = [Path(p) for p in source]
    if not paths:
        raise DatasetError(f"no .tar shards in {source}")
    records = read_shards(paths)
    return records if split == "train" else [replace(r, split=split) for r in records]


def load_dataset(path: str | Path, image_root: str | Path | None = None) -> list[Record]:
    """Pick the loader from the file: .csv/.jsonl tables, .tar shards (or a folder of them),
    and .json as Karpathy (`images[].sentences`) or COCO (`annotations`)."""
    path = Path(path)
    if path.is_dir() or path.suffix == ".tar":
        return load_shards(path)
    if path.suffix in (".csv", ".jsonl"):
        return load_table(path, image_root)
    if path.suffix == ".json":
        data = _read_json(path)
        if isinstance(data, dict) and "annotations" in data:
            return load_coco(path, image_root)
        return load_karpathy(path, image_root)
    raise DatasetError(f"unknown dataset format for {path}: expected .json, .csv, .jsonl or .tar")


def decode(records: Sequence[Record]) -> Decoded:
    """Open every record's image; unreadable or missing ones are skipped, counted and logged."""
    decoded = decode_records(Path(), records)
    for _, reason in decoded.errors:
        log.warning("skipping unreadable image %s", reason)
    if decoded.skipped:
        log.warning("%d of %d images were unreadable and skipped", decoded.skipped, len(records))
    return decoded


def split_of(records: Sequence[Record], split: str) -> list[Record]:
    return [r for r in records if r.split == split]


def write_karpathy(records: Sequence[Record], path: str | Path) -> Path:
    """Write records as a Karpathy split JSON, image paths relative to the file's folder."""
    path = Path(path)
    images = []
    for n, r in enumerate(records):
        rel = Path(os.path.relpath(Path(r.uri).resolve(), path.parent.resolve()))
        images.append({"imgid": n, "filepath": str(rel.parent) if str(rel.parent) != "." else "",
                       "filename": rel.name, "split": r.split,
                       "sentences": [{"raw": c} for c in r.captions]})
    path.write_text(json.dumps({"images": images}, indent=1) + "\n")
    return path
