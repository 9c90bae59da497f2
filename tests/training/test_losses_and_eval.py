import numpy as np
import torch
import torch.nn.functional as F

from training.evaluate import evaluate, recall_at_k
from training.losses import itc_loss


def test_itc_loss_is_low_for_aligned_and_high_for_shuffled_pairs() -> None:
    torch.manual_seed(0)
    embeds = F.normalize(torch.randn(16, 32), dim=-1)
    scale = torch.tensor(50.0)
    aligned = itc_loss(embeds, embeds, scale)
    shuffled = itc_loss(embeds, embeds[torch.randperm(16)], scale)
    assert aligned < 0.05 and shuffled > 1.0
    assert torch.isclose(itc_loss(embeds, embeds.flip(0), scale), itc_loss(embeds.flip(0), embeds, scale))


def test_recall_counts_any_relevant_item_in_top_k() -> None:
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.1]])
    assert recall_at_k(scores, [{2}, {1}], ks=(1, 2)) == {"R@1": 50.0, "R@2": 100.0}


def test_image_to_text_hit_if_any_caption_ranks() -> None:
    images = np.eye(2, dtype=np.float32)
    texts = np.array([[1, 0], [0.6, 0.8], [0, 1]], dtype=np.float32)  # captions 0,1 -> image 0
    result = evaluate(images, texts, [0, 0, 1])
    assert result["image_to_text"]["R@1"] == 100.0
    assert result["text_to_image"]["R@1"] == 66.67  # caption 1 prefers image 1 (0.8 > 0.6)
