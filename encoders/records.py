"""One image with its captions, as every data source reads it, and the reading of its bytes.

Training (`training.datasets`) and the index build (`index.sources`) make the same `Record`
from every format they read, and open images through the same `decode`, so a record means
one thing in both. Image bytes live either in a file or inside a WebDataset tar shard,
written `<shard.tar>::<member name>` (`TAR_SEP`).
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from encoders.errors import InputError
from encoders.preprocess import ImagePreprocess, load_image, preprocess

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")
TAR_SEP = "::"  # uri of a WebDataset member: "<shard.tar>::<member name>"


class DatasetError(InputError):
    """A dataset file that cannot be read as its format: the message names file and field."""


@dataclass(frozen=True)
class Record:
    """One image: where its bytes are, its captions, and what to store beside its vector."""

    uri: str  # a path (absolute or relative to the source root) or "<shard.tar>::<member>"
    captions: tuple[str, ...] = ()
    split: str = "train"  # training's split; the index build reads every record
    fields: dict[str, Any] = field(default_factory=dict)  # user fields the index stores
    # byte range inside a tar shard, so readers seek instead of scanning the archive
    offset: int | None = None
    size: int | None = None

    @property
    def caption(self) -> str | None:
        """The caption an index stores (it keeps one per image): the first."""
        return self.captions[0] if self.captions else None


@dataclass(frozen=True)
class Decoded:
    """Records after their images were read: the ones that opened, and why the others did not."""

    rows: list[int]  # positions (in the records read) of the images that opened, in order
    images: list[Image.Image]  # those images; empty once turned into `pixels`
    errors: list[tuple[int, str]]  # (position, reason) of the images that did not open
    pixels: np.ndarray | None = None  # (len(rows), 3, size, size) float32, once preprocessed

    @property
    def skipped(self) -> int:
        return len(self.errors)

    def kept(self, records: Sequence[Record]) -> list[Record]:
        """The records whose image opened, in order."""
        return [records[row] for row in self.rows]

    def preprocessed(self, spec: ImagePreprocess) -> Decoded:
        """Pixels instead of images: what the index build's decode workers send on (smaller
        to pass between processes than the images, and what the engine takes)."""
        pixels = preprocess(self.images, spec) if self.images else None
        return replace(self, images=[], pixels=pixels)


def read_bytes(root: Path, record: Record) -> bytes:
    """The encoded image bytes of a record, its uri relative to `root` (raises OSError when
    unreadable). A tar member without its byte range is found by name (a scan of the shard)."""
    if TAR_SEP not in record.uri:
        return (root / record.uri).read_bytes()
    shard, member = record.uri.split(TAR_SEP, 1)
    if record.offset is not None and record.size is not None:
        with open(root / shard, "rb") as handle:
            handle.seek(record.offset)
            return handle.read(record.size)
    try:
        with tarfile.open(root / shard) as tar:
            handle = tar.extractfile(member)
            if handle is None:
                raise OSError(f"{member} in {root / shard} is not a file")
            return handle.read()
    except (KeyError, tarfile.TarError) as exc:
        raise OSError(f"cannot read {member} from {root / shard}: {exc}") from exc


def decode(root: Path, records: Sequence[Record], rows: Iterable[int] | None = None) -> Decoded:
    """Open the images of `records` (those at `rows`, default all); an unreadable one is an
    error of the result, never an exception, so one bad file does not stop a run."""
    images, kept, errors = [], [], []
    for row in range(len(records)) if rows is None else rows:
        record = records[row]
        try:
            image = load_image(read_bytes(root, record))
            image.load()  # decode now, so a truncated file is caught here and not later
        except (InputError, OSError, ValueError) as exc:
            errors.append((row, f"{record.uri}: {exc}"))
            continue
        images.append(image)
        kept.append(row)
    return Decoded(kept, images, errors)
