"""The GPU check: every GPU path of xmodal, measured in one bounded run.

Steps (bench.gpu_check_index, bench.gpu_check_models): GPU FAISS Flat and the GPU-eligible auto
index (QPS, recall@10 against CPU exact search); the GPU over-fetch filter path against the CPU
selector path; the engine under the CUDA execution provider at fp32 and fp16 against the CPU
engine; AMP training steps against CPU steps; `xmodal serve` with batching on and off. Each step
runs in its own process under its own time bound (a hung CUDA call or server ends that step,
not the run) and measures its CPU reference first, so on a machine without a GPU the GPU parts
are reported as skipped, with the reason, beside CPU figures that still mean something.

Everything goes to `--out`: `gpu.md` (the report) and `gpu.json`; scratch files go to
`--work`, since only a few files come back from a lent GPU machine. `bench/gpu_check.sh` makes
the environment and runs this; `make gpu-check` runs that.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONFIG_FILE = "config.json"
STEPS = ("faiss", "filter", "engine", "train", "serve")
# per-step bounds in seconds, sized so the sum of what the steps take at full size stays well
# under the 10 minutes one command may run on a lent GPU machine (a second try must fit too)
LIMITS = {"prepare": 180, "faiss": 200, "filter": 120, "engine": 150, "train": 150, "serve": 150}
TOTAL_S = 540
MIN_STEP_S = 20  # a step started with less than this left could not finish: skipped instead
PACKAGES = ("numpy", "faiss-cpu", "faiss-gpu-cu12", "onnxruntime", "onnxruntime-gpu", "torch")


@dataclass(frozen=True)
class CheckConfig:
    out: Path  # gpu.md and gpu.json
    work: Path  # scratch: bundles, trainings, each step's result
    engine: Path = Path("var/demo/engine")
    index: Path = Path("var/demo/index")
    n: int = 1_000_000  # vectors in the FAISS step
    dim: int = 512
    queries: int = 1000  # tuning and evaluation queries (each set)
    recall: float = 0.95  # recall@10 target the auto index is tuned to
    filter_n: int = 200_000  # vectors in the filter step's index bundle
    factory: str | None = None  # FAISS factory of the auto index and the filter bundle
    batches: tuple[int, ...] = (1, 256)  # engine batch sizes
    train_steps: int = 200  # AMP steps on the GPU
    cpu_train_steps: int = 20  # the CPU reference needs fewer to give steps/s
    train_size: int = 4000
    batch_size: int = 128
    serve_clients: int = 32
    serve_requests: int = 600  # per run, at most
    serve_seconds: float = 3.0  # per run, at most
    seconds: float = 1.0  # per speed measurement
    hide_gpu: bool = False  # CUDA_VISIBLE_DEVICES='' for every step: the CPU path anywhere
    standin: bool = False  # no engine at `engine`: make the shapes demo and use its engine
    steps: tuple[str, ...] = STEPS
    limits: dict[str, float] = field(default_factory=lambda: dict(LIMITS))
    total_s: float = TOTAL_S

    def to_json(self) -> str:
        return json.dumps({k: str(v) if isinstance(v, Path) else v
                           for k, v in dataclasses.asdict(self).items()}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> CheckConfig:
        data = json.loads(text)
        paths = {f.name for f in dataclasses.fields(cls) if f.type == "Path"}
        tuples = {"batches", "steps"}
        return cls(**{k: Path(v) if k in paths else tuple(v) if k in tuples else v
                      for k, v in data.items()})


@dataclass
class Outcome:
    """One step's result: goal, figures, checks and what was skipped (and why)."""

    step: str
    goal: str
    headline: str = ""  # the measured figure the summary shows
    checks: list[dict[str, Any]] = field(default_factory=list)  # {"name", "ok"}
    skipped: list[str] = field(default_factory=list)  # reasons a part did not run
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    limit_s: float = 0.0

    def check(self, name: str, ok: bool) -> bool:
        self.checks.append({"name": name, "ok": bool(ok)})
        return bool(ok)

    def skip(self, reason: str) -> None:
        self.skipped.append(reason)

    def fail(self, reason: str) -> None:
        self.check(reason, False)

    @property
    def verdict(self) -> str:
        if any(not c["ok"] for c in self.checks):
            return "fail"
        return "skipped" if self.skipped else "pass"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"verdict": self.verdict}


# -- what a step can use ----------------------------------------------------------------------

def faiss_gpu_missing() -> str | None:
    """Why FAISS cannot search on a GPU here, or None when it can."""
    import faiss

    if not hasattr(faiss, "StandardGpuResources"):
        return (f"no GPU FAISS: faiss {faiss.__version__} is a CPU build (the gpu extra "
                "installs faiss-gpu-cu12)")
    if faiss.get_num_gpus() == 0:
        return f"no GPU: faiss {faiss.__version__} (a GPU build) sees 0 GPUs"
    return None


def cuda_provider_missing() -> str | None:
    """Why ONNX Runtime cannot offer the CUDA execution provider, or None when it can (a
    session may still fall back to CPU; the engine step checks where its sessions run)."""
    import onnxruntime as ort

    offered = ort.get_available_providers()
    if "CUDAExecutionProvider" not in offered:
        return (f"no GPU: onnxruntime {ort.__version__} offers no CUDAExecutionProvider "
                f"(offers {', '.join(offered)}; the gpu extra installs onnxruntime-gpu)")
    return None


def torch_cuda_missing() -> str | None:
    import torch

    if not torch.cuda.is_available():
        return f"no GPU: torch {torch.__version__} sees no CUDA device (torch.cuda.is_available() is False)"
    return None


def rate(run: Any, items: int, min_s: float) -> float:
    """Items per second of `run()`: one warm-up call, then calls until `min_s` have passed."""
    run()
    calls, started = 0, time.perf_counter()
    while calls == 0 or time.perf_counter() - started < min_s:
        run()
        calls += 1
    return items * calls / (time.perf_counter() - started)


# -- running the steps ------------------------------------------------------------------------

def _step_function(name: str) -> Any:
    from bench import gpu_check_index, gpu_check_models

    return {"faiss": gpu_check_index.faiss_step, "filter": gpu_check_index.filter_step,
            "engine": gpu_check_models.engine_step, "train": gpu_check_models.train_step,
            "serve": gpu_check_models.serve_step, "prepare": gpu_check_models.prepare_standin}[name]


def child(name: str, config: Path) -> int:
    """Run one step in this process and write its outcome beside the config."""
    cfg = CheckConfig.from_json(config.read_text())
    outcome = Outcome(name, "")
    # an error ends the step, not the run, and keeps what the step measured before it
    try:
        _step_function(name)(cfg, outcome)
    except ModuleNotFoundError as exc:  # a bare machine may lack a package: say which
        outcome.skip(f"missing package {exc.name!r}: {exc}")
    except Exception as exc:  # noqa: BLE001 - any error is this step's result, not the run's
        outcome.fail(f"error: {type(exc).__name__}: {str(exc)[:600]}")
    tmp = cfg.work / f"{name}.json.tmp"
    tmp.write_text(json.dumps(outcome.to_dict(), indent=1, default=str) + "\n")
    os.replace(tmp, cfg.work / f"{name}.json")
    return 0


def _run_child(name: str, cfg: CheckConfig, limit: float) -> dict[str, Any]:
    result = cfg.work / f"{name}.json"
    result.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"} | ({"CUDA_VISIBLE_DEVICES": ""} if cfg.hide_gpu else {})
    started = time.perf_counter()
    # a session of its own: on timeout the whole group goes, servers the step started included
    proc = subprocess.Popen([sys.executable, "-m", "bench.gpu_check", "--child", name,
                             "--work", str(cfg.work)], cwd=REPO, env=env, start_new_session=True)
    try:
        proc.wait(timeout=limit)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
    _kill_group(proc)
    if timed_out:
        out = Outcome(name, "", checks=[{"name": f"timed out after its bound of {limit:.0f} s",
                                         "ok": False}]).to_dict()
    elif result.is_file():
        out = json.loads(result.read_text())
    else:
        out = Outcome(name, "", checks=[{"name": f"exited with status {proc.returncode} before "
                                         "writing a result (see the log)", "ok": False}]).to_dict()
    return out | {"seconds": round(time.perf_counter() - started, 1), "limit_s": round(limit)}


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _prepare(cfg: CheckConfig, deadline: float) -> tuple[CheckConfig, dict[str, Any] | None]:
    """With --standin and no engine: the shapes demo's engine and index, labelled as such."""
    if not cfg.standin or cfg.engine.is_dir():
        return cfg, None
    done = _run_child("prepare", cfg, min(cfg.limits["prepare"], deadline - time.monotonic()))
    demo = cfg.work / "standin"
    if (demo / "engine").is_dir():
        cfg = dataclasses.replace(cfg, engine=demo / "engine", index=demo / "index")
        (cfg.work / CONFIG_FILE).write_text(cfg.to_json())
    return cfg, done


def run_all(cfg: CheckConfig) -> list[dict[str, Any]]:
    cfg.work.mkdir(parents=True, exist_ok=True)
    (cfg.work / CONFIG_FILE).write_text(cfg.to_json())
    deadline = time.monotonic() + cfg.total_s
    cfg, prepared = _prepare(cfg, deadline)
    results = [prepared] if prepared else []
    for name in cfg.steps:
        left = deadline - time.monotonic()
        if left < MIN_STEP_S:
            why = f"out of time: {left:.0f} s of the run's {cfg.total_s:.0f} s were left"
            results.append(Outcome(name, "", skipped=[why]).to_dict())
            continue
        print(f"== gpu check: {name} (bound {min(cfg.limits[name], left):.0f} s)", flush=True)
        results.append(_run_child(name, cfg, min(cfg.limits[name], left)))
    return results


# -- the report -------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    """What the run ran on: host, CPU cores, GPUs (nvidia-smi), package versions."""
    gpus = "none found (no nvidia-smi)"
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
        done = subprocess.run(query, capture_output=True, text=True, timeout=30, check=False)
        gpus = done.stdout.strip().replace("\n", "; ") or f"nvidia-smi failed: {done.stderr.strip()[:200]}"
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {"host": platform.node(), "platform": platform.platform(), "python": platform.python_version(),
            "cpu_cores": os.cpu_count(), "gpus": gpus, "packages": versions,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return "—" if value is None else " ".join(str(value).split()).replace("|", "\\|")


def _table(rows: list[dict[str, Any]]) -> list[str]:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
    return lines + ["| " + " | ".join(_cell(r.get(k)) for k in keys) + " |" for r in rows]


def _result(step: dict[str, Any]) -> str:
    failed = [c["name"] for c in step["checks"] if not c["ok"]]
    why = failed if step["verdict"] == "fail" else step["skipped"]
    return step["verdict"] + (": " + "; ".join(why) if why else "")


def render(results: list[dict[str, Any]], cfg: CheckConfig, host: dict[str, Any]) -> str:
    pkgs = ", ".join(f"{k} {v}" for k, v in host["packages"].items())
    lines = ["# xmodal GPU check", "",
             (f"Ran {host['date']} on {host['host']} ({host['platform']}, Python {host['python']}, "
              f"{host['cpu_cores']} CPU cores); GPUs: {host['gpus']}; {pkgs}."),
             (f"Sizes: FAISS {cfg.n:,} × {cfg.dim}, {cfg.queries:,} queries; filter bundle "
              f"{cfg.filter_n:,} vectors; engine {cfg.engine}, batches "
              f"{', '.join(map(str, cfg.batches))}; {cfg.train_steps} GPU / {cfg.cpu_train_steps} "
              f"CPU training steps; serve {cfg.serve_clients} clients, index {cfg.index}."), "",
             "| step | goal | measured | seconds (bound) | result |", "| --- | --- | --- | --- | --- |"]
    for r in results:
        lines.append(f"| {r['step']} | {_cell(r['goal'])} | {_cell(r['headline'])} | "
                     f"{r['seconds']} ({r['limit_s']}) | {_cell(_result(r))} |")
    for r in results:
        lines += ["", f"## {r['step']}", ""]
        lines += [f"- check {'passed' if c['ok'] else 'FAILED'}: {c['name']}" for c in r["checks"]]
        lines += [f"- skipped: {s}" for s in r["skipped"]]
        lines += [f"- {n}" for n in r["notes"]]
        for title, rows in r["tables"].items():
            lines += ["", f"{title}:", ""] + (_table(rows) if rows else ["(none)"])
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.splitlines()[0])
    d = CheckConfig(Path("."), Path("."))
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "var/gpu-check")))
    p.add_argument("--work", type=Path, help="scratch folder (default: a new temporary one)")
    p.add_argument("--child", choices=(*STEPS, "prepare"), help=argparse.SUPPRESS)
    for name in ("engine", "index"):
        p.add_argument(f"--{name}", type=Path, default=getattr(d, name))
    for name in ("n", "dim", "queries", "filter_n", "train_steps", "cpu_train_steps", "train_size",
                 "batch_size", "serve_clients", "serve_requests"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    for name in ("recall", "serve_seconds", "seconds", "total_s"):
        p.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(d, name))
    p.add_argument("--factory", help="FAISS factory string of the auto index and the filter "
                   "bundle (default: chosen for their sizes as for a GPU)")
    p.add_argument("--batches", type=int, nargs="+", default=list(d.batches))
    p.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    p.add_argument("--limit", action="append", default=[], metavar="STEP=SECONDS",
                   help="another time bound for a step")
    p.add_argument("--hide-gpu", action="store_true", help="run every step as on a CPU machine")
    p.add_argument("--standin", action="store_true",
                   help="no engine bundle at --engine: make the shapes demo and check its engine")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.child:
        return child(args.child, args.work / CONFIG_FILE)
    limits = LIMITS | {k: float(v) for k, v in (item.split("=", 1) for item in args.limit)}
    names = {f.name for f in dataclasses.fields(CheckConfig)}
    values = {k: v for k, v in vars(args).items() if k in names}
    values |= {"batches": tuple(args.batches), "steps": tuple(args.steps), "limits": limits,
               "work": args.work or Path(tempfile.mkdtemp(prefix="xmodal-gpu-check-"))}
    cfg = CheckConfig(**values)
    results = run_all(cfg)
    host = machine()
    cfg.out.mkdir(parents=True, exist_ok=True)
    report = render(results, CheckConfig.from_json((cfg.work / CONFIG_FILE).read_text()), host)
    (cfg.out / "gpu.md").write_text(report)
    (cfg.out / "gpu.json").write_text(json.dumps({"machine": host, "steps": results}, indent=1) + "\n")
    print(report)
    return 1 if any(r["verdict"] == "fail" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
