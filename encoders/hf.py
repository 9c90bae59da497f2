"""Import Hugging Face retrieval checkpoints (CLIP, ALIGN, BLIP-ITM, SigLIP).

`import_hf(folder)` reads a local `save_pretrained` folder (config, weights, tokenizer.json,
preprocessor_config.json) and wraps the model in the role modules of `encoders.hf_towers`,
which compute what transformers' own feature and ITM methods compute, so the exported graphs
can be checked against the library itself; `load_hf(folder)` is its `Exportable`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from torch import nn

from encoders import hf_towers as towers
from encoders.errors import BundleError
from encoders.preprocess import ImagePreprocess
from encoders.roles import IMAGE, RERANKER, TEXT, Exportable
from encoders.source import Imported, read_record
from encoders.tokenizer import TextTokenizer

log = logging.getLogger(__name__)

SUPPORTED = {"CLIPModel": "clip", "AlignModel": "align", "BlipForImageTextRetrieval": "blip",
             "SiglipModel": "siglip"}
# model_type -> class, for configs saved without `architectures`
_BY_MODEL_TYPE = {"clip": "CLIPModel", "align": "AlignModel", "blip": "BlipForImageTextRetrieval",
                  "siglip": "SiglipModel"}
# what a fine-tuned folder keeps from its source besides the weights and config.json
CARRY = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
         "preprocessor_config.json", "vocab.txt", "vocab.json", "merges.txt", "spiece.model",
         "added_tokens.json")

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
    "SiglipImageProcessor": dict(
        size={"height": 224, "width": 224}, do_center_crop=False,
        image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5)),
}
_COMMON_DEFAULTS = dict(do_resize=True, do_rescale=True, rescale_factor=1 / 255,
                        do_normalize=True, resample=3)
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}  # PIL.Image.Resampling values


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise BundleError(f"Hugging Face folder {path.parent} is missing {path.name}")
    return json.loads(path.read_text())


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


def _tokenizer_path(folder: Path) -> Path:
    path = folder / "tokenizer.json"
    if path.is_file():
        return path
    slow = [n for n in ("spiece.model", "vocab.txt", "vocab.json") if (folder / n).is_file()]
    hint = (f"; it has {', '.join(slow)}, a slow tokenizer's files, which xmodal does not read: "
            "write tokenizer.json once where transformers can convert it "
            "(AutoTokenizer.from_pretrained(folder).save_pretrained(folder))") if slow else ""
    raise BundleError(f"Hugging Face folder {folder} has no tokenizer.json (a fast tokenizer){hint}")


def hf_tokenizer(folder: Path, max_length: int) -> TextTokenizer:
    """The folder's tokenizer.json with HF's pad token, truncating at `max_length` or the
    tokenizer's own limit, whichever is shorter. Its post-processor adds the special tokens
    (CLIP's BOS/EOS, BERT's [CLS]/[SEP]) exactly as the HF tokenizer does."""
    path = _tokenizer_path(folder)
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


def _roles(family: str, model: nn.Module, tokenizer: TextTokenizer) -> dict[str, nn.Module]:
    if family == "clip":
        return {IMAGE: towers.ClipImage(model), TEXT: towers.ClipText(model)}
    if family == "align":
        return {IMAGE: towers.AlignImage(model), TEXT: towers.AlignText(model)}
    if family == "blip":
        return {IMAGE: towers.BlipImage(model), TEXT: towers.BlipText(model),
                RERANKER: towers.BlipReranker(model)}
    return {IMAGE: towers.SiglipImage(model), TEXT: towers.SiglipText(model, tokenizer.pad_id)}


def _embed_dim(family: str, cfg: Any) -> int:
    """The shared embedding size, refusing a checkpoint whose two towers disagree on it."""
    if family == "blip":
        return cfg.image_text_hidden_size
    if family == "siglip":  # no projections: the pooled widths themselves must agree
        image_dim, text_dim = cfg.vision_config.hidden_size, cfg.text_config.projection_size
    elif family == "align":
        from transformers.models.align.modeling_align import round_filters

        image_dim = round_filters(cfg.vision_config, cfg.vision_config.out_channels[-1])
        text_dim = cfg.projection_dim
    else:
        return cfg.projection_dim
    if image_dim != text_dim:
        raise BundleError(f"{family} image features ({image_dim}) and text features ({text_dim}) "
                          "differ in size")
    return text_dim


# family -> (attribute holding its temperature, how the logit scale derives from it)
_TEMPERATURE = {"clip": ("logit_scale", "log"), "align": ("temperature", "inverse"),
                "siglip": ("logit_scale", "log")}


def _from_pretrained(name: str, folder: Path) -> nn.Module:
    import transformers  # heavy; only the import path needs it

    try:
        return getattr(transformers, name).from_pretrained(
            folder, attn_implementation="eager", local_files_only=True).eval()
    except OSError as exc:  # transformers' word for a missing or unreadable weights file
        raise BundleError(f"cannot load the {name} weights in {folder}: {exc}") from exc


def import_hf(folder: str | Path) -> Imported:
    """Read a local HF CLIPModel / AlignModel / BlipForImageTextRetrieval / SiglipModel folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleError(f"no Hugging Face model folder at {folder}")
    name = model_class(_read_json(folder / "config.json"))
    preprocess = image_preprocess(_read_json(folder / "preprocessor_config.json"))
    _tokenizer_path(folder)  # fail before the weights load, not after
    model = _from_pretrained(name, folder)
    cfg, family = model.config, SUPPORTED[name]
    tokenizer = hf_tokenizer(folder, cfg.text_config.max_position_embeddings)
    # ViT position embeddings fix the input side; EfficientNet takes any
    if family != "align" and preprocess.size != cfg.vision_config.image_size:
        raise BundleError(f"image processor gives {preprocess.size} px, the model takes "
                          f"{cfg.vision_config.image_size}")
    attr, rule = _TEMPERATURE.get(family, (None, "log"))
    imported = Imported(
        kind="huggingface", folder=folder, model=model,
        exportable=Exportable(
            family=family, embed_dim=_embed_dim(family, cfg),
            roles={k: v.eval() for k, v in _roles(family, model, tokenizer).items()},
            tokenizer=tokenizer, preprocess=preprocess, vocab_size=cfg.text_config.vocab_size,
            info={"source": "huggingface", "class": name,
                  "name_or_path": getattr(cfg, "_name_or_path", "") or folder.name}),
        write=lambda m, out: m.save_pretrained(out), carry=CARRY,
        scale_param=getattr(model, attr) if attr else None, scale_rule=rule,
        bias_param=getattr(model, "logit_bias", None) if family == "siglip" else None)
    imported.annotate(read_record(folder))
    log.info("loaded %s from %s", name, folder)
    return imported


def load_hf(folder: str | Path) -> Exportable:
    """The `Exportable` of a Hugging Face folder (see `import_hf`)."""
    return import_hf(folder).exportable
