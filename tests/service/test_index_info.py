"""`GET /v1/index` says whether keyword and hybrid search can answer: `keywords` is true for an
index built now, false for one built before keyword search (and for a version any of whose
segments is that old), and true again once a compaction has rewritten it."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from index.build import build_index
from index.update import add_images, compact
from service.config import Settings
from service.main import create_app
from tests.colour_gallery import write_colour_gallery
from tests.numpy_engine import NumpyEngine
from tests.segments import as_format_1


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    build_index(NumpyEngine(), write_colour_gallery(tmp_path / "gallery"), tmp_path / "index")
    return tmp_path / "index"


def _client(root: Path) -> TestClient:
    settings = Settings(engine_dir=root.parent / "no-engine-bundle", index_dir=root)
    return TestClient(create_app(settings, engine=NumpyEngine()))


def _keywords(root: Path) -> bool:
    with _client(root) as client:
        info = client.get("/v1/index")
        assert info.status_code == 200, info.text
        return info.json()["keywords"]


def test_an_index_built_now_has_keywords(root: Path) -> None:
    assert _keywords(root) is True


def test_an_index_built_before_keyword_search_has_none(root: Path) -> None:
    as_format_1(root, keywords=False)
    assert _keywords(root) is False
    with _client(root) as client:
        refused = client.post("/v1/search/text", json={"text": "zanzibar", "mode": "keyword"})
        vector = client.post("/v1/search/text", json={"text": "red", "mode": "vector"})
    assert refused.status_code == 422 and "keyword search is not available" in refused.text
    assert vector.status_code == 200 and vector.json()["results"]


def test_every_segment_needs_a_keyword_index_and_compaction_writes_them(
    root: Path, tmp_path: Path
) -> None:
    as_format_1(root, keywords=False)
    add_images(NumpyEngine(), root, write_colour_gallery(tmp_path / "extra", shades=(100,)))
    assert _keywords(root) is False  # the new segment has one, the old one not
    compact(root)
    assert _keywords(root) is True
