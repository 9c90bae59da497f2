"""Fixtures for the image tests (marked `container`): the base, made once and cached under
var/, and the `serve` image, built once per session and removed after it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.deploy import podman
from tests.deploy.dockerfile import ROOT

BASE_CACHE = ROOT / "var" / "container-base"


@pytest.fixture(scope="session")
def python_base() -> str:
    reason = podman.unavailable()
    if reason:
        pytest.skip(f"images are not built here: {reason}")
    return podman.base_image(BASE_CACHE)


@pytest.fixture(scope="session")
def serve_image(python_base: str, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[podman.Image]:
    tag = "localhost/xmodal-test:serve"
    podman.build("serve", tag, python_base, tmp_path_factory.mktemp("build-serve"))
    yield podman.Image(tag)
    podman.remove(tag)
