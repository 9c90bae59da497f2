"""ONNX export of any family into an engine bundle, with parity measured against PyTorch.

Each role (see `encoders.roles`) becomes its own graph with dynamic batch and sequence axes,
fused by ONNX Runtime's transformer optimiser where the fused graph keeps fp32 parity
(`encoders.optimize`). Parity is measured on random inputs at batch sizes 1 and 7 (texts of 8
and 5 tokens) and written into the manifest; export fails when an output differs by more than
the precision's tolerance. fp16 and int8 graphs are converted from the fp32 ones and measured
against the same PyTorch outputs; int8 is chosen per tower, static or dynamic, by measurement
(`encoders.int8`), calibrated on the collection's images and texts when they are given.

An fp32 bundle can also carry variants (`variants=("int8",)`): the same towers at a reduced
precision in files of their own, with their cosine to fp32 and, given captioned calibration
images, the recall change an index built with them would show (`encoders.variants`).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from encoders import int8
from encoders.atomic import staging_dir
from encoders.bundle import EngineManifest, TokenizerSpec, write_manifest
from encoders.calibration import Calibration
from encoders.errors import ParityError
from encoders.optimize import optimize_graph
from encoders.quantize import PRECISIONS, convert
from encoders.roles import DYNAMIC_AXES, GRAPHS, IMAGE, RERANKER, TEXT, Exportable
from encoders.variants import check_variant, variant_file

log = logging.getLogger(__name__)

PARITY_BATCHES = (1, 7)
PARITY_TEXT_LENGTHS = (8, 5)  # tokens per random text, one per batch size
# difference allowed per precision, on unit-scale outputs (see measure_parity)
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "int8": 0.25}
OPSET = 17


def _random_text(batch: int, seq: int, vocab: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    ids = torch.randint(0, vocab, (batch, seq), generator=gen)
    lengths = torch.randint(1, seq + 1, (batch,), generator=gen)
    mask = (torch.arange(seq)[None, :] < lengths[:, None]).to(torch.int64)
    return ids, mask


def parity_inputs(src: Exportable, seed: int = 0) -> dict[str, list[tuple[torch.Tensor, ...]]]:
    """Random inputs for every role at each parity batch size."""
    gen = torch.Generator().manual_seed(seed)
    size = src.preprocess.size
    pixels = [torch.randn(b, 3, size, size, generator=gen) for b in PARITY_BATCHES]
    # a second text length too: a graph that traced its example's length as a constant (as
    # torch.nn.MultiheadAttention does) fails there instead of at the first real query
    texts = [_random_text(b, seq, src.vocab_size, gen)
             for b, seq in zip(PARITY_BATCHES, PARITY_TEXT_LENGTHS, strict=True)]
    inputs = {IMAGE: [(p,) for p in pixels], TEXT: texts}
    if RERANKER in src.roles:
        with torch.no_grad():
            tokens = [src.roles[IMAGE](p)[1] for p in pixels]
        inputs[RERANKER] = [(t, *tx) for t, tx in zip(tokens, texts, strict=True)]
    return inputs


def _export_graph(module: torch.nn.Module, example: tuple, role: str, path: Path) -> None:
    spec = GRAPHS[role]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation chatter is not ours to fix
        torch.onnx.export(
            module.eval(), example, str(path),
            input_names=spec.inputs, output_names=spec.outputs,
            dynamic_axes={n: DYNAMIC_AXES[n] for n in spec.inputs + spec.outputs},
            opset_version=OPSET, dynamo=False,
        )


def measure_parity(module: torch.nn.Module, path: Path, role: str, inputs: list[tuple]) -> float:
    """Largest difference between PyTorch and ONNX Runtime over all inputs and outputs, in units
    of the output's own scale where that exceeds 1: embeddings and probabilities lie in [-1, 1]
    and are compared as they are, unnormalised outputs (the reranker's image tokens) relative to
    their largest value, so one tolerance per precision means the same for both."""
    spec = GRAPHS[role]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for args in inputs:
        with torch.no_grad():
            expected = module(*args)
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = session.run(spec.outputs, {n: a.numpy() for n, a in zip(spec.inputs, args)})
        for e, g in zip(expected, got, strict=True):
            scale = max(1.0, float(np.abs(e.numpy()).max()))
            worst = max(worst, float(np.abs(e.numpy() - g).max()) / scale)
    return worst


def _fused(module: torch.nn.Module, raw: Path, role: str, inputs: list[tuple]) -> tuple[Path, dict]:
    """The graph with ONNX Runtime's transformer fusions where they keep fp32 parity, else
    the graph as exported; and what was fused."""
    fused = raw.with_suffix(".fused.onnx")
    try:
        ops = optimize_graph(raw, fused, role)
    except Exception as exc:  # noqa: BLE001 - the optimiser raises whatever its passes raise
        log.warning("%s: transformer optimiser failed (%s); keeping the plain graph", role, exc)
        return raw, {"fused": {}, "optimiser": f"failed: {exc}"}
    diff = measure_parity(module, fused, role, inputs)
    if diff > TOLERANCE["fp32"]:
        log.warning("%s: fused graph differs from PyTorch by %.2e; keeping the plain graph", role, diff)
        return raw, {"fused": {}, "optimiser": f"refused: differs by {diff:.2e}"}
    return fused, {"fused": ops}


def calibration_feeds(src: Exportable, calibration: Calibration | None,
                      fp32_image: Path | None) -> dict[str, list[dict]]:
    """Input feeds per role from the calibration images and texts; a role they cannot feed
    (no captions for the text tower) gets none, and its int8 is dynamic only."""
    if calibration is None:
        return {}
    from encoders.calibration import batched

    pixels = batched(calibration.pixels(src.preprocess))
    feeds: dict[str, list[dict]] = {IMAGE: [{"pixel_values": p} for p in pixels]}
    if calibration.texts:
        feeds[TEXT] = calibration.text_feeds(src.tokenizer)
    if RERANKER in src.roles and calibration.paired and fp32_image is not None:
        image = ort.InferenceSession(str(fp32_image), providers=["CPUExecutionProvider"])
        feeds[RERANKER] = [{"image_tokens": image.run(["image_tokens"], p)[0], **t}
                           for p, t in zip(feeds[IMAGE], feeds[TEXT], strict=False)]
    return feeds


def _stack(arrays: list[np.ndarray]) -> np.ndarray:
    """Batches along axis 0; token batches of different lengths right-padded with zeros (ids
    under a zero mask, which every tower ignores)."""
    width = max(a.shape[1] for a in arrays) if arrays[0].ndim == 2 else None
    if width is not None:
        arrays = [np.pad(a, ((0, 0), (0, width - a.shape[1]))) for a in arrays]
    return np.concatenate(arrays)


def _timing_feed(role: str, feeds: list[dict] | None, parity: list[tuple]) -> tuple[dict, int]:
    """One batch to time candidates on: two calibration batches together, or the largest
    parity input; and how many items it holds."""
    if feeds:
        feed = {k: _stack([f[k] for f in feeds[:2]]) for k in feeds[0]}
    else:
        feed = {n: a.numpy() for n, a in zip(GRAPHS[role].inputs, parity[-1], strict=False)}
    return feed, len(next(iter(feed.values())))


def _plain(fp32: Path) -> Path:
    """The graph as exported, beside its fused copy (`_fused`)."""
    return fp32.with_name(fp32.name.replace(".fused", ""))


def _int8_graph(module: torch.nn.Module, fp32: Path, role: str, dst: Path, inputs: list[tuple],
                feeds: list[dict] | None, atol: float, threads: int) -> dict:
    """Quantise `fp32` every way, keep the fastest within bounds at `dst`; its record."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = int8.build_candidates(fp32, _plain(fp32), Path(tmp), feeds)
        runs = int8.sessions(paths, threads)
        feed, items = _timing_feed(role, feeds, inputs)
        rates = int8.items_per_s({n: (lambda s=s: s.run(None, feed)) for n, s in runs.items()}, items)
        output = GRAPHS[role].outputs[0]
        cosines = (int8.min_cosines(runs, feeds or [feed], output) if output.endswith("_embeds")
                   else {n: None for n in runs})
        candidates = [int8.Candidate(n, round(rates[n], 2),
                                     measure_parity(module, p, role, inputs), cosines[n])
                      for n, p in paths.items()]
        try:
            chosen = int8.choose(candidates, atol)
        except ValueError as exc:
            raise ParityError(f"{role} (int8): {exc}") from None
        shutil.copyfile(paths[chosen.method], dst)
    log.info("%s int8: %s (%s)", role, chosen.method, candidates)
    return int8.record(chosen, candidates)


def _as_inputs(role: str, feeds: list[dict]) -> list[tuple]:
    return [tuple(torch.from_numpy(f[n]) for n in GRAPHS[role].inputs) for f in feeds]


def _role_graph(module: torch.nn.Module, fp32: Path, role: str, precision: str, dst: Path,
                inputs: list[tuple], feeds: list[dict] | None, atol: float, threads: int) -> dict:
    """`fp32` at `precision` into `dst`, checked against PyTorch; the parity record. int8 is
    checked on the calibration inputs where there are any: static ranges are fixed for the
    collection's images and texts, and random noise lies outside them."""
    record: dict = {}
    if precision == "int8" and feeds:
        inputs = _as_inputs(role, feeds[:2])
        record["parity_inputs"] = "calibration"
    if precision == "int8":
        record["int8"] = _int8_graph(module, fp32, role, dst, inputs, feeds, atol, threads)
    else:
        convert(fp32, dst, precision)
    diff = measure_parity(module, dst, role, inputs)
    log.info("parity %s %s: max abs diff %.2e (tolerance %.2g)", role, precision, diff, atol)
    if diff > atol:
        raise ParityError(f"{role} ({precision}) differs from PyTorch by {diff:.2e} > {atol:.2g}")
    return {"max_abs": diff, "atol": atol, "batch_sizes": list(PARITY_BATCHES), **record}


def export_bundle(src: Exportable, out_dir: str | Path, precision: str = "fp32",
                  atol: float | None = None, calibration: Calibration | None = None,
                  variants: tuple[str, ...] = (), threads: int = 2) -> EngineManifest:
    """Export every role of `src` to a new engine bundle at `out_dir`; return its manifest.

    `calibration`: the collection's images (and captions) that static int8 fixes its ranges on;
    `variants`: reduced precisions to carry beside an fp32 bundle's graphs."""
    for p in (precision, *variants):
        if p not in PRECISIONS:
            raise ValueError(f"unknown precision {p!r}; one of {', '.join(PRECISIONS)}")
    if variants and precision != "fp32":
        raise ValueError(f"variants ({', '.join(variants)}) go beside fp32 graphs, not {precision}")
    atol = TOLERANCE[precision] if atol is None else atol
    inputs = parity_inputs(src)
    graphs = {role: GRAPHS[role] for role in src.roles}
    parity: dict = {}
    fp32_graphs: dict[str, Path] = {}
    with staging_dir(Path(out_dir)) as tmp, tempfile.TemporaryDirectory() as fp32_dir:
        for role, module in src.roles.items():
            raw = Path(fp32_dir) / GRAPHS[role].file
            _export_graph(module, inputs[role][0], role, raw)
            fp32_graphs[role], parity[role] = _fused(module, raw, role, inputs[role])
        feeds = calibration_feeds(src, calibration, fp32_graphs.get(IMAGE))
        for role, module in src.roles.items():
            parity[role] |= _role_graph(module, fp32_graphs[role], role, precision,
                                        tmp / GRAPHS[role].file, inputs[role], feeds.get(role),
                                        atol, threads)
        carried = {}
        for variant in variants:
            carried[variant] = {"graphs": {}, "towers": {}}
            for role, module in src.roles.items():
                name = variant_file(GRAPHS[role].file, variant)
                carried[variant]["towers"][role] = _role_graph(
                    module, fp32_graphs[role], role, variant, tmp / name, inputs[role],
                    feeds.get(role), TOLERANCE[variant], threads)
                carried[variant]["graphs"][role] = name
            carried[variant]["check"] = check_variant(tmp, graphs, carried[variant]["graphs"],
                                                      src, calibration, threads)
        if calibration is not None:
            parity["calibration"] = {"source": calibration.source, "images": len(calibration.images),
                                     "texts": len(calibration.texts)}
        src.tokenizer.save(tmp / "tokenizer.json")
        for name, path in src.files.items():
            shutil.copyfile(path, tmp / name)
        manifest = EngineManifest(
            family=src.family,
            embed_dim=src.embed_dim,
            image_preprocess=src.preprocess,
            tokenizer=TokenizerSpec("tokenizer.json", src.tokenizer.max_length,
                                    pad_token=src.tokenizer.pad_token),
            graphs=graphs,
            precision=precision,
            parity=parity,
            training=src.info,
            similarity=src.similarity,
            score=src.score,
            variants=carried,
        )
        return write_manifest(tmp, manifest)
