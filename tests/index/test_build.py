"""Index build, atomic publish and checksum verification."""

from __future__ import annotations

from pathlib import Path

import pytest

from encoders.engine import OnnxEngine
from encoders.preprocess import load_image
from index import bundle
from index.build import build_index
from index.errors import IndexBundleError
from index.search import Searcher
from tests.segments import data_folder
from training.synthetic import write_gallery


@pytest.fixture(scope="module")
def engine(other_engine: Path) -> OnnxEngine:
    return OnnxEngine(other_engine)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = write_gallery(tmp_path / "images", 12, seed=3)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return folder


def test_build_skips_unreadable_images_and_indexes_the_rest(engine, images, tmp_path) -> None:
    manifest = build_index(engine, images, tmp_path / "index", batch_size=5)
    assert (manifest.count, manifest.skipped) == (12, 1)
    assert manifest.engine_id == engine.engine_id and manifest.dim == engine.dim
    searcher = Searcher(tmp_path / "index", engine.engine_id)
    query = engine.encode_images([load_image(images / "scene-00004.png")])
    top = searcher.search(query, 3)[0]
    assert top[0].item.path == "scene-00004.png" and top[0].score == pytest.approx(1.0, abs=1e-4)
    assert top[0].item.caption  # captions.jsonl was picked up


def test_new_version_becomes_current_and_old_stays_intact(engine, images, tmp_path) -> None:
    first = build_index(engine, images, tmp_path / "index")
    second = build_index(engine, images, tmp_path / "index")
    assert first.version != second.version
    assert bundle.resolve(tmp_path / "index").name == second.version
    assert bundle.read_manifest(tmp_path / "index" / first.version).count == first.count


def test_failed_publish_leaves_the_root_untouched(engine, images, tmp_path) -> None:
    build_index(engine, images, tmp_path / "index")
    before = sorted(p.name for p in (tmp_path / "index").iterdir())
    with pytest.raises(RuntimeError), bundle.publish(tmp_path / "index") as (folder, _):
        (folder / "partial").write_text("half written")
        raise RuntimeError("killed mid-write")
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == before


def test_corrupt_index_file_is_refused_naming_it(engine, images, tmp_path) -> None:
    build_index(engine, images, tmp_path / "index")
    Searcher(tmp_path / "index", engine.engine_id).close()  # verified once: not trusted after a write
    with open(data_folder(tmp_path / "index") / bundle.FAISS_FILE, "r+b") as handle:
        handle.seek(-4, 2)
        handle.write(b"\0\0\0\0")
    with pytest.raises(IndexBundleError, match=bundle.FAISS_FILE):
        Searcher(tmp_path / "index", engine.engine_id)


def test_missing_index_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(IndexBundleError, match="CURRENT"):
        bundle.resolve(tmp_path)
