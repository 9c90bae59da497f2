"""The VLMo and ALBEF-style fusion families: export parity for all three roles, weight sharing
and expert routing (VLMo), cross-attention (fusion), padding invariance and a training sanity
check, all on untrained tiny models."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from encoders.bundle import read_manifest
from encoders.checkpoint import Checkpoint
from encoders.config import load_config
from encoders.export import export_bundle
from encoders.fusion import FusionModel
from encoders.models import build_model
from encoders.preprocess import ImagePreprocess
from encoders.roles import GRAPHS, IMAGE, RERANKER, TEXT
from encoders.tokenizer import TextTokenizer, train_word_tokenizer
from encoders.vlmo import VLMo

FAMILIES = ["tiny-vlmo", "tiny-albef"]
CAPTIONS = [
    "a red circle",
    "a blue square and a green triangle",
    "a purple diamond left of a yellow star",
    "two small grey cubes",
]
WORDS = sorted({w for c in CAPTIONS for w in c.split()})


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine OpenMP's
    spin-waiting made a 40-step training take 30 s instead of 0.5 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer() -> TextTokenizer:
    return train_word_tokenizer(CAPTIONS, max_length=24)


def build(name: str, tokenizer: TextTokenizer, seed: int = 0) -> nn.Module:
    """A fresh tiny model whose vocabulary is the tokenizer's."""
    torch.manual_seed(seed)
    cfg = load_config(name)
    vocab = tokenizer.vocab_size
    if hasattr(cfg, "text"):
        cfg = dataclasses.replace(cfg, text=dataclasses.replace(cfg.text, vocab_size=vocab))
    else:
        cfg = dataclasses.replace(cfg, vocab_size=vocab)
    return build_model(cfg).eval()


@pytest.fixture(scope="module", params=FAMILIES)
def exported(request, tokenizer, tmp_path_factory) -> tuple[nn.Module, Path]:
    model = build(request.param, tokenizer)
    out = tmp_path_factory.mktemp(request.param) / "engine"
    preprocess = ImagePreprocess(size=image_size(model))
    export_bundle(Checkpoint(model, tokenizer, preprocess, {}).exportable(), out)
    return model, out


def random_texts(tokenizer: TextTokenizer, batch: int, rng: np.random.Generator):
    """Captions of random words and random lengths, so the batch carries real padding."""
    texts = [" ".join(rng.choice(WORDS, size=rng.integers(1, 12))) for _ in range(batch)]
    ids, mask = tokenizer.encode(texts)
    return torch.from_numpy(ids), torch.from_numpy(mask)


def image_size(model: nn.Module) -> int:
    return model.cfg.image_size if isinstance(model, VLMo) else model.cfg.vision.image_size


def pixels_for(model: nn.Module, batch: int, seed: int = 0) -> torch.Tensor:
    size = image_size(model)
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


@contextlib.contextmanager
def perturbed(param: torch.Tensor) -> Iterator[None]:
    """Add noise to one weight for the duration of the block."""
    saved = param.detach().clone()
    with torch.no_grad():
        param.add_(torch.randn_like(param) * 0.5)
    try:
        yield
    finally:
        with torch.no_grad():
            param.copy_(saved)


def changed(before: torch.Tensor, after: torch.Tensor) -> bool:
    return float((before - after).abs().max()) > 1e-4


# -- export ---------------------------------------------------------------------------------


def test_manifest_records_parity_for_every_role(exported) -> None:
    model, bundle = exported
    manifest = read_manifest(bundle)
    assert manifest.family == model.cfg.family
    assert set(manifest.graphs) == {IMAGE, TEXT, RERANKER}
    assert set(manifest.parity) == {IMAGE, TEXT, RERANKER}
    for figures in manifest.parity.values():
        assert figures["max_abs"] <= 1e-4 and figures["batch_sizes"] == [1, 7]


def test_onnx_graphs_match_pytorch_at_batch_1_and_7(exported, tokenizer) -> None:
    model, bundle = exported
    sessions = {
        role: ort.InferenceSession(str(bundle / spec.file), providers=["CPUExecutionProvider"])
        for role, spec in GRAPHS.items()
    }
    rng = np.random.default_rng(3)
    for batch in (1, 7):
        pixels = pixels_for(model, batch, seed=batch + 10)
        ids, mask = random_texts(tokenizer, batch, rng)
        with torch.no_grad():
            image_embeds = model.encode_image(pixels).numpy()
            tokens = model.image_tokens(pixels)
            text_embeds = model.encode_text(ids, mask).numpy()
            prob = model.score(tokens, ids, mask).numpy()
        got_embeds, got_tokens = sessions[IMAGE].run(None, {"pixel_values": pixels.numpy()})
        np.testing.assert_allclose(got_embeds, image_embeds, atol=1e-4)
        np.testing.assert_allclose(got_tokens, tokens.numpy(), atol=1e-4)
        text_feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
        (got_text,) = sessions[TEXT].run(None, text_feed)
        np.testing.assert_allclose(got_text, text_embeds, atol=1e-4)
        # the reranker reads the tokens the image graph produced, as the index will store them
        (got_prob,) = sessions[RERANKER].run(None, {"image_tokens": got_tokens, **text_feed})
        assert got_prob.shape == (batch,)
        np.testing.assert_allclose(got_prob, prob, atol=1e-4)


# -- both families --------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_padding_changes_neither_embedding_nor_score(name: str, tokenizer) -> None:
    model = build(name, tokenizer)
    short, long = CAPTIONS[0], CAPTIONS[2]
    alone = [torch.from_numpy(a) for a in tokenizer.encode([short])]
    padded = [torch.from_numpy(a) for a in tokenizer.encode([short, long])]
    assert padded[0].shape[1] > alone[0].shape[1] and padded[1][0].sum() < padded[1].shape[1]
    tokens = model.image_tokens(pixels_for(model, 1)).detach()
    with torch.no_grad():
        np.testing.assert_allclose(
            model.encode_text(*padded)[:1].numpy(), model.encode_text(*alone).numpy(), atol=1e-5
        )
        np.testing.assert_allclose(
            model.score(tokens.expand(2, -1, -1), *padded)[:1].numpy(),
            model.score(tokens, *alone).numpy(), atol=1e-5,
        )


@pytest.mark.parametrize("name", FAMILIES)
def test_reranker_role_returns_probabilities(name: str, tokenizer) -> None:
    model = build(name, tokenizer)
    roles = model.graph_modules()
    ids, mask = (torch.from_numpy(a) for a in tokenizer.encode(CAPTIONS))
    with torch.no_grad():
        embeds, tokens = roles[IMAGE](pixels_for(model, len(CAPTIONS)))
        prob = roles[RERANKER](tokens, ids, mask)
        logits = model.itm_logits(tokens, ids, mask)
    assert prob.shape == (len(CAPTIONS),) and logits.shape == (len(CAPTIONS), 2)
    assert bool(((prob >= 0) & (prob <= 1)).all())
    np.testing.assert_allclose(prob.numpy(), logits.softmax(-1)[:, 1].numpy(), atol=1e-6)
    np.testing.assert_allclose(embeds.norm(dim=-1).numpy(), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_itm_training_steps_reduce_the_loss(name: str, tokenizer) -> None:
    model = build(name, tokenizer).train()
    pixels = pixels_for(model, 4)
    ids, mask = (torch.from_numpy(a) for a in tokenizer.encode(CAPTIONS))
    # positives (i, i) and negatives (i, i + 1): the head must read image and text together
    pix = torch.cat([pixels, pixels])
    ids, mask = torch.cat([ids, ids.roll(1, 0)]), torch.cat([mask, mask.roll(1, 0)])
    labels = torch.tensor([1] * 4 + [0] * 4)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(40):
        loss = F.cross_entropy(model.itm_logits(model.image_tokens(pix), ids, mask), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    # the image side learned through the fusion layers, not only the text side
    patch_embed = model.patch_embed if isinstance(model, VLMo) else model.visual.patch_embed
    assert patch_embed.weight.grad is not None and float(patch_embed.weight.grad.abs().max()) > 0
    if isinstance(model, FusionModel):
        assert float(model.fusion[0].cross.kv.weight.grad.abs().max()) > 0


# -- VLMo -----------------------------------------------------------------------------------


def _vlmo_outputs(model: VLMo, pixels, ids, mask) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        tokens = model.image_tokens(pixels)
        return {
            "image": model.encode_image(pixels),
            "text": model.encode_text(ids, mask),
            "tokens": tokens,
            "score": model.score(tokens, ids, mask),
        }


@pytest.mark.parametrize(
    "weight, expect_changed",
    [
        # shared attention: one set of weights for both modalities and both modes
        ("bottom.0.attn.qkv.weight", {"image", "text", "tokens", "score"}),
        ("top.0.attn.qkv.weight", {"image", "text", "score"}),
        # each expert serves only its own modality / mode
        ("bottom.0.experts.v.mlp.0.weight", {"image", "tokens", "score"}),
        ("bottom.0.experts.l.mlp.0.weight", {"text", "score"}),
        ("top.0.experts.v.mlp.0.weight", {"image"}),
        ("top.0.experts.l.mlp.0.weight", {"text"}),
        ("top.0.experts.vl.mlp.0.weight", {"score"}),
        ("itm_head.weight", {"score"}),
        ("image_proj.weight", {"image"}),
    ],
)
def test_vlmo_routes_each_weight_to_the_right_modes(
    weight: str, expect_changed: set[str], tokenizer
) -> None:
    model = build("tiny-vlmo", tokenizer)
    assert model.cfg.layers - model.cfg.fusion_layers >= 1 and len(model.top) >= 1
    pixels = pixels_for(model, 3)
    ids, mask = (torch.from_numpy(a) for a in tokenizer.encode(CAPTIONS[:3]))
    before = _vlmo_outputs(model, pixels, ids, mask)
    with perturbed(model.get_parameter(weight)):
        after = _vlmo_outputs(model, pixels, ids, mask)
    got = {key for key in before if changed(before[key], after[key])}
    assert got == expect_changed
    restored = _vlmo_outputs(model, pixels, ids, mask)
    assert not any(changed(before[k], restored[k]) for k in before)


def test_vlmo_bottom_blocks_have_no_vl_expert(tokenizer) -> None:
    model = build("tiny-vlmo", tokenizer)
    assert len(model.bottom) == model.cfg.layers - model.cfg.fusion_layers
    assert len(model.top) == model.cfg.fusion_layers
    assert all(set(b.experts) == {"v", "l"} for b in model.bottom)
    assert all(set(b.experts) == {"v", "l", "vl"} for b in model.top)


# -- fusion ---------------------------------------------------------------------------------


def test_fusion_score_depends_on_the_text(tokenizer) -> None:
    model = build("tiny-albef", tokenizer)
    ids, mask = (torch.from_numpy(a) for a in tokenizer.encode(CAPTIONS))
    with torch.no_grad():
        tokens = model.image_tokens(pixels_for(model, 1)).expand(len(CAPTIONS), -1, -1)
        prob = model.score(tokens, ids, mask)
    assert float(prob.max() - prob.min()) > 1e-3


def test_fusion_cross_attention_reads_the_image(tokenizer) -> None:
    model = build("tiny-albef", tokenizer)
    ids, mask = (torch.from_numpy(a) for a in tokenizer.encode(CAPTIONS))
    with torch.no_grad():
        tokens_a = model.image_tokens(pixels_for(model, len(CAPTIONS), seed=1))
        tokens_b = model.image_tokens(pixels_for(model, len(CAPTIONS), seed=2))
        assert tokens_a.shape[-1] == model.cfg.vision.width != model.cfg.text.width
        score_a = model.score(tokens_a, ids, mask)
        assert changed(score_a, model.score(tokens_b, ids, mask))
        with perturbed(model.fusion[-1].cross.kv.weight):
            assert changed(score_a, model.score(tokens_a, ids, mask))
        # the unimodal text embedding does not see the image or the fusion layers
        text = model.encode_text(ids, mask)
        with perturbed(model.fusion[0].cross.kv.weight):
            np.testing.assert_array_equal(model.encode_text(ids, mask).numpy(), text.numpy())
