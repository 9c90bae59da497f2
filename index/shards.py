"""The unit of work of a build: reader (decode), mapper (encode) and writer (shard file).

A build's records are cut into fixed shards, and each shard into fixed batches of records.
Both executors (local worker processes, Ray Data) run exactly these functions over exactly
these batches, so their embeddings are bit-identical. Each batch's image tokens are written
as they come, fp16, to `shard-NNNNNN.tokens-KKKK.npy`, and never held past their batch; each
finished shard is then marked by `shard-NNNNNN.npz` (its rows, embeddings and errors) through a
temp file and `os.replace`: a killed build keeps every shard it finished, and a resumed one
encodes only the rest. The tokens are read back memory-mapped, so a segment's token store is
written from the page cache, not from a copy in the process's memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from encoders.codes import IMAGE_CODES, pack
from encoders.errors import InputError
from encoders.preprocess import ImagePreprocess
from encoders.records import Decoded, Record, decode
from index.durable import save_rows, write_stream, write_text
from index.tokens import pool_tokens

# for type hints only: decode workers import this module, and need no onnxruntime
if TYPE_CHECKING:
    from encoders.engine import Engine

log = logging.getLogger(__name__)

PLAN_FILE = "plan.json"


class SimulatedCrash(RuntimeError):
    """Raised by the `crash_at` test hook: the build stops as if the machine died."""


@dataclass(frozen=True)
class Plan:
    """Everything that fixes a build's output; its hash names the work folder."""

    root: str
    records: list[Record]
    engine_id: str
    preprocess: dict[str, Any]
    shard_size: int = 1024
    batch_size: int = 64
    token_pool: int | None = None  # keep this many pooled tokens per image (None: all)
    key: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.shard_size < 1 or self.batch_size < 1:
            raise InputError(f"shard_size and batch_size must be >= 1, got "
                             f"{self.shard_size} and {self.batch_size}")
        body = json.dumps({**asdict(self), "key": ""}, sort_keys=True, default=str)
        object.__setattr__(self, "key", hashlib.sha256(body.encode()).hexdigest()[:16])

    @property
    def shards(self) -> int:
        return -(-len(self.records) // self.shard_size)

    def shard_rows(self, shard: int) -> range:
        return range(shard * self.shard_size, min(len(self.records), (shard + 1) * self.shard_size))

    def batches(self, shard: int) -> list[range]:
        rows = self.shard_rows(shard)
        return [rows[i : i + self.batch_size] for i in range(0, len(rows), self.batch_size)]

    def spec(self) -> ImagePreprocess:
        return ImagePreprocess.from_dict(self.preprocess)


def decode_batch(plan: Plan, rows: range) -> Decoded:
    """Reader: read and preprocess one batch (rows are indices into the plan's records);
    unreadable images are reported, never fatal."""
    return decode(Path(plan.root), plan.records, rows).preprocessed(plan.spec())


def encode_batch(engine: Engine, plan: Plan, decoded: Decoded
                 ) -> tuple[np.ndarray, np.ndarray, int, np.ndarray | None]:
    """Mapper: pixels -> (embeddings float32, tokens pooled per the plan as the engine gives
    them, token count before pooling, packed codes where the engine outputs them
    (encoders.codes)); the writer stores the tokens as float16."""
    out = engine.encode_pixels(decoded.pixels)
    tokens = out.get("image_tokens")
    if tokens is None:
        tokens = np.zeros((len(decoded.rows), 0, 0), dtype=np.float16)
    full = tokens.shape[1]
    tokens = pool_tokens(tokens, plan.token_pool)
    codes = out.get(IMAGE_CODES)
    return (out["image_embeds"].astype(np.float32, copy=False), tokens, full,
            None if codes is None else pack(codes))


class ShardWriter:
    """Writer: writes each batch's tokens as it comes, then marks the shard done atomically."""

    def __init__(self, work: Path, shard: int) -> None:
        self.path = shard_path(work, shard)
        self.rows: list[int] = []
        self.embeds: list[np.ndarray] = []  # (batch, dim) float32: small beside the tokens
        self.batches = 0  # token files written
        self.errors: list[tuple[int, str]] = []
        self.full_tokens = 0
        self.codes: list[np.ndarray] = []

    def add(self, decoded: Decoded, embeds: np.ndarray | None, tokens: np.ndarray | None,
            full_tokens: int = 0, codes: np.ndarray | None = None) -> None:
        self.rows.extend(decoded.rows)
        self.errors.extend(decoded.errors)
        if embeds is not None:
            self.embeds.append(embeds)
            # converted a chunk at a time as written: no float16 copy of the batch is held
            save_rows(token_path(self.path, self.batches), tokens, np.float16)
            self.batches += 1
            self.full_tokens = full_tokens
            if codes is not None:
                self.codes.append(codes)

    def write(self) -> Path:
        tmp = self.path.with_name(self.path.name + ".tmp")
        write_stream(tmp, lambda handle: np.savez(
            handle, rows=np.asarray(self.rows, dtype=np.int64),
            embeds=_stack(self.embeds, np.float32), batches=np.asarray(self.batches),
            errors=np.asarray(json.dumps(self.errors)), full_tokens=np.asarray(self.full_tokens),
            codes=_stack(self.codes, np.uint8)))
        os.replace(tmp, self.path)
        return self.path


def encode_shard(engine: Engine, plan: Plan, work: Path, shard: int) -> Path:
    """Reader + mapper + writer for one whole shard, in this process (the Ray path)."""
    writer = ShardWriter(work, shard)
    for rows in plan.batches(shard):
        decoded = decode_batch(plan, rows)
        writer.add(decoded, *(encode_batch(engine, plan, decoded) if decoded.rows else (None, None)))
    return writer.write()


def _stack(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros((0,), dtype)


def shard_path(work: Path, shard: int) -> Path:
    return work / f"shard-{shard:06d}.npz"


def token_path(shard: Path, batch: int) -> Path:
    return shard.with_name(f"{shard.stem}.tokens-{batch:04d}.npy")


class StackedRows:
    """The token files of a build's batches read as one array, a slice at a time: what a
    segment's token store is written from, without concatenating them in memory. A file is
    memory-mapped only while a slice reads it (a large build has more batch files than a
    process may hold mappings)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        first = _open_rows(paths[0])
        lengths = [len(first)] + [len(_open_rows(p)) for p in paths[1:]]
        self.starts = np.cumsum([0] + lengths)
        self.shape = (int(self.starts[-1]), *first.shape[1:])
        self.dtype = first.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, part: slice) -> np.ndarray:
        start, stop, _ = part.indices(len(self))
        first = max(int(np.searchsorted(self.starts, start, side="right")) - 1, 0)
        pieces = []
        for k in range(first, len(self.paths)):
            begin = int(self.starts[k])
            if begin >= stop:
                break
            rows = _open_rows(self.paths[k])
            pieces.append(rows[max(start - begin, 0) : stop - begin])
        pieces = [piece for piece in pieces if len(piece)]
        if len(pieces) == 1:
            return pieces[0]  # a view of the mapped file: no copy
        return np.concatenate(pieces) if pieces else np.zeros((0, *self.shape[1:]), self.dtype)


def _open_rows(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r")
    except ValueError:  # an empty array: nothing to map
        return np.load(path)


def prepare_work(work: Path, plan: Plan) -> list[int]:
    """Create or reopen a work folder; the shards still to encode."""
    work.mkdir(parents=True, exist_ok=True)
    write_text(work / PLAN_FILE, json.dumps({"key": plan.key, "engine_id": plan.engine_id,
                                             "records": len(plan.records)}) + "\n")
    todo = [s for s in range(plan.shards) if not shard_path(work, s).is_file()]
    if len(todo) < plan.shards:
        log.info("resuming build %s: %d of %d shards already encoded", plan.key,
                 plan.shards - len(todo), plan.shards)
    return todo


@dataclass
class Assembled:
    rows: np.ndarray  # record index of each vector (int64, ascending)
    embeds: np.ndarray  # (n, dim) float32
    tokens: StackedRows  # (n, tokens, width) float16, read from the batches' files
    errors: list[tuple[int, str]]
    full_tokens: int = 0  # tokens per image before pooling
    work: Path | None = None  # the work folder the shards came from
    codes: np.ndarray | None = None  # (n, bits / 8) packed codes; None: the engine has none


def assemble(work: Path, plan: Plan) -> Assembled:
    """Read every shard back, in order, into one set of arrays."""
    rows, embeds, tokens, errors, full, codes = [], [], [], [], 0, []
    for shard in range(plan.shards):
        path = shard_path(work, shard)
        with np.load(path) as data:
            full = max(full, int(data["full_tokens"]))
            if len(data["rows"]):
                rows.append(data["rows"])
                embeds.append(data["embeds"])
                tokens += [token_path(path, k) for k in range(int(data["batches"]))]
                if "codes" in data.files and data["codes"].ndim == 2:
                    codes.append(data["codes"])
            errors.extend((int(r), str(m)) for r, m in json.loads(str(data["errors"])))
    if not rows:
        raise InputError(f"none of the {len(plan.records)} images could be read; first errors: "
                         f"{[m for _, m in errors[:3]]}")
    packed = _joined(codes) if len(codes) == len(rows) else None
    return Assembled(_joined(rows), _joined(embeds), StackedRows(tokens), errors, full,
                     codes=packed)


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
