"""Loaders for the compose file and Kubernetes manifests, and what the code says they must
match: the settings (`Settings.model_fields`), the app's GET routes and the default port."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"
PREFIX = "XMODAL_"
# a strong key of the shape production demands, standing in for the Secret's value
TEST_KEYS = '["a-test-key-that-is-long-enough"]'
INTERPOLATION_RE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def setting_names() -> set[str]:
    return {PREFIX + name.upper() for name in Settings.model_fields}


def default_port() -> int:
    return Settings.model_fields["port"].default


@cache
def get_routes() -> frozenset[str]:
    """Paths the app answers with GET, read from the app itself."""
    from service.main import create_app

    paths = create_app(Settings(environment="development", api_keys=[])).openapi()["paths"]
    return frozenset(path for path, ops in paths.items() if "get" in ops)


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as the service would read them from exactly these variables."""
    for name in [n for n in os.environ if n.startswith(PREFIX)]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def interpolate(value: Any) -> str:
    """Compose `${VAR:-default}` with nothing set: the default (empty when none)."""
    return INTERPOLATION_RE.sub(lambda m: m[2] or "", str(value))


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {name: interpolate(value) for name, value in env.items()}


def k8s_files() -> list[Path]:
    return sorted(K8S.glob("*.yaml"))


def k8s_documents() -> list[dict[str, Any]]:
    return [doc for path in k8s_files() for doc in yaml.safe_load_all(path.read_text()) if doc]


def k8s_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in k8s_documents() if doc.get("kind") == kind]


def k8s_one(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in k8s_kind(kind) if d["metadata"]["name"] == name]
    return doc


def containers(pod_spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from pod_spec.get("initContainers", [])
    yield from pod_spec["containers"]


def named_port(container: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port (number or name) as the container's port number."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return number
