"""The KubeRay RayJob. No package ships a schema for the CRD, so it is checked here: its
shape, its command against the real `xmodal` parser, and its volumes against the manifests."""

from __future__ import annotations

import re
import shlex
from pathlib import PurePosixPath

from tests.deploy.manifests import DEPLOY, k8s_kind
from xmodal.cli import build_parser

(JOB,) = k8s_kind("RayJob")
CLUSTER = JOB["spec"]["rayClusterSpec"]
GROUPS = [CLUSTER["headGroupSpec"], *CLUSTER["workerGroupSpecs"]]


def _command():
    argv = shlex.split(JOB["spec"]["entrypoint"])
    assert argv[0] == "xmodal"
    return build_parser().parse_args(argv[1:])  # exits on an unknown flag or a missing one


def test_it_is_a_kuberay_job() -> None:
    assert JOB["apiVersion"] == "ray.io/v1"
    assert JOB["spec"]["shutdownAfterJobFinishes"] is True
    assert CLUSTER["headGroupSpec"]["rayStartParams"] is not None
    for group in CLUSTER["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_entrypoint_is_a_distributed_index_build() -> None:
    args = _command()
    assert (args.command, args.op) == ("index", "build")
    assert args.executor == "ray" and args.ray_address


def test_every_node_sees_the_paths_the_build_reads_and_writes() -> None:
    # actors write shards into the work folder beside --out and read --images themselves
    args = _command()
    for group in GROUPS:
        (container,) = group["template"]["spec"]["containers"]
        mounts = {PurePosixPath(m["mountPath"]): m.get("readOnly", False)
                  for m in container["volumeMounts"]}
        for path, writable in ((args.engine, False), (args.images, False), (args.out, True)):
            owners = [m for m in mounts if PurePosixPath(path).is_relative_to(m)]
            assert owners, f"{group.get('groupName', 'head')} does not mount {path}"
            assert not writable or not mounts[owners[0]], f"{path} is mounted read-only"


def test_the_build_writes_to_the_claim_the_service_reads() -> None:
    served = {v["persistentVolumeClaim"]["claimName"]
              for d in k8s_kind("Deployment") for v in d["spec"]["template"]["spec"]["volumes"]
              if "persistentVolumeClaim" in v}
    for group in GROUPS:
        claims = {v["persistentVolumeClaim"]["claimName"]
                  for v in group["template"]["spec"]["volumes"]}
        assert served <= claims


def test_it_runs_the_image_the_readme_builds_from_the_train_target() -> None:
    built = re.search(r"--target train -t ([\w./-]+)", (DEPLOY / "README.md").read_text())
    assert built, "the README does not build the train target"
    for group in GROUPS:
        (container,) = group["template"]["spec"]["containers"]
        assert container["image"].split(":")[0] == built[1]
