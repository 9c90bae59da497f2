"""The `xmodal` commands that the other tests do not already drive."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from xmodal import cli
from xmodal.demo import DemoPaths

COMMANDS = ("train", "export", "index", "eval", "data", "serve", "bench", "demo")


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_eval_reports_recall_both_ways(demo: DemoPaths, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["eval", "--engine", str(demo.engine), "--images", str(demo.gallery)]) == 0
    result = json.loads(capsys.readouterr().out)
    for direction in ("text_to_image", "image_to_text"):
        recall = result[direction]
        assert recall["R@1"] <= recall["R@5"] <= recall["R@10"] <= 100.0
        assert recall["R@5"] >= 60.0


def test_bench_stages_reports_latency_per_stage_and_batching(
    demo: DemoPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "stages", "--engine", str(demo.engine), "--index", str(demo.index),
            "--queries", "64"]
    assert cli.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["queries"] == 64
    assert 0 < report["encode_ms_p50"] <= report["encode_ms_p99"]
    assert 0 < report["search_ms_p50"] <= report["search_ms_p99"]
    assert report["batch32_speedup"] == pytest.approx(
        report["texts_per_s_batch32"] / report["texts_per_s_batch1"], rel=0.02)


def test_demo_reuses_what_it_already_made(demo: DemoPaths) -> None:
    before = {p: p.stat().st_mtime_ns for p in demo.root.rglob("*") if p.is_file()}
    assert cli.main(["demo", "--workdir", str(demo.root), "--no-serve", "--model", "shapes"]) == 0
    after = {p: p.stat().st_mtime_ns for p in demo.root.rglob("*") if p.is_file()}
    assert after == before


def test_bench_engine_compares_runners_side_by_side(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "engine.json"
    argv = ["bench", "engine", "--model", "tiny-clip", "--batch", "1", "4", "--rounds", "1",
            "--gemm-size", "64",
            "--json", str(out)]
    assert cli.main(argv) == 0
    assert "vs torch" in capsys.readouterr().out
    results = json.loads(out.read_text())["results"]
    runners = {(r["tower"], r["batch"], r["runner"]) for r in results}
    assert runners == {(t, b, n) for t in ("image", "text") for b in (1, 4)
                       for n in ("torch_eager", "onnx_fp32", "onnx_int8")}
    for r in results:
        assert r["items_per_s"] > 0
        if r["runner"] == "torch_eager":
            assert r["vs_torch"] == 1.0
        assert r["min_cosine_to_torch"] >= (0.9999 if r["runner"] != "onnx_int8" else 0.95)
        # achieved rate: the counted FLOPs of one item at the measured items/s
        assert r["achieved_gflops"] == pytest.approx(r["items_per_s"] * r["gflop_per_item"], rel=0.02, abs=0.1)
    report = json.loads(out.read_text())
    assert set(report["gemm_before"]["torch"]) == {"fp32", "bf16", "int8"}
    assert len(report["gemm_after"]["loadavg"]) == 3
    choice = report["export"]["towers"]["image_encoder"]
    assert choice["chosen"] in choice["candidates"] and "static" in choice["candidates"]


def test_a_prepared_demo_starts_without_importing_torch(demo: DemoPaths) -> None:
    from encoders.checkpoint import WEIGHTS
    from xmodal.demo import CHECKPOINT_WEIGHTS

    assert CHECKPOINT_WEIGHTS == WEIGHTS
    code = ("import sys; from xmodal.demo import prepare; "
            f"prepare({str(demo.root)!r}, kind='shapes'); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
