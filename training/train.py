"""The training loop; `main(argv)` is the CLI edge, so tests run a real tiny training.

AdamW with linear warmup and cosine decay, gradient clipping and accumulation, mixed
precision on GPU (never on CPU), optional FLIP patch dropping, ITC (+ momentum distillation)
for every model, ITM with hard negatives for models with a matching head and, asked for with
`--objectives itc,itm,mlm`, image-conditioned masked language modelling (training.mlm).
State is saved every `save_every` steps and a rerun with the same `--out` resumes from it,
reproducing an uninterrupted run exactly. Writes `log.jsonl`, `curves.png` and a safetensors checkpoint
with the config needed to rebuild the model. `--init FOLDER` trains an imported Hugging Face
or OpenCLIP model instead (`training.fine_tune`), SigLIP with its sigmoid loss, and writes it
back in its own format.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from encoders.checkpoint import Checkpoint, save_checkpoint
from encoders.config import load_config
from encoders.models import build_model
from encoders.preprocess import ImagePreprocess
from encoders.source import Imported
from encoders.tokenizer import TextTokenizer
from training.batches import Batches, tokenizer_for_data
from training.curves import plot_curves
from training.evaluate import evaluate
from training.forward import student_outputs
from training.losses import itc_loss, itm_loss, sigmoid_loss
from training.mlm import MlmSpec, mlm_spec, mlm_step, parse_objectives
from training.momentum import MomentumTeacher
from training.options import TrainConfig, add_arguments, config_from_args
from training.schedule import warmup_cosine
from training.sources import PairData, load_sources
from training.state import TrainState, load_state, save_state

log = logging.getLogger(__name__)

LOG_FILE, CURVES_FILE, RUN_CONFIG = "log.jsonl", "curves.png", "train_config.json"
VAL_SIZE = 200
# fields that may differ between a run and its resumption
_RESUME_FREE = {"crash_at", "progress", "log_every", "threads"}


class TrainingInterrupted(RuntimeError):
    """Raised at `crash_at`: the run stops as if killed, leaving its last saved state."""


def _lr_at(step: int, cfg: TrainConfig) -> float:
    return warmup_cosine(step, cfg.steps, cfg.lr, cfg.warmup_steps)


def _check_resumable(cfg: TrainConfig, out: Path) -> None:
    """A rerun into the same folder must be the same run; refuse to mix two configurations."""
    mine = {k: str(v) for k, v in dataclasses.asdict(cfg).items() if k not in _RESUME_FREE}
    path = out / RUN_CONFIG
    if path.is_file():
        theirs = json.loads(path.read_text())
        diff = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
        if diff:
            raise ValueError(f"{out} holds a run with other settings ({', '.join(diff)}); "
                             "use another --out or the same settings to resume")
    else:
        path.write_text(json.dumps(mine, indent=1) + "\n")


def _micro_loss(model: torch.nn.Module, teacher: MomentumTeacher | None, batch: dict,
                cfg: TrainConfig, gen: torch.Generator,
                mlm: tuple[MlmSpec, torch.Generator] | None = None
                ) -> tuple[torch.Tensor, dict[str, float]]:
    out = student_outputs(model, batch["pixels"], batch["ids"], batch["mask"], cfg.patch_keep, gen)
    feats = teacher.features(batch["pixels"], batch["ids"], batch["mask"]) if teacher else None
    if "logit_bias" in out:  # SigLIP: each pair scored on its own; duplicate captions match
        contrastive, name = sigmoid_loss(**out, same=batch["same"]), "sigmoid"
    else:
        contrastive, name = itc_loss(**out, teacher=feats, alpha=cfg.alpha), "itc"
    parts = {name: contrastive.item()}
    loss = contrastive
    if "image_tokens" in out and cfg.itm_weight > 0 and "itm" in parse_objectives(cfg.objectives):
        itm = itm_loss(model.itm_logits, ids=batch["ids"], mask=batch["mask"], same=batch["same"],
                       extra_negatives=batch["negatives"], generator=gen, **out)
        parts["itm"] = itm.item()
        loss = loss + cfg.itm_weight * itm
    if mlm is not None:
        masked = mlm_step(model, teacher, out["image_tokens"], batch, *mlm, cfg.alpha)
        parts["mlm"] = masked.item()
        loss = loss + cfg.mlm_weight * masked
    if teacher is not None:
        b = batch["ids"].shape[0]
        teacher.enqueue(feats["image_feats"][:b], feats["text_feats"][:b])
    return loss, parts


@torch.no_grad()
def _recall(model: torch.nn.Module, val: dict) -> dict:
    model.eval()
    images = torch.cat([model.encode_image(p) for p in val["pixels"].split(64)])
    texts = torch.cat([model.encode_text(i, m) for i, m in zip(val["ids"].split(64), val["mask"].split(64))])
    model.train()
    return evaluate(images.float().cpu().numpy(), texts.float().cpu().numpy(), val["text_to_image"])


def _optimizer_step(state: TrainState, cfg: TrainConfig, step: int) -> None:
    for group in state.optimizer.param_groups:
        group["lr"] = _lr_at(step, cfg)
    if state.scaler is not None:
        state.scaler.unscale_(state.optimizer)
    torch.nn.utils.clip_grad_norm_(state.model.parameters(), cfg.grad_clip)
    if state.scaler is not None:
        state.scaler.step(state.optimizer)
        state.scaler.update()
    else:
        state.optimizer.step()
    state.optimizer.zero_grad(set_to_none=True)
    if state.teacher is not None:
        state.teacher.update(state.model)


@dataclass
class _Built:
    """What the loop trains and how its result is written."""

    model: torch.nn.Module
    tokenizer: TextTokenizer
    data: PairData
    val: PairData | None
    embed_dim: int
    info: dict[str, Any]  # carried into the checkpoint, then the engine manifest
    finish: Callable[[torch.nn.Module, dict[str, Any], Path], Any]  # trained model -> result
    mlm: MlmSpec | None = None  # set when the objectives include mlm


def _native(cfg: TrainConfig) -> _Built:
    model_cfg = load_config(cfg.model)
    size = model_cfg.vision.image_size if hasattr(model_cfg, "vision") else model_cfg.image_size
    spec = ImagePreprocess(size=size)
    data = load_sources(cfg.data, cfg.train_size, cfg.seed, cfg.render_size, spec)
    val = load_sources(cfg.data.split(",")[0], VAL_SIZE, cfg.seed, cfg.render_size, spec,
                       split="val") if cfg.eval_every else None
    wanted = parse_objectives(cfg.objectives)
    tokenizer, model_cfg = tokenizer_for_data(model_cfg, data, val, mask="mlm" in wanted)
    model = build_model(model_cfg).train()
    mlm = mlm_spec(model, tokenizer) if "mlm" in wanted else None
    info = {"data": data.names, "steps": cfg.steps, "batch_size": cfg.batch_size,
            "objectives": ["itc"] + (["itm"] if hasattr(model, "itm_logits") and "itm" in wanted else [])
            + (["mlm"] if mlm else []) + (["momentum distillation"] if cfg.distill else [])}

    def finish(trained: torch.nn.Module, info: dict[str, Any], out: Path) -> Checkpoint:
        ckpt = Checkpoint(trained, tokenizer, spec, info)
        save_checkpoint(out, ckpt)
        return ckpt

    return _Built(model, tokenizer, data, val, model_cfg.embed_dim, info, finish, mlm)


def _imported(cfg: TrainConfig) -> _Built:
    from training.fine_tune import setup_fine_tune

    if "mlm" in parse_objectives(cfg.objectives):
        raise ValueError("mlm trains the native fusion models; an imported model (--init) has "
                         "no MLM head here")

    ft = setup_fine_tune(cfg, VAL_SIZE)

    def finish(trained: torch.nn.Module, info: dict[str, Any], out: Path) -> Imported:
        ft.imported.save(out, info)  # the wrapper trained the imported model's own weights
        return ft.imported

    return _Built(ft.model, ft.tokenizer, ft.data, ft.val, ft.imported.exportable.embed_dim,
                  ft.info, finish)


def _setup(cfg: TrainConfig) -> tuple[TrainState, Batches, dict | None, _Built]:
    torch.manual_seed(cfg.seed)
    built = _imported(cfg) if cfg.init else _native(cfg)
    model = built.model
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    teacher = MomentumTeacher(model, built.embed_dim, cfg.queue_size, cfg.momentum) if cfg.distill else None
    trainable = [p for p in model.parameters() if p.requires_grad]  # less a frozen tower
    state = TrainState(
        model=model,
        optimizer=torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay),
        generator=torch.Generator().manual_seed(cfg.seed),
        teacher=teacher,
        scaler=torch.amp.GradScaler("cuda") if device.type == "cuda" else None,
    )
    batches = Batches(built.data, built.tokenizer, device)
    return state, batches, (batches.validation(built.val) if built.val else None), built


def _open_log(out: Path, start: int):
    """Keep the log lines of completed steps only, so a resumed run's log matches a clean one."""
    path = out / LOG_FILE
    kept = []
    if start and path.is_file():
        kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] < start]
    handle = open(path, "w")  # noqa: SIM115 - closed by the caller's `with`
    handle.write("".join(line + "\n" for line in kept))
    return handle


def train(cfg: TrainConfig) -> Checkpoint | Imported:
    """Train (or resume training) into `cfg.out`; returns the final checkpoint (for `--init`,
    the fine-tuned imported model, written in its own format)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        if not cfg.init and load_config(cfg.model).family == "lit":
            from training.lit_train import train_lit

            if "mlm" in parse_objectives(cfg.objectives):
                raise ValueError("mlm needs a fusion model that encodes the caption itself; "
                                 "the lit reranker reads fixed MiniLM features")
            return train_lit(cfg)
        return _train(cfg)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: TrainConfig) -> Checkpoint | Imported:
    if cfg.batch_size % cfg.accum_steps:
        raise ValueError("batch_size must be a multiple of accum_steps")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    _check_resumable(cfg, out)
    state, batches, val, built = _setup(cfg)
    start = load_state(out, state)
    if start:
        log.info("resuming %s after step %d", out, start)
    micro = cfg.batch_size // cfg.accum_steps
    amp = state.scaler is not None
    started = time.perf_counter()
    record: dict = {}
    with _open_log(out, start) as log_file, tqdm(total=cfg.steps, initial=start, disable=not cfg.progress,
                                                 desc="train") as bar:
        for step in range(start, cfg.steps):
            parts_sum: dict[str, float] = {}
            # masks drawn from their own generator, seeded by the step: a run with MLM sees the
            # same batches and negatives as one without, and a resumed run the same masks
            mlm = (built.mlm, torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)) \
                if built.mlm else None
            for _ in range(cfg.accum_steps):
                batch = batches.sample(micro, state.generator)
                with torch.autocast("cuda", enabled=amp):
                    loss, parts = _micro_loss(state.model, state.teacher, batch, cfg,
                                              state.generator, mlm)
                scaled = loss / cfg.accum_steps
                (state.scaler.scale(scaled) if amp else scaled).backward()
                for k, v in parts.items():
                    parts_sum[k] = parts_sum.get(k, 0.0) + v / cfg.accum_steps
            _optimizer_step(state, cfg, step)
            record = {"step": step, "loss": round(sum(parts_sum.values()), 5),
                      **{k: round(v, 5) for k, v in parts_sum.items()}, "lr": _lr_at(step, cfg)}
            done = step + 1
            if val is not None and (done % cfg.eval_every == 0 or done == cfg.steps):
                record["recall"] = _recall(state.model, val)
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()
            bar.update(1)
            bar.set_postfix(loss=record["loss"])
            if done % cfg.log_every == 0 or done == cfg.steps:
                log.info("step %d/%d loss %.4f (%.0fs)", done, cfg.steps, record["loss"],
                         time.perf_counter() - started)
            if (cfg.save_every and done % cfg.save_every == 0) or done == cfg.steps:
                save_state(out, done, state)
            if step == cfg.crash_at:
                raise TrainingInterrupted(f"stopped after step {step} (crash_at)")
    info = built.info | {"final_loss": record.get("loss"),
                         "seconds_this_run": round(time.perf_counter() - started, 1),
                         "val_recall": record.get("recall")}
    result = built.finish(state.model.cpu().eval(), info, out)
    plot_curves(out / LOG_FILE, out / CURVES_FILE)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xmodal train", description=__doc__.splitlines()[0])
    add_arguments(parser)
    cfg = config_from_args(parser.parse_args(argv))
    train(cfg)
    print(f"checkpoint written to {cfg.out}")
    return 0
