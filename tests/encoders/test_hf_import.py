"""Hugging Face CLIP / ALIGN / BLIP-ITM import: tiny random checkpoints saved to disk, imported,
exported to ONNX and compared with transformers' own outputs on the same inputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing here may reach the hub; a stray call fails fast

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
import transformers as tf
from PIL import Image
from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel

from encoders.engine import OnnxEngine
from encoders.errors import BundleError
from encoders.export import export_bundle
from encoders.hf import load_hf
from encoders.preprocess import ImagePreprocess, preprocess
from tests.encoders.tiny_models import perturb

WORDS = ["a", "photo", "of", "dog", "cat", "red", "blue", "green", "cube", "ball", "left", "right", "the", "and", "on", "under", "big", "small", "two", "three", "tree", "car", "house"]
TEXTS = ["a photo of a dog", "red cube left of blue ball", "two cats",
         "a big green tree and a small house on the left of the red car under a blue ball " * 2,
         "the zebra", "cat", "three small blue cubes on a red car"]  # long (truncated), OOV, short
MAX_LEN = 12


def _tokenizer(folder: Path, vocab: list[str], first: str, last: str, **special: str) -> None:
    """A lower-cased word-level tokenizer whose post-processor wraps texts in first ... last."""
    ids = {token: i for i, token in enumerate(vocab)}
    tok = Tokenizer(WordLevel(ids, unk_token=special["unk_token"]))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{first} $A {last}", special_tokens=[(first, ids[first]), (last, ids[last])])
    fast = tf.PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=MAX_LEN, **special)
    fast.save_pretrained(folder)


def _bert_vocab() -> list[str]:
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]


def _bert_tokenizer(folder: Path) -> None:
    _tokenizer(folder, _bert_vocab(), "[CLS]", "[SEP]", unk_token="[UNK]", pad_token="[PAD]",
               cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


def _clip_folder(folder: Path) -> None:
    # EOS sits mid-vocabulary and doubles as the pad token, as in OpenAI's CLIP tokenizer: the
    # pooled position must be the first EOS, which only right ids and padding guarantee.
    vocab = ["<unk>", *WORDS[:8], "<|startoftext|>", "<|endoftext|>", *WORDS[8:]]
    bos, eos = vocab.index("<|startoftext|>"), vocab.index("<|endoftext|>")
    _tokenizer(folder, vocab, "<|startoftext|>", "<|endoftext|>", unk_token="<unk>",
               bos_token="<|startoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    cfg = tf.CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=16,
                         bos_token_id=bos, eos_token_id=eos, pad_token_id=eos),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, image_size=32, patch_size=8),
        projection_dim=24)
    perturb(tf.CLIPModel(cfg)).save_pretrained(folder)
    # short side to 40, centre crop 32: exercises resize_to and HF's floor rule for the long side
    tf.CLIPImageProcessorPil(size={"shortest_edge": 40},
                             crop_size={"height": 32, "width": 32}).save_pretrained(folder)


def _align_folder(folder: Path) -> None:
    _bert_tokenizer(folder)
    vision = dict(image_size=32, width_coefficient=1.0, depth_coefficient=1.0,
                  kernel_sizes=[3, 3], in_channels=[32, 16], out_channels=[16, 24],
                  strides=[2, 2], num_block_repeats=[1, 1], expand_ratios=[1, 6],
                  depthwise_padding=[], hidden_dim=64)
    text = dict(vocab_size=len(_bert_vocab()), hidden_size=32, intermediate_size=64,
                num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=16)
    model = perturb(tf.AlignModel(tf.AlignConfig(text_config=text, vision_config=vision,
                                                  projection_dim=24)))
    perturb(model.vision_model, scale=0.3)  # with small weights the tiny EfficientNet's pooled
    model.save_pretrained(folder)            # features hardly depend on the image
    # rescale offset, normalise and include_top together: every affine step of the processor
    tf.EfficientNetImageProcessorPil(
        size={"height": 40, "width": 40}, crop_size={"height": 32, "width": 32},
        do_center_crop=True, rescale_factor=1 / 127.5, rescale_offset=True,
        image_mean=[0.4, 0.5, 0.6], image_std=[0.2, 0.25, 0.3], include_top=True,
    ).save_pretrained(folder)


def _blip_folder(folder: Path) -> None:
    _bert_tokenizer(folder)
    text = dict(vocab_size=len(_bert_vocab()), hidden_size=32, intermediate_size=64,
                num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=16,
                pad_token_id=0, bos_token_id=2, sep_token_id=3)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, image_size=32, patch_size=8)
    cfg = tf.BlipConfig(text_config=text, vision_config=vision, image_text_hidden_size=24)
    perturb(tf.BlipForImageTextRetrieval(cfg)).save_pretrained(folder)
    tf.BlipImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(folder)


BUILDERS = {"clip": _clip_folder, "align": _align_folder, "blip": _blip_folder}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory):
    """family -> (HF folder, exported engine bundle), each built once on first use."""
    made: dict[str, tuple[Path, Path]] = {}

    def get(family: str) -> tuple[Path, Path]:
        if family not in made:
            root = tmp_path_factory.mktemp(family)
            torch.manual_seed(0)
            BUILDERS[family](root / "hf")
            manifest = export_bundle(load_hf(root / "hf"), root / "engine")
            assert manifest.family == family
            assert all(p["max_abs"] <= 1e-4 for p in manifest.parity.values())
            made[family] = (root / "hf", root / "engine")
        return made[family]

    return get


@pytest.fixture(params=list(BUILDERS))
def imported(request, bundles) -> tuple[str, Path, Path]:
    """(family, HF folder, exported engine bundle) for each family."""
    return (request.param, *bundles(request.param))


def _images(batch: int, seed: int) -> list[Image.Image]:
    """Noise around a colour per image (pure noise all pools to the same features), in sizes
    where HF's floor of the long side differs from rounding (CLIP: 120 * 40/45 = 106.7)."""
    rng = np.random.default_rng(seed)
    sizes = [(50, 37), (37, 50), (64, 64), (81, 45), (45, 120), (33, 90), (100, 41)]
    return [Image.fromarray(np.clip(rng.integers(0, 256, 3) + rng.normal(0, 40, (h, w, 3)),
                                    0, 255).astype(np.uint8)) for w, h in sizes[:batch]]


def _reference(folder: Path) -> torch.nn.Module:
    config = json.loads((folder / "config.json").read_text())
    return getattr(tf, config["architectures"][0]).from_pretrained(folder).eval()


def _pooled(out) -> torch.Tensor:  # transformers 5 returns an output object, 4.x a tensor
    return F.normalize(getattr(out, "pooler_output", out), dim=-1)


@pytest.mark.parametrize("batch", [1, 7])
def test_engine_matches_transformers(imported, batch: int) -> None:
    family, folder, bundle = imported
    engine, model = OnnxEngine(bundle), _reference(folder)
    hf_tok = tf.AutoTokenizer.from_pretrained(folder)
    images, texts = _images(batch, seed=batch), TEXTS[:batch]
    pixels = preprocess(images, engine.manifest.image_preprocess)
    hf = hf_tok(texts, padding=True, truncation=True, max_length=MAX_LEN, return_tensors="pt")
    ids, mask = engine.tokenizer.encode(texts)
    np.testing.assert_array_equal(ids, hf["input_ids"].numpy())  # special tokens, truncation, pad
    np.testing.assert_array_equal(mask, hf["attention_mask"].numpy())
    image_out = engine.encode_pixels(pixels)
    np.testing.assert_allclose(engine.encode_images(images), image_out["image_embeds"], atol=1e-6)
    text_embeds = engine.encode_texts(texts)
    pt_pixels = torch.from_numpy(pixels)
    with torch.no_grad():
        if family == "blip":
            itc = model(input_ids=hf["input_ids"], pixel_values=pt_pixels,
                        attention_mask=hf["attention_mask"], use_itm_head=False).itm_score
            np.testing.assert_allclose(image_out["image_embeds"] @ text_embeds.T, itc.numpy(),
                                       atol=1e-4)
            itm = model(input_ids=hf["input_ids"], pixel_values=pt_pixels,
                        attention_mask=hf["attention_mask"], use_itm_head=True).itm_score
            session = ort.InferenceSession(str(bundle / "reranker.onnx"))
            (prob,) = session.run(["match_prob"], {"image_tokens": image_out["image_tokens"],
                                                   "input_ids": ids, "attention_mask": mask})
            np.testing.assert_allclose(prob, itm.softmax(dim=-1)[:, 1].numpy(), atol=1e-4)
            return
        expected_img = _pooled(model.get_image_features(pixel_values=pt_pixels))
        expected_txt = _pooled(model.get_text_features(**hf))
    np.testing.assert_allclose(image_out["image_embeds"], expected_img.numpy(), atol=1e-4)
    np.testing.assert_allclose(text_embeds, expected_txt.numpy(), atol=1e-4)


def test_image_tokens_are_the_models_hidden_states(imported) -> None:
    family, folder, bundle = imported
    model, images = _reference(folder), _images(3, seed=5)
    pixels = preprocess(images, OnnxEngine(bundle).manifest.image_preprocess)
    tokens = OnnxEngine(bundle).encode_pixels(pixels)["image_tokens"]
    with torch.no_grad():
        hidden = model.vision_model(pixel_values=torch.from_numpy(pixels)).last_hidden_state
    if family == "align":  # feature map (b, c, h, w) -> (b, h*w, c)
        hidden = hidden.flatten(2).transpose(1, 2)
    np.testing.assert_allclose(tokens, hidden.numpy(), atol=1e-4)


def test_preprocessing_matches_the_hf_image_processor(imported) -> None:
    _, folder, bundle = imported
    processor = tf.AutoImageProcessor.from_pretrained(folder)
    images = _images(7, seed=3)
    ours = preprocess(images, OnnxEngine(bundle).manifest.image_preprocess)
    theirs = np.asarray(processor(images, return_tensors="np")["pixel_values"])
    # Same resize sizes, same PIL resampling of the same uint8 pixels, same crop offsets: only the
    # float order of the affine steps can differ (HF rescales, normalises, [divides by std again];
    # we fold them into one mean/std). Measured: exactly equal for CLIP and BLIP, <= 4e-6 for the
    # ALIGN processor here, whose values reach ~50 (std applied twice).
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_hf_preprocess_fields_round_trip_and_leave_old_manifests_alone() -> None:
    spec = ImagePreprocess(size=32, resize_to=40, long_side="floor")
    assert ImagePreprocess.from_dict(spec.to_dict()) == spec
    # a spec without the new fields serialises as before, so older bundles' engine_ids verify
    assert set(ImagePreprocess().to_dict()) == {"size", "resize", "crop", "interpolation",
                                                "mean", "std"}


def test_clip_pooling_lands_on_the_eos_token(bundles) -> None:
    folder, bundle = bundles("clip")
    eos = json.loads((folder / "config.json").read_text())["text_config"]["eos_token_id"]
    ids, mask = OnnxEngine(bundle).tokenizer.encode(TEXTS)
    first_eos = (ids == eos).argmax(axis=1)  # the position CLIPTextModel pools
    np.testing.assert_array_equal(first_eos, mask.sum(axis=1) - 1)  # the last real token
    assert ids.shape[1] == MAX_LEN  # the long text was truncated, keeping its EOS


def test_unknown_or_incomplete_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no Hugging Face model folder"):
        load_hf(tmp_path / "absent")
    (tmp_path / "config.json").write_text(json.dumps(
        {"architectures": ["BlipForConditionalGeneration"], "model_type": "blip"}))
    with pytest.raises(BundleError, match="BlipForConditionalGeneration.*supported: CLIPModel"):
        load_hf(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["CLIPModel"]}))
    with pytest.raises(BundleError, match="preprocessor_config.json"):
        load_hf(tmp_path)
