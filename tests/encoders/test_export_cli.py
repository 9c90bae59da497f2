"""`xmodal export` with a folder of the wrong kind, or one it cannot read: a one-line error
naming the problem, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.encoders.tiny_models import SHAPE_WORDS, clip_folder, open_clip_folder
from xmodal.cli import main


def test_a_flag_that_insists_on_another_kind_is_refused_by_name(tmp_path: Path) -> None:
    torch.manual_seed(0)
    open_clip = open_clip_folder(tmp_path / "oc")
    with pytest.raises(SystemExit, match="holds an OpenCLIP model, not a Hugging Face model"):
        main(["export", "--hf", str(open_clip), "--out", str(tmp_path / "engine")])
    hf = clip_folder(tmp_path / "hf", SHAPE_WORDS)
    with pytest.raises(SystemExit, match="holds a Hugging Face model, not an xmodal checkpoint"):
        main(["export", "--checkpoint", str(hf), "--out", str(tmp_path / "engine")])
    (hf / "preprocessor_config.json").unlink()
    with pytest.raises(SystemExit, match="missing preprocessor_config.json"):
        main(["export", "--hf", str(hf), "--out", str(tmp_path / "engine")])
    assert not (tmp_path / "engine").exists()


def test_export_of_an_imported_folder_prints_its_scores(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    folder = open_clip_folder(tmp_path / "oc")
    assert main(["export", "--open-clip", str(folder), "--out", str(tmp_path / "engine")]) == 0
    out = capsys.readouterr().out
    assert '"family": "open_clip"' in out and '"logit_scale"' in out
