"""`xmodal data filter`: score every (image, caption) pair of a dataset with the engine's
reranker and keep those it believes match, as BLIP's CapFilt filters web captions with its ITM
head and LAION kept pairs above a CLIP-score threshold.

Each caption of each image is one pair, scored by `reranker.onnx` (the ITM match probability).
Pairs at or above `min_probability` are written to a new dataset file; an image left with no
caption is left out. A histogram of every score, the threshold marked, is drawn beside it.
The output format follows the output file's suffix: `.json` (Karpathy), `.jsonl` or `.csv`
(one row per caption, image paths relative to the file), `.tar` (a WebDataset shard, images
copied in: the only output for shard input, whose images have no file to point to).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import tarfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from encoders.engine import Engine
from encoders.records import TAR_SEP, read_bytes
from training.datasets import DatasetError, Record, decode, load_dataset, write_karpathy

log = logging.getLogger(__name__)

IMAGES_PER_CALL = 32  # image tower calls: tokens of this many images held at once
PAIRS_PER_CALL = 128  # reranker calls
OUTPUTS = (".json", ".jsonl", ".csv", ".tar")


@dataclass(frozen=True)
class FilterReport:
    pairs: int  # (image, caption) pairs scored
    kept: int
    dropped: int  # pairs below the threshold
    images_dropped: int  # images left with no caption, so not written
    unreadable: int  # images that would not open, skipped before scoring
    min_probability: float
    out: str
    histogram: str


def pair_scores(engine: Engine, images: list, records: list[Record]) -> list[np.ndarray]:
    """The reranker's match probability of each record's image with each of its captions."""
    scores: list[np.ndarray] = []
    for start in range(0, len(images), IMAGES_PER_CALL):
        chunk = records[start : start + IMAGES_PER_CALL]
        tokens = engine.encode_pixels(engine.pixels(images[start : start + IMAGES_PER_CALL]))["image_tokens"]
        rows = np.asarray([i for i, r in enumerate(chunk) for _ in r.captions])
        texts = [c for r in chunk for c in r.captions]
        probs = np.concatenate([engine.score(tokens[rows[at : at + PAIRS_PER_CALL]],
                                             texts[at : at + PAIRS_PER_CALL])
                                for at in range(0, len(texts), PAIRS_PER_CALL)])
        ends = np.cumsum([len(r.captions) for r in chunk])[:-1]
        scores += np.split(probs, ends)
    return scores


def filter_dataset(engine: Engine, data: Path, out: Path, min_probability: float,
                   histogram: Path | None = None) -> FilterReport:
    """Score `data`'s pairs, write those >= `min_probability` to `out`, draw the histogram
    (default: beside `out`, `<stem>.scores.png`)."""
    if not 0.0 <= min_probability <= 1.0:
        raise ValueError(f"--min-probability is a probability in [0, 1], not {min_probability}")
    if out.suffix not in OUTPUTS:
        raise DatasetError(f"cannot write {out}: the output is {', '.join(OUTPUTS)}")
    if not engine.has_reranker:
        raise ValueError(f"engine {engine.engine_id} has no reranker (reranker.onnx): data "
                         "filter scores pairs with its ITM head")
    records = load_dataset(data)
    decoded = decode(records)
    readable = decoded.kept(records)
    if not readable:
        raise DatasetError(f"{data} has no readable images to filter")
    scores = pair_scores(engine, decoded.images, readable)
    kept = [replace(r, captions=tuple(c for c, p in zip(r.captions, s, strict=True)
                                      if p >= min_probability))
            for r, s in zip(readable, scores, strict=True)]
    kept = [r for r in kept if r.captions]
    all_scores = np.concatenate(scores)
    histogram = histogram or out.with_name(out.stem + ".scores.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_dataset(kept, out)
    plot_scores(all_scores, min_probability, histogram, data.name)
    n_kept = sum(len(r.captions) for r in kept)
    report = FilterReport(pairs=len(all_scores), kept=n_kept, dropped=len(all_scores) - n_kept,
                          images_dropped=len(readable) - len(kept),
                          unreadable=decoded.skipped, min_probability=min_probability,
                          out=str(out), histogram=str(histogram))
    log.info("kept %d of %d pairs at match probability >= %.3f (%d dropped, %d images left "
             "with no caption)", report.kept, report.pairs, min_probability, report.dropped,
             report.images_dropped)
    return report


def write_dataset(records: list[Record], out: Path) -> Path:
    """`records` as a dataset file of `out`'s format (see the module docstring)."""
    if out.suffix == ".tar":
        return _write_shard(records, out)
    in_memory = [r.uri for r in records if TAR_SEP in r.uri]
    if in_memory:
        raise DatasetError(f"images of tar shards ({in_memory[0]}, ...) have no file for {out} "
                           "to point to: write a .tar instead")
    if out.suffix == ".json":
        return write_karpathy(records, out)
    rows = [{"image": os.path.relpath(Path(r.uri).resolve(), out.parent.resolve()),
             "caption": c, "split": r.split} for r in records for c in r.captions]
    if out.suffix == ".csv":
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=["image", "caption", "split"])
        writer.writeheader()
        writer.writerows(rows)
        out.write_text(text.getvalue())
    else:
        out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return out


def _write_shard(records: list[Record], out: Path) -> Path:
    """One WebDataset shard: `<n>.<ext>` with the image bytes and `<n>.json` with its captions
    and split (the WebDataset reader takes `captions`)."""
    with tarfile.open(out, "w") as tar:
        for n, r in enumerate(records):
            data = read_bytes(Path(), r)
            ext = r.uri.rsplit(".", 1)[-1].lower()
            meta = json.dumps({"captions": list(r.captions), "split": r.split}).encode()
            for name, payload in ((f"{n:08d}.{ext}", data), (f"{n:08d}.json", meta)):
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return out


def plot_scores(scores: np.ndarray, threshold: float, png: Path, title: str) -> Path:
    """The match probabilities' histogram, kept and dropped in two colours, threshold marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = np.linspace(0, 1, 41)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(scores[scores >= threshold], bins=bins, color="tab:blue",
            label=f"kept ({int((scores >= threshold).sum())})")
    ax.hist(scores[scores < threshold], bins=bins, color="tab:red",
            label=f"dropped ({int((scores < threshold).sum())})")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:g}")
    ax.set(xlabel="ITM match probability", ylabel="pairs", title=f"{title}: {len(scores)} pairs")
    ax.legend()
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def report_json(report: FilterReport) -> str:
    return json.dumps(asdict(report), indent=1)
