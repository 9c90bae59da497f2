"""The quality report's MLM ablation: the from-scratch ALBEF model (`--preset albef-scratch`'s
architecture) trained twice on the compositional generator's training split, with the same
seed, data and steps, once with MLM at weight 0 (ITC + ITM alone train the model) and once at
weight 1, and both evaluated on the compositional test split (held-out bindings and triples),
dual encoder and reranked.

Both runs' vocabularies hold [MASK], so they start from the same weights, and masks are drawn
from their own generator (training.train), so they see the same batches and hard negatives:
the difference between the rows is MLM's alone. The runs are short (a
CPU budget), so the figures compare the two objectives at that budget, not at convergence.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench import quality_sets as sets
from encoders.engine import OnnxEngine
from training.leaks import PROVENANCE, Provenance, write_provenance
from training.rerank import evaluate_engine_reranked

STEPS = 200
TRAIN_SCENES = 3000
SAMPLE = 400  # queries per direction, as the report's other rerank rows
# (objectives, MLM weight): the baseline computes MLM at weight 0, so both runs have the same
# vocabulary ([MASK] in it) and so the same initial weights, and it gets no MLM gradient
RUNS = {"ITC + ITM": ("itc,itm,mlm", 0.0), "ITC + ITM + MLM": ("itc,itm,mlm", 1.0)}


def _settings() -> dict:
    from training.options import PRESETS

    return {**PRESETS["albef-scratch"], "data": "compositional", "steps": STEPS,
            "train_size": TRAIN_SCENES, "eval_every": 0, "progress": False}


def _provenance() -> Provenance:
    """What the runs trained on, as `training.sources` draws it (the native loop records none):
    the compositional training scenes' captions and hard negatives, for the leak check."""
    from training.compositional import compositional_scenes, training_negatives

    seed = _settings().get("seed", 0)
    provenance = Provenance(sources=[f"compositional train: {TRAIN_SCENES} scenes, seed {seed}"])
    for scene in compositional_scenes(TRAIN_SCENES, seed, "train"):
        provenance.add("compositional", "", [*scene.captions, *training_negatives(scene)])
    return provenance


def _engine(workdir: Path, objectives: str, weight: float) -> Path:
    """Train (once) and export the model for `objectives` at MLM `weight`; returns its engine."""
    from encoders.checkpoint import WEIGHTS, load_checkpoint
    from encoders.export import export_bundle
    from training.train import TrainConfig, train

    root = workdir / f"mlm-ablation-{objectives.replace(',', '-')}-weight-{weight:g}"
    if not (root / "checkpoint" / WEIGHTS).is_file():
        train(TrainConfig(out=root / "checkpoint", objectives=objectives, mlm_weight=weight,
                          **_settings()))
    if not (root / "engine").is_dir():
        export_bundle(load_checkpoint(root / "checkpoint").exportable(), root / "engine")
    if not (root / "engine" / PROVENANCE).is_file():
        write_provenance(root / "engine" / PROVENANCE, _provenance())
    return root / "engine"


def mlm_rows(workdir: Path, k: int = 16) -> tuple[list[str], dict]:
    """The section's lines and each run's recall figures."""
    data = sets.compositional()
    results = {}
    for name, (objectives, weight) in RUNS.items():
        engine = OnnxEngine(_engine(workdir, objectives, weight))
        sets.check(engine, data.held_out)
        results[name] = evaluate_engine_reranked(engine, data.images, data.texts, data.owner, k=k,
                                                 sample=SAMPLE, curve_ks=(1,))
    (workdir / "mlm_ablation.json").write_text(json.dumps(results, indent=1) + "\n")
    settings = _settings()
    columns = [("dual", "text_to_image", "R@1"), ("itm", "text_to_image", "R@1"),
               ("itm+itc", "text_to_image", "R@1"), ("itm+itc", "text_to_image", "R@5"),
               ("dual", "image_to_text", "R@1"), ("itm+itc", "image_to_text", "R@1")]
    names = {"dual": "dual", "itm": "ITM", "itm+itc": "ITM+ITC"}
    header = "| objectives | " + " | ".join(
        f"{names[r]} {'t2i' if d == 'text_to_image' else 'i2t'} {m}" for r, d, m in columns) + " |"
    lines = [
        "## MLM ablation: the reranker trained with and without MLM", "",
        (f"The from-scratch ALBEF model (`--preset albef-scratch` architecture, batch "
         f"{settings['batch_size']}, lr {settings['lr']}, ITM weight {settings['itm_weight']}) "
         f"trained {STEPS} steps on {TRAIN_SCENES} scenes of the compositional training split, "
         "seed 0, twice from the same initial weights, on the same batches and hard negatives: "
         "MLM (15% of words, 80/10/10) at weight 0 in the first, 1 in the second. Evaluated on the " + data.name + f"; rerank: the dual "
         f"encoder's top-{k} rescored. A short CPU run: the figures compare the objectives at "
         "this budget. Recall in %."), "",
        header, "| --- |" + " --- |" * len(columns),
        *[f"| {name} | " + " | ".join(f"{results[name][r][d][m]:.1f}" for r, d, m in columns) + " |"
          for name in RUNS], "",
    ]
    return lines, results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the quality report's MLM ablation rows alone")
    parser.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    print("\n".join(mlm_rows(args.workdir)[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
