"""A small Dockerfile reader for the deploy tests: stages, their instructions, and the build
context the wheel stage copies (with `.dockerignore` applied)."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

FROM_RE = re.compile(r"^(?P<base>\S+)(?:\s+AS\s+(?P<name>\S+))?$", re.IGNORECASE)
ARG_REF_RE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
EXTRAS_RE = re.compile(r"\.whl\)?\[(?P<extras>[\w,-]+)\]")
MOUNT_FROM_RE = re.compile(r"--mount=\S*from=([\w-]+)")


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (KEYWORD, arguments)

    def args(self, keyword: str) -> list[str]:
        return [a for k, a in self.instructions if k == keyword]

    def env(self) -> dict[str, str]:
        """ENV KEY=VALUE pairs, later ones winning, as Docker applies them."""
        pairs: dict[str, str] = {}
        for line in self.args("ENV"):
            for token in shlex.split(line):
                key, _, value = token.partition("=")
                pairs[key] = value
        return pairs

    def exposed_ports(self) -> list[int]:
        return [int(p.split("/")[0]) for line in self.args("EXPOSE") for p in line.split()]

    def copies(self) -> list[tuple[str | None, str, str]]:
        """(from-stage or None for the build context, source, destination) per COPY."""
        out = []
        for line in self.args("COPY"):
            words = shlex.split(line)
            origin = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
            paths = [w for w in words if not w.startswith("--")]
            out += [(origin, src, paths[-1]) for src in paths[:-1]]
        return out

    def depends_on(self) -> set[str]:
        """Stages this one reads from: its base, COPY --from and RUN --mount=...,from=."""
        names = {origin for origin, _, _ in self.copies() if origin}
        names |= {m for line in self.args("RUN") for m in MOUNT_FROM_RE.findall(line)}
        return names | {self.base}

    def pip_extras(self) -> set[str]:
        """Extras of the project wheel installed by `pip install` in this stage's RUNs."""
        return {e for line in self.args("RUN") if "pip install" in line
                for m in EXTRAS_RE.finditer(line) for e in m["extras"].split(",")}

    def healthcheck_command(self) -> list[str]:
        (line,) = self.args("HEALTHCHECK")
        return json.loads(line.split("CMD", 1)[1].strip())


def logical_lines(text: str) -> list[str]:
    """Instructions with their continuation lines joined and comment lines dropped."""
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    return lines


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages in order; FROM arguments are expanded."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(text):
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            global_args[name] = default
        elif keyword == "FROM":
            expanded = ARG_REF_RE.sub(lambda m: global_args.get(m[1] or m[2], m[0]), rest)
            match = FROM_RE.match(expanded)
            assert match, f"unreadable FROM line: {line}"
            stages.append(Stage(match["name"] or str(len(stages)), match["base"]))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, rest))
    return global_args, stages


def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())[1]


def by_name(all_stages: list[Stage]) -> dict[str, Stage]:
    return {s.name: s for s in all_stages}


def chain(all_stages: list[Stage], name: str) -> list[Stage]:
    """The stage and every stage it reads from, transitively."""
    named = by_name(all_stages)
    seen, todo = [], [name]
    while todo:
        stage = named[todo.pop()]
        if stage not in seen:
            seen.append(stage)
            todo += [n for n in stage.depends_on() if n in named]
    return seen


def ignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [p.strip().rstrip("/") for p in lines if p.strip() and not p.startswith("#")]


def ignored(relative: str, patterns: list[str]) -> bool:
    """`.dockerignore` matching for the patterns used here: paths, `*` globs, `**/` prefixes."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatchcase(part, pattern[3:]) for part in parts):
                return True
        elif any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            return True
    return False


def copy_context(stage: Stage, dest: Path) -> Path:
    """What `stage`'s COPY lines from the build context put in its WORKDIR, under `dest`."""
    patterns = ignore_patterns()
    for origin, src, target in stage.copies():
        assert origin is None, f"{stage.name} copies from stage {origin}"
        source = ROOT / src
        for path in ([source] if source.is_file() else sorted(source.rglob("*"))):
            relative = path.relative_to(ROOT).as_posix()
            if path.is_dir() or ignored(relative, patterns):
                continue
            inside = path.relative_to(source).as_posix() if source.is_dir() else path.name
            out = dest / target / inside if (source.is_dir() or target.endswith("/")) \
                else dest / target
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, out)
    return dest
