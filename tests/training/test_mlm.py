"""Image-conditioned masked language modelling: BERT's masking rule, the loss with and
without a momentum teacher, the fusion model's word predictions, and the objective in a real
tiny training (`--objectives itc,itm,mlm`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from encoders.checkpoint import WEIGHTS, load_checkpoint
from encoders.config import load_config
from encoders.models import build_model
from encoders.tokenizer import train_word_tokenizer
from training.losses import IGNORE, mask_tokens, mlm_loss
from training.train import TrainingInterrupted, main

TINY = ["--model", "tiny-albef", "--data", "compositional", "--train-size", "48",
        "--render-size", "32", "--batch-size", "8", "--steps", "4", "--warmup-steps", "2",
        "--save-every", "2", "--seed", "3"]
SPECIAL = [0, 1, 2, 3]  # [PAD], [UNK], [CLS], [MASK] of the word tokenizer
MASK_ID, VOCAB = 3, 50


def _batch(rows: int = 4000, width: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(len(SPECIAL), VOCAB, (rows, width), generator=gen)
    ids[:, 0] = 2  # [CLS]
    lengths = torch.randint(2, width + 1, (rows,), generator=gen)
    mask = (torch.arange(width)[None] < lengths[:, None]).long()
    return ids.masked_fill(mask == 0, 0), mask


def test_masking_follows_berts_rule() -> None:
    ids, mask = _batch()
    masked, labels = mask_tokens(ids, mask, MASK_ID, SPECIAL, VOCAB, torch.Generator().manual_seed(1))
    chosen = labels != IGNORE
    words = (mask == 1) & (ids > 3)
    assert not (chosen & ~words).any()  # never [CLS], [PAD] or padding
    assert (labels[chosen] == ids[chosen]).all() and (masked[~chosen] == ids[~chosen]).all()
    assert chosen[words.any(dim=1)].any(dim=1).all()  # every text with a word predicts one
    share = chosen.sum() / words.sum()
    assert 0.15 <= share <= 0.25  # 15%, plus the one word each short text is given
    became_mask = (masked[chosen] == MASK_ID).float().mean()
    kept = (masked[chosen] == ids[chosen]).float().mean()
    assert abs(became_mask - 0.8) < 0.02 and abs(kept - 0.1 - 1 / (VOCAB - 4) * 0.1) < 0.02
    replaced = chosen & (masked != MASK_ID) & (masked != ids)
    assert abs(replaced.sum() / chosen.sum() - 0.1 * (1 - 1 / (VOCAB - 4))) < 0.02
    assert (masked[replaced] >= len(SPECIAL)).all()  # a random word, never a special token


def test_the_loss_mixes_the_true_word_with_the_teacher() -> None:
    gen = torch.Generator().manual_seed(0)
    logits, teacher = torch.randn(2, 5, 7, generator=gen), torch.randn(2, 5, 7, generator=gen)
    labels = torch.full((2, 5), IGNORE)
    labels[0, 1], labels[1, 3] = 4, 6
    rows = labels != IGNORE
    hard = F.cross_entropy(logits[rows], labels[rows])
    soft = -(teacher[rows].softmax(-1) * logits[rows].log_softmax(-1)).sum(-1).mean()
    assert mlm_loss(logits, labels) == pytest.approx(hard.item())
    assert mlm_loss(logits, labels, teacher, alpha=0.4) == pytest.approx((0.6 * hard + 0.4 * soft).item())


def test_the_fusion_model_predicts_words_from_the_image_too() -> None:
    cfg = load_config("tiny-albef")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    tokenizer = train_word_tokenizer(["a red circle left of a blue square"], cfg.text.context_length,
                                     mask=True)
    ids, mask = (torch.from_numpy(a) for a in tokenizer.encode(["a [MASK] circle"]))
    image = model.image_tokens(torch.randn(2, 3, cfg.vision.image_size, cfg.vision.image_size))
    logits = model.mlm_logits(image, ids.repeat(2, 1), mask.repeat(2, 1))
    assert logits.shape == (2, ids.shape[1], cfg.text.vocab_size)
    assert not torch.allclose(logits[0], logits[1])  # the two images change the prediction
    assert set(model.state_dict()) == set(build_model(cfg).state_dict())  # no new parameters


def _log(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]


def test_mlm_trains_beside_itc_and_itm_on_the_same_batches(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path / "plain"), *TINY]) == 0
    assert not any("mlm" in r for r in _log(tmp_path / "plain"))
    # weight 0: the same vocabulary ([MASK] in it), so the same initial weights, and no MLM
    # gradient; its first step's batch and negatives are the weighted run's
    mlm = ["--objectives", "itc,itm,mlm"]
    assert main(["--out", str(tmp_path / "zero"), *TINY, *mlm, "--mlm-weight", "0"]) == 0
    assert main(["--out", str(tmp_path / "mlm"), *TINY, *mlm]) == 0
    zero, weighted = _log(tmp_path / "zero"), _log(tmp_path / "mlm")
    assert all("mlm" in r for r in weighted)
    assert (weighted[0]["itc"], weighted[0]["itm"], weighted[0]["mlm"]) == \
        (zero[0]["itc"], zero[0]["itm"], zero[0]["mlm"])
    assert weighted[1]["itc"] != zero[1]["itc"]  # the MLM gradient moved the model
    assert load_checkpoint(tmp_path / "mlm").info["objectives"] == ["itc", "itm", "mlm"]


def test_a_killed_mlm_run_with_distillation_resumes_exactly(tmp_path: Path) -> None:
    argv = [*TINY, "--objectives", "itc,itm,mlm", "--distill", "--queue-size", "16"]
    assert main(["--out", str(tmp_path / "clean"), *argv]) == 0
    with pytest.raises(TrainingInterrupted):
        main(["--out", str(tmp_path / "killed"), *argv, "--crash-at", "2"])
    assert main(["--out", str(tmp_path / "killed"), *argv]) == 0
    assert _log(tmp_path / "killed") == _log(tmp_path / "clean")
    clean, resumed = load_file(str(tmp_path / "clean" / WEIGHTS)), load_file(str(tmp_path / "killed" / WEIGHTS))
    assert all(clean[name].equal(resumed[name]) for name in clean)


def test_only_an_mlm_run_adds_mask_to_the_vocabulary() -> None:
    corpus = ["a red circle", "a blue square"]
    assert train_word_tokenizer(corpus, 8).mask_id is None
    assert train_word_tokenizer(corpus, 8, mask=True).mask_id == 3


@pytest.mark.parametrize(("argv", "problem"), [
    (["--objectives", "itc,mlm", "--model", "tiny-clip"], "needs a fusion model"),
    (["--objectives", "itc,mim"], "unknown objectives"),
    (["--objectives", "itm,mlm"], "must include itc"),
])
def test_objectives_a_model_cannot_train_are_refused(tmp_path: Path, argv, problem) -> None:
    with pytest.raises(ValueError, match=problem):
        main(["--out", str(tmp_path / "x"), *TINY, *argv])
