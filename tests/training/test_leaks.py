"""The leak check: a split is refused when its held-out combinations, concepts or styles were
trained on, and passed when they were not."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.compositional import compositional_scenes, training_negatives
from training.leaks import (
    COMPOSITIONAL,
    HeldOut,
    LeakError,
    Provenance,
    check_held_out,
    read_provenance,
    write_provenance,
)
from training.lit_data import concept_split, keep, provenance_of, source_items


def _albef_scratch_provenance() -> Provenance:
    """What the earlier default preset (compositional scenes + every Twemoji name) trained on."""
    provenance = Provenance()
    for scene in compositional_scenes(500, 0, "train"):
        provenance.add("compositional", "", scene.captions + scene.hard_negatives())
    for item in source_items("emoji", 0, 0, 64):
        provenance.add(item.style, item.concept, item.captions)
    return provenance


def test_the_earlier_default_preset_leaks_the_compositional_split() -> None:
    with pytest.raises(LeakError, match="blue circle|green square|orange square|purple circle"):
        check_held_out(_albef_scratch_provenance(), COMPOSITIONAL)


def test_the_default_sources_keep_the_compositional_split_held_out() -> None:
    items = source_items("emoji", 0, 0, 64) + source_items("compositional", 500, 0, 64)
    kept = [keep(item, "") for item in items]
    provenance = provenance_of(items, kept, ["emoji", "compositional"])
    check_held_out(provenance, COMPOSITIONAL)  # raises if a held-out binding was kept
    assert "blue circle" not in provenance.captions and "pizza" in provenance.captions
    assert all(n in provenance.captions for s in compositional_scenes(50, 0, "train")
               for n in training_negatives(s))


def test_held_out_concepts_are_refused_unless_left_out_of_every_style() -> None:
    items = source_items("emoji", 0, 0, 64)
    test = frozenset(i.concept for i in items if concept_split(i.concept) == "test")
    held = HeldOut("test concepts", concepts=test)
    assert 100 < len(test) < 400
    with pytest.raises(LeakError, match="held-out concepts were trained on in style 'twemoji'"):
        check_held_out(provenance_of(items, [keep(i, "") for i in items], ["emoji"]), held)
    check_held_out(provenance_of(items, [keep(i, "test") for i in items], ["emoji"]), held)


def test_a_trained_style_and_a_missing_record_are_refused(tmp_path: Path) -> None:
    provenance = Provenance()
    provenance.add("noto", "1f600", ["grinning face"])
    with pytest.raises(LeakError, match="style 'noto' was trained on"):
        check_held_out(provenance, HeldOut("noto", styles=frozenset({"noto"})))
    with pytest.raises(LeakError, match="what it trained on is unknown"):
        read_provenance(tmp_path)
    write_provenance(tmp_path / "training_data.json.gz", provenance)
    assert read_provenance(tmp_path).concepts == {"noto": {"1f600"}}
