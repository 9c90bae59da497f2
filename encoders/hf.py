"""Import Hugging Face retrieval checkpoints (CLIP, ALIGN, BLIP-ITM) as `Exportable`s.

`load_hf(folder)` reads a local `save_pretrained` folder (config, weights, tokenizer.json,
preprocessor_config.json) and wraps the model in role modules (see `encoders.roles`) that
compute what transformers' own `get_image_features` / `get_text_features` / ITM head compute,
so the exported graphs can be checked against the library itself.

Masks: transformers builds attention masks in `masking_utils`, which may drop an all-ones
mask (a data-dependent branch that tracing would freeze into the graph). Every role therefore
hands the HF module a ready 4-D additive float mask, which `masking_utils` passes through
untouched, and models are loaded with eager attention so the mask is a plain `Add`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from encoders.errors import BundleError
from encoders.preprocess import ImagePreprocess
from encoders.roles import IMAGE, RERANKER, TEXT, Exportable
from encoders.tokenizer import TextTokenizer

log = logging.getLogger(__name__)

SUPPORTED = {"CLIPModel": "clip", "AlignModel": "align", "BlipForImageTextRetrieval": "blip"}
# model_type -> class, for configs saved without `architectures`
_BY_MODEL_TYPE = {"clip": "CLIPModel", "align": "AlignModel", "blip": "BlipForImageTextRetrieval"}

_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
# transformers 5's class defaults, used only for keys a preprocessor_config.json leaves out
_PROCESSOR_DEFAULTS: dict[str, dict[str, Any]] = {
    "CLIPImageProcessor": dict(
        size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}, do_center_crop=True,
        image_mean=_OPENAI_MEAN, image_std=_OPENAI_STD),
    "BlipImageProcessor": dict(
        size={"height": 384, "width": 384}, do_center_crop=False,
        image_mean=_OPENAI_MEAN, image_std=_OPENAI_STD),
    "EfficientNetImageProcessor": dict(
        size={"height": 346, "width": 346}, crop_size={"height": 289, "width": 289},
        do_center_crop=False, image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5),
        rescale_offset=False, include_top=True),
}
_COMMON_DEFAULTS = dict(do_resize=True, do_rescale=True, rescale_factor=1 / 255,
                        do_normalize=True, resample=3)
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}  # PIL.Image.Resampling values


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise BundleError(f"Hugging Face folder {path.parent} is missing {path.name}")
    return json.loads(path.read_text())


def padding_bias(mask: torch.Tensor) -> torch.Tensor:
    """(b, t) 1/0 mask -> additive (b, 1, 1, t), the value transformers' eager masks use."""
    return (1.0 - mask[:, None, None, :].to(torch.float32)) * torch.finfo(torch.float32).min


def causal_padding_bias(mask: torch.Tensor) -> torch.Tensor:
    """(b, t) mask -> additive (b, 1, t, t): query i never sees key j > i, nor padding."""
    t = mask.shape[1]
    pos = torch.arange(t, device=mask.device)
    future = (pos[None, :] > pos[:, None]).to(torch.float32)  # (t, t)
    padded = 1.0 - mask[:, None, None, :].to(torch.float32)  # (b, 1, 1, t)
    # max, not sum: two finfo.min added would overflow to -inf
    return torch.maximum(future, padded) * torch.finfo(torch.float32).min


class ClipImage(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.vision, self.proj = model.vision_model, model.visual_projection

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.vision(pixel_values=pixel_values)
        return F.normalize(self.proj(out.pooler_output), dim=-1), out.last_hidden_state


class ClipText(nn.Module):
    """Pools where CLIPTextModel pools (the EOS token, by its own rule), then projects."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.text, self.proj = model.text_model, model.text_projection

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.text(input_ids=input_ids, attention_mask=causal_padding_bias(attention_mask))
        return F.normalize(self.proj(out.pooler_output), dim=-1)


class AlignImage(nn.Module):
    """EfficientNet feature map -> global pool (ALIGN has no image projection)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.vision = model.vision_model
        self.pooling = model.config.vision_config.pooling_type

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.vision(pixel_values=pixel_values).last_hidden_state  # (b, c, h, w)
        # HF pools with AvgPool2d(kernel=hidden_dim, ceil_mode=True), a kernel larger than the
        # map, i.e. a global pool; written as a mean so ONNX gets no oversized-window pooling.
        pooled = features.mean(dim=(2, 3)) if self.pooling == "mean" else features.amax(dim=(2, 3))
        return F.normalize(pooled, dim=-1), features.flatten(2).transpose(1, 2)  # (b, h*w, c)


class AlignText(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.text, self.proj = model.text_model, model.text_projection

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.text(input_ids=input_ids, attention_mask=padding_bias(attention_mask))
        return F.normalize(self.proj(hidden.last_hidden_state[:, 0]), dim=-1)  # [CLS]


class BlipImage(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.vision, self.proj = model.vision_model, model.vision_proj

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.vision(pixel_values=pixel_values).last_hidden_state  # (b, 1 + patches, w)
        return F.normalize(self.proj(tokens[:, 0]), dim=-1), tokens


class BlipText(nn.Module):
    """BLIP's unimodal text encoder (no cross-attention): [CLS] -> text_proj, as its ITC path."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.text, self.proj = model.text_encoder, model.text_proj

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.text(input_ids=input_ids, attention_mask=padding_bias(attention_mask))
        return F.normalize(self.proj(hidden.last_hidden_state[:, 0]), dim=-1)


class BlipReranker(nn.Module):
    """BLIP's ITM path: text cross-attends to every image token, [CLS] -> itm_head -> P(match)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.text, self.itm_head = model.text_encoder, model.itm_head

    def forward(self, image_tokens: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> torch.Tensor:
        # HF passes an all-ones image mask, which adds nothing; None is the same and exports smaller
        hidden = self.text(input_ids=input_ids, attention_mask=padding_bias(attention_mask),
                           encoder_hidden_states=image_tokens).last_hidden_state
        return self.itm_head(hidden[:, 0]).softmax(dim=-1)[:, 1]  # (b,)


def model_class(config: dict[str, Any]) -> str:
    """The supported transformers class a config.json describes, or BundleError."""
    names = config.get("architectures") or [_BY_MODEL_TYPE.get(config.get("model_type", ""), "")]
    for name in names:
        if name in SUPPORTED:
            return name
    found = ", ".join(n for n in names if n) or f"model_type {config.get('model_type')!r}"
    raise BundleError(f"unsupported Hugging Face model {found}; supported: {', '.join(SUPPORTED)}")


def image_preprocess(config: dict[str, Any]) -> ImagePreprocess:
    """Map a CLIP / BLIP / EfficientNet preprocessor_config.json onto `ImagePreprocess`."""
    kind = config.get("image_processor_type", "").removesuffix("Fast").removesuffix("Pil")
    if kind not in _PROCESSOR_DEFAULTS:
        raise BundleError(f"unsupported image processor {kind!r}; "
                          f"supported: {', '.join(_PROCESSOR_DEFAULTS)}")
    cfg = {**_COMMON_DEFAULTS, **_PROCESSOR_DEFAULTS[kind], **config}
    if not cfg["do_resize"] or cfg["resample"] not in _RESAMPLE:
        raise BundleError(f"{kind}: only do_resize with resample {sorted(_RESAMPLE)} is supported")
    size = cfg["size"]
    if isinstance(size, int):  # old configs: an int means short side for CLIP, square otherwise
        square = {"height": size, "width": size}
        size = {"shortest_edge": size} if kind == "CLIPImageProcessor" else square
    crop = cfg.get("crop_size") or {}
    crop_side = crop.get("height") if cfg["do_center_crop"] else None
    if "shortest_edge" in size and len(size) == 1:
        resize, resize_to = "shortest", size["shortest_edge"]
        if crop_side is None:
            raise BundleError(f"{kind}: a shortest-edge resize without a centre crop is not square")
    elif size.get("height") is not None and size.get("height") == size.get("width"):
        resize, resize_to = "stretch", size["height"]
    else:
        raise BundleError(f"{kind}: unsupported size rule {size}")
    if crop_side is not None and crop.get("width") != crop_side:
        raise BundleError(f"{kind}: unsupported non-square crop {crop}")
    out = crop_side or resize_to
    if out > resize_to:
        raise BundleError(f"{kind}: crop {out} larger than the resize {resize_to} (HF pads)")
    # HF: v = ((255 p * rescale - offset) - m) / s [/ s again with include_top] for 0..1 pixels p;
    # an affine map of p, written back as (p - mean') / std'.
    scale = 255.0 * cfg["rescale_factor"] if cfg["do_rescale"] else 255.0
    is_effnet = kind == "EfficientNetImageProcessor"
    offset = 1.0 if is_effnet and cfg["rescale_offset"] else 0.0
    mean, std = [], []
    for m, s in zip(cfg["image_mean"], cfg["image_std"], strict=True):
        m_n, s_n = (m, s) if cfg["do_normalize"] else (0.0, 1.0)
        s_top = s if is_effnet and cfg["include_top"] else 1.0
        mean.append((offset + m_n) / scale)
        std.append(s_n * s_top / scale)
    return ImagePreprocess(
        size=out, resize=resize, interpolation=_RESAMPLE[cfg["resample"]],
        mean=tuple(mean), std=tuple(std),
        resize_to=resize_to if resize_to != out else None, long_side="floor")


def _token(value: Any) -> str | None:
    return value.get("content") if isinstance(value, dict) else value


def hf_tokenizer(folder: Path, max_length: int) -> TextTokenizer:
    """The folder's tokenizer.json with HF's pad token, truncating at `max_length` or the
    tokenizer's own limit, whichever is shorter. Its post-processor adds the special tokens
    (CLIP's BOS/EOS, BERT's [CLS]/[SEP]) exactly as the HF tokenizer does."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise BundleError(f"Hugging Face folder {folder} has no tokenizer.json (a fast tokenizer)")
    settings: dict[str, Any] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        if (folder / name).is_file():
            settings.update(json.loads((folder / name).read_text()))
    if settings.get("padding_side", "right") != "right":
        raise BundleError(f"{folder}: only right padding is supported")
    # No pad token: fall back to EOS, CLIP's convention (OpenAI's tokenizer pads with it), which
    # keeps CLIPTextModel's first-EOS pooling on the text's own EOS.
    pad = _token(settings.get("pad_token")) or _token(settings.get("eos_token"))
    if pad is None:
        raise BundleError(f"{folder}: the tokenizer names no pad token")
    # HF writes a huge sentinel when the tokenizer has no limit of its own
    tok_max = int(settings.get("model_max_length") or max_length)
    return TextTokenizer.from_file(path, min(tok_max, max_length), pad)


def load_hf(folder: str | Path) -> Exportable:
    """Read a local HF CLIPModel / AlignModel / BlipForImageTextRetrieval folder for export."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleError(f"no Hugging Face model folder at {folder}")
    name = model_class(_read_json(folder / "config.json"))
    preprocess = image_preprocess(_read_json(folder / "preprocessor_config.json"))
    import transformers  # heavy; only the import path needs it

    model = getattr(transformers, name).from_pretrained(
        folder, attn_implementation="eager", local_files_only=True).eval()
    cfg = model.config
    family = SUPPORTED[name]
    if family == "clip":
        roles = {IMAGE: ClipImage(model), TEXT: ClipText(model)}
        embed_dim = cfg.projection_dim
    elif family == "align":
        roles = {IMAGE: AlignImage(model), TEXT: AlignText(model)}
        embed_dim = cfg.projection_dim
        from transformers.models.align.modeling_align import round_filters

        image_dim = round_filters(cfg.vision_config, cfg.vision_config.out_channels[-1])
        if image_dim != embed_dim:
            raise BundleError(
                f"ALIGN image features ({image_dim}) and projection ({embed_dim}) differ")
    else:
        roles = {IMAGE: BlipImage(model), TEXT: BlipText(model), RERANKER: BlipReranker(model)}
        embed_dim = cfg.image_text_hidden_size
    tokenizer = hf_tokenizer(folder, cfg.text_config.max_position_embeddings)
    # ViT position embeddings fix the input side; EfficientNet takes any
    if family != "align" and preprocess.size != cfg.vision_config.image_size:
        raise BundleError(f"image processor gives {preprocess.size} px, the model takes "
                          f"{cfg.vision_config.image_size}")
    log.info("loaded %s from %s", name, folder)
    return Exportable(
        family=family, embed_dim=embed_dim, roles={k: v.eval() for k, v in roles.items()},
        tokenizer=tokenizer, preprocess=preprocess, vocab_size=cfg.text_config.vocab_size,
        info={"source": "huggingface", "class": name,
              "name_or_path": getattr(cfg, "_name_or_path", "") or folder.name})
