"""The Dockerfile against the code: targets, what each installs, env, port, health check."""

from __future__ import annotations

import importlib.util
import re

import pytest

from tests.deploy import dockerfile
from tests.deploy.manifests import DEPLOY, default_port, get_routes, setting_names, settings_from

STAGES = dockerfile.stages()
NAMED = dockerfile.by_name(STAGES)
SERVING = ("serve", "gpu")
TARGET_RE = re.compile(r"--target[= ]([\w.-]+)")
FENCED_RE = re.compile(r"```\w*\n(.*?)```", re.DOTALL)


def test_a_plain_build_gives_the_cpu_serving_image() -> None:
    # `docker build` with no --target builds the last stage
    assert STAGES[-1].name == "serve"


def test_the_serving_image_installs_the_serve_extra_only() -> None:
    extras = set().union(*(s.pip_extras() for s in dockerfile.chain(STAGES, "serve")))
    assert extras == {"serve"}


def test_gpu_and_train_targets_install_their_extras() -> None:
    assert NAMED["gpu"].base.startswith("nvidia/cuda:") and "runtime" in NAMED["gpu"].base
    assert {"serve", "gpu"} <= NAMED["gpu"].pip_extras()
    assert {"train", "distributed"} <= NAMED["train"].pip_extras()
    # the pinned torch from the CPU wheel index: PyPI's would bring the CUDA libraries
    assert "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in NAMED["train"].args("ARG")
    assert any("$TORCH_INDEX_URL" in run for run in NAMED["train"].args("RUN"))


def test_documented_targets_exist() -> None:
    commands = "\n".join(FENCED_RE.findall((DEPLOY / "README.md").read_text()))
    documented = set(TARGET_RE.findall(commands))
    assert documented, "the README's commands build no --target"
    assert documented <= set(NAMED), f"no such stage: {documented - set(NAMED)}"


@pytest.mark.parametrize("target", SERVING + ("train",))
def test_images_run_as_a_numeric_non_root_user(target: str) -> None:
    (user,) = NAMED[target].args("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, user  # numeric: runAsNonRoot can verify it


@pytest.mark.parametrize("target", SERVING)
def test_env_names_real_settings_that_parse(target: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    env = {k: v for k, v in NAMED[target].env().items() if k.startswith("XMODAL_")}
    assert env and set(env) <= setting_names(), set(env) - setting_names()
    settings = settings_from(env, monkeypatch)
    assert str(settings.engine_dir).startswith("/bundles/")  # mounted, not baked in
    assert str(settings.index_dir).startswith("/bundles/")


@pytest.mark.parametrize("target", SERVING)
def test_exposed_port_is_the_port_served(target: str) -> None:
    stage = NAMED[target]
    served = int(stage.env().get("XMODAL_PORT", default_port()))
    assert stage.exposed_ports() == [served]


@pytest.mark.parametrize("target", SERVING)
def test_healthcheck_runs_the_deploy_script_on_a_real_route(target: str) -> None:
    stage = NAMED[target]
    command = stage.healthcheck_command()
    copied = {dest: src for origin, src, dest in stage.copies() if origin is None}
    assert command[0] == "python" and copied.get(command[1]) == "deploy/healthcheck.py"
    spec = importlib.util.spec_from_file_location("healthcheck", DEPLOY / "healthcheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.PATH in get_routes()


def test_bundles_are_not_in_the_build_context() -> None:
    patterns = dockerfile.ignore_patterns()
    for path in ("var/demo/engine/manifest.json", ".venv/bin/python", "tests/conftest.py",
                 "service/__pycache__/main.cpython-311.pyc"):
        assert dockerfile.ignored(path, patterns), path
    assert not dockerfile.ignored("service/main.py", patterns)
    assert not dockerfile.ignored("deploy/healthcheck.py", patterns)
