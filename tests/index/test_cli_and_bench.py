"""`xmodal index ...` end to end, and the index/build benchmarks on tiny inputs."""

from __future__ import annotations

import json
from pathlib import Path

from index import bundle
from xmodal import cli


def test_index_commands_end_to_end(other_engine: Path, gallery: Path, tmp_path, capsys) -> None:
    root = str(tmp_path / "idx")
    assert cli.main(["index", "build", "--engine", str(other_engine), "--images", str(gallery),
                     "--out", root, "--workers", "0", "--token-pool", "4"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert (built["count"], built["skipped"]) == (30, 1)
    assert built["token_bytes_per_image"] == 4 * bundle.read_manifest(
        bundle.resolve(root)).tokens["shape"][2] * 2  # 4 pooled fp16 tokens
    assert cli.main(["index", "delete", "--index", root, "3", "4"]) == 0
    assert json.loads(capsys.readouterr().out)["deleted"] == 2
    assert cli.main(["index", "compact", "--index", root]) == 0
    compacted = json.loads(capsys.readouterr().out)
    assert (compacted["count"], compacted["deleted"]) == (28, 0)


def test_bench_index_reports_flat_and_auto_side_by_side(tmp_path, capsys) -> None:
    out = tmp_path / "index.md"
    assert cli.main(["bench", "index", "--sizes", "20000", "--dim", "32", "--queries", "100",
                     "--seconds", "0.05", "--out", str(out), "--json", str(tmp_path / "r.json")]) == 0
    rows = json.loads((tmp_path / "r.json").read_text())
    assert [r["index"] for r in rows] == ["Flat", "auto: HNSW32,Flat"]
    assert rows[0]["recall_at_10"] == 1.0 and rows[1]["recall_at_10"] >= 0.95
    assert all(r["qps_batch1"] > 0 and r["qps_batch64"] > 0 for r in rows)
    assert "auto: HNSW32,Flat" in out.read_text()


def test_bench_build_compares_with_the_raw_engine(other_engine: Path, gallery, tmp_path) -> None:
    out = tmp_path / "build.json"
    assert cli.main(["bench", "build", "--engine", str(other_engine), "--images", str(gallery),
                     "--batch-size", "8", "--workers", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [r["pipeline"] for r in rows][1:] == ["index build at fp32, 1 decode workers",
                                                 "index build at fp32, 0 decode workers"]
    assert all(r["images_per_s"] > 0 and 0 < r["engine_busy"] <= 1 for r in rows)
