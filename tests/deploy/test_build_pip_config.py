"""What the image builds are handed of this machine's pip configuration: the pip.conf secret
and the local folders and files it names, mounted at the same paths (tests/deploy/podman.py)."""

from __future__ import annotations

import configparser
from pathlib import Path

from tests.deploy import podman


def _machine(tmp_path: Path) -> dict[str, str]:
    for folder in ("mirror/simple/torch", "mirror/files", "wheels"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "mirror/simple/torch/index.html").write_text(
        '<a href="../../files/torch-2.14.1-cp311.whl">torch-2.14.1-cp311.whl</a>')
    (tmp_path / "wheels/torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl").write_bytes(b"")
    (tmp_path / "constraints.txt").write_text("torch<=2.14.1\n")
    return {"global.extra-index-url": f"file://{tmp_path}/mirror/simple https://example.org/s",
            "global.find-links": str(tmp_path / "wheels"),
            "global.constraint": str(tmp_path / "constraints.txt"),
            "global.default-timeout": "180", "install.no-compile": "1"}


def test_the_secret_is_a_pip_conf_with_every_setting(tmp_path: Path) -> None:
    settings = _machine(tmp_path)
    parser = configparser.ConfigParser()
    parser.read_string(podman.pip_conf(settings))
    read = {f"{s}.{k}": v for s in parser.sections() for k, v in parser[s].items()}
    assert read == settings


def test_local_indexes_are_mounted_with_the_files_their_pages_link(tmp_path: Path) -> None:
    mounts = podman.local_paths(_machine(tmp_path))
    # the index's parent (its pages link ../../files), the wheel folder, the constraints
    assert mounts == [tmp_path / "constraints.txt", tmp_path / "mirror", tmp_path / "wheels"]


def test_a_cpu_torch_is_found_in_a_wheel_folder_or_an_index_page(tmp_path: Path) -> None:
    settings = _machine(tmp_path)
    assert podman.offers(settings, "torch", "torch-2.13.0+cpu")  # the wheel folder
    assert podman.offers(settings, "torch", "torch-2.14.1")  # the index page
    assert not podman.offers(settings, "torch", "torch-2.14.1+cpu")
    del settings["global.find-links"]
    assert not podman.offers(settings, "torch", "torch-2.13.0+cpu")
