"""Dataset-file and WebDataset sources, and search restricted by metadata fields."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from encoders.errors import InputError
from index import segment_search
from index.build import build_index
from index.metadata import Filter, Item, MetadataStore, write_store
from index.search import Searcher


@pytest.fixture(scope="module")
def dataset_file(gallery: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A training-format .jsonl over the gallery, with a tag and a date per image."""
    rows = [json.loads(line) for line in (gallery / "captions.jsonl").read_text().splitlines()]
    out = tmp_path_factory.mktemp("ds") / "pairs.jsonl"
    lines = [json.dumps({"file": str(gallery / r["file"]), "caption": r["caption"],
                         "tag": "odd" if i % 2 else "even", "date": f"2024-01-{i + 1:02d}"})
             for i, r in enumerate(rows)]
    out.write_text("\n".join(lines) + "\n")
    return out


@pytest.fixture(scope="module", params=["auto", "fast-scan + refine"])
def filtered(request, tiny_engine, dataset_file: Path, tmp_path_factory) -> Searcher:
    root = tmp_path_factory.mktemp("filtered") / "idx"
    # recall 1: the refine index is tuned until it is exact, so results can equal brute force
    factory = None if request.param == "auto" else f"IVF2,PQ{tiny_engine.dim // 4}x4fs,RFlat"
    build_index(tiny_engine, dataset_file, root, workers=0, factory=factory, recall=1.0)
    return Searcher(root, tiny_engine.engine_id)


def _truth(s: Searcher, queries: np.ndarray, allowed: set[int], k: int) -> list[list[int]]:
    rows = [int(i) for i in s.ids if int(i) in allowed]
    scores = queries @ s.vectors(rows).T
    return [[rows[j] for j in np.argsort(-r, kind="stable")[:k]] for r in scores]


@pytest.mark.parametrize("path", ["exact", "selector", "overfetch"])
def test_filtered_search_returns_only_matching_items(filtered, monkeypatch, path) -> None:
    if path != "exact":
        monkeypatch.setattr(segment_search, "EXACT_BELOW", 0)
    monkeypatch.setattr(filtered, "use_selectors", path != "overfetch")
    where = Filter(equals={"tag": "odd"}, ranges={"date": ("2024-01-05", "2024-01-20")})
    allowed = {it.id for it in filtered.metadata.get(list(map(int, filtered.ids))).values()
               if it.fields["tag"] == "odd" and "2024-01-05" <= it.fields["date"] <= "2024-01-20"}
    assert len(allowed) == 8
    queries = filtered.vectors(list(filtered.ids[:4]))
    got = [[h.id for h in hits] for hits in filtered.search(queries, 5, where=where)]
    assert got == _truth(filtered, queries, allowed, 5)


def test_filter_with_no_match_returns_nothing(filtered) -> None:
    hits = filtered.search(filtered.vectors(list(filtered.ids[:2])), 5,
                           where=Filter(equals={"tag": "none"}))
    assert hits == [[], []]


@pytest.mark.parametrize(("kwargs", "problem"), [
    ({"equals": {"a'b": 1}}, "letters, digits"),
    ({"equals": {"n": 2**70}}, "64-bit integers"),
    ({"ranges": {"n": (None, -(2**64))}}, "64-bit integers"),
    ({"equals": {"n": [1, 2]}}, "strings, numbers or booleans"),
    ({"equals": {f"f{i}": i for i in range(40)}}, "at most 32 fields"),
])
def test_a_filter_sqlite_cannot_run_is_refused_when_made(kwargs, problem) -> None:
    with pytest.raises(InputError, match=problem):
        Filter(**kwargs)


def test_a_filter_at_the_limits_runs(filtered) -> None:
    where = Filter(equals={f"f{i}": 2**63 - 1 for i in range(31)},
                   ranges={"n": (-(2**63), None)})
    assert filtered.search(filtered.vectors(list(filtered.ids[:1])), 3, where=where) == [[]]


def test_metadata_of_more_ids_than_one_statement_takes(tmp_path) -> None:
    write_store(tmp_path / "m.sqlite", (Item(i, f"{i}.png", fields={"n": i}) for i in range(2500)))
    store = MetadataStore(tmp_path / "m.sqlite")
    try:
        items = store.get(list(range(2499, -1, -1)) + [99_999])
    finally:
        store.close()
    assert sorted(items) == list(range(2500)) and items[1234].fields == {"n": 1234}


def test_metadata_kept_in_memory_is_bounded_and_read_the_same(tmp_path) -> None:
    write_store(tmp_path / "m.sqlite", (Item(i, f"{i}.png", f"caption {i}", {"n": i})
                                        for i in range(100)))
    store = MetadataStore(tmp_path / "m.sqlite", cached=10)
    try:
        first = store.get(list(range(30)))
        again = store.get([5, 29, 28, 500])  # 5 was dropped, 28 and 29 were kept
        kept = list(store._items)
        mixed = store.get(list(range(95, 100)) + [29])
    finally:
        store.close()
    assert first[7] == Item(7, "7.png", "caption 7", {"n": 7})
    assert sorted(again) == [5, 28, 29] and again[29] is first[29] and again[5] == first[5]
    assert len(kept) == 10 and kept[-3:] == [29, 28, 5] and 20 not in kept
    assert sorted(mixed) == [29, 95, 96, 97, 98, 99] and mixed[97].fields == {"n": 97}


def test_dataset_file_stores_user_fields(filtered) -> None:
    item = filtered.metadata.get([3])[3]
    assert item.fields == {"tag": "odd", "date": "2024-01-04"} and item.caption


def test_webdataset_shards_index_like_the_folder(tiny_engine, gallery, tmp_path) -> None:
    names = sorted(p.name for p in gallery.glob("scene-*.png"))
    captions = {json.loads(line)["file"]: json.loads(line)["caption"]
                for line in (gallery / "captions.jsonl").read_text().splitlines()}
    shards = tmp_path / "shards"
    shards.mkdir()
    for shard, part in enumerate((names[:15], names[15:])):
        with tarfile.open(shards / f"train-{shard:04d}.tar", "w") as tar:
            for name in part:
                key = name.removesuffix(".png")
                tar.add(gallery / name, f"{key}.png")
                meta = tmp_path / f"{key}.txt"
                meta.write_text(captions[name])
                tar.add(meta, f"{key}.txt")
    shard_index = build_index(tiny_engine, shards, tmp_path / "from_tar", workers=1)
    folder_index = build_index(tiny_engine, gallery, tmp_path / "from_folder", workers=0)
    a = Searcher(tmp_path / "from_tar", tiny_engine.engine_id)
    b = Searcher(tmp_path / "from_folder", tiny_engine.engine_id)
    assert shard_index.count == folder_index.count == 30
    by_name_a = {it.path.split("::")[1]: it for it in a.metadata.get(list(map(int, a.ids))).values()}
    by_name_b = {it.path: it for it in b.metadata.get(list(map(int, b.ids))).values()}
    assert sorted(by_name_a) == sorted(by_name_b)
    assert a.image(by_name_a[names[20]].id)[1] == (gallery / names[20]).read_bytes()
    for name in names[:3]:
        ia, ib = by_name_a[name], by_name_b[name]
        assert ia.caption == ib.caption
        np.testing.assert_allclose(a.vectors([ia.id]), b.vectors([ib.id]), atol=1e-5)


def test_unsupported_source_is_named(tiny_engine, tmp_path) -> None:
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(InputError, match="x.csv"):
        build_index(tiny_engine, tmp_path / "x.csv", tmp_path / "idx")
    with pytest.raises(InputError, match="does not exist"):
        build_index(tiny_engine, tmp_path / "nope", tmp_path / "idx")


def test_bad_queries_are_refused_with_the_shape_expected(filtered) -> None:
    with pytest.raises(InputError, match=r"\(n, 64\)"):
        filtered.search(np.zeros((2, 3), np.float32), 3)
    with pytest.raises(InputError, match="k must be"):
        filtered.search(filtered.vectors(list(filtered.ids[:1])), 0)
