from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from encoders.config import load_config
from training.options import PRESETS, add_arguments, config_from_args
from xmodal.demo import prepare


def _parse(argv: list[str]):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config_from_args(parser.parse_args(argv))


def test_preset_fills_unset_flags_and_flags_override_it() -> None:
    cfg = _parse(["--out", "x", "--preset", "default", "--steps", "7", "--no-progress"])
    assert cfg.steps == 7 and cfg.progress is False
    assert cfg.data == PRESETS["default"]["data"] and load_config(cfg.model).family == "lit"
    plain = _parse(["--out", "x", "--distill"])
    assert plain.distill is True and plain.model == "tiny-clip" and plain.steps == 300


def test_demo_refuses_a_folder_holding_the_other_kind(tmp_path: Path) -> None:
    (tmp_path / "KIND").write_text("shapes\n")
    with pytest.raises(SystemExit, match="holds the 'shapes' demo"):
        prepare(tmp_path, kind="default")
    (tmp_path / "KIND").write_text("default\n")  # a folder prepared for the earlier default
    with pytest.raises(SystemExit, match="holds the 'default' demo, not 'default lit-lite0'"):
        prepare(tmp_path, kind="default")
    with pytest.raises(SystemExit, match="unknown demo model"):
        prepare(tmp_path, kind="huge")
