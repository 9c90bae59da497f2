"""Training of the `lit` family on cached frozen features: heads (ITC), then the reranker
(ITM with hard negatives), then the temperature of its match logit.

1. Features: every source's images through the frozen backbone, every caption through
   MiniLM, once (`training.features`, cached and resumable).
2. Heads: the image head, the text head and the ConSE prior's weight, with the CLIP loss
   over batches in which no two images share a concept (an emoji and its other styles share
   names, so they would be false negatives).
3. Reranker: the token projection, the fusion layers and the ITM head, on positives, a
   negative text and a negative image per pair drawn from the trained heads' similarity
   (ALBEF), and the compositional scenes' attribute and relation swaps.
4. Calibration: the ITM temperature fitted on compositional scenes of another seed, its ECE
   measured on a third seed (`training.calibration`).

Writes the checkpoint (model, tokenizer, preprocessing, info), the provenance record
(`training.leaks`), `log.jsonl`, `curves.png` and `reliability.png`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from encoders.checkpoint import Checkpoint, save_checkpoint
from encoders.config import LiTConfig, load_config
from encoders.lit import LiTModel
from encoders.models import build_model
from encoders.packaged import imagenet_class_names, text_model_folder
from encoders.preprocess import ImagePreprocess
from encoders.pretrained_text import tokenizer_for
from training import calibration
from training.curves import plot_curves
from training.features import TextFeatures, cache_key, image_features, text_features
from training.leaks import PROVENANCE, Provenance, write_provenance
from training.lit_data import Item, keep, provenance_of, source_items
from training.losses import itc_loss, sample_hard_negatives
from training.options import TrainConfig
from training.schedule import warmup_cosine

log = logging.getLogger(__name__)

CALIBRATION_SCENES = 600
CALIBRATION_SEEDS = (1000, 2000)  # fit on the first, measure on the second; never trained on


@dataclass
class Features:
    """The kept training items with their cached features, row-aligned."""

    items: list[Item]
    captions: list[list[str]]  # kept captions per item
    pooled: torch.Tensor  # (n, 1280)
    maps: np.ndarray  # (n, c, h, w) fp16
    groups: np.ndarray  # (n,) concept id: rows of one group never meet as negatives
    texts: TextFeatures


def _spec(cfg: LiTConfig) -> ImagePreprocess:
    # the ported TensorFlow weights take pixels in [-1, 1]; the whole image, no crop
    return ImagePreprocess(size=cfg.image_size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def _cache_dir(cfg: TrainConfig) -> Path:
    return Path(cfg.cache) if cfg.cache else Path(cfg.out) / "features"


def load_features(model: LiTModel, tokenizer, cfg: TrainConfig, sources: list[str], holdout: str,
                  seed: int | None = None) -> tuple[Features, Provenance]:
    """Items of `sources` (less `holdout`), their image features and their texts' features."""
    seed = cfg.seed if seed is None else seed
    spec, cache = _spec(model.cfg), _cache_dir(cfg)
    items, captions, pooled, maps, names = [], [], [], [], []
    for source in sources:
        part = source_items(source, cfg.train_size, seed, cfg.render_size)
        feats = image_features(model, part, cache / cache_key(model, source, cfg.train_size, seed,
                                                            cfg.render_size), spec, cfg.progress)
        kept = [keep(item, holdout) for item in part]
        rows = [i for i, k in enumerate(kept) if k]
        items += [part[i] for i in rows]
        captions += [kept[i] for i in rows]
        pooled.append(feats["pooled"][rows])
        maps.append(feats["map"][rows])
        names.append(f"{source}: {len(rows)} of {len(part)} images")
    concept_ids: dict[str, int] = {}
    groups = np.asarray([concept_ids.setdefault(item.concept or f"scene-{i}", len(concept_ids))
                         for i, item in enumerate(items)])
    texts = sorted({t for c, item in zip(captions, items, strict=True) for t in c + item.negatives})
    text_feats = text_features(model, tokenizer, texts, cache, cfg.progress)
    features = Features(items, captions, torch.from_numpy(np.concatenate(pooled)), np.concatenate(maps),
                        groups, text_feats)
    return features, provenance_of(items, captions, names)


def _batch_rows(groups: np.ndarray, size: int, gen: torch.Generator) -> np.ndarray:
    """Up to `size` random rows, no two of one group."""
    order = torch.randperm(len(groups), generator=gen).numpy()
    _, first = np.unique(groups[order], return_index=True)
    picked = order[np.sort(first)]
    return picked[:size]


def _pick_captions(feats: Features, rows: np.ndarray, gen: torch.Generator) -> list[str]:
    picks = torch.randint(1 << 30, (len(rows),), generator=gen).tolist()
    return [feats.captions[r][p % len(feats.captions[r])] for r, p in zip(rows, picks, strict=True)]


def _optimizer(params: list[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.AdamW:
    decay = [p for p in params if p.ndim > 1]
    other = [p for p in params if p.ndim <= 1]  # biases, norms, scales: no weight decay
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": other, "weight_decay": 0.0}], lr=cfg.lr)


def train_heads(model: LiTModel, feats: Features, cfg: TrainConfig, gen: torch.Generator,
                log_file) -> float:
    """The ITC stage; returns the last loss."""
    params = [p for p in (*model.image_head.parameters(), *model.text.proj.parameters(),
                          model.conse_scale, model.logit_scale) if p.requires_grad]
    opt = _optimizer(params, cfg)
    model.train()
    loss = torch.zeros(())
    for step in tqdm(range(cfg.steps), desc="heads", disable=not cfg.progress):
        rows = _batch_rows(feats.groups, cfg.batch_size, gen)
        text_rows = feats.texts.rows(_pick_captions(feats, rows, gen))
        image = model.embed_pooled(feats.pooled[rows])
        text = model.embed_text_pooled(torch.from_numpy(feats.texts.pooled[text_rows]))
        loss = itc_loss(image, text, model.logit_scale.clamp(max=math.log(100.0)).exp())
        for group in opt.param_groups:
            group["lr"] = warmup_cosine(step, cfg.steps, cfg.lr, cfg.warmup_steps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        log_file.write(json.dumps({"step": step, "stage": "heads", "itc": round(loss.item(), 5)}) + "\n")
    model.eval()
    return loss.item()


@torch.no_grad()
def _itc_embeddings(model: LiTModel, feats: Features) -> tuple[torch.Tensor, torch.Tensor]:
    """The trained heads' embeddings of every image and every text, which hard negatives are
    drawn by: computed once, in eval mode, since the reranker stage leaves the heads as they are."""
    model.eval()
    return (model.embed_pooled(feats.pooled),
            model.embed_text_pooled(torch.from_numpy(feats.texts.pooled)))


def _itm_pairs(model: LiTModel, feats: Features, embeds: tuple[torch.Tensor, torch.Tensor],
               rows: np.ndarray, gen: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(image tokens, text states, mask, labels) of the step's positive and negative pairs."""
    captions = _pick_captions(feats, rows, gen)
    pos = feats.texts.rows(captions)
    with torch.no_grad():
        image, text = embeds[0][rows], embeds[1][pos]
        sim = model.logit_scale.exp() * image @ text.t()
        same = torch.from_numpy(np.asarray(captions)[:, None] == np.asarray(captions)[None, :])
        neg_text = sample_hard_negatives(sim, same, gen).numpy()
        neg_image = sample_hard_negatives(sim.t(), same.t(), gen).numpy()
    b = len(rows)
    image_rows = [np.arange(b), np.arange(b), neg_image]
    text_rows = [pos, pos[neg_text], pos]
    swaps = [(i, feats.items[r].negatives) for i, r in enumerate(rows) if feats.items[r].negatives]
    if swaps:
        picks = torch.randint(1 << 30, (len(swaps),), generator=gen).tolist()
        image_rows.append(np.asarray([i for i, _ in swaps]))
        text_rows.append(feats.texts.rows([n[p % len(n)] for (_, n), p in zip(swaps, picks, strict=True)]))
    maps = torch.from_numpy(feats.maps[rows].astype(np.float32))
    tokens = model.image_tokens_from_map(maps)[torch.from_numpy(np.concatenate(image_rows))]
    hidden, mask = feats.texts.padded_hidden(np.concatenate(text_rows))
    labels = torch.zeros(len(mask), dtype=torch.long)
    labels[:b] = 1
    return tokens, hidden, mask, labels


def train_reranker(model: LiTModel, feats: Features, cfg: TrainConfig, gen: torch.Generator,
                   log_file) -> float:
    """The ITM stage; returns the last loss."""
    params = [*model.token_proj.parameters(), model.token_pos, *model.token_norm.parameters(),
              *model.fusion.parameters(), *model.itm_head.parameters()]
    opt = _optimizer(params, cfg)
    embeds = _itc_embeddings(model, feats)
    model.train()
    loss = torch.zeros(())
    for step in tqdm(range(cfg.rerank_steps), desc="reranker", disable=not cfg.progress):
        rows = _batch_rows(feats.groups, cfg.rerank_batch, gen)
        tokens, hidden, mask, labels = _itm_pairs(model, feats, embeds, rows, gen)
        logits = model.itm_logits_from_hidden(tokens, hidden, mask)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        for group in opt.param_groups:
            group["lr"] = warmup_cosine(step, cfg.rerank_steps, cfg.rerank_lr, cfg.warmup_steps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        log_file.write(json.dumps({"step": cfg.steps + step, "stage": "reranker",
                                   "itm": round(loss.item(), 5)}) + "\n")
    model.eval()
    return loss.item()


@torch.no_grad()
def _margins(model: LiTModel, feats: Features, gen: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Match-logit margins and labels of positive and negative pairs drawn as in training."""
    margins, labels = [], []
    embeds = _itc_embeddings(model, feats)
    for start in range(0, len(feats.items), 64):
        rows = np.arange(start, min(start + 64, len(feats.items)))
        if len(rows) < 2:
            break
        tokens, hidden, mask, y = _itm_pairs(model, feats, embeds, rows, gen)
        logits = model.itm_logits_from_hidden(tokens, hidden, mask)
        margins.append((logits[:, 1] - logits[:, 0]).numpy())
        labels.append(y.numpy())
    return np.concatenate(margins), np.concatenate(labels)


def calibrate(model: LiTModel, tokenizer, cfg: TrainConfig, out: Path, gen: torch.Generator) -> dict:
    """Fit the ITM temperature on unseen compositional scenes; measure ECE on other ones."""
    scenes = TrainConfig(**{**cfg.__dict__, "train_size": min(CALIBRATION_SCENES, cfg.train_size)})
    fit, test = (load_features(model, tokenizer, scenes, ["compositional"], "", seed=cfg.seed + s)[0]
                 for s in CALIBRATION_SEEDS)
    fit_margin, fit_labels = _margins(model, fit, gen)
    temperature = calibration.fit_temperature(fit_margin, fit_labels)
    model.itm_temperature.fill_(temperature)
    test_margin, test_labels = _margins(model, test, gen)
    before = calibration.reliability(calibration.probabilities(test_margin), test_labels)
    after = calibration.reliability(calibration.probabilities(test_margin, temperature), test_labels)
    calibration.plot_reliability({"T = 1": before, f"T = {temperature:.2f}": after},
                                 out / "reliability.png", "ITM on unseen compositional scenes")
    return {"temperature": round(temperature, 4), "ece_before": before["ece"], "ece": after["ece"],
            "pairs": after["pairs"], "data": f"compositional scenes, seeds {cfg.seed + CALIBRATION_SEEDS[0]} "
            f"(fit) and {cfg.seed + CALIBRATION_SEEDS[1]} (measured), never trained on"}


@torch.no_grad()
def validate(model: LiTModel, tokenizer, cfg: TrainConfig) -> dict:
    """t2i Recall@1/10 on the validation concepts, per emoji style, queried by CLDR name: what
    settings are chosen by (the reported held-out sets never are)."""
    from training.evaluate import recall_at_k
    from training.lit_data import concept_split

    out = {}
    for source in ("emoji", "symbola"):
        part = source_items(source, cfg.train_size, cfg.seed, cfg.render_size)
        feats = image_features(model, part, _cache_dir(cfg) / cache_key(
            model, source, cfg.train_size, cfg.seed, cfg.render_size), _spec(model.cfg), False)
        rows = [i for i, item in enumerate(part) if concept_split(item.concept) == "val"]
        names = [part[i].captions[0] for i in rows]
        ids, mask = (torch.from_numpy(a) for a in tokenizer.encode(names))
        images = model.embed_pooled(torch.from_numpy(feats["pooled"][rows]))
        scores = (model.encode_text(ids, mask) @ images.t()).numpy()
        out[source] = recall_at_k(scores, [{i} for i in range(len(rows))], (1, 10)) | {"gallery": len(rows)}
    return out


def train_lit(cfg: TrainConfig) -> Checkpoint:
    """Train a `lit` model into `cfg.out`; returns its checkpoint."""
    started = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model_cfg = load_config(cfg.model)
    if not isinstance(model_cfg, LiTConfig):
        raise ValueError(f"{cfg.model} is not a lit model")  # noqa: TRY004 - a config error
    model: LiTModel = build_model(model_cfg)
    tokenizer = tokenizer_for(text_model_folder(model_cfg.text), model_cfg.context_length)
    model.set_class_vectors(imagenet_class_names(), tokenizer)
    sources = [s.strip() for s in cfg.data.split(",") if s.strip()]
    feats, provenance = load_features(model, tokenizer, cfg, sources, cfg.holdout)
    log.info("training on %d images, %d texts", len(feats.items), len(feats.texts.texts))
    info: dict = {"family": "lit", "data": provenance.sources, "holdout": cfg.holdout or None,
                  "objectives": ["itc", "itm (hard negatives)"], "steps": cfg.steps,
                  "rerank_steps": cfg.rerank_steps, "batch_size": cfg.batch_size}
    with open(out / "log.jsonl", "w") as log_file:
        info["final_itc"] = round(train_heads(model, feats, cfg, gen, log_file), 4)
        if cfg.rerank_steps:
            info["final_itm"] = round(train_reranker(model, feats, cfg, gen, log_file), 4)
    if cfg.holdout == "val":
        info["validation"] = validate(model, tokenizer, cfg)
        log.info("validation: %s", info["validation"])
    if cfg.rerank_steps:
        info["calibration"] = calibrate(model, tokenizer, cfg, out, gen)
    info["seconds"] = round(time.perf_counter() - started, 1)
    info["provenance"] = PROVENANCE
    ckpt = Checkpoint(model.eval(), tokenizer, _spec(model_cfg), info, folder=out)
    save_checkpoint(out, ckpt)
    write_provenance(out / PROVENANCE, provenance)
    plot_curves(out / "log.jsonl", out / "curves.png")
    return ckpt
