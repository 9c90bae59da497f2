"""The `serve` image, built with podman on a local Python 3.11 base and booted as a runtime
would boot it (tests/deploy/podman.py): read-only root, the demo bundles at /bundles, its own
CMD, ENV and USER. Its size and start-to-ready time are written to var/container/serve.json
(the figures in deploy/README.md)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy import podman
from tests.deploy.dockerfile import ROOT
from xmodal.demo import DemoPaths

pytestmark = [pytest.mark.container, pytest.mark.timeout(1800)]

STARTUP_S = 120
# Debian's python3.11 base is ~200 MB, the serving environment ~360 MB; torch would add ~700
MAX_IMAGE_BYTES = 768 * 2**20
FIGURES = ROOT / "var" / "container" / "serve.json"


def _wait_ready(booted: podman.Booted, port: int) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        assert booted.process.poll() is None, f"the image's CMD exited:\n{booted.output()}"
        if booted.http(port, "/readyz")[0] == 200:
            return
        time.sleep(0.2)
    raise AssertionError(f"not ready within {STARTUP_S}s:\n{booted.output()}")


def _bundles_for_the_image(demo: DemoPaths, dest: Path) -> Path:
    """The demo's engine and index where the image's user can read them: a test's temporary
    folders are private to the user running the tests, as bundles on a server would not be."""
    for name in ("engine", "index"):
        shutil.copytree(demo.root / name, dest / name, symlinks=True)
    for path in [dest, *dest.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | (0o055 if path.is_dir() else 0o044))
    return dest


@pytest.fixture(scope="module")
def serving(serve_image: podman.Image, demo: DemoPaths,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[podman.Booted, float]]:
    """The image started with its own CMD; the seconds from start to /readyz answering 200."""
    bundles = _bundles_for_the_image(demo, tmp_path_factory.mktemp("bundles"))
    start = time.monotonic()
    with podman.boot(serve_image, tmp_path_factory.mktemp("serve-root"),
                     bundles=bundles) as booted:
        _wait_ready(booted, serve_image.exposed_ports[0])
        yield booted, time.monotonic() - start


def test_it_serves_the_mounted_bundles(serving: tuple[podman.Booted, float],
                                       serve_image: podman.Image, demo: DemoPaths) -> None:
    booted, _ = serving
    (port,) = serve_image.exposed_ports  # the port it really listens on, from its own ENV
    assert booted.http(port, "/healthz") == (200, {"status": "ok"})
    status, ready = booted.http(port, "/readyz")
    current = (demo.index / "CURRENT").read_text().strip()
    assert status == 200 and ready["index_version"] == current, ready
    status, answer = booted.http(port, "/v1/search/text", {"text": "a red circle", "k": 3})
    assert status == 200 and len(answer["results"]) == 3, answer
    assert answer["index_version"] == current


def test_its_healthcheck_passes_and_fails_without_a_service(
        serving: tuple[podman.Booted, float], serve_image: podman.Image) -> None:
    booted, _ = serving
    command = serve_image.healthcheck
    result = booted.exec(command)
    assert result.returncode == 0, result.stderr
    unserved = booted.exec(["env", "XMODAL_PORT=1", *command])
    assert unserved.returncode == 1, unserved.stderr


def test_torch_is_not_in_it(serving: tuple[podman.Booted, float]) -> None:
    booted, _ = serving
    result = booted.exec(["python", "-c", "import torch"])
    assert result.returncode == 1 and "No module named 'torch'" in result.stderr, result.stderr
    assert booted.exec(["python", "-c", "import onnxruntime, faiss"]).returncode == 0


def test_it_serves_with_nothing_writable_but_tmp(serving: tuple[podman.Booted, float]) -> None:
    booted, _ = serving
    for path in ("/probe", "/opt/venv/probe", "/bundles/probe"):
        result = booted.exec(["python", "-c", f"open({path!r}, 'w')"])
        assert "Read-only file system" in result.stderr, (path, result.stderr)
    assert booted.exec(["python", "-c", "open('/tmp/probe', 'w')"]).returncode == 0
    assert booted.process.poll() is None, "the service stopped"


def test_its_size_and_start_up_are_recorded(serving: tuple[podman.Booted, float],
                                            serve_image: podman.Image) -> None:
    _, ready_s = serving
    assert serve_image.size < MAX_IMAGE_BYTES, f"{serve_image.size / 2**20:.0f} MiB"
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text(json.dumps({"image_mib": round(serve_image.size / 2**20),
                                   "start_to_ready_s": round(ready_s, 1)}) + "\n")
