"""ruff over the repository's Python, with the settings in pyproject.toml; shown to fail on a
file that breaks them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUFF = Path(sys.executable).parent / "ruff"


def _ruff(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(RUFF), "check", "--no-cache", "--config", str(REPO / "pyproject.toml"),
                           *map(str, args)], capture_output=True, text=True, timeout=120,
                          check=False, cwd=REPO)


def test_ruff_passes_the_repository() -> None:
    result = _ruff(REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_fails_unused_and_unsorted_imports(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nimport os\n\nprint(os.sep)\n")
    result = _ruff(bad)
    assert result.returncode != 0 and "F401" in result.stdout and "I001" in result.stdout, \
        result.stdout
