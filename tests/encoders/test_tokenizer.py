"""Text -> (ids, mask): the same arrays whether a batch is encoded one by one or in parallel."""

import numpy as np
import pytest

from encoders import tokenizer as tokenizer_module
from encoders.errors import InputError
from encoders.tokenizer import train_word_tokenizer

CORPUS = ["a red apple", "a big red apple on a wooden table", "grinning face", "cat"]


@pytest.fixture
def tok():
    return train_word_tokenizer(CORPUS, max_length=6)


def test_texts_are_right_padded_to_the_longest_and_truncated(tok) -> None:
    ids, mask = tok.encode(["cat", "a red apple", "a big red apple on a wooden table"])
    assert ids.dtype == mask.dtype == np.int64
    assert ids.shape == mask.shape == (3, 6)  # the longest is truncated to max_length
    assert mask.tolist() == [[1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0], [1] * 6]
    assert (ids[mask == 0] == tok.pad_id).all() and (ids[mask == 1] != tok.pad_id).all()


@pytest.mark.parametrize("count", [1, 3, 40])
def test_one_by_one_and_parallel_encoding_agree(tok, monkeypatch, count: int) -> None:
    texts = [CORPUS[i % len(CORPUS)] for i in range(count)]
    one_by_one = tok.encode(texts)
    monkeypatch.setattr(tokenizer_module, "PARALLEL_FROM", 1)
    parallel = tok.encode(texts)
    for a, b in zip(one_by_one, parallel, strict=True):
        np.testing.assert_array_equal(a, b)


def test_no_texts_is_an_input_error(tok) -> None:
    with pytest.raises(InputError, match="no texts"):
        tok.encode([])
