"""Add -> delete -> compact as new versions, and re-index for another engine."""

from __future__ import annotations

import numpy as np
import pytest

from encoders.errors import InputError
from index import bundle
from index.build import build_index
from index.search import Searcher
from index.update import add_images, compact, delete_ids, reindex
from training.synthetic import write_gallery


def _all_ids(searcher: Searcher, queries: np.ndarray) -> set[int]:
    return {hit.id for hits in searcher.search(queries, 100) for hit in hits}


def test_add_delete_compact(tiny_engine, gallery, tmp_path) -> None:
    root = tmp_path / "idx"
    first = build_index(tiny_engine, gallery, root, workers=0)
    extra = write_gallery(tmp_path / "extra", 6, seed=77)
    added = add_images(tiny_engine, root, extra)
    assert added.count == first.count + 6 and added.parent == first.version
    new_ids = set(range(first.next_id, first.next_id + 6))

    s = Searcher(root, tiny_engine.engine_id)
    assert s.version == added.version
    queries = s.vectors(sorted(new_ids))  # the added images' own vectors
    top = [hits[0] for hits in s.search(queries, 1)]
    assert {h.id for h in top} == new_ids  # added ones found, as their own best match
    assert all(h.item.path.endswith(".png") and h.item.caption for h in top)
    s.close()

    gone = [0 + 1, 5, min(new_ids)]  # id 0 is broken.png, never indexed
    deleted = delete_ids(root, gone)
    assert deleted.count == added.count - 3 and deleted.deleted == 3
    s = Searcher(root, tiny_engine.engine_id)
    before_delete = Searcher(root / added.version, tiny_engine.engine_id)
    everything = before_delete.vectors(list(before_delete.ids))
    found = _all_ids(s, everything)
    assert not found & set(gone) and len(found) == deleted.count
    s.use_selectors = False  # the GPU path: over-fetch and filter
    assert not _all_ids(s, everything) & set(gone)
    assert not {h.id for hits in s.search_captions(everything, 50) for h in hits} & set(gone)
    with pytest.raises(KeyError, match=str(5)):
        s.tokens([5])
    s.close()

    compacted = compact(root)
    assert compacted.count == deleted.count and compacted.deleted == 0
    s = Searcher(root, tiny_engine.engine_id)
    assert [seg.index.ntotal for seg in s.segments] == [compacted.count] and not len(s.deleted)
    assert not _all_ids(s, everything) & set(gone)
    assert len(_all_ids(s, everything)) == compacted.count
    # ids are stable: the same id names the same image before and after compaction
    before = Searcher(root / first.version, tiny_engine.engine_id)
    assert before.metadata.get([7])[7].path == s.metadata.get([7])[7].path
    # every version stays intact and verifiable
    for m in (first, added, deleted, compacted):
        bundle.read_manifest(root / m.version)


def test_delete_unknown_id_names_it(tiny_engine, gallery, tmp_path) -> None:
    build_index(tiny_engine, gallery, tmp_path / "idx", workers=0)
    with pytest.raises(InputError, match="999"):
        delete_ids(tmp_path / "idx", [3, 999])


def test_reindex_for_another_engine_keeps_ids_and_the_old_root(tiny_engine, second_engine,
                                                               gallery, tmp_path) -> None:
    old = build_index(tiny_engine, gallery, tmp_path / "old", workers=0)
    other = second_engine
    new = reindex(other, tmp_path / "old", tmp_path / "new", None)
    assert new.engine_id == other.engine_id != old.engine_id and new.count == old.count
    assert bundle.resolve(tmp_path / "old").name == old.version  # old root untouched
    a = Searcher(tmp_path / "old", tiny_engine.engine_id)
    b = Searcher(tmp_path / "new", other.engine_id)
    assert list(a.ids) == list(b.ids)
    assert a.metadata.get([9])[9] == b.metadata.get([9])[9]
    with pytest.raises(InputError, match="new root"):
        reindex(other, tmp_path / "old", tmp_path / "old")


def test_pooled_tokens_are_smaller_and_expand_to_the_engine_count(tiny_engine, gallery,
                                                                  tmp_path) -> None:
    full = build_index(tiny_engine, gallery, tmp_path / "full", workers=0)
    pooled = build_index(tiny_engine, gallery, tmp_path / "pooled", workers=0, token_pool=5)
    n, width = full.tokens["shape"][1:]
    assert pooled.tokens["bytes_per_image"] == 5 * width * 2 < full.tokens["bytes_per_image"]
    assert pooled.tokens["full_tokens"] == n
    a = Searcher(tmp_path / "full", tiny_engine.engine_id).tokens([3, 4])
    b = Searcher(tmp_path / "pooled", tiny_engine.engine_id).tokens([3, 4])
    assert a.shape == b.shape == (2, n, width)
    # the first group's expanded token is that group's mean
    group = -(-n // 5)
    np.testing.assert_allclose(b[:, 0], a[:, :group].mean(axis=1), atol=2e-3)
    # added images are pooled like the rest
    extra = write_gallery(tmp_path / "extra", 2, seed=8)
    assert add_images(tiny_engine, tmp_path / "pooled", extra).tokens["shape"][1] == 5
