"""Import OpenCLIP checkpoint folders (`open_clip_config.json` + weights), the format LAION's
and most OpenCLIP models are published in.

open_clip itself builds the architecture from the folder's config and loads its weights
(`create_model("local-dir:...")`: no download, weights loaded strictly); the roles here call
its towers, so the exported graphs are checked against the library's own `encode_image` /
`encode_text`. Towers open_clip borrows from timm or Hugging Face are refused: building them
would need those libraries' own configs, which a folder does not carry.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from encoders.clip_bpe import clip_bpe_tokenizer
from encoders.errors import BundleError
from encoders.hf_towers import pad_to_context
from encoders.open_clip_import import import_open_clip
from encoders.preprocess import ImagePreprocess
from encoders.roles import IMAGE, TEXT, Exportable
from encoders.source import Imported, read_record

log = logging.getLogger(__name__)

CONFIG = "open_clip_config.json"
# open_clip's own preference order; a fine-tuned folder is written as the first
WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
           "open_clip_pytorch_model.bin")
_BORROWED = {"vision_cfg": "timm_model_name", "text_cfg": "hf_model_name"}
_SIMPLE_TOKENIZER_PAD = 0  # SimpleTokenizer pads with id 0


def _config(folder: Path) -> dict[str, Any]:
    import json

    path = folder / CONFIG
    if not path.is_file():
        raise BundleError(f"OpenCLIP folder {folder} is missing {CONFIG}")
    data = json.loads(path.read_text())
    cfg = data.get("model_cfg")
    if not isinstance(cfg, dict) or not {"embed_dim", "vision_cfg", "text_cfg"} <= cfg.keys():
        raise BundleError(f"{path} has no model_cfg with embed_dim, vision_cfg and text_cfg")
    for tower, key in _BORROWED.items():
        if cfg[tower].get(key):
            raise BundleError(f"{path}: {tower}.{key} {cfg[tower][key]!r} is a tower borrowed "
                              "from another library; only open_clip's own towers are read")
    if cfg["text_cfg"].get("hf_tokenizer_name"):
        raise BundleError(f"{path}: text_cfg.hf_tokenizer_name is set; only open_clip's own "
                          "BPE tokenizer is read")
    return data


def _weights(folder: Path) -> Path:
    for name in WEIGHTS:
        if (folder / name).is_file():
            return folder / name
    raise BundleError(f"OpenCLIP folder {folder} has no weights: expected one of {', '.join(WEIGHTS)}")


def image_preprocess(cfg: dict[str, Any]) -> ImagePreprocess:
    """open_clip's evaluation transform (torchvision Resize + CenterCrop) as `ImagePreprocess`."""
    size = cfg["size"]
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise BundleError(f"OpenCLIP preprocessing: non-square size {size} is not supported")
        size = size[0]
    rules = {"shortest": "shortest", "squash": "stretch"}  # "longest" pads: not supported
    mode, interpolation = cfg.get("resize_mode", "shortest"), cfg.get("interpolation", "bicubic")
    if mode not in rules or interpolation not in ("bicubic", "bilinear"):
        raise BundleError(f"OpenCLIP preprocessing: resize_mode {mode!r} with interpolation "
                          f"{interpolation!r} is not supported (resize_mode: shortest, squash; "
                          "interpolation: bicubic, bilinear)")
    # torchvision sizes the long side with int() and centres the crop with round()
    return ImagePreprocess(size=int(size), resize=rules[mode], interpolation=interpolation,
                           mean=tuple(cfg["mean"]), std=tuple(cfg["std"]), long_side="floor",
                           crop_offset="round")


class OpenClipImage(nn.Module):
    """open_clip's image tower; a ViT also gives its patch tokens (a ResNet: its pooled vector)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.visual = model.visual
        self.vit = all(hasattr(self.visual, f) for f in ("_embeds", "_pool", "transformer"))

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.vit:
            pooled = self.visual(pixel_values)
            return F.normalize(pooled, dim=-1), pooled[:, None]
        v = self.visual  # VisionTransformer.forward, keeping the tokens it pools from
        pooled, tokens = v._pool(v.transformer(v._embeds(pixel_values)))
        if v.proj is not None:
            pooled = pooled @ v.proj
        return F.normalize(pooled, dim=-1), tokens


class OpenClipText(nn.Module):
    """open_clip's `encode_text` on ids padded as its tokenizer pads them (id 0, to the full
    context). Exported at the full context even for a causal tower, whose end token never
    sees the padding: torch.nn.MultiheadAttention, which open_clip's blocks use, exports with
    its sequence length fixed at the example's, so a graph traced at one length fails at any
    other (Reshape errors at the first query of another length). In training mode a causal
    tower runs at the batch's own length instead, the same embeddings for a fraction of the
    work (77 positions for captions of ~10 tokens)."""

    def __init__(self, model: nn.Module, text_global_pool: Any) -> None:
        super().__init__()
        self.model = model
        self.pool = text_global_pool
        self.length = int(model.context_length)
        # the CLIP class's own text tower with a causal mask and a pooled position that lies
        # within the text; custom towers and unmasked ones see the padding
        self.causal = (hasattr(model, "token_embedding") and model.attn_mask is not None
                       and model.text_pool_type in ("argmax", "eos", "first"))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.training and self.causal:
            return self._at_own_length(input_ids, attention_mask)
        ids = pad_to_context(input_ids, attention_mask, _SIMPLE_TOKENIZER_PAD, self.length)
        return F.normalize(self.model.encode_text(ids), dim=-1)

    def _at_own_length(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """`CLIP.encode_text` over the first t positions: embeddings, causal blocks, pool."""
        m, t = self.model, input_ids.shape[1]
        ids = torch.where(attention_mask.bool(), input_ids, torch.zeros_like(input_ids))
        x = m.token_embedding(ids) + m.positional_embedding[:t]
        x = m.ln_final(m.transformer(x, attn_mask=m.attn_mask[:t, :t]))
        x = self.pool(x, ids, m.text_pool_type, eos_token_id=getattr(m, "text_eos_id", None))
        proj = m.text_projection
        if proj is not None:
            x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
        return F.normalize(x, dim=-1)


def _write(model: nn.Module, out: Path, config_text: str) -> None:
    (out / CONFIG).write_text(config_text)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS[0]))


def import_open_clip_folder(folder: str | Path) -> Imported:
    """Read an OpenCLIP folder: config and weights through open_clip, tokenizer rebuilt."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleError(f"no OpenCLIP model folder at {folder}")
    data = _config(folder)
    _weights(folder)
    open_clip = import_open_clip()
    try:
        model = open_clip.create_model(f"local-dir:{folder}", weights_only=True).eval()
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"open_clip cannot build {folder} from {CONFIG} and its weights: "
                          f"{exc}") from exc
    text_cfg = data["model_cfg"]["text_cfg"]
    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    clean = (text_cfg.get("tokenizer_kwargs") or {}).get("clean", "lower")
    tokenizer = clip_bpe_tokenizer(bpe, int(model.context_length), clean)
    vocab = int(text_cfg.get("vocab_size", 49408))
    if tokenizer.vocab_size > vocab:
        raise BundleError(f"{folder}: the text tower has {vocab} token embeddings, open_clip's "
                          f"tokenizer {tokenizer.vocab_size}")
    from open_clip.transformer import text_global_pool

    bias = getattr(model, "logit_bias", None)
    config_text = (folder / CONFIG).read_text()
    imported = Imported(
        kind="open_clip", folder=folder, model=model,
        exportable=Exportable(
            family="open_clip", embed_dim=int(data["model_cfg"]["embed_dim"]),
            roles={IMAGE: OpenClipImage(model).eval(),
                   TEXT: OpenClipText(model, text_global_pool).eval()},
            tokenizer=tokenizer,
            preprocess=image_preprocess(open_clip.get_model_preprocess_cfg(model)),
            vocab_size=tokenizer.vocab_size,
            info={"source": "open_clip", "open_clip": open_clip.__version__,
                  "name_or_path": folder.name}),
        write=lambda m, out: _write(m, out, config_text),
        scale_param=model.logit_scale, bias_param=bias)
    imported.annotate(read_record(folder))
    log.info("loaded OpenCLIP %s from %s", type(model).__name__, folder)
    return imported
