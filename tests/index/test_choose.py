"""FAISS index choice by size and memory, and tuning to a recall target."""

from __future__ import annotations

import numpy as np
import pytest

from encoders.errors import InputError
from index import bundle
from index.build import build_index
from index.choose import choose_factory, exact_topk, make_index, recall_at, tune
from index.search import Searcher
from tests.segments import data_folder


def _vectors(n: int, dim: int, seed: int) -> np.ndarray:
    # low intrinsic dimension, like real embeddings (see bench/index.py)
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(0).standard_normal((8, dim)).astype(np.float32)
    x = rng.standard_normal((n, 8), dtype=np.float32) @ mix
    x += 0.3 * rng.standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize(("n", "budget", "expected"), [
    (5_000, None, "Flat"),
    (50_000, None, "HNSW32,Flat"),
    (200_000, None, "IVF2048,PQ128x4fs,RFlat"),
    (1_000_000, None, "IVF4096_HNSW32,PQ128x4fs,RFlat"),
    # 2 GB of floats do not fit, 1 GB of fp16 do
    (1_000_000, 1_500_000_000, "IVF4096_HNSW32,PQ128x4fs,Refine(SQfp16)"),
    (1_000_000, 1_000_000_000, "IVF4096_HNSW32,PQ128x4fs,Refine(SQ8)"),
    (1_000_000, 100_000_000, "IVF4096_HNSW32,PQ64"),
    (50_000, 50_000 * 512 * 2, "IVF1024,PQ128x4fs,Refine(SQ8)"),  # HNSW would not fit either
])
def test_choice_follows_size_and_memory(n, budget, expected) -> None:
    assert choose_factory(n, 512, budget) == expected


def test_fast_scan_needs_a_dimension_divisible_by_four() -> None:
    assert choose_factory(200_000, 510) == "IVF2048,Flat"


@pytest.mark.parametrize(("n", "budget", "expected"), [
    (50_000, None, "IVF1024,Flat"),
    (1_000_000, None, "IVF4096,Flat"),
    (1_000_000, 1_000_000_000, "IVF4096,SQ8"),
])
def test_gpu_choice_uses_only_types_gpu_faiss_has(n, budget, expected) -> None:
    assert choose_factory(n, 512, budget, gpu=True) == expected


def test_impossible_budget_is_refused_clearly() -> None:
    with pytest.raises(InputError, match="memory budget"):
        choose_factory(1_000_000, 512, 1_000_000)


def test_bad_factory_string_names_it() -> None:
    with pytest.raises(InputError, match="IVFnope"):
        make_index("IVFnope", np.zeros((10, 8), np.float32))


@pytest.mark.parametrize("factory", ["IVF64,Flat", "HNSW16,Flat"])
def test_tuning_reaches_the_target_with_the_smallest_setting(factory) -> None:
    data, queries = _vectors(6000, 32, 1), _vectors(200, 32, 2)
    truth = exact_topk(data, queries, 10)
    index = make_index(factory, data)
    result = tune(index, queries, truth, 0.9)
    assert result.recall_at_10 >= 0.9
    name = next(iter(result.search_params))
    # the setting chosen is the first in the curve to reach the target
    reached = [c for c in result.curve if c["recall_at_10"] >= 0.9]
    assert reached[0][name] == result.search_params[name] and len(reached) == 1
    # and the index is left set to it: searching again measures the same recall
    assert recall_at(index.search(queries, 10)[1], truth) == pytest.approx(result.recall_at_10, abs=1e-4)


def test_refine_tuning_keeps_the_fastest_pair_reaching_the_target() -> None:
    data, queries = _vectors(8000, 32, 1), _vectors(300, 32, 2)
    truth = exact_topk(data, queries, 10)
    index = make_index("IVF64,PQ8x4fs,RFlat", data)
    result = tune(index, queries, truth, 0.95)
    assert set(result.search_params) == {"nprobe", "k_factor_rf"}
    assert result.recall_at_10 >= 0.95
    # per k_factor, the first nprobe to reach the target; the pair kept is the fastest of those
    firsts = {}
    for point in result.curve:
        if point["recall_at_10"] >= 0.95:
            firsts.setdefault(point["k_factor_rf"], point)
    assert len(firsts) >= 2
    fastest = min(firsts.values(), key=lambda p: p["ms_per_query"])
    assert result.search_params == {"nprobe": fastest["nprobe"],
                                    "k_factor_rf": fastest["k_factor_rf"]}
    assert recall_at(index.search(queries, 10)[1], truth) == pytest.approx(result.recall_at_10, abs=1e-4)


def test_build_records_factory_and_measured_recall(tiny_engine, gallery, tmp_path) -> None:
    manifest = build_index(tiny_engine, gallery, tmp_path / "idx", workers=0,
                           factory="IVF4,Flat", recall=0.9)
    assert manifest.factory == "IVF4,Flat" and "nprobe" in manifest.search_params
    assert manifest.tuning["recall_at_10"] >= 0.9 and manifest.tuning["recall_target"] == 0.9
    assert manifest.tuning["queries_from"] == "caption text embeddings"
    searcher = Searcher(tmp_path / "idx", tiny_engine.engine_id)
    assert searcher.segments[0].index.nprobe == manifest.search_params["nprobe"]  # applied at load


def test_mmap_load_gives_the_same_results(tiny_engine, gallery, tmp_path) -> None:
    build_index(tiny_engine, gallery, tmp_path / "idx", workers=0, factory="IVF4,Flat")
    plain = Searcher(tmp_path / "idx", tiny_engine.engine_id)
    mapped = Searcher(tmp_path / "idx", tiny_engine.engine_id, mmap=True)
    queries = plain.vectors(list(plain.ids[:5]))
    assert [[h.id for h in r] for r in plain.search(queries, 5)] == \
        [[h.id for h in r] for r in mapped.search(queries, 5)]


def test_corrupt_token_store_fails_its_checksum_naming_it(tiny_engine, gallery, tmp_path) -> None:
    manifest = build_index(tiny_engine, gallery, tmp_path / "idx", workers=0)
    target = data_folder(tmp_path / "idx") / manifest.tokens["file"]
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(bundle.IndexBundleError, match=manifest.tokens["file"]):
        Searcher(tmp_path / "idx", tiny_engine.engine_id)
