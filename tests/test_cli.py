"""The `xmodal` commands that the other tests do not already drive."""

from __future__ import annotations

import json

import pytest

from xmodal import cli
from xmodal.demo import DemoPaths

COMMANDS = ("train", "export", "index", "eval", "serve", "bench", "demo")


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


def test_bench_serving_reports_stages_and_batching(
    demo: DemoPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "serving", "--engine", str(demo.engine), "--index", str(demo.index),
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
    assert cli.main(["demo", "--workdir", str(demo.root), "--no-serve"]) == 0
    after = {p: p.stat().st_mtime_ns for p in demo.root.rglob("*") if p.is_file()}
    assert after == before
