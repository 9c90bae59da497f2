"""Caption rows: JSON lines of `{"file": ..., "caption": ...}`, any other keys user fields.

The same rows are a folder's `captions.jsonl` (captions of the images beside it) and a
dataset file (`*.jsonl` naming its images); `file` is relative to the folder the file is in,
or absolute. Training's evaluation, the index build and uploads all read and write them here.
"""

from __future__ import annotations

import json
from pathlib import Path

from encoders.records import DatasetError, Record

CAPTIONS_FILE = "captions.jsonl"  # optional, beside the images of a folder


def read_caption_rows(path: Path) -> list[Record]:
    """One record per non-empty line, in order (the uri is `file` as written)."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            file = row.pop("file")
        except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as exc:
            raise DatasetError(f"{path}:{number}: expected a JSON object with a \"file\" key "
                               f"({exc!r})") from exc
        caption = row.pop("caption", None)
        records.append(Record(str(file), (str(caption),) if caption else (), fields=row))
    return records


def folder_rows(folder: Path) -> dict[str, Record]:
    """The rows of a folder's `captions.jsonl` by file (a file listed twice: its last row);
    none when it has no such file."""
    path = Path(folder) / CAPTIONS_FILE
    return {r.uri: r for r in read_caption_rows(path)} if path.is_file() else {}


def read_captions(folder: Path) -> dict[str, str]:
    """A folder's captions by file: `folder_rows` without the rows that have none."""
    return {file: r.captions[0] for file, r in folder_rows(folder).items() if r.captions}


def captions_text(captions: dict[str, str]) -> str:
    """The `captions.jsonl` of images by file name."""
    return "".join(json.dumps({"file": name, "caption": caption}) + "\n"
                   for name, caption in captions.items())


def write_captions(folder: Path, captions: dict[str, str]) -> None:
    """Write `captions_text(captions)` into `folder`; no captions: no file."""
    if captions:
        (Path(folder) / CAPTIONS_FILE).write_text(captions_text(captions))
