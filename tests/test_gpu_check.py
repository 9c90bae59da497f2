"""The GPU check (bench/gpu_check.py) run for real on CPU at tiny sizes: every step runs its CPU
reference, reports its GPU part as skipped with the reason, and the report is written.

GPUs are hidden from the steps (--hide-gpu), so this holds on a machine that has one too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import gpu_check
from encoders.engine import OnnxEngine
from index.build import build_index
from training.synthetic import write_gallery

TINY = ["--n", "2000", "--dim", "64", "--queries", "100", "--filter-n", "2000",
        "--factory", "IVF16,Flat", "--seconds", "0.05", "--batches", "1", "8",
        "--cpu-train-steps", "2", "--train-size", "64", "--batch-size", "16",
        "--serve-clients", "4", "--serve-requests", "16", "--serve-seconds", "1", "--hide-gpu"]


@pytest.fixture(scope="module")
def tiny_index(other_engine: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gpu-check")
    gallery = write_gallery(root / "gallery", 24, seed=3)
    build_index(OnnxEngine(other_engine, threads=1), gallery, root / "index", workers=0)
    return root / "index"


@pytest.fixture(scope="module")
def report(other_engine: Path, tiny_index: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[str, dict[str, dict]]:
    root = tmp_path_factory.mktemp("gpu-check-run")
    argv = ["--out", str(root / "out"), "--work", str(root / "work"), "--engine", str(other_engine),
            "--index", str(tiny_index), *TINY]
    assert gpu_check.main(argv) == 0  # nothing failed: GPU parts skipped, CPU checks passed
    data = json.loads((root / "out" / "gpu.json").read_text())
    return (root / "out" / "gpu.md").read_text(), {s["step"]: s for s in data["steps"]}


def test_every_gpu_step_is_skipped_for_want_of_a_gpu(report: tuple[str, dict[str, dict]]) -> None:
    text, steps = report
    assert list(steps) == list(gpu_check.STEPS)
    for name, step in steps.items():
        assert step["verdict"] == "skipped", (name, step)
        assert step["skipped"] and all("GPU" in reason for reason in step["skipped"]), (name, step)
        assert all(c["ok"] for c in step["checks"]) and step["checks"], (name, step)
        assert f"## {name}" in text and step["goal"] in text
    assert text.startswith("# xmodal GPU check") and "CPU cores" in text


def test_cpu_reference_figures_are_present_and_sane(report: tuple[str, dict[str, dict]]) -> None:
    _, steps = report
    flat, auto = steps["faiss"]["tables"]["CPU reference"]
    assert flat["index"] == "Flat" and flat["recall@10 vs CPU exact"] == 1.0
    assert auto["index"] == "IVF16,Flat" and 0.5 < auto["recall@10 vs CPU exact"] <= 1.0
    assert all(r["QPS batch 1"] > 0 and r["QPS batch 64"] > 0 for r in (flat, auto))
    cases = steps["filter"]["tables"]["results per case (64 queries, k = 10)"]
    assert len(cases) == 4
    for case in cases:  # the GPU code path (over-fetch), run on CPU, equals the selector path
        assert case["CPU results valid"] and case["CPU over-fetch vs selectors"].startswith("64 equal")
    engine = steps["engine"]["tables"]["CPU reference"]
    assert [r["batch"] for r in engine] == [1, 8]
    assert all(r["images/s"] > 0 and r["texts/s"] > 0 for r in engine)
    (train,) = steps["train"]["tables"]["runs"]
    assert train["steps"] == 2 and train["steps/s"] > 0
    (serve,) = steps["serve"]["tables"]["batching on vs off"]
    assert serve["service on"] == "CPU" and serve["ratio (median)"] > 0
    assert serve["ids equal CPU path"] == 1.0


def test_a_step_past_its_bound_fails_and_the_run_says_so(tmp_path: Path) -> None:
    argv = ["--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"), *TINY,
            "--steps", "faiss", "--limit", "faiss=0.01"]
    assert gpu_check.main(argv) == 1
    (step,) = json.loads((tmp_path / "out" / "gpu.json").read_text())["steps"]
    assert step["verdict"] == "fail" and "timed out" in step["checks"][0]["name"]
