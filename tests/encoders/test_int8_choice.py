"""The per-tower precision choice, on figures given by hand: fastest within bounds wins."""

from __future__ import annotations

import pytest

from encoders.bundle import EngineManifest, TokenizerSpec
from encoders.int8 import Candidate, choose
from encoders.preprocess import ImagePreprocess
from encoders.variants import build_precision, within_bounds

FP32 = Candidate("fp32", 100.0, 1e-7, 1.0)


def test_fastest_within_bounds_is_chosen() -> None:
    static, dynamic = Candidate("static", 300.0, 0.05, 0.995), Candidate("dynamic", 200.0, 0.01, 0.999)
    assert choose([FP32, static, dynamic], atol=0.25).method == "static"


def test_faster_candidate_outside_bounds_is_passed_over() -> None:
    low_cosine = Candidate("static", 300.0, 0.05, 0.93)
    far = Candidate("dynamic", 250.0, 0.4, 0.999)
    assert choose([FP32, low_cosine, far], atol=0.25).method == "fp32"
    assert choose([FP32, low_cosine], atol=0.25, min_cosine=0.9).method == "static"


def test_no_candidate_within_bounds_is_an_error_naming_them() -> None:
    with pytest.raises(ValueError, match="static: max diff 0.5"):
        choose([Candidate("static", 300.0, 0.5, 0.9)], atol=0.25)


def test_a_graph_without_embeddings_is_judged_by_its_difference_alone() -> None:
    reranker = Candidate("dynamic", 200.0, 0.01, None)
    assert choose([FP32, reranker], atol=0.25).method == "dynamic"


def _variant(speedup: float, recall_change: float, cosine: float = 0.995) -> dict:
    rates = {"fp32": {"items_per_s": 100.0}, "static": {"items_per_s": 100.0 * speedup}}
    return {"graphs": {}, "towers": {"image_encoder": {"int8": {"chosen": "static", "candidates": rates}}},
            "check": {"min_cosine": {"image_encoder": cosine},
                      "recall_change": {"text_to_image": recall_change, "image_to_text": 0.0}}}


def _manifest(**variants: dict) -> EngineManifest:
    return EngineManifest("clip", 8, ImagePreprocess(), TokenizerSpec(), {}, variants=variants)


def test_build_takes_the_fastest_variant_whose_recall_change_is_within_a_point() -> None:
    assert build_precision(_manifest(int8=_variant(2.5, -0.5)), "int8") == "int8"
    assert build_precision(_manifest(int8=_variant(2.5, -1.5)), "int8") == "fp32"
    assert build_precision(_manifest(int8=_variant(2.5, 0.0, cosine=0.9)), "int8") == "fp32"
    assert build_precision(_manifest(int8=_variant(0.8, 0.0)), "int8") == "fp32"  # slower
    assert build_precision(_manifest(int8=_variant(2.5, 0.0)), "fp32") == "fp32"  # not allowed
    assert within_bounds({}) and not within_bounds({"recall_change": {"text_to_image": -1.01}})
