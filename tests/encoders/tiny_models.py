"""Tiny random models saved as their libraries save them: Hugging Face CLIP, ALIGN, BLIP-ITM
and SigLIP folders (`save_pretrained`, a word-level tokenizer.json, preprocessor_config.json)
and OpenCLIP folders (open_clip_config.json + weights). Nothing is downloaded."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing here may reach the hub; a stray call fails fast

import torch
import transformers as tf
from safetensors.torch import save_file
from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel

from encoders.open_clip_import import import_open_clip

MAX_LEN = 12
SIDE = 32  # image side of every tiny model
SHAPE_WORDS = ["a", "and", "red", "green", "blue", "yellow", "purple", "orange", "circle",
               "square", "triangle", "diamond"]  # every word of training.synthetic's captions
OPENAI_MEAN, OPENAI_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]


def word_tokenizer(folder: Path, vocab: list[str], template: str, max_length: int = MAX_LEN,
                   **special: str) -> None:
    """A lower-cased word-level tokenizer; `template` places $A between the special tokens."""
    ids = {token: i for i, token in enumerate(vocab)}
    tok = Tokenizer(WordLevel(ids, unk_token=special["unk_token"]))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    names = [t for t in template.split() if t != "$A"]
    tok.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(t, ids[t]) for t in names])
    fast = tf.PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=max_length, **special)
    fast.save_pretrained(folder)


def perturb(model: torch.nn.Module, scale: float = 0.1) -> torch.nn.Module:
    """Jitter fresh weights (near-identity norms, near-zero heads) so outputs vary by input."""
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * scale)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    return model


def _vit(**extra: object) -> dict:
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                image_size=SIDE, patch_size=8, **extra)


def _text(vocab: int, **extra: object) -> dict:
    return dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=16, **extra)


def clip_folder(folder: Path, words: list[str]) -> Path:
    vocab = ["<unk>", "<|startoftext|>", "<|endoftext|>", *words]
    word_tokenizer(folder, vocab, "<|startoftext|> $A <|endoftext|>", unk_token="<unk>",
                   bos_token="<|startoftext|>", eos_token="<|endoftext|>",
                   pad_token="<|endoftext|>")
    cfg = tf.CLIPConfig(text_config=_text(len(vocab), bos_token_id=1, eos_token_id=2,
                                          pad_token_id=2),
                        vision_config=_vit(), projection_dim=24)
    perturb(tf.CLIPModel(cfg)).save_pretrained(folder)
    tf.CLIPImageProcessorPil(size={"shortest_edge": SIDE},
                             crop_size={"height": SIDE, "width": SIDE}).save_pretrained(folder)
    return folder


def siglip_folder(folder: Path, words: list[str]) -> Path:
    """SigLIP's tokenizer appends </s> and pads with it to the full context (16 here, 64 in
    the published models); its text tower sees no mask."""
    vocab = ["<pad>", "</s>", "<unk>", *words]
    word_tokenizer(folder, vocab, "$A </s>", max_length=16, unk_token="<unk>", eos_token="</s>",
                   pad_token="</s>")
    cfg = tf.SiglipConfig(text_config=_text(len(vocab), pad_token_id=1, eos_token_id=1,
                                            bos_token_id=None),
                          vision_config=_vit())
    model = perturb(tf.SiglipModel(cfg))
    with torch.no_grad():  # SigLIP's own initialisation (t' = log 10, b = -10): with 1 positive
        model.logit_scale.fill_(math.log(10.0))  # to n - 1 negatives per row, a bias near 0
        model.logit_bias.fill_(-10.0)  # spends the first steps only on pushing all pairs apart
    model.save_pretrained(folder)
    tf.SiglipImageProcessorPil(size={"height": SIDE, "width": SIDE}).save_pretrained(folder)
    return folder


def _bert_vocab(words: list[str]) -> list[str]:
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]


def _bert_tokenizer(folder: Path, words: list[str]) -> None:
    word_tokenizer(folder, _bert_vocab(words), "[CLS] $A [SEP]", unk_token="[UNK]",
                   pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


def blip_folder(folder: Path, words: list[str]) -> Path:
    _bert_tokenizer(folder, words)
    text = _text(len(_bert_vocab(words)), pad_token_id=0, bos_token_id=2, sep_token_id=3)
    cfg = tf.BlipConfig(text_config=text, vision_config=_vit(), image_text_hidden_size=24)
    perturb(tf.BlipForImageTextRetrieval(cfg)).save_pretrained(folder)
    tf.BlipImageProcessorPil(size={"height": SIDE, "width": SIDE}).save_pretrained(folder)
    return folder


def align_folder(folder: Path, words: list[str]) -> Path:
    _bert_tokenizer(folder, words)
    vision = dict(image_size=SIDE, width_coefficient=1.0, depth_coefficient=1.0,
                  kernel_sizes=[3, 3], in_channels=[32, 16], out_channels=[16, 24],
                  strides=[2, 2], num_block_repeats=[1, 1], expand_ratios=[1, 6],
                  depthwise_padding=[], hidden_dim=64)
    model = perturb(tf.AlignModel(tf.AlignConfig(text_config=_text(len(_bert_vocab(words))),
                                                 vision_config=vision, projection_dim=24)))
    perturb(model.vision_model, scale=0.3)  # small weights: pooled features barely vary
    model.save_pretrained(folder)
    tf.EfficientNetImageProcessorPil(size={"height": SIDE, "width": SIDE},
                                     do_center_crop=False).save_pretrained(folder)
    return folder


def open_clip_config(**text: object) -> dict:
    return {"embed_dim": 24,
            "vision_cfg": {"image_size": SIDE, "layers": 2, "width": 32, "patch_size": 8,
                           "head_width": 8},
            "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 4,
                         "layers": 2, **text}}


def open_clip_folder(folder: Path, model_cfg: dict | None = None, weights: str = "safetensors",
                     preprocess: dict | None = None) -> Path:
    """An OpenCLIP folder as published: the config JSON and the weights (safetensors or .bin)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": model_cfg or open_clip_config(),
              "preprocess_cfg": preprocess or {"mean": OPENAI_MEAN, "std": OPENAI_STD}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    model = perturb(import_open_clip().create_model(f"local-dir:{folder}"))
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if weights == "safetensors":
        save_file(state, str(folder / "open_clip_model.safetensors"))
    else:
        torch.save(state, folder / "open_clip_pytorch_model.bin")
    return folder
