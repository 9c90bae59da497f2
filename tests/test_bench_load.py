"""`xmodal bench serve` and `xmodal bench soak`: tiny bounded runs against the quick demo.

Only the reports' structure and invariants are checked, never timings: the machine is shared.
"""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import pytest

from bench.load import REPO
from bench.serve import CONCURRENCY, GAIN_ROUNDS
from bench.settings_ab import commit_of
from bench.soak import HOSTILE_KINDS, passed
from xmodal import cli
from xmodal.demo import DemoPaths


def test_serve_reports_every_row_and_runs_batching_off_at_batch_size_1(demo: DemoPaths,
                                                                      tmp_path: Path) -> None:
    out = tmp_path / "serve.json"
    argv = ["bench", "serve", "--engine", str(demo.engine), "--index", str(demo.index),
            "--requests", "6", "--seconds", "10", "--json", str(out)]
    assert cli.main(argv) == 0  # 1: a request failed; 2: service ids differ from the raw path
    report = json.loads(out.read_text())

    # the shapes engine has no reranker: rerank rows are skipped, with the reason given
    assert not any(r["rerank"] for r in report["rows"])
    assert len(report["skipped"]) == 1 and "rerank" in report["skipped"][0]
    rows = {(r["server"], r["concurrency"]): r for r in report["rows"]}
    assert set(rows) == {(s, c) for s in ("batching_on", "batching_off") for c in CONCURRENCY}
    for row in rows.values():
        assert row["requests"] == 6 and row["non_200"] == 0
        assert 0 < row["p50_ms"] <= row["p99_ms"]
        assert row["req_per_s"] > 0

    for o in report["overhead"]:
        assert o["agreement"] == 1.0 and o["raw_p50_ms"] > 0 and o["ratio"] > 0
        floors = o["floors_p50_ms"]  # round trips that do no work, each a real server
        assert set(floors) == {"echo", "app", "healthz_batching_on", "healthz_batching_off"}
        assert all(ms > 0 for ms in floors.values())
    assert {o["server"] for o in report["overhead"]} == {"batching_on", "batching_off"}
    assert [g["concurrency"] for g in report["batching_gain"]] == [max(CONCURRENCY)]
    gain = report["batching_gain"][0]
    assert len(gain["round_ratios"]) == len(gain["on_req_per_s"]) == GAIN_ROUNDS
    assert gain["ratio"] == pytest.approx(statistics.median(gain["round_ratios"]), abs=0.01)
    assert gain["raw_ratio"] > 0 and report["batch_size"] == 32  # the raw path's own gain

    off = report["servers"]["batching_off"]
    assert off["settings"]["XMODAL_BATCH_MAX_SIZE"] == "1"
    assert off["batches"] > 0 and off["largest_at_most"] == 1 and off["mean"] == 1.0
    assert off["queries"] == off["batches"]
    on = report["servers"]["batching_on"]
    assert "XMODAL_BATCH_MAX_SIZE" not in on["settings"]
    assert on["settings"]["XMODAL_CACHE_ENTRIES"] == off["settings"]["XMODAL_CACHE_ENTRIES"] == "0"
    # cache off: every query reached the engine (warm-up + rows + overhead pass)
    assert on["queries"] == off["queries"]


def test_soak_mixes_valid_and_hostile_requests_without_failures(demo: DemoPaths,
                                                                tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    argv = ["bench", "soak", "--engine", str(demo.engine), "--index", str(demo.index),
            "--clients", "4", "--seconds", "5", "--hostile", "0.3", "--json", str(out)]
    assert cli.main(argv) == 0
    report = json.loads(out.read_text())

    assert report["requests"] > 0
    assert sum(report["by_status"].values()) == report["requests"]
    assert sum(sum(s.values()) for s in report["by_kind"].values()) == report["requests"]
    assert report["server_errors"] == report["failed_valid"] == report["no_answer"] == 0
    assert set(report["by_kind"]) == {"text", "image", *HOSTILE_KINDS}  # no reranker: no rerank
    for kind in HOSTILE_KINDS:
        assert all(400 <= int(code) < 500 for code in report["by_kind"][kind]), kind
    for kind in ("text", "image"):
        assert set(report["by_kind"][kind]) == {"200"}
    assert 0 < report["valid_p50_ms"] <= report["valid_p99_ms"]
    assert report["rss_start_kib"] > 0 and report["rss_end_kib"] > 0


def test_soak_fails_on_any_5xx_failed_valid_request_or_missing_answer() -> None:
    clean = {"server_errors": 0, "failed_valid": 0, "no_answer": 0}
    assert passed(clean)
    for key in clean:
        assert not passed(clean | {key: 1})


def test_ab_measures_every_variant_with_its_own_settings(demo: DemoPaths, tmp_path: Path) -> None:
    out, md = tmp_path / "ab.json", tmp_path / "ab.md"
    argv = ["bench", "ab", "--engine", str(demo.engine), "--index", str(demo.index),
            "--variant", "base={}", "--variant", 'unbatched={"batch_max_size": 1}',
            "--concurrency", "1", "4", "--rounds", "2", "--requests", "8", "--seconds", "10",
            "--json", str(out), "--out", str(md)]
    assert cli.main(argv) == 0  # 1: a request got no 200
    report = json.loads(out.read_text())
    rows = {(r["variant"], r["concurrency"]): r for r in report["rows"]}
    assert set(rows) == {(v, c) for v in ("base", "unbatched") for c in (1, 4)}
    for (variant, _), row in rows.items():
        assert row["req_per_s"] > 0 and row["p50_ms"] > 0
        if variant == "base":  # the baseline against itself
            assert row["req_per_s_vs_first"] == row["p50_vs_first"] == 1.0
    assert report["non_200"] == {"base": 0, "unbatched": 0}
    # the variant's setting reached its server: every batch held one query
    assert report["batches"]["unbatched"]["largest_at_most"] == 1
    assert report["batches"]["unbatched"]["queries"] == report["batches"]["unbatched"]["batches"]
    code = "this checkout" + (f" ({commit_of(REPO)})" if commit_of(REPO) else "")
    assert f"| unbatched | `{{\"batch_max_size\": 1}}` | {code} | 4 |" in md.read_text()


def test_ab_runs_a_variant_from_another_checkout(demo: DemoPaths, tmp_path: Path) -> None:
    """The code under test comes from the checkout named: here a copy whose k limit is 5, so
    its server refuses the benchmark's k=10 searches while this checkout's answers them."""
    copy = tmp_path / "checkout"
    for package in ("xmodal", "service", "encoders", "index", "training", "bench"):
        shutil.copytree(REPO / package, copy / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    schemas = copy / "service" / "schemas.py"
    schemas.write_text(schemas.read_text().replace("MAX_K = 100", "MAX_K = 5"))
    out = tmp_path / "ab.json"
    argv = ["bench", "ab", "--engine", str(demo.engine), "--index", str(demo.index),
            "--variant", "here={}", "--variant", f"copy@{copy}={{}}", "--concurrency", "2",
            "--rounds", "1", "--requests", "4", "--seconds", "10", "--json", str(out)]
    assert cli.main(argv) == 1  # the copy's requests got no 200
    report = json.loads(out.read_text())
    assert report["non_200"] == {"here": 0, "copy": 4}
    assert report["checkouts"] == {"here": str(REPO), "copy": str(copy)}
    assert report["commits"]["copy"] is None  # a copy, not a git checkout


@pytest.mark.parametrize(("variant", "message"), [
    ('a={"k":', "not JSON"), ("a=[1]", "JSON object"), ('a={"spin_uss": 0}', "spin_uss"),
    ("={}", "NAME=JSON"), ("a@={}", "NAME@CHECKOUT=JSON"),
    ("a@/nonexistent={}", "not a checkout of this project"),
])
def test_ab_refuses_a_bad_variant_naming_it(variant: str, message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        cli.main(["bench", "ab", "--variant", variant, "--variant", "b={}"])


@pytest.mark.parametrize(("variants", "message"), [(["a={}", "a={}"], "must differ"),
                                                   (["a={}"], "at least two")])
def test_ab_refuses_repeated_or_single_variants(variants: list[str], message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        cli.main(["bench", "ab", *[arg for v in variants for arg in ("--variant", v)]])
