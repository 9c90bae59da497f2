"""bench/own_model.py's report and data: the markdown is made from the measured rows only."""

from __future__ import annotations

from pathlib import Path

from bench.own_model import report, write_pairs
from training.datasets import decode, load_dataset

ROW = {"model": "OpenCLIP ViT-B-32", "parameters": 151_277_313, "weights_bytes": 605 * 2**20,
       "export_s": 12.34, "export_peak_gb": 2.5, "engine_id": "open_clip-0",
       "parity": {"image_encoder": 1.2e-6, "text_encoder": 3.4e-7},
       "index_images_per_s": 17.81, "engine_busy": 0.96, "texts_per_s": 55.5,
       "index_peak_gb": 1.0, "workers": 1,
       "fine_tune": {"steps": 6, "batch_size": 32, "threads": 2, "loop_s_per_step": 9.87,
                     "total_s": 80.0, "fine_tune_peak_gb": 4.25, "loss_first": 3.47,
                     "loss_last": 3.1}}


def test_report_tables_hold_the_rows_figures() -> None:
    text = report([ROW], "xmodal bench own-model --steps 6", 256)
    assert "`xmodal bench own-model --steps 6`" in text
    assert ("| OpenCLIP ViT-B-32 | 151.3 M | 605 MiB | 12.3 s | 2.50 GiB | 1.2e-06 / 3.4e-07 | "
            "17.8 images/s | 96% | 56 texts/s |") in text
    assert "6 steps at batch 32" in text and "| OpenCLIP ViT-B-32 | 9.87 | 80 s | 4.25 GiB |" in text


def test_training_pairs_are_a_readable_dataset(tmp_path: Path) -> None:
    records = load_dataset(write_pairs(tmp_path / "pairs", 5))
    assert len(decode(records).images) == 5 and all(r.split == "train" for r in records)
