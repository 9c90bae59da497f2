"""`xmodal data filter`: a reranker trained here (tiny ALBEF on shapes, 400 steps: it scores
matched pairs well above mismatched ones) drops the pairs whose captions were swapped between
images, keeps the rest, and writes a dataset the project reads back, a histogram and counts."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from encoders.checkpoint import load_checkpoint
from encoders.engine import OnnxEngine
from encoders.export import export_bundle
from encoders.records import read_bytes
from training import synthetic
from training.data_filter import filter_dataset, pair_scores
from training.datasets import DatasetError, Record, decode, load_dataset, write_karpathy
from training.train import main as train_main
from xmodal import cli

THRESHOLD = 0.2
SWAPPED = (0, 1)  # these two images get each other's captions


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("itm")
    train_main(["--out", str(root / "ckpt"), "--model", "tiny-albef", "--data", "shapes",
                "--train-size", "600", "--render-size", "32", "--batch-size", "32",
                "--steps", "400", "--lr", "2e-3", "--itm-weight", "3", "--warmup-steps", "20"])
    export_bundle(load_checkpoint(root / "ckpt").exportable(), root / "engine")
    return root / "engine"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 held-out scenes (another seed than training's), a caption each, two of them swapped."""
    root = tmp_path_factory.mktemp("pairs")
    scenes = list(synthetic.scenes(12, seed=7))
    captions = [s.caption for s in scenes]
    a, b = SWAPPED
    assert captions[a] != captions[b]
    captions[a], captions[b] = captions[b], captions[a]
    records = []
    for n, (scene, caption) in enumerate(zip(scenes, captions, strict=True)):
        synthetic.render(scene, 32).save(root / f"{n}.png")
        records.append(Record(str(root / f"{n}.png"), (caption,)))
    return write_karpathy(records, root / "pairs.json")


def test_the_swapped_pairs_are_dropped_and_the_matched_kept(engine: Path, dataset: Path,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "kept.jsonl"
    assert cli.main(["data", "filter", "--engine", str(engine), "--data", str(dataset),
                     "--out", str(out), "--min-probability", str(THRESHOLD)]) == 0
    kept = {Path(r.uri).name for r in load_dataset(out)}
    swapped = {f"{n}.png" for n in SWAPPED}
    assert not kept & swapped  # both wrong captions scored below the threshold
    assert len(kept) >= 8  # and most true ones above it
    assert (tmp_path / "kept.scores.png").stat().st_size > 1000
    records = load_dataset(dataset)
    decoded = decode(records)
    probs = np.concatenate(pair_scores(OnnxEngine(engine), decoded.images, decoded.kept(records)))
    assert probs[list(SWAPPED)].max() < np.delete(probs, SWAPPED).mean()


def test_the_report_counts_what_was_dropped(engine: Path, dataset: Path, tmp_path: Path) -> None:
    report = filter_dataset(OnnxEngine(engine), dataset, tmp_path / "kept.json", THRESHOLD)
    assert report.pairs == 12 and report.kept + report.dropped == 12 and report.dropped >= 2
    assert report.images_dropped == report.dropped  # one caption per image here
    assert len(load_dataset(tmp_path / "kept.json")) == report.kept
    everything = filter_dataset(OnnxEngine(engine), dataset, tmp_path / "all.csv", 0.0)
    assert everything.kept == 12 and len(load_dataset(tmp_path / "all.csv")) == 12


def test_shards_are_filtered_into_a_shard(engine: Path, dataset: Path, tmp_path: Path) -> None:
    shard = tmp_path / "in.tar"
    with tarfile.open(shard, "w") as tar:
        for n, record in enumerate(load_dataset(dataset)):
            for name, payload in ((f"{n}.png", read_bytes(Path(), record)),
                                  (f"{n}.txt", record.captions[0].encode())):
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(DatasetError, match="write a .tar"):
        filter_dataset(OnnxEngine(engine), shard, tmp_path / "out.jsonl", THRESHOLD)
    report = filter_dataset(OnnxEngine(engine), shard, tmp_path / "out.tar", THRESHOLD)
    back = load_dataset(tmp_path / "out.tar")
    assert len(back) == report.kept and report.dropped >= 2
    Image.open(io.BytesIO(read_bytes(Path(), back[0]))).verify()


def test_bad_arguments_are_refused_by_name(engine: Path, dataset: Path, tmp_path: Path,
                                           tiny_engine: OnnxEngine) -> None:
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        filter_dataset(OnnxEngine(engine), dataset, tmp_path / "x.json", 1.5)
    with pytest.raises(DatasetError, match="the output is"):
        filter_dataset(OnnxEngine(engine), dataset, tmp_path / "x.txt", 0.5)
    with pytest.raises(ValueError, match="has no reranker"):
        filter_dataset(tiny_engine, dataset, tmp_path / "x.json", 0.5)
    (tmp_path / "rows.json").write_text(json.dumps({"images": "nope"}))
    with pytest.raises(SystemExit, match="xmodal data filter"):
        cli.main(["data", "filter", "--engine", str(engine), "--data", str(tmp_path / "rows.json"),
                  "--out", str(tmp_path / "x.json"), "--min-probability", "0.5"])
