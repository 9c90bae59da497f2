"""The `train` image, built with podman on the local Python 3.11 base where this machine's
pip configuration offers the CPU build of the pinned torch (so the CPU wheel index is not
needed), then run read-only to train a few steps of a preset into /tmp."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy import podman
from tests.deploy.dockerfile import ROOT

pytestmark = [pytest.mark.container, pytest.mark.container_train, pytest.mark.timeout(2400)]

TORCH_PIN_RE = re.compile(r'"torch==([\w.]+)"')
STEPS = 3
TRAIN = ["xmodal", "train", "--preset", "albef-scratch", "--steps", str(STEPS),
         "--train-size", "32", "--batch-size", "8", "--no-progress", "--out", "/tmp/checkpoint"]
RUN_S = 600


def _pinned_torch() -> str:
    (version,) = TORCH_PIN_RE.findall((ROOT / "pyproject.toml").read_text())
    return version


@pytest.fixture(scope="module")
def train_image(python_base: str, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[podman.Image]:
    torch = f"torch-{_pinned_torch()}+cpu"
    if not podman.offers(podman.pip_settings(), "torch", torch):
        pytest.skip(f"{torch} is not offered by this machine's pip configuration: the build "
                    "would need the PyTorch CPU wheel index")
    tag = "localhost/xmodal-test:train"
    podman.build("train", tag, python_base, tmp_path_factory.mktemp("build-train"),
                 {"TORCH_INDEX_URL": ""})
    yield podman.Image(tag)
    podman.remove(tag)


def _run(image: podman.Image, work: Path, argv: list[str]) -> podman.Booted:
    with podman.boot(image, work, argv=argv) as booted:
        deadline = time.monotonic() + RUN_S
        while booted.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
    assert booted.process.returncode == 0, booted.output()
    return booted


def test_it_trains_a_preset_with_a_read_only_root(train_image: podman.Image,
                                                  tmp_path: Path) -> None:
    booted = _run(train_image, tmp_path / "train", TRAIN)
    checkpoint = booted.tmp / "checkpoint"
    assert (checkpoint / "model.safetensors").stat().st_size > 0
    steps = [json.loads(line).get("step") for line in (checkpoint / "log.jsonl").open()]
    assert max(steps) == STEPS - 1, steps  # steps count from 0


def test_it_holds_the_cpu_torch_and_the_probe_tools(train_image: podman.Image,
                                                    tmp_path: Path) -> None:
    probe = "import torch; print('torch', torch.__version__, torch.cuda.is_available())"
    booted = _run(train_image, tmp_path / "probe",
                  ["sh", "-c", f'python -c "{probe}" && command -v wget'])
    assert f"torch {_pinned_torch()}+cpu False" in booted.output(), booted.output()
    assert "/usr/bin/wget" in booted.output()  # KubeRay's default probes call it
