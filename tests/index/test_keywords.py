"""The keyword index (index.keywords): built with every segment, so it follows adds, deletes
and compaction; literal words in captions and string fields are found, filters apply."""

from __future__ import annotations

from pathlib import Path

import pytest

from index.build import build_index
from index.errors import IndexBundleError
from index.keywords import KEYWORDS_FILE, match_expression
from index.metadata import Filter
from index.search import Searcher
from index.update import add_images, compact, delete_ids
from tests.colour_gallery import write_colour_gallery
from tests.numpy_engine import NumpyEngine


def _paths(searcher: Searcher, text: str, k: int = 20, where: Filter | None = None) -> list[str]:
    return [h.item.path for h in searcher.search_keywords(text, k, where)]


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    build_index(NumpyEngine(), write_colour_gallery(tmp_path / "gallery"), tmp_path / "index")
    return tmp_path / "index"


def test_a_literal_tag_and_a_caption_word_are_found(root: Path) -> None:
    searcher = Searcher(root, "numpy-colours")
    assert sorted(_paths(searcher, "zanzibar")) == ["blue-200.png", "red-150.png"]
    assert sorted(_paths(searcher, "Kilimanjaro!")) == ["cyan-255.png"]  # case and punctuation
    assert sorted(_paths(searcher, "magenta")) == [f"magenta-{s}.png" for s in (150, 200, 255)]
    assert _paths(searcher, "nowhere") == [] and _paths(searcher, "  ?! ") == []
    # a caption word and a tag together rank the image holding both first
    assert _paths(searcher, "red zanzibar")[0] == "red-150.png"


def test_filters_apply_to_keyword_search(root: Path) -> None:
    searcher = Searcher(root, "numpy-colours")
    assert _paths(searcher, "zanzibar", where=Filter(equals={"shade": 200})) == ["blue-200.png"]
    assert _paths(searcher, "zanzibar", where=Filter(ranges={"shade": (None, 150)})) == ["red-150.png"]


def test_query_syntax_is_never_passed_to_fts5() -> None:
    assert match_expression('red" OR body:* NEAR(') == '"red" OR "OR" OR "body" OR "NEAR"'


def test_keywords_follow_adds_deletes_and_compaction(root: Path, tmp_path: Path) -> None:
    extra = write_colour_gallery(tmp_path / "extra", shades=(100,))
    extra.write_text(extra.read_text().replace('"tag": "plain"', '"tag": "zanzibar"', 1))
    # red-100.png (the first line) got the tag too
    add_images(NumpyEngine(), root, extra)
    assert sorted(_paths(Searcher(root, "numpy-colours"), "zanzibar")) == \
        sorted(["blue-200.png", "red-150.png", str((extra.parent / "red-100.png").resolve())])
    gone = next(h.id for h in Searcher(root, "numpy-colours").search_keywords("zanzibar", 5)
                if h.item.path == "red-150.png")
    delete_ids(root, [gone])
    after_delete = _paths(Searcher(root, "numpy-colours"), "zanzibar", k=2)
    assert "red-150.png" not in after_delete and len(after_delete) == 2
    compact(root)
    searcher = Searcher(root, "numpy-colours")
    assert len(searcher.segments) == 1
    assert sorted(_paths(searcher, "zanzibar")) == sorted(after_delete)


def test_a_segment_without_a_keyword_index_is_refused_by_name(root: Path) -> None:
    searcher = Searcher(root, "numpy-colours")
    (searcher.segments[0].folder / KEYWORDS_FILE).unlink()
    with pytest.raises(IndexBundleError, match="no keyword index"):
        searcher.search_keywords("zanzibar", 5)
    assert len(searcher.search(NumpyEngine().encode_texts(["red"]), 3)[0]) == 3  # vectors still serve
