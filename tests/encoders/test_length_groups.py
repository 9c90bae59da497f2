"""Texts split into engine calls by length: cheapest split, and the same embeddings either way."""

import numpy as np

from encoders.engine import CPU_TEXT_CALL_TOKENS, OnnxEngine
from encoders.length_groups import length_groups


def _as_lists(groups: list[np.ndarray]) -> list[list[int]]:
    return [sorted(g.tolist()) for g in groups]


def test_short_and_long_texts_go_to_separate_calls() -> None:
    lengths = np.array([15, 2, 15, 2] * 8)
    groups = length_groups(lengths, call_tokens=10)
    assert _as_lists(groups) == [list(range(1, 32, 2)), list(range(0, 32, 2))]


def test_a_costly_call_keeps_the_batch_whole() -> None:
    lengths = np.array([15, 2, 15, 2] * 8)
    # one call: 32 x 15 padded tokens + 1000; two: 16 x 2 + 16 x 15 + 2000
    assert _as_lists(length_groups(lengths, call_tokens=1000)) == [list(range(32))]
    assert _as_lists(length_groups(np.full(9, 7), call_tokens=0)) == [list(range(9))]


def test_free_calls_group_by_exact_length_and_cover_every_text() -> None:
    lengths = np.array([3, 9, 3, 5, 9, 1])
    groups = length_groups(lengths, call_tokens=0)
    assert [sorted(set(lengths[g].tolist())) for g in groups] == [[1], [3], [5], [9]]
    assert sorted(np.concatenate(groups).tolist()) == list(range(6))


def test_the_split_is_the_cheapest() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 20, size=12)

    def cost(groups: list[np.ndarray]) -> float:
        return sum(5 + len(g) * lengths[g].max() for g in groups)

    best = cost(length_groups(lengths, call_tokens=5))
    order = np.argsort(lengths, kind="stable")
    for cut in range(1, 12):  # every split in two, and the whole batch, cost at least as much
        assert best <= cost([order[:cut], order[cut:]])
    assert best <= cost([order])


def test_split_calls_give_the_embeddings_of_one_call(tiny_engine: OnnxEngine, monkeypatch) -> None:
    engine = tiny_engine
    texts = ["red", "a small red circle left of a big blue square", "blue square", "circle"] * 3
    assert engine.text_call_tokens == CPU_TEXT_CALL_TOKENS
    monkeypatch.setattr(engine, "text_call_tokens", float("inf"))
    whole = engine.encode_texts(texts)
    monkeypatch.setattr(engine, "text_call_tokens", 0.0)
    split = engine.encode_texts(texts)
    one_by_one = np.concatenate([engine.encode_texts([t]) for t in texts])
    np.testing.assert_allclose(split, whole, atol=1e-5)
    np.testing.assert_allclose(split, one_by_one, atol=1e-5)
