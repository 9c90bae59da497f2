"""Cross-modal hash heads trained on top of a trained dual encoder: binary codes for search.

Follows DCMH (Jiang & Li 2017, "Deep Cross-Modal Hashing", CVPR): each modality ends in
`bits` real outputs whose signs are its code, trained so that matching image and text codes
agree, with a quantisation term and a bit-balance term. Here the networks are the dual
encoder's towers, frozen, plus one linear layer each on their normalised embeddings, and
DCMH's pairwise likelihood is replaced by the ITC loss (CLIP's symmetric cross-entropy)
over the relaxed codes, as later contrastive cross-modal hashing methods do:

    h = tanh(W e + b)                              (relaxed code in (-1, 1)^bits)
    itc      = CE(scale * h_img @ h_txt.T / bits)  (both directions, diagonal targets)
    quantise = mean((|h| - 1)^2)                   (DCMH's ||B - H||^2 with B = sign(H))
    balance  = mean_j (mean_batch h_j)^2           (DCMH's ||H 1||^2: each bit on half the time)

The head starts at a random rotation of the embedding (its signs are LSH, the baseline a
learnt code must beat), so training starts from sign-of-float codes and improves on them.
Training runs on embeddings only: for the `lit` family they come from the cached frozen
features (`training.features`), so a head trains in seconds; the towers stay frozen.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from encoders.codes import check_bits

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HashConfig:
    bits: int = 128
    steps: int = 600
    batch_size: int = 512
    lr: float = 3e-3
    quantise_weight: float = 0.1
    balance_weight: float = 0.1
    init_scale: float = 3.0  # of the random rotation: tanh starts well away from zero
    seed: int = 0


class HashHeads(nn.Module):
    """One linear head per tower, from the shared embedding space (dim) to `bits` outputs."""

    def __init__(self, dim: int, bits: int, init_scale: float, seed: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        rotation = torch.linalg.qr(torch.randn(max(dim, bits), max(dim, bits), generator=gen))[0]
        start = rotation[:bits, :dim] * init_scale * math.sqrt(max(dim, bits) / bits)
        self.image = nn.Linear(dim, bits)
        self.text = nn.Linear(dim, bits)
        with torch.no_grad():
            for head in (self.image, self.text):  # one rotation: the codes start comparable
                head.weight.copy_(start)
                head.bias.zero_()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(20.0)))

    def export(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{role: (weight (bits, dim), bias (bits,))}, as `encoders.code_export` takes them."""
        return {role: (head.weight.detach().numpy().copy(), head.bias.detach().numpy().copy())
                for role, head in (("image_encoder", self.image), ("text_encoder", self.text))}


def hash_loss(image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor,
              cfg: HashConfig) -> dict[str, torch.Tensor]:
    """Relaxed codes (b, bits) of b matching pairs -> the loss and its parts."""
    logits = scale * image @ text.t() / image.shape[1]
    targets = torch.arange(len(image))
    itc = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)) / 2
    both = torch.cat([image, text])
    quantise = ((both.abs() - 1) ** 2).mean()
    balance = (image.mean(dim=0) ** 2).mean() + (text.mean(dim=0) ** 2).mean()
    total = itc + cfg.quantise_weight * quantise + cfg.balance_weight * balance
    return {"loss": total, "itc": itc, "quantise": quantise, "balance": balance}


def _batch(groups: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Up to `size` random pair rows, no two of one group (another style of the same emoji
    is no negative)."""
    order = rng.permutation(len(groups))
    _, first = np.unique(groups[order], return_index=True)
    return order[np.sort(first)][:size]


def train_hash_heads(image: np.ndarray, text: np.ndarray, groups: np.ndarray,
                     cfg: HashConfig) -> tuple[HashHeads, dict]:
    """Heads trained on matching pairs: row i of `image` (n, d) with row i of `text` (n, d),
    `groups` (n,) the concept of each pair. Returns the heads and what training measured."""
    check_bits(cfg.bits)
    if image.shape != text.shape or len(groups) != len(image):
        raise ValueError(f"pairs must align: image {image.shape}, text {text.shape}, "
                         f"groups {len(groups)}")
    threads = torch.get_num_threads()
    # the head's matrices are tiny: more threads only add OpenMP hand-offs, which dominate a
    # step on a shared, loaded machine
    torch.set_num_threads(1)
    try:
        return _train(image, text, groups, cfg)
    finally:
        torch.set_num_threads(threads)


def _train(image: np.ndarray, text: np.ndarray, groups: np.ndarray,
           cfg: HashConfig) -> tuple[HashHeads, dict]:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    heads = HashHeads(image.shape[1], cfg.bits, cfg.init_scale, cfg.seed)
    opt = torch.optim.AdamW(heads.parameters(), lr=cfg.lr, weight_decay=0.0)
    img, txt = torch.from_numpy(np.asarray(image, np.float32)), torch.from_numpy(np.asarray(text, np.float32))
    parts: dict[str, torch.Tensor] = {}
    for step in range(cfg.steps):
        rows = torch.from_numpy(_batch(groups, cfg.batch_size, rng))
        lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))  # cosine decay
        for group in opt.param_groups:
            group["lr"] = lr
        parts = hash_loss(torch.tanh(heads.image(img[rows])), torch.tanh(heads.text(txt[rows])),
                          heads.logit_scale.clamp(max=math.log(100.0)).exp(), cfg)
        opt.zero_grad(set_to_none=True)
        parts["loss"].backward()
        opt.step()
        if step % 100 == 0 or step == cfg.steps - 1:
            log.info("hash head step %d: %s", step, {k: round(v.item(), 4) for k, v in parts.items()})
    info = {**asdict(cfg), "pairs": len(image), "groups": len(np.unique(groups)),
            "objective": "ITC on tanh-relaxed codes + quantisation + bit balance (DCMH-style)",
            "towers": "frozen", **{f"final_{k}": round(v.item(), 4) for k, v in parts.items()}}
    return heads.eval(), info


@torch.no_grad()
def code_outputs(heads: HashHeads, image: np.ndarray | None = None,
                 text: np.ndarray | None = None) -> np.ndarray:
    """The heads' real outputs for image or text embeddings (what the exported graphs give)."""
    head, x = (heads.image, image) if image is not None else (heads.text, text)
    return head(torch.from_numpy(np.asarray(x, np.float32))).numpy()
