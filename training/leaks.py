"""What a model trained on, and the check that refuses to report a held-out figure it saw.

Training writes a provenance record (`training_data.json.gz`, in the checkpoint and the engine
bundle): every caption it trained on, every image style, and every emoji concept per style.
An evaluation split names what it holds out -- caption combinations (the compositional
split's colour-shape bindings and colour-relation-colour triples), concepts (emoji base
concepts) or styles (a drawing style such as Noto) -- and `check_held_out` raises
`LeakError`, naming what leaked and where, when any of it occurs in the provenance.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from training.compositional import HELD_OUT_BINDINGS, HELD_OUT_TRIPLES, stated_combinations

PROVENANCE = "training_data.json.gz"


class LeakError(ValueError):
    """An evaluation split shares an image, concept, style or caption with training."""


@dataclass
class Provenance:
    captions: set[str] = field(default_factory=set)
    styles: set[str] = field(default_factory=set)
    concepts: dict[str, set[str]] = field(default_factory=dict)  # style -> concept keys
    sources: list[str] = field(default_factory=list)  # human-readable, for reports

    def add(self, style: str, concept: str, captions: Iterable[str]) -> None:
        self.styles.add(style)
        if concept:
            self.concepts.setdefault(style, set()).add(concept)
        self.captions.update(captions)

    def to_json(self) -> dict:
        return {"sources": self.sources, "styles": sorted(self.styles),
                "concepts": {s: sorted(c) for s, c in sorted(self.concepts.items())},
                "captions": sorted(self.captions)}

    @classmethod
    def from_json(cls, data: dict) -> Provenance:
        return cls(set(data["captions"]), set(data["styles"]),
                   {s: set(c) for s, c in data["concepts"].items()}, list(data["sources"]))


def write_provenance(path: Path, provenance: Provenance) -> None:
    path.write_bytes(gzip.compress(json.dumps(provenance.to_json()).encode(), mtime=0))


def read_provenance(folder: str | Path) -> Provenance:
    """The provenance a checkpoint or engine bundle carries; refusing when it has none, since
    then nothing can be said to be held out."""
    path = Path(folder) / PROVENANCE
    if not path.is_file():
        raise LeakError(f"{folder} has no {PROVENANCE}: what it trained on is unknown, so no "
                        "split can be called held out")
    return Provenance.from_json(json.loads(gzip.decompress(path.read_bytes())))


@dataclass(frozen=True)
class HeldOut:
    """What an evaluation split claims the model never saw."""

    name: str
    bindings: frozenset[tuple[str, str]] = frozenset()  # (colour, shape)
    triples: frozenset[tuple[str, str, str]] = frozenset()  # (colour, relation, colour)
    concepts: frozenset[str] = frozenset()  # emoji base concepts, in any style
    styles: frozenset[str] = frozenset()  # drawing styles


COMPOSITIONAL = HeldOut("compositional test split", HELD_OUT_BINDINGS, HELD_OUT_TRIPLES)


def leaks(provenance: Provenance, held: HeldOut, limit: int = 5) -> list[str]:
    """Up to `limit` lines naming what of `held` the training provenance contains."""
    out: list[str] = []
    for style in sorted(held.styles & provenance.styles):
        out.append(f"style {style!r} was trained on")
    for style, concepts in sorted(provenance.concepts.items()):
        shared = sorted(held.concepts & concepts)
        if shared:
            out.append(f"{len(shared)} held-out concepts were trained on in style {style!r} "
                       f"(e.g. {', '.join(shared[:3])})")
    if held.bindings or held.triples:
        for caption in sorted(provenance.captions):
            combos = stated_combinations(caption, held.bindings, held.triples)
            if combos:
                out.append(f"training caption {caption!r} states {' '.join(combos[0])}")
            if len(out) >= limit:
                break
    return out[:limit]


def check_held_out(provenance: Provenance, held: HeldOut) -> None:
    """Raise `LeakError` if the model trained on anything `held` claims is held out."""
    found = leaks(provenance, held)
    if found:
        raise LeakError(f"{held.name} is not held out: " + "; ".join(found))
