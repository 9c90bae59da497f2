"""Momentum distillation (ALBEF, after MoCo): an exponential-moving-average copy of the model
(the teacher) and a queue of its recent image and text features.

The teacher's features give soft ITC targets (see `training.losses.itc_loss`), and the queue
adds negatives beyond the batch. Its state (weights, queue, pointer) is part of a resumable
training state, so a resumed run continues with the same teacher.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


class MomentumTeacher(nn.Module):
    def __init__(self, model: nn.Module, embed_dim: int, queue_size: int, momentum: float = 0.995) -> None:
        super().__init__()
        if queue_size < 0:
            raise ValueError("queue_size must be >= 0")
        self.momentum = momentum
        self.model = copy.deepcopy(model)
        for p in self.model.parameters():
            p.requires_grad_(False)
        # random unit vectors until the first batches arrive, as MoCo initialises its queue
        gen = torch.Generator().manual_seed(0)
        self.register_buffer("image_queue", F.normalize(torch.randn(queue_size, embed_dim, generator=gen), dim=1))
        self.register_buffer("text_queue", F.normalize(torch.randn(queue_size, embed_dim, generator=gen), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, student: nn.Module) -> None:
        """teacher <- m * teacher + (1 - m) * student, parameter by parameter."""
        for t, s in zip(self.model.parameters(), student.parameters(), strict=True):
            t.mul_(self.momentum).add_(s.detach(), alpha=1 - self.momentum)

    @torch.no_grad()
    def features(self, pixels: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """The teacher's features for this batch followed by the queue: (batch + queue, dim)."""
        image = self.model.encode_image(pixels)
        text = self.model.encode_text(ids, mask)
        return {"image_feats": torch.cat([image, self.image_queue.clone()]),
                "text_feats": torch.cat([text, self.text_queue.clone()])}

    @torch.no_grad()
    def enqueue(self, image_feats: torch.Tensor, text_feats: torch.Tensor) -> None:
        """Write the newest batch features over the oldest queue rows (a ring buffer)."""
        size = self.image_queue.shape[0]
        if size == 0:
            return
        n = min(image_feats.shape[0], size)
        rows = (self.ptr + torch.arange(n)) % size
        self.image_queue[rows] = image_feats[:n]
        self.text_queue[rows] = text_feats[:n]
        self.ptr.copy_((self.ptr + n) % size)
