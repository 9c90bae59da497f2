"""Frozen features of the `lit` family's pretrained encoders, extracted once and cached.

Training the heads and the reranker needs only what the frozen parts compute: per image the
backbone's last feature map (fp16) and its pooled head features; per text MiniLM's mean-pooled vector and the hidden
states below the fusion layers. The frozen parts run through ONNX Runtime (several times
faster than PyTorch eager for depthwise convolutions on this CPU), exported from the same
modules the engine exports.

Image features are cached per source under `cache/<key>/` in chunks written to a temporary
name and renamed, so a killed extraction resumes at its first missing chunk. Text features
are cached by text, so a run on a subset of the captions reuses the earlier run's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn
from tqdm import tqdm

from encoders.lit import LiTModel
from encoders.preprocess import ImagePreprocess, preprocess
from encoders.tokenizer import TextTokenizer
from training.lit_data import Item

log = logging.getLogger(__name__)

CHUNK = 512
BATCH = 32
FORMAT = 1  # bump when what a chunk holds changes


class _ImageFeatures(nn.Module):
    def __init__(self, model: LiTModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature_map = self.model.backbone.features(pixels)
        return feature_map, self.model.backbone.pooled(feature_map)


class _TextFeatures(nn.Module):
    def __init__(self, model: LiTModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.pooled_text(ids, mask), self.model.lower_hidden(ids, mask)


def _session(module: nn.Module, example: tuple, inputs: list[str], outputs: list[str],
             folder: Path) -> ort.InferenceSession:
    path = folder / "graph.onnx"
    axes = {n: {0: "batch"} for n in inputs + outputs}
    if "ids" in inputs:
        axes |= {n: {0: "batch", 1: "seq"} for n in ("ids", "mask", "hidden")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), example, str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes=axes, opset_version=17, dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = min(4, os.cpu_count() or 1)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def cache_key(model: LiTModel, source: str, count: int, seed: int, size: int) -> str:
    cfg = model.cfg
    return f"{cfg.backbone}-{cfg.image_size}-{source}-{count}-{seed}-{size}-v{FORMAT}"


def _chunk_path(folder: Path, index: int) -> Path:
    return folder / f"chunk_{index:05d}.npz"


def image_features(model: LiTModel, items: Sequence[Item], folder: Path, spec: ImagePreprocess,
                   progress: bool = True) -> dict[str, np.ndarray]:
    """{"map": (n, c, h, w) fp16, "pooled": (n, 1280) fp32} for `items`."""
    folder.mkdir(parents=True, exist_ok=True)
    chunks = range(0, len(items), CHUNK)
    missing = [c for c in chunks if not _chunk_path(folder, c // CHUNK).is_file()]
    model = model.eval()  # exporting below sets the mode; callers' modes are theirs to restore
    if missing:
        with tempfile.TemporaryDirectory() as tmp:
            example = torch.zeros(1, 3, spec.size, spec.size)
            names = ["map", "pooled"]
            session = _session(_ImageFeatures(model), (example,), ["pixels"], names, Path(tmp))
            bar = tqdm(total=len(items), initial=len(items) - sum(min(CHUNK, len(items) - c) for c in missing),
                       desc=f"features {folder.name}", disable=not progress, unit="img")
            for start in missing:
                _extract_chunk(session, names, items[start:start + CHUNK], spec,
                               _chunk_path(folder, start // CHUNK), bar)
            bar.close()
    parts = [np.load(_chunk_path(folder, c // CHUNK)) for c in chunks]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0].files}


def _extract_chunk(session: ort.InferenceSession, names: list[str], items: Sequence[Item],
                   spec: ImagePreprocess, path: Path, bar: tqdm) -> None:
    out: dict[str, list[np.ndarray]] = {n: [] for n in names}

    def pixels_of(start: int) -> np.ndarray:
        return preprocess([item.load() for item in items[start:start + BATCH]], spec)

    # the next batch is drawn and preprocessed (PIL, mostly outside the GIL) while ONNX Runtime
    # runs this one
    with ThreadPoolExecutor(1) as pool:
        upcoming = pool.submit(pixels_of, 0)
        for i in range(0, len(items), BATCH):
            pixels = upcoming.result()
            if i + BATCH < len(items):
                upcoming = pool.submit(pixels_of, i + BATCH)
            for name, value in zip(names, session.run(names, {"pixels": pixels}), strict=True):
                out[name].append(value.astype(np.float32 if name == "pooled" else np.float16))
            bar.update(len(pixels))
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **{n: np.concatenate(v) for n, v in out.items()})
    os.replace(tmp, path)


class TextFeatures:
    """MiniLM features of every text, by text: `pooled` (n, width) and the ragged `hidden`
    states below the fusion layers, cached in `folder` and extended as new texts appear."""

    def __init__(self, texts: Sequence[str], pooled: np.ndarray, hidden: np.ndarray,
                 offsets: np.ndarray) -> None:
        self.row = {t: i for i, t in enumerate(texts)}
        self.texts, self.pooled, self.hidden, self.offsets = list(texts), pooled, hidden, offsets

    def rows(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray([self.row[t] for t in texts], dtype=np.int64)

    def padded_hidden(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(len(rows), longest, width) fp32 states and their (len(rows), longest) mask."""
        lengths = self.offsets[rows + 1] - self.offsets[rows]
        width = int(lengths.max())
        out = np.zeros((len(rows), width, self.hidden.shape[1]), np.float32)
        mask = np.zeros((len(rows), width), np.int64)
        for i, (r, n) in enumerate(zip(rows, lengths, strict=True)):
            out[i, :n] = self.hidden[self.offsets[r]:self.offsets[r] + n]
            mask[i, :n] = 1
        return torch.from_numpy(out), torch.from_numpy(mask)


def text_features(model: LiTModel, tokenizer: TextTokenizer, texts: Sequence[str], folder: Path,
                  progress: bool = True) -> TextFeatures:
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(json.dumps([model.cfg.text, model.text_lower, tokenizer.max_length]).encode())
    path = folder / f"texts-{digest.hexdigest()[:12]}.npz"
    known = _load_texts(path)
    new = sorted(set(texts) - set(known.texts)) if known else sorted(set(texts))
    if not new:
        return known
    pooled, hidden, lengths = _encode_texts(model, tokenizer, new, progress)
    if known:
        old_lengths = np.diff(known.offsets)
        pooled = np.concatenate([known.pooled, pooled])
        hidden = np.concatenate([known.hidden, hidden])
        lengths = np.concatenate([old_lengths, lengths])
        new = known.texts + new
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, texts=np.asarray(new, dtype=object), pooled=pooled, hidden=hidden, offsets=offsets)
    os.replace(tmp, path)
    return TextFeatures(new, pooled, hidden, offsets)


def _load_texts(path: Path) -> TextFeatures | None:
    if not path.is_file():
        return None
    data = np.load(path, allow_pickle=True)  # our own cache file: an array of str objects
    return TextFeatures(list(data["texts"]), data["pooled"], data["hidden"], data["offsets"])


def _encode_texts(model: LiTModel, tokenizer: TextTokenizer, texts: list[str], progress: bool
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    model = model.eval()
    pooled, hidden, lengths = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        ids, mask = (torch.from_numpy(a) for a in tokenizer.encode(["an example text"]))
        session = _session(_TextFeatures(model), (ids, mask), ["ids", "mask"], ["pooled", "hidden"],
                           Path(tmp))
        for i in tqdm(range(0, len(texts), 64), desc="text features", disable=not progress):
            ids, mask = tokenizer.encode(texts[i:i + 64])
            p, h = session.run(["pooled", "hidden"], {"ids": ids, "mask": mask})
            pooled.append(p)
            n = mask.sum(axis=1)
            hidden += [h[j, :n[j]].astype(np.float16) for j in range(len(n))]
            lengths.append(n)
    return np.concatenate(pooled), np.concatenate(hidden), np.concatenate(lengths)
