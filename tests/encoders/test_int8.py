"""Static and dynamic int8 on a tiny model: calibrated QDQ graphs with per-channel weights, the
per-tower choice and what the manifest records of it, and variants beside fp32 graphs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from encoders.bundle import read_manifest
from encoders.calibration import read_calibration
from encoders.checkpoint import Checkpoint
from encoders.clip import DualEncoder
from encoders.config import load_config
from encoders.engine import OnnxEngine
from encoders.errors import BundleError, InputError
from encoders.export import _export_graph, calibration_feeds, export_bundle, parity_inputs
from encoders.preprocess import ImagePreprocess
from encoders.quantize import head_nodes, quantize_int8
from encoders.roles import IMAGE, TEXT
from encoders.tokenizer import train_word_tokenizer
from encoders.variants import MIN_COSINE, build_precision
from training.synthetic import scenes, write_gallery


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(0)
    tokenizer = train_word_tokenizer([s.caption for s in scenes(200, 0)], max_length=24)
    cfg = load_config("tiny-clip")
    cfg = dataclasses.replace(cfg, text=dataclasses.replace(cfg.text, vocab_size=tokenizer.vocab_size))
    return Checkpoint(DualEncoder(cfg).eval(), tokenizer, ImagePreprocess(size=64), {}).exportable()


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gallery(tmp_path_factory.mktemp("calibration") / "images", 32, seed=3, size=64)


def test_static_int8_is_calibrated_qdq_with_per_channel_weights(source, gallery: Path,
                                                                tmp_path: Path) -> None:
    fp32 = tmp_path / "image.onnx"
    _export_graph(source.roles[IMAGE], parity_inputs(source)[IMAGE][0], IMAGE, fp32)
    feeds = calibration_feeds(source, read_calibration(gallery), fp32)[IMAGE]
    quantize_int8(fp32, tmp_path / "static.onnx", "static", feeds)
    graph = onnx.load(str(tmp_path / "static.onnx")).graph
    consts = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    dequant = [n for n in graph.node if n.op_type == "DequantizeLinear"]
    # weights: int8 with one scale per output channel; activations: uint8, one scale
    weight_scales = [consts[n.input[1]] for n in dequant if consts.get(n.input[0], np.zeros(0)).dtype == np.int8]
    assert weight_scales and all(s.ndim == 1 and s.size > 1 for s in weight_scales)
    assert any(n.op_type == "QuantizeLinear" for n in graph.node)
    # the heads after pooling stay float: no dequantised weight feeds them
    model = onnx.load(str(fp32))
    assert head_nodes(onnx.shape_inference.infer_shapes(model))
    with pytest.raises(ValueError, match="calibration"):
        quantize_int8(fp32, tmp_path / "none.onnx", "static", None)


def test_int8_export_records_each_towers_choice_and_parity(source, gallery: Path,
                                                           tmp_path: Path) -> None:
    manifest = export_bundle(source, tmp_path / "int8", "int8",
                             calibration=read_calibration(gallery))
    assert read_manifest(tmp_path / "int8").engine_id == manifest.engine_id
    for role in (IMAGE, TEXT):
        record = manifest.parity[role]
        choice = record["int8"]
        assert set(choice["candidates"]) == {"fp32", "static", "dynamic"}
        chosen = choice["candidates"][choice["chosen"]]
        assert chosen["min_cosine"] >= MIN_COSINE and chosen["max_abs"] <= record["atol"]
        # the chosen graph is what the bundle holds: its parity is the chosen candidate's
        assert record["max_abs"] == pytest.approx(chosen["max_abs"], rel=1e-6)
        assert record["parity_inputs"] == "calibration"
        assert "fused" in record
    assert manifest.parity["calibration"] == {"source": str(gallery), "images": 32, "texts": 32}


def test_fp32_bundle_carries_an_int8_variant_with_its_recall_change(source, gallery: Path,
                                                                    tmp_path: Path) -> None:
    manifest = export_bundle(source, tmp_path / "e", calibration=read_calibration(gallery),
                             variants=("int8",))
    variant = manifest.variants["int8"]
    assert variant["graphs"] == {IMAGE: "image_encoder.int8.onnx", TEXT: "text_encoder.int8.onnx"}
    check = variant["check"]
    assert set(check["recall_change"]) == {"text_to_image", "image_to_text"}
    assert all(c >= MIN_COSINE for c in check["min_cosine"].values())
    fp32, low = OnnxEngine(tmp_path / "e"), OnnxEngine(tmp_path / "e", precision="int8")
    assert low.engine_id == fp32.engine_id and low.precision == "int8"
    texts = [s.caption for s in scenes(5, 9)]
    a, b = fp32.encode_texts(texts), low.encode_texts(texts)
    assert not np.array_equal(a, b)  # the variant's own graphs ran
    assert (a * b).sum(axis=1).min() > 0.99
    assert build_precision(manifest, "fp32") == "fp32"
    assert build_precision(manifest, "int8") in ("fp32", "int8")
    (tmp_path / "e" / "image_encoder.int8.onnx").write_bytes(b"broken")
    with pytest.raises(BundleError, match="image_encoder.int8.onnx"):
        OnnxEngine(tmp_path / "e")


def test_engine_refuses_a_variant_the_bundle_lacks(source, tmp_path: Path) -> None:
    export_bundle(source, tmp_path / "e")
    with pytest.raises(BundleError, match="no int8 variant"):
        OnnxEngine(tmp_path / "e", precision="int8")
    with pytest.raises(BundleError, match="--variants int8"):
        build_precision(read_manifest(tmp_path / "e"), "int8")


def test_calibration_folder_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_calibration(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(InputError, match="no readable image"):
        read_calibration(tmp_path / "empty")
