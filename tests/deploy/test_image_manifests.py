"""deploy/compose.yaml and deploy/k8s against the built `serve` image (podman image inspect):
the settings they give the container agree with the image's ENV, they publish the port it
exposes, mount the bundles where it reads them and a writable /tmp, the only place it writes
(test_image_serve.py boots it read-only), and run it as its user."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy import podman
from tests.deploy.manifests import compose, compose_env, k8s_one

pytestmark = [pytest.mark.container, pytest.mark.timeout(1800)]

BUNDLE_SETTINGS = ("XMODAL_ENGINE_DIR", "XMODAL_INDEX_DIR")
ADDRESS_SETTINGS = ("XMODAL_HOST", "XMODAL_PORT")


def _covered(path: str, mount_points: list[str]) -> bool:
    return any(path == m or path.startswith(m.rstrip("/") + "/") for m in mount_points)


def _agree(env: dict[str, str], image: podman.Image) -> None:
    image_env = image.env
    assert set(BUNDLE_SETTINGS + ADDRESS_SETTINGS) <= set(image_env), image_env
    differ = {k: (v, image_env[k]) for k, v in env.items() if k in image_env and image_env[k] != v}
    assert not differ, f"(manifest, image) disagree: {differ}"


def test_compose_runs_the_image_as_built(serve_image: podman.Image) -> None:
    service: dict[str, Any] = compose()["services"]["xmodal"]
    assert service["build"]["target"] == "serve"
    _agree(compose_env(service), serve_image)
    published = {int(str(p).rsplit(":", 1)[-1]) for p in service["ports"]}
    assert published == set(serve_image.exposed_ports)
    targets = [v["target"] for v in service["volumes"]]
    for name in BUNDLE_SETTINGS:
        assert _covered(serve_image.env[name], targets), (name, targets)
    assert service["read_only"] is True and "/tmp" in service["tmpfs"]


def test_kubernetes_runs_the_image_as_built(serve_image: podman.Image) -> None:
    pod = k8s_one("Deployment", "xmodal")["spec"]["template"]["spec"]
    (app,) = [c for c in pod["containers"] if c["name"] == "xmodal"]
    env = dict(k8s_one("ConfigMap", "xmodal-config")["data"])
    env |= {e["name"]: e["value"] for e in app.get("env", []) if "value" in e}
    _agree(env, serve_image)
    assert [p["containerPort"] for p in app["ports"]] == serve_image.exposed_ports
    mounts = [m["mountPath"] for m in app["volumeMounts"]]
    for name in BUNDLE_SETTINGS:
        assert _covered(serve_image.env[name], mounts), (name, mounts)
    assert "/tmp" in mounts and app["securityContext"]["readOnlyRootFilesystem"] is True
    uid, _, gid = serve_image.user.partition(":")
    security = pod["securityContext"]
    assert (security["runAsUser"], security["runAsGroup"]) == (int(uid), int(gid))
