"""The serving image's Python environment, without Docker: the wheel built from the same
build context, installed with the same extras into a fresh virtual environment, must hold no
torch and serve the demo bundles, with the image's health check passing against it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bench.load import free_port
from tests.deploy import dockerfile
from tests.deploy.manifests import DEPLOY, PREFIX
from xmodal.demo import DemoPaths

STARTUP_S = 120
PIP_TIMEOUT_S = 600


def _pip(python: Path, *args: str, cwd: Path) -> None:
    subprocess.run([str(python), "-m", "pip", "--quiet", *args], cwd=cwd, check=True,
                   timeout=PIP_TIMEOUT_S)


def _serving_venv(root: Path) -> Path:
    """Build the wheel from the wheel stage's context; install it as the serving image does."""
    stages = dockerfile.stages()
    chain = dockerfile.chain(stages, stages[-1].name)
    extras = sorted(set().union(*(s.pip_extras() for s in chain)))
    context = dockerfile.copy_context(dockerfile.by_name(stages)["wheel"], root / "context")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    python = root / "venv" / "bin" / "python"
    _pip(python, "wheel", "--no-deps", "--wheel-dir", str(root / "wheels"), str(context),
         cwd=root)
    (wheel,) = (root / "wheels").glob("xmodal-*.whl")
    _pip(python, "install", f"{wheel}[{','.join(extras)}]", cwd=root)
    return python


def _image_env(demo: DemoPaths, port: int) -> dict[str, str]:
    """The serving stage's ENV with the bundles and the address of this machine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX) and k != "PYTHONPATH"}
    env |= {k: v for k, v in dockerfile.stages()[-1].env().items() if k.startswith(PREFIX)}
    env |= {"XMODAL_ENGINE_DIR": str(demo.engine), "XMODAL_INDEX_DIR": str(demo.index),
            "XMODAL_HOST": "127.0.0.1", "XMODAL_PORT": str(port)}
    return env


def _wait_ready(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        assert server.poll() is None, f"xmodal serve exited:\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"not ready within {STARTUP_S}s")


def _healthcheck(python: Path, env: dict[str, str], cwd: Path) -> int:
    return subprocess.run([str(python), str(DEPLOY / "healthcheck.py")], env=env, cwd=cwd,
                          capture_output=True, timeout=30, check=False).returncode


@pytest.mark.timeout(900)
def test_serve_extra_alone_installs_and_serves(demo: DemoPaths, tmp_path: Path) -> None:
    python = _serving_venv(tmp_path)
    probe = ("import importlib.util, json, service; print(json.dumps("
             "[importlib.util.find_spec('torch') is not None, service.__file__]))")
    has_torch, service_file = json.loads(subprocess.run(
        [str(python), "-c", probe], cwd=tmp_path, capture_output=True, text=True,
        check=True).stdout)
    assert not has_torch, "the serve extra pulled torch in"
    assert Path(service_file).is_relative_to(tmp_path / "venv"), service_file

    port = free_port()
    env = _image_env(demo, port)
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen([str(python.parent / "xmodal"), "serve"], env=env,
                                  cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_ready(url, server, log)
        request = urllib.request.Request(
            f"{url}/v1/search/text", data=json.dumps({"text": "a red circle", "k": 3}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert len(json.loads(response.read())["results"]) == 3
        assert _healthcheck(python, env, tmp_path) == 0
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert _healthcheck(python, env, tmp_path) == 1  # nothing listening: unhealthy
