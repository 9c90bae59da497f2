"""Losses, momentum teacher, FLIP forward and the rerank ordering rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from encoders.config import load_config
from encoders.models import build_model
from training.forward import student_outputs
from training.losses import itc_loss, itm_loss, sample_hard_negatives
from training.momentum import MomentumTeacher
from training.rerank import evaluate_reranked


def test_hard_negatives_never_draw_a_positive_and_prefer_similar_items() -> None:
    sim = torch.tensor([[9.0, 8.0, 0.0, 0.0], [8.0, 9.0, 0.0, 0.0], [0.0, 0.0, 9.0, 8.0], [0.0, 0.0, 8.0, 9.0]])
    same = torch.zeros(4, 4, dtype=torch.bool)
    same[0, 1] = True  # caption 1 also describes image 0
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_hard_negatives(sim, same, gen) for _ in range(200)])
    assert not (draws == torch.arange(4)).any()
    assert not (draws[:, 0] == 1).any()
    assert (draws[:, 2] == 3).float().mean() > 0.9  # the most similar non-positive dominates


def test_itc_with_teacher_and_alpha_zero_is_hard_targets_over_batch_and_queue() -> None:
    torch.manual_seed(0)
    img, txt = F.normalize(torch.randn(4, 8), dim=1), F.normalize(torch.randn(4, 8), dim=1)
    scale = torch.tensor(10.0)
    teacher = {"image_feats": img.clone(), "text_feats": txt.clone()}  # an empty queue
    assert torch.isclose(itc_loss(img, txt, scale, teacher=teacher, alpha=0.0), itc_loss(img, txt, scale))
    queue = F.normalize(torch.randn(6, 8), dim=1)
    wider = {"image_feats": torch.cat([img, queue]), "text_feats": torch.cat([txt, queue])}
    assert itc_loss(img, txt, scale, teacher=wider, alpha=0.0) > itc_loss(img, txt, scale)  # more negatives


def test_momentum_teacher_follows_slowly_and_queue_wraps() -> None:
    model = torch.nn.Linear(2, 2)
    teacher = MomentumTeacher(model, embed_dim=3, queue_size=4, momentum=0.9)
    before = teacher.model.weight.clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    teacher.update(model)
    assert torch.allclose(teacher.model.weight, before + 0.1)
    teacher.enqueue(torch.ones(3, 3), torch.ones(3, 3))
    teacher.enqueue(2 * torch.ones(3, 3), 2 * torch.ones(3, 3))
    assert teacher.image_queue[:, 0].tolist() == [2.0, 2.0, 1.0, 2.0] and int(teacher.ptr) == 2


def test_itm_loss_trains_the_head_and_flip_keeps_a_fraction_of_patches() -> None:
    torch.manual_seed(0)
    model = build_model(load_config("tiny-albef"))
    pixels, ids = torch.randn(4, 3, 64, 64), torch.randint(3, 50, (4, 6))
    mask = torch.ones_like(ids)
    full = student_outputs(model, pixels, ids, mask)
    assert full["image_tokens"].shape == (4, 1 + 16, 48)
    half = student_outputs(model, pixels, ids, mask, keep=0.5, generator=torch.Generator().manual_seed(1))
    assert half["image_tokens"].shape == (4, 1 + 8, 48)
    loss = itm_loss(model.itm_logits, ids=ids, mask=mask, **full)
    loss.backward()
    assert model.itm_head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="keep ratio"):
        student_outputs(model, pixels, ids, mask, keep=0.0)


def test_rerank_only_reorders_the_top_k() -> None:
    images = np.eye(4, dtype=np.float32)
    texts = np.array([[0.9, 0.8, 0.7, 0.1]], dtype=np.float32)  # ITC order 0, 1, 2, 3; truth 2
    itm = {0: 0.1, 1: 0.2, 2: 0.9, 3: 1.0}  # the ITM head likes 3 best, but 3 is outside top-3

    def scorer(image_rows: np.ndarray, text_rows: np.ndarray) -> np.ndarray:
        return np.array([itm[int(i)] for i in image_rows])

    result = evaluate_reranked(images, texts, [2], scorer, k=3, ks=(1,), curve_ks=(1, 4))
    assert result["dual"]["text_to_image"]["R@1"] == 0.0
    assert result["itm"]["text_to_image"]["R@1"] == 100.0
    assert result["curve"]["itm"][4]["text_to_image"]["R@1"] == 0.0  # at depth 4, 3 wins


def test_the_vision_tower_over_every_patch_in_order_is_its_full_forward() -> None:
    torch.manual_seed(0)
    tower = build_model(load_config("tiny-albef")).visual.eval()
    pixels = torch.randn(2, 3, 64, 64)
    embed, tokens = tower(pixels)
    every = torch.arange(16).expand(2, -1)
    again, again_tokens = tower(pixels, every)
    torch.testing.assert_close(again, embed)
    torch.testing.assert_close(again_tokens, tokens)
    reversed_patches, _ = tower(pixels, every.flip(1))  # order-free but for positions: same [CLS]
    torch.testing.assert_close(reversed_patches, embed, rtol=1e-4, atol=1e-5)
    dropped, _ = tower(pixels, every[:, :8])
    assert not torch.allclose(dropped, embed, atol=1e-3)  # dropping patches changes the embedding
