"""deploy/compose.yaml against the code: settings, ports, image targets, Redis as a cache."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy import dockerfile
from tests.deploy.manifests import (
    compose,
    compose_env,
    default_port,
    interpolate,
    setting_names,
    settings_from,
)

SERVICES: dict[str, Any] = compose()["services"]
XMODAL = {name: s for name, s in SERVICES.items() if "build" in s}
STAGES = dockerfile.by_name(dockerfile.stages())


def test_the_service_and_redis_are_there() -> None:
    assert {"xmodal", "redis"} <= set(SERVICES)
    assert XMODAL, "no service is built from the Dockerfile"


@pytest.mark.parametrize("name", sorted(XMODAL))
def test_env_names_real_settings_that_parse(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = compose_env(XMODAL[name])
    unknown = {k for k in env if k.startswith("XMODAL_")} - setting_names()
    assert not unknown, f"{name} sets {unknown}, which no setting reads"
    settings = settings_from(env, monkeypatch)
    assert settings.redis_url and "redis" in settings.redis_url


@pytest.mark.parametrize("name", sorted(XMODAL))
def test_redis_url_names_the_redis_service(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url = settings_from(compose_env(XMODAL[name]), monkeypatch).redis_url
    host = url.split("://", 1)[1].split("/")[0].split(":")[0]
    assert host in SERVICES, f"{url} points at no service of the compose file"


@pytest.mark.parametrize("name", sorted(XMODAL))
def test_build_target_is_a_dockerfile_stage(name: str) -> None:
    build = XMODAL[name]["build"]
    assert build.get("dockerfile", "Dockerfile") == "Dockerfile"
    assert build["target"] in STAGES


@pytest.mark.parametrize("name", sorted(XMODAL))
def test_published_port_reaches_the_port_served(name: str) -> None:
    service = XMODAL[name]
    served = int(compose_env(service).get("XMODAL_PORT", default_port()))
    container_ports = {int(str(p).rsplit(":", 1)[-1]) for p in service["ports"]}
    assert container_ports == {served}
    assert STAGES[service["build"]["target"]].exposed_ports() == [served]


@pytest.mark.parametrize("name", sorted(XMODAL))
def test_bundles_are_mounted(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(compose_env(XMODAL[name]), monkeypatch)
    targets = {v["target"] if isinstance(v, dict) else v.split(":")[1]
               for v in XMODAL[name]["volumes"]}
    for path in (settings.engine_dir, settings.index_dir):
        assert any(str(path) == t or str(path).startswith(t + "/") for t in targets), path


def test_redis_is_configured_as_a_cache() -> None:
    command = [interpolate(word) for word in SERVICES["redis"]["command"]]
    flags = dict(zip(command[1::2], command[2::2], strict=True))
    assert flags["--save"] == "" and flags["--appendonly"] == "no"
    assert flags["--maxmemory-policy"].startswith("allkeys-")
    assert flags["--maxmemory"]


def test_gpu_profile_reserves_a_gpu() -> None:
    gpu = [s for s in XMODAL.values() if "gpu" in s.get("profiles", [])]
    assert len(gpu) == 1 and gpu[0]["build"]["target"] == "gpu"
    devices = gpu[0]["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] for d in devices)
    # a plain `docker compose up` must not need a GPU
    assert "profiles" not in SERVICES["xmodal"] and "deploy" not in SERVICES["xmodal"]
