"""Versions made of segments: an add writes only the new images, a delete only the deletion
set, small segments merge by tier, compact keeps the token layout, and the lock admits one
writer at a time across processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from index import bundle, update
from index.build import build_index
from index.errors import IndexBusyError, StaleVersionError
from index.lock import writer_lock
from index.metadata import Item
from index.search import Searcher
from index.segment import write_segment
from index.segment_search import GPU_MAX_K
from index.version import VersionPlan, publish_version
from index.writer import Contents
from tests.segments import as_format_1
from training.synthetic import write_gallery

REPO = Path(__file__).resolve().parents[2]


def _files(root: Path) -> dict[str, int]:
    """Every file under `root` by path, with its inode: a shared file keeps its inode."""
    return {str(p.relative_to(root)): p.stat().st_ino for p in root.rglob("*") if p.is_file()}


def test_add_writes_one_segment_for_the_new_images_and_shares_the_rest(
        tiny_engine, gallery, tmp_path) -> None:
    root = tmp_path / "idx"
    first = build_index(tiny_engine, gallery, root, workers=0)
    before = _files(root)
    added = update.add_images(tiny_engine, root, write_gallery(tmp_path / "new", 3, seed=9))
    assert [s["rows"] for s in added.segments] == [first.count, 3]
    assert added.segments[0] == first.segments[0]  # the first segment is shared, not copied
    after = _files(root)
    for name, inode in before.items():  # nothing written before was rewritten, but CURRENT
        assert after[name] == inode or name == bundle.CURRENT, name
    new = {n for n in after if n not in before and not n.startswith(".")}
    assert all(n.startswith((f"{bundle.SEGMENTS}/{added.segments[1]['name']}/", added.version))
               for n in new), new
    s = Searcher(root, tiny_engine.engine_id)
    ids = list(range(first.next_id, first.next_id + 3))
    assert [hits[0].id for hits in s.search(s.vectors(ids), 1)] == ids  # found across segments


def test_delete_writes_only_the_deletion_set(tiny_engine, gallery, tmp_path) -> None:
    root = tmp_path / "idx"
    first = build_index(tiny_engine, gallery, root, workers=0)
    deleted = update.delete_ids(root, [3, 4])
    assert deleted.segments == first.segments and deleted.deleted == 2
    assert sorted(p.name for p in (root / deleted.version).iterdir()) == \
        sorted([bundle.MANIFEST, bundle.DELETED_FILE, bundle.SKIPPED_FILE])
    with pytest.raises(update.InputError, match="3"):  # already deleted: unknown now
        update.delete_ids(root, [3])


def test_small_segments_merge_by_tier_and_drop_their_deleted_rows(
        tiny_engine, gallery, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(update, "MERGE_FACTOR", 3)
    root = tmp_path / "idx"
    first = build_index(tiny_engine, gallery, root, workers=0)  # 30 rows: tier 1
    extra = write_gallery(tmp_path / "new", 2, seed=4)
    one = update.add_images(tiny_engine, root, extra)
    update.delete_ids(root, [first.next_id])  # a row of the first small segment
    two = update.add_images(tiny_engine, root, extra)
    assert [s["rows"] for s in two.segments] == [30, 2, 2]
    three = update.add_images(tiny_engine, root, extra)  # a third of tier 0: merged
    assert [s["rows"] for s in three.segments] == [30, 5]
    assert three.deleted == 0 and three.count == 35  # the deleted row went with the merge
    assert one.segments[1] not in three.segments
    s = Searcher(root, tiny_engine.engine_id)
    assert first.next_id not in set(s.ids.tolist()) and len(s.ids) == 35


def test_compact_keeps_pooled_tokens_and_later_adds_match_them(tiny_engine, gallery,
                                                               tmp_path) -> None:
    root = tmp_path / "idx"
    build_index(tiny_engine, gallery, root, workers=0, token_pool=4)
    update.delete_ids(root, [2])
    compacted = update.compact(root)
    assert compacted.tokens["pool"] == 4 and compacted.tokens["shape"][1] == 4
    added = update.add_images(tiny_engine, root, write_gallery(tmp_path / "new", 2, seed=6))
    assert added.tokens["pool"] == 4 and added.tokens["shape"] == [31, 4, compacted.tokens["shape"][2]]
    s = Searcher(root, tiny_engine.engine_id)
    tokens = s.tokens([1, added.next_id - 1])  # one from each segment, expanded alike
    assert tokens.shape[1] == compacted.tokens["full_tokens"] and np.isfinite(tokens).all()


def test_format_1_versions_are_read_as_one_segment_and_updated(tiny_engine, gallery,
                                                               tmp_path) -> None:
    root = tmp_path / "idx"
    build_index(tiny_engine, gallery, root, workers=0)
    legacy = as_format_1(root)
    s = Searcher(root, tiny_engine.engine_id)
    assert s.version == legacy and len(s.ids) == 30
    added = update.add_images(tiny_engine, root, write_gallery(tmp_path / "new", 1, seed=2))
    assert added.format_version == 2 and [x["rows"] for x in added.segments] == [30, 1]
    assert len(Searcher(root, tiny_engine.engine_id).ids) == 31


def test_a_writer_that_cannot_get_the_lock_names_the_holder(tmp_path) -> None:
    root = tmp_path / "idx"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from index.lock import writer_lock
        with writer_lock({str(root)!r}):
            print("locked", flush=True)
            time.sleep(60)
    """)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        with pytest.raises(IndexBusyError, match=f"process {holder.pid}"), \
                writer_lock(root, wait_s=0.3):
            pass
        assert time.monotonic() - started < 5
    finally:
        holder.kill()
        holder.wait()
    with writer_lock(root, wait_s=5):  # the kernel released it with its holder
        pass


def test_parent_is_checked_again_right_before_publishing(tiny_engine, gallery, tmp_path) -> None:
    root = tmp_path / "idx"
    first = build_index(tiny_engine, gallery, root, workers=0)
    with pytest.raises(StaleVersionError), bundle.publish(root, parent=first.version):
        update.delete_ids(root, [1])  # another change lands while this one is staged
    assert bundle.resolve(root).name != first.version


class _CappedIndex:
    """A FAISS index that refuses what GPU FAISS refuses: more than GPU_MAX_K results a call."""

    def __init__(self, index) -> None:
        self.index, self.ntotal, self.asked = index, index.ntotal, []

    def search(self, queries: np.ndarray, k: int):
        self.asked.append(k)
        assert k <= GPU_MAX_K, f"asked GPU FAISS for {k} results a query"
        return self.index.search(queries, k)


def test_gpu_over_fetch_stays_under_faiss_cap_and_answers_exactly(tmp_path) -> None:
    rng = np.random.default_rng(0)
    n, dim = 6000, 8
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    contents = Contents(np.arange(n), vectors, np.zeros((n, 1, 1), np.float16),
                        [Item(i, f"{i}.png") for i in range(n)], np.zeros(0, np.int64),
                        np.zeros((0, dim), np.float32), 1)
    root = tmp_path / "idx"
    with writer_lock(root):
        segment = write_segment(root, contents, "Flat", 0.95)
        publish_version(root, VersionPlan("e", dim, [segment], next_id=n))
    update.delete_ids(root, list(range(5000)))  # the first over-fetch would ask for 5020
    s = Searcher(root, "e")
    queries = vectors[:4]
    exact = [[h.id for h in hits] for hits in s.search(queries, 10)]  # the CPU selector path
    s.use_selectors = False  # the GPU path, on CPU
    capped = s.segments[0].index = _CappedIndex(s.segments[0].index)
    assert [[h.id for h in hits] for hits in s.search(queries, 10)] == exact
    assert capped.asked and max(capped.asked) <= GPU_MAX_K
    assert all(min(hits) >= 5000 for hits in exact)


def test_prune_removes_the_segments_only_pruned_versions_used(tiny_engine, gallery,
                                                               tmp_path) -> None:
    root = tmp_path / "idx"
    first = build_index(tiny_engine, gallery, root, workers=0)
    update.add_images(tiny_engine, root, write_gallery(tmp_path / "a", 2, seed=1))
    update.delete_ids(root, [1])
    compacted = update.compact(root)  # one new segment; the first two are used by old versions
    last = update.delete_ids(root, [2])
    removed = update.prune(root, keep=2)
    assert first.version in removed and compacted.version not in removed
    assert {p.name for p in (root / bundle.SEGMENTS).iterdir()} == {compacted.segments[0]["name"]}
    for version in (compacted.version, last.version):  # what is kept still loads and verifies
        assert len(Searcher(root / version, tiny_engine.engine_id).ids) == compacted.count - (
            version == last.version)
