"""deploy/k8s against the code: settings, probes on real routes, ports, references between
the manifests, and the pod security the images are built for."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.deploy.manifests import (
    K8S,
    TEST_KEYS,
    containers,
    default_port,
    get_routes,
    k8s_files,
    k8s_kind,
    k8s_one,
    named_port,
    setting_names,
    settings_from,
)

DEPLOYMENT = k8s_one("Deployment", "xmodal")
POD = DEPLOYMENT["spec"]["template"]["spec"]
(APP,) = [c for c in POD["containers"] if c["name"] == "xmodal"]
CONFIG = k8s_one("ConfigMap", "xmodal-config")["data"]
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


def _secret_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["valueFrom"]["secretKeyRef"]["key"] for e in container.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})}


def _app_env(monkeypatch: pytest.MonkeyPatch):
    """The container's settings: the ConfigMap, literal env, and a stand-in for the Secret."""
    env = dict(CONFIG)
    env |= {e["name"]: e["value"] for e in APP.get("env", []) if "value" in e}
    env |= {name: TEST_KEYS for name in _secret_env(APP)}
    return settings_from(env, monkeypatch)


def _all_containers(doc: dict[str, Any]):
    if doc["kind"] == "Deployment":
        yield from containers(doc["spec"]["template"]["spec"])
    else:
        cluster = doc["spec"]["rayClusterSpec"]
        for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
            yield from containers(group["template"]["spec"])


def test_configmap_keys_are_settings() -> None:
    unknown = set(CONFIG) - setting_names()
    assert not unknown, f"the ConfigMap sets {unknown}, which no setting reads"


def test_every_env_var_set_in_the_manifests_is_a_setting() -> None:
    for kind in ("Deployment", "RayJob"):
        for doc in k8s_kind(kind):
            for container in _all_containers(doc):
                names = {e["name"] for e in container.get("env", [])}
                unknown = {n for n in names if n.startswith("XMODAL_")} - setting_names()
                assert not unknown, f"{doc['metadata']['name']}: {unknown}"


def test_the_container_reads_the_configmap_and_the_admin_secret() -> None:
    refs = {ref["configMapRef"]["name"] for ref in APP["envFrom"] if "configMapRef" in ref}
    assert refs == {"xmodal-config"}
    secret = _secret_env(APP)
    assert set(secret) == {"XMODAL_API_KEYS"} and set(secret.values()) <= setting_names()
    assert not k8s_kind("Secret"), "keys must not be committed"


def test_production_settings_start(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _app_env(monkeypatch)  # raises if a value does not parse or is unsafe
    assert settings.environment == "production"
    assert str(settings.engine_dir).startswith("/bundles/")
    assert settings.threads == int(APP["resources"]["limits"]["cpu"])


@pytest.mark.parametrize("probe", PROBES)
def test_probes_hit_real_routes_on_the_served_port(probe: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    get = APP[probe]["httpGet"]
    assert get["path"] in get_routes()
    assert named_port(APP, get["port"]) == _app_env(monkeypatch).port


def test_readiness_waits_for_the_bundles_and_liveness_does_not() -> None:
    # /readyz is 503 until engine and index are loaded; liveness must not restart a pod for that
    assert APP["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert APP["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_container_port_is_the_port_served(monkeypatch: pytest.MonkeyPatch) -> None:
    assert [p["containerPort"] for p in APP["ports"]] == [_app_env(monkeypatch).port]
    assert _app_env(monkeypatch).port == int(CONFIG.get("XMODAL_PORT", default_port()))


@pytest.mark.parametrize("service", k8s_kind("Service"), ids=lambda s: s["metadata"]["name"])
def test_service_target_ports_exist_on_the_selected_pods(service: dict[str, Any]) -> None:
    selector = service["spec"]["selector"]
    pods = [d["spec"]["template"] for d in k8s_kind("Deployment")
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
    assert len(pods) == 1, f"{service['metadata']['name']} selects {len(pods)} Deployments"
    (container,) = pods[0]["spec"]["containers"]
    declared = {p["containerPort"] for p in container["ports"]}
    for port in service["spec"]["ports"]:
        assert named_port(container, port["targetPort"]) in declared


def test_redis_url_names_the_redis_service(monkeypatch: pytest.MonkeyPatch) -> None:
    url = _app_env(monkeypatch).redis_url
    host, port = url.split("://", 1)[1].split("/")[0].split(":")
    service = k8s_one("Service", host)
    assert int(port) in {p["port"] for p in service["spec"]["ports"]}
    redis = k8s_one("Deployment", host)["spec"]["template"]["spec"]["containers"][0]
    flags = redis["args"]
    assert flags[flags.index("--save") + 1] == "" and "allkeys-lru" in flags


def test_hpa_scales_the_deployment() -> None:
    (hpa,) = k8s_kind("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", DEPLOYMENT["metadata"]["name"])
    assert "cpu" in APP["resources"]["requests"]  # utilisation is measured against it


def test_claimed_volumes_are_declared() -> None:
    claims = {c["metadata"]["name"] for c in k8s_kind("PersistentVolumeClaim")}
    used = {v["persistentVolumeClaim"]["claimName"] for v in POD["volumes"]
            if "persistentVolumeClaim" in v}
    assert used and used <= claims
    mounts = {m["mountPath"] for m in APP["volumeMounts"]}
    assert any(CONFIG["XMODAL_ENGINE_DIR"].startswith(m + "/") for m in mounts)


@pytest.mark.parametrize("deployment", k8s_kind("Deployment"), ids=lambda d: d["metadata"]["name"])
def test_pods_run_non_root_with_a_read_only_root(deployment: dict[str, Any]) -> None:
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    for container in containers(pod):
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert "limits" in container["resources"] and "requests" in container["resources"]


def test_kustomization_lists_every_manifest_but_the_build_job() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert all((K8S / name).is_file() for name in listed)
    expected = {p.name for p in k8s_files()} - {"kustomization.yaml", "rayjob.yaml"}
    assert listed == expected
