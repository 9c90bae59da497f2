"""Training objectives. Each loss takes the model's output dict: `itc_loss(**model(...))`.

- `itc_loss`: symmetric image-text contrastive (CLIP), with the model's learnable
  temperature; given a momentum teacher's features (ALBEF), the targets mix the one-hot
  positives with the teacher's softmax over batch + queue, weight `alpha`.
- `sigmoid_loss`: SigLIP's pairwise sigmoid loss (Zhai et al. 2023): every image-text pair
  of the batch is its own binary match / no-match question, scored by scale * cosine + bias.
- `itm_loss`: image-text matching with hard negatives drawn from the ITC similarity
  (ALBEF): for each image a text, for each text an image, sampled in proportion to their
  softmaxed similarity with the positives excluded; optional extra negative captions
  (e.g. the compositional generator's attribute/relation swaps) join as further pairs.
- `mask_tokens` and `mlm_loss`: masked language modelling conditioned on the image through
  the fusion layers (ALBEF, after BERT: Devlin et al. 2019): 15% of the words chosen, of those
  80% replaced by [MASK], 10% by a random word, 10% left as they are; cross-entropy at the
  chosen positions; with a momentum teacher, the targets mix the true word with the teacher's
  distribution over the vocabulary, weight `alpha` (ALBEF's momentum distillation for MLM).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

ItmLogits = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def itc_loss(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: torch.Tensor,
    teacher: dict[str, torch.Tensor] | None = None,
    alpha: float = 0.4,
    **_: object,
) -> torch.Tensor:
    """Embeddings are L2-normalised (batch, dim); pair i is the positive for row and column i.

    `teacher`, when given, holds `image_feats` and `text_feats` (batch + queue, dim): the
    teacher's features of this batch first, then its queue, which add negatives.
    """
    if teacher is None:
        logits = logit_scale * image_embeds @ text_embeds.t()  # (batch, batch)
        targets = torch.arange(logits.shape[0], device=logits.device)
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)) / 2
    image_feats, text_feats = teacher["image_feats"], teacher["text_feats"]
    b = image_embeds.shape[0]
    hard = torch.zeros(b, text_feats.shape[0], device=image_embeds.device)
    hard[torch.arange(b), torch.arange(b)] = 1.0  # the batch's own pairs come first
    with torch.no_grad():
        soft_i2t = (logit_scale * image_feats[:b] @ text_feats.t()).softmax(dim=1)
        soft_t2i = (logit_scale * text_feats[:b] @ image_feats.t()).softmax(dim=1)
    targets_i2t = alpha * soft_i2t + (1 - alpha) * hard
    targets_t2i = alpha * soft_t2i + (1 - alpha) * hard
    i2t = -(F.log_softmax(logit_scale * image_embeds @ text_feats.t(), dim=1) * targets_i2t).sum(1)
    t2i = -(F.log_softmax(logit_scale * text_embeds @ image_feats.t(), dim=1) * targets_t2i).sum(1)
    return (i2t.mean() + t2i.mean()) / 2


def sigmoid_loss(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: torch.Tensor,
    logit_bias: torch.Tensor,
    same: torch.Tensor | None = None,
    **_: object,
) -> torch.Tensor:
    """-sum log sigmoid(z_ij * logit_ij) / batch, z = +1 for matches (the diagonal and, given
    `same[i, j]`, pairs with identical captions), -1 otherwise; as SigLIP normalises it."""
    logits = logit_scale * image_embeds @ text_embeds.t() + logit_bias  # (images, texts)
    match = torch.eye(logits.shape[0], dtype=torch.bool, device=logits.device)
    if same is not None:
        match = match | same
    signs = match.float() * 2 - 1
    return -F.logsigmoid(signs * logits).sum() / logits.shape[0]


def sample_hard_negatives(sim: torch.Tensor, same: torch.Tensor | None,
                      generator: torch.Generator | None) -> torch.Tensor:
    """One column per row, drawn with probability softmax(sim) over the non-positive columns."""
    weights = sim.float().softmax(dim=1)
    exclude = torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
    if same is not None:
        exclude = exclude | same
    weights = weights.masked_fill(exclude, 0.0) + (~exclude).float() * 1e-8
    # drawn on the CPU: the loop's generator lives there, so a GPU run draws the same negatives
    return torch.multinomial(weights.cpu(), 1, generator=generator).squeeze(1).to(sim.device)


def itm_loss(
    itm_logits: ItmLogits,
    image_tokens: torch.Tensor,
    ids: torch.Tensor,
    mask: torch.Tensor,
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: torch.Tensor,
    same: torch.Tensor | None = None,
    extra_negatives: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
    **_: object,
) -> torch.Tensor:
    """Binary cross-entropy over b positives, b hard-negative texts and b hard-negative images.

    `same[i, j]` marks pairs that are also true matches (duplicate captions), never drawn as
    negatives. `extra_negatives` = (image rows, ids, mask): further known non-matching pairs.
    """
    b = ids.shape[0]
    if b < 2:
        raise ValueError("itm_loss needs a batch of at least 2 pairs to draw negatives from")
    with torch.no_grad():
        sim = logit_scale * image_embeds @ text_embeds.t()  # (images, texts)
        neg_text = sample_hard_negatives(sim, same, generator)  # a text for each image
        neg_image = sample_hard_negatives(sim.t(), None if same is None else same.t(), generator)
    tokens = [image_tokens, image_tokens, image_tokens[neg_image]]
    all_ids, all_mask = [ids, ids[neg_text], ids], [mask, mask[neg_text], mask]
    if extra_negatives is not None:
        rows, extra_ids, extra_mask = extra_negatives
        tokens.append(image_tokens[rows])
        all_ids.append(_pad_to(extra_ids, ids.shape[1]))
        all_mask.append(_pad_to(extra_mask, ids.shape[1]))
    logits = itm_logits(torch.cat(tokens), torch.cat(all_ids), torch.cat(all_mask))
    labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    labels[:b] = 1
    return F.cross_entropy(logits, labels)


def _pad_to(x: torch.Tensor, length: int) -> torch.Tensor:
    """Right-pad (or cut) token rows to `length` with zeros, so batches of texts concatenate."""
    if x.shape[1] >= length:
        return x[:, :length]
    return F.pad(x, (0, length - x.shape[1]))


MLM_PROBABILITY = 0.15  # BERT's share of words chosen for prediction
IGNORE = -100  # label of positions not chosen: cross_entropy skips them


def mask_tokens(ids: torch.Tensor, mask: torch.Tensor, mask_id: int, special_ids: list[int],
                vocab_size: int, generator: torch.Generator | None,
                probability: float = MLM_PROBABILITY) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's rule over the real words of `ids` (b, t): (masked ids, labels), labels the
    original id at chosen positions and IGNORE elsewhere. Every text with a word gets at least
    one chosen, so no row of a short-caption batch is left without a target."""
    words = mask.bool() & ~torch.isin(ids, torch.tensor(special_ids, device=ids.device))
    draw = torch.rand(ids.shape, generator=generator).to(ids.device)  # the loop's CPU generator
    chosen = words & (draw < probability)
    # a text none of whose words was drawn gets its lowest-drawn word
    first = torch.where(words, draw, torch.full_like(draw, 2.0)).argmin(dim=1)
    lonely = words.any(dim=1) & ~chosen.any(dim=1)
    chosen[lonely, first[lonely]] = True
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
    how = torch.rand(ids.shape, generator=generator).to(ids.device)
    random_words = torch.randint(len(special_ids), vocab_size, ids.shape, generator=generator).to(ids.device)
    masked = torch.where(chosen & (how < 0.8), torch.full_like(ids, mask_id), ids)
    masked = torch.where(chosen & (how >= 0.8) & (how < 0.9), random_words, masked)
    return masked, labels


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None = None,
             alpha: float = 0.4) -> torch.Tensor:
    """Cross-entropy of the vocabulary `logits` (b, t, vocab) at the chosen positions of
    `labels` (b, t); with `teacher_logits`, (1 - alpha) of it against the true words and alpha
    against the teacher's softmax."""
    chosen = labels != IGNORE
    logits = logits[chosen].float()  # (chosen, vocab)
    hard = F.cross_entropy(logits, labels[chosen])
    if teacher_logits is None:
        return hard
    soft = teacher_logits[chosen].float().softmax(dim=-1)
    distilled = -(F.log_softmax(logits, dim=-1) * soft).sum(dim=-1).mean()
    return (1 - alpha) * hard + alpha * distilled
