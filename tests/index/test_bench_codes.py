"""`xmodal bench index --codes` on tiny inputs: its speed rows are checked against exact
search, and its learnt-vs-sign measure finds the codes a trained head learnt."""

from __future__ import annotations

import numpy as np

from bench.codes import goals, quality_rows, speed_rows
from training.hashing import HashConfig, train_hash_heads


def test_speed_rows_put_codes_beside_float_search() -> None:
    rows = speed_rows(3000, 64, [64], 0.9, 100, seed=0, seconds=0.05, rounds=1)
    names = [r.index for r in rows]
    assert names[:2] == ["float Flat", "auto float: Flat"]
    assert names[2:] == ["codes alone: BFlat", "codes + rescore: BFlat"] * 2
    flat, alone, rescored = rows[0], rows[2], rows[3]
    assert flat.recall_at_10 == 1.0 and flat.ram_bytes_per_image >= 64 * 4
    assert alone.ram_bytes_per_image == 8.0  # 64 bits a row, nothing else
    assert rescored.recall_at_10 >= 0.9 > alone.recall_at_10  # rescoring buys the recall
    assert all(r.qps_batch1 > 0 and r.qps_batch64 > 0 for r in rows)
    lines = goals(rows, [], 64)
    assert any("codes + rescoring" in line for line in lines)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_quality_rows_measure_learnt_against_sign_codes() -> None:
    rng = np.random.default_rng(1)
    shared = rng.standard_normal((400, 8))
    images = _unit(np.hstack([shared, 0.6 * rng.standard_normal((400, 56))]))
    texts = _unit(np.hstack([shared, 0.6 * rng.standard_normal((400, 56))]))
    heads = {64: train_hash_heads(images[:300], texts[:300], np.arange(300),
                                  HashConfig(bits=64, steps=300, batch_size=128))[0]}
    owner = np.arange(100)
    owner[-1] = -1  # a distractor caption: in no query
    (row,) = quality_rows("synthetic", images[300:], texts[300:], owner, heads)
    assert row.queries == 99 and row.gallery == 100
    exact = texts[300:399] @ images[300:].T
    own_rank = (exact > exact[np.arange(99), np.arange(99)][:, None]).sum(axis=1)
    assert row.float_r10 == round(float((own_rank < 10).mean()), 4)
    assert row.learnt_r10 >= row.sign_r10 + 0.1  # on pairs it never trained on
    assert row.learnt_rescored_r10 == row.float_r10  # rescoring the whole gallery is exact
