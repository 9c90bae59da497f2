"""Checkpointed build: a build killed mid-way resumes to exactly the uninterrupted index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from index import bundle
from index.build import build_index
from index.metadata import read_all
from index.shards import SimulatedCrash
from tests.segments import data_folder


def _files(root: Path) -> dict[str, str]:
    return bundle.read_manifest(bundle.resolve(root)).files


def test_killed_build_resumes_to_the_identical_index(tiny_engine, gallery, tmp_path) -> None:
    opts = {"batch_size": 4, "shard_size": 8, "workers": 1}
    whole = build_index(tiny_engine, gallery, tmp_path / "whole", **opts)

    with pytest.raises(SimulatedCrash):
        build_index(tiny_engine, gallery, tmp_path / "resumed", crash_at=2, **opts)
    work = next((tmp_path / "resumed").glob(".build-*"))
    assert len(list(work.glob("shard-*.npz"))) == 2  # the finished shards survived the crash
    assert not (tmp_path / "resumed" / bundle.CURRENT).exists()  # nothing half-published

    resumed = build_index(tiny_engine, gallery, tmp_path / "resumed", **opts)
    assert not work.exists()  # the work folder goes once the version is published
    assert (resumed.count, resumed.skipped) == (whole.count, whole.skipped) == (30, 1)
    # every file, FAISS index and stores included, is byte-identical
    assert _files(tmp_path / "resumed") == _files(tmp_path / "whole")


def test_resume_encodes_only_the_missing_shards(tiny_engine, gallery, tmp_path, monkeypatch) -> None:
    opts = {"batch_size": 4, "shard_size": 8, "workers": 0}
    with pytest.raises(SimulatedCrash):
        build_index(tiny_engine, gallery, tmp_path / "idx", crash_at=3, **opts)
    seen: list[int] = []
    real = tiny_engine.encode_pixels
    monkeypatch.setattr(tiny_engine, "encode_pixels", lambda px: seen.append(len(px)) or real(px))
    build_index(tiny_engine, gallery, tmp_path / "idx", **opts)
    # 31 records (broken.png sorts first, into shard 0); 3 shards of 8 were done before
    assert sum(seen) == 31 - 24


def test_unreadable_images_are_listed_in_the_report(tiny_engine, gallery, tmp_path) -> None:
    manifest = build_index(tiny_engine, gallery, tmp_path / "idx", workers=0)
    report = bundle.resolve(tmp_path / "idx") / bundle.SKIPPED_FILE
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert manifest.skipped == 1 and [r["uri"] for r in rows] == ["broken.png"]
    assert "cannot decode" in rows[0]["error"]
    items = read_all(data_folder(tmp_path / "idx") / bundle.METADATA_FILE)
    assert "broken.png" not in {it.path for it in items} and len(items) == 30


def test_stores_are_aligned_with_the_index(tiny_engine, gallery, tmp_path) -> None:
    manifest = build_index(tiny_engine, gallery, tmp_path / "idx", workers=0)
    folder = data_folder(tmp_path / "idx")
    ids = np.load(folder / bundle.IDS_FILE)
    tokens = np.load(folder / manifest.tokens["file"], mmap_mode="r")
    assert isinstance(tokens, np.memmap) and tokens.dtype == np.float16
    assert tokens.shape[0] == len(ids) == manifest.count
    assert manifest.tokens["bytes_per_image"] == tokens.shape[1] * tokens.shape[2] * 2
    assert manifest.captions == 30 and (folder / bundle.CAPTIONS_FAISS).is_file()


def test_caption_index_answers_image_to_text(tiny_engine, gallery, tmp_path) -> None:
    from index.search import Searcher

    build_index(tiny_engine, gallery, tmp_path / "idx", workers=0)
    s = Searcher(tmp_path / "idx", tiny_engine.engine_id)
    caption = s.metadata.get([4])[4].caption
    text = tiny_engine.encode_texts([caption])
    hits = s.search_captions(text, 3)[0]  # a caption's own embedding finds that caption first
    assert len(hits) == 3 and hits[0].item.caption == caption
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
