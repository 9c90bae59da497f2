"""Images built from the Dockerfile with podman and booted without a container runtime.

`podman run` needs cgroups and rlimits that a sandboxed machine may refuse; `podman build
--isolation chroot` does not. So the base is made offline (debootstrap, Debian's Python
3.11), the image is built on it, and it is started the way a runtime would: the image's
file system mounted read-only under a writable `/tmp`, the bundles bound at `/bundles`, in
its own network and mount namespaces, running the image's CMD with its ENV, USER and
WORKDIR (from `podman image inspect`) under `chroot --userspec`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from tests.deploy.dockerfile import ROOT

TOOLS = ("podman", "debootstrap", "unshare", "nsenter", "chroot", "ip")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# python:3.11-slim-bookworm: Python 3.11 with venv and pip, `python` and `pip` in
# /usr/local/bin. Here Debian's python3.11 and a virtual environment made at /usr/local.
BASE_SETUP = ("apt-get update -qq"
              " && apt-get install -y -qq --no-install-recommends python3.11-venv"
              " ca-certificates >/dev/null"
              " && python3.11 -m venv /usr/local"
              " && apt-get clean && rm -rf /var/lib/apt/lists/*")
# pip settings that name files on this machine, which the build must see at the same path
INDEX_KEYS = ("index-url", "extra-index-url")
PATH_KEYS = ("find-links", "cert", "client-cert", "constraint")
BUILD_TIMEOUT_S = 1500


def unavailable() -> str | None:
    """Why images cannot be built and booted here, or None."""
    if os.geteuid() != 0:
        return "needs root (debootstrap, mounts and chroot)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed (`make test` installs them with apt)"
    return None


def _run(argv: list[str], timeout: float = 600, **kwargs: Any) -> str:
    result = subprocess.run(argv, check=False, capture_output=True, text=True,
                            timeout=timeout, **kwargs)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(argv[:4])} ... exited {result.returncode}:\n"
                             f"{(result.stdout + result.stderr)[-4000:]}")
    return result.stdout


def base_image(cache: Path) -> str:
    """A local stand-in for python:3.11-slim-bookworm; its root file system is cached as a
    tar under `cache`, keyed by the recipe, and imported once into podman's storage."""
    key = hashlib.sha256(f"bookworm {DEBIAN_MIRROR} {BASE_SETUP}".encode()).hexdigest()[:12]
    tag = f"localhost/xmodal-test-python:3.11-bookworm-{key}"
    if subprocess.run(["podman", "image", "exists", tag], check=False).returncode == 0:
        return tag
    tar = cache / f"python-3.11-bookworm-{key}.tar"
    if not tar.exists():
        _make_base_tar(tar)
    _run(["podman", "import", "--change", 'CMD ["python3"]', str(tar), tag])
    return tag


def _make_base_tar(tar: Path) -> None:
    tar.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tar.parent) as work:
        root = Path(work) / "root"
        _run(["debootstrap", "--variant=minbase", "bookworm", str(root), DEBIAN_MIRROR],
             timeout=900)
        _run(["chroot", str(root), "sh", "-c", BASE_SETUP], timeout=900)
        shutil.rmtree(root / "debootstrap", ignore_errors=True)
        partial = Path(work) / "base.tar"
        _run(["tar", "-C", str(root), "-cf", str(partial), "."])
        os.replace(partial, tar)


def pip_settings() -> dict[str, str]:
    """This machine's effective pip configuration (files and PIP_* variables), by
    `section.key`; the variables win, as they do for pip."""
    out = _run([sys.executable, "-m", "pip", "config", "list"])
    files, env = {}, {}
    for line in out.splitlines():
        name, _, value = line.partition("=")
        section, _, key = name.rpartition(".")
        if section == ":env:":
            env[f"global.{key}"] = value.strip("'\"")
        else:
            files[name] = value.strip("'\"")
    return files | env


def pip_conf(settings: dict[str, str]) -> str:
    sections: dict[str, list[str]] = {}
    for name, value in settings.items():
        section, _, key = name.partition(".")
        sections.setdefault(section, []).append(f"{key} = {value}")
    return "".join(f"[{s}]\n" + "\n".join(lines) + "\n" for s, lines in sections.items())


def local_paths(settings: dict[str, str]) -> list[Path]:
    """Files and folders of this machine that the pip settings name. An index folder's
    parent comes along: a PEP 503 page links its files relative to the index root."""
    paths = set()
    for name, value in settings.items():
        key = name.partition(".")[2]
        if key not in INDEX_KEYS + PATH_KEYS:
            continue
        for word in value.split():
            path = Path(word.removeprefix("file://"))
            if not path.is_absolute() or not path.exists():
                continue
            paths.add(path.parent if key in INDEX_KEYS and path.is_dir() else path)
    return sorted(p for p in paths if not any(p.is_relative_to(q) and p != q for q in paths))


def offers(settings: dict[str, str], project: str, wheel_prefix: str) -> bool:
    """Whether the local folders and indexes the pip settings name hold a wheel of `project`
    whose file name starts with `wheel_prefix` (a name and version, e.g. `torch-2.13.0+cpu`)."""
    for name, value in settings.items():
        key = name.partition(".")[2]
        for word in value.split():
            path = Path(word.removeprefix("file://"))
            if key == "find-links" and path.is_dir() and any(path.glob(f"{wheel_prefix}-*.whl")):
                return True
            page = path / project / "index.html"
            if key in INDEX_KEYS and page.is_file() and f">{wheel_prefix}-" in page.read_text():
                return True
    return False


def build(target: str, tag: str, base: str, workdir: Path,
          build_args: dict[str, str] | None = None, context: Path = ROOT) -> None:
    """`podman build` of one target on `base`, with this machine's pip configuration."""
    settings = pip_settings()
    conf = workdir / "pip.conf"
    conf.write_text(pip_conf(settings))
    argv = ["podman", "build", "--isolation", "chroot", "--format", "docker",
            "--layers=false", "--target", target, "--tag", tag,
            "--build-arg", f"PYTHON_IMAGE={base}", "--secret", f"id=pip.conf,src={conf}"]
    for name, value in (build_args or {}).items():
        argv += ["--build-arg", f"{name}={value}"]
    for path in local_paths(settings):
        argv += ["--volume", f"{path}:{path}:ro"]
    _run([*argv, str(context)], timeout=BUILD_TIMEOUT_S)


def remove(tag: str) -> None:
    subprocess.run(["podman", "rmi", "--force", tag], check=False, capture_output=True,
                   timeout=300)


@dataclass
class Image:
    tag: str

    @cached_property
    def inspect(self) -> dict[str, Any]:
        (doc,) = json.loads(_run(["podman", "image", "inspect", self.tag]))
        return doc

    @property
    def config(self) -> dict[str, Any]:
        return self.inspect["Config"]

    @property
    def env(self) -> dict[str, str]:
        return dict(item.split("=", 1) for item in self.config.get("Env", []))

    @property
    def user(self) -> str:
        return self.config.get("User", "")

    @property
    def workdir(self) -> str:
        return self.config.get("WorkingDir") or "/"

    @property
    def cmd(self) -> list[str]:
        return self.config["Cmd"]

    @property
    def exposed_ports(self) -> list[int]:
        return sorted(int(p.split("/")[0]) for p in self.config.get("ExposedPorts", {}))

    @property
    def healthcheck(self) -> list[str]:
        """The HEALTHCHECK's command (CMD form: the argument vector)."""
        test = (self.inspect.get("Healthcheck") or self.config["Healthcheck"])["Test"]
        assert test[0] == "CMD", f"HEALTHCHECK {test}: expected the exec form"
        return test[1:]

    @property
    def size(self) -> int:
        return int(self.inspect["Size"])


# Mount points are made in a writable layer over the image, as a runtime makes them; then
# the image's root is made read-only and only /tmp (a folder of the test's) stays writable.
BOOT = r"""set -eu
ip link set lo up
mount -t overlay overlay -o "lowerdir=$IMAGE,upperdir=$WORK/upper,workdir=$WORK/ovl" "$WORK/root"
mkdir -p "$WORK/root/bundles" "$WORK/root/tmp" "$WORK/root/proc" "$WORK/root/dev"
[ -z "$BUNDLES" ] || mount --bind -o ro "$BUNDLES" "$WORK/root/bundles"
mount --bind "$WORK/tmp" "$WORK/root/tmp"
mount -t proc proc "$WORK/root/proc"
mount --bind /dev "$WORK/root/dev"
mount -o remount,ro "$WORK/root"
exec chroot --userspec="$USERSPEC" "$WORK/root" /usr/bin/env -i -C "$WORKDIR" "$@"
"""


class Booted:
    """A process started from an image, in its own network and mount namespaces."""

    def __init__(self, image: Image, mounted: Path, work: Path, argv: list[str],
                 bundles: Path | None) -> None:
        self.image, self.work = image, work
        for name in ("upper", "ovl", "root", "tmp"):
            (work / name).mkdir(parents=True)
        (work / "tmp").chmod(0o1777)
        self.env = _runtime_env(image, mounted)
        self.log = work / "boot.log"
        variables = {"IMAGE": str(mounted), "WORK": str(work), "BUNDLES": str(bundles or ""),
                     "USERSPEC": image.user or "0:0", "WORKDIR": image.workdir}
        pairs = [f"{k}={v}" for k, v in self.env.items()]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                ["unshare", "--mount", "--net", "sh", "-c", BOOT, "boot", *pairs, *argv],
                env={**os.environ, **variables}, stdout=out, stderr=subprocess.STDOUT)

    @property
    def tmp(self) -> Path:
        """The container's /tmp, as seen from here."""
        return self.work / "tmp"

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def exec(self, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
        """Run `argv` inside, as the image's user with its environment."""
        uid, _, gid = (self.image.user or "0:0").partition(":")
        enter = ["nsenter", "--target", str(self.process.pid), "--mount", "--net", "--root",
                 "--wd", "--setuid", uid, "--setgid", gid or uid]
        return subprocess.run([*enter, "/usr/bin/env", "-i",
                               *[f"{k}={v}" for k, v in self.env.items()], *argv],
                              check=False, capture_output=True, text=True, timeout=timeout)

    def http(self, port: int, path: str, body: dict | None = None) -> tuple[int, Any]:
        """(status, JSON body) of a request to the container's loopback, from its network."""
        probe = ("import json, sys, urllib.error, urllib.request as u\n"
                 "url, body = sys.argv[1], sys.argv[2]\n"
                 "data = body.encode() if body else None\n"
                 "r = u.Request(url, data=data, headers={'Content-Type': 'application/json'})\n"
                 "try:\n"
                 "    with u.urlopen(r, timeout=10) as a: print(a.status, a.read().decode())\n"
                 "except urllib.error.HTTPError as e: print(e.code, e.read().decode())\n"
                 "except OSError: print(0, 'null')\n")
        argv = ["nsenter", "--target", str(self.process.pid), "--net", sys.executable, "-c",
                probe, f"http://127.0.0.1:{port}{path}", json.dumps(body) if body else ""]
        out = _run(argv, timeout=60).strip()
        status, _, text = out.partition(" ")
        return int(status), json.loads(text or "null")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def _runtime_env(image: Image, mounted: Path) -> dict[str, str]:
    """The image's ENV and the HOME a runtime adds: the user's from the image's passwd."""
    env = dict(image.env)
    uid = (image.user or "0").split(":")[0]
    home = "/"
    for line in (mounted / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if len(fields) > 5 and uid in (fields[0], fields[2]):
            home = fields[5]
    return {"HOME": home} | env


@contextmanager
def boot(image: Image, work: Path, argv: list[str] | None = None,
         bundles: Path | None = None) -> Iterator[Booted]:
    """The image started with its CMD (or `argv`), stopped and unmounted afterwards."""
    mounted = Path(_run(["podman", "image", "mount", image.tag]).strip())
    booted = None
    try:
        booted = Booted(image, mounted, work, argv or image.cmd, bundles)
        yield booted
    finally:
        if booted is not None:
            booted.stop()
        subprocess.run(["podman", "image", "unmount", image.tag], check=False,
                       capture_output=True, timeout=60)
