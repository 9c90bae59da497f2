"""A hash head added to an exported engine bundle: each tower graph gains a third output.

The head is linear on the tower's normalised embedding (`training.hashing`), so it is
appended to the graphs already exported (one MatMul and one Add after `image_embeds` and
`text_embeds`) rather than re-exporting the towers: the new bundle embeds exactly as the
old one did, which parity checks, and its codes equal the head applied to those embeddings
within the fp32 tolerance. The graphs change, so the bundle has a new `engine_id`; its
manifest's `codes` says how many bits and which outputs hold them.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from encoders.atomic import staging_dir
from encoders.bundle import MANIFEST, EngineManifest, GraphSpec, read_manifest, write_manifest
from encoders.codes import IMAGE_CODES, TEXT_CODES, check_bits
from encoders.errors import BundleError, ParityError
from encoders.roles import IMAGE, TEXT
from encoders.tokenizer import TextTokenizer

ATOL = 1e-4  # as fp32 export: codes are compared before their sign is taken
PARITY_TEXTS = ("a red heart", "two blue circles left of a green square", "dog")
# graph role -> (embedding output the head reads, codes output it adds)
OUTPUTS = {IMAGE: ("image_embeds", IMAGE_CODES), TEXT: ("text_embeds", TEXT_CODES)}


def _append_head(path: Path, out: Path, embeds: str, codes: str, weight: np.ndarray,
                 bias: np.ndarray) -> None:
    """Add `codes = embeds @ weight.T + bias` to the graph at `path` as a new output."""
    model = onnx.load(str(path))
    graph = model.graph
    if any(o.name == codes for o in graph.output):
        raise BundleError(f"{path} already outputs {codes}")
    if not any(o.name == embeds for o in graph.output):
        raise BundleError(f"{path} has no output {embeds} for a hash head to read")
    w_name, b_name, mm = f"{codes}_weight", f"{codes}_bias", f"{codes}_matmul"
    graph.initializer.extend([numpy_helper.from_array(weight.T.astype(np.float32), w_name),
                              numpy_helper.from_array(bias.astype(np.float32), b_name)])
    graph.node.extend([helper.make_node("MatMul", [embeds, w_name], [mm]),
                       helper.make_node("Add", [mm, b_name], [codes])])
    graph.output.append(helper.make_tensor_value_info(codes, TensorProto.FLOAT,
                                                      ["batch", weight.shape[0]]))
    onnx.checker.check_model(model)
    onnx.save(model, str(out))


def _parity_feeds(manifest: EngineManifest, folder: Path) -> dict[str, dict[str, np.ndarray]]:
    size = manifest.image_preprocess.size
    pixels = np.random.default_rng(0).standard_normal((3, 3, size, size)).astype(np.float32)
    tok = manifest.tokenizer
    ids, mask = TextTokenizer.from_file(folder / tok.file, tok.max_length, tok.pad_token).encode(
        list(PARITY_TEXTS))
    return {IMAGE: {"pixel_values": pixels}, TEXT: {"input_ids": ids, "attention_mask": mask}}


def _parity(source: Path, target: Path, manifest: EngineManifest, heads: dict[str, tuple]) -> dict:
    """Per role: the largest difference of the new graph's embeddings from the source
    bundle's, and of its codes from the head applied to those embeddings."""
    feeds = _parity_feeds(manifest, source)
    out: dict[str, Any] = {}
    for role, (embeds, codes) in OUTPUTS.items():
        file = manifest.graphs[role].file
        before = ort.InferenceSession(str(source / file), providers=["CPUExecutionProvider"])
        after = ort.InferenceSession(str(target / file), providers=["CPUExecutionProvider"])
        old = before.run([embeds], feeds[role])[0]
        new, got = after.run([embeds, codes], feeds[role])
        weight, bias = heads[role]
        expected = new.astype(np.float64) @ weight.T.astype(np.float64) + bias
        diff = max(float(np.abs(new - old).max()), float(np.abs(got - expected).max()))
        if diff > ATOL:
            raise ParityError(f"{role} with its hash head differs by {diff:.2e} > {ATOL:.0e}")
        out[role] = {"max_abs": diff, "atol": ATOL, "batch_size": len(old)}
    return out


def add_hash_head(engine: str | Path, out: str | Path, heads: dict[str, tuple[np.ndarray, np.ndarray]],
                  training: dict[str, Any] | None = None) -> EngineManifest:
    """A new bundle at `out`: the bundle `engine` with `heads` ({role: (weight (bits, d),
    bias (bits,))}) appended to its image and text graphs; returns its manifest."""
    source = Path(engine)
    manifest = read_manifest(source)
    if manifest.code_bits:
        raise BundleError(f"engine {source} already has {manifest.code_bits}-bit codes")
    bits = check_bits(int(heads[IMAGE][0].shape[0]))
    for role, (weight, bias) in heads.items():
        if weight.shape != (bits, manifest.embed_dim) or bias.shape != (bits,):
            raise ValueError(f"{role} hash head must be ({bits}, {manifest.embed_dim}) and "
                             f"({bits},), got {weight.shape} and {bias.shape}")
    with staging_dir(Path(out)) as tmp:
        graphs = dict(manifest.graphs)
        for name in [p.name for p in source.iterdir() if p.name != MANIFEST]:
            if name not in {manifest.graphs[r].file for r in OUTPUTS}:
                shutil.copyfile(source / name, tmp / name)
        for role, (embeds, codes) in OUTPUTS.items():
            spec = manifest.graphs[role]
            _append_head(source / spec.file, tmp / spec.file, embeds, codes, *heads[role])
            graphs[role] = GraphSpec(spec.file, list(spec.inputs), [*spec.outputs, codes])
        parity = _parity(source, tmp, manifest, heads)
        codes_info = {"bits": bits, "image_output": IMAGE_CODES, "text_output": TEXT_CODES,
                      "parity": parity, "base_engine_id": manifest.engine_id,
                      "training": training or {}}
        return write_manifest(tmp, replace(manifest, graphs=graphs, codes=codes_info))
