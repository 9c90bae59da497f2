"""The `Engine` protocol and its ONNX Runtime implementation: what index build and service call.

No torch here. An engine loads a bundle, checks it, and turns PIL images or strings into
L2-normalised float32 embeddings through the bundle's own preprocessing and tokenizer.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort
from PIL import Image

from encoders.bundle import EngineManifest, read_manifest
from encoders.errors import BundleError, InputError
from encoders.length_groups import length_groups
from encoders.preprocess import preprocess
from encoders.roles import IMAGE, RERANKER, TEXT
from encoders.threads import SPIN_US
from encoders.tokenizer import TextTokenizer

log = logging.getLogger(__name__)

# Preferred first; only those this onnxruntime build offers are used.
PROVIDER_PREFERENCE = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)


# A text call's fixed cost on CPU in tokens' worth of compute, for splitting batches by length
# (length_groups): 32 emoji names take 20% less time with it on a 6-layer MiniLM tower, and no
# longer on a 2-layer one (2 cores). A constant, not timed at load, so a text's embedding
# does not depend on how busy the machine was when the engine loaded.
CPU_TEXT_CALL_TOKENS = 32.0


class Engine(Protocol):
    """What the rest of the system calls on an engine, whatever runs it: index build, shards,
    the service. `OnnxEngine` is the one that ships; the tests hold a numpy one."""

    manifest: EngineManifest

    @property
    def path(self) -> Path | None:
        """The bundle folder it was loaded from, for executors that load their own copy in
        each worker (Ray); None: an engine that exists only in this process."""
        ...

    @property
    def engine_id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def has_reranker(self) -> bool: ...

    def pixels(self, images: Sequence[Image.Image]) -> np.ndarray:
        """The bundle's preprocessing: images -> (batch, 3, size, size) float32."""
        ...

    def encode_pixels(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """Preprocessed pixels -> `image_embeds` (batch, dim) and, with a reranker,
        `image_tokens` (batch, tokens, width)."""
        ...

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_text_outputs(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Texts -> every output of the text graph: `text_embeds` and, in a bundle with
        codes, `text_codes` (see `encoders.codes`)."""
        ...

    def score(self, image_tokens: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """Match probability of each (image tokens, text) pair: (b, n, w), b texts -> (b,)."""
        ...


def available_providers(preference: Sequence[str] = PROVIDER_PREFERENCE) -> list[str]:
    offered = set(ort.get_available_providers())
    return [p for p in preference if p in offered]


class OnnxEngine:
    """Runs an engine bundle's towers with ONNX Runtime."""

    def __init__(
        self,
        bundle: str | Path,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        spin_us: int = SPIN_US,
        precision: str | None = None,
    ) -> None:
        """`precision`: run one of the bundle's variants (`encoders.variants`) instead of its
        own graphs; the engine_id stays the bundle's."""
        self.path = Path(bundle)
        self.manifest = read_manifest(self.path)
        self.precision = precision or self.manifest.precision
        files = {role: g.file for role, g in self.manifest.graphs.items()}
        if precision is not None and precision != self.manifest.precision:
            if precision not in self.manifest.variants:
                raise BundleError(f"engine bundle {self.path} has no {precision} variant; it "
                                  f"carries {sorted(self.manifest.variants) or 'none'}")
            files |= self.manifest.variants[precision]["graphs"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
        if spin_us < 0:
            raise ValueError(f"spin_us must be >= 0, got {spin_us}")
        options.add_session_config_entry("session.intra_op.allow_spinning", str(int(spin_us > 0)))
        options.add_session_config_entry("session.intra_op.spin_duration_us", str(spin_us))
        self.providers = list(providers) if providers else available_providers()
        self._sessions = {
            role: self._open(name, options) for role, name in files.items()
        }
        tok = self.manifest.tokenizer
        self.tokenizer = TextTokenizer.from_file(self.path / tok.file, tok.max_length, tok.pad_token)
        # what splitting a text batch by length may trade one more call for: on a GPU,
        # padding is nearly free and a call is not, so batches stay whole there
        running = {p for session in self._sessions.values() for p in session.get_providers()}
        on_gpu = bool(running - {"CPUExecutionProvider"})
        self.text_call_tokens = float("inf") if on_gpu else CPU_TEXT_CALL_TOKENS
        log.info("engine %s (%s) loaded with %s", self.engine_id, self.precision, self.providers)

    def _open(self, name: str, options: ort.SessionOptions) -> ort.InferenceSession:
        try:
            return ort.InferenceSession(str(self.path / name), options, providers=self.providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors on bad files
            raise BundleError(f"cannot load {self.path / name}: {exc}") from exc

    @property
    def engine_id(self) -> str:
        return self.manifest.engine_id

    @property
    def dim(self) -> int:
        return self.manifest.embed_dim

    def encode_pixels(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """Preprocessed pixels (batch, 3, size, size) -> every output of the image graph."""
        size = self.manifest.image_preprocess.size
        if pixels.ndim != 4 or pixels.shape[1:] != (3, size, size):
            raise InputError(f"pixels must have shape (batch, 3, {size}, {size}), got {pixels.shape}")
        return self._run(IMAGE, {"pixel_values": pixels.astype(np.float32, copy=False)})

    @property
    def has_reranker(self) -> bool:
        return RERANKER in self._sessions

    def pixels(self, images: Sequence[Image.Image]) -> np.ndarray:
        """The bundle's preprocessing, the same function training and index build use."""
        return preprocess(images, self.manifest.image_preprocess)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.encode_pixels(self.pixels(images))["image_embeds"]

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode_text_outputs(texts)["text_embeds"]

    def encode_text_outputs(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Texts -> every output of the text graph; a batch of mixed lengths runs as several
        calls when padding every text to the longest would cost more than the extra calls
        (see length_groups)."""
        ids, mask = self.tokenizer.encode(texts)
        lengths = mask.sum(axis=1)
        groups = length_groups(lengths, self.text_call_tokens)
        if len(groups) == 1:
            return self._run(TEXT, {"input_ids": ids, "attention_mask": mask})
        out: dict[str, np.ndarray] = {}
        for group in groups:
            width = int(lengths[group].max())  # texts are right-padded: the rest is padding
            feeds = {"input_ids": ids[group, :width], "attention_mask": mask[group, :width]}
            for name, value in self._run(TEXT, feeds).items():
                out.setdefault(name, np.empty((len(ids), *value.shape[1:]), value.dtype))[group] = value
        return out

    def score(self, image_tokens: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """Match probability of each (image tokens, text) pair: tokens (b, n, w), b texts -> (b,)."""
        if not self.has_reranker:
            raise InputError(f"engine {self.engine_id} ({self.manifest.family}) has no reranker")
        if image_tokens.ndim != 3 or image_tokens.shape[0] != len(texts):
            raise InputError(f"image_tokens must have shape ({len(texts)}, tokens, width), "
                             f"got {image_tokens.shape}")
        ids, mask = self.tokenizer.encode(texts)
        feeds = {"image_tokens": image_tokens.astype(np.float32, copy=False),
                 "input_ids": ids, "attention_mask": mask}
        return self._run(RERANKER, feeds)["match_prob"]

    def _run(self, role: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        graph = self.manifest.graphs[role]
        values = self._sessions[role].run(graph.outputs, feeds)
        return dict(zip(graph.outputs, values, strict=True))
