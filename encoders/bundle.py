"""The engine bundle contract: a folder with `manifest.json`, ONNX graphs and a tokenizer file.

Written by export (training side), read by the index build and the service. The
`engine_id` is a content hash over every file the engine computes with and the
preprocessing/tokenizer settings, so two bundles share an id only if they embed alike.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from encoders.atomic import sha256_file
from encoders.errors import BundleError
from encoders.preprocess import ImagePreprocess

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class GraphSpec:
    file: str  # ONNX file name inside the bundle
    inputs: list[str]
    outputs: list[str]


@dataclass(frozen=True)
class TokenizerSpec:
    file: str = "tokenizer.json"
    max_length: int = 24
    padding: str = "longest"
    pad_token: str = "[PAD]"


@dataclass(frozen=True)
class EngineManifest:
    family: str
    embed_dim: int
    image_preprocess: ImagePreprocess
    tokenizer: TokenizerSpec
    graphs: dict[str, GraphSpec]  # role ("image_encoder", "text_encoder", ...) -> graph
    engine_id: str = ""
    similarity: str = "cosine"  # or "sigmoid" (SigLIP); search ranks by cosine either way
    # how scores are made from the embeddings: the temperature and, for sigmoid, the bias that
    # turn a cosine into a logit or a probability (`encoders.source.score_rule`)
    score: dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"
    parity: dict[str, Any] = field(default_factory=dict)  # role -> measured max abs diff
    training: dict[str, Any] = field(default_factory=dict)  # data, steps, metrics
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256, to name a bad one
    # precision -> {"graphs": role -> file, "towers": role -> parity record, "check": cosine and
    # recall change against fp32} (encoders.variants); they embed within the recorded bounds
    variants: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    # binary codes the towers also output (`encoders.codes`): {"bits", "image_output",
    # "text_output", "parity", "training"}; empty: no codes
    codes: dict[str, Any] = field(default_factory=dict)

    @property
    def code_bits(self) -> int:
        """Bits of the codes the towers output; 0: none."""
        return int(self.codes.get("bits", 0))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["image_preprocess"] = self.image_preprocess.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineManifest:
        try:
            return cls(
                family=data["family"],
                embed_dim=int(data["embed_dim"]),
                image_preprocess=ImagePreprocess.from_dict(data["image_preprocess"]),
                tokenizer=TokenizerSpec(**data["tokenizer"]),
                graphs={role: GraphSpec(**g) for role, g in data["graphs"].items()},
                engine_id=data.get("engine_id", ""),
                similarity=data.get("similarity", "cosine"),
                score=data.get("score", {}),
                precision=data.get("precision", "fp32"),
                parity=data.get("parity", {}),
                training=data.get("training", {}),
                files=data.get("files", {}),
                variants=data.get("variants", {}),
                format_version=int(data.get("format_version", FORMAT_VERSION)),
                codes=data.get("codes", {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"bad engine manifest: {exc!r}") from exc


def bundle_files(manifest: EngineManifest) -> list[str]:
    """Every file the engine computes with: graphs, variants' graphs, tokenizer."""
    variant_files = [f for v in manifest.variants.values() for f in v["graphs"].values()]
    return [g.file for g in manifest.graphs.values()] + variant_files + [manifest.tokenizer.file]


def compute_engine_id(folder: Path, manifest: EngineManifest) -> str:
    """Hash of the graph and tokenizer files plus every setting that changes an embedding."""
    digest = hashlib.sha256()
    for name in sorted(bundle_files(manifest)):
        digest.update(name.encode())
        digest.update(sha256_file(folder / name).encode())
    settings = {
        "preprocess": manifest.image_preprocess.to_dict(),
        "tokenizer": asdict(manifest.tokenizer),
        "precision": manifest.precision,
        "graphs": {role: asdict(g) for role, g in manifest.graphs.items()},
    }
    if manifest.code_bits:  # bundles without codes keep the id they always had
        settings["code_bits"] = manifest.code_bits
    if manifest.variants:  # only then: the ids of bundles without variants stay as they were
        settings["variants"] = {p: v["graphs"] for p, v in manifest.variants.items()}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return f"{manifest.family}-{digest.hexdigest()[:16]}"


def write_manifest(folder: Path, manifest: EngineManifest) -> EngineManifest:
    """Stamp the engine_id and write `manifest.json`; the graphs and tokenizer must be in place."""
    names = bundle_files(manifest)
    stamped = replace(manifest, engine_id=compute_engine_id(folder, manifest),
                      files={name: sha256_file(folder / name) for name in sorted(names)})
    (folder / MANIFEST).write_text(json.dumps(stamped.to_dict(), indent=2) + "\n")
    return stamped


def read_manifest(folder: str | Path) -> EngineManifest:
    """Read and check an engine bundle: manifest parses, listed files exist, id matches content."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise BundleError(f"no engine bundle at {folder}: {MANIFEST} is missing")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from exc
    manifest = EngineManifest.from_dict(data)
    for name in bundle_files(manifest):
        if not (folder / name).is_file():
            raise BundleError(f"engine bundle {folder} lists {name} but the file is missing")
        expected = manifest.files.get(name)
        if expected is not None and sha256_file(folder / name) != expected:
            raise BundleError(f"engine file {folder / name} fails its checksum "
                              "(corrupt, truncated or modified)")
    actual = compute_engine_id(folder, manifest)
    if actual != manifest.engine_id:
        raise BundleError(
            f"engine bundle {folder} is corrupt: manifest says engine_id {manifest.engine_id}, "
            f"files hash to {actual}"
        )
    return manifest
