"""The import rules of the design (../shared/DESIGN.md) as tests, each checker shown to fail
on a module that breaks its rule.

- packages import one way: encoders nothing of the project, training and index encoders,
  service encoders and index;
- routes import only schemas, errors, deps, images and the query service of the project,
  reach no deeper than one attribute into the query service, and stay short;
- no module imports itself through others, function-level imports counted (a cycle hidden
  by an import inside a function still ties the modules together);
- `service.config` imports without onnxruntime (the container health check imports it every
  15 s), and the serving path imports without torch.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROJECT = ("encoders", "training", "index", "service", "bench", "xmodal", "deploy", "tests")
MAY_IMPORT = {"encoders": set(), "training": {"encoders"}, "index": {"encoders"},
              "service": {"encoders", "index"}}
ROUTES_MAY_IMPORT = {"service.schemas", "service.errors", "service.deps", "service.images",
                     "service.query"}
MAX_ROUTE_LINES = 40
SERVING_PATH = ("service.main", "index.search", "index.update", "index.uploads",
                "encoders.engine")


def _imports(source: str) -> set[str]:
    """Every project module a source imports, at any depth (function-level imports too)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return {name for name in found if name.split(".")[0] in PROJECT}


def import_cycles(sources: dict[str, str]) -> list[list[str]]:
    """The cycles (strongly connected groups of two or more) of the graph of which module
    imports which, from each module's source by dotted name."""
    graph = {name: {m for m in _imports(source) | _submodules(source) if m in sources and m != name}
             for name, source in sources.items()}
    order, low, stack, cycles = {}, {}, [], []

    def visit(name: str) -> None:  # Tarjan's algorithm
        order[name] = low[name] = len(order)
        stack.append(name)
        for other in sorted(graph[name]):
            if other not in order:
                visit(other)
                low[name] = min(low[name], low[other])
            elif other in stack:
                low[name] = min(low[name], order[other])
        if low[name] == order[name]:
            group = stack[stack.index(name):]
            del stack[stack.index(name):]
            if len(group) > 1:
                cycles.append(sorted(group))

    for name in sorted(graph):
        if name not in order:
            visit(name)
    return cycles


def _submodules(source: str) -> set[str]:
    """`package.module` of each `from package import module` (and of plain names: filtered)."""
    return {f"{node.module}.{alias.name}" for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.ImportFrom) and node.module and not node.level
            for alias in node.names}


def _module_sources(packages: tuple[str, ...]) -> dict[str, str]:
    sources = {}
    for package in packages:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            sources[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path.read_text()
    return sources


def package_violations(package: str, source: str) -> list[str]:
    allowed = MAY_IMPORT[package] | {package}
    return sorted(m for m in _imports(source) if m.split(".")[0] not in allowed)


def route_import_violations(source: str) -> list[str]:
    return sorted(m for m in _imports(source) if m not in ROUTES_MAY_IMPORT)


def route_shape_violations(source: str) -> list[str]:
    """Routes longer than MAX_ROUTE_LINES, and attribute chains two deep into a parameter
    that is the query service (`query.engine.dim`: a method the service lacks)."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        is_route = any(isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute)
                       and isinstance(d.func.value, ast.Name) and d.func.value.id == "router"
                       for d in node.decorator_list)
        lines = node.end_lineno - node.lineno + 1
        if is_route and lines > MAX_ROUTE_LINES:
            problems.append(f"{node.name}: {lines} lines")
        services = {a.arg for a in node.args.args
                    if isinstance(a.annotation, ast.Name) and a.annotation.id == "QueryDep"}
        for inner in ast.walk(node):
            if (isinstance(inner, ast.Attribute) and isinstance(inner.value, ast.Attribute)
                    and isinstance(inner.value.value, ast.Name)
                    and inner.value.value.id in services):
                problems.append(f"{node.name}: {inner.value.value.id}.{inner.value.attr}."
                                f"{inner.attr}")
    return problems


def loaded_modules(statement: str, *, block: str | None = None) -> set[str]:
    """Top-level modules loaded by running `statement` in a fresh interpreter here; `block`:
    a module made unimportable first (as `sys.modules[name] = None` does)."""
    script = textwrap.dedent(f"""
        import sys
        {f"sys.modules[{block!r}] = None" if block else ""}
        before = set(sys.modules)
        {statement}
        print(" ".join(sorted({{m.split(".")[0] for m in set(sys.modules) - before}})))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_packages_import_one_way() -> None:
    problems = [f"{path.relative_to(REPO)}: {package_violations(package, path.read_text())}"
                for package in MAY_IMPORT for path in sorted((REPO / package).rglob("*.py"))
                if package_violations(package, path.read_text())]
    assert problems == []


def test_routes_import_only_the_front_door_and_stay_thin() -> None:
    problems = []
    for path in sorted((REPO / "service" / "routes").glob("*.py")):
        source = path.read_text()
        problems += [f"{path.name} imports {m}" for m in route_import_violations(source)]
        problems += [f"{path.name}: {p}" for p in route_shape_violations(source)]
    assert problems == []


def test_the_checkers_find_a_module_that_breaks_the_rules() -> None:
    bad_route = textwrap.dedent("""
        import numpy
        from index.search import Searcher
        from service.deps import QueryDep

        @router.post("/x")
        async def x(query: QueryDep) -> int:
            from service.config import Settings
    """) + "    n = 0\n" * MAX_ROUTE_LINES + "    return query.engine.dim\n"
    assert route_import_violations(bad_route) == ["index.search", "service.config"]
    assert route_shape_violations(bad_route) == [f"x: {MAX_ROUTE_LINES + 3} lines",
                                                 "x: query.engine.dim"]
    assert package_violations("encoders", "def f():\n    import service.query\n") == \
        ["service.query"]
    assert package_violations("index", "from encoders.engine import Engine\n") == []


def test_no_module_imports_itself_through_others() -> None:
    assert import_cycles(_module_sources((*MAY_IMPORT, "xmodal"))) == []


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function() -> None:
    sources = {"training.a": "from training.b import x\n",
               "training.b": "def f():\n    from training.c import y\n",
               "training.c": "from training import a\n", "training.d": "import training.a\n"}
    assert import_cycles(sources) == [["training.a", "training.b", "training.c"]]
    assert import_cycles({**sources, "training.c": ""}) == []


def test_service_config_imports_without_onnxruntime() -> None:
    for module in ("service.config", "deploy.healthcheck"):
        assert "onnxruntime" not in loaded_modules(f"import {module}")
    assert "onnxruntime" in loaded_modules("import service.query")  # the check can fail


def test_the_serving_path_imports_without_torch() -> None:
    loaded = loaded_modules("; ".join(f"import {m}" for m in SERVING_PATH), block="torch")
    assert not loaded & {"torch", "transformers"}
    assert "torch" in loaded_modules("import torch")  # torch is here: the check can fail
